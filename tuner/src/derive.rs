//! The derivation: workload shape and machine in, configuration and reasons out. A pure
//! function: the same input gives the same output, and nothing is measured or read here.
//!
//! Database-wide rules (memory split, threads, I/O, range deletes) live here; the rules of
//! one state's column family in [`crate::state_rules`].

use statekit_backend::rocksdb_config::{budgeted_compaction_readahead, DEFAULT_WRITE_BUFFER_RATIO};

use crate::machine::{DiskKind, Machine};
use crate::shape::WorkloadShape;
use crate::state_rules;
use crate::tuning::{bytes, rate, Tuning};

const MIB: u64 = 1 << 20;
/// The smallest budget the rules are meant for: below it the fixed needs of a few column
/// families (an arena block each, pinned top-level indexes) take most of it.
pub const MIN_BUDGET: u64 = 16 * MIB;

/// Derives a RocksDB configuration for `shape` on `machine`, with a reason per value.
///
/// # Errors
/// A message naming the bad figure when the shape or machine is invalid.
pub fn derive(shape: &WorkloadShape, machine: &Machine) -> Result<Tuning, String> {
    shape.validate()?;
    if machine.cores == 0 {
        return Err("machine.cores must be at least 1".into());
    }
    if machine.memory_budget < MIN_BUDGET {
        return Err(format!(
            "memory budget {} is below the tuner's minimum of {}",
            bytes(machine.memory_budget),
            bytes(MIN_BUDGET)
        ));
    }
    let mut t = Tuning::new();
    let ratio = write_buffer_ratio(shape, machine, &mut t);
    threads(machine, &mut t);
    io(shape, machine, &mut t);
    range_deletes(shape, &mut t);
    let memory = Memory::new(machine.memory_budget, ratio);
    let total_writes: f64 = shape.write_bytes_per_sec();
    for state in &shape.states {
        state_rules::derive(state, shape, machine, &memory, total_writes, &mut t);
    }
    one_memtable_writer(&mut t);
    t.config
        .validate()
        .map_err(|e| format!("the derived configuration is invalid (a tuner bug): {e}"))?;
    Ok(t)
}

/// Hash memtables take one writer at a time; the backend writes from one thread anyway.
fn one_memtable_writer(t: &mut Tuning) {
    let hashed: Vec<String> = t
        .config
        .states
        .iter()
        .filter(|(_, s)| s.cf.hash_skiplist_buckets.unwrap_or(0) > 0)
        .map(|(name, _)| name.clone())
        .collect();
    if hashed.is_empty() {
        return;
    }
    t.config.db.allow_concurrent_memtable_write = Some(false);
    t.explain(
        None,
        "db.allow_concurrent_memtable_write",
        "false",
        "hash memtables accept one writer at a time (RocksDB refuses to open otherwise); \
         a statekit backend instance writes from one thread, so nothing is lost",
        format!("hash memtables: {}", hashed.join(", ")),
    );
}

/// The budget's split, as the RocksDB backend applies it (Flink's managed-memory model).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    /// Block cache capacity.
    pub cache: u64,
    /// Bytes memtables may hold before the write buffer manager flushes (7/8 of its size).
    pub memtables: u64,
}

impl Memory {
    fn new(budget: u64, ratio: f64) -> Self {
        let b = budget as f64;
        let manager = 2.0 * ratio * b / 3.0;
        Memory {
            cache: ((3.0 - ratio) * b / 3.0) as u64,
            memtables: (manager / 8.0 * 7.0) as u64,
        }
    }
}

