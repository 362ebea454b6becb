//! `statekit crash-test`: the workload in a child process, killed with SIGKILL at random
//! moments and recovered from its last confirmed checkpoint, must end exactly where a run
//! without crashes ends: the same results (no output lost or counted twice) and the same state.
//!
//! The parent plays the engine:
//! - the source is replayable: the profile's events are written to a file once, and a
//!   checkpoint records how many of them it covers (its offset);
//! - a worker process (`statekit crash-test-worker`) opens the backend, restores the last
//!   confirmed checkpoint if there is one (state, the operator's progress, the offset), skips
//!   the events before the offset and goes on, checkpointing every `checkpoint_every` events:
//!   the backend's checkpoint, then the engine's record of it (written durably: the worker
//!   plays the engine's coordinator too), then the confirmation to the backend, which only
//!   then retires older checkpoints;
//! - the parent kills the worker after a random delay (seeded), starts the next one, and so
//!   on until a worker reaches the end of the input; that run's results are compared with a
//!   run without kills. Runs repeat until the requested number of kills is reached.
//!
//! Kills land wherever the worker happens to be: writing, flushing, compacting, inside a
//! checkpoint's upload or manifest write, between the checkpoint and its confirmation, or
//! during retention. Each worker uses checkpoint ids `incarnation * 1_000_000 + n`, so ids keep
//! increasing across restarts, as an engine's do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use statekit_backend::{
    CheckpointHandle, Error, ErrorKind, InstanceConfig, LocalDirStorage, Result, StateBackend,
};

use crate::backends::{open_backend, BackendKind, BackendSpec, OpenOptions};
use crate::event::{EventFileReader, EventFileWriter};
use crate::isolation::read_json;
use crate::profile::Profile;
use crate::state_digest::{state_fingerprint, StateFingerprint};
use crate::util::Counters;

/// What a worker is doing, written to `phase` in its run directory at each change, so the
/// parent can tell where each kill landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Starting: opening the backend, registering states.
    Opening = 1,
    /// Restoring the last confirmed checkpoint.
    Restoring,
    /// Processing events (writes, reads, timers; the backend flushes and compacts meanwhile).
    Processing,
    /// Inside the backend's checkpoint (flush, upload, manifest write).
    Checkpointing,
    /// Writing the engine's record of the checkpoint.
    Recording,
    /// Confirming the checkpoint to the backend (which then retires old ones).
    Confirming,
    /// The end of input: every timer fires.
    Finishing,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::Opening,
        Phase::Restoring,
        Phase::Processing,
        Phase::Checkpointing,
        Phase::Recording,
        Phase::Confirming,
        Phase::Finishing,
    ];

    /// The phase's name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Opening => "opening",
            Phase::Restoring => "restoring",
            Phase::Processing => "processing events",
            Phase::Checkpointing => "inside checkpoint",
            Phase::Recording => "recording the checkpoint",
            Phase::Confirming => "confirming (retention)",
            Phase::Finishing => "end of input",
        }
    }

    fn from_byte(b: u8) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| *p as u8 == b)
    }
}

/// The worker's side of the phase file: one byte, overwritten in place (a syscall per phase
/// change, a few per checkpoint interval).
struct PhaseMarker(fs::File);

impl PhaseMarker {
    fn create(dir: &Path) -> Result<Self> {
        let path = dir.join("phase");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        Ok(PhaseMarker(file))
    }

    fn set(&self, phase: Phase) {
        use std::os::unix::fs::FileExt;
        // Best effort: a lost marker only blurs the statistics.
        let _ = self.0.write_at(&[phase as u8], 0);
    }
}

/// The phase the worker of `dir` last marked.
fn read_phase(dir: &Path) -> Option<Phase> {
    fs::read(dir.join("phase"))
        .ok()
        .and_then(|b| b.first().copied())
        .and_then(Phase::from_byte)
}

/// Checkpoint ids of one worker start at `incarnation * ID_STRIDE`.
const ID_STRIDE: u64 = 1_000_000;

/// What `statekit crash-test` runs.
#[derive(Debug, Clone)]
pub struct CrashTestOptions {
    /// The profile.
    pub profile: Profile,
    /// The scale name.
    pub scale: String,
    /// The backend and configuration.
    pub spec: BackendSpec,
    /// The memory budget, for backends that take one.
    pub memory_budget: Option<u64>,
    /// Kills to inflict in all.
    pub kills: u32,
    /// Seed of the kill times: the same seed kills at the same delays.
    pub seed: u64,
    /// Events between two checkpoints.
    pub checkpoint_every: u64,
    /// Only the first this many events of the scale (kills need short runs to be many).
    pub max_events: Option<u64>,
    /// The remote backend only: this fraction of its object-store calls fails (errors,
    /// timeouts, lost write responses; as many again are slow). A worker that fails with an
    /// error is restarted from the last confirmed checkpoint, as an engine restarts a failed
    /// task.
    pub object_store_faults: Option<f64>,
    /// Working directory (input, checkpoints, backend files); emptied first.
    pub work: PathBuf,
    /// The `statekit` executable that runs the workers.
    pub exe: PathBuf,
}

