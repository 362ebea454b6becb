//! A job's checkpoints: consistent cuts of every worker's state and the source's offset.
//!
//! Checkpoint `k` is the cut at event time `k * interval`: every worker's state after all
//! events of the epochs (watermarks) before it, and the source's position after those
//! events. The source and every worker see the same watermarks, so they agree on the cut
//! without talking: a worker takes its part when its input frontier passes the cut time,
//! the source when its watermark does. Each writes its part under `job-<k>/`; worker 0
//! writes `job-<k>/COMPLETE` once every part is there, and only then does the checkpoint
//! count: each worker confirms it to its backend
//! ([`Checkpointing::notify_checkpoint_complete`](statekit_backend::Checkpointing)) when it
//! sees that file. A frontier that jumps over several cut times takes one checkpoint, the
//! latest; a checkpoint some part of which never comes is never complete, and a restore
//! uses the latest complete one. The directory is the backends' checkpoint storage too, so
//! workers on several machines need it on a shared file system.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use statekit_backend::{CheckpointHandle, Error, ErrorKind, Result};
use statekit_bench::util::{write_json_durably, Counters};
use statekit_bench::watermark::WatermarkGenerator;

const COMPLETE: &str = "COMPLETE";

/// One worker's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPart {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// The worker's index.
    pub worker: usize,
    /// Its backend's snapshot.
    pub handle: CheckpointHandle,
    /// Its operator's counters at the cut: the output before the checkpoint.
    pub counters: Counters,
}

/// The source's part: where to resume reading.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourcePart {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// Events read before the cut.
    pub offset: u64,
    /// The watermark generator after them.
    pub watermarks: WatermarkGenerator,
    /// Watermarks emitted before the cut.
    pub emitted: u64,
}

/// A complete checkpoint: what a restore reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completed {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// The event time of the cut.
    pub cut: i64,
    /// Every worker's part, by worker.
    pub workers: Vec<WorkerPart>,
    /// The source's part.
    pub source: SourcePart,
}

impl Completed {
    /// Every worker's backend snapshot.
    pub fn handles(&self) -> Vec<CheckpointHandle> {
        self.workers.iter().map(|w| w.handle.clone()).collect()
    }

    /// The job's counters at the cut.
    pub fn counters(&self) -> Counters {
        let parts: Vec<&Counters> = self.workers.iter().map(|w| &w.counters).collect();
        crate::report::merge_counter_sets(&parts)
    }
}

/// Which cuts a sequence of watermarks passes: cut `k` is event time `k * interval`. The
/// source and every worker run one over the same watermarks (the source's as it emits them,
/// a worker's as its frontier shows them), so they agree on which checkpoints are taken.
#[derive(Debug, Clone)]
pub struct CutGrid {
    interval: i64,
    /// The index of the last cut passed; `None` until the first watermark, which only starts
    /// the grid (the ones before it were never a job's state).
    last: Option<i64>,
}

impl CutGrid {
    /// Cuts every `interval` ms of event time (positive).
    pub fn new(interval: i64) -> Self {
        CutGrid {
            interval: interval.max(1),
            last: None,
        }
    }

    /// Continues after the restored checkpoint `checkpoint_id`.
    pub fn resume(&mut self, checkpoint_id: u64) {
        self.last = Some(checkpoint_id as i64);
    }

    /// The checkpoint (its id and cut time) that watermark `watermark` passes, if any: the
    /// latest when it passes several.
    pub fn passed(&mut self, watermark: i64) -> Option<(u64, i64)> {
        if watermark == i64::MIN {
            return None;
        }
        let index = watermark.div_euclid(self.interval);
        match self.last {
            None => {
                self.last = Some(index);
                None
            }
            Some(last) if index > last && index > 0 => {
                self.last = Some(index);
                Some((index as u64, index.saturating_mul(self.interval)))
            }
            Some(_) => None,
        }
    }
}

/// The checkpoint directory of a job.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
}