/// Share of the budget for memtables: writes that fill the default share within seconds
/// want more, read-mostly states want the cache.
fn write_buffer_ratio(shape: &WorkloadShape, machine: &Machine, t: &mut Tuning) -> f64 {
    let writes: f64 = shape.states.iter().map(|s| s.rates.entry_writes()).sum();
    let reads: f64 = shape.states.iter().map(|s| s.rates.reads()).sum();
    let read_share = if writes + reads > 0.0 {
        reads / (writes + reads)
    } else {
        0.0
    };
    let default_memtables =
        Memory::new(machine.memory_budget, DEFAULT_WRITE_BUFFER_RATIO).memtables;
    let write_bytes = shape.write_bytes_per_sec();
    let fill_secs = if write_bytes > 0.0 {
        default_memtables as f64 / write_bytes
    } else {
        f64::INFINITY
    };
    let (ratio, rule) = if read_share > 0.7 {
        (
            0.3,
            "reads are over 70% of operations: give the block cache more (Vivo's field \
             guidance: lower the write-buffer ratio for read-heavy jobs)",
        )
    } else if fill_secs < 5.0 {
        (
            0.6,
            "writes fill Flink's default memtable share (ratio 0.5) in under 5 s: larger \
             memtables mean fewer, larger L0 files and less compaction per byte",
        )
    } else {
        (
            DEFAULT_WRITE_BUFFER_RATIO,
            "neither read-mostly nor filling memtables within 5 s: Flink's default split",
        )
    };
    t.config.backend.write_buffer_ratio = Some(ratio);
    let memory = Memory::new(machine.memory_budget, ratio);
    t.explain(
        None,
        "backend.write_buffer_ratio",
        format!("{ratio}"),
        format!(
            "{rule}. The cache gets (3 - r) x B / 3 = {}, the write buffer manager 2 x r x B / 3 \
             and flushes at 7/8 of it: {} of memtables",
            bytes(memory.cache),
            bytes(memory.memtables)
        ),
        format!(
            "budget {}, reads {:.0}/s and entry writes {:.0}/s (reads {:.0}%), memtable writes \
             {} fill the default share in {}",
            bytes(machine.memory_budget),
            reads,
            writes,
            read_share * 100.0,
            rate(write_bytes),
            if fill_secs.is_finite() {
                format!("{fill_secs:.1} s")
            } else {
                "never".into()
            }
        ),
    );
    ratio
}

/// Background jobs and subcompactions from the cores (TiKV's formulas).
fn threads(machine: &Machine, t: &mut Tuning) {
    let cores = machine.cores as i32;
    let jobs = match machine.disk.kind {
        // A spinning disk serves one sequential stream well; more jobs make it seek.
        DiskKind::Hdd => 2,
        DiskKind::Ssd => (cores - 1).clamp(2, 8),
    };
    t.config.db.max_background_jobs = Some(jobs);
    t.explain(
        None,
        "db.max_background_jobs",
        jobs.to_string(),
        match machine.disk.kind {
            DiskKind::Hdd => "a spinning disk: two jobs (one flush, one compaction) keep its \
                              I/O sequential"
                .to_string(),
            DiskKind::Ssd => "cores - 1, at least 2 (one flush and one compaction), at most 8 \
                              (TiKV: max(2, min(9, cores - 1))): the job's own thread keeps a core"
                .to_string(),
        },
        format!("{} cores, {:?} disk", machine.cores, machine.disk.kind),
    );
    let flushes = (jobs + 3) / 4;
    let compactions = jobs - flushes;
    let subcompactions = (compactions - 1).clamp(1, 3) as u32;
    t.config.db.max_subcompactions = Some(subcompactions);
    t.explain(
        None,
        "db.max_subcompactions",
        subcompactions.to_string(),
        "compaction threads - 1, from 1 to 3 (TiKV): an L0->L1 compaction, which cannot run \
         beside another, is split across the idle compaction threads",
        format!("{jobs} jobs: {flushes} for flushes, {compactions} for compactions"),
    );
}

