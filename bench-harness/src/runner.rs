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
use crate::metrics::{current_rss, dir_size, Metered, ResourceSampler};
use crate::profile::Profile;
use crate::results::{
    CheckpointResult, Comparison, Machine, Results, RunResult, TraceInfo, WorkloadInfo,
};
use crate::trace::{replay, RecordingBackend, TraceReader, TraceWriter};

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

/// The source of a run's events.
fn events(
    profile: &Profile,
    scale: &crate::workloads::ScaleSpec,
    input: Option<&Path>,
) -> Result<Box<dyn Iterator<Item = Result<Event>>>> {
    Ok(match input {
        Some(path) => Box::new(EventFileReader::open(path)?),
        None => Box::new(profile.generator(scale)?.map(Ok)),
    })
}

fn empty_run(spec: &BackendSpec) -> RunResult {
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
        checkpoints: Vec::new(),
        divergent_reads: None,
        direct_io: false,
    }
}

/// Fills in the figures every run reports from the metered backend and the samples.
fn finish_run(
    run: &mut RunResult,
    backend: &Metered<dyn StateBackend>,
    samples: Vec<crate::metrics::ResourceSample>,
    work_dir: &Path,
    wall: Duration,
) {
    let metrics = backend.take_metrics();
    run.wall_seconds = wall.as_secs_f64();
    let secs = run.wall_seconds.max(1e-9);
    run.events_per_sec = run.events as f64 / secs;
    run.state_ops = metrics.total();
    run.ops_per_sec = run.state_ops as f64 / secs;
    run.ops = metrics.summaries();
    run.volume = metrics.volume().clone();
    run.peak_rss_bytes = samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0);
    run.disk_bytes = dir_size(work_dir);
    run.samples = samples;
    match backend.stats() {
        Ok(stats) => {
            run.write_amplification = match (stats.disk_bytes_written, stats.user_bytes_written) {
                (Some(d), Some(u)) if u > 0 => Some(d as f64 / u as f64),
                _ => None,
            };
            run.space_amplification = match (stats.disk_bytes, stats.live_data_bytes) {
                (Some(d), Some(l)) if l > 0 => Some(d as f64 / l as f64),
                _ => None,
            };
            run.cache_hit_rate = match (stats.cache_hits, stats.cache_misses) {
                (Some(h), Some(m)) if h + m > 0 => Some(h as f64 / (h + m) as f64),
                _ => None,
            };
            run.backend_stats = stats;
        }
        Err(e) => run.error = Some(format!("backend statistics: {e}")),
    }
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
    for spec in &options.specs {
        let work_dir = options
            .out
            .join("work")
            .join(spec.label().replace('/', "-"));
        if work_dir.exists() {
            std::fs::remove_dir_all(&work_dir).map_err(|e| Error::io(work_dir.display(), e))?;
        }
        create_dir(&work_dir)?;
        let mut run = empty_run(spec);
        if let Err(e) = bench_one(options, &scale, budget, spec, &work_dir, &mut run) {
            run.error = Some(e.to_string());
        }
        if !options.keep_state {
            let _ = std::fs::remove_dir_all(&work_dir);
        }
        runs.push(run);
    }
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
    })
}

