//! Running workloads and replays against backends and collecting [`Results`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use statekit_backend::{
    Checkpointing, Error, InstanceConfig, LocalDirStorage, Result, StateBackend,
};

use crate::backends::{bypasses_page_cache, open_backend, BackendSpec, OpenOptions};
use crate::event::{Event, EventFileReader};
use crate::isolation::{run_in_child, Isolation, RunRequest};
use crate::metrics::{current_rss, dir_size, Metered, OpMetrics, ResourceSampler};
use crate::null_backend::NullBackend;
use crate::prefetch_window::PrefetchWindow;
use crate::profile::Profile;
use crate::read_ahead::ReadAhead;
use crate::results::{
    CheckpointResult, Comparison, HarnessFootprint, Machine, Results, RunResult, TraceInfo,
    WorkloadInfo,
};
use crate::state_digest::{state_fingerprint, state_fingerprint_of, StateFingerprint};
use crate::trace::{replay, RecordingBackend, StreamClock, TraceReader, TraceWriter};
use crate::workloads::CheckOutcome;

/// What `statekit bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The profile.
    pub profile: Profile,
    /// The scale name.
    pub scale: String,
    /// The backend/configuration pairs.
    pub specs: Vec<BackendSpec>,
    /// Overrides the scale's memory budget.
    pub memory_budget: Option<u64>,
    /// Output directory (results, reports, and the runs' working directories).
    pub out: PathBuf,
    /// Read events from this file instead of the generator.
    pub input: Option<PathBuf>,
    /// Keep the backends' files after the runs.
    pub keep_state: bool,
    /// Show progress bars.
    pub progress: bool,
    /// Whether each run gets its own process.
    pub isolation: Isolation,
    /// A run still going after this long is stopped and reported as such.
    pub time_limit: Option<Duration>,
}

fn progress_bar(show: bool, len: u64, label: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>16} [{bar:30}] {human_pos}/{human_len} {msg} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

fn unix_now() -> u64 {
    #[allow(clippy::disallowed_methods)] // a report timestamp, not state time
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))
}

/// The source of a run's events, read ahead on a thread of its own: the event file `input`
/// if given, else the profile's generator at `scale`.
///
/// # Errors
/// A file that cannot be opened; parameters the generator cannot use.
pub fn events(
    profile: &Profile,
    scale: &crate::workloads::ScaleSpec,
    input: Option<&Path>,
) -> Result<ReadAhead> {
    match input {
        Some(path) => ReadAhead::spawn(EventFileReader::open(path)?),
        None => ReadAhead::spawn(profile.generator(scale)?.map(Ok)),
    }
}

fn empty_run(spec: &BackendSpec) -> RunResult {
    RunResult::empty(spec)
}

/// Fills in the figures every run reports from the metered backend and the samples.
fn finish_run(
    run: &mut RunResult,
    backend: &Metered<dyn StateBackend>,
    earlier: Option<OpMetrics>,
    samples: Vec<crate::metrics::ResourceSample>,
    work_dir: &Path,
    wall: Duration,
) {
    let mut metrics = backend.take_metrics();
    if let Some(earlier) = earlier {
        metrics.absorb(earlier);
    }
    run.wall_seconds = wall.as_secs_f64();
    run.state_ops = metrics.total();
    set_rates(run);
    run.ops = metrics.summaries();
    let names: Vec<String> = backend.states().into_iter().map(|d| d.name).collect();
    run.ops_by_state = metrics.by_state(&names);
    run.volume = metrics.volume().clone();
    run.peak_rss_bytes = samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0);
    run.disk_bytes = dir_size(work_dir);
    run.samples = samples;
    match backend.stats() {
        Ok(stats) => {
            // Over the harness's count of logical bytes (the same for every backend), and only
            // once the backend has written anything to storage: a state that never left its
            // memtables has no amplification to show, not one of zero.
            run.write_amplification =
                write_amplification(stats.disk_bytes_written, run.volume.bytes_written);
            // Of the state at its fullest: after the final cleanup an empty state's leftover
            // files would divide by nearly nothing.
            let full = run.stats_at_end_of_input.as_ref().unwrap_or(&stats);
            run.space_amplification = match (full.disk_bytes, full.live_data_bytes) {
                (Some(d), Some(l)) if l > 0 => Some(d as f64 / l as f64),
                _ => None,
            };
            run.cache_hit_rate = hit_rate(stats.cache_hits, stats.cache_misses);
            run.meta_cache_hit_rate = hit_rate(stats.meta_cache_hits, stats.meta_cache_misses);
            run.backend_stats = stats;
        }
        Err(e) => run.error = Some(format!("backend statistics: {e}")),
    }
}

