//! The ad-click interval join on one event file, statekit's backends beside Flink's, in one
//! table (`statekit versus-flink`).
//!
//! statekit runs the join on the memory backend, on RocksDB with direct I/O (the budget is
//! real) and on RocksDB with the page cache allowed, each in its own process, as `bench`
//! does. Flink runs the same join as a SQL job: a PyFlink script the caller names (it takes
//! `EVENTS.csv hashmap|rocksdb --managed-memory M --window-minutes W
//! --out-of-orderness-seconds S --out-dir DIR` and prints `job wall <seconds>s`), on its heap
//! and RocksDB state backends. Each side's rate is events per second of its whole job:
//! statekit's run time including parsing its input (on a thread of its own, as Flink's
//! source runs in a task of its own), Flink's job wall time (its CSV source and job start
//! included), so neither side leaves out work the other counts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statekit_backend::{Error, Result};

use crate::backends::{BackendKind, BackendSpec};
use crate::isolation::Isolation;
use crate::profile::{Profile, WorkloadParams};
use crate::results::Results;
use crate::runner::{self, BenchOptions};

/// What `versus-flink` runs.
#[derive(Debug, Clone)]
pub struct VersusFlinkOptions {
    /// The ad-click profile whose parameters (window, out-of-orderness) both sides use.
    pub profile: Profile,
    /// The profile's scale (its budget and self-check settings; the events come from `input`).
    pub scale: String,
    /// The event file (`statekit generate`'s CSV).
    pub input: PathBuf,
    /// Memory for state, on both sides (Flink's managed memory).
    pub memory_budget: u64,
    /// The PyFlink script that runs the join.
    pub flink_script: PathBuf,
    /// The Python interpreter with PyFlink installed.
    pub python: PathBuf,
    /// Flink's state backends to run (`hashmap`, `rocksdb`).
    pub flink_backends: Vec<String>,
    /// A Flink job still going after this long is killed and reported as not finished.
    pub flink_time_limit: Duration,
    /// A statekit run still going after this long is stopped.
    pub time_limit: Option<Duration>,
    /// How many times to run everything (rates are then given as mean, min and max).
    pub repeats: u32,
    /// Output directory.
    pub out: PathBuf,
    /// Show progress bars.
    pub progress: bool,
    /// The statekit runs' isolation (a child process each, normally).
    pub isolation: Isolation,
    /// Also run RocksDB with the tuner's configuration for the profile, scale and budget
    /// (with direct I/O and with the page cache), as `statekit tune` derives it.
    pub tuned: bool,
}

/// Events of the tuner's sample run (as `statekit tune`'s default).
const TUNER_SAMPLE_EVENTS: u64 = 300_000;

/// One Flink job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlinkRun {
    /// `hashmap` or `rocksdb`.
    pub backend: String,
    /// Seconds from job submission to its end, as the script printed them; `None` when the
    /// job did not finish.
    pub job_seconds: Option<f64>,
    /// Seconds of the whole process (the JVM's start included), or until it was killed.
    pub process_seconds: f64,
    /// Joined pairs written (lines of the job's output files), when it finished.
    pub pairs: Option<u64>,
    /// Why the job has no result (killed at the time limit, failed), if it has none.
    pub error: Option<String>,
    /// Whether it was killed at the time limit.
    #[serde(default)]
    pub killed: bool,
}

/// One row of the table: a statekit run or a Flink job, over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `statekit memory`, `Flink hashmap`, ...
    pub name: String,
    /// Events per second of the whole job, one per repeat that finished.
    pub rates: Vec<f64>,
    /// statekit only: events per second of state work (waits for the input left out).
    pub state_rates: Vec<f64>,
    /// Joined pairs (of the last repeat that finished).
    pub pairs: Option<u64>,
    /// For a job killed at the time limit: it ran slower than this many events per second
    /// (the events over the limit), the bound the table shows when no repeat finished.
    #[serde(default)]
    pub slower_than: Option<f64>,
    /// Repeats that did not finish, and why.
    pub failures: Vec<String>,
}

