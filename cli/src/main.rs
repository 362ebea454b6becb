//! `statekit`: run the reference workloads against state backends, record and replay
//! state-access traces, write reports, and tune RocksDB for a workload.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use statekit_backend::Result;
use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::event::EventFileWriter;
use statekit_bench::isolation::Isolation;
use statekit_bench::profile::Profile;
use statekit_bench::results::Results;
use statekit_bench::runner::{self, BenchOptions};
use statekit_bench::trace::{import_gadget, GadgetImport};

// jemalloc: fragmentation-resistant under the allocation pattern of large state, and the
// allocator RocksDB is built against.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "statekit",
    version,
    about = "Benchmark keyed state backends on real streaming operators, and tune RocksDB for them"
)]
struct Cli {
    /// Hide progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// The backends on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    /// Everything on the heap.
    Memory,
    /// Embedded RocksDB (feature `rocksdb`).
    Rocksdb,
    /// State in object storage (feature `remote`).
    Remote,
}

impl From<BackendArg> for BackendKind {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Memory => BackendKind::Memory,
            BackendArg::Rocksdb => BackendKind::Rocksdb,
            BackendArg::Remote => BackendKind::Remote,
        }
    }
}

fn kinds(args: &[BackendArg]) -> Vec<BackendKind> {
    args.iter().copied().map(BackendKind::from).collect()
}