/// Direct I/O, readahead, syncing and the rate limiter.
fn io(shape: &WorkloadShape, machine: &Machine, t: &mut Tuning) {
    let direct = machine.direct_io;
    t.config.db.use_direct_reads = Some(direct);
    t.config.db.use_direct_io_for_flush_and_compaction = Some(direct);
    let why = if direct {
        "the budget is real: the page cache must not hold state beside it"
    } else {
        "the page cache is allowed and serves reads the block cache misses"
    };
    for key in [
        "db.use_direct_reads",
        "db.use_direct_io_for_flush_and_compaction",
    ] {
        t.explain(None, key, direct.to_string(), why, "machine: direct_io");
    }
    if direct {
        let readahead = budgeted_compaction_readahead(machine.memory_budget);
        t.config.db.compaction_readahead_size = Some(readahead);
        t.explain(
            None,
            "db.compaction_readahead_size",
            bytes(readahead),
            "with direct I/O compaction inputs get no readahead from the OS, so long reads keep \
             them sequential (RocksDB's guidance: 2 MiB); each input file of a compaction holds \
             one such buffer outside the cache, about 26 at once in an L0 compaction, so it is \
             budget / 512 (at most 5% of it), between 256 KiB and 2 MiB",
            "machine: direct_io, memory_budget",
        );
    }
    let sync = MIB;
    t.config.db.bytes_per_sync = Some(sync);
    t.explain(
        None,
        "db.bytes_per_sync",
        bytes(sync),
        "sync flush and compaction output every 1 MiB instead of all at the file's end, so \
         writes reach the disk smoothly and reads do not queue behind a burst (RocksDB \
         Advisor's rule for read latency spikes)",
        "always",
    );
    let bandwidth = machine
        .disk
        .seq_write_bytes_per_sec
        .or(match machine.disk.kind {
            DiskKind::Hdd => Some(100 * MIB),
            DiskKind::Ssd => None,
        });
    if let Some(bandwidth) = bandwidth {
        let limit = bandwidth / 10 * 8;
        t.config.backend.rate_limit_bytes_per_sec = Some(limit);
        t.explain(
            None,
            "backend.rate_limit_bytes_per_sec",
            bytes(limit),
            "80% of the disk's sequential write bandwidth for flushes and compactions \
             (auto-tuned: RocksDB lowers it while demand is low), so reads keep a share of \
             the disk (TiKV turns on the auto-tuned limiter)",
            match machine.disk.seq_write_bytes_per_sec {
                Some(_) => format!("measured sequential writes {}", rate(bandwidth as f64)),
                None => "a spinning disk, assumed 100 MiB/s".to_string(),
            },
        );
        // Leveled compaction rewrites each byte about 10 times at the bottom levels.
        let needed = shape.write_bytes_per_sec() * 10.0;
        if needed > limit as f64 {
            t.warnings.push(format!(
                "the workload writes {} into memtables; with leveled compaction's ~10x write \
                 amplification that is {} of disk writes, above the {} the disk can give: \
                 expect write stalls whatever the configuration",
                rate(shape.write_bytes_per_sec()),
                rate(needed),
                rate(limit as f64)
            ));
        }
    }
}

/// Whether small range deletes become point deletes (statekit's `point_delete_limit`).
fn range_deletes(shape: &WorkloadShape, t: &mut Tuning) {
    let Some(widest) = shape
        .states
        .iter()
        .filter(|s| s.rates.range_deletes > 0.0)
        .map(|s| (s.range_delete_keys, s.name.as_str()))
        .max_by(|a, b| a.0.total_cmp(&b.0))
    else {
        return;
    };
    let (keys, state) = widest;
    let limit = if keys <= 256.0 {
        ((keys * 2.0).ceil() as usize).max(16)
    } else {
        0
    };
    t.config.backend.point_delete_limit = Some(limit);
    let rule = if limit > 0 {
        format!(
            "range deletes cover {keys:.1} keys on average: reading that few keys and deleting \
             each costs one seek into data the job has just written, while a range tombstone \
             costs every later read in its range and a size estimate at each flush and \
             compaction (a sliding window on the default tombstones never finished); twice \
             the mean leaves room for wider ranges"
        )
    } else {
        format!(
            "range deletes cover {keys:.0} keys on average: reading them all to delete each \
             would cost more than one tombstone"
        )
    };
    t.explain(
        None,
        "backend.point_delete_limit",
        limit.to_string(),
        rule,
        format!("widest range deletes: state '{state}', {keys:.1} keys each"),
    );
}
