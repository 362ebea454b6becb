//! # statekit-bench
//!
//! The statekit bench harness: real streaming operators, written on
//! [`statekit_backend::typed`], run over deterministic generated streams (or files) of the
//! four reference workloads, against any backend picked at run time. It also records and
//! replays state-access traces, collects metrics and writes `results.json`, `report.md` and
//! `report.html`. The `statekit` binary is its command line.

pub mod backends;
pub mod crash_test;
pub mod disk_probe;
pub mod event;
pub mod isolation;
pub mod metrics;
pub mod null_backend;
pub mod operators;
pub mod prefetch_window;
pub mod profile;
pub mod read_ahead;
pub mod refine;
pub mod report;
pub mod results;
pub mod runner;
pub mod shape;
pub mod state_digest;
pub mod trace;
pub mod tune;
pub mod util;
pub mod validate;
pub mod versus_flink;
pub mod watermark;
pub mod workloads;