/// How `tune` learns about the disk.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DiskArg {
    /// A solid-state disk.
    Ssd,
    /// A spinning disk.
    Hdd,
    /// Measure the disk under the output directory.
    Measure,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload profile on one or more backend/configuration pairs, side by side, and
    /// write OUT/results.json, OUT/report.md and OUT/report.html.
    Bench {
        /// The profile (profiles/*.toml).
        profile: PathBuf,
        /// The scale: quick, standard, large (or another the profile defines).
        #[arg(long, default_value = "quick")]
        scale: String,
        /// A backend to run (repeat for a comparison).
        #[arg(long = "backend", value_enum, default_values_t = [BackendArg::Memory])]
        backends: Vec<BackendArg>,
        /// A configuration preset or file for backends that take one (repeat to compare);
        /// `BACKEND=VALUE` (e.g. `rocksdb=flink-default`, `remote=store.toml`) targets one.
        #[arg(long = "config")]
        configs: Vec<String>,
        /// Memory budget, like 256MiB (overrides the scale's).
        #[arg(long, value_parser = statekit_bench::util::parse_size)]
        memory_budget: Option<u64>,
        /// Output directory.
        #[arg(long, default_value = "statekit-results")]
        out: PathBuf,
        /// Take the events from a CSV or JSON-lines file instead of the generator.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Keep the backends' working files under OUT/work.
        #[arg(long)]
        keep_state: bool,
        /// Stop a run still going after this long (like 30m) and report it as stopped.
        #[arg(long, value_parser = statekit_bench::util::parse_duration)]
        time_limit: Option<Duration>,
        /// Run every backend in this process instead of one child process per run (memory
        /// figures of later runs then include what earlier runs left behind).
        #[arg(long)]
        in_process: bool,
    },
    /// Run a profile once and record every state operation to a trace, each record stamped
    /// with the stream's event time.
    Record {
        /// The profile.
        profile: PathBuf,
        /// The scale.
        #[arg(long, default_value = "quick")]
        scale: String,
        /// The backend to record on.
        #[arg(long, value_enum, default_value_t = BackendArg::Memory)]
        backend: BackendArg,
        /// A configuration for it.
        #[arg(long)]
        config: Option<String>,
        /// Store value sizes instead of value bytes (much smaller traces).
        #[arg(long)]
        sizes_only: bool,
        /// The trace file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replay a trace against backends and write a report.
    Replay {
        /// The trace.
        trace: PathBuf,
        /// A backend to replay on (repeat to compare).
        #[arg(long = "backend", value_enum, default_values_t = [BackendArg::Memory])]
        backends: Vec<BackendArg>,
        /// Configurations for backends that take one (`BACKEND=VALUE` targets one).
        #[arg(long = "config")]
        configs: Vec<String>,
        /// Memory budget, like 256MiB.
        #[arg(long, value_parser = statekit_bench::util::parse_size)]
        memory_budget: Option<u64>,
        /// Output directory.
        #[arg(long, default_value = "statekit-replay")]
        out: PathBuf,
        /// Stop a run still going after this long (like 30m) and report it as stopped.
        #[arg(long, value_parser = statekit_bench::util::parse_duration)]
        time_limit: Option<Duration>,
        /// Replay on every backend in this process instead of one child process per run.
        #[arg(long)]
        in_process: bool,
    },
    /// Derive RocksDB settings for a workload (a profile at a scale, or a trace) and explain
    /// every value: writes OUT/tuned.toml (run it with `bench --config rocksdb=OUT/tuned.toml`),
    /// OUT/OPTIONS (RocksDB's own format), OUT/explain.md and OUT/shape.json.
    Tune {
        /// The profile (profiles/*.toml); or give --trace.
        #[arg(required_unless_present = "trace", conflicts_with = "trace")]
        profile: Option<PathBuf>,
        /// The scale to tune for.
        #[arg(long, default_value = "quick")]
        scale: String,
        /// Events of the scaled-down sample run that measures the profile's shape.
        #[arg(long, default_value_t = 300_000)]
        sample_events: u64,
        /// A trace (recorded by `statekit record`, or imported from Gadget) instead of a profile.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Seconds of stream the trace covers, when its recorded time does not say (a
        /// Gadget trace has no timing).
        #[arg(long, requires = "trace")]
        seconds: Option<f64>,
        /// Memory budget for block cache and memtables, like 256MiB (default: the scale's,
        /// else 512 MiB).
        #[arg(long, value_parser = statekit_bench::util::parse_size)]
        memory_budget: Option<u64>,
        /// The disk: declared `ssd` or `hdd`, or `measure` (O_DIRECT writes and reads of a
        /// 256 MiB file under OUT).
        #[arg(long, default_value = "ssd")]
        disk: DiskArg,
        /// Cores for the job (default: what this machine offers).
        #[arg(long)]
        cores: Option<u32>,
        /// Tune for buffered I/O (the page cache allowed) instead of direct I/O.
        #[arg(long)]
        buffered: bool,
        /// Output directory.
        #[arg(long, default_value = "statekit-tuned")]
        out: PathBuf,
        /// Then run the tuned configuration and every baseline (statekit's default, RocksDB's
        /// defaults, Flink's four presets, OptimizeLevelStyleCompaction) on the same stream
        /// and budget, each in its own process, interleaved, and write OUT/validation.md and
        /// the full report under OUT/validation.
        #[arg(long)]
        validate: bool,
        /// Runs of each configuration when validating (and of each side of a refinement
        /// trial).
        #[arg(long, default_value_t = 2)]
        repeats: usize,
        /// Before validating, let the advisor refine the tuned configuration for this many
        /// minutes: it reads the runs' statistics, proposes changes, and each is kept only
        /// when it beats the current best beyond the noise (OUT/refine.md, OUT/refined.toml).
        #[arg(long, default_value_t = 0.0, requires = "validate")]
        refine_minutes: f64,
        /// Stop a validation run still going after this long (like 10m).
        #[arg(long, value_parser = statekit_bench::util::parse_duration)]
        time_limit: Option<Duration>,
    },
    /// Kill the workload with SIGKILL at random moments, recover each time from the last
    /// confirmed checkpoint, and check that every run to the end gives the results and state
    /// of a run without kills. Ends with one line: kills, recoveries, mismatches.
    CrashTest {
        /// The profile.
        profile: PathBuf,
        /// The scale.
        #[arg(long, default_value = "quick")]
        scale: String,
        /// The backend.
        #[arg(long, value_enum, default_value_t = BackendArg::Memory)]
        backend: BackendArg,
        /// A configuration for it.
        #[arg(long)]
        config: Option<String>,
        /// Memory budget, like 256MiB, for backends that take one.
        #[arg(long, value_parser = statekit_bench::util::parse_size)]
        memory_budget: Option<u64>,
        /// Kills to inflict in all (runs repeat until they are reached).
        #[arg(long, default_value_t = 20)]
        kills: u32,
        /// Seed of the kill times: the same seed reproduces a test.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Events between two checkpoints.
        #[arg(long, default_value_t = 1000)]
        checkpoint_every: u64,
        /// Only the first this many events of the scale (0: all).
        #[arg(long, default_value_t = 20_000)]
        max_events: u64,
        /// Remote backend: make this fraction of object-store calls fail (errors, timeouts,
        /// lost write responses; as many again slow), like 0.01. A worker that fails is
        /// restarted from the last confirmed checkpoint.
        #[arg(long)]
        object_store_faults: Option<f64>,
        /// Working directory (emptied first).
        #[arg(long, default_value = "statekit-crash-test")]
        work: PathBuf,
    },
    /// One worker of `crash-test` (started by it).
    #[command(hide = true)]
    CrashTestWorker {
        /// The run's directory.
        dir: PathBuf,
        /// Which worker of the run this is, from 1.
        incarnation: u64,
    },
    /// Run one request of a parent `statekit` in this process (how `bench` and `replay`
    /// give every run a process of its own).
    #[command(hide = true)]
    RunOne {
        /// The request (JSON) the parent wrote.
        request: PathBuf,
        /// Where to write the run's result (JSON).
        result: PathBuf,
    },
    /// Convert a Gadget text trace into a statekit trace.
    ImportGadget {
        /// Gadget's trace (`counter op key value gadget gadgetFile` lines).
        file: PathBuf,
        /// The statekit trace to write.
        #[arg(long)]
        out: PathBuf,
        /// Value size of puts and merges (Gadget's trace has none).
        #[arg(long, default_value_t = 64)]
        value_size: usize,
        /// Max parallelism (number of key groups) of the trace.
        #[arg(long, default_value_t = 128)]
        max_parallelism: u16,
        /// Leading bytes of a Gadget key that are the keyed-state key; the rest (an event
        /// time an operator appended) is the map key inside it.
        #[arg(long, default_value_t = 10)]
        key_width: usize,
    },
    /// Render report.md and report.html from a results.json.
    Report {
        /// The results file.
        results: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the ad-click interval join on one event file on statekit (memory, RocksDB with
    /// direct I/O, RocksDB with the page cache) and on Flink (heap and RocksDB state, via a
    /// PyFlink script), and write OUT/versus-flink.md: rates, ratios and joined pairs.
    VersusFlink {
        /// The ad-click profile (its window and out-of-orderness go to both sides).
        profile: PathBuf,
        /// The event file (`statekit generate --out EVENTS.csv`).
        #[arg(long)]
        input: PathBuf,
        /// The profile's scale (budget and checks; the events come from --input).
        #[arg(long, default_value = "quick")]
        scale: String,
        /// The PyFlink script running the join (arguments: EVENTS.csv hashmap|rocksdb
        /// --managed-memory M --window-minutes W --out-of-orderness-seconds S --out-dir DIR;
        /// prints `job wall <seconds>s`).
        #[arg(long)]
        flink_script: PathBuf,
        /// The Python interpreter that has PyFlink (a virtualenv's bin/python, say).
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// Flink's state backends to run (repeat): hashmap, rocksdb.
        #[arg(long = "flink-backend", default_values_t = ["hashmap".to_string(), "rocksdb".to_string()])]
        flink_backends: Vec<String>,
        /// Memory for state on both sides (Flink's managed memory), like 256MiB.
        #[arg(long, default_value = "256MiB", value_parser = statekit_bench::util::parse_size)]
        memory_budget: u64,
        /// Kill a Flink job still going after this long (Flink on RocksDB can take hours).
        #[arg(long, default_value = "10m", value_parser = statekit_bench::util::parse_duration)]
        flink_time_limit: Duration,
        /// Stop a statekit run still going after this long.
        #[arg(long, value_parser = statekit_bench::util::parse_duration)]
        time_limit: Option<Duration>,
        /// Run everything this many times; rates are given with their range.
        #[arg(long, default_value_t = 1)]
        repeats: u32,
        /// Also run RocksDB with the configuration `statekit tune` derives for the profile,
        /// scale and budget (direct I/O and page cache; written with its reasons to
        /// OUT/tuned-direct-io and OUT/tuned-page-cache).
        #[arg(long)]
        tuned: bool,
        /// Output directory.
        #[arg(long, default_value = "versus-flink")]
        out: PathBuf,
    },
    /// Write a profile's generated input stream to a CSV or JSON-lines file.
    Generate {
        /// The profile.
        profile: PathBuf,
        /// The scale.
        #[arg(long, default_value = "quick")]
        scale: String,
        /// The file to write (.csv or .jsonl).
        #[arg(long)]
        out: PathBuf,
    },
}

fn print_summary(results: &Results, out: &std::path::Path) {
    for r in &results.runs {
        match &r.error {
            Some(e) => eprintln!("{:>16}: FAILED: {e}", r.label),
            None => {
                let p99 = r
                    .ops
                    .iter()
                    .max_by_key(|(_, s)| s.count)
                    .map(|(k, s)| {
                        format!(
                            "{k} p99 {}",
                            statekit_bench::report::format_ns(s.p99_ns as f64)
                        )
                    })
                    .unwrap_or_default();
                let checks = if r.checks.is_empty() {
                    String::new()
                } else if r.checks.iter().all(|c| c.passed) {
                    ", self-checks passed".into()
                } else {
                    ", SELF-CHECKS FAILED".into()
                };
                eprintln!(
                    "{:>16}: {} events in {:.1} s, {:.0} events/s, {:.0} ops/s, {p99}{checks}",
                    r.label, r.events, r.wall_seconds, r.events_per_sec, r.ops_per_sec
                );
            }
        }
    }
    if results.runs.len() > 1 {
        if results.comparison.counters_equal {
            eprintln!("result counters equal across runs");
        } else {
            eprintln!(
                "result counters DIFFER across runs: {}",
                results.comparison.differing.join(", ")
            );
        }
    }
    eprintln!(
        "wrote {}/results.json, report.md, report.html",
        out.display()
    );
}

fn verdict(results: &Results) -> ExitCode {
    let ok = results
        .runs
        .iter()
        .all(|r| r.ok() && r.divergent_reads.unwrap_or(0) == 0)
        && results.comparison.counters_equal;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn isolation(in_process: bool) -> Result<Isolation> {
    if in_process {
        Ok(Isolation::InProcess)
    } else {
        Isolation::child_processes()
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let progress = !cli.quiet;
    match cli.command {
        Command::Bench {
            profile,
            scale,
            backends,
            configs,
            memory_budget,
            out,
            input,
            keep_state,
            time_limit,
            in_process,
        } => {
            let options = BenchOptions {
                profile: Profile::load(&profile)?,
                scale,
                specs: BackendSpec::pairs(&kinds(&backends), &configs),
                memory_budget,
                out: out.clone(),
                input,
                keep_state,
                progress,
                isolation: isolation(in_process)?,
                time_limit,
            };
            let results = runner::bench(&options)?;
            runner::write_all(&results, &out)?;
            print_summary(&results, &out);
            Ok(verdict(&results))
        }
        Command::Record {
            profile,
            scale,
            backend,
            config,
            sizes_only,
            out,
        } => {
            let profile = Profile::load(&profile)?;
            let work = tempfile::Builder::new()
                .prefix("statekit-record")
                .tempdir()
                .map_err(|e| statekit_backend::Error::io("temporary directory", e))?;
            let spec = BackendSpec {
                kind: backend.into(),
                config,
                rocksdb: None,
            };
            let (run, records) = runner::record(
                &profile,
                &scale,
                &spec,
                &out,
                sizes_only,
                work.path(),
                progress,
            )?;
            let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
            eprintln!(
                "recorded {records} operations of {} events to {} ({} bytes)",
                run.events,
                out.display(),
                bytes
            );
            for (k, s) in &run.ops {
                eprintln!("{k:>16}: {}", s.count);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tune {
            profile,
            scale,
            sample_events,
            trace,
            seconds,
            memory_budget,
            disk,
            cores,
            buffered,
            out,
            validate,
            repeats,
            refine_minutes,
            time_limit,
        } => {
            use statekit_tuner::{Disk, DiskKind, Machine};
            let loaded = profile.as_deref().map(Profile::load).transpose()?;
            let (shape, scale_budget) = match (&loaded, &trace) {
                (_, Some(trace)) => (
                    statekit_bench::tune::shape_from_trace(trace, seconds)?,
                    None,
                ),
                (Some(profile), None) => {
                    let work = tempfile::Builder::new()
                        .prefix("statekit-tune")
                        .tempdir()
                        .map_err(|e| statekit_backend::Error::io("temporary directory", e))?;
                    let budget = profile.scale(&scale)?.memory_budget;
                    let shape = statekit_bench::tune::shape_from_profile(
                        profile,
                        &scale,
                        sample_events,
                        work.path(),
                        progress,
                    )?;
                    (shape, budget)
                }
                (None, None) => unreachable!("clap requires a profile or --trace"),
            };
            let disk = match disk {
                DiskArg::Ssd => Disk::declared(DiskKind::Ssd),
                DiskArg::Hdd => Disk::declared(DiskKind::Hdd),
                DiskArg::Measure => statekit_bench::disk_probe::measure(&out, 256 << 20)?,
            };
            let machine = Machine {
                cores: cores.unwrap_or_else(statekit_bench::util::available_cores),
                memory_budget: memory_budget
                    .or(scale_budget)
                    .unwrap_or(statekit_bench::backends::DEFAULT_ROCKSDB_BUDGET),
                disk,
                direct_io: !buffered,
            };
            let tuning = statekit_bench::tune::tune_and_write(&shape, &machine, &out)?;
            eprintln!(
                "tuned {} options for {} states; wrote {}/tuned.toml, OPTIONS, explain.md, shape.json",
                tuning.reasons.len(),
                shape.states.len(),
                out.display()
            );
            for w in &tuning.warnings {
                eprintln!("warning: {w}");
            }
            if !validate {
                return Ok(ExitCode::SUCCESS);
            }
            use statekit_bench::validate::{candidates, interleaved_specs, validation_markdown};
            let budget = Some(machine.memory_budget);
            // Runs specs on the workload (a profile's scale, or the trace), each in its own
            // process, writing the full results under `dir`.
            let run_specs = |specs: &[BackendSpec], dir: &std::path::Path| -> Result<Results> {
                let results = match (&loaded, &trace) {
                    (_, Some(trace)) => runner::replay_all(
                        trace,
                        specs,
                        dir,
                        budget,
                        progress,
                        &isolation(false)?,
                        time_limit,
                    )?,
                    (Some(profile), None) => runner::bench(&BenchOptions {
                        profile: profile.clone(),
                        scale: scale.clone(),
                        specs: specs.to_vec(),
                        memory_budget: budget,
                        out: dir.to_path_buf(),
                        input: None,
                        keep_state: false,
                        progress,
                        isolation: isolation(false)?,
                        time_limit,
                    })?,
                    (None, None) => unreachable!("clap requires a profile or --trace"),
                };
                runner::write_all(&results, dir)?;
                Ok(results)
            };
            let refined = if refine_minutes > 0.0 {
                let deadline =
                    std::time::Instant::now() + Duration::from_secs_f64(refine_minutes * 60.0);
                let mut trial = 0;
                let (refined, steps) = statekit_bench::refine::refine(
                    &tuning.config,
                    &shape,
                    &machine,
                    repeats,
                    deadline,
                    &mut |specs| {
                        trial += 1;
                        run_specs(specs, &out.join("refine").join(format!("trial-{trial}")))
                    },
                )?;
                let write = |name: &str, text: String| {
                    let path = out.join(name);
                    std::fs::write(&path, text)
                        .map_err(|e| statekit_backend::Error::io(path.display(), e))
                };
                write(
                    "refine.md",
                    statekit_bench::refine::refine_markdown(&steps, refine_minutes),
                )?;
                write(
                    "refined.toml",
                    format!(
                        "# The tuned configuration with the changes refinement kept (refine.md).\n\n{}",
                        refined.to_toml()?
                    ),
                )?;
                Some(refined)
            } else {
                None
            };
            let candidates = candidates(&tuning.config, refined.as_ref(), machine.memory_budget);
            let specs = interleaved_specs(&candidates, repeats);
            let dir = out.join("validation");
            let results = run_specs(&specs, &dir)?;
            let md = validation_markdown(&results, &candidates, machine.memory_budget);
            let path = out.join("validation.md");
            std::fs::write(&path, &md)
                .map_err(|e| statekit_backend::Error::io(path.display(), e))?;
            println!("{md}");
            eprintln!(
                "wrote {} and the full report under {}",
                path.display(),
                dir.display()
            );
            Ok(verdict(&results))
        }
        Command::Replay {
            trace,
            backends,
            configs,
            memory_budget,
            out,
            time_limit,
            in_process,
        } => {
            let results = runner::replay_all(
                &trace,
                &BackendSpec::pairs(&kinds(&backends), &configs),
                &out,
                memory_budget,
                progress,
                &isolation(in_process)?,
                time_limit,
            )?;
            runner::write_all(&results, &out)?;
            print_summary(&results, &out);
            Ok(verdict(&results))
        }
        Command::ImportGadget {
            file,
            out,
            value_size,
            max_parallelism,
            key_width,
        } => {
            let summary = import_gadget(
                &file,
                &out,
                GadgetImport {
                    value_size,
                    max_parallelism,
                    key_width,
                },
            )?;
            eprintln!(
                "imported {} into {}: {summary}",
                file.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CrashTest {
            profile,
            scale,
            backend,
            config,
            memory_budget,
            kills,
            seed,
            checkpoint_every,
            max_events,
            object_store_faults,
            work,
        } => {
            let options = statekit_bench::crash_test::CrashTestOptions {
                profile: Profile::load(&profile)?,
                scale,
                spec: BackendSpec {
                    kind: backend.into(),
                    config,
                    rocksdb: None,
                },
                memory_budget,
                kills,
                seed,
                checkpoint_every,
                max_events: (max_events > 0).then_some(max_events),
                object_store_faults,
                work,
                exe: std::env::current_exe()
                    .map_err(|e| statekit_backend::Error::io("the statekit executable", e))?,
            };
            let summary = statekit_bench::crash_test::crash_test(&options, |line| {
                if progress {
                    eprintln!("{line}");
                }
            })?;
            for mismatch in &summary.mismatches {
                eprintln!("{mismatch}");
            }
            eprintln!("{}", summary.phases_line());
            println!("{}", summary.line());
            Ok(if summary.mismatches.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::CrashTestWorker { dir, incarnation } => {
            statekit_bench::crash_test::run_worker(&dir, incarnation)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RunOne { request, result } => {
            statekit_bench::isolation::serve_request(&request, &result)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { results, out } => {
            let r = Results::read(&results)?;
            std::fs::create_dir_all(&out)
                .map_err(|e| statekit_backend::Error::io(out.display(), e))?;
            statekit_bench::report::write_reports(&r, &out)?;
            eprintln!("wrote {}/report.md and report.html", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::VersusFlink {
            profile,
            input,
            scale,
            flink_script,
            python,
            flink_backends,
            memory_budget,
            flink_time_limit,
            time_limit,
            repeats,
            tuned,
            out,
        } => {
            let options = statekit_bench::versus_flink::VersusFlinkOptions {
                profile: Profile::load(&profile)?,
                scale,
                input,
                memory_budget,
                flink_script,
                python,
                flink_backends,
                flink_time_limit,
                time_limit,
                repeats,
                out: out.clone(),
                progress,
                isolation: isolation(false)?,
                tuned,
            };
            let comparison = statekit_bench::versus_flink::run(&options)?;
            let md = statekit_bench::versus_flink::markdown(&comparison);
            let (md_path, json_path) =
                statekit_bench::versus_flink::write_all(&comparison, &md, &out)?;
            print!("{md}");
            eprintln!("wrote {} and {}", md_path.display(), json_path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            profile,
            scale,
            out,
        } => {
            let profile = Profile::load(&profile)?;
            let spec = profile.scale(&scale)?.clone();
            let n = EventFileWriter::write_file(&out, profile.generator(&spec)?)?;
            eprintln!("wrote {n} events to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("statekit: {e}");
            ExitCode::FAILURE
        }
    }
}