impl Row {
    /// A row with nothing measured yet.
    fn named(name: String) -> Row {
        Row {
            name,
            rates: Vec::new(),
            state_rates: Vec::new(),
            pairs: None,
            slower_than: None,
            failures: Vec::new(),
        }
    }

    fn mean(&self) -> Option<f64> {
        (!self.rates.is_empty()).then(|| self.rates.iter().sum::<f64>() / self.rates.len() as f64)
    }
}

/// Everything `versus-flink` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The event file.
    pub input: PathBuf,
    /// Events in it.
    pub events: u64,
    /// The memory for state, bytes.
    pub memory_budget: u64,
    /// statekit's rows, then Flink's.
    pub rows: Vec<Row>,
    /// The Flink jobs, every repeat.
    pub flink_runs: Vec<FlinkRun>,
}

/// The statekit runs: memory, RocksDB with direct I/O, RocksDB with the page cache.
fn statekit_specs() -> Vec<BackendSpec> {
    let mut page_cache = statekit_backend::rocksdb_config::RocksDbConfig::default();
    page_cache.db.use_direct_reads = Some(false);
    page_cache.db.use_direct_io_for_flush_and_compaction = Some(false);
    vec![
        BackendSpec {
            kind: BackendKind::Memory,
            config: None,
            rocksdb: None,
        },
        BackendSpec {
            kind: BackendKind::Rocksdb,
            config: Some("direct-io".to_string()),
            rocksdb: Some(Box::new(
                statekit_backend::rocksdb_config::RocksDbConfig::default(),
            )),
        },
        BackendSpec {
            kind: BackendKind::Rocksdb,
            config: Some("page-cache".to_string()),
            rocksdb: Some(Box::new(page_cache)),
        },
    ]
}

/// The tuner's configurations for the profile at `options.scale` with the run's budget, one
/// with direct I/O and one with the page cache, each also written with its reasons to
/// `OUT/tuned-direct-io/` and `OUT/tuned-page-cache/` (as `statekit tune --out` writes them).
fn tuned_specs(options: &VersusFlinkOptions) -> Result<Vec<BackendSpec>> {
    use statekit_tuner::{Disk, DiskKind, Machine};
    let sample = options.out.join("tuner-sample");
    let shape = crate::tune::shape_from_profile(
        &options.profile,
        &options.scale,
        TUNER_SAMPLE_EVENTS,
        &sample,
        options.progress,
    )?;
    std::fs::remove_dir_all(&sample).map_err(|e| Error::io(sample.display(), e))?;
    let cores = crate::util::available_cores();
    [("tuned-direct-io", true), ("tuned-page-cache", false)]
        .into_iter()
        .map(|(name, direct_io)| {
            let machine = Machine {
                cores,
                memory_budget: options.memory_budget,
                disk: Disk::declared(DiskKind::Ssd),
                direct_io,
            };
            let tuning = crate::tune::tune_and_write(&shape, &machine, &options.out.join(name))?;
            Ok(BackendSpec {
                kind: BackendKind::Rocksdb,
                config: Some(name.to_string()),
                rocksdb: Some(Box::new(tuning.config)),
            })
        })
        .collect()
}

