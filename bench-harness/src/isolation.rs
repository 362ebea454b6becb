//! One process per run: each backend/configuration of a comparison runs in a child process of
//! the `statekit` tool, so that no run's heap, allocator state or threads leak into the next
//! and each run's resident memory is measured from its own process start. The parent writes a
//! [`RunRequest`] file, starts `statekit run-one REQUEST RESULT`, and reads the child's
//! [`RunResult`]; a child that dies (a crash, the kernel's out-of-memory killer) or overruns
//! its time limit becomes an error row, and the other runs still go on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statekit_backend::{Error, Result};

use crate::backends::{BackendKind, BackendSpec};
use crate::results::RunResult;

/// jemalloc's settings for the runs' processes, unless `MALLOC_CONF` is set already. By
/// default jemalloc keeps freed pages for 10 s before returning them to the OS, so the RSS
/// of a budgeted RocksDB process includes pages that compactions and block-cache evictions
/// freed seconds ago. A background thread returns them after 250 ms. Measured on the
/// 3.7M-event ad-click run at 256 MiB with the configuration `statekit tune` derives (rule
/// 306-308 MiB): with the page cache, 1 s peaked at 300-316 MiB (4 runs, 2 over the rule)
/// at 127-133k events/s, 250 ms at 288 MiB (2 runs) at 122-125k (0.95x), 500 ms at
/// 291-296 MiB; returning them at once, 265 MiB but 96-98k (0.74x: a `madvise` per freed
/// run). With direct I/O 250 ms cost nothing measurable (71-79k against 75-78k events/s,
/// 288-289 against 290-302 MiB). Feature-concat's validate run (48 MiB, direct I/O): 0 ms
/// 114-115 MiB at 0.90-0.93x the speed of 1 s (124 MiB); 250 ms 119 MiB at 0.96x.
///
/// One arena for all threads: each arena keeps its own freed pages and partly used runs,
/// and jemalloc's default of four per core gives the RocksDB backend's prefetch threads
/// arenas of their own, whose blocks other threads free. The same ad-click run with
/// prefetching (tuned, direct I/O, 2 pairs alternated) peaked at 295.0 and 312.7 MiB
/// (rule ~307) with the default arenas and at 283.4 and 284.7 MiB with one, at the same
/// speed (91.0-93.9k against 92.1-95.2k events/s).
pub const RUN_MALLOC_CONF: &str =
    "background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0,narenas:1";

/// jemalloc's settings for runs of the in-memory backend, whose heap is the state and which
/// has no budget to keep RSS within:
/// - transparent huge pages: an ad-click memory run spent about a sixth of its operator
///   thread's time faulting in and zeroing fresh 4 KiB pages; with huge pages its page
///   faults fell from 192k to 9k (1M events), and the 3.7M-event run took 0.85x the wall
///   time (5 interleaved pairs, each 1.04x to 1.31x faster) at the same peak RSS. Not for
///   budgeted backends: a partly used huge page counts 2 MiB against the budget.
/// - freed pages kept 10 s (jemalloc's default) instead of returned within a second as
///   [`RUN_MALLOC_CONF`] does: the cleanup frees of ad-click's 3.7M-event run were purged
///   (`madvise`, a TLB shootdown each) and faulted in again by the next appends; kept, the
///   run went 1.06x to 1.26x faster than with 1 s (budgeted runs' setting then) in 5
///   interleaved pairs (211-244k to 228-308k events/s) at the same peak RSS (1,624 MiB).
pub const MEMORY_RUN_MALLOC_CONF: &str = "background_thread:true,dirty_decay_ms:10000,\
     muzzy_decay_ms:0,thp:always,metadata_thp:always";

/// The `MALLOC_CONF` a child process runs `request` with (unless the environment sets one).
pub fn run_malloc_conf(request: &RunRequest) -> String {
    let spec = match request {
        RunRequest::Bench { spec, .. } => spec.as_ref(),
        RunRequest::Replay { spec, .. } => spec.as_ref(),
    };
    match spec {
        Some(spec) if spec.kind == BackendKind::Memory => MEMORY_RUN_MALLOC_CONF.to_string(),
        _ => RUN_MALLOC_CONF.to_string(),
    }
}

