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

/// What a metric is, as the runtime declares it: its name (the `stats` key, and the base of the
/// node's Prometheus family) and what it counts (the family's help text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// The metric's name.
    pub name: &'static str,
    /// The Prometheus family it is exported as, without the `iris_` prefix.
    pub family: &'static str,
    /// What it counts, one sentence.
    pub help: &'static str,
}

/// Declares every metric of the runtime once: the field of [`Metrics`], its name, its
/// Prometheus family and its help text, so the struct, its snapshot and the node's rendering
/// cannot drift apart.
macro_rules! declare_metrics {
    (
        counters { $($counter:ident => $cfamily:literal: $chelp:literal,)+ }
        latencies { $($latency:ident => $lfamily:literal: $lhelp:literal,)+ }
    ) => {
        /// The runtime's counters and histograms.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $chelp] pub $counter: Counter,)+
            $(#[doc = $lhelp] pub $latency: Latency,)+
        }

        /// Every counter of [`Metrics`], in declaration order.
        pub const COUNTERS: &[Declared] = &[
            $(Declared { name: stringify!($counter), family: $cfamily, help: $chelp },)+
        ];

        /// Every latency histogram of [`Metrics`], in declaration order.
        pub const LATENCIES: &[Declared] = &[
            $(Declared { name: stringify!($latency), family: $lfamily, help: $lhelp },)+
        ];

        impl Metrics {
            /// Copies every value.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot {
                    counters: vec![$((stringify!($counter).to_owned(), self.$counter.get()),)+],
                    histograms: vec![$((stringify!($latency).to_owned(), self.$latency.snapshot()),)+],
                }
            }
        }
    };
}

declare_metrics! {
    counters {
        tells => "tells_total": "Tells accepted into a session's queue.",
        queue_full => "queue_full_total": "Tells refused because the session's queue was full.",
        turns_completed => "turns_total": "Turns that completed.",
        turns_failed => "turns_total": "Turns that failed, for any reason but a cancellation.",
        turns_cancelled => "turns_total": "Turns cancelled.",
        stalls => "stalls_total": "Turns killed because the agent was silent past the response timeout.",
        crashes => "crashes_total": "Agents that exited during a turn.",
        spawns => "spawns_total": "Agent process starts attempted (counted before the spawn).",
        spawn_failures => "spawn_failures_total": "Agent process starts that failed: no process, or no handshake (an exit, a refusal, a timeout).",
        idle_stops => "idle_stops_total": "Idle agents stopped by their idle timeout.",
        evictions => "evictions_total": "Idle agents stopped to free a process slot for another session.",
        pool_waits => "pool_waits_total": "Agent starts that had to wait for a process slot.",
        pool_exhausted => "pool_exhausted_total": "Agent starts that gave up waiting for a process slot.",
        health_failures => "health_failures_total": "Problems found by the health check (stuck handshakes, vanished processes).",
        budget_warnings => "budget_warnings_total": "Budget caps that reached 80 % (once per scope and budget day).",
        budget_exceeded => "budget_exceeded_total": "Budget caps that were reached (once per scope and budget day).",
        budget_refusals => "budget_refusals_total": "Tells refused, or queued turns failed, because a budget cap was reached.",
    }
    latencies {
        queue_wait => "queue_wait_seconds": "Time a tell waited before its turn started.",
        spawn_time => "spawn_duration_seconds": "Agent start time: spawn plus handshake.",
        turn_time => "turn_duration_seconds": "Turn duration, from the turn's start until its result.",
    }
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
        // Every declared counter is in the snapshot, in order.
        let names: Vec<&str> = s.counters.iter().map(|(n, _)| n.as_str()).collect();
        let declared: Vec<&str> = COUNTERS.iter().map(|d| d.name).collect();
        assert_eq!(names, declared);
    }
}
