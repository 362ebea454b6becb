//! `report.md` and a self-contained `report.html` (inline SVG charts, no scripts, no CDN),
//! both rendered from [`Results`] alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use statekit_backend::{Error, Result};

use crate::metrics::OpSummary;
use crate::results::{Results, RunResult};
use crate::util::{format_mib, format_size};

mod state_time;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

/// Human-readable nanoseconds.
pub fn format_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn format_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn title(results: &Results) -> String {
    match (&results.workload, &results.trace) {
        (Some(w), _) => format!("{} ({} scale)", w.profile, w.scale),
        (None, Some(t)) => format!("replay of {}", t.path),
        _ => "statekit run".to_string(),
    }
}

/// The operation kinds present in any run, most frequent first.
/// A run's steady-state latencies: until the end of the input where the run measured that
/// apart (bench runs), else the whole run's (replays).
fn steady_ops(run: &RunResult) -> &BTreeMap<String, OpSummary> {
    if run.ops_before_drain.is_empty() {
        &run.ops
    } else {
        &run.ops_before_drain
    }
}

/// One latency table: a row per operation kind, a column per run, from `pick`'s summaries.
fn latency_table(
    md: &mut String,
    results: &Results,
    pick: impl Fn(&RunResult) -> &BTreeMap<String, OpSummary>,
) {
    let _ = writeln!(md, "{}", table_head("operation", results));
    for kind in op_kinds(results) {
        if results.runs.iter().all(|r| !pick(r).contains_key(&kind)) {
            continue;
        }
        let mut row = format!("| {kind} |");
        for r in &results.runs {
            match pick(r).get(&kind) {
                Some(s) => {
                    let _ = write!(
                        row,
                        " {} × {} / {} / {} / {} |",
                        s.count,
                        format_ns(s.p50_ns as f64),
                        format_ns(s.p99_ns as f64),
                        format_ns(s.p999_ns as f64),
                        format_ns(s.max_ns as f64)
                    );
                }
                None => row.push_str(" - |"),
            }
        }
        let _ = writeln!(md, "{row}");
    }
}

/// A table's header and rule: `first` then a column per run.
fn table_head(first: &str, results: &Results) -> String {
    let mut header = format!("| {first} |");
    let mut rule = "|---|".to_string();
    for r in &results.runs {
        let _ = write!(header, " {} |", r.label);
        rule.push_str("---|");
    }
    format!("{header}\n{rule}")
}

fn op_kinds(results: &Results) -> Vec<String> {
    let mut kinds: Vec<(String, u64)> = Vec::new();
    for run in &results.runs {
        for (k, s) in &run.ops {
            match kinds.iter_mut().find(|(n, _)| n == k) {
                Some(e) => e.1 += s.count,
                None => kinds.push((k.clone(), s.count)),
            }
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    kinds.into_iter().map(|(k, _)| k).collect()
}

fn status(run: &RunResult) -> String {
    match (&run.error, run.checks.is_empty(), run.ok()) {
        (Some(e), _, _) => format!("FAILED: {e}"),
        (None, true, _) => "finished".into(),
        (None, false, true) => "finished, self-checks passed".into(),
        (None, false, false) => "finished, SELF-CHECKS FAILED".into(),
    }
}

/// What the runs of backends that take a budget used when none was given, so a report
/// never leaves the reader guessing; `None` when no run takes a budget.
fn no_budget_sentence<'a>(backends: impl Iterator<Item = &'a str>) -> Option<String> {
    let backends: Vec<&str> = backends.collect();
    let mut parts = Vec::new();
    if backends.contains(&"rocksdb") {
        parts.push(format!(
            "RocksDB runs used the default budget of {} and the OS page cache (no direct I/O)",
            format_size(crate::backends::DEFAULT_ROCKSDB_BUDGET)
        ));
    }
    if backends.contains(&"remote") {
        parts.push("remote runs their configuration's block cache and memtables".to_string());
    }
    (!parts.is_empty()).then(|| {
        format!(
            "No memory budget was given (`--memory-budget`): {}; peak RSS is not judged \
             against a budget.",
            parts.join("; ")
        )
    })
}

/// A run as the page-cache sentence sees it: its label, backend and whether it used direct I/O.
struct CacheUse<'a> {
    label: &'a str,
    backend: &'a str,
    direct_io: bool,
}