/// Hits over lookups, when there were lookups.
fn hit_rate(hits: Option<u64>, misses: Option<u64>) -> Option<f64> {
    match (hits, misses) {
        (Some(h), Some(m)) if h + m > 0 => Some(h as f64 / (h + m) as f64),
        _ => None,
    }
}

/// The check that the final watermark left no entries and no timers in state: at every
/// scale, since it needs no copy of the input.
fn state_left_check(left: StateFingerprint) -> CheckOutcome {
    CheckOutcome::equal(
        "state left after the final watermark (entries, timers; states kept by design aside)",
        (0, 0),
        (left.entries, left.timers),
    )
}

/// Bytes written to storage by flushes and compactions over the logical bytes written; `None`
/// when either is unknown or zero.
fn write_amplification(storage_bytes: Option<u64>, logical_bytes: u64) -> Option<f64> {
    match storage_bytes {
        Some(d) if d > 0 && logical_bytes > 0 => Some(d as f64 / logical_bytes as f64),
        _ => None,
    }
}

/// Events and state operations per second of the run's time without its input's.
fn set_rates(run: &mut RunResult) {
    let secs = (run.wall_seconds - run.input_seconds).max(1e-9);
    run.events_per_sec = run.events as f64 / secs;
    run.ops_per_sec = run.state_ops as f64 / secs;
}

fn instance(max_parallelism: u16, checkpoint_dir: &Path) -> Result<InstanceConfig> {
    create_dir(checkpoint_dir)?;
    Ok(InstanceConfig::single(max_parallelism)?
        .with_checkpoint_storage(Arc::new(LocalDirStorage::new(checkpoint_dir)?)))
}

/// Runs the profile's workload on every pair and writes nothing: see [`write_all`].
///
/// # Errors
/// Errors before any run starts (bad scale, unwritable output directory). An error inside a
/// run is recorded in its [`RunResult::error`] and the other runs go on.
pub fn bench(options: &BenchOptions) -> Result<Results> {
    let scale = options.profile.scale(&options.scale)?.clone();
    let budget = options.memory_budget.or(scale.memory_budget);
    create_dir(&options.out)?;
    let started = unix_now();
    let mut runs = Vec::new();
    let input = RunInput {
        profile: &options.profile,
        scale: &scale,
        budget,
        input: options.input.as_deref(),
        progress: options.progress,
        deadline: None,
        own_process: false,
    };
    for spec in &options.specs {
        let work_dir = fresh_work_dir(&options.out, &spec.label())?;
        let run = match &options.isolation {
            Isolation::InProcess => bench_run(
                &RunInput {
                    deadline: options.time_limit.map(|l| Instant::now() + l),
                    ..input
                },
                Some(spec),
                &work_dir,
            ),
            Isolation::ChildProcess { exe } => run_in_child(
                exe,
                &bench_request(options, Some(spec), budget, &work_dir),
                &options.out,
                options.time_limit,
                empty_run(spec),
            )?,
        };
        if !options.keep_state {
            let _ = std::fs::remove_dir_all(&work_dir);
        }
        runs.push(run);
    }
    // The harness's own footprint: the same input through the operator on a backend that
    // stores nothing, in a process of its own like the runs.
    let harness = footprint(
        &options.isolation,
        &options.out,
        options.time_limit,
        |work_dir| bench_request(options, None, budget, work_dir),
    )?;
    // The runs' directories are gone; their parent goes too unless it still holds kept state.
    let _ = std::fs::remove_dir(options.out.join("work"));
    let profile = &options.profile;
    Ok(Results {
        version: crate::results::RESULTS_VERSION,
        tool: format!("statekit {}", env!("CARGO_PKG_VERSION")),
        started_unix: started,
        mode: "bench".into(),
        workload: Some(WorkloadInfo {
            profile: profile.name(),
            profile_path: profile.path.display().to_string(),
            workload: profile.workload.name().to_string(),
            description: profile.description.clone(),
            scale: options.scale.clone(),
            scale_spec: serde_json::to_value(&scale).unwrap_or_default(),
            params: serde_json::to_value(&profile.params).unwrap_or_default(),
            seed: profile.seed,
            input: options
                .input
                .as_ref()
                .map_or_else(|| "generator".to_string(), |p| p.display().to_string()),
            memory_budget: budget,
        }),
        trace: None,
        machine: Machine::detect(&options.out),
        comparison: Comparison::of(&runs),
        runs,
        harness,
        allocator: Some(crate::isolation::allocator_description(&options.isolation)),
    })
}

