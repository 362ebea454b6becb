//! One run of a reference operator on timely dataflow: the source, the exchange by key group,
//! the keyed operator on each worker's own backend instance, checkpoints, and the reports.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use statekit_backend::checkpoint::handles_for_range;
use statekit_backend::{
    CheckpointHandle, Error, InstanceConfig, KeyGroupRange, LocalDirStorage, Result, StateBackend,
};
use statekit_bench::backends::{open_backend, BackendSpec, OpenOptions};
use statekit_bench::event::Event;
use statekit_bench::null_backend::NullBackend;
use statekit_bench::profile::Profile;
use statekit_bench::util::Counters;
use statekit_bench::watermark::WatermarkGenerator;
use statekit_bench::workloads::{Operator, ScaleSpec};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator as _;
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

use crate::checkpoint::{CheckpointDir, Completed, CutGrid, SourcePart, WorkerPart};
use crate::report::{merge_counter_sets, JobReport, WorkerReport};
use crate::routing::Routing;

/// Watermark epochs the source may run ahead of the slowest worker: bounds what waits in
/// the exchange's buffers (a few thousand events at the reference rates).
const EPOCHS_AHEAD: usize = 16;

/// The exit status of a process stopped on purpose after a checkpoint
/// ([`JobSpec::exit_after_checkpoints`]).
pub const EXIT_AFTER_CHECKPOINT: i32 = 75;

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
    /// Checkpoints: where, and every how many milliseconds of event time.
    pub checkpoints: Option<CheckpointSpec>,
    /// The complete checkpoint to start from (on any number of workers), read from the
    /// checkpoint directory of `checkpoints`, where the restored job keeps checkpointing.
    pub restore: Option<Arc<Completed>>,
    /// Fault injection for tests: the process of worker 0 exits with
    /// [`EXIT_AFTER_CHECKPOINT`], without cleaning up (as if killed), right after it
    /// completes this many checkpoints; the other processes go down with their connections
    /// to it.
    pub exit_after_checkpoints: Option<u64>,
}

/// Where and how often a job checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointSpec {
    /// The job's checkpoint directory, also the backends' checkpoint storage.
    pub dir: PathBuf,
    /// Milliseconds of event time between cuts; `None`: the job only restores from `dir`.
    pub interval: Option<i64>,
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