/// Runs both sides `repeats` times and returns the table's data; each repeat's statekit
/// results go to `OUT/statekit-<n>/`, each Flink job's output and log to
/// `OUT/flink-<backend>-<n>/`.
///
/// # Errors
/// `InvalidArgument` for a profile that is not ad-click, a missing script or input, a bad
/// backend name; I/O errors naming the path. A Flink job that fails or runs out of time is
/// not an error: its row says so.
pub fn run(options: &VersusFlinkOptions) -> Result<Comparison> {
    let WorkloadParams::AdClick(params) = &options.profile.params else {
        return Err(Error::invalid(format!(
            "versus-flink runs the ad-click interval join; {} is a {} profile",
            options.profile.path.display(),
            options.profile.workload.name()
        )));
    };
    for b in &options.flink_backends {
        if b != "hashmap" && b != "rocksdb" {
            return Err(Error::invalid(format!(
                "Flink state backend '{b}': expected hashmap or rocksdb"
            )));
        }
    }
    if !options.flink_script.is_file() {
        return Err(Error::invalid(format!(
            "Flink script {}: no such file",
            options.flink_script.display()
        )));
    }
    let events = count_events(&options.input)?;
    std::fs::create_dir_all(&options.out).map_err(|e| Error::io(options.out.display(), e))?;
    let flink_args = FlinkArgs {
        window_minutes: params.window.as_secs().div_ceil(60),
        out_of_orderness_seconds: params.out_of_orderness.as_secs(),
        managed_memory_mib: options.memory_budget >> 20,
    };
    let mut specs = statekit_specs();
    if options.tuned {
        specs.extend(tuned_specs(options)?);
    }
    let mut rows: Vec<Row> = specs
        .iter()
        .map(|s| Row::named(format!("statekit {}", s.label().replace('/', ", "))))
        .chain(
            options
                .flink_backends
                .iter()
                .map(|b| Row::named(format!("Flink {b}"))),
        )
        .collect();
    let mut flink_runs = Vec::new();
    for repeat in 1..=options.repeats.max(1) {
        let out = options.out.join(format!("statekit-{repeat}"));
        let results = runner::bench(&BenchOptions {
            profile: options.profile.clone(),
            scale: options.scale.clone(),
            specs: specs.clone(),
            memory_budget: Some(options.memory_budget),
            out: out.clone(),
            input: Some(options.input.clone()),
            keep_state: false,
            progress: options.progress,
            isolation: options.isolation.clone(),
            time_limit: options.time_limit,
        })?;
        runner::write_all(&results, &out)?;
        add_statekit(&mut rows, &results);
        for (i, backend) in options.flink_backends.iter().enumerate() {
            let dir = options.out.join(format!("flink-{backend}-{repeat}"));
            let run = run_flink(options, &flink_args, backend, &dir)?;
            let row = &mut rows[specs.len() + i];
            // run_flink gives a job time exactly when there is no error.
            match (run.job_seconds, &run.error) {
                (Some(secs), _) => {
                    row.rates.push(events as f64 / secs);
                    row.pairs = run.pairs;
                }
                (None, error) => {
                    row.failures.push(
                        error
                            .clone()
                            .unwrap_or_else(|| "no job time printed".to_string()),
                    );
                    // Every repeat has the same limit; a repeat that finished gives the
                    // row a rate, which the table shows instead of this bound.
                    if run.killed {
                        row.slower_than =
                            Some(events as f64 / options.flink_time_limit.as_secs_f64());
                    }
                }
            }
            flink_runs.push(run);
        }
    }
    Ok(Comparison {
        input: options.input.clone(),
        events,
        memory_budget: options.memory_budget,
        rows,
        flink_runs,
    })
}

fn add_statekit(rows: &mut [Row], results: &Results) {
    for (row, run) in rows.iter_mut().zip(&results.runs) {
        match &run.error {
            Some(e) => row.failures.push(e.clone()),
            None if run.wall_seconds > 0.0 => {
                row.rates.push(run.events as f64 / run.wall_seconds);
                row.state_rates.push(run.events_per_sec);
                row.pairs = run.counters.get("joined_pairs").copied();
            }
            None => row.failures.push("no run time".to_string()),
        }
    }
}

/// The script's join parameters, from the profile and the budget.
struct FlinkArgs {
    window_minutes: u64,
    out_of_orderness_seconds: u64,
    managed_memory_mib: u64,
}

