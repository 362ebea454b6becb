//! The statekit tuner: derives RocksDB settings from what a workload does and the machine it
//! runs on, and explains every value.
//!
//! [`derive()`] is a pure function: a [`WorkloadShape`] (per state, operation rates, sizes,
//! misses, scan lengths, live size; the harness computes it from a profile or a trace) and a
//! [`Machine`] (cores, disk, direct I/O, memory budget) in; a [`Tuning`] out: a
//! [`RocksDbConfig`](statekit_backend::rocksdb_config::RocksDbConfig) that the RocksDB backend
//! applies, with one [`Reason`] per option it sets (the option, the value, the rule and its
//! source, the figures it used). [`explain_markdown`] renders the reasons. It depends on the
//! configuration as plain data only: no RocksDB build.

mod advisor;
mod derive;
mod explain;
mod machine;
mod shape;
mod state_rules;
mod tuning;

pub use advisor::{advise, Observation, Proposal};
pub use derive::{derive, MIN_BUDGET};
pub use explain::explain_markdown;
pub use machine::{Disk, DiskKind, Machine};
pub use shape::{OpRates, StateShape, WorkloadShape};
pub use tuning::{Reason, Tuning};

#[cfg(test)]
mod tests;