/// What allocates in a run's process, for the report. A child process is the `statekit`
/// tool, whose allocator is jemalloc in every build, reading `MALLOC_CONF`. Runs in the
/// calling process use its allocator: jemalloc where this crate links RocksDB (whose
/// `jemalloc` feature makes it the process's `malloc`), else whatever the caller set up.
pub fn allocator_description(isolation: &Isolation) -> String {
    let conf = std::env::var("MALLOC_CONF");
    match (isolation, conf) {
        (Isolation::ChildProcess { .. }, Ok(conf)) => {
            format!("jemalloc, MALLOC_CONF={conf} (from the environment)")
        }
        (Isolation::ChildProcess { .. }, Err(_)) => format!(
            "jemalloc, MALLOC_CONF={RUN_MALLOC_CONF} (memory-backend runs: \
             {MEMORY_RUN_MALLOC_CONF})"
        ),
        (Isolation::InProcess, Ok(conf)) if cfg!(feature = "rocksdb") => {
            format!("jemalloc, MALLOC_CONF={conf} (from the environment)")
        }
        (Isolation::InProcess, Err(_)) if cfg!(feature = "rocksdb") => {
            "jemalloc with its default settings".to_string()
        }
        (Isolation::InProcess, _) => "the calling process's own allocator (in the statekit \
                                      tool: jemalloc, with MALLOC_CONF if set)"
            .to_string(),
    }
}

/// How the runs of one comparison are kept apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Every run in the calling process, one after another (library use and tests). Memory
    /// figures of later runs then include what earlier runs left on the heap.
    InProcess,
    /// Every run in its own child process, started from `exe` (the `statekit` tool).
    ChildProcess {
        /// The `statekit` executable.
        exe: PathBuf,
    },
}

impl Isolation {
    /// Child processes of the running executable: what the `statekit` tool uses.
    ///
    /// # Errors
    /// `Internal` if the OS cannot name the running executable.
    pub fn child_processes() -> Result<Isolation> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("the path of the running statekit executable", e))?;
        Ok(Isolation::ChildProcess { exe })
    }
}

/// What a child process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunRequest {
    /// A profile's workload on one backend (`statekit bench`).
    Bench {
        /// The profile file (the child reads it again).
        profile: PathBuf,
        /// The scale name.
        scale: String,
        /// The backend and configuration; `None` runs the operator on a backend that stores
        /// nothing, which measures the harness's own footprint.
        spec: Option<BackendSpec>,
        /// The memory budget in force.
        memory_budget: Option<u64>,
        /// Events from this file instead of the generator.
        input: Option<PathBuf>,
        /// The run's private working directory.
        work_dir: PathBuf,
        /// Show a progress bar.
        progress: bool,
    },
    /// A trace replayed on one backend (`statekit replay`).
    Replay {
        /// The trace file.
        trace: PathBuf,
        /// The backend and configuration; `None` replays the trace on a backend that stores
        /// nothing, which measures the harness's own footprint.
        spec: Option<BackendSpec>,
        /// The memory budget in force.
        memory_budget: Option<u64>,
        /// The run's private working directory.
        work_dir: PathBuf,
        /// Show a progress bar.
        progress: bool,
    },
}

/// A run's label as a file or directory name (`rocksdb/flink-default` -> `rocksdb-flink-default`).
pub fn file_stem(label: &str) -> String {
    label.replace(['/', ' ', '(', ')'], "-")
}

/// Writes `value` as JSON to `path` through a temporary file and a rename, so a reader never
/// sees half a file.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
        Error::new(
            statekit_backend::ErrorKind::Internal,
            format!("encoding {}: {e}", path.display()),
        )
    })?;
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
}

/// Reads a JSON file another statekit process wrote; a damaged one is `Corruption` naming it.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::corruption(format!("{}: {e}", path.display())))
}

