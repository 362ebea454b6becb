//! `statekit-timely`: a reference operator of the harness (the ad-click interval join,
//! feature-concat, sliding-window) on timely dataflow, with keyed state in statekit.
//!
//! ```text
//! statekit-timely PROFILE [--scale quick] [--input EVENTS.csv] [--backend memory]
//!     [--config FILE] [--memory-budget 256MiB] [--out DIR]
//!     [--checkpoint-interval 2m] [--checkpoint-dir DIR] [--restore latest|job-K]
//!     [-- TIMELY OPTIONS]
//! ```
//! Timely's options after `--`: `-w N` worker threads per process, `-n N` processes, `-p I`
//! this process's index, `-h FILE` the host file (one `host:port` per process).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use statekit_backend::{Error, ErrorKind, Result};
use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::profile::Profile;
use statekit_timely::{run_worker, CheckpointDir, CheckpointSpec, JobReport, JobSpec};

// jemalloc, as the statekit tool: the allocator RocksDB is built against.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "statekit-timely",
    about = "Run a statekit reference operator on timely dataflow workers and processes"
)]
struct Cli {
    /// The workload profile (TOML).
    profile: PathBuf,
    /// The profile's scale: what is generated without `--input`.
    #[arg(long, default_value = "quick")]
    scale: String,
    /// Events written by `statekit generate` instead of the generator.
    #[arg(long)]
    input: Option<PathBuf>,
    /// memory, rocksdb or remote: every worker opens one instance for its key groups.
    #[arg(long, default_value = "memory")]
    backend: String,
    /// A configuration preset or file for the backend (as `statekit bench --config`).
    #[arg(long)]
    config: Option<String>,
    /// Memory budget of each worker's backend, like 256MiB (RocksDB then uses direct I/O).
    #[arg(long, value_parser = statekit_bench::util::parse_size)]
    memory_budget: Option<u64>,
    /// Output directory: `results.json` (written by process 0) and the workers' files.
    #[arg(long, default_value = "statekit-timely-results")]
    out: PathBuf,
    /// Checkpoint every this much event time (like 2m): every worker's state and the
    /// source's offset at a consistent cut.
    #[arg(long, value_parser = statekit_bench::util::parse_duration)]
    checkpoint_interval: Option<std::time::Duration>,
    /// Where checkpoints go and restores read from (default OUT/checkpoints); with several
    /// machines, a shared file system.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Start from a complete checkpoint of the checkpoint directory: `latest`, or `job-K`
    /// for checkpoint K. Any number of workers and processes may restore it.
    #[arg(long)]
    restore: Option<String>,
    /// Fault injection (tests): the process of worker 0 exits at once, without cleaning up,
    /// after completing N checkpoints; the other processes go down with it.
    #[arg(long, value_name = "N")]
    exit_after_checkpoints: Option<u64>,
    /// Timely's options: -w workers per process, -n processes, -p process index, -h hosts.
    #[arg(last = true)]
    timely: Vec<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statekit-timely: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let profile = Profile::load(&cli.profile)?;
    let scale = profile.scale(&cli.scale)?.clone();
    let kind = BackendKind::from_name(&cli.backend).ok_or_else(|| {
        Error::invalid(format!(
            "unknown backend '{}' (memory, rocksdb or remote)",
            cli.backend
        ))
    })?;
    let checkpoint_dir = cli
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| cli.out.join("checkpoints"));
    let restore = match cli.restore.as_deref() {
        None => None,
        Some("latest") => Some(Arc::new(CheckpointDir::load(&checkpoint_dir)?)),
        Some(name) => Some(Arc::new(CheckpointDir::load(&checkpoint_dir.join(name))?)),
    };
    let interval = match cli.checkpoint_interval {
        Some(d) if d.as_millis() == 0 => {
            return Err(Error::invalid("--checkpoint-interval must be positive"));
        }
        d => d.map(|d| d.as_millis().min(i64::MAX as u128) as i64),
    };
    let checkpoints = (interval.is_some() || restore.is_some()).then_some(CheckpointSpec {
        dir: checkpoint_dir,
        interval,
    });
    let job = Arc::new(JobSpec {
        profile,
        scale,
        input: cli.input,
        backend: BackendSpec {
            kind,
            config: cli.config,
            rocksdb: None,
        },
        work_dir: cli.out.join("work"),
        memory_budget: cli.memory_budget,
        direct_io: cli.memory_budget.is_some(),
        checkpoints,
        restore,
        exit_after_checkpoints: cli.exit_after_checkpoints,
    });
    std::fs::create_dir_all(&cli.out).map_err(|e| Error::io(cli.out.display(), e))?;
    let worker_job = Arc::clone(&job);
    let guards = timely::execute_from_args(cli.timely.into_iter(), move |worker| {
        run_worker(worker, &worker_job)
    })
    .map_err(|e| Error::invalid(format!("timely options: {e}")))?;
    let mut report: Option<JobReport> = None;
    for result in guards.join() {
        match result {
            Ok(Ok(Some(r))) => report = Some(r),
            Ok(Ok(None)) => {}
            // The worker's own error, with its kind: it names what failed.
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(internal(format!("a worker panicked: {e}"))),
        }
    }
    // Only the process running worker 0 has the job's report.
    let Some(report) = report else { return Ok(()) };
    let path = cli.out.join("results.json");
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| internal(format!("encoding {}: {e}", path.display())))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(path.display(), e))?;
    let pairs = ["joined_pairs", "samples_joined"]
        .iter()
        .find_map(|name| report.counters.get(*name).map(|v| format!(", {name} {v}")))
        .unwrap_or_default();
    println!(
        "{}: {} events on {} workers ({}) in {:.1} s, {:.0} events/s{pairs}; wrote {}",
        report.workload,
        report.events,
        report.workers,
        report.backend,
        report.seconds,
        report.events_per_sec,
        path.display()
    );
    if !report.errors.is_empty() {
        return Err(internal(format!(
            "workers failed: {}",
            report.errors.join("; ")
        )));
    }
    Ok(())
}

fn internal(message: String) -> Error {
    Error::new(ErrorKind::Internal, message)
}