/// What workers tell worker 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Note {
    /// A worker wrote its part of checkpoint `id`, cut at event time `cut`.
    Part { id: u64, cut: i64 },
    /// A worker's end-of-input report.
    Report(WorkerReport),
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
/// A job the workers cannot share (more workers than key groups, a restore without its
/// checkpoint directory) or an input that cannot be opened; a worker's error in opening,
/// restoring or processing is in its report, and the job still ends.
pub fn run_worker(worker: &mut Worker, job: &JobSpec) -> Result<Option<JobReport>> {
    let index = worker.index();
    let peers = worker.peers();
    let routing = Routing::new(job.profile.max_parallelism, peers)?;
    let key_groups = routing.key_groups(index)?;
    if job.restore.is_some() && job.checkpoints.is_none() {
        return Err(Error::invalid(
            "a restore needs the checkpoint directory it reads the snapshots from".to_string(),
        ));
    }
    // Every worker must take part in the dataflow even when its backend cannot be opened or
    // restored, or the others would wait for it forever: such a worker runs on a backend
    // that stores nothing, drops its input and reports the error.
    let (backend, operator, error) = match open_worker(job, index, key_groups) {
        Ok((backend, operator)) => (backend, operator, None),
        Err(e) => {
            let mut null: Box<dyn StateBackend> = Box::new(NullBackend::new(
                InstanceConfig::single(job.profile.max_parallelism)?.with_key_groups(key_groups),
            ));
            let operator = job.profile.operator(&mut *null, false)?;
            (null, operator, Some(e))
        }
    };
    // The output before a restored cut counts once: worker 0's parts and report carry it.
    let base = job
        .restore
        .as_ref()
        .filter(|_| index == 0)
        .map(|r| r.counters());
    let keyed = KeyedOperator {
        index,
        key_groups: key_groups.to_string(),
        backend,
        operator,
        applied: i64::MIN,
        events: 0,
        start: Instant::now(),
        error,
        checkpoints: job.checkpoints.as_ref().and_then(|c| {
            let mut grid = CutGrid::new(c.interval?);
            if let Some(r) = &job.restore {
                grid.resume(r.checkpoint_id);
            }
            Some(WorkerCheckpoints {
                dir: CheckpointDir::new(&c.dir),
                grid,
                unconfirmed: Vec::new(),
                base: base.clone(),
            })
        }),
    };
    let source_watermarks = Rc::new(RefCell::new(None));
    let collected: Rc<RefCell<Vec<WorkerReport>>> = Rc::default();
    let mut input = RoutedInput::new();
    let probe = ProbeHandle::new();
    let completer = job.checkpoints.as_ref().map(|c| Completer {
        dir: CheckpointDir::new(&c.dir),
        workers: peers,
        parts: BTreeMap::new(),
        completed: 0,
        exit_after: job.exit_after_checkpoints,
    });
    worker.dataflow::<i64, _, _>(|scope| {
        let notes = keyed.attach(scope.input_from(&mut input), Rc::clone(&source_watermarks));
        let collected = Rc::clone(&collected);
        let mut completer = completer;
        notes.probe_with(&probe).sink(
            Exchange::new(|_: &Note| 0),
            "CollectNotes",
            move |(input, _frontier)| {
                input.for_each(|_, data| {
                    for note in data.drain(..) {
                        match note {
                            Note::Report(r) => collected.borrow_mut().push(r),
                            Note::Part { id, cut } => {
                                if let Some(c) = completer.as_mut() {
                                    c.part_written(id, cut);
                                }
                            }
                        }
                    }
                });
            },
        );
    });

    if index == 0 {
        let emitted = feed(worker, &mut input, &probe, job, routing)?;
        *source_watermarks.borrow_mut() = Some(emitted);
    }
    drop(input);
    // Until every dataflow is complete: the notes' sink on worker 0 completes once every
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
        job.restore
            .as_ref()
            .map(|r| (r.checkpoint_id, r.counters())),
    )))
}

/// Opens worker `index`'s backend for its key groups (restored from the job's checkpoint if
/// it has one) and the profile's operator on it.
fn open_worker(
    job: &JobSpec,
    index: usize,
    key_groups: KeyGroupRange,
) -> Result<(Box<dyn StateBackend>, Box<dyn Operator>)> {
    let work_dir = job.work_dir.join(format!("worker-{index}"));
    std::fs::create_dir_all(&work_dir).map_err(|e| Error::io(work_dir.display(), e))?;
    let mut instance =
        InstanceConfig::single(job.profile.max_parallelism)?.with_key_groups(key_groups);
    if let Some(root) = job.checkpoints.as_ref().map(|c| &c.dir) {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root.display(), e))?;
        instance = instance.with_checkpoint_storage(Arc::new(LocalDirStorage::new(root)?));
    }
    let mut backend = open_backend(
        &job.backend,
        OpenOptions {
            instance,
            work_dir: &work_dir,
            memory_budget: job.memory_budget,
            direct_io: job.direct_io,
        },
    )?;
    let operator = job.profile.operator(&mut *backend, false)?;
    if let Some(restored) = &job.restore {
        let handles = restored.handles();
        let mine: Vec<CheckpointHandle> = handles_for_range(&handles, key_groups)?
            .into_iter()
            .cloned()
            .collect();
        backend.restore(&mine).map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "restoring key groups {key_groups} from checkpoint {}: {e}",
                    restored.checkpoint_id
                ),
            )
        })?;
    }
    Ok((backend, operator))
}

