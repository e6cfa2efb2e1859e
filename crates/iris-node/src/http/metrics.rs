//! `/metrics`: the runtime's and the store's figures in the Prometheus text exposition format
//! (version 0.0.4), rendered by hand: a few dozen lines of plain text need no metrics registry.
//!
//! [`gather`] takes one [`Sample`] of a running node; [`render`] turns it into text. Every
//! family is written even when it is zero, so dashboards and alerts see a series from the
//! node's first scrape.
//!
//! | family | type | from |
//! |---|---|---|
//! | `iris_live_sessions` | gauge | session actors live in the runtime |
//! | `iris_live_processes`, `iris_busy_processes`, `iris_max_processes` | gauge | the process pool |
//! | `iris_pool_waiting` | gauge | agent starts waiting for a process slot |
//! | `iris_open_turns` | gauge | turns queued or running (the turn ledger's open index) |
//! | `iris_queued_turns` | gauge | turns waiting behind a turn in flight: open turns less the sessions processing one |
//! | `iris_sessions{status}`, `iris_session_processes{state}` | gauge | the store's counters |
//! | `iris_messages` | gauge | messages over every stored session |
//! | `iris_cost_usd`, `iris_tokens{kind}` | gauge | usage summed over every stored session (deleting a session lowers them) |
//! | `iris_turns_total{outcome}` | counter | turns completed, failed, cancelled since the node started |
//! | `iris_<counter>_total` | counter | the runtime's other counters (tells, stalls, crashes, spawns, …) |
//! | `iris_turn_duration_seconds`, `iris_queue_wait_seconds`, `iris_spawn_duration_seconds` | histogram | the runtime's histograms |
//! | `iris_store_commits_total`, `iris_store_mutations_total` | counter | the store's writer |
//! | `iris_store_commit_duration_seconds` | histogram | one write transaction, open to durable commit |
//! | `iris_store_batch_size` | histogram | mutations per commit |
//! | `iris_store_healthy` | gauge | 1 while the store can commit, 0 during a storage fault (a full disk, an I/O error) |
//! | `iris_store_failed_commits_total`, `iris_store_failed_mutations_total`, `iris_store_recoveries_total` | counter | commits (and mutations) failed for a storage fault; recoveries from one |
//! | `iris_containment_mode{mode}` | gauge | 1 for the mode agents are contained in (`cgroup`, `subreaper`, `process-group`), 0 for the others |
//! | `iris_agent_cpu_seconds{from,to}` | gauge | CPU time used by each live agent and everything it started (its cgroup, or its process tree) |
//! | `iris_cluster_peer_state{peer,state}` | gauge | in a cluster: 1 for each peer's state (`up`, `suspected`, `down`, `config_mismatch`), 0 for the others |
//! | `iris_cluster_peer_rtt_seconds{peer}` | gauge | in a cluster: each peer's last heartbeat round trip |
//! | `iris_cluster_forwards_total{outcome}` | counter | in a cluster: requests forwarded to their owner, by outcome (`answered`, `failed`, `unavailable`, `unknown`) |

use std::fmt::Write as _;
use std::time::Duration;

use iris_agent::containment::ContainmentMode;
use iris_core::{ProcessState, SessionFilter, SessionStats, SessionStatus, UsageTotals};
use iris_runtime::metrics::{COUNTERS, Declared, LATENCIES, MetricsSnapshot};
use iris_runtime::{PoolView, Runtime};
use iris_store::{Store, WriterStats};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape waits for the process pool's answer before leaving its figures out.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// The runtime's counters that are turn outcomes, rendered as `iris_turns_total{outcome}`.
const TURN_OUTCOMES: [(&str, &str); 3] = [
    ("turns_completed", "completed"),
    ("turns_failed", "failed"),
    ("turns_cancelled", "cancelled"),
];

