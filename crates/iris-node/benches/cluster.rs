//! Benchmarks of the cluster (issue 15's performance table), each beside its anchor in the
//! same run: three real `iris node` processes (this profile's `iris` binary) on loopback, with
//! the built-in fake-claude as every team's agent.
//!
//! Run with `cargo bench -p iris-node --bench cluster` (about a minute on 2 cores, after the
//! build). The placement: senders `s0`…`s15` on n1, receivers `a0`…`a7` on n2 and `b0`…`b7` on
//! n3. Settings: `passivate_after` and `idle_timeout` of 24 h, `max_processes = 256`,
//! `queue_depth = 1024` (nothing is stopped or evicted during the run). Every tell is a
//! `POST /api/v1/command` of `{"command":"tell",…}` waiting for the whole reply, over a
//! keep-alive HTTP connection, on a pair whose agent runs already (warm).
//!
//! | figure | what | anchor | goal |
//! |---|---|---|---|
//! | `forward_latency` | a tell of `s0`→`a0` entered at n1, forwarded to n2 | the same tell entered at n2, its owner | forward adds ≤ 300 µs at p50 |
//! | `forward_throughput` | 16 clients, each on a pair of its own (half owned by n2, half by n3), telling back to back for 3 s, all entered at n1 | the same clients entering at each pair's owner | ≥ 80% of the anchor's tells/s |
//! | `heartbeat_cpu` | CPU time of idle n1 (heartbeats to 2 peers, answering theirs) over 10 s | an idle node without `[cluster]`, over the same 10 s | < 1% CPU per idle peer |
//!
//! Latencies are timed call by call with `Instant`, forwarded and local interleaved (so drift
//! hits both alike); criterion's groups time the same calls for its report. CPU is read from
//! `/proc/PID/stat` (user + system ticks).
//!
//! `IRIS_BENCH_QUICK=1` (and `cargo test --benches`): small counts, for a smoke run; its
//! figures are not the goal figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::Value;
use support::{Node, Scratch, free_ports};

const SENDERS: usize = 16;
const PER_OWNER: usize = 8;

/// Whether this is a smoke run (`IRIS_BENCH_QUICK=1`, or criterion's test mode).
fn quick() -> bool {
    std::env::var_os("IRIS_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--test")
}

/// A running node: its process, URL and token.
struct Running {
    node: Node,
    url: String,
    token: String,
}

/// The three-node installation, and a standalone node (no `[cluster]`) for the CPU anchor.
struct Bench {
    scratch: Scratch,
    standalone: Scratch,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    nodes: Vec<Running>,
}

const SETTINGS: &str = r#"
[settings]
spawn_timeout = "30s"
passivate_after = "24h"
idle_timeout = "24h"
max_processes = 256
queue_depth = 1024

[agent]
command = "fake-claude"
"#;

fn cluster_config(scratch: &Scratch, ports: &[u16]) -> String {
    let root = scratch.root().display();
    let mut toml = format!("{SETTINGS}\n[cluster]\ncookie = \"bench-cookie\"\n");
    for (i, port) in ports.iter().enumerate() {
        toml.push_str(&format!(
            "[cluster.nodes.n{}]\naddress = \"127.0.0.1:{port}\"\n",
            i + 1
        ));
    }
    toml.push_str("[database]\npath = \"data/${IRIS_NODE}.redb\"\n");
    let teams = (0..SENDERS)
        .map(|i| (format!("s{i}"), "n1"))
        .chain((0..PER_OWNER).map(|i| (format!("a{i}"), "n2")))
        .chain((0..PER_OWNER).map(|i| (format!("b{i}"), "n3")));
    for (team, node) in teams {
        toml.push_str(&format!(
            "[teams.{team}]\npath = \"{root}/teams/{team}\"\nnode = \"{node}\"\n"
        ));
    }
    toml
}

fn standalone_config(scratch: &Scratch) -> String {
    let root = scratch.root().display();
    format!("{SETTINGS}\n[teams.s0]\npath = \"{root}/teams/s0\"\n")
}

fn team_dirs() -> Vec<String> {
    (0..SENDERS)
        .map(|i| format!("teams/s{i}"))
        .chain((0..PER_OWNER).map(|i| format!("teams/a{i}")))
        .chain((0..PER_OWNER).map(|i| format!("teams/b{i}")))
        .collect()
}