/// Reads the input into the dataflow, from the restored checkpoint's offset if there is
/// one, writing the source's part of each checkpoint as its watermark crosses a cut; returns
/// how many watermarks the job emitted, the final one included (what a single-process run
/// of the operator counts).
fn feed(
    worker: &mut Worker,
    input: &mut RoutedInput,
    probe: &ProbeHandle<i64>,
    job: &JobSpec,
    routing: Routing,
) -> Result<u64> {
    let (mut watermarks, skip, mut emitted) = match &job.restore {
        Some(r) => (
            r.source.watermarks.clone(),
            r.source.offset,
            r.source.emitted,
        ),
        None => (watermark_generator(&job.profile)?, 0, 0),
    };
    // Events after a restored cut are stamped with its watermark or later.
    input.advance_to(watermarks.current());
    let mut cuts = job.checkpoints.as_ref().and_then(|c| {
        let mut grid = CutGrid::new(c.interval?);
        if let Some(r) = &job.restore {
            grid.resume(r.checkpoint_id);
        }
        Some((CheckpointDir::new(&c.dir), grid))
    });
    let events = statekit_bench::runner::events(&job.profile, &job.scale, job.input.as_deref())?;
    let mut recent: VecDeque<i64> = VecDeque::new();
    let mut read = 0u64;
    for event in events {
        let event = event?;
        read += 1;
        if read <= skip {
            continue;
        }
        let ts = event.ts();
        let target = routing.worker_of_event(&event)?;
        input.send(Routed {
            seq: read - 1,
            worker: target as u32,
            event,
        });
        let Some(wm) = watermarks.observe(ts) else {
            continue;
        };
        emitted += 1;
        if let Some((dir, grid)) = cuts.as_mut() {
            if let Some((checkpoint_id, _)) = grid.passed(wm) {
                // Every event read so far is before the cut; the ones after it will be
                // stamped with `wm` or later.
                dir.write_source(&SourcePart {
                    checkpoint_id,
                    offset: read,
                    watermarks: watermarks.clone(),
                    emitted,
                })?;
            }
        }
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
    Ok(emitted + 1)
}

/// The profile's watermark generator, as its operator builds it.
fn watermark_generator(profile: &Profile) -> Result<WatermarkGenerator> {
    let mut null = NullBackend::new(InstanceConfig::single(profile.max_parallelism)?);
    Ok(profile.operator(&mut null, false)?.watermarks().clone())
}

/// Worker 0's side of checkpoints: completes a checkpoint once every worker's part is in.
struct Completer {
    dir: CheckpointDir,
    workers: usize,
    /// Parts written per checkpoint not yet complete, with its cut.
    parts: BTreeMap<u64, (i64, usize)>,
    completed: u64,
    exit_after: Option<u64>,
}

impl Completer {
    fn part_written(&mut self, id: u64, cut: i64) {
        let entry = self.parts.entry(id).or_insert((cut, 0));
        entry.1 += 1;
        if entry.1 < self.workers {
            return;
        }
        self.parts.remove(&id);
        match self.dir.try_complete(id, cut, self.workers) {
            Ok(true) => {
                self.completed += 1;
                if self.exit_after.is_some_and(|n| self.completed >= n) {
                    eprintln!("statekit-timely: exiting after checkpoint {id}, as asked");
                    std::process::exit(EXIT_AFTER_CHECKPOINT);
                }
            }
            // A part the source never wrote (its grid started later): never complete.
            Ok(false) => {}
            Err(e) => eprintln!("statekit-timely: checkpoint {id} not completed: {e}"),
        }
    }
}

/// A worker's side of checkpoints.
struct WorkerCheckpoints {
    dir: CheckpointDir,
    /// Which cuts the frontier has passed.
    grid: CutGrid,
    /// Checkpoints taken and not yet seen complete.
    unconfirmed: Vec<u64>,
    /// On worker 0 of a restored job: the output before the restored cut.
    base: Option<Counters>,
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
    checkpoints: Option<WorkerCheckpoints>,
}

impl KeyedOperator {
    /// Runs `self` on `events`: buffers each epoch's events until the input frontier passes
    /// it, then advances the watermark to the epoch and handles them in input order; a
    /// frontier past every buffered epoch advances the watermark to it. A frontier that
    /// passes a checkpoint's cut takes the worker's part of it first. The output carries a
    /// note per checkpoint part and one [`WorkerReport`] when the input ends, at a
    /// capability that follows the input frontier (so a probe on it tracks the worker's
    /// progress).
    fn attach<'s>(
        mut self,
        events: timely::dataflow::Stream<'s, i64, Vec<Routed>>,
        source_watermarks: Rc<RefCell<Option<u64>>>,
    ) -> timely::dataflow::Stream<'s, i64, Vec<Note>> {
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
                    let next = frontier.frontier().first().copied();
                    self.confirm_checkpoints();
                    if let (Some(next), Some(cap)) = (next, capability.as_ref()) {
                        if let Some((id, cut)) = self.cut_passed(next) {
                            self.run_before(&mut pending, cut);
                            if let Some(note) = self.checkpoint(id, cut) {
                                output.session(cap).give(note);
                            }
                        }
                    }
                    self.run_before(&mut pending, next.unwrap_or(i64::MAX));
                    match next {
                        Some(next) => {
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
                                output.session(&cap).give(Note::Report(report));
                            }
                        }
                    }
                }
            },
        )
    }

    /// Handles the buffered epochs before `limit`, in order.
    fn run_before(&mut self, pending: &mut BTreeMap<i64, Vec<Routed>>, limit: i64) {
        while let Some(entry) = pending.first_entry() {
            if *entry.key() >= limit {
                break;
            }
            let epoch = *entry.key();
            let mut events = entry.remove();
            events.sort_unstable_by_key(|r| r.seq);
            self.run(epoch, events);
        }
    }

    /// The checkpoint whose cut the frontier `next` has passed, if any: the latest of them.
    fn cut_passed(&mut self, next: i64) -> Option<(u64, i64)> {
        self.checkpoints.as_mut()?.grid.passed(next)
    }

    /// Takes this worker's part of checkpoint `id`.
    fn checkpoint(&mut self, id: u64, cut: i64) -> Option<Note> {
        if self.error.is_some() {
            return None;
        }
        let result = (|| -> Result<()> {
            let c = self.checkpoints.as_mut().ok_or_else(|| {
                Error::invalid("a checkpoint without a checkpoint directory".to_string())
            })?;
            let handle = self.backend.checkpoint(id)?;
            let mine = self.operator.counters();
            let counters = match &c.base {
                Some(base) => merge_counter_sets(&[base, &mine]),
                None => mine,
            };
            c.dir.write_worker(&WorkerPart {
                checkpoint_id: id,
                worker: self.index,
                handle,
                counters,
            })?;
            c.unconfirmed.push(id);
            Ok(())
        })();
        match result {
            Ok(()) => Some(Note::Part { id, cut }),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    /// Confirms to the backend the checkpoints worker 0 has completed since the last look.
    fn confirm_checkpoints(&mut self) {
        let Some(c) = self.checkpoints.as_mut() else {
            return;
        };
        let Some(&done) = c
            .unconfirmed
            .iter()
            .rev()
            .find(|&&id| c.dir.is_complete(id))
        else {
            return;
        };
        c.unconfirmed.retain(|&id| id > done);
        if let Err(e) = self.backend.notify_checkpoint_complete(done) {
            self.error.get_or_insert(e);
        }
    }

    /// Handles one epoch's events, after advancing the watermark to the epoch.
    fn run(&mut self, epoch: i64, events: Vec<Routed>) {
        self.advance(epoch);
        for routed in events {
            if self.error.is_some() {
                return;
            }
            if let Err(e) = self.operator.handle(&mut *self.backend, routed.event) {
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
