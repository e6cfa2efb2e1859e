//! Counters and histograms of the runtime, for the node's metrics endpoint.
//!
//! Made of iris-core's [`metrics`](iris_core::metrics) primitives (relaxed atomics: recording
//! costs a few nanoseconds and never blocks an actor).
//! [`Metrics::snapshot`] copies the values into plain serializable data.

use std::time::Duration;

pub use iris_core::metrics::Counter;
use iris_core::metrics::Histogram;
use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in microseconds: 100 µs to ~30 min, ×4 per bucket.
const BOUNDS_US: [u64; 12] = [
    100,
    400,
    1_600,
    6_400,
    25_600,
    102_400,
    409_600,
    1_638_400,
    6_553_600,
    26_214_400,
    104_857_600,
    1_800_000_000,
];

/// A latency histogram over the runtime's buckets (`BOUNDS_US`: 100 µs to 30 min).
#[derive(Debug)]
pub struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Latency {
        Latency(Histogram::new(&BOUNDS_US))
    }
}

impl Latency {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        self.0.observe_micros(value);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_us: self.0.bounds().to_vec(),
            counts: self.0.counts(),
            sum_us: self.0.sum(),
        }
    }
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// The buckets' upper bounds in microseconds (the last count is everything above).
    pub bounds_us: Vec<u64>,
    /// Observations per bucket (not cumulative); one more entry than `bounds_us`.
    pub counts: Vec<u64>,
    /// The sum of all observations, in microseconds.
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The runtime's counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Tells accepted into a queue.
    pub tells: Counter,
    /// Tells refused because the queue was full.
    pub queue_full: Counter,
    /// Turns that completed.
    pub turns_completed: Counter,
    /// Turns that failed (any reason but cancellation).
    pub turns_failed: Counter,
    /// Turns cancelled.
    pub turns_cancelled: Counter,
    /// Turns killed by the response (stall) timeout.
    pub stalls: Counter,
    /// Agents that exited during a turn.
    pub crashes: Counter,
    /// Agent processes spawned (attempts, counted before the spawn).
    pub spawns: Counter,
    /// Spawn attempts that failed: the process could not start, or did not complete its
    /// handshake (an exit, a refusal, a timeout).
    pub spawn_failures: Counter,
    /// Idle agents stopped by their idle timeout.
    pub idle_stops: Counter,
    /// Idle agents stopped to free a slot for another session.
    pub evictions: Counter,
    /// Spawns that had to wait for a slot.
    pub pool_waits: Counter,
    /// Spawns that gave up waiting for a slot.
    pub pool_exhausted: Counter,
    /// Problems the health check found (stuck handshakes, vanished processes).
    pub health_failures: Counter,
    /// From the tell until the turn started running.
    pub queue_wait: Latency,
    /// Spawn plus handshake.
    pub spawn_time: Latency,
    /// From the turn's start until its result.
    pub turn_time: Latency,
}

/// The metrics at one moment, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Counter name → value.
    pub counters: Vec<(String, u64)>,
    /// Histogram name → values.
    pub histograms: Vec<(String, HistogramSnapshot)>,
}

impl MetricsSnapshot {
    /// A counter's value by name.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

impl Metrics {
    /// Copies every value.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let counters = [
            ("tells", &self.tells),
            ("queue_full", &self.queue_full),
            ("turns_completed", &self.turns_completed),
            ("turns_failed", &self.turns_failed),
            ("turns_cancelled", &self.turns_cancelled),
            ("stalls", &self.stalls),
            ("crashes", &self.crashes),
            ("spawns", &self.spawns),
            ("spawn_failures", &self.spawn_failures),
            ("idle_stops", &self.idle_stops),
            ("evictions", &self.evictions),
            ("pool_waits", &self.pool_waits),
            ("pool_exhausted", &self.pool_exhausted),
            ("health_failures", &self.health_failures),
        ];
        let histograms = [
            ("queue_wait", &self.queue_wait),
            ("spawn_time", &self.spawn_time),
            ("turn_time", &self.turn_time),
        ];
        MetricsSnapshot {
            counters: counters
                .iter()
                .map(|(name, c)| ((*name).to_owned(), c.get()))
                .collect(),
            histograms: histograms
                .iter()
                .map(|(name, h)| ((*name).to_owned(), h.snapshot()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_of_their_bound() {
        let h = Latency::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[BOUNDS_US.len()], 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_us, 100 + 101 + 3_600_000_000);
    }

    #[test]
    fn snapshot_names_every_counter() {
        let m = Metrics::default();
        m.tells.inc();
        m.tells.inc();
        m.evictions.inc();
        let s = m.snapshot();
        assert_eq!(s.counter("tells"), Some(2));
        assert_eq!(s.counter("evictions"), Some(1));
        assert_eq!(s.counter("crashes"), Some(0));
        assert_eq!(s.counter("nope"), None);
    }
}