/// The worker's instructions, written by the parent (`job.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CrashJob {
    profile: PathBuf,
    scale: String,
    spec: BackendSpec,
    memory_budget: Option<u64>,
    input: PathBuf,
    checkpoint_every: u64,
    object_store_faults: Option<f64>,
    seed: u64,
}

/// The engine's record of the last confirmed checkpoint (`confirmed.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Confirmed {
    handle: CheckpointHandle,
    /// Events of the input the checkpoint covers.
    offset: u64,
    /// The operator's progress at the checkpoint.
    progress: Vec<u8>,
}

/// What a run to the end of the input produced (`outcome.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The operator's result counters after the end of input.
    pub counters: Counters,
    /// The keyed state after the last event, before the end of input fires every timer.
    pub state: StateFingerprint,
}

/// The result of a crash test.
#[derive(Debug, Clone, Serialize)]
pub struct CrashTestSummary {
    /// The backend's label.
    pub backend: String,
    /// Kills inflicted.
    pub kills: u32,
    /// Restarts after a kill from a confirmed checkpoint.
    pub recoveries_from_checkpoint: u32,
    /// Restarts after a kill before any checkpoint was confirmed (from the start).
    pub recoveries_from_start: u32,
    /// Restarts after a worker failed with an error (injected object-store faults).
    pub restarts_after_errors: u32,
    /// Runs that reached the end of the input, each compared with the run without kills.
    pub completed_runs: u32,
    /// What differed, per run (empty when every run matched).
    pub mismatches: Vec<String>,
    /// Kills by the phase the worker was in.
    pub kills_by_phase: std::collections::BTreeMap<&'static str, u32>,
    /// Events of the input.
    pub events: u64,
    /// The seed.
    pub seed: u64,
}

impl CrashTestSummary {
    /// Where the kills landed, as `phase N` pairs.
    pub fn phases_line(&self) -> String {
        let parts: Vec<String> = self
            .kills_by_phase
            .iter()
            .map(|(phase, n)| format!("{phase} {n}"))
            .collect();
        format!("kills by phase: {}", parts.join(", "))
    }

    /// The one-line summary: kills, recoveries, mismatches.
    pub fn line(&self) -> String {
        let errors = if self.restarts_after_errors > 0 {
            format!(
                ", {} restarts after injected faults",
                self.restarts_after_errors
            )
        } else {
            String::new()
        };
        format!(
            "crash-test {}: {} kills, {} recoveries ({} from a checkpoint, {} from the \
             start){errors}, {} mismatches in {} runs to the end of {} events (seed {})",
            self.backend,
            self.kills,
            self.recoveries_from_checkpoint + self.recoveries_from_start,
            self.recoveries_from_checkpoint,
            self.recoveries_from_start,
            self.mismatches.len(),
            self.completed_runs,
            self.events,
            self.seed
        )
    }
}