/// The label of the footprint run.
const HARNESS_LABEL: &str = "harness (no state)";

/// Measures the harness's footprint: runs `request` (a run on no backend, in a working
/// directory of its own) in a child process; `None` when runs share this process.
fn footprint(
    isolation: &Isolation,
    out: &Path,
    time_limit: Option<Duration>,
    request: impl FnOnce(&Path) -> RunRequest,
) -> Result<Option<HarnessFootprint>> {
    let Isolation::ChildProcess { exe } = isolation else {
        return Ok(None);
    };
    let work_dir = fresh_work_dir(out, HARNESS_LABEL)?;
    let run = run_in_child(
        exe,
        &request(&work_dir),
        out,
        time_limit,
        empty_run(&null_spec()),
    )?;
    let _ = std::fs::remove_dir_all(&work_dir);
    Ok(Some(HarnessFootprint::of(&run)))
}

fn null_spec() -> BackendSpec {
    BackendSpec {
        kind: crate::backends::BackendKind::Memory,
        config: Some(HARNESS_LABEL.into()),
        rocksdb: None,
    }
}

/// An empty working directory for one run under `out/work`.
fn fresh_work_dir(out: &Path, label: &str) -> Result<PathBuf> {
    let work_dir = out.join("work").join(crate::isolation::file_stem(label));
    if work_dir.exists() {
        std::fs::remove_dir_all(&work_dir).map_err(|e| Error::io(work_dir.display(), e))?;
    }
    create_dir(&work_dir)?;
    Ok(work_dir)
}

fn bench_request(
    options: &BenchOptions,
    spec: Option<&BackendSpec>,
    budget: Option<u64>,
    work_dir: &Path,
) -> RunRequest {
    RunRequest::Bench {
        profile: options.profile.path.clone(),
        scale: options.scale.clone(),
        spec: spec.cloned(),
        memory_budget: budget,
        input: options.input.clone(),
        work_dir: work_dir.to_path_buf(),
        progress: options.progress,
    }
}

/// Runs one request here, in this process: the child's side of [`Isolation::ChildProcess`].
///
/// # Errors
/// Only errors before the run starts (an unreadable profile or trace); errors inside the run
/// are in the returned run's `error`.
pub fn run_request(request: &RunRequest) -> Result<RunResult> {
    match request {
        RunRequest::Bench {
            profile,
            scale,
            spec,
            memory_budget,
            input,
            work_dir,
            progress,
        } => {
            let profile = Profile::load(profile)?;
            let scale_spec = profile.scale(scale)?.clone();
            let input = RunInput {
                profile: &profile,
                scale: &scale_spec,
                budget: *memory_budget,
                input: input.as_deref(),
                progress: *progress,
                deadline: None,
                own_process: true,
            };
            Ok(bench_run(&input, spec.as_ref(), work_dir))
        }
        RunRequest::Replay {
            trace,
            spec,
            memory_budget,
            work_dir,
            progress,
        } => {
            let header = TraceReader::open(trace)?.header();
            Ok(replay_run(
                trace,
                header,
                spec.as_ref(),
                work_dir,
                *memory_budget,
                *progress,
                true,
            ))
        }
    }
}

