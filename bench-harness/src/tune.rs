//! `statekit tune`: the workload shape from a profile or a trace, the tuner's derivation, and
//! its files (`tuned.toml`, `OPTIONS`, `explain.md`, `shape.json`).

use std::path::Path;

use statekit_backend::{Error, ErrorKind, Result};
use statekit_tuner::{derive, explain_markdown, Machine, Tuning, WorkloadShape};

use crate::backends::{BackendKind, BackendSpec};
use crate::profile::Profile;
use crate::runner;
use crate::shape::ShapeBuilder;

/// The shape of the trace at `path`, rates per second of `seconds` of stream (default: the
/// trace's recorded time: the stream's event time for a trace `statekit record` wrote, the
/// wall clock for one a live engine recorded).
///
/// # Errors
/// As [`ShapeBuilder::read_trace`]; `InvalidArgument` for `seconds` that is not positive.
pub fn shape_from_trace(path: &Path, seconds: Option<f64>) -> Result<WorkloadShape> {
    if seconds.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(Error::invalid(format!(
            "--seconds {seconds:?} must be a positive number"
        )));
    }
    let mut builder = ShapeBuilder::new();
    let recorded = if builder.read_trace(path)?.stream_time {
        "its recorded stream's event time"
    } else {
        "the wall-clock time of its recording"
    };
    let source = match seconds {
        Some(s) => format!("trace {}, its span given as {s} s", path.display()),
        None => format!("trace {}, over {recorded}", path.display()),
    };
    Ok(builder.finish(&source, seconds))
}

/// The shape of `profile` at scale `scale`, measured on a scaled-down copy of it: the same
/// event-time span and parameters with the event rate and the number of keys divided by one
/// factor (so each key sees the same traffic and the operators keep state as long), chosen
/// so that the sample has about `sample_events` events. The sample runs on the memory
/// backend with every state operation recorded (in `work_dir`); its rates (per second of
/// event time), live size and distinct keys are then multiplied by the factor.
///
/// # Errors
/// An unknown scale, or any error of the sample run.
pub fn shape_from_profile(
    profile: &Profile,
    scale: &str,
    sample_events: u64,
    work_dir: &Path,
    progress: bool,
) -> Result<WorkloadShape> {
    let target = profile.scale(scale)?.clone();
    let seconds = target.duration.as_secs_f64();
    let events = target.events_per_sec * seconds;
    let factor = (events / sample_events.max(1) as f64).max(1.0);
    let mut sample = target.clone();
    sample.events_per_sec = target.events_per_sec / factor;
    sample.keys = ((target.keys as f64 / factor).ceil() as u64).max(1);
    sample.self_check = false;
    sample.checkpoint_interval = None;
    let mut sampled = profile.clone();
    const SAMPLE: &str = "tuner-sample";
    sampled.scales.insert(SAMPLE.into(), sample.clone());
    let trace = work_dir.join("sample.trace");
    let spec = BackendSpec {
        kind: BackendKind::Memory,
        config: None,
        rocksdb: None,
    };
    runner::record(
        &sampled,
        SAMPLE,
        &spec,
        &trace,
        true,
        &work_dir.join("run"),
        progress,
    )?;
    let mut builder = ShapeBuilder::new();
    builder.read_trace(&trace)?;
    let mut shape = builder.finish("", Some(seconds));
    let _ = std::fs::remove_file(&trace);
    for s in &mut shape.states {
        s.rates = s.rates.scaled(factor);
        s.live_growth_bytes_per_sec *= factor;
        s.live_bytes = (s.live_bytes as f64 * factor) as u64;
        s.distinct_keys = (s.distinct_keys as f64 * factor) as u64;
    }
    shape.source = format!(
        "profile {} at scale '{scale}' ({} events/s for {}, {} keys), measured on a sample \
         with the rate and keys divided by {factor:.1}",
        profile.path.display(),
        target.events_per_sec,
        humantime::format_duration(target.duration),
        target.keys,
    );
    Ok(shape)
}

/// Derives the configuration for `shape` on `machine` and writes `out/tuned.toml`,
/// `out/OPTIONS`, `out/explain.md` and `out/shape.json`.
///
/// # Errors
/// `InvalidArgument` for a bad shape or machine; I/O errors naming the file.
pub fn tune_and_write(shape: &WorkloadShape, machine: &Machine, out: &Path) -> Result<Tuning> {
    let tuning = derive(shape, machine)
        .map_err(|e| Error::invalid(format!("tuning {}: {e}", shape.source)))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display(), e))?;
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(path.display(), e))
    };
    let toml = format!(
        "# Derived by `statekit tune` from {}.\n# Why each value: explain.md beside this file. \
         Run it: statekit bench --config rocksdb=<this file>\n\n{}",
        shape.source,
        tuning.config.to_toml()?
    );
    write("tuned.toml", &toml)?;
    write("OPTIONS", &tuning.config.to_options_string()?)?;
    write("explain.md", &explain_markdown(&tuning, shape, machine))?;
    let json = serde_json::to_string_pretty(shape)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("shape to JSON: {e}")))?;
    write("shape.json", &json)?;
    Ok(tuning)
}
