//! An event-time interval join on the typed state API: the reference for engine authors.
//!
//! # Semantics
//! Two keyed streams, *left* and *right*, are joined per key: a left element `l` and a right
//! element `r` of the same key form a pair when
//!
//! ```text
//! l.ts + lower <= r.ts <= l.ts + upper
//! ```
//!
//! (Flink's `IntervalJoinOperator` with inclusive bounds). For ad displays (left) and clicks
//! (right) where a click joins every display of its user in the 20 minutes before it,
//! `lower = 0` and `upper = 20 min`. Elements may arrive out of order; an element whose
//! timestamp is below the current watermark is *late*: it is dropped and counted, exactly
//! like Flink, and every pair of non-late elements is emitted exactly once, whatever the
//! arrival order.
//!
//! # State layout
//! Each side is buffered in a [`MapState`] whose user key is `(ts, seq)`: the order-preserving
//! key codec makes entries of one key sorted by timestamp (`seq`, an arrival counter, only
//! keeps equal timestamps apart). That layout is what makes every access a *bounded range*:
//!
//! - a left element at `ts` reads the right entries with timestamps in
//!   `[ts + lower, ts + upper]`, a right element at `ts` reads the left entries in
//!   `[ts - upper, ts - lower]`, each with one [`MapState::for_each_in_range`] (a seek to the
//!   lower bound that stops at the upper bound);
//! - cleanup deletes the expired bucket of one side with one range delete
//!   ([`MapState::remove_range_in`]), without reading it; the deletes of a batch of fired
//!   timers go to the backend as one write.
//!
//! Flink's own implementation keeps a `MapState<Long, List<...>>` and iterates the *whole*
//! map of the key on every element and every cleanup timer: on a hot key holding thousands
//! of buffered elements, every event costs thousands of reads. Here an event costs reads in
//! proportion to the pairs it produces.
//!
//! # Cleanup
//! Once the watermark `W` has passed, no future (non-late) element has a timestamp below
//! `W`. So a left entry can never join again when `ts + upper < W`, and a right entry when
//! `ts - lower < W`. When an element is buffered, the operator registers an event-time timer
//! at the end of the cleanup *bucket* (1 s by default) in which its entry becomes
//! removable; timers are per key and idempotent, so a hot key registers at most one timer
//! per bucket rather than one per element. Each side has its own timer queue (as Flink's
//! operator keeps a cleanup namespace per side), so a timer only deletes where something was
//! buffered: with 3% of displays clicked, a shared queue would make every display's timer
//! delete an empty bucket of clicks too. When a left timer fires at `T` (so `T <= W`), the
//! operator deletes the left entries with `ts` in `[T - bucket - upper, T - upper)`; a right
//! timer the right entries with `ts` in `[T - bucket + lower, T + lower)`: the entries whose
//! cleanup bucket ends at `T`, none of which can join any more. Entries of earlier buckets went
//! with their own (earlier) timers, so the range needs no open lower end; a bounded one keeps
//! the delete from walking over the tombstones of earlier cleanups in an LSM engine without
//! range deletes (SlateDB), and keeps RocksDB's range tombstones narrow.
//!
//! # Example
//! ```
//! use statekit_backend::{memory::MemoryBackend, typed::KeyContext, InstanceConfig};
//! use statekit_bench::operators::interval_join::{IntervalJoin, JoinBounds};
//!
//! # fn main() -> statekit_backend::Result<()> {
//! let mut backend = MemoryBackend::open(InstanceConfig::single(128)?)?;
//! // Displays (left, carrying an ad id) join the clicks (right, a click id) of the same
//! // user that come at most 20 minutes after them.
//! let bounds = JoinBounds::new(0, 20 * 60_000)?;
//! let mut join: IntervalJoin<u64, u64> = IntervalJoin::register(&mut backend, "ads", bounds, 1_000)?;
//! let user = KeyContext::new(&backend, &42u64)?;
//! let mut pairs = Vec::new();
//! join.process_left(&mut backend, &user, 1_000, &7, |_, ad, _, click| pairs.push((*ad, *click)))?;
//! join.process_right(&mut backend, &user, 61_000, &900, |_, ad, _, click| pairs.push((*ad, *click)))?;
//! assert_eq!(pairs, vec![(7, 900)]);
//! // Past the window, the display is cleaned up and a new click does not join it.
//! join.advance_watermark(&mut backend, 30 * 60_000)?;
//! join.process_right(&mut backend, &user, 30 * 60_000, &901, |_, ad, _, click| pairs.push((*ad, *click)))?;
//! assert_eq!(pairs.len(), 1);
//! # Ok(()) }
//! ```