/// Runs a crash test; `progress` receives a line per completed run.
///
/// # Errors
/// A failed worker (an error other than being killed), or I/O errors of the working
/// directory.
pub fn crash_test(
    options: &CrashTestOptions,
    mut progress: impl FnMut(&str),
) -> Result<CrashTestSummary> {
    if options.checkpoint_every == 0 {
        return Err(Error::invalid(
            "--checkpoint-every must be at least 1 event",
        ));
    }
    if options.object_store_faults.is_some() && options.spec.kind != BackendKind::Remote {
        return Err(Error::invalid(
            "object-store faults apply to the remote backend only",
        ));
    }
    let scale = options.profile.scale(&options.scale)?.clone();
    if options.work.exists() {
        fs::remove_dir_all(&options.work).map_err(|e| Error::io(options.work.display(), e))?;
    }
    create_dir(&options.work)?;
    let input = absolute(&options.work.join("input.csv"))?;
    let limit = options.max_events.unwrap_or(u64::MAX);
    let events = EventFileWriter::write_file(
        &input,
        options.profile.generator(&scale)?.take(limit as usize),
    )?;
    let job = CrashJob {
        profile: absolute(&options.profile.path)?,
        scale: options.scale.clone(),
        spec: options.spec.clone(),
        memory_budget: options.memory_budget,
        input,
        checkpoint_every: options.checkpoint_every,
        object_store_faults: options.object_store_faults,
        seed: options.seed,
    };

    // The run without kills, in a worker like the others.
    let reference_dir = options.work.join("reference");
    prepare_run(&reference_dir, &job)?;
    let started = Instant::now();
    let status = spawn_worker(&options.exe, &reference_dir, 1, false)?
        .wait()
        .map_err(|e| Error::io("waiting for the reference worker", e))?;
    if !status.success() {
        return Err(worker_failed("the run without kills", status));
    }
    let reference: Outcome = read_json(&reference_dir.join("outcome.json"))?;
    // Kill delays span the whole run, startup included.
    let full_run = started.elapsed().max(Duration::from_millis(200));

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let mut summary = CrashTestSummary {
        backend: options.spec.label(),
        kills: 0,
        recoveries_from_checkpoint: 0,
        recoveries_from_start: 0,
        restarts_after_errors: 0,
        completed_runs: 0,
        mismatches: Vec::new(),
        kills_by_phase: std::collections::BTreeMap::new(),
        events,
        seed: options.seed,
    };
    let mut round = 0u32;
    while summary.kills < options.kills {
        round += 1;
        let dir = options.work.join("crashing");
        prepare_run(&dir, &job)?;
        let mut incarnation = 0u64;
        let mut failures_in_a_row = 0u32;
        loop {
            incarnation += 1;
            if incarnation > 1 {
                if dir.join("confirmed.json").exists() {
                    summary.recoveries_from_checkpoint += 1;
                } else {
                    summary.recoveries_from_start += 1;
                }
            }
            let _ = fs::remove_file(dir.join("phase"));
            let mut child = spawn_worker(
                &options.exe,
                &dir,
                incarnation,
                job.object_store_faults.is_some(),
            )?;
            let kill_at = (summary.kills < options.kills).then(|| {
                let ms = rng.random_range(0..=full_run.as_millis() as u64);
                Duration::from_millis(ms)
            });
            let began = Instant::now();
            let status = loop {
                if let Some(status) = child
                    .try_wait()
                    .map_err(|e| Error::io("waiting for a worker", e))?
                {
                    break Some(status);
                }
                if kill_at.is_some_and(|at| began.elapsed() >= at) {
                    // Child::kill sends SIGKILL.
                    let _ = child.kill();
                    let _ = child.wait();
                    let phase = read_phase(&dir).map_or("not started", Phase::name);
                    *summary.kills_by_phase.entry(phase).or_insert(0) += 1;
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            match status {
                None => summary.kills += 1,
                Some(status) if status.success() => break,
                Some(_) if job.object_store_faults.is_some() => {
                    summary.restarts_after_errors += 1;
                    failures_in_a_row += 1;
                    if failures_in_a_row > MAX_FAILURES_IN_A_ROW {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            format!(
                                "run {round}: {failures_in_a_row} workers in a row failed under \
                                 the injected faults ({}): lower --object-store-faults",
                                dir.join("workers.log").display()
                            ),
                        ));
                    }
                    continue;
                }
                Some(status) => {
                    return Err(worker_failed(
                        &format!("run {round}, worker {incarnation}"),
                        status,
                    ))
                }
            }
            failures_in_a_row = 0;
        }
        summary.completed_runs += 1;
        let outcome: Outcome = read_json(&dir.join("outcome.json"))?;
        let differences = differences(&reference, &outcome);
        if !differences.is_empty() {
            summary
                .mismatches
                .push(format!("run {round}: {}", differences.join("; ")));
        }
        progress(&format!(
            "run {round}: {} workers, {} kills so far, {}",
            incarnation,
            summary.kills,
            if differences.is_empty() {
                "results and state equal the run without kills".to_string()
            } else {
                format!("MISMATCH: {}", differences.join("; "))
            }
        ));
    }
    Ok(summary)
}

/// What differs between two outcomes, named.
fn differences(reference: &Outcome, outcome: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = reference
        .counters
        .keys()
        .chain(outcome.counters.keys())
        .collect();
    for name in names {
        let (a, b) = (reference.counters.get(name), outcome.counters.get(name));
        if a != b {
            out.push(format!("{name}: {b:?} instead of {a:?}"));
        }
    }
    if reference.state != outcome.state {
        out.push(format!(
            "state {:?} instead of {:?}",
            outcome.state, reference.state
        ));
    }
    out
}

fn worker_failed(what: &str, status: std::process::ExitStatus) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{what} failed ({status}); its error is above"),
    )
}

/// Starts a worker; with `log_errors`, its errors (expected under injected faults) go to
/// `workers.log` in the run's directory instead of the terminal.
fn spawn_worker(
    exe: &Path,
    dir: &Path,
    incarnation: u64,
    log_errors: bool,
) -> Result<std::process::Child> {
    let stderr = if log_errors {
        let path = dir.join("workers.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        Stdio::from(log)
    } else {
        Stdio::inherit()
    };
    Command::new(exe)
        .arg("crash-test-worker")
        .arg(dir)
        .arg(incarnation.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", exe.display()), e))
}

/// Consecutive failed workers of one run before the test gives up.
const MAX_FAILURES_IN_A_ROW: u32 = 50;

fn prepare_run(dir: &Path, job: &CrashJob) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    }
    create_dir(dir)?;
    crate::util::write_json_durably(&dir.join("job.json"), job)
}