/// What one bench run reads besides its backend.
#[derive(Clone, Copy)]
struct RunInput<'a> {
    profile: &'a Profile,
    scale: &'a crate::workloads::ScaleSpec,
    budget: Option<u64>,
    input: Option<&'a Path>,
    progress: bool,
    /// Stop the run at this instant (in-process runs; a child is stopped by its parent).
    deadline: Option<Instant>,
    /// The run has this process to itself: its peak RSS is the process's high-water mark.
    own_process: bool,
}

/// One bench run on `spec` (`None`: the footprint run on a backend that stores nothing).
fn bench_run(input: &RunInput<'_>, spec: Option<&BackendSpec>, work_dir: &Path) -> RunResult {
    let mut run = empty_run(spec.unwrap_or(&null_spec()));
    if let Err(e) = bench_one(input, spec, work_dir, &mut run) {
        run.error = Some(e.to_string());
    }
    run
}

fn bench_one(
    input: &RunInput<'_>,
    spec: Option<&BackendSpec>,
    work_dir: &Path,
    run: &mut RunResult,
) -> Result<()> {
    let (profile, scale, budget) = (input.profile, input.scale, input.budget);
    let checkpoint_dir = work_dir.join("checkpoints");
    // What the process holds before the backend opens: in a process of its own, the harness
    // alone (the binary, the allocator, the input's reader).
    run.baseline_rss_bytes = current_rss();
    let inner: Box<dyn StateBackend> = match spec {
        Some(spec) => {
            let open_options = OpenOptions {
                instance: instance(profile.max_parallelism, &checkpoint_dir)?,
                work_dir: &work_dir.join("db"),
                memory_budget: budget,
                direct_io: budget.is_some(),
            };
            run.direct_io = bypasses_page_cache(spec, &open_options)?;
            open_backend(spec, open_options)?
        }
        None => Box::new(NullBackend::new(InstanceConfig::single(
            profile.max_parallelism,
        )?)),
    };
    let mut backend: Metered<dyn StateBackend> = Metered::new(inner);
    let collect = scale.self_check;
    let mut operator = profile.operator(&mut backend, collect)?;
    let mut kept: Vec<Event> = Vec::new();
    let counter = Arc::new(AtomicU64::new(0));
    let sampler = ResourceSampler::start(
        work_dir.to_path_buf(),
        Duration::from_millis(200),
        Arc::clone(&counter),
    );
    let bar = progress_bar(input.progress, scale.main_events(), &run.label);
    let checkpoint_every = scale.checkpoint_interval.map(crate::util::millis);
    let mut next_checkpoint: Option<i64> = None;
    let mut checkpoint_id = 0u64;
    let start = Instant::now();
    let mut paused = Duration::ZERO;
    let mut n = 0u64;
    let mut input_time = Duration::ZERO;
    let mut left: Option<StateFingerprint> = None;
    let mut steady: Option<OpMetrics> = None;
    let result = (|| -> Result<()> {
        let mut source = PrefetchWindow::new(events(profile, scale, input.input)?);
        loop {
            // Generating or parsing the input is the harness's work, not the state's: it runs
            // on its own thread, and any wait for it is timed apart and left out of the rates.
            let Some(event) = source.next(&*operator, &backend) else {
                break;
            };
            let event = event?;
            // Only the self-check (small scales) keeps a copy of the input.
            if collect {
                kept.push(event.clone());
            }
            operator.process(&mut backend, event)?;
            n += 1;
            if n % 4096 == 0 {
                counter.store(n, Ordering::Relaxed);
                bar.set_position(n);
                if input.deadline.is_some_and(|d| Instant::now() > d) {
                    return Err(Error::new(
                        statekit_backend::ErrorKind::ResourceExhausted,
                        format!("stopped: still running after the time limit ({n} events in)"),
                    ));
                }
            }
            if let Some(every) = checkpoint_every {
                let wm = operator.watermark();
                if wm != i64::MIN {
                    let due = *next_checkpoint.get_or_insert(wm.saturating_add(every));
                    if wm >= due {
                        checkpoint_id += 1;
                        // Measuring a checkpoint's size (a directory walk, or the backend
                        // listing its store) is the harness's, not part of the run's time.
                        let walk = Instant::now();
                        let before = dir_size(&checkpoint_dir);
                        paused += walk.elapsed();
                        let t = Instant::now();
                        let handle = backend.checkpoint(checkpoint_id)?;
                        // One instance: its checkpoint is the job's, complete at once.
                        backend.notify_checkpoint_complete(checkpoint_id)?;
                        let duration_ms = t.elapsed().as_secs_f64() * 1e3;
                        let walk = Instant::now();
                        // Memory and RocksDB copy into the local checkpoint directory; the
                        // remote backend's checkpoint pins tables in its store, which it
                        // measures itself (an S3 store has no local directory).
                        let size = backend.checkpoint_size(&handle)?;
                        run.checkpoints.push(CheckpointResult {
                            id: checkpoint_id,
                            watermark: wm,
                            duration_ms,
                            bytes: size.map_or_else(
                                || dir_size(&checkpoint_dir).saturating_sub(before),
                                |s| s.added_bytes,
                            ),
                            total_bytes: size.map(|s| s.total_bytes),
                        });
                        paused += walk.elapsed();
                        next_checkpoint = Some(wm.saturating_add(every));
                    }
                }
            }
        }
        input_time = source.source().waited();
        // The state at its fullest, before the final watermark drains it: what live data
        // and space amplification mean. Reading it is not part of the run's time.
        let pause = Instant::now();
        run.stats_at_end_of_input = Some(backend.stats()?);
        // Steady state and the drain apart: the drain fires every pending timer at once, and
        // its latencies would otherwise pass for the steady state's tail.
        let until_drain = backend.take_metrics();
        run.ops_before_drain = until_drain.summaries();
        steady = Some(until_drain);
        paused += pause.elapsed();
        let drain = Instant::now();
        operator.finish(&mut backend)?;
        run.drain_seconds = drain.elapsed().as_secs_f64();
        run.ops_drain = backend.summaries();
        // Every operator cleans up behind the final watermark: anything left is state a
        // backend failed to delete. Counting it reads the whole state, outside the run's time.
        if spec.is_some() {
            let count = Instant::now();
            let kept = operator.kept_states();
            left = Some(state_fingerprint_of(backend.inner(), |d| {
                !kept.contains(&d.name.as_str())
            })?);
            paused += count.elapsed();
        }
        Ok(())
    })();
    let wall = start.elapsed().saturating_sub(paused);
    counter.store(n, Ordering::Relaxed);
    bar.finish_and_clear();
    run.events = n;
    run.counters = operator.counters();
    run.input_seconds = input_time.as_secs_f64();
    finish_run(run, &backend, steady, sampler.finish(), work_dir, wall);
    // Closing is where LSM backends pay what they still owe (the remote backend flushes its
    // memtables): part of the run's time.
    let close = Instant::now();
    drop(backend);
    run.close_seconds = close.elapsed().as_secs_f64();
    run.wall_seconds += run.close_seconds;
    set_rates(run);
    if input.own_process {
        // The kernel's high-water mark catches peaks between samples; read before the
        // self-check, whose memory is not the run's.
        run.peak_rss_bytes = run.peak_rss_bytes.max(crate::metrics::peak_rss());
    }
    result?;
    // The footprint run stores nothing, so its results are not worth checking.
    if collect && spec.is_some() {
        run.checks = operator.check(&kept).unwrap_or_default();
    }
    if let Some(left) = left {
        run.checks.push(state_left_check(left));
    }
    Ok(())
}

