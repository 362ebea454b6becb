//! Keyed state from any statekit backend for [timely dataflow](https://docs.rs/timely)
//! operators, and the reference operators (the ad-click interval join, feature-concat,
//! sliding-window) running on it across worker threads and processes.
//!
//! How an engine author uses it: route each record to the worker owning its key group
//! ([`Routing`]: contiguous key-group ranges, as Flink assigns them), open one backend
//! instance per worker for that range (`InstanceConfig::with_key_groups`), reach state
//! through the typed API with a `KeyContext` (which checks the key belongs to the instance),
//! and advance event time from the operator's input frontier: buffer each timely epoch's
//! records until the frontier passes it, then advance the watermark to the epoch and handle
//! them. [`run_worker`] does exactly this for a profile's operator; its source stamps each
//! event with the watermark current at its arrival, so every worker sees each of its keys'
//! events and watermarks in the order a single-process run does, and the job's results
//! equal that run's.

mod checkpoint;
mod job;
mod report;
mod routing;

pub use checkpoint::{CheckpointDir, Completed, CutGrid, SourcePart, WorkerPart};
pub use job::{run_worker, CheckpointSpec, JobSpec, Routed, EXIT_AFTER_CHECKPOINT};
pub use report::{merge_counter_sets, merge_counters, JobReport, WorkerReport};
pub use routing::{event_key, Routing};