/// The runtime's declaration of the metric `name`.
fn declared(all: &'static [Declared], name: &str) -> Option<&'static Declared> {
    all.iter().find(|d| d.name == name)
}

/// A node's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The store's session totals.
    pub sessions: SessionStats,
    /// Session actors live in the runtime.
    pub live_sessions: u64,
    /// The process pool, if it answered in time.
    pub pool: Option<PoolView>,
    /// Turns queued or running, if the ledger could be read.
    pub open_turns: Option<u64>,
    /// Usage summed over every stored session, if the store could be read.
    pub usage: Option<UsageTotals>,
    /// The runtime's counters and histograms.
    pub runtime: MetricsSnapshot,
    /// The store writer's work.
    pub writer: WriterStats,
    /// How agents are contained.
    pub containment: ContainmentMode,
    /// CPU time of each live agent, by pair.
    pub agent_cpu: Vec<(iris_core::Pair, Duration)>,
    /// The cluster's peers and forwards, when the node is part of one.
    pub cluster: Option<crate::cluster::ClusterSample>,
}

/// Takes a sample of `runtime` and its `store`.
///
/// The usage totals are summed over every stored record: a scan, O(sessions), done on a
/// blocking thread. (The store maintains counters by status and a message total, but no cost
/// total; if scrapes of very large stores get slow, that is the counter to add.)
pub async fn gather(
    runtime: &Runtime,
    store: &Store,
    cluster: Option<&crate::cluster::StatusSource>,
) -> Sample {
    let pool = match tokio::time::timeout(POOL_TIMEOUT, runtime.pool()).await {
        Ok(Ok(view)) => Some(view),
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: the process pool did not answer");
            None
        }
        Err(_) => {
            tracing::warn!(timeout = ?POOL_TIMEOUT, "metrics: the process pool did not answer in time");
            None
        }
    };
    let reader = store.clone();
    let read = tokio::task::spawn_blocking(move || {
        let open = reader.open_turn_count();
        let usage = reader.list(&SessionFilter::all()).map(|records| {
            records.iter().fold(UsageTotals::default(), |mut sum, r| {
                sum.accumulate(&r.usage);
                sum
            })
        });
        (open, usage)
    })
    .await;
    let (open_turns, usage) = match read {
        Ok((open, usage)) => (
            open.inspect_err(|error| tracing::warn!(%error, "metrics: could not count open turns"))
                .ok(),
            usage
                .inspect_err(|error| tracing::warn!(%error, "metrics: could not sum usage"))
                .ok(),
        ),
        Err(error) => {
            tracing::warn!(%error, "metrics: the store read failed");
            (None, None)
        }
    };
    Sample {
        sessions: store.stats(),
        live_sessions: runtime.live_sessions() as u64,
        pool,
        open_turns,
        usage,
        runtime: runtime.metrics(),
        writer: store.writer_stats(),
        containment: runtime.containment(),
        agent_cpu: runtime.agent_cpu(),
        cluster: cluster.map(crate::cluster::StatusSource::sample),
    }
}

/// The cluster's families: each peer's state and round trip, forwards by outcome.
fn render_cluster(out: &mut Text, cluster: &crate::cluster::ClusterSample) {
    use crate::cluster::PeerState;
    out.header(
        "iris_cluster_peer_state",
        "gauge",
        "Each peer's state as this node sees it: 1 for the state it is in.",
    );
    for peer in &cluster.peers {
        for (state, name) in [
            (PeerState::Up, "up"),
            (PeerState::Suspected, "suspected"),
            (PeerState::Down, "down"),
            (PeerState::ConfigMismatch, "config_mismatch"),
        ] {
            let on = u64::from(peer.state == state);
            out.sample(
                "iris_cluster_peer_state",
                &[("peer", peer.name.as_str()), ("state", name)],
                on,
            );
        }
    }
    out.header(
        "iris_cluster_peer_rtt_seconds",
        "gauge",
        "Each peer's last heartbeat round trip.",
    );
    for peer in &cluster.peers {
        if let Some(us) = peer.rtt_us {
            out.sample_f64(
                "iris_cluster_peer_rtt_seconds",
                &[("peer", peer.name.as_str())],
                us as f64 / 1e6,
            );
        }
    }
    out.header(
        "iris_cluster_forwards_total",
        "counter",
        "Requests forwarded to the node that owns their pair, by outcome.",
    );
    for (outcome, n) in cluster.forwards {
        out.sample("iris_cluster_forwards_total", &[("outcome", outcome)], n);
    }
}

