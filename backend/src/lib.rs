//! # statekit-backend
//!
//! Keyed state for stream processing operators (interval joins, windows, feature
//! concatenation, dedup), behind one trait, [`StateBackend`], with interchangeable
//! implementations:
//!
//! - [`memory::MemoryBackend`]: everything on the heap, full snapshots;
//! - `rocksdb::RocksDbBackend` (feature `rocksdb`): embedded RocksDB, incremental
//!   checkpoints, a process-wide memory budget.
//!
//! Configuration files people write (the backends', the harness's profiles) are read through
//! [`config_file`]: omitted fields take their defaults, and errors name file, line, column
//! and field. [`Size`] is the one parser of sizes such as `"256 MiB"`.
//!
//! The raw trait speaks bytes; [`typed`] puts value, list, map, reducing and aggregating state
//! with serde values and order-preserving keys on top of it.
//!
//! ```
//! use statekit_backend::{memory::MemoryBackend, typed::{KeyContext, MapState}, InstanceConfig};
//!
//! # fn main() -> statekit_backend::Result<()> {
//! let mut backend = MemoryBackend::open(InstanceConfig::single(128)?)?;
//! let clicks: MapState<i64, String> = MapState::register(&mut backend, "clicks")?;
//! let user = KeyContext::new(&backend, &42u64)?;
//! clicks.put(&mut backend, &user, &1_000, &"ad-7".to_string())?;
//! clicks.put(&mut backend, &user, &5_000, &"ad-9".to_string())?;
//! // A bounded range over timestamps: only entries inside [0, 2000] are read.
//! let early = clicks.range(&backend, &user, 0..=2_000)?;
//! assert_eq!(early, vec![(1_000, "ad-7".to_string())]);
//! # Ok(()) }
//! ```

pub mod backend;
pub mod checkpoint;
pub mod clock;
pub mod codec;
pub mod config_file;
pub mod error;
pub mod instance;
pub mod keygroup;
pub mod memory;
#[cfg(any(feature = "rocksdb", feature = "remote"))]
mod pending_timers;
#[cfg(feature = "remote")]
pub mod remote;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
pub mod rocksdb_config;
pub mod size;
pub mod typed;

pub use backend::{
    BackendStats, CheckpointSize, Checkpointing, Direction, EntryRef, Scope, ScopeBuf,
    StateBackend, StateDescriptor, StateId, StateKind, StateRead, StateWrite, Timer, TimerStore,
    Ttl, UserKeyRange, Visit, WriteBatch, WriteOp,
};
pub use checkpoint::{CheckpointHandle, CheckpointStorage, LocalDirStorage};
pub use error::{Error, ErrorKind, Result};
pub use instance::InstanceConfig;
pub use keygroup::{key_group_of, KeyGroup, KeyGroupRange};
pub use size::Size;
