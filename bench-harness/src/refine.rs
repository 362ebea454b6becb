//! Refinement: the advisor's proposals tried one at a time against the current best
//! configuration, interleaved and repeated, within a time bound; a change is kept only when
//! its slowest repeat beats the current best's fastest.

use std::time::Instant;

use statekit_backend::rocksdb_config::RocksDbConfig;
use statekit_backend::Result;
use statekit_tuner::{advise, Machine, Observation, Proposal, WorkloadShape};

use crate::backends::BackendSpec;
use crate::results::{Results, RunResult};
use crate::validate::{beyond_noise, run_spec};

/// The names of a trial's two sides in its runs' labels.
const BEST: &str = "best";
const CANDIDATE: &str = "candidate";

/// One tried proposal and what it measured.
#[derive(Debug, Clone)]
pub struct Step {
    /// The change.
    pub proposal: Proposal,
    /// Events/s of the configuration before it, in this trial.
    pub before: Vec<f64>,
    /// Events/s with it.
    pub after: Vec<f64>,
    /// Whether it was kept.
    pub kept: bool,
    /// Why a trial ended without figures (a failed run).
    pub error: Option<String>,
}

/// What a configuration's runs showed, as the advisor reads it: the mean over the runs.
pub fn observe(runs: &[&RunResult]) -> Observation {
    let n = runs.len().max(1) as u64;
    let detail = |r: &RunResult, k: &str| r.backend_stats.details.get(k).copied().unwrap_or(0);
    let sum = |k: &str| runs.iter().map(|r| detail(r, k)).sum::<u64>() / n;
    let amps: Vec<f64> = runs.iter().filter_map(|r| r.write_amplification).collect();
    Observation {
        seconds: runs.iter().map(|r| r.wall_seconds).sum::<f64>() / n as f64,
        stall_micros: sum("rocksdb.stall.micros"),
        l0_files: sum("rocksdb.l0-files"),
        pending_compaction_bytes: sum("rocksdb.estimate-pending-compaction-bytes"),
        data_hits: sum("rocksdb.block.cache.data.hit"),
        data_misses: sum("rocksdb.block.cache.data.miss"),
        index_hits: sum("rocksdb.block.cache.index.hit"),
        index_misses: sum("rocksdb.block.cache.index.miss"),
        bloom_useful: sum("rocksdb.bloom.filter.useful"),
        bloom_positive: sum("rocksdb.bloom.filter.full.positive"),
        bloom_true_positive: sum("rocksdb.bloom.filter.full.true.positive"),
        write_amplification: (!amps.is_empty())
            .then(|| amps.iter().sum::<f64>() / amps.len() as f64),
    }
}

/// Runs the given specs (each in its own process) and returns the results.
pub type RunSpecs<'a> = dyn FnMut(&[BackendSpec]) -> Result<Results> + 'a;

fn rates(results: &Results, name: &str) -> (Vec<f64>, Vec<RunResult>) {
    let prefix = format!("{name} run ");
    let runs: Vec<RunResult> = results
        .runs
        .iter()
        .filter(|r| r.ok() && r.config.as_deref().is_some_and(|c| c.starts_with(&prefix)))
        .cloned()
        .collect();
    (runs.iter().map(|r| r.events_per_sec).collect(), runs)
}

/// Starting from `tuned`, tries the advisor's proposals until `deadline`, `repeats` runs of
/// each side per trial; returns the refined configuration and every step.
///
/// # Errors
/// An error of `run` before any run starts.
pub fn refine(
    tuned: &RocksDbConfig,
    shape: &WorkloadShape,
    machine: &Machine,
    repeats: usize,
    deadline: Instant,
    run: &mut RunSpecs<'_>,
) -> Result<(RocksDbConfig, Vec<Step>)> {
    let repeats = repeats.max(1);
    let mut best = tuned.clone();
    let first = run(&(1..=repeats)
        .map(|i| run_spec(BEST, i, &best))
        .collect::<Vec<_>>())?;
    let (_, runs) = rates(&first, BEST);
    let mut observed = observe(&runs.iter().collect::<Vec<_>>());
    let mut tried = Vec::new();
    let mut steps = Vec::new();
    while Instant::now() < deadline {
        let Some(proposal) = advise(&best, shape, machine, &observed, &tried)
            .into_iter()
            .next()
        else {
            break;
        };
        tried.push(proposal.key.clone());
        let mut specs = Vec::new();
        for i in 1..=repeats {
            specs.push(run_spec(CANDIDATE, i, &proposal.config));
            specs.push(run_spec(BEST, i, &best));
        }
        let results = run(&specs)?;
        let (after, after_runs) = rates(&results, CANDIDATE);
        let (before, _) = rates(&results, BEST);
        let complete = after.len() == repeats && before.len() == repeats;
        let kept = complete && beyond_noise(&before, &after);
        if kept {
            best = proposal.config.clone();
            observed = observe(&after_runs.iter().collect::<Vec<_>>());
        }
        steps.push(Step {
            proposal,
            before,
            after,
            kept,
            error: (!complete).then(|| {
                results
                    .runs
                    .iter()
                    .find_map(|r| r.error.clone())
                    .unwrap_or_else(|| "a run failed its checks".into())
            }),
        });
    }
    Ok((best, steps))
}

/// The refinement as Markdown: every proposal, its reason and its measured effect.
pub fn refine_markdown(steps: &[Step], minutes: f64) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(md, "# Refinement\n");
    let _ = writeln!(
        md,
        "The advisor read the statistics of the current best configuration's runs and \
         proposed changes; each was run against the current best, interleaved, in processes \
         of their own, and kept only when its slowest run beat the best's fastest. Time \
         bound: {minutes} minutes; {} proposals tried, {} kept.\n",
        steps.len(),
        steps.iter().filter(|s| s.kept).count()
    );
    if steps.is_empty() {
        let _ = writeln!(
            md,
            "The advisor proposed nothing: no symptom it has a rule for.\n"
        );
        return md;
    }
    let _ = writeln!(
        md,
        "| change | value | reason | figures | best events/s | with the change | kept |"
    );
    let _ = writeln!(md, "|---|---|---|---|---:|---:|---|");
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for s in steps {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            s.proposal.key,
            s.proposal.value,
            s.proposal.reason.replace('|', "\\|"),
            s.proposal.figures,
            show(&s.before),
            show(&s.after),
            match (&s.error, s.kept) {
                (Some(e), _) => format!("no: {}", e.replace('|', "\\|")),
                (None, true) => "**yes**".into(),
                (None, false) => "no (not beyond the noise)".into(),
            }
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_average_the_runs_statistics() {
        let run = |stall: u64, l0: u64, wa: f64| {
            let mut r = RunResult::empty(&run_spec("x", 1, &RocksDbConfig::default()));
            r.wall_seconds = 10.0;
            r.write_amplification = Some(wa);
            r.backend_stats.details = [
                ("rocksdb.stall.micros".to_string(), stall),
                ("rocksdb.l0-files".to_string(), l0),
            ]
            .into_iter()
            .collect();
            r
        };
        let (a, b) = (run(1_000, 4, 2.0), run(3_000, 8, 4.0));
        let o = observe(&[&a, &b]);
        assert_eq!(o.stall_micros, 2_000);
        assert_eq!(o.l0_files, 6);
        assert_eq!(o.write_amplification, Some(3.0));
        assert_eq!(o.seconds, 10.0);
    }
}