/// Renders `sample` in the Prometheus text format.
pub fn render(sample: &Sample) -> String {
    let mut out = Text::default();

    out.gauge(
        "iris_live_sessions",
        "Session actors live in this node.",
        sample.live_sessions,
    );
    if let Some(pool) = &sample.pool {
        out.gauge(
            "iris_live_processes",
            "Agent processes alive (process slots held).",
            pool.held as u64,
        );
        out.gauge(
            "iris_busy_processes",
            "Agent processes running a turn.",
            pool.busy as u64,
        );
        out.gauge(
            "iris_max_processes",
            "The most agent processes alive at once (max_processes).",
            pool.max as u64,
        );
        out.gauge(
            "iris_pool_waiting",
            "Agent starts waiting for a process slot.",
            pool.waiting as u64,
        );
    }
    if let Some(open) = sample.open_turns {
        out.gauge(
            "iris_open_turns",
            "Turns queued or running, over every session.",
            open,
        );
        let processing = sample
            .sessions
            .by_process_state
            .get(&ProcessState::Processing)
            .copied()
            .unwrap_or(0);
        out.gauge(
            "iris_queued_turns",
            "Turns waiting behind a turn in flight, over every session (queue depth).",
            open.saturating_sub(processing),
        );
    }

    out.header(
        "iris_containment_mode",
        "gauge",
        "How agents are contained: 1 for the mode in force.",
    );
    for mode in ContainmentMode::ALL {
        let on = u64::from(mode == sample.containment);
        out.sample("iris_containment_mode", &[("mode", mode.as_str())], on);
    }
    if let Some(cluster) = &sample.cluster {
        render_cluster(&mut out, cluster);
    }
    out.header(
        "iris_agent_cpu_seconds",
        "gauge",
        "CPU time used by each live agent and everything it started.",
    );
    for (pair, cpu) in &sample.agent_cpu {
        let (from, to) = (pair.from.as_str(), pair.to.as_str());
        out.sample_f64(
            "iris_agent_cpu_seconds",
            &[("from", from), ("to", to)],
            cpu.as_secs_f64(),
        );
    }

    out.header("iris_sessions", "gauge", "Stored sessions by status.");
    for status in SessionStatus::ALL {
        let n = sample.sessions.by_status.get(status).copied().unwrap_or(0);
        out.sample("iris_sessions", &[("status", status.as_str())], n);
    }
    out.header(
        "iris_session_processes",
        "gauge",
        "Stored sessions by the state of their agent process.",
    );
    for state in ProcessState::ALL {
        let n = sample
            .sessions
            .by_process_state
            .get(state)
            .copied()
            .unwrap_or(0);
        out.sample("iris_session_processes", &[("state", state.as_str())], n);
    }
    out.gauge(
        "iris_messages",
        "Messages over every stored session.",
        sample.sessions.total_messages,
    );
    if let Some(usage) = &sample.usage {
        out.header(
            "iris_cost_usd",
            "gauge",
            "Cost in US dollars reported by the agents, summed over every stored session.",
        );
        out.sample_f64("iris_cost_usd", &[], usage.cost_usd);
        out.header(
            "iris_tokens",
            "gauge",
            "Tokens reported by the agents, summed over every stored session.",
        );
        for (kind, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_creation", usage.cache_creation_input_tokens),
            ("cache_read", usage.cache_read_input_tokens),
        ] {
            out.sample("iris_tokens", &[("kind", kind)], n);
        }
    }

    out.header(
        "iris_turns_total",
        "counter",
        "Turns finished since the node started, by outcome.",
    );
    for (counter, outcome) in TURN_OUTCOMES {
        let n = sample.runtime.counter(counter).unwrap_or(0);
        out.sample("iris_turns_total", &[("outcome", outcome)], n);
    }
    for (name, value) in &sample.runtime.counters {
        if TURN_OUTCOMES.iter().any(|(c, _)| c == name) {
            continue;
        }
        // A counter of a newer runtime than this renderer knows still gets a family.
        let (family, help) = declared(COUNTERS, name).map_or_else(
            || {
                (
                    format!("iris_{}_total", sanitize(name)),
                    "A runtime counter.",
                )
            },
            |d| (format!("iris_{}", d.family), d.help),
        );
        out.counter(&family, help, *value);
    }
    for (name, histogram) in &sample.runtime.histograms {
        let (metric, help) = declared(LATENCIES, name).map_or_else(
            || {
                (
                    format!("iris_{}_seconds", sanitize(name)),
                    "A runtime latency.",
                )
            },
            |d| (format!("iris_{}", d.family), d.help),
        );
        out.histogram_us(
            &metric,
            help,
            &histogram.bounds_us,
            &histogram.counts,
            histogram.sum_us,
        );
    }

    let writer = &sample.writer;
    out.counter(
        "iris_store_commits_total",
        "Write transactions the store committed.",
        writer.batches,
    );
    out.counter(
        "iris_store_mutations_total",
        "Mutations applied in committed transactions.",
        writer.mutations,
    );
    out.gauge(
        "iris_store_max_batch_size",
        "The most mutations committed in one transaction so far.",
        writer.max_batch,
    );
    out.histogram_us(
        "iris_store_commit_duration_seconds",
        "One store write transaction, from its start until its durable commit.",
        &WriterStats::COMMIT_TIME_BOUNDS_US,
        &writer.commit_time_counts,
        writer.commit_time_sum_us,
    );
    out.histogram(
        "iris_store_batch_size",
        "Mutations per committed store transaction.",
        &WriterStats::BATCH_SIZE_BOUNDS.map(|b| b.to_string()),
        &writer.batch_size_counts,
        &writer.mutations.to_string(),
    );
    out.gauge(
        "iris_store_healthy",
        "1 while the store can commit; 0 while a storage fault (a full disk, an I/O error) stops its commits.",
        u64::from(writer.healthy),
    );
    out.counter(
        "iris_store_failed_commits_total",
        "Store write transactions that failed for a storage fault.",
        writer.failed_commits,
    );
    out.counter(
        "iris_store_failed_mutations_total",
        "Store mutations that failed for a storage fault (in a failed commit, or refused during one).",
        writer.failed_mutations,
    );
    out.counter(
        "iris_store_recoveries_total",
        "Times the store reopened its database after a storage fault and committed again.",
        writer.recoveries,
    );
    out.0
}

