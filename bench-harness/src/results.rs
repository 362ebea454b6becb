//! `results.json`: every figure of a run, the profile, the configuration and the machine.
//! Reports are rendered from this file alone, so they can be regenerated later
//! (`statekit report results.json --out DIR`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use statekit_backend::{BackendStats, Error, Result};

use crate::metrics::{OpSummary, ResourceSample, Volume};
use crate::workloads::CheckOutcome;

/// Version of the results schema.
pub const RESULTS_VERSION: u32 = 1;

/// The whole results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Schema version.
    pub version: u32,
    /// `statekit <version>`.
    pub tool: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// What ran: `bench` or `replay`.
    pub mode: String,
    /// The workload (bench runs).
    pub workload: Option<WorkloadInfo>,
    /// The trace (replay runs).
    pub trace: Option<TraceInfo>,
    /// The machine.
    pub machine: Machine,
    /// One entry per backend/configuration pair.
    pub runs: Vec<RunResult>,
    /// Whether the result counters are equal across runs.
    pub comparison: Comparison,
    /// What the harness itself holds, measured by a run on a backend that stores nothing
    /// (runs in processes of their own).
    #[serde(default)]
    pub harness: Option<HarnessFootprint>,
    /// The memory allocator of the runs' processes and its settings.
    #[serde(default)]
    pub allocator: Option<String>,
}

/// The harness's own memory: the same input through the same operator (or the same trace
/// replayed), in a process of its own like the runs, on a backend that stores nothing. What
/// a run's peak RSS holds beyond this is the backend's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarnessFootprint {
    /// Peak resident memory of that process, bytes.
    pub peak_rss_bytes: u64,
    /// Resident memory before its operator started, bytes.
    pub baseline_rss_bytes: u64,
    /// Events it read.
    pub events: u64,
    /// Why the measurement failed, if it did.
    pub error: Option<String>,
}

impl HarnessFootprint {
    /// The footprint measured by `run`.
    pub fn of(run: &RunResult) -> HarnessFootprint {
        HarnessFootprint {
            peak_rss_bytes: run.peak_rss_bytes,
            baseline_rss_bytes: run.baseline_rss_bytes,
            events: run.events,
            error: run.error.clone(),
        }
    }

    /// The most resident memory a run under `budget` may hold: the budget with the
    /// documented 10% allowance, plus the harness's own footprint.
    pub fn rss_limit(&self, budget: u64) -> u64 {
        budget + budget / 10 + self.peak_rss_bytes
    }
}

/// The workload of a bench run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// Profile name.
    pub profile: String,
    /// Profile file.
    pub profile_path: String,
    /// Workload name.
    pub workload: String,
    /// Profile description.
    pub description: String,
    /// Scale name.
    pub scale: String,
    /// The scale's settings.
    pub scale_spec: serde_json::Value,
    /// The workload's parameters.
    pub params: serde_json::Value,
    /// Seed.
    pub seed: u64,
    /// Where the events came from: `generator` or the input file.
    pub input: String,
    /// The memory budget in force, if any.
    pub memory_budget: Option<u64>,
}

/// The trace of a replay run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceInfo {
    /// Trace file.
    pub path: String,
    /// Records.
    pub records: u64,
    /// Size of the file, bytes.
    pub bytes: u64,
    /// The memory budget in force.
    #[serde(default)]
    pub memory_budget: Option<u64>,
}

/// What the runs ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name.
    pub host: String,
    /// OS and version.
    pub os: String,
    /// Kernel version.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Physical memory, bytes.
    pub memory_bytes: u64,
    /// The disk holding the working directory: mount point, file system, total and free bytes.
    pub disk: Option<DiskInfo>,
    /// Versions of the tool and its backends.
    pub versions: BTreeMap<String, String>,
}

/// A disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Mount point.
    pub mount: String,
    /// File system.
    pub file_system: String,
    /// Total bytes.
    pub total_bytes: u64,
    /// Free bytes.
    pub available_bytes: u64,
}