/// Runs one Flink job in a process group of its own (PyFlink starts a JVM), killed whole at
/// the time limit.
fn run_flink(
    options: &VersusFlinkOptions,
    args: &FlinkArgs,
    backend: &str,
    dir: &Path,
) -> Result<FlinkRun> {
    use std::os::unix::process::CommandExt;
    let pairs_dir = dir.join("pairs");
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    // The script and its JVM write their temporary files (a header-less copy of the input
    // as large as the input, the mini-cluster's directories) under the run's own directory,
    // removed after the job, killed or not: left in /tmp they filled the disk over a few
    // runs.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    let log_path = dir.join("flink.log");
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io(log_path.display(), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io(log_path.display(), e))?;
    let started = Instant::now();
    let mut child = Command::new(&options.python)
        .arg(&options.flink_script)
        .arg(&options.input)
        .arg(backend)
        .arg("--managed-memory")
        .arg(format!("{}m", args.managed_memory_mib))
        .arg("--window-minutes")
        .arg(args.window_minutes.to_string())
        .arg("--out-of-orderness-seconds")
        .arg(args.out_of_orderness_seconds.to_string())
        .arg("--out-dir")
        .arg(&pairs_dir)
        .env("TMPDIR", &tmp)
        .env(
            "JAVA_TOOL_OPTIONS",
            java_tool_options(&tmp, std::env::var("JAVA_TOOL_OPTIONS").ok()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            Error::invalid(format!(
                "could not start {} {}: {e}",
                options.python.display(),
                options.flink_script.display()
            ))
        })?;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("the Flink job", e))?
        {
            break Some(status);
        }
        if started.elapsed() >= options.flink_time_limit {
            // The script's JVM is in the same process group: kill the group (kill(1), as
            // this crate has no unsafe code), and the script itself in any case.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let process_seconds = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    let mut text = String::new();
    std::fs::File::open(&log_path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| Error::io(log_path.display(), e))?;
    let job_seconds = job_wall(&text);
    let error = match status {
        None => Some(format!(
            "not finished after {} (killed)",
            humantime::format_duration(options.flink_time_limit)
        )),
        Some(s) if !s.success() => Some(format!("failed ({s}); see {}", log_path.display())),
        Some(_) if job_seconds.is_none() => Some(format!(
            "no `job wall` line in its output; see {}",
            log_path.display()
        )),
        Some(_) => None,
    };
    let pairs = if error.is_none() {
        Some(count_lines_under(&pairs_dir)?)
    } else {
        None
    };
    Ok(FlinkRun {
        backend: backend.to_string(),
        job_seconds: if error.is_none() { job_seconds } else { None },
        process_seconds,
        pairs,
        error,
        killed: status.is_none(),
    })
}

/// `JAVA_TOOL_OPTIONS` for the Flink job's JVM: its temporary directory set to `tmp` (the JVM
/// ignores `TMPDIR`), after any options the environment gives.
fn java_tool_options(tmp: &Path, inherited: Option<String>) -> String {
    let own = format!("-Djava.io.tmpdir={}", tmp.display());
    match inherited {
        Some(given) if !given.trim().is_empty() => format!("{given} {own}"),
        _ => own,
    }
}

/// The seconds of the script's last `job wall <seconds>s` line.
fn job_wall(output: &str) -> Option<f64> {
    output.lines().rev().find_map(|line| {
        let rest = &line[line.find("job wall ")? + "job wall ".len()..];
        rest.trim().trim_end_matches('s').parse().ok()
    })
}

/// Data lines of an event file: lines after the header.
fn count_events(path: &Path) -> Result<u64> {
    let lines = count_lines(path)?;
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(
            std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?,
        ),
        &mut first,
    )
    .map_err(|e| Error::io(path.display(), e))?;
    if !first.starts_with("kind,") {
        return Err(Error::invalid(format!(
            "{}: not an event file of `statekit generate` (CSV with a `kind,` header)",
            path.display()
        )));
    }
    Ok(lines.saturating_sub(1))
}

fn count_lines(path: &Path) -> Result<u64> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(path.display(), e))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Lines of every file under `dir` (Flink's filesystem sink writes part files, some hidden).
fn count_lines_under(dir: &Path) -> Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))? {
        let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
        total += if path.is_dir() {
            count_lines_under(&path)?
        } else {
            count_lines(&path)?
        };
    }
    Ok(total)
}