/// Runs `request` in a child process of `exe` and returns its result. `label` names the run
/// in errors. With `time_limit`, a child still running after it is killed and the run is
/// reported as stopped.
///
/// # Errors
/// Only for a request file that cannot be written; everything that goes wrong in the child
/// (including its death) is reported in the returned run's `error`, so a comparison goes on.
pub fn run_in_child(
    exe: &Path,
    request: &RunRequest,
    request_dir: &Path,
    time_limit: Option<Duration>,
    mut failed: RunResult,
) -> Result<RunResult> {
    let stem = file_stem(&failed.label);
    let request_path = request_dir.join(format!("{stem}.request.json"));
    let result_path = request_dir.join(format!("{stem}.result.json"));
    let _ = std::fs::remove_file(&result_path);
    write_json(&request_path, request)?;
    let started = Instant::now();
    let mut command = Command::new(exe);
    if std::env::var_os("MALLOC_CONF").is_none() {
        command.env("MALLOC_CONF", run_malloc_conf(request));
    }
    let mut child = match command
        .arg("run-one")
        .arg(&request_path)
        .arg(&result_path)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            failed.error = Some(format!("could not start {}: {e}", exe.display()));
            return Ok(failed);
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for the run's process: {e}")),
        }
        if let Some(limit) = time_limit.filter(|l| started.elapsed() > *l) {
            let _ = child.kill();
            let _ = child.wait();
            break Err(format!(
                "stopped: still running after the time limit of {}",
                humantime::format_duration(limit)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&request_path);
    let outcome = match status {
        Err(message) => Err(message),
        Ok(status) if status.success() => {
            read_json::<RunResult>(&result_path).map_err(|e| format!("the run's result: {e}"))
        }
        Ok(status) => Err(describe_failure(status)),
    };
    let _ = std::fs::remove_file(&result_path);
    Ok(match outcome {
        Ok(run) => run,
        Err(message) => {
            failed.wall_seconds = started.elapsed().as_secs_f64();
            failed.error = Some(message);
            failed
        }
    })
}

fn describe_failure(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => "the run's process was killed (SIGKILL: the kernel's out-of-memory killer \
                    or a container limit, most likely)"
            .to_string(),
        Some(sig) => format!("the run's process died of signal {sig}"),
        None => {
            format!("the run's process exited with {status} without a result (its error is above)")
        }
    }
}

/// The child's side: reads the request, runs it, writes the result. A run that fails still
/// writes its result (with the error in it); only an unreadable request or an unwritable
/// result is an error here.
///
/// # Errors
/// I/O and decoding errors of the two files.
pub fn serve_request(request: &Path, result: &Path) -> Result<()> {
    let request: RunRequest = read_json(request)?;
    let run = crate::runner::run_request(&request)?;
    write_json(result, &run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = RunRequest::Replay {
            trace: "t.sktrace".into(),
            spec: Some(BackendSpec {
                kind: crate::backends::BackendKind::Memory,
                config: None,
                rocksdb: None,
            }),
            memory_budget: Some(1 << 20),
            work_dir: "w".into(),
            progress: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_json(&path, &r).unwrap();
        assert_eq!(read_json::<RunRequest>(&path).unwrap(), r);
        std::fs::write(&path, "{").unwrap();
        let err = read_json::<RunRequest>(&path).unwrap_err().to_string();
        assert!(err.contains("r.json"), "{err}");
    }

    #[test]
    fn only_memory_backend_runs_get_huge_pages_and_keep_freed_pages() {
        let bench = |kind: Option<BackendKind>| RunRequest::Bench {
            profile: "p.toml".into(),
            scale: "quick".into(),
            spec: kind.map(|kind| BackendSpec {
                kind,
                config: None,
                rocksdb: None,
            }),
            memory_budget: None,
            input: None,
            work_dir: "w".into(),
            progress: false,
        };
        let memory = run_malloc_conf(&bench(Some(BackendKind::Memory)));
        assert!(memory.contains("thp:always,metadata_thp:always"));
        assert!(memory.contains("dirty_decay_ms:10000"));
        for budgeted in [Some(BackendKind::Rocksdb), Some(BackendKind::Remote), None] {
            let conf = run_malloc_conf(&bench(budgeted));
            assert_eq!(conf, RUN_MALLOC_CONF);
            // Freed pages go back within a quarter second: at 1 s, ad-click's tuned run at
            // 256 MiB went over the budget rule.
            assert!(conf.contains("dirty_decay_ms:250") && !conf.contains("thp:always"));
            assert!(conf.contains("narenas:1"));
        }
    }
}