use std::ops::Bound;

use serde::de::DeserializeOwned;
use serde::Serialize;
use statekit_backend::typed::{KeyContext, MapState, TimerService};
use statekit_backend::{Direction, Error, Result, StateBackend, Visit, WriteBatch};

/// The join interval: a right element at `r.ts` joins a left element at `l.ts` when
/// `l.ts + lower <= r.ts <= l.ts + upper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinBounds {
    lower: i64,
    upper: i64,
}

impl JoinBounds {
    /// Bounds in milliseconds.
    ///
    /// # Errors
    /// `InvalidArgument` if `lower > upper`.
    pub fn new(lower_ms: i64, upper_ms: i64) -> Result<Self> {
        if lower_ms > upper_ms {
            return Err(Error::invalid(format!(
                "interval join bounds: lower ({lower_ms} ms) must not exceed upper ({upper_ms} ms)"
            )));
        }
        Ok(JoinBounds {
            lower: lower_ms,
            upper: upper_ms,
        })
    }

    /// The lower bound, ms.
    pub fn lower(&self) -> i64 {
        self.lower
    }

    /// The upper bound, ms.
    pub fn upper(&self) -> i64 {
        self.upper
    }
}

/// What the join has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Left elements buffered.
    pub left_elements: u64,
    /// Right elements buffered.
    pub right_elements: u64,
    /// Left elements dropped as late.
    pub late_left: u64,
    /// Right elements dropped as late.
    pub late_right: u64,
    /// Pairs emitted.
    pub joined_pairs: u64,
    /// Buffered entries visited by range reads (each one is a candidate pair).
    pub entries_read: u64,
    /// Cleanup timers fired.
    pub cleanup_timers: u64,
}

/// Timers popped per call while advancing the watermark.
const TIMER_BATCH: usize = 1024;

/// An event-time interval join of two keyed streams; see the [module docs](self).
///
/// `L` and `R` are the buffered payloads of the two sides. The caller supplies the key (as a
/// [`KeyContext`]) and the timestamp of every element, and a callback that receives each pair
/// as `(left_ts, left, right_ts, right)`.
pub struct IntervalJoin<L, R> {
    left: MapState<(i64, u64), L>,
    right: MapState<(i64, u64), R>,
    left_timers: TimerService,
    right_timers: TimerService,
    bounds: JoinBounds,
    bucket: i64,
    watermark: i64,
    seq: u64,
    stats: JoinStats,
}