/// Which runs kept the OS page cache out of the memory budget. Memory-backend runs read no
/// files, so the page cache holds none of their state: they are named apart rather than
/// counted among runs "without direct I/O".
fn page_cache_use(runs: &[CacheUse]) -> String {
    let labels = |pick: &dyn Fn(&CacheUse) -> bool| {
        runs.iter()
            .filter(|r| pick(r))
            .map(|r| r.label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let on_heap = labels(&|r| r.backend == "memory");
    let direct = labels(&|r| r.backend != "memory" && r.direct_io);
    let cached = labels(&|r| r.backend != "memory" && !r.direct_io);
    let mut parts = Vec::new();
    match (direct.is_empty(), cached.is_empty()) {
        (true, true) => {}
        (true, false) => parts.push(format!(
            "no direct I/O for {cached}, so the OS page cache may hold state beyond the budget"
        )),
        (false, true) => parts.push(format!("direct I/O (no page cache) for {direct}")),
        (false, false) => parts.push(format!(
            "direct I/O (no page cache) for {direct}; not for {cached} (files they read, such \
             as a remote `file://` store's, go through the OS page cache)"
        )),
    }
    if !on_heap.is_empty() {
        parts.push(format!(
            "the memory backend's runs ({on_heap}) keep all state on the heap, which their RSS \
             counts in full"
        ));
    }
    parts.join("; ")
}

/// Where each run's time went: its parts that are the harness's (input) or are paid apart
/// from the event stream (checkpoints, the end-of-input drain, closing the backend).
fn time_section(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## Where the time went\n\nRun time: from the first event to the backend closed \
         (opening it and the harness's own measurements left out). The rates above divide by \
         the run time without the input's share (waiting for events, which are generated or \
         parsed on a thread of their own).\n\n\
         | run | run time | input (not in rates) | checkpoints | end-of-input drain | close |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for r in &results.runs {
        let checkpoints = r.checkpoints.iter().fold(0.0, |t, c| t + c.duration_ms) / 1e3;
        let _ = writeln!(
            md,
            "| {} | {:.1} s | {:.1} s | {checkpoints:.1} s | {:.1} s | {:.1} s |",
            r.label, r.wall_seconds, r.input_seconds, r.drain_seconds, r.close_seconds
        );
    }
    md
}

/// The memory section: each run's peak resident memory from its own process start against
/// the budget rule (1.1 x budget + the harness's measured footprint), and what the backend
/// itself accounts for.
fn memory_section(results: &Results) -> String {
    let mut md = String::new();
    let budget = results.memory_budget();
    let _ = writeln!(md, "\n## Memory\n");
    match &results.harness {
        Some(h) if h.error.is_none() => {
            let _ = writeln!(
                md,
                "Each run ran in a process of its own; RSS is that process's, from its start. \
                 The harness's own footprint, measured by the same input through the same \
                 operator (or the same trace replayed) on a backend that stores nothing: peak \
                 RSS {} ({} before the operator started).",
                format_mib(h.peak_rss_bytes),
                format_mib(h.baseline_rss_bytes)
            );
            if let Some(b) = budget {
                let _ = writeln!(
                    md,
                    "Budget rule: peak RSS <= 1.1 x {} + {} = **{}**.",
                    format_mib(b),
                    format_mib(h.peak_rss_bytes),
                    format_mib(h.rss_limit(b))
                );
            }
        }
        Some(h) => {
            let _ = writeln!(
                md,
                "The harness footprint could not be measured: {}",
                h.error.as_deref().unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(
                md,
                "The runs shared one process: a later run's RSS includes what earlier runs \
                 left on the heap, and no harness footprint was measured."
            );
        }
    }
    if let Some(allocator) = &results.allocator {
        let _ = writeln!(md, "\nAllocator: {allocator}.");
    }
    let _ = writeln!(
        md,
        "\nThe state is at its fullest when the input ends, before the final watermark \
         drains it: the backend's accounting and its live data (user keys and values) are read \
         there. Peak RSS / live data is what the state costs in memory per byte it holds.\n\
         \n| run | peak RSS | RSS before the backend opened | backend's own accounting at end of input | live data at end of input | peak RSS / live data | within the budget rule |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for r in &results.runs {
        let rule = match (budget, &results.harness) {
            _ if r.backend == "memory" => "n/a (the memory backend takes no budget)".to_string(),
            (Some(b), Some(h)) if h.error.is_none() && r.ok() => {
                let limit = h.rss_limit(b);
                if r.peak_rss_bytes <= limit {
                    "yes".to_string()
                } else {
                    format!("**no**: {} over", format_mib(r.peak_rss_bytes - limit))
                }
            }
            _ => "n/a".to_string(),
        };
        let full = r.stats_at_end_of_input.as_ref();
        let accounted = full
            .and_then(|s| s.memory_bytes)
            .map_or_else(|| "n/a".to_string(), format_size);
        let live = full.and_then(|s| s.live_data_bytes).filter(|l| *l > 0);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            format_mib(r.peak_rss_bytes),
            format_mib(r.baseline_rss_bytes),
            accounted,
            live.map_or_else(|| "n/a".to_string(), format_size),
            live.map_or_else(
                || "n/a".to_string(),
                |l| format!("{:.2}", r.peak_rss_bytes as f64 / l as f64)
            ),
            rule
        );
    }
    md
}

/// Renders `report.md`.
pub fn render_markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# statekit {}: {}\n", results.mode, title(results));
    if let Some(w) = &results.workload {
        let _ = writeln!(
            md,
            "Workload `{}` from `{}`, scale `{}`, seed {}, input: {}.",
            w.workload, w.profile_path, w.scale, w.seed, w.input
        );
        if !w.description.is_empty() {
            let _ = writeln!(md, "\n{}", w.description.trim());
        }
    }
    if let Some(t) = &results.trace {
        let _ = writeln!(
            md,
            "Trace `{}`: {} records, {}.",
            t.path,
            t.records,
            format_size(t.bytes)
        );
    }
    if let Some(b) = results.memory_budget() {
        let runs: Vec<CacheUse> = results
            .runs
            .iter()
            .map(|r| CacheUse {
                label: &r.label,
                backend: &r.backend,
                direct_io: r.direct_io,
            })
            .collect();
        let how = page_cache_use(&runs);
        let _ = writeln!(md, "\nMemory budget: {}; {how}.", format_size(b));
    } else if results.workload.is_some() {
        if let Some(sentence) = no_budget_sentence(results.runs.iter().map(|r| r.backend.as_str()))
        {
            let _ = writeln!(md, "\n{sentence}");
        }
    }
    let m = &results.machine;
    let _ = writeln!(
        md,
        "\nMachine: {} cores ({}), {} RAM, {} {}, kernel {}.",
        m.cores,
        m.cpu,
        format_size(m.memory_bytes),
        m.os,
        m.host,
        m.kernel
    );
    if let Some(d) = &m.disk {
        let _ = writeln!(
            md,
            "Disk: {} ({}), {} free of {}.",
            d.mount,
            d.file_system,
            format_size(d.available_bytes),
            format_size(d.total_bytes)
        );
    }
    // "stored": what the backend's state occupies where it lives, as the backend measures it
    // (local files for RocksDB, the object store for remote, S3 included); "local disk":
    // everything under the run's directory (checkpoint copies, logs, a file:// store).
    let _ = writeln!(md, "\n## Throughput\n\n| run | status | events | events/s | state ops/s | peak RSS | stored at end | local disk at end | write amp. | space amp. | data-block cache hit | index/filter cache hit |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let opt = |v: Option<f64>, pct: bool| {
        v.map_or("n/a".to_string(), |x| {
            if pct {
                format!("{:.1}%", x * 100.0)
            } else {
                format!("{x:.2}")
            }
        })
    };
    for r in &results.runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            status(r),
            r.events,
            format_rate(r.events_per_sec),
            format_rate(r.ops_per_sec),
            format_mib(r.peak_rss_bytes),
            r.backend_stats
                .disk_bytes
                .map_or_else(|| "n/a".to_string(), format_size),
            format_size(r.disk_bytes),
            opt(r.write_amplification, false),
            opt(r.space_amplification, false),
            opt(r.cache_hit_rate, true),
            opt(r.meta_cache_hit_rate, true),
        );
    }
    md.push_str(&time_section(results));
    md.push_str(&state_time::section(&results.runs));
    md.push_str(&memory_section(results));
    let _ = writeln!(md, "\n## Latency per operation (p50 / p99 / p99.9 / max)\n");
    let _ = writeln!(
        md,
        "Counts are of every call. Of the kinds called per event (get, prefetch, scan, put, \
         merge, delete, delete_range, register_timer, delete_timer, next_timer) a random one \
         call in {} is timed, the first of each state and kind always; the other kinds are \
         timed at every call. The maximum is the largest timed.\n",
        crate::metrics::TIME_ONE_IN
    );
    let split = results.runs.iter().any(|r| !r.ops_drain.is_empty());
    if split {
        let _ = writeln!(
            md,
            "### Steady state, until the end of the input\n\nThe chart shows these.\n"
        );
        latency_table(&mut md, results, steady_ops);
        let _ = writeln!(
            md,
            "\n### End-of-input drain\n\nThe final watermark fires every timer still pending \
             at once: bulk cleanups, not the steady state's tail.\n"
        );
        latency_table(&mut md, results, |r| &r.ops_drain);
    } else {
        latency_table(&mut md, results, |r| &r.ops);
    }
    let _ = writeln!(md, "\n## Results\n");
    let c = &results.comparison;
    if results.runs.len() > 1 {
        let _ = writeln!(
            md,
            "{}\n",
            if c.counters_equal {
                "Result counters are **equal** across all runs.".to_string()
            } else {
                format!(
                    "Result counters **differ** across runs: {}.",
                    c.differing.join(", ")
                )
            }
        );
    }
    let _ = writeln!(md, "{}", table_head("counter", results));
    let mut names: Vec<&String> = results
        .runs
        .iter()
        .flat_map(|r| r.counters.keys())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut row = format!("| {name} |");
        for r in &results.runs {
            let _ = write!(
                row,
                " {} |",
                r.counters.get(name).map_or("-".to_string(), u64::to_string)
            );
        }
        let _ = writeln!(md, "{row}");
    }
    for r in results
        .runs
        .iter()
        .filter(|r| !r.checks.is_empty() || r.divergent_reads.is_some())
    {
        let _ = writeln!(md, "\n### Checks of {}\n", r.label);
        if let Some(d) = r.divergent_reads {
            let _ = writeln!(md, "- reads that differ from the recording: {d}");
        }
        for ch in &r.checks {
            let _ = writeln!(
                md,
                "- {} **{}**: expected {}, got {}",
                if ch.passed { "✓" } else { "✗" },
                ch.name,
                ch.expected,
                ch.actual
            );
        }
    }
    if results.runs.iter().any(|r| !r.checkpoints.is_empty()) {
        let _ = writeln!(md, "\n## Checkpoints\n\nAdded: bytes a checkpoint added to storage; total: everything it references (shared data included), where the backend measures it.\n\n| run | count | mean duration | max duration | mean added | last total |\n|---|---:|---:|---:|---:|---:|");
        for r in results.runs.iter().filter(|r| !r.checkpoints.is_empty()) {
            let n = r.checkpoints.len() as f64;
            let mean = r.checkpoints.iter().map(|c| c.duration_ms).sum::<f64>() / n;
            let max = r
                .checkpoints
                .iter()
                .map(|c| c.duration_ms)
                .fold(0.0, f64::max);
            let added = r.checkpoints.iter().map(|c| c.bytes).sum::<u64>() as f64 / n;
            let total = r
                .checkpoints
                .last()
                .and_then(|c| c.total_bytes)
                .map_or_else(|| "n/a".to_string(), format_size);
            let _ = writeln!(
                md,
                "| {} | {} | {mean:.1} ms | {max:.1} ms | {} | {total} |",
                r.label,
                r.checkpoints.len(),
                format_size(added as u64)
            );
        }
    }
    let _ = writeln!(md, "\n## Backend statistics\n");
    for r in &results.runs {
        let s = &r.backend_stats;
        let f = |v: Option<u64>| v.map_or("n/a".to_string(), format_size);
        let _ = writeln!(md, "- {}: memory {}, stored {}, live data {}, user bytes written {}, bytes written to storage {}, write stalls {}", r.label, f(s.memory_bytes), f(s.disk_bytes), f(s.live_data_bytes), f(s.user_bytes_written), f(s.disk_bytes_written), s.write_stall_micros.map_or("n/a".to_string(), |us| format!("{:.1} ms", us as f64 / 1e3)));
        if !s.memory_by_component.is_empty() {
            let _ = writeln!(md, "  - memory at the end: {}", components(s));
        }
        if let Some(full) = &r.stats_at_end_of_input {
            let parts = components(full);
            let _ = writeln!(
                md,
                "  - at the end of input, before the final watermark's drain ({:.1} s of the run): memory {}{}, stored {}, live data {}",
                r.drain_seconds,
                f(full.memory_bytes),
                if parts.is_empty() { String::new() } else { format!(" ({parts})") },
                f(full.disk_bytes),
                f(full.live_data_bytes)
            );
        }
    }
    md.push_str(DEFINITIONS);
    md
}