/// Runs the profile's workload once on `spec`, recording every state operation to `trace`.
/// Returns the run (its op counts are what a replay must reproduce) and the record count.
///
/// # Errors
/// Backend, operator and trace I/O errors.
pub fn record(
    profile: &Profile,
    scale_name: &str,
    spec: &BackendSpec,
    trace: &Path,
    sizes_only: bool,
    work_dir: &Path,
    progress: bool,
) -> Result<(RunResult, u64)> {
    let scale = profile.scale(scale_name)?.clone();
    create_dir(work_dir)?;
    let inner = open_backend(
        spec,
        OpenOptions {
            instance: instance(profile.max_parallelism, &work_dir.join("checkpoints"))?,
            work_dir: &work_dir.join("db"),
            memory_budget: scale.memory_budget,
            direct_io: scale.memory_budget.is_some(),
        },
    )?;
    // Records carry the stream's event time, so the trace's rates are the profile's, not
    // the speed of this run.
    let clock = StreamClock::new();
    let writer = Arc::new(Mutex::new(Some(TraceWriter::create_on_stream_clock(
        trace,
        sizes_only,
        inner.max_parallelism(),
        inner.key_group_range(),
        clock.clone(),
    )?)));
    let recording: Box<dyn StateBackend> =
        Box::new(RecordingBackend::new(inner, Arc::clone(&writer))?);
    let mut backend: Metered<dyn StateBackend> = Metered::new(recording);
    let mut operator = profile.operator(&mut backend, false)?;
    let mut run = empty_run(spec);
    let bar = progress_bar(progress, scale.main_events(), "record");
    let start = Instant::now();
    let mut first_ts = None;
    // Recorded through the same window as a run, so the trace holds the operator's
    // prefetches where a run makes them.
    let mut source = PrefetchWindow::new(profile.generator(&scale)?.map(Ok));
    while let Some(event) = source.next(&*operator, &backend) {
        let event = event?;
        let first = *first_ts.get_or_insert(event.ts());
        let since_first_ms = u64::try_from(event.ts().saturating_sub(first)).unwrap_or(0);
        clock.advance_to(since_first_ms.saturating_mul(1000));
        operator.process(&mut backend, event)?;
        run.events += 1;
        if run.events % 4096 == 0 {
            bar.set_position(run.events);
        }
    }
    operator.finish(&mut backend)?;
    bar.finish_and_clear();
    run.counters = operator.counters();
    finish_run(
        &mut run,
        &backend,
        None,
        Vec::new(),
        work_dir,
        start.elapsed(),
    );
    drop(operator);
    drop(backend);
    let taken = writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let records = match taken {
        Some(w) => w.finish()?,
        None => 0,
    };
    Ok((run, records))
}

