//! What each worker reports at the end of a run, and the job's report made of them.

use serde::{Deserialize, Serialize};
use statekit_bench::util::{Counters, SetFingerprint};

/// One worker's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's index among all workers of all processes.
    pub worker: usize,
    /// The key groups it owned, as `start-end`.
    pub key_groups: String,
    /// Events its operator handled.
    pub events: u64,
    /// Its operator's result counters, over its own keys.
    pub counters: Counters,
    /// Seconds from the dataflow's start to the worker's end of input.
    pub seconds: f64,
    /// Watermarks the source emitted (and the final one): set by the worker that read the
    /// input, the only one that sees every watermark.
    pub source_watermarks: Option<u64>,
    /// The first error the worker met; its later input was dropped.
    pub error: Option<String>,
}

/// The job's report: every worker's, and the counters of the whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// The workload.
    pub workload: String,
    /// The backend each worker ran.
    pub backend: String,
    /// Workers over all processes.
    pub workers: usize,
    /// Events handled over all workers.
    pub events: u64,
    /// Wall seconds of the slowest worker.
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_sec: f64,
    /// The job's result counters: what a single-process run of the harness reports for the
    /// same input (see [`merge_counters`]).
    pub counters: Counters,
    /// The workers' reports, by index.
    pub worker_reports: Vec<WorkerReport>,
    /// The workers' errors, if any.
    pub errors: Vec<String>,
    /// The checkpoint the run was restored from: its output before the cut is in
    /// `counters` (the `watermarks` the source emitted before it too).
    pub restored_from: Option<u64>,
}

impl JobReport {
    /// The job's report from every worker's, in any order.
    /// With `restored`, the checkpoint's id and its counters (the output before its cut).
    pub fn new(
        workload: impl Into<String>,
        backend: impl Into<String>,
        mut reports: Vec<WorkerReport>,
        restored: Option<(u64, Counters)>,
    ) -> Self {
        reports.sort_by_key(|r| r.worker);
        let events = reports.iter().map(|r| r.events).sum();
        let seconds = reports.iter().map(|r| r.seconds).fold(0.0, f64::max);
        let errors = reports
            .iter()
            .filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("worker {}: {e}", r.worker))
            })
            .collect();
        JobReport {
            workload: workload.into(),
            backend: backend.into(),
            workers: reports.len(),
            events,
            seconds,
            events_per_sec: if seconds > 0.0 {
                events as f64 / seconds
            } else {
                0.0
            },
            counters: match &restored {
                None => merge_counters(&reports),
                Some((_, before)) => {
                    let after = merge_counters(&reports);
                    let mut job = merge_counter_sets(&[before, &after]);
                    if let Some(&w) = after.get("watermarks") {
                        job.insert("watermarks".into(), w);
                    }
                    job
                }
            },
            worker_reports: reports,
            errors,
            restored_from: restored.map(|(id, _)| id),
        }
    }
}

/// The job's counters from its workers': counts add up; fingerprints (`*_fingerprint`) are
/// additive over disjoint sets of keys and combine as [`SetFingerprint::combine`] does;
/// `watermarks` is what the source emitted, not how often each worker advanced.
pub fn merge_counters(reports: &[WorkerReport]) -> Counters {
    let parts: Vec<&Counters> = reports.iter().map(|r| &r.counters).collect();
    let mut job = merge_counter_sets(&parts);
    if let Some(w) = reports.iter().find_map(|r| r.source_watermarks) {
        if job.contains_key("watermarks") {
            job.insert("watermarks".into(), w);
        }
    }
    job
}

/// Counters of disjoint parts of a job (workers, or the output before a checkpoint and
/// after it) added up: counts add, fingerprints combine.
pub fn merge_counter_sets(parts: &[&Counters]) -> Counters {
    let mut job = Counters::new();
    for part in parts {
        for (name, &value) in *part {
            let total = job.entry(name.clone()).or_insert(0);
            *total = if name.ends_with("_fingerprint") {
                SetFingerprint::combine(*total, value)
            } else {
                total.saturating_add(value)
            };
        }
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(worker: usize, items: &[u64], source: Option<u64>) -> WorkerReport {
        let mut fp = SetFingerprint::default();
        for &i in items {
            fp.add(&[i]);
        }
        WorkerReport {
            worker,
            key_groups: String::new(),
            events: items.len() as u64,
            counters: Counters::from([
                ("pairs".to_string(), items.len() as u64),
                ("pairs_fingerprint".to_string(), fp.value()),
                ("watermarks".to_string(), 3),
            ]),
            seconds: 1.0 + worker as f64,
            source_watermarks: source,
            error: None,
        }
    }

    #[test]
    fn workers_counters_merge_into_the_whole_jobs() {
        let whole = report(0, &[1, 2, 3, 4, 5], Some(9));
        let job = JobReport::new(
            "w",
            "memory",
            vec![report(1, &[4, 5], None), report(0, &[1, 2, 3], Some(9))],
            None,
        );
        assert_eq!(job.counters["pairs"], 5);
        assert_eq!(
            job.counters["pairs_fingerprint"],
            whole.counters["pairs_fingerprint"]
        );
        assert_eq!(job.counters["watermarks"], 9);
        assert_eq!(job.events, 5);
        assert_eq!(job.seconds, 2.0);
        assert_eq!(job.worker_reports[0].worker, 0);

        // The output before a checkpoint plus the output after the restore.
        let before = report(0, &[1, 2], None).counters;
        let job = JobReport::new(
            "w",
            "memory",
            vec![report(0, &[3], Some(9)), report(1, &[4, 5], None)],
            Some((7, before)),
        );
        assert_eq!(
            job.counters,
            JobReport::new("w", "memory", vec![whole], None).counters
        );
        assert_eq!(job.restored_from, Some(7));
    }
}