impl<L, R> IntervalJoin<L, R>
where
    L: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// Registers the join's states (`{name}/left`, `{name}/right` and their cleanup timer
    /// queues `{name}/cleanup-left`, `{name}/cleanup-right`) in
    /// `backend`. `cleanup_bucket_ms` is the granularity of cleanup timers.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`]; `InvalidArgument` for a bucket below 1 ms.
    pub fn register<B: StateBackend + ?Sized>(
        backend: &mut B,
        name: &str,
        bounds: JoinBounds,
        cleanup_bucket_ms: i64,
    ) -> Result<Self> {
        if cleanup_bucket_ms < 1 {
            return Err(Error::invalid(format!(
                "interval join '{name}': cleanup bucket must be at least 1 ms, not {cleanup_bucket_ms}"
            )));
        }
        Ok(IntervalJoin {
            left: MapState::register(backend, &format!("{name}/left"))?,
            right: MapState::register(backend, &format!("{name}/right"))?,
            left_timers: TimerService::register(backend, &format!("{name}/cleanup-left"))?,
            right_timers: TimerService::register(backend, &format!("{name}/cleanup-right"))?,
            bounds,
            bucket: cleanup_bucket_ms,
            watermark: i64::MIN,
            seq: 0,
            stats: JoinStats::default(),
        })
    }

    /// The watermark last passed to [`IntervalJoin::advance_watermark`].
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// What the join has done so far.
    pub fn stats(&self) -> JoinStats {
        self.stats
    }

    /// The end of the cleanup bucket that contains `t`, so that a timer at the result fires
    /// no earlier than `t` (saturating at the ends of time).
    fn bucket_end(&self, t: i64) -> i64 {
        t.div_euclid(self.bucket)
            .saturating_add(1)
            .saturating_mul(self.bucket)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Processes a left element: buffers it, emits its pairs with the buffered right
    /// elements, and schedules its cleanup. A late element is dropped (see
    /// [`JoinStats::late_left`]).
    ///
    /// # Errors
    /// Backend and codec errors.
    pub fn process_left<B: StateBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        key: &KeyContext,
        ts: i64,
        value: &L,
        mut emit: impl FnMut(i64, &L, i64, &R),
    ) -> Result<()> {
        if ts < self.watermark {
            self.stats.late_left += 1;
            return Ok(());
        }
        let seq = self.next_seq();
        self.left.put(backend, key, &(ts, seq), value)?;
        self.stats.left_elements += 1;
        let from = ts.saturating_add(self.bounds.lower);
        let to = ts.saturating_add(self.bounds.upper);
        let mut pairs = 0u64;
        let mut read = 0u64;
        self.right.for_each_in_range(
            &*backend,
            key,
            (Bound::Included((from, 0)), Bound::Included((to, u64::MAX))),
            Direction::Forward,
            |(right_ts, _), right| {
                read += 1;
                pairs += 1;
                emit(ts, value, right_ts, &right);
                Ok(Visit::Continue)
            },
        )?;
        self.stats.entries_read += read;
        self.stats.joined_pairs += pairs;
        // Removable once `ts + upper < T`, i.e. at the end of the bucket holding ts+upper.
        let cleanup = self.bucket_end(ts.saturating_add(self.bounds.upper));
        self.left_timers.register_timer(backend, key, cleanup)
    }

    /// Processes a right element, symmetrically to [`IntervalJoin::process_left`].
    ///
    /// # Errors
    /// Backend and codec errors.
    pub fn process_right<B: StateBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        key: &KeyContext,
        ts: i64,
        value: &R,
        mut emit: impl FnMut(i64, &L, i64, &R),
    ) -> Result<()> {
        if ts < self.watermark {
            self.stats.late_right += 1;
            return Ok(());
        }
        let seq = self.next_seq();
        self.right.put(backend, key, &(ts, seq), value)?;
        self.stats.right_elements += 1;
        let from = ts.saturating_sub(self.bounds.upper);
        let to = ts.saturating_sub(self.bounds.lower);
        let mut pairs = 0u64;
        self.left.for_each_in_range(
            &*backend,
            key,
            (Bound::Included((from, 0)), Bound::Included((to, u64::MAX))),
            Direction::Forward,
            |(left_ts, _), left| {
                pairs += 1;
                emit(left_ts, &left, ts, value);
                Ok(Visit::Continue)
            },
        )?;
        self.stats.entries_read += pairs;
        self.stats.joined_pairs += pairs;
        // Removable once `ts - lower < T`.
        let cleanup = self.bucket_end(ts.saturating_sub(self.bounds.lower));
        self.right_timers.register_timer(backend, key, cleanup)
    }

    /// Advances the watermark to `watermark` and runs the cleanup timers it makes due: per
    /// fired timer, one range delete on its side, written per batch of popped timers.
    /// Elements below the new watermark that arrive later are late.
    ///
    /// # Errors
    /// Backend errors.
    pub fn advance_watermark<B: StateBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        watermark: i64,
    ) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        let (upper, lower, bucket) = (self.bounds.upper, self.bounds.lower, self.bucket);
        let (left, right) = (&self.left, &self.right);
        // A left entry at `ts` is removable at `T` once `ts + upper < T`, a right one once
        // `ts - lower < T`: the fired bucket is the `bucket` ms below `T - upper` (`T + lower`).
        let fired_left = drain_due(backend, &self.left_timers, watermark, |batch, at, key| {
            let end = at.saturating_sub(upper);
            left.remove_range_in(batch, key, (end.saturating_sub(bucket), 0)..(end, 0));
        })?;
        let fired_right = drain_due(backend, &self.right_timers, watermark, |batch, at, key| {
            let end = at.saturating_add(lower);
            right.remove_range_in(batch, key, (end.saturating_sub(bucket), 0)..(end, 0));
        })?;
        self.stats.cleanup_timers += fired_left + fired_right;
        Ok(())
    }

    /// The time of the earliest pending cleanup timer of either side.
    ///
    /// # Errors
    /// Backend errors.
    pub fn next_cleanup<B: StateBackend + ?Sized>(&self, backend: &B) -> Result<Option<i64>> {
        let left = backend.next_timer(self.left_timers.id())?;
        let right = backend.next_timer(self.right_timers.id())?;
        Ok(left.into_iter().chain(right).min())
    }
}