impl Machine {
    /// Describes this machine; `work_dir` picks the disk.
    pub fn detect(work_dir: &Path) -> Machine {
        use sysinfo::{Disks, System};
        let mut sys = System::new();
        sys.refresh_memory();
        sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        let disks = Disks::new_with_refreshed_list();
        let dir = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
        let disk = disks
            .list()
            .iter()
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map(|d| DiskInfo {
                mount: d.mount_point().display().to_string(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            });
        let mut versions = BTreeMap::new();
        versions.insert("statekit".into(), env!("CARGO_PKG_VERSION").to_string());
        versions.insert("rustc-target".into(), std::env::consts::ARCH.to_string());
        if cfg!(feature = "rocksdb") {
            versions.insert("rocksdb-backend".into(), "enabled".into());
        }
        Machine {
            host: System::host_name().unwrap_or_default(),
            os: System::long_os_version().unwrap_or_default(),
            kernel: System::kernel_version().unwrap_or_default(),
            cpu: sys
                .cpus()
                .first()
                .map(|c| c.brand().trim().to_string())
                .unwrap_or_default(),
            cores: sys.cpus().len(),
            memory_bytes: sys.total_memory(),
            disk,
            versions,
        }
    }
}

/// One checkpoint taken during a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckpointResult {
    /// Checkpoint id.
    pub id: u64,
    /// Watermark (event time) when it was taken.
    pub watermark: i64,
    /// Wall time it took, ms.
    pub duration_ms: f64,
    /// Bytes it added to storage: what the backend measures where it can (the remote
    /// backend lists its store), else the growth of the local checkpoint directory.
    pub bytes: u64,
    /// Bytes of everything it references, data shared with earlier checkpoints included, if
    /// the backend measures it.
    #[serde(default)]
    pub total_bytes: Option<u64>,
}

/// One backend/configuration pair's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Label (`rocksdb/flink-default`).
    pub label: String,
    /// Backend name.
    pub backend: String,
    /// Configuration (preset or file), if any.
    pub config: Option<String>,
    /// The error that ended the run early, if any.
    pub error: Option<String>,
    /// Events processed.
    pub events: u64,
    /// Wall-clock seconds of the run: from the first event to the backend closed, without
    /// opening it and without the harness's measurements (statistics, checkpoint sizes).
    pub wall_seconds: f64,
    /// Events per second of `wall_seconds - input_seconds`.
    pub events_per_sec: f64,
    /// State operations.
    pub state_ops: u64,
    /// State operations per second of `wall_seconds - input_seconds`.
    pub ops_per_sec: f64,
    /// Latency per operation kind.
    pub ops: BTreeMap<String, OpSummary>,
    /// Latency per operation kind up to the end of the input, before the final watermark
    /// drains the state (bench runs only): the steady state, without the drain's bulk
    /// cleanups.
    #[serde(default)]
    pub ops_before_drain: BTreeMap<String, OpSummary>,
    /// Per operation kind, the end-of-input drain alone (bench runs only): `ops` is these
    /// and `ops_before_drain` together.
    #[serde(default)]
    pub ops_drain: BTreeMap<String, OpSummary>,
    /// Per state (by name) and operation kind, the whole run: where the state work's time
    /// went. Calls of no single state (write batches spanning states, checkpoints) are under
    /// [`NO_SINGLE_STATE`](crate::metrics::NO_SINGLE_STATE).
    #[serde(default)]
    pub ops_by_state: BTreeMap<String, BTreeMap<String, OpSummary>>,
    /// Data volumes.
    pub volume: Volume,
    /// The operator's result counters (equal across backends for the same input).
    pub counters: BTreeMap<String, u64>,
    /// Self-checks against an independent computation (empty if not run).
    pub checks: Vec<CheckOutcome>,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Resident memory when the run started, bytes.
    pub baseline_rss_bytes: u64,
    /// Bytes on disk under the run's directory at the end.
    pub disk_bytes: u64,
    /// Resource use over time.
    pub samples: Vec<ResourceSample>,
    /// The backend's own statistics.
    pub backend_stats: BackendStats,
    /// Bytes written to disk / bytes put, if the backend knows both.
    pub write_amplification: Option<f64>,
    /// Disk bytes / live logical bytes, if known.
    pub space_amplification: Option<f64>,
    /// Block or object cache hit rate, if known.
    pub cache_hit_rate: Option<f64>,
    /// Hit rate of index and filter lookups in the block cache, if known: whether the
    /// state's indexes and filters still fit.
    #[serde(default)]
    pub meta_cache_hit_rate: Option<f64>,
    /// Checkpoints taken.
    pub checkpoints: Vec<CheckpointResult>,
    /// Replay only: reads whose results differed from the recording.
    pub divergent_reads: Option<u64>,
    /// Whether the backend read and compacted with direct I/O (bypassing the page cache, so
    /// the memory budget is real); otherwise the OS page cache may hold state beyond it.
    #[serde(default)]
    pub direct_io: bool,
    /// The backend's statistics after the last input event, before the final watermark
    /// drained the state: the state at its fullest (bench runs only).
    #[serde(default)]
    pub stats_at_end_of_input: Option<BackendStats>,
    /// Of `wall_seconds`, the end-of-input drain: the final watermark firing every timer
    /// still pending (bench runs only).
    #[serde(default)]
    pub drain_seconds: f64,
    /// Of `wall_seconds`, the time spent waiting for input events (bench runs only; they are
    /// generated or parsed ahead on a thread of their own): the harness's, left out of the
    /// rates.
    #[serde(default)]
    pub input_seconds: f64,
    /// Of `wall_seconds`, closing the backend after the drain: where LSM backends finish
    /// what they still owe (bench runs only).
    #[serde(default)]
    pub close_seconds: f64,
}