/// Replays `trace` against every pair, each run isolated as `isolation` says.
///
/// # Errors
/// Errors before any run starts; errors inside a run go to its [`RunResult::error`].
pub fn replay_all(
    trace: &Path,
    specs: &[BackendSpec],
    out: &Path,
    memory_budget: Option<u64>,
    progress: bool,
    isolation: &Isolation,
    time_limit: Option<Duration>,
) -> Result<Results> {
    create_dir(out)?;
    let header = TraceReader::open(trace)?.header();
    let started = unix_now();
    let mut runs = Vec::new();
    for spec in specs {
        let work_dir = fresh_work_dir(out, &spec.label())?;
        let run = match isolation {
            Isolation::InProcess => replay_run(
                trace,
                header,
                Some(spec),
                &work_dir,
                memory_budget,
                progress,
                false,
            ),
            Isolation::ChildProcess { exe } => run_in_child(
                exe,
                &RunRequest::Replay {
                    trace: trace.to_path_buf(),
                    spec: Some(spec.clone()),
                    memory_budget,
                    work_dir: work_dir.clone(),
                    progress,
                },
                out,
                time_limit,
                empty_run(spec),
            )?,
        };
        let _ = std::fs::remove_dir_all(&work_dir);
        runs.push(run);
    }
    // The harness's own footprint: the same trace replayed on a backend that stores nothing,
    // in a process of its own like the runs (the trace reader, the replay's buffers, metrics).
    let harness = footprint(isolation, out, time_limit, |work_dir| RunRequest::Replay {
        trace: trace.to_path_buf(),
        spec: None,
        memory_budget,
        work_dir: work_dir.to_path_buf(),
        progress,
    })?;
    let _ = std::fs::remove_dir(out.join("work"));
    let records = runs.iter().map(|r| r.events).max().unwrap_or(0);
    Ok(Results {
        version: crate::results::RESULTS_VERSION,
        tool: format!("statekit {}", env!("CARGO_PKG_VERSION")),
        started_unix: started,
        mode: "replay".into(),
        workload: None,
        trace: Some(TraceInfo {
            path: trace.display().to_string(),
            records,
            bytes: std::fs::metadata(trace).map_or(0, |m| m.len()),
            memory_budget,
        }),
        machine: Machine::detect(out),
        comparison: Comparison::of(&runs),
        runs,
        harness,
        allocator: Some(crate::isolation::allocator_description(isolation)),
    })
}

