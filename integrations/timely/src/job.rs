//! One run of a reference operator on timely dataflow: the source, the exchange by key group,
//! the keyed operator on each worker's own backend instance, and the reports.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use statekit_backend::{Error, InstanceConfig, Result, StateBackend};
use statekit_bench::backends::{open_backend, BackendSpec, OpenOptions};
use statekit_bench::event::{Event, EventFileReader};
use statekit_bench::null_backend::NullBackend;
use statekit_bench::profile::Profile;
use statekit_bench::read_ahead::ReadAhead;
use statekit_bench::watermark::WatermarkGenerator;
use statekit_bench::workloads::{Operator, ScaleSpec};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator as _;
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

use crate::report::{JobReport, WorkerReport};
use crate::routing::Routing;

/// Watermark epochs the source may run ahead of the slowest worker: bounds what waits in
/// the exchange's buffers (a few thousand events at the reference rates).
const EPOCHS_AHEAD: usize = 16;

type RoutedInput = InputHandle<i64, CapacityContainerBuilder<Vec<Routed>>>;

/// What every worker of a run is given.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The workload and its parameters.
    pub profile: Profile,
    /// The scale: what the source generates when there is no input file.
    pub scale: ScaleSpec,
    /// An event file written by `statekit generate`, read instead of generating.
    pub input: Option<PathBuf>,
    /// The backend every worker opens.
    pub backend: BackendSpec,
    /// Each worker works in `work_dir/worker-<index>`.
    pub work_dir: PathBuf,
    /// The memory budget of each worker's backend.
    pub memory_budget: Option<u64>,
    /// Direct I/O for RocksDB (the budget is then real).
    pub direct_io: bool,
}

/// An event on its way to the worker that owns its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    /// Its position in the input: a worker handles one epoch's events in input order.
    pub seq: u64,
    /// The worker that owns its key group.
    pub worker: u32,
    /// The event.
    pub event: Event,
}

/// Runs the job on `worker`, one of the job's workers (threads of this process and of the
/// others, timely's `-w`/`-n`/`-p`/`-h`). Worker 0 reads the input, stamps each event with
/// the watermark current at its arrival (the time of its timely epoch) and sends it to the
/// worker owning its key group; every worker runs the profile's operator on a backend
/// instance of its own key-group range, advancing its watermark as its input frontier
/// passes epochs, and ends it (every timer fires) when the input is closed. Returns the
/// job's report on worker 0, `None` on the others.
///
/// # Errors
/// Opening the worker's backend or the input; a worker's processing error is in its report.
pub fn run_worker(worker: &mut Worker, job: &JobSpec) -> Result<Option<JobReport>> {
    let index = worker.index();
    let routing = Routing::new(job.profile.max_parallelism, worker.peers())?;
    let key_groups = routing.key_groups(index)?;
    let work_dir = job.work_dir.join(format!("worker-{index}"));
    std::fs::create_dir_all(&work_dir).map_err(|e| Error::io(work_dir.display(), e))?;
    let mut backend = open_backend(
        &job.backend,
        OpenOptions {
            instance: InstanceConfig::single(job.profile.max_parallelism)?
                .with_key_groups(key_groups),
            work_dir: &work_dir,
            memory_budget: job.memory_budget,
            direct_io: job.direct_io,
        },
    )?;
    let operator = job.profile.operator(&mut *backend, false)?;
    let keyed = KeyedOperator {
        index,
        key_groups: key_groups.to_string(),
        backend,
        operator,
        applied: i64::MIN,
        events: 0,
        start: Instant::now(),
        error: None,
    };
    let source_watermarks = Rc::new(RefCell::new(None));
    let collected: Rc<RefCell<Vec<WorkerReport>>> = Rc::default();
    let mut input = RoutedInput::new();
    let probe = ProbeHandle::new();
    worker.dataflow::<i64, _, _>(|scope| {
        let reports = keyed.attach(scope.input_from(&mut input), Rc::clone(&source_watermarks));
        let collected = Rc::clone(&collected);
        reports.probe_with(&probe).sink(
            Exchange::new(|_: &WorkerReport| 0),
            "CollectReports",
            move |(input, _frontier)| {
                input.for_each(|_, data| collected.borrow_mut().append(data));
            },
        );
    });

    if index == 0 {
        let emitted = feed(worker, &mut input, &probe, job, routing)?;
        *source_watermarks.borrow_mut() = Some(emitted);
    }
    drop(input);
    // Until every dataflow is complete: the reports' sink on worker 0 completes once every
    // worker's report has arrived.
    while worker.step_or_park(None) {}
    if index != 0 {
        return Ok(None);
    }
    let reports = std::mem::take(&mut *collected.borrow_mut());
    Ok(Some(JobReport::new(
        job.profile.workload.name(),
        job.backend.label(),
        reports,
    )))
}