/// A backend's memory by component, `name size, name size, ...`.
fn components(stats: &statekit_backend::BackendStats) -> String {
    stats
        .memory_by_component
        .iter()
        .map(|(name, bytes)| format!("{name} {}", format_size(*bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What every figure of the report means, the same for every backend.
const DEFINITIONS: &str = "
## Definitions

- **Run time**: from the first input event to the backend closed (the end-of-input drain and
  the close included; opening the backend, and the harness reading statistics and measuring
  checkpoint sizes, left out). **Input**: the part spent waiting for events, which a thread
  of their own generates or parses ahead of the operator.
- **events/s**, **state ops/s**: events, and calls to the state backend, per second of run
  time without input.
- **Latency**: the time of one call to the backend as the operator sees it. A scan's time
  includes the operator's work on each entry it visits (decoding, emitting pairs), since the
  backend calls the operator back per entry. Steady state (until the end of the input) and the end-of-input drain are measured
  apart. The harness drives the backend in a closed loop, one call after another: a stall
  delays every later event but is one slow call in these figures, so they understate what an
  open-loop source would see (the run time and the memory chart's event counts show stalls).
- **Peak RSS**: the high-water mark of resident memory of the run's own process (Linux
  `VmHWM`), from its start; the harness footprint is the same for a run on a backend that
  stores nothing. **Budget rule**: peak RSS <= 1.1 x budget + footprint.
- **Live data**: the bytes of the state as a flat key-value set, as the backend reports it,
  read when the input ends (before the final drain): keys, namespaces, user keys and values
  (the memory backend; RocksDB's own estimate of live SST bytes; none for remote).
- **Stored**: what the backend's state occupies where it lives (local files, the object
  store). **Local disk**: everything under the run's directory at the end.
- **Space amp.**: stored / live data, both at the end of input.
- **Write amp.**: bytes the backend wrote to storage as whole files or objects by flushes
  and compactions (RocksDB's SST files, the remote backend's tables) / logical bytes written,
  counted by the harness the same way for every backend: of each put, merge and delete its
  key, namespace, user key and value; of each timer registered or removed its key, namespace
  and time. n/a when the backend wrote nothing to storage (its state never left memory); a
  state partly still in memtables at the end counts only what was flushed.
- **Data-block cache hit**: hits / lookups of data blocks in the backend's block cache
  (index and filter blocks left out: backends probe and pin them differently).
- **Index/filter cache hit**: hits / lookups of index and filter blocks in the block cache:
  whether the state's indexes and filters still fit the cache's part for them (a miss reads a
  whole index or filter). Per backend, not across backends: RocksDB pins some of them in its
  table readers, which then need no lookup at all.
";

struct Svg {
    out: String,
}

impl Svg {
    fn new(w: u32, h: u32, label: &str) -> Self {
        Svg { out: format!("<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\" font-family=\"sans-serif\" font-size=\"12\">", esc(label)) }
    }
    fn text(&mut self, x: f64, y: f64, anchor: &str, s: &str) {
        let _ = write!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{}</text>",
            esc(s)
        );
    }
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        let _ = write!(
            self.out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{fill}\"/>",
            w.max(0.5)
        );
    }
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, dash: bool) {
        let _ = write!(self.out, "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\" stroke-width=\"1.5\"{}/>", if dash { " stroke-dasharray=\"6 4\"" } else { "" });
    }
    fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

fn throughput_chart(results: &Results) -> String {
    let runs = &results.runs;
    let (w, row) = (760.0, 34.0);
    let h = 40.0 + row * runs.len() as f64;
    let mut svg = Svg::new(w as u32, h as u32, "events per second per run");
    let max = runs
        .iter()
        .map(|r| r.events_per_sec)
        .fold(0.0, f64::max)
        .max(1.0);
    let (left, width) = (170.0, 380.0);
    svg.text(left, 16.0, "start", "events/s (higher is better)");
    for (i, r) in runs.iter().enumerate() {
        let y = 28.0 + row * i as f64;
        svg.text(left - 8.0, y + 17.0, "end", &r.label);
        svg.rect(
            left,
            y + 4.0,
            width * r.events_per_sec / max,
            row - 10.0,
            color(i),
        );
        svg.text(
            left + width * r.events_per_sec / max + 6.0,
            y + 17.0,
            "start",
            &format!(
                "{} ev/s · {} ops/s",
                format_rate(r.events_per_sec),
                format_rate(r.ops_per_sec)
            ),
        );
    }
    svg.finish()
}

fn latency_chart(results: &Results) -> String {
    let kinds: Vec<String> = op_kinds(results).into_iter().take(8).collect();
    let runs = &results.runs;
    let row = 16.0;
    let group = row * runs.len() as f64 + 12.0;
    let (w, h) = (760.0, 60.0 + group * kinds.len() as f64);
    let mut svg = Svg::new(w as u32, h as u32, "latency percentiles per operation");
    let values: Vec<u64> = runs
        .iter()
        .flat_map(|r| steady_ops(r).values().flat_map(|s| [s.p50_ns, s.p999_ns]))
        .collect();
    let lo = values
        .iter()
        .copied()
        .filter(|v| *v > 0)
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let hi = values.iter().copied().max().unwrap_or(10).max(10) as f64;
    let (lo, hi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let (left, width) = (170.0, 540.0);
    let x = |ns: f64| left + width * ((ns.max(1.0).log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
    svg.text(
        left,
        16.0,
        "start",
        "latency, log scale: bar = p99, whisker = p50 to p99.9",
    );
    let axis_y = h - 24.0;
    let mut decade = lo;
    while decade <= hi {
        let px = x(10f64.powf(decade));
        svg.line(px, 24.0, px, axis_y, "#ddd", false);
        const DECADES: [&str; 13] = [
            "1 ns", "10 ns", "100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s",
            "10 s", "100 s", "1000 s",
        ];
        let label = DECADES.get(decade as usize).copied().unwrap_or("");
        svg.text(px, axis_y + 16.0, "middle", label);
        decade += 1.0;
    }
    for (g, kind) in kinds.iter().enumerate() {
        let gy = 30.0 + group * g as f64;
        svg.text(left - 8.0, gy + group / 2.0, "end", kind);
        for (i, r) in runs.iter().enumerate() {
            if let Some(s) = steady_ops(r).get(kind) {
                let y = gy + row * i as f64;
                svg.rect(
                    left,
                    y + 2.0,
                    x(s.p99_ns as f64) - left,
                    row - 4.0,
                    color(i),
                );
                svg.line(
                    x(s.p50_ns as f64),
                    y + row / 2.0,
                    x(s.p999_ns as f64),
                    y + row / 2.0,
                    "#000",
                    false,
                );
            }
        }
    }
    svg.finish()
}

fn memory_chart(results: &Results) -> String {
    let (w, h) = (760.0, 300.0);
    let mut svg = Svg::new(w as u32, h as u32, "resident memory over time");
    let budget = results.memory_budget();
    let limit = budget.and_then(|b| {
        results
            .harness
            .as_ref()
            .filter(|h| h.error.is_none())
            .map(|h| h.rss_limit(b))
    });
    let max_t = results
        .runs
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.t))
        .fold(0.0, f64::max)
        .max(1e-3);
    let max_m = results
        .runs
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.rss_bytes))
        .chain(budget)
        .chain(limit)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let (left, top, width, height) = (80.0, 24.0, 640.0, 230.0);
    let px = |t: f64| left + width * t / max_t;
    let py = |m: f64| top + height - height * m / max_m;
    svg.text(
        left,
        16.0,
        "start",
        "RSS of each run's process; dashed: budget; dotted: 1.1 x budget + harness footprint",
    );
    svg.line(
        left,
        top + height,
        left + width,
        top + height,
        "#444",
        false,
    );
    svg.line(left, top, left, top + height, "#444", false);
    for i in 0..=4 {
        let m = max_m * f64::from(i) / 4.0;
        svg.text(left - 6.0, py(m) + 4.0, "end", &format_size(m as u64));
        let t = max_t * f64::from(i) / 4.0;
        svg.text(px(t), top + height + 16.0, "middle", &format!("{t:.1} s"));
    }
    if let Some(b) = budget {
        svg.line(left, py(b as f64), left + width, py(b as f64), "#000", true);
    }
    if let Some(limit) = limit {
        let y = py(limit as f64);
        let _ = write!(
            svg.out,
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#b00\" \
             stroke-dasharray=\"2 3\"/>",
            left + width
        );
    }
    for (i, r) in results.runs.iter().enumerate() {
        if r.samples.is_empty() {
            continue;
        }
        let points: Vec<String> = r
            .samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", px(s.t), py(s.rss_bytes as f64)))
            .collect();
        let _ = write!(
            svg.out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            color(i),
            points.join(" ")
        );
    }
    svg.finish()
}

fn legend(results: &Results) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (i, r) in results.runs.iter().enumerate() {
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{}</span>",
            color(i),
            esc(&r.label)
        );
    }
    out.push_str("</p>");
    out
}

