//! `statekit tune` end to end on a profile: a scaled-down sample run measures the shape, the
//! tuner derives a configuration, and the files it writes load back (and, with RocksDB,
//! open a backend that runs the profile).

use statekit_backend::rocksdb_config::RocksDbConfig;
use statekit_bench::profile::Profile;
use statekit_bench::tune::{shape_from_profile, tune_and_write};
use statekit_tuner::{Disk, DiskKind, Machine};

#[test]
fn a_profile_is_tuned_and_its_files_load_back() {
    let profile = Profile::load(&statekit_tests::fixtures::repo(
        "profiles/ad-click-interval-join.toml",
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shape =
        shape_from_profile(&profile, "quick", 20_000, &dir.path().join("work"), false).unwrap();
    let names: Vec<&str> = shape.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let left = &shape.states[0];
    assert!(left.rates.puts + left.rates.merges > 0.0 && left.live_bytes > 0);
    let machine = Machine {
        cores: 2,
        memory_budget: 64 << 20,
        disk: Disk::declared(DiskKind::Ssd),
        direct_io: true,
    };
    let out = dir.path().join("tuned");
    let tuning = tune_and_write(&shape, &machine, &out).unwrap();
    let loaded = RocksDbConfig::load(&out.join("tuned.toml")).unwrap();
    assert_eq!(loaded, tuning.config);
    let options = RocksDbConfig::read_options_file(&out.join("OPTIONS")).unwrap();
    for name in &names {
        assert!(loaded.states.contains_key(*name), "{name}");
        assert_eq!(
            options.for_state(name).0.write_buffer_size,
            loaded.for_state(name).0.write_buffer_size
        );
    }
    let explain = std::fs::read_to_string(out.join("explain.md")).unwrap();
    for name in &names {
        assert!(explain.contains(&format!("## State `{name}`")), "{explain}");
    }
    assert!(explain.contains("`db.max_background_jobs`"));

    // The tuned options as data run the profile on RocksDB, self-checks included.
    #[cfg(feature = "rocksdb")]
    {
        use statekit_bench::backends::{BackendKind, BackendSpec};
        use statekit_bench::runner::{self, BenchOptions};
        let options = BenchOptions {
            profile,
            scale: "quick".into(),
            specs: vec![BackendSpec {
                kind: BackendKind::Rocksdb,
                config: Some("tuned".into()),
                rocksdb: Some(Box::new(loaded)),
            }],
            memory_budget: Some(64 << 20),
            out: dir.path().join("bench"),
            input: None,
            keep_state: false,
            progress: false,
            isolation: statekit_bench::isolation::Isolation::InProcess,
            time_limit: None,
        };
        let results = runner::bench(&options).unwrap();
        let run = results
            .runs
            .iter()
            .find(|r| r.backend == "rocksdb")
            .unwrap();
        assert_eq!(run.error, None);
        assert!(run.events > 0);
        assert!(
            !run.checks.is_empty() && run.checks.iter().all(|c| c.passed),
            "{:?}",
            run.checks
        );
    }
}