impl CheckpointDir {
    /// The checkpoints under `root`, which must exist.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CheckpointDir { root: root.into() }
    }

    /// The directory root (also the backends' checkpoint storage).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn job(&self, checkpoint_id: u64) -> PathBuf {
        self.root.join(format!("job-{checkpoint_id}"))
    }

    /// Writes a worker's part.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn write_worker(&self, part: &WorkerPart) -> Result<()> {
        let path = self
            .job(part.checkpoint_id)
            .join(format!("worker-{}.json", part.worker));
        write_json(&path, part)
    }

    /// Writes the source's part.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn write_source(&self, part: &SourcePart) -> Result<()> {
        write_json(&self.job(part.checkpoint_id).join("source.json"), part)
    }

    /// Completes checkpoint `checkpoint_id` of a job of `workers` workers if every part is
    /// there: writes its `COMPLETE` file (atomically, with every part in it). Returns
    /// whether it is complete.
    ///
    /// # Errors
    /// I/O errors and damaged parts, naming the file.
    pub fn try_complete(&self, checkpoint_id: u64, cut: i64, workers: usize) -> Result<bool> {
        let dir = self.job(checkpoint_id);
        let source = dir.join("source.json");
        if !source.exists() {
            return Ok(false);
        }
        let mut parts = Vec::with_capacity(workers);
        for worker in 0..workers {
            let path = dir.join(format!("worker-{worker}.json"));
            if !path.exists() {
                return Ok(false);
            }
            parts.push(read_json::<WorkerPart>(&path)?);
        }
        let completed = Completed {
            checkpoint_id,
            cut,
            workers: parts,
            source: read_json(&source)?,
        };
        write_json(&dir.join(COMPLETE), &completed)?;
        Ok(true)
    }

    /// Whether checkpoint `checkpoint_id` is complete.
    pub fn is_complete(&self, checkpoint_id: u64) -> bool {
        self.job(checkpoint_id).join(COMPLETE).exists()
    }

    /// Reads a complete checkpoint: `path` is a checkpoint directory (`job-<k>`) or a job's
    /// checkpoint root, meaning its latest complete checkpoint.
    ///
    /// # Errors
    /// `NotFound` if there is no complete checkpoint there; damaged files, naming them.
    pub fn load(path: &Path) -> Result<Completed> {
        let direct = path.join(COMPLETE);
        if direct.exists() {
            return read_json(&direct);
        }
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path.display(), e))?;
        let latest = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id: u64 = name.strip_prefix("job-")?.parse().ok()?;
                e.path().join(COMPLETE).exists().then_some(id)
            })
            .max()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no complete checkpoint in {} (a job-<k> directory with a {COMPLETE} \
                         file)",
                        path.display()
                    ),
                )
            })?;
        read_json(&path.join(format!("job-{latest}")).join(COMPLETE))
    }
}

/// Writes `value` as JSON to `path`, durably and atomically (a crash leaves all of it or
/// none), creating the checkpoint's directory first.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    }
    write_json_durably(path, value)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::corruption(format!("checkpoint file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::KeyGroupRange;

    fn part(worker: usize, pairs: u64) -> WorkerPart {
        WorkerPart {
            checkpoint_id: 4,
            worker,
            handle: CheckpointHandle {
                checkpoint_id: 4,
                backend: "memory".into(),
                format: "full".into(),
                location: format!("w{worker}"),
                key_groups: KeyGroupRange::new(worker as u16, worker as u16).unwrap(),
            },
            counters: Counters::from([("pairs".to_string(), pairs)]),
        }
    }

    #[test]
    fn complete_only_with_every_part_and_the_latest_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = CheckpointDir::new(dir.path());
        assert!(CheckpointDir::load(dir.path()).is_err());
        ckpt.write_worker(&part(0, 2)).unwrap();
        ckpt.write_source(&SourcePart {
            checkpoint_id: 4,
            offset: 10,
            watermarks: WatermarkGenerator::new(0, 1),
            emitted: 3,
        })
        .unwrap();
        assert!(!ckpt.try_complete(4, 400, 2).unwrap());
        assert!(!ckpt.is_complete(4));
        ckpt.write_worker(&part(1, 5)).unwrap();
        assert!(ckpt.try_complete(4, 400, 2).unwrap());
        assert!(ckpt.is_complete(4));
        let loaded = CheckpointDir::load(dir.path()).unwrap();
        assert_eq!(loaded.checkpoint_id, 4);
        assert_eq!(loaded.counters()["pairs"], 7);
        assert_eq!(loaded.handles().len(), 2);
        assert_eq!(loaded.source.offset, 10);
    }

    #[test]
    fn the_grid_starts_at_the_first_watermark_and_takes_the_latest_cut_passed() {
        let mut grid = CutGrid::new(100);
        assert_eq!(grid.passed(i64::MIN), None);
        assert_eq!(
            grid.passed(250),
            None,
            "the first watermark starts the grid"
        );
        assert_eq!(grid.passed(299), None);
        assert_eq!(grid.passed(300), Some((3, 300)));
        assert_eq!(
            grid.passed(720),
            Some((7, 700)),
            "one checkpoint for several cuts"
        );
        let mut resumed = CutGrid::new(100);
        resumed.resume(7);
        assert_eq!(resumed.passed(750), None);
        assert_eq!(resumed.passed(800), Some((8, 800)));
    }

    #[test]
    fn a_damaged_checkpoint_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job-2");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(job.join(COMPLETE), b"{ not json").unwrap();
        let e = CheckpointDir::load(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corruption);
        assert!(e.to_string().contains("COMPLETE"), "{e}");
    }
}
