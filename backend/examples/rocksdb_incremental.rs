//! Incremental checkpoint of a multi-GB state after a 1% change, and restore time.
//!
//! Loads `--state-mib` of incompressible state, takes checkpoint 1, overwrites 1% of the
//! entries, takes checkpoint 2, restores checkpoint 2 into a fresh instance; prints one JSON
//! line with sizes and times.
//!
//! ```text
//! cargo run --release -p statekit-backend --features rocksdb --example rocksdb_incremental -- \
//!     --state-mib 3072
//! ```

use std::sync::Arc;
use std::time::Instant;

use statekit_backend::rocksdb::{MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings};
use statekit_backend::{
    key_group_of, Checkpointing, InstanceConfig, LocalDirStorage, Scope, StateBackend,
    StateDescriptor, StateKind, StateRead, StateWrite,
};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MAX_PAR: u16 = 128;
const VALUE: usize = 1000;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

fn main() -> statekit_backend::Result<()> {
    let state_mib = arg("--state-mib", 3072);
    let root = std::env::temp_dir().join(format!("statekit-incremental-{}", std::process::id()));
    let storage = Arc::new(LocalDirStorage::new(root.join("checkpoints"))?);
    let resources = RocksDbResources::new(MemoryBudget::new(512 << 20))?;
    let config = InstanceConfig::single(MAX_PAR)?.with_checkpoint_storage(storage.clone());
    let settings = RocksDbSettings::new(root.join("local"), resources);
    let mut b = RocksDbBackend::open(config.clone(), settings.clone())?;
    let s = b.register_state(&StateDescriptor::new("state", StateKind::Value))?;
    let entries = (state_mib << 20) / VALUE as u64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut value = vec![0u8; VALUE];
    let load = Instant::now();
    for n in 0..entries {
        rng.fill(&mut value);
        let key = n.to_be_bytes();
        let scope = Scope {
            state: s,
            key_group: key_group_of(&key, MAX_PAR),
            key: &key,
            namespace: b"",
        };
        b.put(scope, b"", &value)?;
    }
    b.compact()?;
    let load_secs = load.elapsed().as_secs_f64();
    b.checkpoint(1)?;
    let first = b.last_checkpoint_stats().cloned().unwrap_or_default();
    // Change 1% of the entries.
    let changed = entries / 100;
    for _ in 0..changed {
        rng.fill(&mut value);
        let key = (rng.next() % entries).to_be_bytes();
        let scope = Scope {
            state: s,
            key_group: key_group_of(&key, MAX_PAR),
            key: &key,
            namespace: b"",
        };
        b.put(scope, b"", &value)?;
    }
    let handle = b.checkpoint(2)?;
    let second = b.last_checkpoint_stats().cloned().unwrap_or_default();
    let restore = Instant::now();
    let mut r = RocksDbBackend::open(config, settings)?;
    r.restore(&[handle])?;
    let restore_secs = restore.elapsed().as_secs_f64();
    let probe = 12_345u64.to_be_bytes();
    let scope = Scope {
        state: s,
        key_group: key_group_of(&probe, MAX_PAR),
        key: &probe,
        namespace: b"",
    };
    assert_eq!(r.get(scope, b"")?, b.get(scope, b"")?);
    println!(
        "{{\"state_bytes\":{},\"entries\":{entries},\"changed_entries\":{changed},\
         \"load_secs\":{load_secs:.1},\"chk1_bytes_total\":{},\"chk1_secs\":{:.2},\
         \"chk2_bytes_total\":{},\"chk2_bytes_uploaded\":{},\"chk2_files_total\":{},\
         \"chk2_files_uploaded\":{},\"chk2_files_reused\":{},\"chk2_uploaded_fraction\":{:.4},\
         \"chk2_secs\":{:.2},\"restore_secs\":{restore_secs:.2}}}",
        entries * VALUE as u64,
        first.bytes_total,
        first.duration.as_secs_f64(),
        second.bytes_total,
        second.bytes_uploaded,
        second.files_total,
        second.files_uploaded,
        second.files_reused,
        second.bytes_uploaded as f64 / second.bytes_total.max(1) as f64,
        second.duration.as_secs_f64(),
    );
    drop((b, r));
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