/// The comparison as Markdown: a row per run with its rate, the spread over repeats, the
/// ratios to Flink's heap and RocksDB jobs, and the pairs.
pub fn markdown(c: &Comparison) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# statekit versus Flink: the ad-click interval join\n\n{} events from `{}`, \
         {} for state on both sides (Flink's managed memory).\n",
        c.events,
        c.input.display(),
        crate::util::format_size(c.memory_budget)
    );
    let flink = |name: &str| c.rows.iter().find(|r| r.name == name).map(Rate::of);
    let (heap, rocks) = (flink("Flink hashmap"), flink("Flink rocksdb"));
    md.push_str(
        "| run | events/s (whole job) | range over repeats | events/s of state work | vs Flink heap | vs Flink RocksDB | joined pairs | not finished |\n\
         |---|---:|---|---:|---:|---:|---:|---|\n",
    );
    for r in &c.rows {
        let mean = Rate::of(r);
        let range = match r.rates.len() {
            0 => "no run finished".to_string(),
            1 => "1 run".to_string(),
            n => {
                let min = r.rates.iter().copied().fold(f64::INFINITY, f64::min);
                let max = r.rates.iter().copied().fold(0.0, f64::max);
                format!("{} - {} ({n} runs)", rate(min), rate(max))
            }
        };
        let state = if r.state_rates.is_empty() {
            "".to_string()
        } else {
            rate(r.state_rates.iter().sum::<f64>() / r.state_rates.len() as f64)
        };
        let _ = writeln!(
            md,
            "| {} | {} | {range} | {state} | {} | {} | {} | {} |",
            r.name,
            mean.show(),
            mean.ratio(heap),
            mean.ratio(rocks),
            r.pairs.map_or("n/a".to_string(), |p| p.to_string()),
            r.failures.join("; ")
        );
    }
    md.push_str(
        "\nevents/s (whole job): events divided by statekit's run time with its input parsing \
         included (a thread of its own parses ahead of the operator, as Flink's source task \
         does), and by Flink's job wall time (its CSV source and the job's start included). \
         events/s of state work: statekit's rate without the waits for its input, as `bench` \
         reports it. A job killed at the time limit every time has no rate, only a \
         bound: it ran slower than the events over the limit (`< x`), and ratios against it \
         are bounds too (`> x`). Joined pairs may differ where the two handle late \
         events differently (statekit drops an element that arrives behind the watermark).\n",
    );
    if c.rows.iter().any(|r| r.name.contains("tuned")) {
        md.push_str(
            "\nstatekit rocksdb, tuned-*: RocksDB with the configuration `statekit tune` derives \
             for the profile, scale and budget (no trial runs), with direct I/O or the page \
             cache; the values and their reasons are in tuned-*/tuned.toml and explain.md \
             beside this file. The other statekit rows run its default configuration.\n",
        );
    }
    md
}

/// Writes `markdown` (the comparison's [`markdown`]) to `OUT/versus-flink.md` and the
/// comparison to `OUT/versus-flink.json`; returns their paths.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_all(c: &Comparison, markdown: &str, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let md = out.join("versus-flink.md");
    std::fs::write(&md, markdown).map_err(|e| Error::io(md.display(), e))?;
    let json = out.join("versus-flink.json");
    let text = serde_json::to_string_pretty(c)
        .map_err(|e| Error::invalid(format!("{}: {e}", json.display())))?;
    std::fs::write(&json, text).map_err(|e| Error::io(json.display(), e))?;
    Ok((md, json))
}

/// A row's rate for the table: the mean of its repeats, or only a bound for a job that
/// never finished in time.
#[derive(Clone, Copy)]
enum Rate {
    Mean(f64),
    Below(f64),
    Unknown,
}

impl Rate {
    fn of(row: &Row) -> Rate {
        match (row.mean(), row.slower_than) {
            (Some(m), _) => Rate::Mean(m),
            (None, Some(b)) => Rate::Below(b),
            (None, None) => Rate::Unknown,
        }
    }

    fn show(self) -> String {
        match self {
            Rate::Mean(m) => rate(m),
            Rate::Below(b) => format!("< {}", rate(b)),
            Rate::Unknown => "n/a".to_string(),
        }
    }

