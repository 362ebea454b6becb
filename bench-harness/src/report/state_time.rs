//! The report's "time by state" table: for each run, the state work's time per named state
//! and operation, largest first, so a slow run says which state's which access it spent on
//! (Flink's state latency tracking reports per state too).

use std::fmt::Write as _;

use super::format_ns;
use crate::results::RunResult;

/// Rows below this share of a run's time are summed into one "other" row: the table is for
/// seeing where the time went, not for listing every rare call.
const MIN_SHARE: f64 = 0.005;

/// The section, or nothing when no run has per-state figures (results written before they
/// existed).
pub(super) fn section(runs: &[RunResult]) -> String {
    let runs: Vec<&RunResult> = runs.iter().filter(|r| !r.ops_by_state.is_empty()).collect();
    if runs.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n### Time by state\n\nEach state's calls per operation, the whole run, largest \
         total first. A scan's time includes the operator's work on what it visits, as a real \
         iterator's does; \"share\" is of the run time above. Where only a sample of the calls \
         was timed (see the latency section), \"total\" is their mean times all the calls.\n\n\
         | run | state | operation | calls | total | share | mean | p99 |\n\
         |---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        let mut rows: Vec<(&str, &str, u64, f64, f64, u64)> = run
            .ops_by_state
            .iter()
            .flat_map(|(state, kinds)| {
                kinds.iter().map(move |(kind, s)| {
                    let total_ns = s.mean_ns * s.count as f64;
                    (
                        state.as_str(),
                        kind.as_str(),
                        s.count,
                        total_ns,
                        s.mean_ns,
                        s.p99_ns,
                    )
                })
            })
            .collect();
        rows.sort_by(|a, b| b.3.total_cmp(&a.3));
        let wall_ns = run.wall_seconds * 1e9;
        let share = |ns: f64| {
            if wall_ns > 0.0 {
                format!("{:.1}%", 100.0 * ns / wall_ns)
            } else {
                "n/a".to_string()
            }
        };
        let (mut other_calls, mut other_ns) = (0u64, 0.0);
        for (state, kind, calls, total_ns, mean_ns, p99_ns) in rows {
            if wall_ns > 0.0 && total_ns < MIN_SHARE * wall_ns {
                other_calls += calls;
                other_ns += total_ns;
                continue;
            }
            let _ = writeln!(
                md,
                "| {} | {state} | {kind} | {calls} | {} | {} | {} | {} |",
                run.label,
                format_ns(total_ns),
                share(total_ns),
                format_ns(mean_ns),
                format_ns(p99_ns as f64),
            );
        }
        if other_calls > 0 {
            let _ = writeln!(
                md,
                "| {} | other (each under {:.1}%) | | {other_calls} | {} | {} | | |",
                run.label,
                100.0 * MIN_SHARE,
                format_ns(other_ns),
                share(other_ns),
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::backends::{BackendKind, BackendSpec};
    use crate::metrics::OpSummary;

    fn summary(count: u64, mean_ns: f64) -> OpSummary {
        OpSummary {
            count,
            timed: count,
            errors: 0,
            mean_ns,
            p50_ns: mean_ns as u64,
            p99_ns: 2 * mean_ns as u64,
            p999_ns: 3 * mean_ns as u64,
            max_ns: 4 * mean_ns as u64,
        }
    }

    fn run(label: &str, wall_seconds: f64) -> RunResult {
        let spec = BackendSpec {
            kind: BackendKind::Memory,
            config: None,
            rocksdb: None,
        };
        let mut run = RunResult::empty(&spec);
        run.label = label.into();
        run.wall_seconds = wall_seconds;
        run
    }

    #[test]
    fn rows_come_largest_first_and_small_ones_are_summed() {
        let mut run = run("rocksdb", 10.0);
        // 4 s, 1 s and 1 ms: the last is under half a percent of 10 s.
        run.ops_by_state = BTreeMap::from([
            (
                "join/left".to_string(),
                BTreeMap::from([
                    ("merge".to_string(), summary(1_000, 1e6)),
                    ("scan".to_string(), summary(1_000, 4e6)),
                ]),
            ),
            (
                "join/cleanup-left".to_string(),
                BTreeMap::from([("register_timer".to_string(), summary(1_000, 1e3))]),
            ),
        ]);
        let md = section(&[run]);
        let scan = md.find("| rocksdb | join/left | scan | 1000 | 4.00 s | 40.0% |");
        let merge = md.find("| rocksdb | join/left | merge | 1000 | 1.00 s | 10.0% |");
        assert!(scan.is_some() && merge.is_some(), "{md}");
        assert!(scan < merge, "largest first: {md}");
        assert!(!md.contains("register_timer"), "{md}");
        assert!(
            md.contains("| rocksdb | other (each under 0.5%) | | 1000 | 1.00 ms | 0.0% |"),
            "{md}"
        );
    }

    #[test]
    fn runs_without_per_state_figures_have_no_section() {
        assert_eq!(section(&[run("memory", 1.0)]), "");
        assert_eq!(section(&[]), "");
    }
}
