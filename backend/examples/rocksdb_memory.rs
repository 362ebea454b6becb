//! Resident memory against the memory budget, with more state than the budget.
//!
//! Writes `--state-mib` of state (incompressible values, random keys over several states and
//! instances sharing one budget), then reads random keys, sampling the process's RSS; prints
//! one JSON line with the budget, the peak RSS and the RSS at the end.
//!
//! ```text
//! cargo run --release -p statekit-backend --features rocksdb --example rocksdb_memory -- \
//!     --budget-mib 256 --state-mib 2048
//! ```
//! Allocation goes through jemalloc (RocksDB's C++ too: the `jemalloc` feature of the
//! `rocksdb` crate links it), which keeps fragmentation from inflating RSS.

use std::time::Instant;

use statekit_backend::rocksdb::{MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings};
use statekit_backend::{
    key_group_of, InstanceConfig, KeyGroupRange, Scope, StateBackend, StateDescriptor, StateKind,
    StateRead, StateWrite,
};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MAX_PAR: u16 = 128;
const VALUE: usize = 1000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

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
}

fn main() -> statekit_backend::Result<()> {
    let budget_mib = arg("--budget-mib", 256);
    let state_mib = arg("--state-mib", 2048);
    let instances = arg("--instances", 2) as u32;
    let dir = std::env::temp_dir().join(format!("statekit-memory-{}", std::process::id()));
    let resources = RocksDbResources::new(MemoryBudget::new(budget_mib << 20))?;
    let baseline = rss_bytes();
    let mut backends = Vec::new();
    for i in 0..instances {
        let range = KeyGroupRange::for_operator(u32::from(MAX_PAR), instances, i)?;
        let config = InstanceConfig::single(MAX_PAR)?.with_key_groups(range);
        let mut b = RocksDbBackend::open(config, RocksDbSettings::new(&dir, resources.clone()))?;
        let states = (0..4)
            .map(|s| b.register_state(&StateDescriptor::new(format!("s{s}"), StateKind::Map)))
            .collect::<statekit_backend::Result<Vec<_>>>()?;
        backends.push((range, b, states));
    }
    let entries = (state_mib << 20) / VALUE as u64;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut value = vec![0u8; VALUE];
    let mut peak = 0u64;
    let started = Instant::now();
    let key_count = entries / 16;
    for n in 0..entries {
        for chunk in value.chunks_mut(8) {
            let r = rng.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        let key = (rng.next() % key_count).to_be_bytes();
        let kg = key_group_of(&key, MAX_PAR);
        let (_, b, states) = backends
            .iter_mut()
            .find(|(r, _, _)| r.contains(kg))
            .expect("ranges cover all key groups");
        let scope = Scope {
            state: states[(n % 4) as usize],
            key_group: kg,
            key: &key,
            namespace: b"",
        };
        b.put(scope, &n.to_be_bytes(), &value)?;
        if n % 20_000 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    let write_secs = started.elapsed().as_secs_f64();
    let read_started = Instant::now();
    let mut hits = 0u64;
    for _ in 0..200_000u64 {
        let key = (rng.next() % key_count).to_be_bytes();
        let kg = key_group_of(&key, MAX_PAR);
        let (_, b, states) = backends
            .iter()
            .find(|(r, _, _)| r.contains(kg))
            .expect("ranges cover all key groups");
        let scope = Scope {
            state: states[(rng.next() % 4) as usize],
            key_group: kg,
            key: &key,
            namespace: b"",
        };
        let mut found = false;
        b.scan(
            scope,
            statekit_backend::UserKeyRange::all(),
            statekit_backend::Direction::Forward,
            &mut |_, _| {
                found = true;
                Ok(statekit_backend::Visit::Stop)
            },
        )?;
        hits += u64::from(found);
        if hits % 5_000 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    let end = rss_bytes();
    peak = peak.max(end);
    let stats = backends[0].1.rocksdb_stats()?;
    let disk: u64 = backends
        .iter()
        .map(|(_, b, _)| b.rocksdb_stats().map(|s| s.sst_bytes).unwrap_or(0))
        .sum();
    println!(
        "{{\"budget_bytes\":{},\"state_bytes_written\":{},\"sst_bytes\":{disk},\
         \"instances\":{instances},\"baseline_rss\":{baseline},\"peak_rss\":{peak},\
         \"end_rss\":{end},\"peak_over_budget\":{:.3},\"peak_minus_baseline_over_budget\":{:.3},\
         \"cache_usage\":{},\"memtables\":{},\"write_secs\":{write_secs:.1},\
         \"read_secs\":{:.1},\"read_hits\":{hits}}}",
        budget_mib << 20,
        entries * VALUE as u64,
        peak as f64 / (budget_mib << 20) as f64,
        peak.saturating_sub(baseline) as f64 / (budget_mib << 20) as f64,
        stats.block_cache_usage,
        stats.shared_memtable_bytes,
        read_started.elapsed().as_secs_f64(),
    );
    drop(backends);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
