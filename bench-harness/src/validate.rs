//! `statekit tune --validate`: the tuned configuration and the baselines people run today,
//! each in its own process, repeated and interleaved on the same stream and budget, and a
//! table of ratios that calls a difference a win only when it exceeds the spread between
//! repeats.

use std::collections::BTreeMap;
use std::fmt::Write;

use statekit_backend::rocksdb_config::{Preset, RocksDbConfig};

use crate::backends::{BackendKind, BackendSpec};
use crate::results::{Results, RunResult};

/// A configuration under test.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its name in reports.
    pub name: String,
    /// Its options.
    pub config: RocksDbConfig,
}

/// The name of the tuned candidate (derived, no trial runs).
pub const TUNED: &str = "tuned";
/// The name of the refined candidate (the tuned one with the changes refinement kept).
pub const REFINED: &str = "refined";

/// The tuned configuration first, the refined one if it differs, then the baselines:
/// statekit's default, RocksDB's defaults, Flink's four presets, and
/// `OptimizeLevelStyleCompaction` with the memtable share of `budget` (all under the same
/// budget model: one cache and write buffer manager).
pub fn candidates(
    tuned: &RocksDbConfig,
    refined: Option<&RocksDbConfig>,
    budget: u64,
) -> Vec<Candidate> {
    let mut out = vec![Candidate {
        name: TUNED.into(),
        config: tuned.clone(),
    }];
    if let Some(refined) = refined.filter(|r| *r != tuned) {
        out.push(Candidate {
            name: REFINED.into(),
            config: refined.clone(),
        });
    }
    out.extend([Candidate {
        name: "statekit-default".into(),
        config: RocksDbConfig::default(),
    }]);
    for (name, preset) in [
        ("rocksdb-defaults", Preset::RocksdbDefaults),
        ("flink-default", Preset::FlinkDefault),
        (
            "flink-spinning-disk-optimized",
            Preset::FlinkSpinningDiskOptimized,
        ),
        (
            "flink-spinning-disk-optimized-high-mem",
            Preset::FlinkSpinningDiskOptimizedHighMem,
        ),
        ("flink-flash-ssd-optimized", Preset::FlinkFlashSsdOptimized),
        (
            "optimize-level-style-compaction",
            Preset::OptimizeLevelStyleCompaction {
                memtable_memory_budget: budget / 3,
            },
        ),
    ] {
        out.push(Candidate {
            name: name.into(),
            config: RocksDbConfig::preset(preset),
        });
    }
    out
}

/// The runs, interleaved: every candidate once, then every candidate again, `repeats` times,
/// so slow phases of a noisy machine fall on all of them alike.
pub fn interleaved_specs(candidates: &[Candidate], repeats: usize) -> Vec<BackendSpec> {
    let mut specs = Vec::new();
    for round in 1..=repeats.max(1) {
        for c in candidates {
            specs.push(run_spec(&c.name, round, &c.config));
        }
    }
    specs
}

/// Run `round` of configuration `name` on RocksDB with `config` as data, labelled so that
/// its runs group by name.
pub fn run_spec(name: &str, round: usize, config: &RocksDbConfig) -> BackendSpec {
    BackendSpec {
        kind: BackendKind::Rocksdb,
        config: Some(format!("{name} run {round}")),
        rocksdb: Some(Box::new(config.clone())),
    }
}

/// Whether `after` beats `before` by more than the spread of the repeats: its slowest run
/// is faster than the fastest of `before`.
pub fn beyond_noise(before: &[f64], after: &[f64]) -> bool {
    !before.is_empty()
        && !after.is_empty()
        && after.iter().copied().fold(f64::INFINITY, f64::min)
            > before.iter().copied().fold(0.0, f64::max)
}

fn is_reference(name: &str) -> bool {
    name == TUNED || name == REFINED
}

fn candidate_of(run: &RunResult) -> &str {
    candidate_of_config(run.config.as_deref().unwrap_or_default())
}

fn candidate_of_config(config: &str) -> &str {
    config.rsplit_once(" run ").map_or(config, |(name, _)| name)
}

struct Figures<'a> {
    runs: Vec<&'a RunResult>,
    failed: usize,
}

