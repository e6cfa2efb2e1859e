//! The primitives every metric of iris is made of: a [`Counter`] and a fixed-bucket
//! [`Histogram`], both lock-free (relaxed atomics: recording costs a few nanoseconds and never
//! blocks an actor or the store's writer). The store and the runtime declare their metrics with
//! them; the node renders them (Prometheus text) from their snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises the value to `n` if it is lower (for a maximum seen so far).
    pub fn raise_to(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram over fixed buckets: one per upper bound, plus one for everything above the last.
/// The unit is the caller's (microseconds, mutations): the bounds and the observations share it.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One more than `bounds`: the last is the overflow bucket.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one observation: in the first bucket whose bound is at least `value`.
    pub fn observe(&self, value: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Records a duration, in microseconds.
    pub fn observe_micros(&self, value: std::time::Duration) {
        self.observe(u64::try_from(value.as_micros()).unwrap_or(u64::MAX));
    }

    /// The upper bounds of the buckets.
    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// The observations per bucket (not cumulative; one more than the bounds).
    pub fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }

    /// The sum of every observation.
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [u64; 3] = [1, 10, 100];

    #[test]
    fn observations_land_in_the_bucket_of_their_bound() {
        let h = Histogram::new(&BOUNDS);
        for value in [0, 1, 2, 10, 100, 101, u64::MAX / 2] {
            h.observe(value);
        }
        assert_eq!(h.counts(), [2, 2, 1, 2]);
        assert_eq!(h.sum(), 1 + 2 + 10 + 100 + 101 + u64::MAX / 2);
        assert_eq!(h.bounds(), BOUNDS);
    }

    #[test]
    fn a_counter_adds_and_keeps_a_maximum() {
        let c = Counter::default();
        c.inc();
        c.add(4);
        assert_eq!(c.get(), 5);
        let max = Counter::default();
        max.raise_to(7);
        max.raise_to(3);
        assert_eq!(max.get(), 7);
    }
}