/// One worker: restore the last confirmed checkpoint, run to the end of the input (or until
/// killed), write `outcome.json`. `incarnation` numbers the workers of one run from 1.
///
/// # Errors
/// Whatever the backend, the operator or the files fail with.
pub fn run_worker(dir: &Path, incarnation: u64) -> Result<()> {
    let phase = PhaseMarker::create(dir)?;
    phase.set(Phase::Opening);
    let job: CrashJob = read_json(&dir.join("job.json"))?;
    let profile = Profile::load(&job.profile)?;
    let backend_dir = dir.join("backend");
    remove_dead_instances(&backend_dir)?;
    let checkpoints = dir.join("checkpoints");
    create_dir(&checkpoints)?;
    let instance = InstanceConfig::single(profile.max_parallelism)?
        .with_checkpoint_storage(std::sync::Arc::new(LocalDirStorage::new(&checkpoints)?));
    let options = OpenOptions {
        instance,
        work_dir: &backend_dir,
        memory_budget: job.memory_budget,
        direct_io: false,
    };
    let mut backend = match job.object_store_faults {
        // Each worker draws other faults.
        Some(rate) => open_remote_with_faults(&job, options, rate, job.seed ^ incarnation)?,
        None => open_backend(&job.spec, options)?,
    };
    let mut operator = profile.operator(backend.as_mut(), false)?;
    let confirmed_path = dir.join("confirmed.json");
    let mut offset = 0;
    if confirmed_path.exists() {
        let confirmed: Confirmed = read_json(&confirmed_path)?;
        phase.set(Phase::Restoring);
        backend.restore(std::slice::from_ref(&confirmed.handle))?;
        operator.load_progress(&confirmed.progress)?;
        offset = confirmed.offset;
    }
    let mut position = 0u64;
    let mut taken = 0u64;
    phase.set(Phase::Processing);
    for event in EventFileReader::open(&job.input)? {
        let event = event?;
        position += 1;
        if position <= offset {
            continue;
        }
        operator.process(backend.as_mut(), event)?;
        if position % job.checkpoint_every == 0 {
            taken += 1;
            let id = incarnation * ID_STRIDE + taken;
            phase.set(Phase::Checkpointing);
            let handle = backend.checkpoint(id)?;
            phase.set(Phase::Recording);
            // The engine's record first: once it is durable, the checkpoint counts, and only
            // then may the backend retire older ones.
            crate::util::write_json_durably(
                &confirmed_path,
                &Confirmed {
                    handle,
                    offset: position,
                    progress: operator.save_progress()?,
                },
            )?;
            phase.set(Phase::Confirming);
            backend.notify_checkpoint_complete(id)?;
            phase.set(Phase::Processing);
        }
    }
    phase.set(Phase::Finishing);
    let state = state_fingerprint(backend.as_ref())?;
    operator.finish(backend.as_mut())?;
    crate::util::write_json_durably(
        &dir.join("outcome.json"),
        &Outcome {
            counters: operator.counters(),
            state,
        },
    )
}

/// The remote backend on its configured store behind a fault-injecting wrapper.
#[cfg(feature = "remote")]
fn open_remote_with_faults(
    job: &CrashJob,
    options: OpenOptions<'_>,
    rate: f64,
    seed: u64,
) -> Result<Box<dyn StateBackend>> {
    use statekit_backend::remote::{FaultPlan, FaultyObjectStore, RemoteBackend, RemoteStore};
    let config = crate::backends::remote_config(
        job.spec.config.as_deref(),
        options.work_dir,
        options.memory_budget,
    )?;
    let (inner, root) = config.build_object_store()?;
    let faulty = FaultyObjectStore::new(inner, FaultPlan::failing(rate), seed);
    let store = RemoteStore::with_object_store(&config, std::sync::Arc::new(faulty), root)?;
    Ok(Box::new(RemoteBackend::open_in(options.instance, &store)?))
}

#[cfg(not(feature = "remote"))]
fn open_remote_with_faults(
    _job: &CrashJob,
    _options: OpenOptions<'_>,
    _rate: f64,
    _seed: u64,
) -> Result<Box<dyn StateBackend>> {
    Err(Error::invalid(
        "this statekit was built without the 'remote' backend",
    ))
}

/// A killed worker's RocksDB instance directories (its drop never ran).
fn remove_dead_instances(backend_dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(backend_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("rocksdb-") {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|e| Error::io(path.display(), e))?;
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(path.display(), e))
}
