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
//! Each side is buffered in a [`ListMapState`] that groups elements by their *cleanup time*:
//! the end of the cleanup bucket (1 s by default) in which an element stops being able to
//! join (see below). The map key is that time, and the value a list of `(ts, element)`
//! appended with a merge, so buffering an element never reads state. The order-preserving
//! key codec keeps one key's lists sorted by cleanup time, and cleanup time grows with the
//! timestamp, which is what makes every access a *bounded range*:
//!
//! - a left element at `ts` reads the right lists whose cleanup times cover timestamps in
//!   `[ts + lower, ts + upper]`, a right element at `ts` the left lists covering
//!   `[ts - upper, ts - lower]`, each with one [`ListMapState::for_each_in_range`] (a seek to
//!   the lower bound that stops at the upper bound); elements of the two edge lists outside
//!   the interval are skipped;
//! - cleanup drops one list with one point delete ([`ListMapState::remove_in`]), without
//!   reading it; the deletes of a batch of fired timers go to the backend as one write. The
//!   final watermark of a bounded input, which makes every timer due, clears each side's
//!   state and timers with one call each
//!   ([`StateBackend::clear_state`]).
//!
//! An earlier layout kept one map entry per element and removed a bucket with a range
//! delete. On RocksDB, millions of range tombstones (the end of input fires a cleanup for
//! every key) are fragmented and cached outside the block cache and the memory budget, and
//! a memory backend paid a map node per element; one entry per bucket avoids both.
//!
//! Flink's own implementation keeps a `MapState<Long, List<...>>` and iterates the *whole*
//! map of the key on every element and every cleanup timer: on a hot key holding thousands
//! of buffered elements, every event costs thousands of reads. Here an event costs reads in
//! proportion to the lists of its interval.
//!
//! # Cleanup
//! Once the watermark `W` has passed, no future (non-late) element has a timestamp below
//! `W`. So a left entry can never join again when `ts + upper < W`, and a right entry when
//! `ts - lower < W`. An element's cleanup time is the end of the bucket holding `ts + upper`
//! (left) or `ts - lower` (right); when it is buffered, the operator registers an event-time
//! timer at that time; timers are per key and idempotent, so a hot key registers at most one
//! timer per bucket rather than one per element. Each side has its own timer queue (as
//! Flink's operator keeps a cleanup namespace per side), so a timer only deletes where
//! something was buffered: with 3% of displays clicked, a shared queue would make every
//! display's timer delete an empty bucket of clicks too. A timer that fires at `T` (so
//! `T <= W`) deletes its side's list under key `T`: exactly the elements that can no longer
//! join.
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
//! join.process_left(&mut backend, &user, 1_000, 7, |_, ad, _, click| pairs.push((*ad, *click)))?;
//! join.process_right(&mut backend, &user, 61_000, 900, |_, ad, _, click| pairs.push((*ad, *click)))?;
//! assert_eq!(pairs, vec![(7, 900)]);
//! // Past the window, the display is cleaned up and a new click does not join it.
//! join.advance_watermark(&mut backend, 30 * 60_000)?;
//! join.process_right(&mut backend, &user, 30 * 60_000, 901, |_, ad, _, click| pairs.push((*ad, *click)))?;
//! assert_eq!(pairs.len(), 1);
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use statekit_backend::typed::{KeyContext, ListMapState, TimerService};
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Buffered elements decoded by range reads: the pairs plus the elements of the edge
    /// lists that lie outside the interval.
    pub entries_read: u64,
    /// Cleanup timers fired.
    pub cleanup_timers: u64,
}

/// An interval join's state outside the backend: see [`IntervalJoin::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinProgress {
    /// The last watermark.
    pub watermark: i64,
    /// The statistics.
    pub stats: JoinStats,
}

/// Timers popped per call while advancing the watermark: a watermark that makes millions of
/// timers due (the end of input) is drained in writes of this many deletes.
const TIMER_BATCH: usize = 1024;