impl Figures<'_> {
    fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.events_per_sec).collect()
    }
    fn mean_rate(&self) -> f64 {
        mean(&self.rates())
    }
    fn min_rate(&self) -> f64 {
        self.rates().into_iter().fold(f64::INFINITY, f64::min)
    }
    fn max_rate(&self) -> f64 {
        self.rates().into_iter().fold(0.0, f64::max)
    }
    /// The p99 of `op` in each repeat, in the steady state (before the end-of-input drain)
    /// where the runs measured it, else over the whole run.
    fn p99s(&self, op: &str) -> Vec<u64> {
        self.runs
            .iter()
            .filter_map(|r| steady_ops(r).get(op).map(|s| s.p99_ns))
            .collect()
    }
    /// The fewest operations `op` any repeat made: what its p99 stands on.
    fn min_count(&self, op: &str) -> Option<u64> {
        self.runs
            .iter()
            .filter_map(|r| steady_ops(r).get(op).map(|s| s.count))
            .min()
    }
}

/// How one configuration's p99 of an operation compares with the baselines', repeat ranges
/// against repeat ranges.
#[derive(Debug, PartialEq)]
enum TailVerdict<'a> {
    /// Slower than this baseline beyond the noise: even the best repeat's p99 is above the
    /// baseline's worst, by `ratio` (the one it trails most).
    Worse { than: &'a str, ratio: f64 },
    /// Faster than every baseline beyond the noise.
    Better,
    /// Neither.
    WithinNoise,
}

/// The verdict on `p99s` (one per repeat) against each baseline's, by [`beyond_noise`], the
/// rule throughput is judged by (a higher p99 "beats" the other side's: it is the worse);
/// None when either side has no figure.
fn tail_verdict<'a>(p99s: &[u64], baselines: &[(&'a str, Vec<u64>)]) -> Option<TailVerdict<'a>> {
    let as_f64 = |p: &[u64]| p.iter().map(|&ns| ns as f64).collect::<Vec<f64>>();
    let worst = |p: &[f64]| p.iter().copied().fold(0.0, f64::max);
    let ours = as_f64(p99s);
    let theirs: Vec<(&str, Vec<f64>)> = baselines
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(name, p)| (*name, as_f64(p)))
        .collect();
    if ours.is_empty() || theirs.is_empty() {
        return None;
    }
    let trailed = theirs
        .iter()
        .filter(|(_, p)| beyond_noise(p, &ours))
        .min_by(|a, b| worst(&a.1).total_cmp(&worst(&b.1)));
    Some(match trailed {
        Some((than, p)) => TailVerdict::Worse {
            than,
            ratio: ours.iter().copied().fold(f64::INFINITY, f64::min) / worst(p).max(1.0),
        },
        None if theirs.iter().all(|(_, p)| beyond_noise(&ours, p)) => TailVerdict::Better,
        None => TailVerdict::WithinNoise,
    })
}

/// A range of p99s in microseconds: one figure when the repeats agree or there is one.
fn p99_range(p99s: &[u64]) -> String {
    match (p99s.iter().min(), p99s.iter().max()) {
        (Some(lo), Some(hi)) if lo != hi => {
            format!("{:.1}-{}", *lo as f64 / 1e3, micros(*hi))
        }
        (Some(lo), _) => micros(*lo),
        _ => "n/a".into(),
    }
}

