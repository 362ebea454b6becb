//! Which worker owns a record: key groups in contiguous ranges, as Flink assigns them.

use statekit_backend::codec::encode_key;
use statekit_backend::{key_group_of, Error, KeyGroup, KeyGroupRange, Result};
use statekit_bench::event::Event;

/// How a job's key groups are spread over its workers: worker `i` of `n` owns the `i`-th of
/// `n` contiguous ranges of the `max_parallelism` key groups (Flink's
/// `KeyGroupRangeAssignment`), so each worker opens one backend instance for one range, and
/// a restore on another number of workers hands each the checkpoint parts overlapping its new
/// range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    max_parallelism: u16,
    workers: usize,
}

impl Routing {
    /// `workers` workers over `max_parallelism` key groups.
    ///
    /// # Errors
    /// `InvalidArgument` if there are no workers or more workers than key groups.
    pub fn new(max_parallelism: u16, workers: usize) -> Result<Self> {
        if workers == 0 || workers > usize::from(max_parallelism) {
            return Err(Error::invalid(format!(
                "{workers} workers cannot share {max_parallelism} key groups: each worker \
                 needs at least one (raise the profile's max_parallelism)"
            )));
        }
        Ok(Routing {
            max_parallelism,
            workers,
        })
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The key groups worker `index` owns.
    ///
    /// # Errors
    /// `InvalidArgument` for an index beyond the workers.
    pub fn key_groups(&self, index: usize) -> Result<KeyGroupRange> {
        KeyGroupRange::for_operator(
            u32::from(self.max_parallelism),
            self.workers as u32,
            index as u32,
        )
    }

    /// The worker that owns `key_group`: `key_group * workers / max_parallelism`.
    pub fn worker_of(&self, key_group: KeyGroup) -> usize {
        (usize::from(key_group) * self.workers) / usize::from(self.max_parallelism)
    }

    /// The worker that owns `event`'s key.
    ///
    /// # Errors
    /// As [`event_key`].
    pub fn worker_of_event(&self, event: &Event) -> Result<usize> {
        let key = event_key(event)?;
        Ok(self.worker_of(key_group_of(&key, self.max_parallelism)))
    }
}

/// The encoded key an event is processed under, as the reference operators encode it: the
/// user of an ad display or click, the request of an exposure, click or feature snapshot,
/// the hexagon of a ride demand.
///
/// # Errors
/// `InvalidArgument` for a visit: daily-uv keys its two stages differently (by device, then
/// by dimension), which one exchange cannot express.
pub fn event_key(event: &Event) -> Result<Vec<u8>> {
    Ok(match event {
        Event::Display(d) => encode_key(&d.user),
        Event::Click(c) => encode_key(&c.user),
        Event::Exposure { request, .. }
        | Event::ExposureClick { request, .. }
        | Event::Feature { request, .. } => encode_key(request),
        Event::Demand { hexagon, .. } => encode_key(hexagon),
        Event::Visit { .. } => {
            return Err(Error::invalid(
                "daily-uv's visits are keyed twice (device, then dimension): not supported on \
                 timely yet; use ad-click-interval-join, feature-concat or sliding-window",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_group_goes_to_the_worker_whose_range_holds_it() {
        for max in [1u16, 7, 128, 4096] {
            for workers in 1..=usize::from(max).min(9) {
                let routing = Routing::new(max, workers).unwrap();
                for kg in 0..max {
                    let w = routing.worker_of(kg);
                    assert!(
                        routing.key_groups(w).unwrap().contains(kg),
                        "max {max}, {workers} workers: key group {kg} sent to {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn too_many_workers_is_an_error_naming_both_figures() {
        let e = Routing::new(4, 5).unwrap_err().to_string();
        assert!(e.contains("5 workers") && e.contains("4 key groups"), "{e}");
        assert!(Routing::new(4, 0).is_err());
    }
}
