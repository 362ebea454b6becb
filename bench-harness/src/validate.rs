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

/// The name of the tuned candidate.
pub const TUNED: &str = "tuned";

/// The tuned configuration first, then the baselines: statekit's default, RocksDB's
/// defaults, Flink's four presets, and `OptimizeLevelStyleCompaction` with the memtable
/// share of `budget` (all under the same budget model: one cache and write buffer manager).
pub fn candidates(tuned: &RocksDbConfig, budget: u64) -> Vec<Candidate> {
    let mut out = vec![
        Candidate {
            name: TUNED.into(),
            config: tuned.clone(),
        },
        Candidate {
            name: "statekit-default".into(),
            config: RocksDbConfig::default(),
        },
    ];
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
            specs.push(BackendSpec {
                kind: BackendKind::Rocksdb,
                config: Some(run_label(&c.name, round)),
                rocksdb: Some(Box::new(c.config.clone())),
            });
        }
    }
    specs
}

fn run_label(name: &str, round: usize) -> String {
    format!("{name} run {round}")
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
    fn worst_p99(&self, op: &str) -> Option<u64> {
        self.runs
            .iter()
            .filter_map(|r| r.ops.get(op).map(|s| s.p99_ns))
            .max()
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
    let tuned = by.get(TUNED);
    let _ = writeln!(
        md,
        "| configuration | runs | events/s mean (min-max) | tuned / this | verdict | peak RSS (max) | within the budget rule | write amp. | space amp. | write stalls |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|---:|---|---:|---:|---:|");
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
            let _ = writeln!(md, "| {} | {runs} | n/a | | | | | | | |", c.name);
            continue;
        }
        let (ratio, verdict) = match tuned {
            Some(t) if c.name != TUNED && !t.runs.is_empty() => {
                let ratio = t.mean_rate() / f.mean_rate().max(1e-9);
                let verdict = if t.min_rate() > f.max_rate() {
                    "tuned wins"
                } else if t.max_rate() < f.min_rate() {
                    "tuned loses"
                } else {
                    "within noise"
                };
                (format!("{ratio:.2}x"), verdict)
            }
            _ => (String::new(), ""),
        };
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
            "| {} | {runs} | {:.0} ({:.0}-{:.0}) | {ratio} | {verdict} | {} | {within} | {} | {} | {} |",
            c.name,
            f.mean_rate(),
            f.min_rate(),
            f.max_rate(),
            bytesize::ByteSize(peak).display().iec(),
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
    // Tail latency per operation: the tuned configuration's worst p99 over its repeats
    // against the best baseline's.
    let ops: Vec<String> = tuned
        .map(|t| {
            let mut ops: Vec<String> = t.runs.iter().flat_map(|r| r.ops.keys().cloned()).collect();
            ops.sort();
            ops.dedup();
            ops
        })
        .unwrap_or_default();
    if !ops.is_empty() {
        let _ = writeln!(
            md,
            "p99 latency per operation (the worst of each configuration's repeats):\n"
        );
        let _ = writeln!(md, "| operation | tuned | best baseline | tuned / best |");
        let _ = writeln!(md, "|---|---:|---|---:|");
        for op in &ops {
            let Some(mine) = tuned.and_then(|t| t.worst_p99(op)) else {
                continue;
            };
            let best = candidates
                .iter()
                .filter(|c| c.name != TUNED)
                .filter_map(|c| by[c.name.as_str()].worst_p99(op).map(|p| (p, &c.name)))
                .min();
            let (best_text, ratio) = match best {
                Some((p, name)) => (
                    format!("{} ({name})", micros(p)),
                    format!("{:.2}", mine as f64 / p.max(1) as f64),
                ),
                None => ("n/a".into(), String::new()),
            };
            let _ = writeln!(md, "| {op} | {} | {best_text} | {ratio} |", micros(mine));
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
    fn runs_are_interleaved_and_labelled_by_candidate() {
        let c = candidates(&RocksDbConfig::default(), 256 << 20);
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