/// The report body as HTML: the Markdown report is the source of truth, and the HTML shows
/// the same text plus charts. HTML inside the Markdown (an error message quoting `<...>`, a
/// label) is shown as text, never interpreted.
fn markdown_to_html(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let events = Parser::new_ext(md, Options::ENABLE_TABLES).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// Renders `report.html`: self-contained, charts as inline SVG.
pub fn render_html(results: &Results) -> String {
    let md = render_markdown(results);
    let body = markdown_to_html(&md);
    let split = body.find("<h2>").unwrap_or(body.len());
    let (head, rest) = body.split_at(split);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>statekit: {title}</title>\n<style>\
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}th{{background:#f3f3f3}}code{{background:#f3f3f3;padding:0 3px}}\
.charts svg{{display:block;margin:1em 0;border:1px solid #eee}}.legend span{{margin-right:1.5em}}\
.legend i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}\
</style></head><body>\n{head}<div class=\"charts\"><h2>Charts</h2>{legend}<h3>Throughput</h3>{tp}<h3>Latency per operation</h3>{lat}<h3>Memory over time</h3>{mem}</div>\n{rest}</body></html>\n",
        title = esc(&title(results)),
        legend = legend(results),
        tp = throughput_chart(results),
        lat = latency_chart(results),
        mem = memory_chart(results),
    )
}

/// Writes `report.md` and `report.html` into `dir`.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_reports(results: &Results, dir: &Path) -> Result<()> {
    let md = dir.join("report.md");
    std::fs::write(&md, render_markdown(results)).map_err(|e| Error::io(md.display(), e))?;
    let html = dir.join("report.html");
    std::fs::write(&html, render_html(results)).map_err(|e| Error::io(html.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_tables_and_shows_html_as_text() {
        let html = markdown_to_html(
            "# T\n\n| run | size |\n|---|---:|\n| a<b>c | **1 MiB** |\n\n- item `code`\n",
        );
        assert!(html.contains("<h1>T</h1>"), "{html}");
        assert!(
            html.contains("<table>") && html.contains("<strong>1 MiB</strong>"),
            "{html}"
        );
        assert!(
            html.contains("a&lt;b&gt;c") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("<li>item <code>code</code></li>"), "{html}");
    }

    #[test]
    fn a_report_without_a_budget_says_what_the_runs_used() {
        let s = no_budget_sentence(["memory", "rocksdb"].into_iter()).unwrap();
        assert!(
            s.contains("default budget of 512.0 MiB") && s.contains("page cache"),
            "{s}"
        );
        assert!(no_budget_sentence(["remote"].into_iter())
            .unwrap()
            .contains("remote runs"));
        assert_eq!(no_budget_sentence(["memory"].into_iter()), None);
    }

    #[test]
    fn page_cache_sentence_names_runs_with_and_without_direct_io() {
        let run = |label, backend, direct_io| CacheUse {
            label,
            backend,
            direct_io,
        };
        assert_eq!(
            page_cache_use(&[run("rocksdb", "rocksdb", true)]),
            "direct I/O (no page cache) for rocksdb"
        );
        let mixed = page_cache_use(&[
            run("remote", "remote", false),
            run("rocksdb", "rocksdb", true),
            run("rocksdb/b", "rocksdb", false),
        ]);
        assert!(
            mixed.starts_with("direct I/O (no page cache) for rocksdb; not for remote, rocksdb/b"),
            "{mixed}"
        );
        assert_eq!(
            page_cache_use(&[run("remote", "remote", false)]),
            "no direct I/O for remote, so the OS page cache may hold state beyond the budget"
        );
    }

    #[test]
    fn page_cache_sentence_does_not_blame_the_page_cache_for_heap_runs() {
        let memory = CacheUse {
            label: "memory",
            backend: "memory",
            direct_io: false,
        };
        let alone = page_cache_use(&[memory]);
        assert!(!alone.contains("page cache"), "{alone}");
        assert!(
            alone.contains("runs (memory) keep all state on the heap"),
            "{alone}"
        );
        let rocksdb = CacheUse {
            label: "rocksdb",
            backend: "rocksdb",
            direct_io: true,
        };
        let memory = CacheUse {
            label: "memory",
            backend: "memory",
            direct_io: false,
        };
        assert_eq!(
            page_cache_use(&[memory, rocksdb]),
            "direct I/O (no page cache) for rocksdb; the memory backend's runs (memory) keep all \
             state on the heap, which their RSS counts in full"
        );
    }
}