fn steady_ops(run: &RunResult) -> &BTreeMap<String, crate::metrics::OpSummary> {
    if run.ops_before_drain.is_empty() {
        &run.ops
    } else {
        &run.ops_before_drain
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The validation table of `results` (runs made from [`interleaved_specs`]).
pub fn validation_markdown(results: &Results, candidates: &[Candidate], budget: u64) -> String {
    let mut by: BTreeMap<&str, Figures<'_>> = BTreeMap::new();
    for c in candidates {
        by.insert(
            &c.name,
            Figures {
                runs: Vec::new(),
                failed: 0,
            },
        );
    }
    for run in &results.runs {
        if let Some(f) = by.get_mut(candidate_of(run)) {
            if run.ok() {
                f.runs.push(run);
            } else {
                f.failed += 1;
            }
        }
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Validation: the tuned configuration against the baselines\n"
    );
    let what = match (&results.workload, &results.trace) {
        (Some(w), _) => format!("profile {} at scale '{}'", w.profile_path, w.scale),
        (None, Some(t)) => format!("trace {} ({} records)", t.path, t.records),
        _ => "the input".into(),
    };
    let limit = results.harness.as_ref().map(|h| h.rss_limit(budget));
    let _ = writeln!(
        md,
        "{what}, memory budget {}, every run in a process of its own, all runs interleaved \
         (each configuration once, then each again). **A ratio is a win or a loss only when \
         the ranges of the repeats do not overlap** (the tuned run's slowest beats the \
         baseline's fastest, or the reverse); otherwise it is within the noise of this \
         machine.\n",
        bytesize::ByteSize(budget).display().iec()
    );
    let references: Vec<&str> = [TUNED, REFINED]
        .into_iter()
        .filter(|r| by.get(r).is_some_and(|f| !f.runs.is_empty()))
        .collect();
    let mut header = "| configuration | runs | events/s mean (min-max) |".to_string();
    let mut rule = "|---|---:|---:|".to_string();
    for r in &references {
        header.push_str(&format!(" {r} / this | verdict |"));
        rule.push_str("---:|---|");
    }
    header.push_str(
        " peak RSS (max) | within the budget rule | write amp. | space amp. | write stalls |",
    );
    rule.push_str("---:|---|---:|---:|---:|");
    let _ = writeln!(md, "{header}\n{rule}");
    for c in candidates {
        let f = &by[c.name.as_str()];
        let runs = format!(
            "{}{}",
            f.runs.len(),
            if f.failed > 0 {
                format!(" (+{} failed)", f.failed)
            } else {
                String::new()
            }
        );
        if f.runs.is_empty() {
            let _ = writeln!(md, "| {} | {runs} | n/a |", c.name);
            continue;
        }
        let mut ratios = String::new();
        for r in &references {
            let t = &by[*r];
            if is_reference(&c.name) {
                ratios.push_str(" | |");
                continue;
            }
            let ratio = t.mean_rate() / f.mean_rate().max(1e-9);
            let verdict = if beyond_noise(&f.rates(), &t.rates()) {
                "win"
            } else if beyond_noise(&t.rates(), &f.rates()) {
                "loss"
            } else {
                "within noise"
            };
            ratios.push_str(&format!(" {ratio:.2}x | {verdict} |"));
        }
        let peak = f.runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0);
        let within = match limit {
            Some(l) if peak <= l => "yes",
            Some(_) => "**no**",
            None => "n/a",
        };
        let amp = |g: fn(&RunResult) -> Option<f64>| {
            let v: Vec<f64> = f.runs.iter().filter_map(|r| g(r)).collect();
            if v.is_empty() {
                "n/a".to_string()
            } else {
                format!("{:.2}", mean(&v))
            }
        };
        let stalls: Vec<f64> = f
            .runs
            .iter()
            .filter_map(|r| r.backend_stats.write_stall_micros)
            .map(|us| us as f64 / 1e6)
            .collect();
        let _ = writeln!(
            md,
            "| {} | {runs} | {:.0} ({:.0}-{:.0}) |{ratios} {} | {within} | {} | {} | {} |",
            c.name,
            f.mean_rate(),
            f.min_rate(),
            f.max_rate(),
            crate::util::format_mib(peak),
            amp(|r| r.write_amplification),
            amp(|r| r.space_amplification),
            if stalls.is_empty() {
                "n/a".into()
            } else {
                format!("{:.1} s", mean(&stalls))
            }
        );
    }
    md.push('\n');
    // Tail latency per operation: each reference's p99 over its repeats against the
    // baselines', judged by the same rule as throughput.
    let mut ops: Vec<String> = references
        .iter()
        .flat_map(|r| {
            by[*r]
                .runs
                .iter()
                .flat_map(|run| steady_ops(run).keys().cloned())
        })
        .collect();
    ops.sort();
    ops.dedup();
    if !ops.is_empty() {
        let _ = writeln!(
            md,
            "p99 latency per operation, min-max over each configuration's repeats, until the \
             end of the input (the final drain's bulk cleanups are left out; a replay has no \
             drain and counts the whole run). **A p99 is worse only beyond the noise**: when \
             even the best repeat's is slower than a baseline's worst repeat. With few \
             operations a run the p99 is one of its slowest few (ops per run).\n"
        );
        let mut header = "| operation | ops per run |".to_string();
        let mut rule = "|---|---:|".to_string();
        for r in &references {
            header.push_str(&format!(" {r} |"));
            rule.push_str("---:|");
        }
        header.push_str(" best baseline (lowest worst p99) |");
        rule.push_str("---|");
        for r in &references {
            header.push_str(&format!(" {r}: verdict |"));
            rule.push_str("---|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for op in &ops {
            let baselines: Vec<(&str, Vec<u64>)> = candidates
                .iter()
                .filter(|c| !is_reference(&c.name))
                .map(|c| (c.name.as_str(), by[c.name.as_str()].p99s(op)))
                .filter(|(_, p)| !p.is_empty())
                .collect();
            let count = by[references[0]].min_count(op);
            let mut row = format!(
                "| {op} | {} |",
                count.map_or("n/a".into(), |n| n.to_string())
            );
            let ours: Vec<Vec<u64>> = references.iter().map(|r| by[*r].p99s(op)).collect();
            for p in &ours {
                row.push_str(&format!(" {} |", p99_range(p)));
            }
            let best = baselines
                .iter()
                .min_by_key(|(_, p)| p.iter().max().copied().unwrap_or(u64::MAX));
            row.push_str(&match best {
                Some((name, p)) => format!(" {} ({name}) |", p99_range(p)),
                None => " n/a |".into(),
            });
            for p in &ours {
                let verdict = match tail_verdict(p, &baselines) {
                    None => "n/a".to_string(),
                    Some(TailVerdict::Worse { than, ratio }) => {
                        format!("**worse** ({ratio:.2}x {than}'s worst)")
                    }
                    Some(TailVerdict::Better) => "better than every baseline".into(),
                    Some(TailVerdict::WithinNoise) => "within noise".into(),
                };
                row.push_str(&format!(" {verdict} |"));
            }
            let _ = writeln!(md, "{row}");
        }
        md.push('\n');
    }
    md
}

fn micros(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_counts_only_beyond_the_spread_of_repeats() {
        assert!(beyond_noise(&[100.0, 104.0], &[105.0, 110.0]));
        assert!(
            !beyond_noise(&[100.0, 110.0], &[105.0, 130.0]),
            "ranges overlap"
        );
        assert!(!beyond_noise(&[100.0], &[]), "a failed run wins nothing");
    }

    #[test]
    fn a_p99_is_worse_only_beyond_the_spread_of_repeats() {
        let baselines = vec![("a", vec![4_800, 4_900]), ("b", vec![600, 5_200])];
        assert_eq!(
            tail_verdict(&[7_400, 8_400], &baselines),
            Some(TailVerdict::Worse {
                than: "a",
                ratio: 7_400.0 / 4_900.0
            })
        );
        assert_eq!(
            tail_verdict(&[1_800, 5_200], &baselines),
            Some(TailVerdict::WithinNoise),
            "one slow repeat of few operations is not a loss"
        );
        assert_eq!(
            tail_verdict(&[300, 500], &baselines),
            Some(TailVerdict::Better)
        );
        assert_eq!(tail_verdict(&[], &baselines), None);
        assert_eq!(tail_verdict(&[1], &[("c", vec![])]), None);
        assert_eq!(p99_range(&[1_800, 5_200]), "1.8-5.2 µs");
        assert_eq!(p99_range(&[2_000]), "2.0 µs");
    }

    #[test]
    fn runs_are_interleaved_and_labelled_by_candidate() {
        let mut refined = RocksDbConfig::default();
        refined.db.max_background_jobs = Some(3);
        assert_eq!(
            candidates(
                &RocksDbConfig::default(),
                Some(&RocksDbConfig::default()),
                1 << 28
            )
            .len(),
            8,
            "a refinement that kept nothing is not run twice"
        );
        assert_eq!(
            candidates(&RocksDbConfig::default(), Some(&refined), 1 << 28)[1].name,
            REFINED
        );
        let c = candidates(&RocksDbConfig::default(), None, 256 << 20);
        assert_eq!(c.len(), 8);
        assert_eq!(c[0].name, TUNED);
        let specs = interleaved_specs(&c, 2);
        assert_eq!(specs.len(), 16);
        assert_eq!(specs[0].label(), "rocksdb/tuned run 1");
        assert_eq!(specs[8].label(), "rocksdb/tuned run 2");
        assert_eq!(specs[9].config.as_deref(), Some("statekit-default run 2"));
        assert_eq!(candidate_of_config("flink-default run 2"), "flink-default");
        assert_eq!(
            candidate_of_config("optimize-level-style-compaction run 1"),
            "optimize-level-style-compaction"
        );
    }
}