/// An event-time interval join of two keyed streams; see the [module docs](self).
///
/// `L` and `R` are the buffered payloads of the two sides. The caller supplies the key (as a
/// [`KeyContext`]) and the timestamp of every element, and a callback that receives each pair
/// as `(left_ts, left, right_ts, right)`.
pub struct IntervalJoin<L, R> {
    left: ListMapState<i64, (i64, L)>,
    right: ListMapState<i64, (i64, R)>,
    left_timers: TimerService,
    right_timers: TimerService,
    bounds: JoinBounds,
    bucket: i64,
    watermark: i64,
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
            left: ListMapState::register(backend, &format!("{name}/left"))?,
            right: ListMapState::register(backend, &format!("{name}/right"))?,
            left_timers: TimerService::register(backend, &format!("{name}/cleanup-left"))?,
            right_timers: TimerService::register(backend, &format!("{name}/cleanup-right"))?,
            bounds,
            bucket: cleanup_bucket_ms,
            watermark: i64::MIN,
            stats: JoinStats::default(),
        })
    }

    /// The watermark last passed to [`IntervalJoin::advance_watermark`].
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// What the join keeps outside its state (its watermark and statistics), for an
    /// operator's checkpoint.
    pub fn progress(&self) -> JoinProgress {
        JoinProgress {
            watermark: self.watermark,
            stats: self.stats,
        }
    }

    /// Resumes from the progress of a checkpoint whose state was restored.
    pub fn resume(&mut self, progress: JoinProgress) {
        self.watermark = progress.watermark;
        self.stats = progress.stats;
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

    /// When a left element at `ts` can no longer join: its timer and its list's key.
    fn left_cleanup(&self, ts: i64) -> i64 {
        self.bucket_end(ts.saturating_add(self.bounds.upper))
    }

    /// When a right element at `ts` can no longer join.
    fn right_cleanup(&self, ts: i64) -> i64 {
        self.bucket_end(ts.saturating_sub(self.bounds.lower))
    }

    /// Processes a left element: emits its pairs with the buffered right elements, buffers
    /// it, and schedules its cleanup. A late element is dropped (see [`JoinStats::late_left`]).
    ///
    /// # Errors
    /// Backend and codec errors.
    pub fn process_left<B: StateBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        key: &KeyContext,
        ts: i64,
        value: L,
        mut emit: impl FnMut(i64, &L, i64, &R),
    ) -> Result<()> {
        if ts < self.watermark {
            self.stats.late_left += 1;
            return Ok(());
        }
        let from = ts.saturating_add(self.bounds.lower);
        let to = ts.saturating_add(self.bounds.upper);
        // Cleanup times grow with the timestamp, so the lists that can hold right elements in
        // [from, to] are those keyed from `right_cleanup(from)` to `right_cleanup(to)`.
        let keys = self.right_cleanup(from)..=self.right_cleanup(to);
        let (mut pairs, mut read) = (0u64, 0u64);
        self.right.for_each_in_range(
            &*backend,
            key,
            keys,
            Direction::Forward,
            |_, (right_ts, right)| {
                read += 1;
                if (from..=to).contains(&right_ts) {
                    pairs += 1;
                    emit(ts, &value, right_ts, &right);
                }
                Ok(Visit::Continue)
            },
        )?;
        self.stats.entries_read += read;
        self.stats.joined_pairs += pairs;
        let cleanup = self.left_cleanup(ts);
        self.left.add(backend, key, &cleanup, &(ts, value))?;
        self.stats.left_elements += 1;
        self.left_timers.register_timer(backend, key, cleanup)
    }

    /// Names to the backend the state a right element of `key` will read (the key's left
    /// elements), ahead of [`IntervalJoin::process_right`]: see
    /// [`StateRead::prefetch`](statekit_backend::StateRead::prefetch).
    ///
    /// # Errors
    /// `InvalidArgument` from the backend for a key group it does not own.
    pub fn prefetch_right<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        key: &KeyContext,
    ) -> Result<()> {
        backend.prefetch(&[key.scope(self.left.id())])
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
        value: R,
        mut emit: impl FnMut(i64, &L, i64, &R),
    ) -> Result<()> {
        if ts < self.watermark {
            self.stats.late_right += 1;
            return Ok(());
        }
        let from = ts.saturating_sub(self.bounds.upper);
        let to = ts.saturating_sub(self.bounds.lower);
        let keys = self.left_cleanup(from)..=self.left_cleanup(to);
        let (mut pairs, mut read) = (0u64, 0u64);
        self.left.for_each_in_range(
            &*backend,
            key,
            keys,
            Direction::Forward,
            |_, (left_ts, left)| {
                read += 1;
                if (from..=to).contains(&left_ts) {
                    pairs += 1;
                    emit(left_ts, &left, ts, &value);
                }
                Ok(Visit::Continue)
            },
        )?;
        self.stats.entries_read += read;
        self.stats.joined_pairs += pairs;
        let cleanup = self.right_cleanup(ts);
        self.right.add(backend, key, &cleanup, &(ts, value))?;
        self.stats.right_elements += 1;
        self.right_timers.register_timer(backend, key, cleanup)
    }

    /// Advances the watermark to `watermark` and runs the cleanup timers it makes due: per
    /// fired timer, one point delete of its side's list, written per batch of popped timers.
    /// The final watermark (`i64::MAX`, the end of a bounded input) clears both sides'
    /// states and timer queues whole instead, which is the same. Elements below the new
    /// watermark that arrive later are late. The join owns its two states and two queues:
    /// nothing else may write them.
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
        if watermark == i64::MAX {
            // The final watermark makes every cleanup timer due, and together they delete
            // exactly what is buffered (every buffered list registered one): drop both
            // sides' lists and timers whole, as one call each, instead of a delete per
            // timer (a seventh of an ad-click run on the memory backend).
            for timers in [&self.left_timers, &self.right_timers] {
                self.stats.cleanup_timers += backend.clear_timers(timers.id())?;
            }
            backend.clear_state(self.left.id())?;
            return backend.clear_state(self.right.id());
        }
        let (left, right) = (&self.left, &self.right);
        // A timer's time is the key of the list it cleans up.
        let fired_left = drain_due(backend, &self.left_timers, watermark, |batch, at, key| {
            left.remove_in(batch, key, &at);
        })?;
        let fired_right = drain_due(backend, &self.right_timers, watermark, |batch, at, key| {
            right.remove_in(batch, key, &at);
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
/// cleanup to a write batch and writes the batch: one write per popped batch. Returns how
/// many fired.
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
    use statekit_backend::{InstanceConfig, StateRead, TimerStore};

    const MIN: i64 = 60_000;

    type Pairs = Vec<(u32, u32)>;

    /// The timestamps buffered on one side for `k`, ascending.
    fn buffered<V: Serialize + DeserializeOwned>(
        side: &ListMapState<i64, (i64, V)>,
        b: &MemoryBackend,
        k: &KeyContext,
    ) -> Vec<i64> {
        let mut out = Vec::new();
        side.for_each_in_range(b, k, .., Direction::Forward, |_, (ts, _)| {
            out.push(ts);
            Ok(Visit::Continue)
        })
        .unwrap();
        out.sort_unstable();
        out
    }

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
        j.process_left(&mut b, &k, 0, 1, &mut emit).unwrap();
        j.process_left(&mut b, &k, 1, 2, &mut emit).unwrap();
        j.process_right(&mut b, &k, 20 * MIN, 10, &mut emit)
            .unwrap(); // joins 1 (edge) and 2
        j.process_right(&mut b, &k, 20 * MIN + 1, 11, &mut emit)
            .unwrap(); // joins 2 only
        j.process_right(&mut b, &k, -1, 12, &mut emit).unwrap(); // before every display
        j.process_left(&mut b, &k, -1, 3, &mut emit).unwrap(); // joins 12 (same ts)
        out.sort_unstable();
        assert_eq!(out, vec![(1, 10), (2, 10), (2, 11), (3, 12)]);
    }

    #[test]
    fn cleanup_removes_exactly_what_cannot_join_and_late_is_dropped() {
        let (mut b, mut j, k) = setup();
        let mut out: Pairs = Vec::new();
        let mut emit = |_: i64, l: &u32, _: i64, r: &u32| out.push((*l, *r));
        j.process_left(&mut b, &k, 0, 1, &mut emit).unwrap();
        j.process_right(&mut b, &k, 500, 10, &mut emit).unwrap();
        // The display can still join a click at 20 min: it must survive a watermark at 20 min.
        j.advance_watermark(&mut b, 20 * MIN).unwrap();
        j.process_right(&mut b, &k, 20 * MIN, 11, &mut emit)
            .unwrap();
        assert_eq!(buffered(&j.left, &b, &k).len(), 1);
        // The click at 500 can join no future display (they are all >= the watermark): gone.
        assert!(buffered(&j.right, &b, &k).iter().all(|ts| *ts >= 20 * MIN));
        j.advance_watermark(&mut b, 21 * MIN + 1).unwrap();
        assert!(j.left.is_empty(&b, &k).unwrap());
        j.process_left(&mut b, &k, 21 * MIN, 2, &mut emit).unwrap(); // late
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
            j.process_left(&mut b, &k, ts, i, |_, _, _, _| {}).unwrap();
            j.process_right(&mut b, &k, ts + 1, i, |_, _, _, _| {})
                .unwrap();
            if i % 50 == 0 {
                j.advance_watermark(&mut b, ts - 21 * MIN).unwrap();
            }
        }
        // Whatever is older than the join window at the last element is gone already.
        j.advance_watermark(&mut b, ts).unwrap();
        let stale = buffered(&j.left, &b, &k)
            .into_iter()
            .filter(|t| *t < ts - 21 * MIN)
            .count();
        assert_eq!(stale, 0, "stale left entries");
        j.advance_watermark(&mut b, ts + 30 * MIN).unwrap();
        assert!(j.left.is_empty(&b, &k).unwrap() && j.right.is_empty(&b, &k).unwrap());
        assert_eq!(j.next_cleanup(&b).unwrap(), None);
    }

    #[test]
    fn hot_key_registers_one_timer_per_bucket() {
        let (mut b, mut j, k) = setup();
        for i in 0..1000i64 {
            j.process_left(&mut b, &k, i, 0, |_, _, _, _| {}).unwrap();
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
        j.process_left(&mut b, &k, 0, 1, |_, _, _, _| {}).unwrap();
        assert_eq!(b.next_timer(j.right_timers.id()).unwrap(), None);
        assert_eq!(
            b.next_timer(j.left_timers.id()).unwrap(),
            Some(20 * MIN + 1000)
        );
        j.process_right(&mut b, &k, 5 * MIN, 7, |_, _, _, _| {})
            .unwrap();
        assert_eq!(j.next_cleanup(&b).unwrap(), Some(5 * MIN + 1000));
        j.advance_watermark(&mut b, 5 * MIN + 1000).unwrap();
        assert!(j.right.is_empty(&b, &k).unwrap());
        assert_eq!(buffered(&j.left, &b, &k).len(), 1);
        assert_eq!(j.stats().cleanup_timers, 1);
    }

    #[test]
    fn any_bounds_and_arrival_order_match_a_nested_loop() {
        use rand::{Rng, SeedableRng};
        // Bounds of both signs, buckets that do not divide them, several keys, elements out
        // of order within the watermark's lag: the pairs equal a nested loop over the
        // non-late elements, and the final watermark leaves nothing buffered.
        for (lower, upper, bucket) in [
            (0, 20_000, 1000),
            (-7_000, -1_500, 700),
            (-3_000, 4_100, 999),
        ] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(upper as u64);
            let mut b = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
            let bounds = JoinBounds::new(lower, upper).unwrap();
            let mut j: IntervalJoin<u32, u32> =
                IntervalJoin::register(&mut b, "j", bounds, bucket).unwrap();
            let keys: Vec<KeyContext> = (0..3u64)
                .map(|k| KeyContext::new(&b, &k).unwrap())
                .collect();
            let (mut lefts, mut rights, mut got) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..3000u32 {
                let ts = i64::from(i) * 37 - rng.random_range(0..5_000);
                let k = rng.random_range(0..3usize);
                if ts >= j.watermark() {
                    if rng.random_bool(0.5) {
                        lefts.push((k, ts, i));
                    } else {
                        rights.push((k, ts, i));
                    }
                }
                let mut emit = |_: i64, l: &u32, _: i64, r: &u32| got.push((*l, *r));
                if lefts.last().is_some_and(|e| e.2 == i) {
                    j.process_left(&mut b, &keys[k], ts, i, &mut emit).unwrap();
                } else if rights.last().is_some_and(|e| e.2 == i) {
                    j.process_right(&mut b, &keys[k], ts, i, &mut emit).unwrap();
                }
                if i % 100 == 99 {
                    j.advance_watermark(&mut b, i64::from(i) * 37 - 5_000)
                        .unwrap();
                }
            }
            let mut expected = Vec::new();
            for (lk, lts, l) in &lefts {
                for (rk, rts, r) in &rights {
                    if lk == rk && lts + lower <= *rts && *rts <= lts + upper {
                        expected.push((*l, *r));
                    }
                }
            }
            expected.sort_unstable();
            got.sort_unstable();
            assert!(!expected.is_empty());
            assert_eq!(got, expected, "bounds [{lower}, {upper}], bucket {bucket}");
            j.advance_watermark(&mut b, i64::MAX).unwrap();
            for k in &keys {
                assert!(j.left.is_empty(&b, k).unwrap() && j.right.is_empty(&b, k).unwrap());
            }
        }
    }

    /// Entries and timers left in `b` (every state, every key group).
    fn held(b: &MemoryBackend) -> (usize, usize) {
        let (mut entries, mut timers) = (0, 0);
        for (i, d) in b.states().iter().enumerate() {
            let id = statekit_backend::StateId::from_index(i as u32);
            if d.kind == statekit_backend::StateKind::Timers {
                b.scan_timers(id, b.key_group_range(), &mut |_| {
                    timers += 1;
                    Ok(Visit::Continue)
                })
                .unwrap();
            } else {
                b.scan_state(id, b.key_group_range(), &mut |_| {
                    entries += 1;
                    Ok(Visit::Continue)
                })
                .unwrap();
            }
        }
        (entries, timers)
    }

    #[test]
    fn final_watermark_clears_what_firing_every_timer_would() {
        // The same elements into two backends; one is ended by a watermark that fires
        // every timer one by one, the other by the final watermark, which clears.
        let run = |end: i64| {
            let mut b = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
            let bounds = JoinBounds::new(0, 20 * MIN).unwrap();
            let mut j: IntervalJoin<u32, u32> =
                IntervalJoin::register(&mut b, "j", bounds, 1000).unwrap();
            // A second join on the same backend, never advanced: the clear must not touch it.
            let mut other: IntervalJoin<u32, u32> =
                IntervalJoin::register(&mut b, "other", bounds, 1000).unwrap();
            let mut emit = |_: i64, _: &u32, _: i64, _: &u32| {};
            for i in 0..500u32 {
                let k = KeyContext::new(&b, &u64::from(i % 37)).unwrap();
                let ts = i64::from(i) * 7_000;
                if i % 3 == 0 {
                    j.process_right(&mut b, &k, ts, i, &mut emit).unwrap();
                } else {
                    j.process_left(&mut b, &k, ts, i, &mut emit).unwrap();
                }
                other.process_left(&mut b, &k, ts, i, &mut emit).unwrap();
                if i % 50 == 49 {
                    j.advance_watermark(&mut b, ts - 25 * MIN).unwrap();
                }
            }
            let before = held(&b);
            j.advance_watermark(&mut b, end).unwrap();
            assert_eq!(j.next_cleanup(&b).unwrap(), None);
            (j.stats(), before, held(&b), other.stats())
        };
        let (fired, before, after_firing, other) = run(i64::MAX - 1);
        let (cleared, _, after_clearing, _) = run(i64::MAX);
        assert!(fired.cleanup_timers > 100, "timers fired before the end");
        assert_eq!(
            cleared, fired,
            "the same statistics, cleanup timers included"
        );
        // What is left is the other join's: its 500 displays and their timers.
        assert_eq!(after_clearing, after_firing);
        assert!(before.0 > after_firing.0 && before.1 > after_firing.1);
        assert_eq!(other.left_elements, 500);
        assert!(after_firing.0 > 0 && after_firing.1 > 0);
    }

    #[test]
    fn reversed_bounds_are_rejected() {
        assert!(JoinBounds::new(10, 0).is_err());
    }
}
