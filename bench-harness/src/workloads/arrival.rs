//! Arrival order of generated events: a reorder buffer that gives events generated in
//! event-time order a bounded disorder ([`ArrivalQueue`]), and a staging area for events
//! generated ahead of their time ([`Staging`]).

use crate::event::Event;

/// How generated events arrive: within `out_of_orderness` of their event time, except a
/// fraction that is held back longer and so arrives late.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Disorder {
    /// The most an on-time event arrives after its event time, ms.
    pub out_of_orderness_ms: i64,
    /// Fraction of events held back longer, behind the watermark.
    pub late_fraction: f64,
}

/// Something with an event time: what the reorder buffers below order.
pub(crate) trait Timestamped {
    /// Event time, ms.
    fn ts(&self) -> i64;
}

impl Timestamped for Event {
    fn ts(&self) -> i64 {
        Event::ts(self)
    }
}

/// An event in a heap ordered by a time (its arrival, or its event time while staged), ties
/// broken by the order it was pushed in.
struct Pending<T> {
    at: i64,
    seq: u64,
    event: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A reorder buffer that turns events generated in event-time order into an arrival order
/// with bounded disorder: each event gets an arrival time `ts + delay`, and events leave in
/// arrival order once no event generated later can arrive before them.
pub(crate) struct ArrivalQueue<T = Event> {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Pending<T>>>,
    seq: u64,
}

impl<T> Default for ArrivalQueue<T> {
    fn default() -> Self {
        ArrivalQueue {
            heap: std::collections::BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T: Timestamped> ArrivalQueue<T> {
    /// Queues `event` with an arrival time of its event time plus a delay drawn from `rng`.
    pub fn push<R: rand::Rng + ?Sized>(&mut self, rng: &mut R, disorder: Disorder, event: T) {
        let ooo = disorder.out_of_orderness_ms.max(0);
        let delay =
            if disorder.late_fraction > 0.0 && rng.random_bool(disorder.late_fraction.min(1.0)) {
                // Held back past the allowed disorder: arrives behind the watermark.
                ooo + rng.random_range(1_000..30_000)
            } else {
                rng.random_range(0..=ooo)
            };
        self.seq += 1;
        self.heap.push(std::cmp::Reverse(Pending {
            at: event.ts().saturating_add(delay),
            seq: self.seq,
            event,
        }));
    }

    /// The next event whose arrival is at or before `horizon` (the event time of the next
    /// event still to be generated: nothing generated later arrives earlier).
    pub fn pop_ready(&mut self, horizon: i64) -> Option<T> {
        if self.heap.peek().is_some_and(|p| p.0.at <= horizon) {
            self.heap.pop().map(|p| p.0.event)
        } else {
            None
        }
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest arrival time queued.
    fn head_arrival(&self) -> Option<i64> {
        self.heap.peek().map(|p| p.0.at)
    }
}

/// Events generated ahead of time (a request's feature 30 s before its exposure, a click a
/// minute after its display), released in event-time order into an [`ArrivalQueue`]. It
/// holds the whole look-ahead: at 20,000 requests/s, 30 s of exposures and the features
/// spread over 30 s either side of them are ~1.2 million items.
pub(crate) struct Staging<T = Event> {
    scheduled: std::collections::BinaryHeap<std::cmp::Reverse<Pending<T>>>,
    arrivals: ArrivalQueue<T>,
    seq: u64,
    /// The last horizon passed to `next_ready`: horizons never go back.
    horizon: i64,
}

impl<T> Default for Staging<T> {
    fn default() -> Self {
        Staging {
            scheduled: std::collections::BinaryHeap::new(),
            arrivals: ArrivalQueue::default(),
            seq: 0,
            horizon: i64::MIN,
        }
    }
}

impl<T: Timestamped> Staging<T> {
    /// A staging area with room for `events` scheduled events at once. Sized to what it will
    /// hold, its heap of scheduled events never grows by copying: growing a heap of a million
    /// events held the old and the new copy at the same time, a spike on the harness's own
    /// footprint. (The arrival queue behind it holds the disorder's span only.)
    pub fn with_capacity(events: usize) -> Self {
        Staging {
            scheduled: std::collections::BinaryHeap::with_capacity(events),
            ..Staging::default()
        }
    }

    /// Room reserved for staged events: it only changes when the staging area outgrew it.
    #[cfg(test)]
    pub fn reserved(&self) -> usize {
        self.scheduled.capacity()
    }

    /// Adds an event; its time must not be below any horizon already passed to `next_ready`.
    pub fn schedule(&mut self, event: T) {
        self.seq += 1;
        self.scheduled.push(std::cmp::Reverse(Pending {
            at: event.ts(),
            seq: self.seq,
            event,
        }));
    }

    /// The next event to arrive, if it arrives by `horizon`: every event scheduled later has
    /// a timestamp of at least `horizon`.
    ///
    /// An event's random arrival delay is drawn from `rng` when it moves to the arrival
    /// queue, which may be on a later call than the one that could first have moved it. The
    /// stream a seed names stays the same as long as horizons never go back and the caller
    /// draws nothing else from `rng` between calls that return an event.
    pub fn next_ready<R: rand::Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        disorder: Disorder,
        horizon: i64,
    ) -> Option<T> {
        debug_assert!(horizon >= self.horizon, "horizons never go back");
        self.horizon = horizon;
        // An event arrives no earlier than its event time, so the arrival queue's head may
        // leave once every staged event up to its arrival has moved over. Moving no further
        // keeps the queue to the disorder's span; at the end of the input (an infinite
        // horizon) moving everything at once held the whole look-ahead twice over. Under the
        // contract above the events move in the same order either way and draw the same
        // random delays, so the stream is unchanged.
        while let Some(next) = self.scheduled.peek() {
            let ts = next.0.at;
            if ts > horizon || self.arrivals.head_arrival().is_some_and(|a| a < ts) {
                break;
            }
            if let Some(s) = self.scheduled.pop() {
                self.arrivals.push(rng, disorder, s.0.event);
            }
        }
        self.arrivals.pop_ready(horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Item {
        id: u64,
        ts: i64,
    }

    impl Timestamped for Item {
        fn ts(&self) -> i64 {
            self.ts
        }
    }

    /// The staging area as it was before it moved events lazily: everything up to the
    /// horizon at once. The reference the lazy one must match event for event.
    fn next_ready_eager<R: rand::Rng + ?Sized>(
        staging: &mut Staging<Item>,
        rng: &mut R,
        disorder: Disorder,
        horizon: i64,
    ) -> Option<Item> {
        while staging.scheduled.peek().is_some_and(|s| s.0.at <= horizon) {
            if let Some(s) = staging.scheduled.pop() {
                staging.arrivals.push(rng, disorder, s.0.event);
            }
        }
        staging.arrivals.pop_ready(horizon)
    }

    /// Drives a staging area the way feature-concat's generator does (an item every 10 ms
    /// and a second one up to `skew` before or after it, generated `skew` ahead), drawing
    /// generation and arrival delays from one random source. Returns the arrival order and
    /// the most events the arrival queue held once the input had ended.
    fn drive(lazy: bool, late_fraction: f64) -> (Vec<Item>, usize) {
        let (count, skew) = (20_000_u64, 30_000_i64);
        let disorder = Disorder {
            out_of_orderness_ms: 500,
            late_fraction,
        };
        let mut rng = crate::workloads::rng(7, 1);
        let mut staging = Staging::with_capacity(8);
        let (mut out, mut next, mut most_queued_at_end) = (Vec::new(), 0_u64, 0);
        loop {
            let horizon = if next < count {
                next as i64 * 10 - skew
            } else {
                i64::MAX
            };
            let ready = if lazy {
                staging.next_ready(&mut rng, disorder, horizon)
            } else {
                next_ready_eager(&mut staging, &mut rng, disorder, horizon)
            };
            if next >= count {
                most_queued_at_end = most_queued_at_end.max(staging.arrivals.heap.len());
            }
            if let Some(item) = ready {
                out.push(item);
                continue;
            }
            if next >= count {
                return (out, most_queued_at_end);
            }
            let ts = next as i64 * 10;
            staging.schedule(Item { id: 2 * next, ts });
            let other = ts + rng.random_range(-skew..=skew);
            staging.schedule(Item {
                id: 2 * next + 1,
                ts: other,
            });
            next += 1;
        }
    }

    #[test]
    fn lazy_staging_releases_the_same_stream_as_moving_everything_at_once() {
        let (eager, _) = drive(false, 0.01);
        let (lazy, _) = drive(true, 0.01);
        assert_eq!(eager.len(), 40_000);
        assert_eq!(lazy, eager);
    }

    #[test]
    fn at_the_end_of_the_input_the_arrival_queue_holds_the_disorder_span_only() {
        // 30 s of look-ahead hold ~6,000 items; 500 ms of disorder about 100.
        let (_, eager) = drive(false, 0.0);
        let (_, lazy) = drive(true, 0.0);
        assert!(eager > 4_000, "eager {eager}");
        assert!(lazy < 200, "lazy {lazy}");
    }
}