impl RunResult {
    /// A run of `spec` that has not measured anything yet.
    pub fn empty(spec: &crate::backends::BackendSpec) -> RunResult {
        RunResult {
            label: spec.label(),
            backend: spec.kind.name().to_string(),
            config: spec.config.clone(),
            error: None,
            events: 0,
            wall_seconds: 0.0,
            events_per_sec: 0.0,
            state_ops: 0,
            ops_per_sec: 0.0,
            ops: Default::default(),
            ops_before_drain: Default::default(),
            ops_drain: Default::default(),
            ops_by_state: Default::default(),
            volume: Default::default(),
            counters: Default::default(),
            checks: Vec::new(),
            peak_rss_bytes: 0,
            baseline_rss_bytes: 0,
            disk_bytes: 0,
            samples: Vec::new(),
            backend_stats: Default::default(),
            write_amplification: None,
            space_amplification: None,
            cache_hit_rate: None,
            meta_cache_hit_rate: None,
            checkpoints: Vec::new(),
            divergent_reads: None,
            direct_io: false,
            stats_at_end_of_input: None,
            drain_seconds: 0.0,
            input_seconds: 0.0,
            close_seconds: 0.0,
        }
    }

    /// Whether the run finished and all its checks passed.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.passed)
    }
}

/// Equality of result counters across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// All finished runs have identical counters.
    pub counters_equal: bool,
    /// Counters that differ between runs.
    pub differing: Vec<String>,
}

impl Comparison {
    /// Compares the counters of the finished runs.
    pub fn of(runs: &[RunResult]) -> Comparison {
        let finished: Vec<&RunResult> = runs.iter().filter(|r| r.error.is_none()).collect();
        let mut differing = Vec::new();
        if let Some(first) = finished.first() {
            let mut names: Vec<&String> = finished.iter().flat_map(|r| r.counters.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                if finished
                    .iter()
                    .any(|r| r.counters.get(name) != first.counters.get(name))
                {
                    differing.push(name.clone());
                }
            }
        }
        Comparison {
            counters_equal: differing.is_empty(),
            differing,
        }
    }
}

impl Results {
    /// The memory budget the runs had, a workload's or a trace's.
    pub fn memory_budget(&self) -> Option<u64> {
        match (&self.workload, &self.trace) {
            (Some(w), _) => w.memory_budget,
            (None, Some(t)) => t.memory_budget,
            (None, None) => None,
        }
    }

    /// Writes `dir/results.json`.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("results.json");
        let json = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::new(
                statekit_backend::ErrorKind::Internal,
                format!("results encoding: {e}"),
            )
        })?;
        std::fs::write(&path, json).map_err(|e| Error::io(path.display(), e))
    }

    /// Reads a results file.
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` naming line and column of malformed JSON.
    pub fn read(path: &Path) -> Result<Results> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{}:{}:{}: not a statekit results file: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })
    }
}