/// One replay of `trace` on `spec` (`None`: the footprint run on a backend that stores
/// nothing).
fn replay_run(
    trace: &Path,
    header: crate::trace::TraceHeader,
    spec: Option<&BackendSpec>,
    work_dir: &Path,
    memory_budget: Option<u64>,
    progress: bool,
    own_process: bool,
) -> RunResult {
    let mut run = empty_run(spec.unwrap_or(&null_spec()));
    let outcome = (|| -> Result<()> {
        let instance = instance(header.max_parallelism, &work_dir.join("checkpoints"))?
            .with_key_groups(header.key_groups);
        run.baseline_rss_bytes = current_rss();
        let inner: Box<dyn StateBackend> = match spec {
            Some(spec) => {
                let open_options = OpenOptions {
                    instance,
                    work_dir: &work_dir.join("db"),
                    memory_budget,
                    direct_io: memory_budget.is_some(),
                };
                run.direct_io = bypasses_page_cache(spec, &open_options)?;
                open_backend(spec, open_options)?
            }
            None => Box::new(NullBackend::new(instance)),
        };
        let mut backend: Metered<dyn StateBackend> = Metered::new(inner);
        let counter = Arc::new(AtomicU64::new(0));
        let sampler = ResourceSampler::start(
            work_dir.to_path_buf(),
            Duration::from_millis(200),
            Arc::clone(&counter),
        );
        let bar = progress_bar(progress, 0, &run.label);
        let mut reader = TraceReader::open(trace)?;
        let start = Instant::now();
        let summary = replay(&mut reader, &mut backend, true, |n| {
            counter.store(n, Ordering::Relaxed);
            bar.set_position(n);
        });
        let wall = start.elapsed();
        bar.finish_and_clear();
        let summary = match summary {
            Ok(s) => s,
            Err(e) => {
                finish_run(&mut run, &backend, None, sampler.finish(), work_dir, wall);
                return Err(e);
            }
        };
        run.events = summary.records;
        run.divergent_reads = Some(summary.divergent_reads);
        run.counters = summary
            .recorded_ops
            .iter()
            .map(|(k, v)| (format!("recorded_{k}"), *v))
            .collect();
        run.counters
            .insert("skipped_records".into(), summary.skipped);
        // What the backend returned and what it holds at the end, so that runs of the same
        // trace on different backends compare results, not the trace's own op counts.
        run.counters
            .insert("read_results_fingerprint".into(), summary.read_results);
        // Read after the clock stopped: not part of the replay's time.
        let end = state_fingerprint(backend.inner())?;
        run.counters.extend([
            ("state_entries_at_end".to_string(), end.entries),
            ("state_timers_at_end".to_string(), end.timers),
            ("state_fingerprint_at_end".to_string(), end.fingerprint),
        ]);
        finish_run(&mut run, &backend, None, sampler.finish(), work_dir, wall);
        if own_process {
            run.peak_rss_bytes = run.peak_rss_bytes.max(crate::metrics::peak_rss());
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        run.error = Some(e.to_string());
    }
    run
}

/// Writes `results.json`, then `report.md` and `report.html` rendered from it.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_all(results: &Results, out: &Path) -> Result<()> {
    create_dir(out)?;
    results.write(out)?;
    crate::report::write_reports(results, out)
}