/// Reads the input into the dataflow; returns how many watermarks it emitted, the final one
/// included (what a single-process run of the operator counts).
fn feed(
    worker: &mut Worker,
    input: &mut RoutedInput,
    probe: &ProbeHandle<i64>,
    job: &JobSpec,
    routing: Routing,
) -> Result<u64> {
    let mut watermarks = watermark_generator(&job.profile)?;
    let events = match &job.input {
        Some(path) => ReadAhead::spawn(EventFileReader::open(path)?)?,
        None => ReadAhead::spawn(job.profile.generator(&job.scale)?.map(Ok))?,
    };
    let mut recent: VecDeque<i64> = VecDeque::new();
    let mut emitted = 0u64;
    for (seq, event) in events.enumerate() {
        let event = event?;
        let ts = event.ts();
        let target = routing.worker_of_event(&event)?;
        input.send(Routed {
            seq: seq as u64,
            worker: target as u32,
            event,
        });
        if let Some(wm) = watermarks.observe(ts) {
            emitted += 1;
            input.advance_to(wm);
            recent.push_back(wm);
            if recent.len() > EPOCHS_AHEAD {
                let behind = recent.pop_front().unwrap_or(wm);
                while probe.less_than(&behind) {
                    worker.step();
                }
            } else {
                worker.step();
            }
        }
    }
    Ok(emitted + 1)
}

/// The profile's watermark generator, as its operator builds it.
fn watermark_generator(profile: &Profile) -> Result<WatermarkGenerator> {
    let mut null = NullBackend::new(InstanceConfig::single(profile.max_parallelism)?);
    Ok(profile.operator(&mut null, false)?.watermarks().clone())
}

/// The profile's operator on one worker, with its backend.
struct KeyedOperator {
    index: usize,
    key_groups: String,
    backend: Box<dyn StateBackend>,
    operator: Box<dyn Operator>,
    /// The watermark the operator has advanced to.
    applied: i64,
    events: u64,
    start: Instant,
    error: Option<Error>,
}

impl KeyedOperator {
    /// Runs `self` on `events`: buffers each epoch's events until the input frontier passes
    /// it, then advances the watermark to the epoch and handles them in input order; a
    /// frontier past every buffered epoch advances the watermark to it. The output carries
    /// one [`WorkerReport`] when the input ends, at a capability that follows the input
    /// frontier (so a probe on it tracks the worker's progress).
    fn attach<'s>(
        mut self,
        events: timely::dataflow::Stream<'s, i64, Vec<Routed>>,
        source_watermarks: Rc<RefCell<Option<u64>>>,
    ) -> timely::dataflow::Stream<'s, i64, Vec<WorkerReport>> {
        events.unary_frontier(
            Exchange::new(|r: &Routed| u64::from(r.worker)),
            "KeyedState",
            move |capability, _info| {
                let mut capability = Some(capability);
                let mut pending: BTreeMap<i64, Vec<Routed>> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each(|stamp, data| {
                        // The source sends each message at one time.
                        if let Some(&time) = stamp.least() {
                            pending.entry(time).or_default().append(data);
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let epoch = *entry.key();
                        let mut events = entry.remove();
                        events.sort_unstable_by_key(|r| r.seq);
                        self.run(epoch, &events);
                    }
                    match frontier.frontier().first() {
                        Some(&next) => {
                            self.advance(next);
                            if let Some(cap) = capability.as_mut() {
                                if *cap.time() < next {
                                    cap.downgrade(&next);
                                }
                            }
                        }
                        None => {
                            if let Some(cap) = capability.take() {
                                let report = self.finish(*source_watermarks.borrow());
                                output.session(&cap).give(report);
                            }
                        }
                    }
                }
            },
        )
    }

    /// Handles one epoch's events, after advancing the watermark to the epoch.
    fn run(&mut self, epoch: i64, events: &[Routed]) {
        self.advance(epoch);
        for routed in events {
            if self.error.is_some() {
                return;
            }
            if let Err(e) = self.operator.handle(&mut *self.backend, &routed.event) {
                self.error = Some(e);
            }
            self.events += 1;
        }
    }

    fn advance(&mut self, watermark: i64) {
        if watermark <= self.applied || self.error.is_some() {
            return;
        }
        self.applied = watermark;
        if let Err(e) = self
            .operator
            .advance_watermark(&mut *self.backend, watermark)
        {
            self.error = Some(e);
        }
    }

    /// Ends the input (every timer fires) and reports.
    fn finish(&mut self, source_watermarks: Option<u64>) -> WorkerReport {
        if self.error.is_none() {
            if let Err(e) = self.operator.finish(&mut *self.backend) {
                self.error = Some(e);
            }
        }
        WorkerReport {
            worker: self.index,
            key_groups: self.key_groups.clone(),
            events: self.events,
            counters: self.operator.counters(),
            seconds: self.start.elapsed().as_secs_f64(),
            source_watermarks,
            error: self.error.as_ref().map(ToString::to_string),
        }
    }
}