/// Pops every timer of `timers` due at `watermark`, in batches, lets `fire` add each one's
/// cleanup to a write batch and writes the batch: one write per popped batch, which a backend
/// without native range deletes (remote) applies with one iterator. Returns how many fired.
fn drain_due<B: StateBackend + ?Sized>(
    backend: &mut B,
    timers: &TimerService,
    watermark: i64,
    mut fire: impl FnMut(&mut WriteBatch, i64, &KeyContext),
) -> Result<u64> {
    let mut fired = 0;
    loop {
        let due = timers.pop_due(backend, watermark, TIMER_BATCH)?;
        let mut batch = WriteBatch::new();
        for (at, key) in &due {
            fire(&mut batch, *at, key);
            fired += 1;
        }
        if !batch.is_empty() {
            backend.write(batch)?;
        }
        if due.len() < TIMER_BATCH {
            return Ok(fired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::{InstanceConfig, TimerStore};

    const MIN: i64 = 60_000;

    type Pairs = Vec<(u32, u32)>;

    fn setup() -> (MemoryBackend, IntervalJoin<u32, u32>, KeyContext) {
        let mut b = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
        let j = IntervalJoin::register(&mut b, "j", JoinBounds::new(0, 20 * MIN).unwrap(), 1000)
            .unwrap();
        let k = KeyContext::new(&b, &1u64).unwrap();
        (b, j, k)
    }

    #[test]
    fn bounds_are_inclusive_on_both_ends() {
        let (mut b, mut j, k) = setup();
        let mut out: Pairs = Vec::new();
        let mut emit = |_: i64, l: &u32, _: i64, r: &u32| out.push((*l, *r));
        j.process_left(&mut b, &k, 0, &1, &mut emit).unwrap();
        j.process_left(&mut b, &k, 1, &2, &mut emit).unwrap();
        j.process_right(&mut b, &k, 20 * MIN, &10, &mut emit)
            .unwrap(); // joins 1 (edge) and 2
        j.process_right(&mut b, &k, 20 * MIN + 1, &11, &mut emit)
            .unwrap(); // joins 2 only
        j.process_right(&mut b, &k, -1, &12, &mut emit).unwrap(); // before every display
        j.process_left(&mut b, &k, -1, &3, &mut emit).unwrap(); // joins 12 (same ts)
        out.sort_unstable();
        assert_eq!(out, vec![(1, 10), (2, 10), (2, 11), (3, 12)]);
    }

    #[test]
    fn cleanup_removes_exactly_what_cannot_join_and_late_is_dropped() {
        let (mut b, mut j, k) = setup();
        let mut out: Pairs = Vec::new();
        let mut emit = |_: i64, l: &u32, _: i64, r: &u32| out.push((*l, *r));
        j.process_left(&mut b, &k, 0, &1, &mut emit).unwrap();
        j.process_right(&mut b, &k, 500, &10, &mut emit).unwrap();
        // The display can still join a click at 20 min: it must survive a watermark at 20 min.
        j.advance_watermark(&mut b, 20 * MIN).unwrap();
        j.process_right(&mut b, &k, 20 * MIN, &11, &mut emit)
            .unwrap();
        assert_eq!(j.left.entries(&b, &k).unwrap().len(), 1);
        // The click at 500 can join no future display (they are all >= the watermark): gone.
        assert_eq!(j.right.range(&b, &k, ..(20 * MIN, 0)).unwrap().len(), 0);
        j.advance_watermark(&mut b, 21 * MIN + 1).unwrap();
        assert!(j.left.is_empty(&b, &k).unwrap());
        j.process_left(&mut b, &k, 21 * MIN, &2, &mut emit).unwrap(); // late
        assert_eq!(j.stats().late_left, 1);
        out.sort_unstable();
        assert_eq!(out, vec![(1, 10), (1, 11)]);
        j.advance_watermark(&mut b, i64::MAX).unwrap();
        assert!(j.right.is_empty(&b, &k).unwrap() && j.left.is_empty(&b, &k).unwrap());
        assert_eq!(j.next_cleanup(&b).unwrap(), None);
    }

    #[test]
    fn bucketed_cleanup_leaves_nothing_behind() {
        // Elements over many buckets (negative times too), watermarks interleaved: each timer
        // removes only its own bucket, and together they remove everything.
        let (mut b, mut j, k) = setup();
        let mut ts = -5 * MIN;
        for i in 0..400u32 {
            ts += i64::from(i % 7) * 997;
            j.process_left(&mut b, &k, ts, &i, |_, _, _, _| {}).unwrap();
            j.process_right(&mut b, &k, ts + 1, &i, |_, _, _, _| {})
                .unwrap();
            if i % 50 == 0 {
                j.advance_watermark(&mut b, ts - 21 * MIN).unwrap();
            }
        }
        // Whatever is older than the join window at the last element is gone already.
        j.advance_watermark(&mut b, ts).unwrap();
        let stale = j.left.range(&b, &k, ..(ts - 21 * MIN, 0)).unwrap();
        assert!(stale.is_empty(), "{} stale left entries", stale.len());
        j.advance_watermark(&mut b, ts + 30 * MIN).unwrap();
        assert!(j.left.is_empty(&b, &k).unwrap() && j.right.is_empty(&b, &k).unwrap());
        assert_eq!(j.next_cleanup(&b).unwrap(), None);
    }

    #[test]
    fn hot_key_registers_one_timer_per_bucket() {
        let (mut b, mut j, k) = setup();
        for i in 0..1000i64 {
            j.process_left(&mut b, &k, i, &0, |_, _, _, _| {}).unwrap();
        }
        let mut timers = 0;
        b.scan_timers(
            j.left_timers.id(),
            statekit_backend::KeyGroupRange::all(16).unwrap(),
            &mut |_| {
                timers += 1;
                Ok(Visit::Continue)
            },
        )
        .unwrap();
        assert_eq!(
            timers, 1,
            "1000 elements within one second share one cleanup timer"
        );
    }

    #[test]
    fn cleanup_timers_go_only_to_the_side_with_entries() {
        let (mut b, mut j, k) = setup();
        j.process_left(&mut b, &k, 0, &1, |_, _, _, _| {}).unwrap();
        assert_eq!(b.next_timer(j.right_timers.id()).unwrap(), None);
        assert_eq!(
            b.next_timer(j.left_timers.id()).unwrap(),
            Some(20 * MIN + 1000)
        );
        j.process_right(&mut b, &k, 5 * MIN, &7, |_, _, _, _| {})
            .unwrap();
        assert_eq!(j.next_cleanup(&b).unwrap(), Some(5 * MIN + 1000));
        j.advance_watermark(&mut b, 5 * MIN + 1000).unwrap();
        assert!(j.right.is_empty(&b, &k).unwrap());
        assert_eq!(j.left.entries(&b, &k).unwrap().len(), 1);
        assert_eq!(j.stats().cleanup_timers, 1);
    }

    #[test]
    fn reversed_bounds_are_rejected() {
        assert!(JoinBounds::new(10, 0).is_err());
    }
}
