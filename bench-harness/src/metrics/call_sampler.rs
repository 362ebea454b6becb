//! Which calls [`super::Metered`] times: a random sample of the frequent ones.

use std::cell::Cell;

/// Of the frequent operation kinds (a call or more per event), one call in this many is
/// timed, on average; the first call of each state and kind always is. Two clock reads and a
/// histogram update per call cost ~35 ns, as much as an in-memory get: timing every call,
/// the `metered` bench's put and get took 304 ns against 233-243 ns unwrapped, and 263-267 ns
/// timing one in eight. A random eighth of 3.6M merges still gives percentiles to three
/// digits; counts stay exact.
pub const TIME_ONE_IN: u32 = 8;

/// Picks the calls to time: gaps between timed calls drawn uniformly from 1 to
/// `2 * TIME_ONE_IN - 1` (mean [`TIME_ONE_IN`]), so that calls which come in a fixed
/// pattern (a merge and a timer per event, say) cannot all fall between the samples.
pub(super) struct CallSampler {
    countdown: Cell<u32>,
    rng: Cell<u64>,
}

impl CallSampler {
    pub(super) fn new() -> Self {
        CallSampler {
            countdown: Cell::new(1),
            // Any odd seed: the same calls are timed in every run of the same input.
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Whether the next call is timed.
    pub(super) fn next(&self) -> bool {
        let left = self.countdown.get();
        if left > 1 {
            self.countdown.set(left - 1);
            return false;
        }
        // xorshift64: a few instructions, and uniform enough to space samples.
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        let gap = 1 + x % u64::from(2 * TIME_ONE_IN - 1);
        self.countdown.set(gap as u32);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_calls_are_spaced_by_gaps_of_one_to_twice_the_mean() {
        let sampler = CallSampler::new();
        let mut gaps = Vec::new();
        let mut since = 0u32;
        for _ in 0..100_000 {
            since += 1;
            if sampler.next() {
                gaps.push(since);
                since = 0;
            }
        }
        let max = 2 * TIME_ONE_IN - 1;
        assert!(gaps.iter().all(|&g| (1..=max).contains(&g)));
        // Every gap length occurs, so no fixed pattern of calls always falls between.
        for g in 1..=max {
            assert!(gaps.contains(&g), "no gap of {g}");
        }
        let mean = gaps.iter().map(|&g| f64::from(g)).sum::<f64>() / gaps.len() as f64;
        assert!(
            (mean - f64::from(TIME_ONE_IN)).abs() < 0.2,
            "mean gap {mean}"
        );
    }
}