fn bench_one(
    options: &BenchOptions,
    scale: &crate::workloads::ScaleSpec,
    budget: Option<u64>,
    spec: &BackendSpec,
    work_dir: &Path,
    run: &mut RunResult,
) -> Result<()> {
    let profile = &options.profile;
    let checkpoint_dir = work_dir.join("checkpoints");
    let open_options = OpenOptions {
        instance: instance(profile.max_parallelism, &checkpoint_dir)?,
        work_dir: &work_dir.join("db"),
        memory_budget: budget,
        direct_io: budget.is_some(),
    };
    run.direct_io = bypasses_page_cache(spec, &open_options)?;
    let inner = open_backend(spec, open_options)?;
    let mut backend: Metered<dyn StateBackend> = Metered::new(inner);
    let collect = scale.self_check;
    let mut operator = profile.operator(&mut backend, collect)?;
    let mut kept: Vec<Event> = Vec::new();
    let counter = Arc::new(AtomicU64::new(0));
    run.baseline_rss_bytes = current_rss();
    let sampler = ResourceSampler::start(
        work_dir.to_path_buf(),
        Duration::from_millis(200),
        Arc::clone(&counter),
    );
    let bar = progress_bar(options.progress, scale.main_events(), &spec.label());
    let checkpoint_every = scale.checkpoint_interval.map(crate::util::millis);
    let mut next_checkpoint: Option<i64> = None;
    let mut checkpoint_id = 0u64;
    let start = Instant::now();
    let mut n = 0u64;
    let result = (|| -> Result<()> {
        for event in events(profile, scale, options.input.as_deref())? {
            let event = event?;
            operator.process(&mut backend, &event)?;
            if collect {
                kept.push(event);
            }
            n += 1;
            if n % 4096 == 0 {
                counter.store(n, Ordering::Relaxed);
                bar.set_position(n);
            }
            if let Some(every) = checkpoint_every {
                let wm = operator.watermark();
                if wm != i64::MIN {
                    let due = *next_checkpoint.get_or_insert(wm.saturating_add(every));
                    if wm >= due {
                        checkpoint_id += 1;
                        let before = dir_size(&checkpoint_dir);
                        let t = Instant::now();
                        let handle = backend.checkpoint(checkpoint_id)?;
                        let duration_ms = t.elapsed().as_secs_f64() * 1e3;
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
                        next_checkpoint = Some(wm.saturating_add(every));
                    }
                }
            }
        }
        operator.finish(&mut backend)
    })();
    let wall = start.elapsed();
    counter.store(n, Ordering::Relaxed);
    bar.finish_and_clear();
    run.events = n;
    run.counters = operator.counters();
    finish_run(run, &backend, sampler.finish(), work_dir, wall);
    result?;
    if collect {
        run.checks = operator.check(&kept).unwrap_or_default();
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
    let writer = Arc::new(Mutex::new(Some(TraceWriter::create(
        trace,
        sizes_only,
        inner.max_parallelism(),
        inner.key_group_range(),
    )?)));
    let recording: Box<dyn StateBackend> =
        Box::new(RecordingBackend::new(inner, Arc::clone(&writer))?);
    let mut backend: Metered<dyn StateBackend> = Metered::new(recording);
    let mut operator = profile.operator(&mut backend, false)?;
    let mut run = empty_run(spec);
    let bar = progress_bar(progress, scale.main_events(), "record");
    let start = Instant::now();
    for event in profile.generator(&scale)? {
        operator.process(&mut backend, &event)?;
        run.events += 1;
        if run.events % 4096 == 0 {
            bar.set_position(run.events);
        }
    }
    operator.finish(&mut backend)?;
    bar.finish_and_clear();
    run.counters = operator.counters();
    finish_run(&mut run, &backend, Vec::new(), work_dir, start.elapsed());
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

/// Replays `trace` against every pair.
///
/// # Errors
/// Errors before any run starts; errors inside a run go to its [`RunResult::error`].
pub fn replay_all(
    trace: &Path,
    specs: &[BackendSpec],
    out: &Path,
    memory_budget: Option<u64>,
    progress: bool,
) -> Result<Results> {
    create_dir(out)?;
    let header = TraceReader::open(trace)?.header();
    let started = unix_now();
    let mut runs = Vec::new();
    let mut records = 0;
    for spec in specs {
        let work_dir = out.join("work").join(spec.label().replace('/', "-"));
        if work_dir.exists() {
            std::fs::remove_dir_all(&work_dir).map_err(|e| Error::io(work_dir.display(), e))?;
        }
        let mut run = empty_run(spec);
        let outcome = (|| -> Result<()> {
            let instance = instance(header.max_parallelism, &work_dir.join("checkpoints"))?
                .with_key_groups(header.key_groups);
            let inner = open_backend(
                spec,
                OpenOptions {
                    instance,
                    work_dir: &work_dir.join("db"),
                    memory_budget,
                    direct_io: memory_budget.is_some(),
                },
            )?;
            let mut backend: Metered<dyn StateBackend> = Metered::new(inner);
            let counter = Arc::new(AtomicU64::new(0));
            run.baseline_rss_bytes = current_rss();
            let sampler = ResourceSampler::start(
                work_dir.clone(),
                Duration::from_millis(200),
                Arc::clone(&counter),
            );
            let bar = progress_bar(progress, 0, &spec.label());
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
                    finish_run(&mut run, &backend, sampler.finish(), &work_dir, wall);
                    return Err(e);
                }
            };
            records = summary.records;
            run.events = summary.records;
            run.divergent_reads = Some(summary.divergent_reads);
            run.counters = summary
                .recorded_ops
                .iter()
                .map(|(k, v)| (format!("recorded_{k}"), *v))
                .collect();
            run.counters
                .insert("skipped_records".into(), summary.skipped);
            finish_run(&mut run, &backend, sampler.finish(), &work_dir, wall);
            Ok(())
        })();
        if let Err(e) = outcome {
            run.error = Some(e.to_string());
        }
        let _ = std::fs::remove_dir_all(&work_dir);
        runs.push(run);
    }
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
        }),
        machine: Machine::detect(out),
        comparison: Comparison::of(&runs),
        runs,
    })
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