/// A metric name from a runtime name: anything but `[a-zA-Z0-9_]` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value, escaped as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Microseconds as seconds, in the shortest text that reads back exactly.
fn seconds(us: u64) -> String {
    (us as f64 / 1e6).to_string()
}

/// The exposition being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.line(name, labels, &value.to_string());
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let text = if value.is_finite() {
            value.to_string()
        } else if value.is_nan() {
            "NaN".to_owned()
        } else if value > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        };
        self.line(name, labels, &text);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// A histogram whose bounds and sum are microseconds, exposed in seconds.
    fn histogram_us(
        &mut self,
        name: &str,
        help: &str,
        bounds_us: &[u64],
        counts: &[u64],
        sum_us: u64,
    ) {
        let bounds: Vec<String> = bounds_us.iter().map(|b| seconds(*b)).collect();
        self.histogram(name, help, &bounds, counts, &seconds(sum_us));
    }

    /// A histogram from per-bucket (not cumulative) `counts`: one per bound, then the overflow.
    /// Missing counts read as zero, extra ones go to the overflow.
    fn histogram(&mut self, name: &str, help: &str, bounds: &[String], counts: &[u64], sum: &str) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative = cumulative.saturating_add(counts.get(i).copied().unwrap_or(0));
            self.line(&bucket, &[("le", bound)], &cumulative.to_string());
        }
        let total = counts.iter().fold(0u64, |sum, c| sum.saturating_add(*c));
        self.line(&bucket, &[("le", "+Inf")], &total.to_string());
        self.line(&format!("{name}_sum"), &[], sum);
        self.line(&format!("{name}_count"), &[], &total.to_string());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample() -> Sample {
        let mut sessions = SessionStats {
            total: 3,
            total_messages: 42,
            ..SessionStats::default()
        };
        sessions.by_status.insert(SessionStatus::Active, 2);
        sessions.by_status.insert(SessionStatus::Error, 1);
        sessions
            .by_process_state
            .insert(ProcessState::Processing, 1);
        sessions.by_process_state.insert(ProcessState::Idle, 1);
        sessions.by_process_state.insert(ProcessState::Stopped, 1);
        let metrics = iris_runtime::metrics::Metrics::default();
        for _ in 0..5 {
            metrics.tells.inc();
        }
        for _ in 0..3 {
            metrics.turns_completed.inc();
        }
        metrics.turns_failed.inc();
        metrics.turn_time.observe(Duration::from_millis(50));
        metrics.turn_time.observe(Duration::from_secs(2));
        let mut writer = WriterStats {
            batches: 2,
            mutations: 7,
            max_batch: 5,
            commit_time_sum_us: 1_500,
            ..WriterStats::default()
        };
        writer.commit_time_counts[0] = 1;
        writer.commit_time_counts[5] = 1;
        writer.batch_size_counts[1] = 1;
        writer.batch_size_counts[3] = 1;
        Sample {
            sessions,
            live_sessions: 2,
            pool: Some(PoolView {
                max: 10,
                held: 2,
                busy: 1,
                waiting: 0,
            }),
            open_turns: Some(4),
            usage: Some(UsageTotals {
                cost_usd: 0.125,
                input_tokens: 100,
                output_tokens: 20,
                ..UsageTotals::default()
            }),
            runtime: metrics.snapshot(),
            writer,
            containment: ContainmentMode::Cgroup,
            agent_cpu: vec![(
                iris_core::Pair::new(
                    iris_core::TeamName::new("alpha").unwrap(),
                    iris_core::TeamName::new("beta").unwrap(),
                ),
                Duration::from_millis(1_500),
            )],
            cluster: None,
        }
    }

    #[test]
    fn the_containment_mode_and_each_agents_cpu_are_shown() {
        let text = render(&sample());
        assert_eq!(value(&text, "iris_containment_mode{mode=\"cgroup\"}"), "1");
        assert_eq!(
            value(&text, "iris_containment_mode{mode=\"subreaper\"}"),
            "0"
        );
        assert_eq!(
            value(&text, "iris_agent_cpu_seconds{from=\"alpha\",to=\"beta\"}"),
            "1.5"
        );
    }

    fn value(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .to_owned()
    }

    #[test]
    fn gauges_and_counters() {
        let text = render(&sample());
        assert_eq!(value(&text, "iris_live_sessions"), "2");
        assert_eq!(value(&text, "iris_live_processes"), "2");
        assert_eq!(value(&text, "iris_busy_processes"), "1");
        assert_eq!(value(&text, "iris_open_turns"), "4");
        assert_eq!(
            value(&text, "iris_queued_turns"),
            "3",
            "open less processing"
        );
        assert_eq!(value(&text, "iris_sessions{status=\"active\"}"), "2");
        assert_eq!(value(&text, "iris_sessions{status=\"error\"}"), "1");
        assert_eq!(value(&text, "iris_sessions{status=\"archived\"}"), "0");
        assert_eq!(
            value(&text, "iris_session_processes{state=\"processing\"}"),
            "1"
        );
        assert_eq!(value(&text, "iris_messages"), "42");
        assert_eq!(value(&text, "iris_cost_usd"), "0.125");
        assert_eq!(value(&text, "iris_tokens{kind=\"input\"}"), "100");
        assert_eq!(value(&text, "iris_turns_total{outcome=\"completed\"}"), "3");
        assert_eq!(value(&text, "iris_turns_total{outcome=\"failed\"}"), "1");
        assert_eq!(value(&text, "iris_turns_total{outcome=\"cancelled\"}"), "0");
        assert_eq!(value(&text, "iris_tells_total"), "5");
        assert_eq!(value(&text, "iris_crashes_total"), "0");
        assert!(
            !text.contains("iris_turns_completed_total"),
            "outcomes are one family"
        );
        assert_eq!(value(&text, "iris_store_commits_total"), "2");
        assert_eq!(value(&text, "iris_store_mutations_total"), "7");
        assert!(text.contains("# TYPE iris_turns_total counter\n"));
        assert!(text.contains("# TYPE iris_live_sessions gauge\n"));
    }

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        let text = render(&sample());
        assert!(text.contains("# TYPE iris_turn_duration_seconds histogram\n"));
        // 50 ms lands in the bucket up to 0.1024 s, 2 s in the one up to 6.5536 s.
        assert_eq!(
            value(&text, "iris_turn_duration_seconds_bucket{le=\"0.0256\"}"),
            "0"
        );
        assert_eq!(
            value(&text, "iris_turn_duration_seconds_bucket{le=\"0.1024\"}"),
            "1"
        );
        assert_eq!(
            value(&text, "iris_turn_duration_seconds_bucket{le=\"1.6384\"}"),
            "1"
        );
        assert_eq!(
            value(&text, "iris_turn_duration_seconds_bucket{le=\"6.5536\"}"),
            "2"
        );
        assert_eq!(
            value(&text, "iris_turn_duration_seconds_bucket{le=\"+Inf\"}"),
            "2"
        );
        assert_eq!(value(&text, "iris_turn_duration_seconds_count"), "2");
        assert_eq!(value(&text, "iris_turn_duration_seconds_sum"), "2.05");
        assert_eq!(value(&text, "iris_queue_wait_seconds_count"), "0");
        assert_eq!(
            value(&text, "iris_spawn_duration_seconds_bucket{le=\"+Inf\"}"),
            "0"
        );

        assert_eq!(
            value(
                &text,
                "iris_store_commit_duration_seconds_bucket{le=\"0.0001\"}"
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                "iris_store_commit_duration_seconds_bucket{le=\"0.0025\"}"
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                "iris_store_commit_duration_seconds_bucket{le=\"0.005\"}"
            ),
            "2"
        );
        assert_eq!(
            value(&text, "iris_store_commit_duration_seconds_sum"),
            "0.0015"
        );
        assert_eq!(
            value(&text, "iris_store_commit_duration_seconds_count"),
            "2"
        );
        assert_eq!(value(&text, "iris_store_batch_size_bucket{le=\"1\"}"), "0");
        assert_eq!(value(&text, "iris_store_batch_size_bucket{le=\"2\"}"), "1");
        assert_eq!(value(&text, "iris_store_batch_size_bucket{le=\"8\"}"), "2");
        assert_eq!(value(&text, "iris_store_batch_size_sum"), "7");
    }

    #[test]
    fn every_line_is_well_formed() {
        let text = render(&sample());
        let mut families = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(
                    families.insert(name.to_owned()),
                    "family {name} declared twice"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(
                value.parse::<f64>().is_ok() || value == "+Inf",
                "bad value in {line:?}"
            );
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name in {line:?}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
                .unwrap_or(name);
            assert!(families.contains(family), "{line:?} before its TYPE line");
        }
    }

    #[test]
    fn missing_parts_are_left_out_not_zeroed() {
        let mut s = sample();
        s.pool = None;
        s.open_turns = None;
        s.usage = None;
        let text = render(&s);
        assert!(!text.contains("iris_live_processes"));
        assert!(!text.contains("iris_queued_turns"));
        assert!(!text.contains("iris_cost_usd"));
        assert!(text.contains("iris_live_sessions 2"));
    }

    #[test]
    fn labels_and_names_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(sanitize("queue-wait.2"), "queue_wait_2");
        assert_eq!(seconds(100), "0.0001");
        assert_eq!(seconds(1_800_000_000), "1800");
    }

    #[test]
    fn a_cluster_node_shows_each_peer_and_its_forwards() {
        use crate::cluster::{ClusterSample, PeerState, PeerView};
        let mut with = sample();
        let peer = |name: &str, state: PeerState, rtt_us: Option<u64>| PeerView {
            name: name.into(),
            address: "127.0.0.1:7502".parse().unwrap(),
            state,
            last_heartbeat: None,
            rtt_us,
            mismatch: None,
        };
        with.cluster = Some(ClusterSample {
            peers: vec![
                peer("n2", PeerState::Up, Some(250)),
                peer("n3", PeerState::Suspected, None),
            ],
            forwards: [
                ("answered", 7),
                ("failed", 1),
                ("unavailable", 2),
                ("unknown", 0),
            ],
        });
        let text = render(&with);
        assert_eq!(
            value(&text, "iris_cluster_peer_state{peer=\"n2\",state=\"up\"}"),
            "1"
        );
        assert_eq!(
            value(&text, "iris_cluster_peer_state{peer=\"n3\",state=\"up\"}"),
            "0"
        );
        assert_eq!(
            value(
                &text,
                "iris_cluster_peer_state{peer=\"n3\",state=\"suspected\"}"
            ),
            "1"
        );
        assert_eq!(
            value(&text, "iris_cluster_peer_rtt_seconds{peer=\"n2\"}"),
            "0.00025"
        );
        assert!(!text.contains("iris_cluster_peer_rtt_seconds{peer=\"n3\"}"));
        assert_eq!(
            value(&text, "iris_cluster_forwards_total{outcome=\"answered\"}"),
            "7"
        );
        // A node outside a cluster writes none of these.
        assert!(!render(&sample()).contains("iris_cluster"));
    }
}