impl Bench {
    fn start() -> Bench {
        let dirs = team_dirs();
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let scratch = Scratch::new(&dirs);
        scratch.write_config(&cluster_config(&scratch, &free_ports(3)));
        let standalone = Scratch::new(&["teams/s0"]);
        standalone.write_config(&standalone_config(&standalone));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let nodes = rt.block_on(async {
            let mut nodes = Vec::new();
            for name in ["n1", "n2", "n3"] {
                let mut command = scratch.command();
                command.env("IRIS_NODE", name);
                nodes.push(running(scratch.start_node(command).await));
            }
            nodes
        });
        Bench {
            scratch,
            standalone,
            rt,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            nodes,
        }
    }

    /// `node` (0-based) runs a tell of `from`→`to` to its end; its reply text.
    async fn tell(&self, node: usize, from: &str, to: &str) -> Result<String, Value> {
        tell(&self.client, &self.nodes[node], from, to).await
    }

    /// Waits until every pair the bench uses answers through n1 (the cluster is joined and
    /// every agent is up).
    fn warm(&self) {
        self.rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            for (from, to, _) in pairs() {
                loop {
                    match self.tell(0, &from, &to).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert!(Instant::now() < deadline, "{from}→{to} never answered: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
    }
}

fn running(node: Node) -> Running {
    let endpoint: iris_node::http::endpoint::Endpoint = serde_json::from_slice(
        &std::fs::read(node.started.endpoint_file.as_ref().unwrap()).unwrap(),
    )
    .unwrap();
    Running {
        url: node.started.url.clone(),
        token: endpoint.token,
        node,
    }
}

async fn tell(
    client: &reqwest::Client,
    node: &Running,
    from: &str,
    to: &str,
) -> Result<String, Value> {
    let body = serde_json::json!({"command": "tell", "from": from, "to": to, "message": "ping"});
    let reply: Value = client
        .post(format!("{}/api/v1/command", node.url))
        .bearer_auth(&node.token)
        .json(&body)
        .send()
        .await
        .map_err(|e| Value::String(e.to_string()))?
        .json()
        .await
        .map_err(|e| Value::String(e.to_string()))?;
    match reply["data"]["response"].as_str() {
        Some(text) => Ok(text.to_owned()),
        None => Err(reply),
    }
}

/// The throughput pairs: (from, to, owner index), half owned by n2, half by n3.
fn pairs() -> Vec<(String, String, usize)> {
    (0..SENDERS)
        .map(|i| {
            let (to, owner) = if i % 2 == 0 {
                (format!("a{}", i / 2 % PER_OWNER), 1)
            } else {
                (format!("b{}", i / 2 % PER_OWNER), 2)
            };
            (format!("s{i}"), to, owner)
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Forwarded (entered at n1) and local (entered at n2) tells of s0→a0, interleaved.
fn latency(bench: &Bench, samples: usize) -> (Vec<Duration>, Vec<Duration>) {
    bench.rt.block_on(async {
        let (mut forwarded, mut local) = (Vec::new(), Vec::new());
        for _ in 0..samples {
            for (node, times) in [(0, &mut forwarded), (1, &mut local)] {
                let began = Instant::now();
                bench.tell(node, "s0", "a0").await.unwrap();
                times.push(began.elapsed());
            }
        }
        forwarded.sort();
        local.sort();
        (forwarded, local)
    })
}

/// Tells per second of the 16 clients for `length`, entered at n1 (`forwarded`) or at each
/// pair's owner.
fn throughput(bench: &Bench, forwarded: bool, length: Duration) -> f64 {
    bench.rt.block_on(async {
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + length;
        let clients = pairs().into_iter().map(|(from, to, owner)| {
            let entry = if forwarded { 0 } else { owner };
            let (client, node, done) = (bench.client.clone(), &bench.nodes[entry], done.clone());
            async move {
                while Instant::now() < until {
                    tell(&client, node, &from, &to).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let began = Instant::now();
        futures_util::future::join_all(clients).await;
        done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64()
    })
}

/// The last heartbeat round trip from n1 to n2, as n1's `GET /api/v1/cluster` shows it: the
/// transport's floor under a forwarded request (one ractor_cluster call there and back).
fn heartbeat_rtt(bench: &Bench) -> Option<Duration> {
    bench.rt.block_on(async {
        let n1 = &bench.nodes[0];
        let status: Value = bench
            .client
            .get(format!("{}{}", n1.url, iris_node::http::CLUSTER_PATH))
            .bearer_auth(&n1.token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let n2 = status["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "n2")?;
        n2["rtt_us"].as_u64().map(Duration::from_micros)
    })
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    ticks as f64 / per_second as f64
}

/// CPU% of idle n1 and of an idle standalone node over the same `length`.
fn heartbeat_cpu(bench: &Bench, length: Duration) -> (f64, f64) {
    bench.rt.block_on(async {
        let standalone = running(
            bench
                .standalone
                .start_node(bench.standalone.command())
                .await,
        );
        // Let both settle (start-up work, the first heartbeats) before the window.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (n1, alone) = (bench.nodes[0].node.started.pid, standalone.node.started.pid);
        let (n1_before, alone_before, began) =
            (cpu_seconds(n1), cpu_seconds(alone), Instant::now());
        tokio::time::sleep(length).await;
        let wall = began.elapsed().as_secs_f64();
        let usage = (
            (cpu_seconds(n1) - n1_before) / wall * 100.0,
            (cpu_seconds(alone) - alone_before) / wall * 100.0,
        );
        standalone.node.stop().await;
        usage
    })
}

fn main() {
    let quick = quick();
    let bench = Bench::start();
    bench.warm();

    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("cluster_tell");
        group.sample_size(if quick { 10 } else { 50 });
        group.measurement_time(Duration::from_secs(if quick { 1 } else { 5 }));
        for (name, node) in [("forwarded", 0), ("local", 1)] {
            group.bench_function(name, |b| {
                b.to_async(&bench.rt)
                    .iter(|| async { bench.tell(node, "s0", "a0").await.unwrap() })
            });
        }
        group.finish();
    }

    let samples = if quick { 20 } else { 500 };
    let (forwarded, local) = latency(&bench, samples);
    let length = Duration::from_secs(if quick { 1 } else { 3 });
    let local_rate = throughput(&bench, false, length);
    let forwarded_rate = throughput(&bench, true, length);
    let (n1_cpu, alone_cpu) =
        heartbeat_cpu(&bench, Duration::from_secs(if quick { 2 } else { 10 }));
    let rtt = heartbeat_rtt(&bench);

    let (fp50, lp50) = (percentile(&forwarded, 0.5), percentile(&local, 0.5));
    let overhead = fp50.saturating_sub(lp50);
    let ratio = forwarded_rate / local_rate;
    let per_peer = (n1_cpu - alone_cpu).max(0.0) / 2.0;
    println!(
        "\ncluster summary ({} samples per latency, {length:?} per throughput run){}",
        samples,
        if quick {
            " — QUICK RUN, not the goal figures"
        } else {
            ""
        }
    );
    println!(
        "  forward latency p50: forwarded {} vs local {} → overhead {} (goal ≤ 300 µs: {}); p90 {} vs {}",
        micros(fp50),
        micros(lp50),
        micros(overhead),
        if overhead <= Duration::from_micros(300) {
            "met"
        } else {
            "MISSED"
        },
        micros(percentile(&forwarded, 0.9)),
        micros(percentile(&local, 0.9)),
    );
    if let Some(rtt) = rtt {
        println!(
            "  (the last idle heartbeat n1→n2→n1, one ractor_cluster call: {})",
            micros(rtt)
        );
    }
    println!(
        "  forward throughput: {forwarded_rate:.0}/s entered at n1 vs {local_rate:.0}/s at the owners → {:.0}% (goal ≥ 80%: {})",
        ratio * 100.0,
        if ratio >= 0.8 { "met" } else { "MISSED" },
    );
    println!(
        "  heartbeat CPU: idle n1 (2 peers) {n1_cpu:.2}% vs idle standalone node {alone_cpu:.2}% → {per_peer:.2}% per idle peer (goal < 1%: {})",
        if per_peer < 1.0 { "met" } else { "MISSED" },
    );
    let Bench {
        nodes, rt, scratch, ..
    } = bench;
    rt.block_on(async {
        for running in nodes {
            running.node.stop().await;
        }
    });
    drop(scratch);
}
