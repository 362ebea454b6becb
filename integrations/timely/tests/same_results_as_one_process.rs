//! A reference operator on 1, 2 and 4 timely workers in one process gives the results
//! (counters, pair fingerprints) of the harness's single-process run on the same stream.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::repo;

use statekit_backend::memory::MemoryBackend;
use statekit_backend::InstanceConfig;
use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::profile::Profile;
use statekit_bench::util::Counters;
use statekit_timely::{run_worker, JobReport, JobSpec};

/// What the harness computes: the operator over the whole stream on one instance that owns
/// every key group (`Operator::process`, then the end of input).
fn one_process(profile: &Profile) -> Counters {
    let scale = profile.scale("quick").unwrap();
    let mut backend =
        MemoryBackend::open(InstanceConfig::single(profile.max_parallelism).unwrap()).unwrap();
    let mut operator = profile.operator(&mut backend, false).unwrap();
    for event in profile.generator(scale).unwrap() {
        operator.process(&mut backend, event).unwrap();
    }
    operator.finish(&mut backend).unwrap();
    operator.counters()
}

fn on_timely(profile: &Profile, kind: BackendKind, workers: usize) -> JobReport {
    let dir = tempfile::tempdir().unwrap();
    let job = Arc::new(JobSpec {
        profile: profile.clone(),
        scale: profile.scale("quick").unwrap().clone(),
        input: None,
        backend: BackendSpec {
            kind,
            config: None,
            rocksdb: None,
        },
        work_dir: dir.path().to_path_buf(),
        memory_budget: None,
        direct_io: false,
        checkpoints: None,
        restore: None,
        exit_after_checkpoints: None,
    });
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        run_worker(worker, &job).unwrap()
    })
    .unwrap();
    let mut reports: Vec<JobReport> = guards.join().into_iter().flat_map(|r| r.unwrap()).collect();
    assert_eq!(reports.len(), 1, "worker 0 alone returns the job's report");
    let report = reports.remove(0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.workers, workers);
    report
}

fn check(profile_file: &str, pairs: &str, kinds: &[(BackendKind, &[usize])]) {
    let profile = Profile::load(&repo(profile_file)).unwrap();
    let expected = one_process(&profile);
    assert!(expected[pairs] > 0, "the stream joins something");
    for &(kind, worker_counts) in kinds {
        for &workers in worker_counts {
            let report = on_timely(&profile, kind, workers);
            assert_eq!(
                report.counters,
                expected,
                "{profile_file} on {} with {workers} workers",
                kind.name()
            );
            // Every worker worked: the key groups were spread.
            assert!(report.worker_reports.iter().all(|w| w.events > 0));
        }
    }
}

#[test]
fn ad_click_join_on_1_2_and_4_workers_equals_one_process() {
    let mut kinds: Vec<(BackendKind, &[usize])> = vec![(BackendKind::Memory, &[1, 2, 4])];
    if cfg!(feature = "rocksdb") {
        kinds.push((BackendKind::Rocksdb, &[2]));
    }
    if cfg!(feature = "remote") {
        kinds.push((BackendKind::Remote, &[2]));
    }
    check(
        "profiles/ad-click-interval-join.toml",
        "joined_pairs",
        &kinds,
    );
}

#[test]
fn feature_concat_on_1_2_and_4_workers_equals_one_process() {
    check(
        "profiles/feature-concat.toml",
        "samples_joined",
        &[(BackendKind::Memory, &[1, 2, 4])],
    );
}

#[test]
fn sliding_window_on_2_workers_equals_one_process() {
    check(
        "profiles/sliding-window-demand.toml",
        "windows_emitted",
        &[(BackendKind::Memory, &[2])],
    );
}