    /// This rate over `base`'s.
    fn ratio(self, base: Option<Rate>) -> String {
        match (self, base.unwrap_or(Rate::Unknown)) {
            (Rate::Mean(r), Rate::Mean(b)) => format!("{:.2}", r / b),
            (Rate::Mean(r), Rate::Below(b)) => format!("> {:.2}", r / b),
            (Rate::Below(r), Rate::Mean(b)) => format!("< {:.2}", r / b),
            _ => "n/a".to_string(),
        }
    }
}

fn rate(r: f64) -> String {
    if r >= 1000.0 {
        format!("{:.1}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_job_wall_line() {
        assert_eq!(
            job_wall("starting\nflink hashmap p=1: job wall 60.9s\n"),
            Some(60.9)
        );
        assert_eq!(job_wall("no such line\n"), None);
    }

    #[test]
    fn counts_events_after_the_header_and_pairs_in_nested_part_files() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.csv");
        std::fs::write(&events, "kind,ts,key\ndisplay,1,a\nclick,2,a\n").unwrap();
        assert_eq!(count_events(&events).unwrap(), 2);
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "ts,key\n1,a\n").unwrap();
        let e = count_events(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.csv") && e.contains("kind,"), "{e}");
        let pairs = dir.path().join("pairs");
        std::fs::create_dir_all(pairs.join("part")).unwrap();
        std::fs::write(
            pairs.join("part").join(".part-0.inprogress"),
            "a,1,2\nb,3,4\n",
        )
        .unwrap();
        std::fs::write(pairs.join("part-1"), "c,5,6\n").unwrap();
        assert_eq!(count_lines_under(&pairs).unwrap(), 3);
    }

    /// Options that run `script` with sh in place of PyFlink.
    fn sh_options(dir: &Path, script: &str, limit: Duration) -> VersusFlinkOptions {
        let script_path = dir.join("job.sh");
        std::fs::write(&script_path, script).unwrap();
        let profile = Profile::parse(
            Path::new("profiles/ad-click-interval-join.toml"),
            include_str!("../../profiles/ad-click-interval-join.toml"),
        )
        .unwrap();
        VersusFlinkOptions {
            profile,
            scale: "quick".to_string(),
            input: dir.join("events.csv"),
            memory_budget: 256 << 20,
            flink_script: script_path,
            python: PathBuf::from("sh"),
            flink_backends: vec!["hashmap".to_string()],
            flink_time_limit: limit,
            time_limit: None,
            repeats: 1,
            out: dir.to_path_buf(),
            progress: false,
            isolation: Isolation::InProcess,
            tuned: false,
        }
    }

    #[test]
    fn tuned_runs_take_the_tuners_configurations_with_and_without_direct_io() {
        let dir = tempfile::tempdir().unwrap();
        let options = sh_options(dir.path(), "", Duration::from_secs(1));
        let specs = tuned_specs(&options).unwrap();
        let labels: Vec<String> = specs.iter().map(BackendSpec::label).collect();
        assert_eq!(
            labels,
            ["rocksdb/tuned-direct-io", "rocksdb/tuned-page-cache"]
        );
        let direct: Vec<Option<bool>> = specs
            .iter()
            .map(|s| s.rocksdb.as_ref().unwrap().db.use_direct_reads)
            .collect();
        assert_eq!(direct, [Some(true), Some(false)]);
        for name in ["tuned-direct-io", "tuned-page-cache"] {
            let explain = std::fs::read_to_string(dir.path().join(name).join("explain.md"))
                .unwrap_or_else(|e| panic!("{name}/explain.md: {e}"));
            assert!(explain.contains("ad-click/left"), "{explain}");
        }
        assert!(!dir.path().join("tuner-sample").exists());
    }

    const ARGS: FlinkArgs = FlinkArgs {
        window_minutes: 20,
        out_of_orderness_seconds: 5,
        managed_memory_mib: 256,
    };

    #[test]
    fn a_job_that_finishes_gives_its_time_and_pairs_with_the_arguments_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        // $1 events, $2 backend, then the options; the pairs go under --out-dir (${10}).
        let script = r#"echo "args: $*"
echo "tmp: $TMPDIR java: $JAVA_TOOL_OPTIONS"
mktemp -d "$TMPDIR/flink-events-XXXX" > /dev/null
mkdir -p "${10}/part" && printf 'a,1,2\nb,3,4\n' > "${10}/part/part-0"
echo "flink $2 p=1: job wall 2.5s"
"#;
        let options = sh_options(dir.path(), script, Duration::from_secs(60));
        let run = run_flink(&options, &ARGS, "hashmap", &dir.path().join("flink")).unwrap();
        assert_eq!(run.error, None);
        assert_eq!(run.job_seconds, Some(2.5));
        assert_eq!(run.pairs, Some(2));
        let log = std::fs::read_to_string(dir.path().join("flink/flink.log")).unwrap();
        assert!(
            log.contains("hashmap --managed-memory 256m --window-minutes 20 --out-of-orderness-seconds 5 --out-dir"),
            "{log}"
        );
        // Its temporary files went to a directory of the run's own, gone after the job.
        let tmp = dir.path().join("flink").join("tmp");
        assert!(
            log.contains(&format!("tmp: {} java: ", tmp.display()))
                && log.contains(&format!("-Djava.io.tmpdir={}", tmp.display())),
            "{log}"
        );
        assert!(!tmp.exists());
    }

    #[test]
    fn the_jvm_keeps_the_options_the_environment_gives() {
        let tmp = Path::new("/runs/flink/tmp");
        assert_eq!(
            java_tool_options(tmp, Some("-Xss4m".into())),
            "-Xss4m -Djava.io.tmpdir=/runs/flink/tmp"
        );
        assert_eq!(
            java_tool_options(tmp, None),
            "-Djava.io.tmpdir=/runs/flink/tmp"
        );
    }

    #[test]
    fn a_job_past_the_time_limit_is_killed_with_its_children_and_has_no_rate() {
        let dir = tempfile::tempdir().unwrap();
        // A child that outlives the script unless its process group is killed, as PyFlink's
        // JVM would.
        let script = "sleep 30 & echo $! > \"$(dirname \"$0\")/child.pid\"; wait\n";
        let options = sh_options(dir.path(), script, Duration::from_millis(500));
        let started = Instant::now();
        let run = run_flink(&options, &ARGS, "hashmap", &dir.path().join("flink")).unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(run.job_seconds, None);
        assert_eq!(run.pairs, None);
        assert!(run.error.unwrap().contains("not finished after 500ms"));
        let pid = std::fs::read_to_string(dir.path().join("child.pid")).unwrap();
        // The sleeping child is gone too: no process, or a zombie waiting for init.
        std::thread::sleep(Duration::from_millis(200));
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
        let alive = status.is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("State:") && !l.contains("zombie"))
        });
        assert!(!alive, "the job's child {pid} survived the kill");
    }

    #[test]
    fn the_table_gives_ratios_to_both_flink_jobs_and_says_what_did_not_finish() {
        let row = |name: &str, rates: Vec<f64>, failures: Vec<String>| Row {
            name: name.to_string(),
            slower_than: rates.is_empty().then_some(1_000.0),
            rates,
            state_rates: Vec::new(),
            pairs: Some(10),
            failures,
        };
        let c = Comparison {
            input: PathBuf::from("events.csv"),
            events: 1000,
            memory_budget: 256 << 20,
            rows: vec![
                row("statekit memory", vec![200_000.0, 100_000.0], Vec::new()),
                row("Flink hashmap", vec![50_000.0], Vec::new()),
                row(
                    "Flink rocksdb",
                    Vec::new(),
                    vec!["not finished after 10m (killed)".into()],
                ),
            ],
            flink_runs: Vec::new(),
        };
        let md = markdown(&c);
        assert!(
            md.contains(
                "| statekit memory | 150.0k | 100.0k - 200.0k (2 runs) |  | 3.00 | > 150.00 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| Flink rocksdb | < 1.0k | no run finished |  | < 0.02 | n/a |"),
            "{md}"
        );
        assert!(md.contains("not finished after 10m (killed)"), "{md}");
    }
}
