//! The cluster with real processes: two `iris node` processes on loopback share one
//! configuration, team alpha placed on n1 and beta on n2. A pair runs on the node that hosts its
//! receiving team, whichever node the command entered at; a node whose owner is gone answers
//! `NODE_UNAVAILABLE` at once; a node that loaded another placement is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Node, Out, STEP, Scratch, free_ports};
use tokio::process::Command;

/// Node `name` in `iris cluster status --json`.
fn node(status: &Value, name: &str) -> Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .cloned()
        .unwrap()
}

struct World {
    scratch: Scratch,
}

impl World {
    /// One node per port (n1, n2, …): alpha and gamma on n1, beta on n2, delta on n3 when there
    /// is one (else unplaced); `extra` is appended (another team, to make a placement differ).
    fn new(ports: &[u16], extra: &str) -> World {
        let scratch = Scratch::new(&["alpha", "beta", "gamma", "delta"]);
        let root = scratch.root().display().to_string();
        let nodes: String = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                format!(
                    "[cluster.nodes.n{}]\naddress = \"127.0.0.1:{port}\"\n\n",
                    i + 1
                )
            })
            .collect();
        let delta = if ports.len() >= 3 {
            "node = \"n3\""
        } else {
            ""
        };
        scratch.write_config(&format!(
            r#"
[settings]
spawn_timeout = "20s"

[cluster]
cookie = "${{IRIS_CLUSTER_COOKIE:-test-cookie}}"

{nodes}
[database]
path = "data/${{IRIS_NODE}}.redb"

[agent]
command = "fake-claude"

[teams.alpha]
path = "{root}/alpha"
node = "n1"

[teams.beta]
path = "{root}/beta"
node = "n2"

[teams.gamma]
path = "{root}/gamma"
node = "n1"

[teams.delta]
path = "{root}/delta"
{delta}
{extra}
"#
        ));
        World { scratch }
    }

    /// `iris` as node `name` (or a command run beside it) sees the configuration.
    fn command(&self, name: &str) -> Command {
        let mut command = self.scratch.command();
        command.env("IRIS_NODE", name);
        command
    }

    async fn iris(&self, at: &str, args: &[&str]) -> Out {
        support::run(self.command(at), args).await
    }

    async fn start(&self, name: &str) -> Node {
        let node = self.scratch.start_node(self.command(name)).await;
        let expected = self.scratch.root().join(format!("data/{name}.redb.node"));
        assert_eq!(
            node.started.endpoint_file.as_deref(),
            Some(expected.as_path())
        );
        node
    }

    /// Tells `from`→`to` through node `at` until the cluster is connected (a first tell may
    /// meet the owner before its link is up), then returns the answer.
    async fn tell_when_joined(&self, at: &str, from: &str, to: &str, message: &str) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let out = self.iris(at, &["tell", from, to, message]).await;
            if out.code == Some(0) {
                return out.json;
            }
            assert_eq!(out.error_code(), "NODE_UNAVAILABLE", "{out:#?}");
            assert!(
                Instant::now() < deadline,
                "the cluster never joined: {out:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The pairs whose sessions node `holder` holds, as `from->to`, as the cluster-wide list
    /// made at node `at` says.
    async fn pairs_on(&self, at: &str, holder: &str) -> Vec<String> {
        let out = self.iris(at, &["sessions", "list"]).await;
        assert_eq!(out.code, Some(0), "{out:#?}");
        let mut pairs: Vec<String> = out.json["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["node"] == holder)
            .map(|r| {
                format!(
                    "{}->{}",
                    r["from_team"].as_str().unwrap(),
                    r["to_team"].as_str().unwrap()
                )
            })
            .collect();
        pairs.sort();
        pairs
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_runs_on_the_node_of_its_receiving_team_and_a_lost_owner_fails_at_once() {
    let world = World::new(&free_ports(2), "");
    let mut n1 = world.start("n1").await;
    let mut n2 = world.start("n2").await;

    // Entered at n1, owned by n2 (beta), and the reverse: each runs where its receiver lives.
    let reply = world
        .tell_when_joined("n1", "alpha", "beta", "across")
        .await;
    assert_eq!(reply["status"], "completed", "{reply:#}");
    assert_eq!(reply["response"], "echo: across", "{reply:#}");
    let reply = world.tell_when_joined("n2", "beta", "alpha", "back").await;
    assert_eq!(reply["response"], "echo: back", "{reply:#}");
    // Entered at the owner itself: local.
    let reply = world.tell_when_joined("n1", "beta", "gamma", "here").await;
    assert_eq!(reply["response"], "echo: here", "{reply:#}");
    // The list made at either node is the whole cluster's, each session on its owner.
    for at in ["n1", "n2"] {
        assert_eq!(
            world.pairs_on(at, "n1").await,
            ["beta->alpha", "beta->gamma"]
        );
        assert_eq!(world.pairs_on(at, "n2").await, ["alpha->beta"]);
    }
    let stats = world.iris("n2", &["stats"]).await;
    assert_eq!(stats.json["sessions"]["total"], 3, "{stats:#?}");
    assert_eq!(stats.json["nodes"], serde_json::json!(["n2", "n1"]));
    assert_eq!(stats.json["unavailable_nodes"], serde_json::json!([]));
    // A session named by id is found on the node that holds it.
    let listed = world.iris("n1", &["sessions", "list"]).await;
    let held_by_n2 = listed.json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == "n2")
        .unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = world.iris("n1", &["sessions", "show", &held_by_n2]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    assert_eq!(shown.json["to_team"], "beta", "{shown:#?}");
    let missing = uuid::Uuid::new_v4().to_string();
    let missing = world.iris("n1", &["sessions", "show", &missing]).await;
    assert_eq!(missing.error_code(), "SESSION_NOT_FOUND", "{missing:#?}");
    // Filtered by a placed receiving team, the list comes from its owner alone.
    let to_beta = world
        .iris("n1", &["sessions", "list", "--to", "beta"])
        .await;
    assert_eq!(
        to_beta.json.as_array().map(Vec::len),
        Some(1),
        "{to_beta:#?}"
    );
    // Status and report are the owner's, from either node.
    let status = world.iris("n1", &["status", "alpha", "beta"]).await;
    assert_eq!(status.code, Some(0), "{status:#?}");
    assert_eq!(status.json["session"]["to_team"], "beta");
    let report = world.iris("n1", &["report", "alpha", "beta"]).await;
    assert_eq!(report.json.as_array().map(Vec::len), Some(1), "{report:#?}");

    // `iris cluster status` at n1: both nodes, what they host, n2 up with a heartbeat.
    let status = world.iris("n1", &["cluster", "status"]).await;
    assert_eq!(status.code, Some(0), "{status:#?}");
    assert_eq!(status.json["node"], "n1");
    let (me, peer) = (node(&status.json, "n1"), node(&status.json, "n2"));
    assert_eq!(me["this_node"], true);
    assert_eq!(me["teams"], serde_json::json!(["alpha", "gamma"]));
    assert_eq!(peer["state"], "up", "{status:#?}");
    assert_eq!(peer["teams"], serde_json::json!(["beta"]));
    assert!(
        peer["rtt_us"].is_u64() && peer["last_heartbeat"].is_object(),
        "{peer:#}"
    );

    // /metrics on n1: the peer up, with a round trip, and the forwards answered.
    let endpoint: iris_node::http::endpoint::Endpoint =
        serde_json::from_slice(&std::fs::read(n1.started.endpoint_file.as_ref().unwrap()).unwrap())
            .unwrap();
    let metrics = support::scrape_metrics(&n1.started.url, &endpoint.token).await;
    assert!(
        metrics.contains("iris_cluster_peer_state{peer=\"n2\",state=\"up\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("iris_cluster_peer_rtt_seconds{peer=\"n2\"}"),
        "{metrics}"
    );
    let answered = metrics
        .lines()
        .find_map(|l| l.strip_prefix("iris_cluster_forwards_total{outcome=\"answered\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(answered.is_some_and(|n| n >= 3), "{metrics}");

    // The owner of beta is killed: its pairs fail at once with NODE_UNAVAILABLE (exit 6),
    // the others keep working.
    n2.signal(nix::sys::signal::Signal::SIGKILL);
    n2.wait(STEP).await;
    let started = Instant::now();
    let out = world
        .iris("n1", &["tell", "alpha", "beta", "anyone?"])
        .await;
    assert_eq!(out.code, Some(6), "{out:#?}");
    assert_eq!(out.error_code(), "NODE_UNAVAILABLE", "{out:#?}");
    assert!(out.error_message().contains("n2"), "{out:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let reply = world
        .iris("n1", &["tell", "beta", "alpha", "still here"])
        .await;
    assert_eq!(reply.code, Some(0), "{reply:#?}");
    // Cluster-wide views still answer, naming the node whose part is missing.
    let listed = world.iris("n1", &["sessions", "list"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    assert_eq!(listed.json["nodes"], serde_json::json!(["n1"]));
    assert_eq!(
        listed.json["unavailable_nodes"][0]["node"], "n2",
        "{listed:#?}"
    );
    let text = world.command("n1").arg("stats").output().await.unwrap();
    let warnings = String::from_utf8_lossy(&text.stderr);
    assert!(text.status.success(), "{warnings}");
    assert!(
        warnings.contains("warning: node n2 did not answer"),
        "{warnings}"
    );
    // Its next heartbeat finds the link gone: down.
    let deadline = Instant::now() + STEP;
    loop {
        let status = world.iris("n1", &["cluster", "status"]).await;
        if node(&status.json, "n2")["state"] == "down" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 never shown down: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // It comes back and rejoins by itself.
    let n2 = world.start("n2").await;
    let reply = world
        .tell_when_joined("n1", "alpha", "beta", "welcome back")
        .await;
    assert_eq!(reply["response"], "echo: welcome back", "{reply:#}");
    n2.stop().await;
    n1.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(n1.wait(STEP).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loaded_another_placement_is_refused() {
    let ports = free_ports(2);
    let world = World::new(&ports, "");
    // n2 loads a file with one more placed team: its placement digest differs.
    let other = World::new(
        &ports,
        &format!(
            "[teams.epsilon]\npath = \"{}/delta\"\nnode = \"n2\"\n",
            world.scratch.root().display()
        ),
    );
    let n1 = world.start("n1").await;
    let n2 = other.start("n2").await;
    // Whatever the timing, alpha→beta never runs: first the link is not up, then the peer is
    // refused for its placement.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while Instant::now() < deadline {
        let out = world.iris("n1", &["tell", "alpha", "beta", "hi"]).await;
        assert_eq!(out.error_code(), "NODE_UNAVAILABLE", "{out:#?}");
        let refused = out.error_message().contains("another placement");
        last = Some(out);
        if refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = last.unwrap();
    assert!(
        last.error_message().contains("another placement"),
        "{last:#?}"
    );
    n1.stop().await;
    n2.stop().await;
}

/// A stopped owner (SIGSTOP: its sockets stay open, so only heartbeats notice) fails its
/// callers within the suspicion bound, and new calls at once; after SIGCONT it answers again,
/// and the tell sent while it was stopped, retried with its request id, ran exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_owner_fails_its_callers_in_bounded_time_and_recovers() {
    let world = World::new(&free_ports(2), "");
    let n1 = world.start("n1").await;
    let n2 = world.start("n2").await;
    world
        .tell_when_joined("n1", "alpha", "beta", "warm up")
        .await;

    n2.signal(nix::sys::signal::Signal::SIGSTOP);
    let request = uuid::Uuid::now_v7().to_string();
    let once = [
        "tell",
        "alpha",
        "beta",
        "while stopped",
        "--request-id",
        &request,
    ];
    let started = Instant::now();
    let during = world.iris("n1", &once).await;
    let waited = started.elapsed();
    assert_eq!(during.error_code(), "NODE_UNAVAILABLE", "{during:#?}");
    // Its outcome is unknown (n1 sent it before it suspected n2), and the message says how to
    // settle it.
    assert!(
        during
            .error_message()
            .contains(&format!("--request-id {request}")),
        "{during:#?}"
    );
    // Three missed heartbeats of a second each, with a second of slack per step.
    assert!(
        waited < Duration::from_secs(8),
        "the caller waited {waited:?}"
    );
    // Once suspected, a new call fails at once.
    let started = Instant::now();
    let next = world
        .iris("n1", &["tell", "alpha", "beta", "still stopped?"])
        .await;
    assert_eq!(next.error_code(), "NODE_UNAVAILABLE", "{next:#?}");
    assert!(next.error_message().contains("heartbeats"), "{next:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    n2.signal(nix::sys::signal::Signal::SIGCONT);
    let reply = world.tell_when_joined("n1", "alpha", "beta", "after").await;
    assert_eq!(reply["response"], "echo: after", "{reply:#}");
    // Settled by a retry with the same id: the stopped node may have run the first attempt
    // after SIGCONT, and the retry then gets that turn; either way it runs once.
    let retried = world.iris("n1", &once).await;
    assert_eq!(retried.code, Some(0), "{retried:#?}");
    let again = world.iris("n1", &once).await;
    assert_eq!(again.json["turn_id"], retried.json["turn_id"], "{again:#?}");
    // The owner's ledger, by request id: that request made exactly one turn, the refused tell
    // none, and every forwarded tell carries the id n1 gave it.
    let report = world.iris("n2", &["report", "alpha", "beta"]).await;
    let turns = report.json.as_array().unwrap();
    let messages: Vec<&str> = turns
        .iter()
        .map(|t| t["message"].as_str().unwrap_or(""))
        .collect();
    let count = |m: &str| messages.iter().filter(|x| **x == m).count();
    let of_request: Vec<&Value> = turns
        .iter()
        .filter(|t| t["request_id"] == request)
        .collect();
    assert_eq!(of_request.len(), 1, "{turns:#?}");
    assert_eq!(of_request[0]["turn_id"], retried.json["turn_id"]);
    assert_eq!(count("while stopped"), 1, "{messages:?}");
    assert_eq!(count("still stopped?"), 0, "{messages:?}");
    assert_eq!(count("after"), 1, "{messages:?}");
    assert!(
        turns.iter().all(|t| t["request_id"].is_string()),
        "{turns:#?}"
    );
    n1.stop().await;
    n2.stop().await;
}

/// The processes whose working directory is under `root` (the teams' directories: agents).
fn agents_under(root: &std::path::Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(root)) {
            pids.push(pid);
        }
    }
    pids
}

/// Three nodes: a tell entered at each node runs on the owner, for every ordered pair of nodes;
/// 1,000 first tells to one new pair, entered at all three nodes at once, make exactly one
/// session; and once the nodes stop, no agent is left anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_every_ordered_pair_and_a_thousand_first_tells_make_one_session() {
    let world = World::new(&free_ports(3), "");
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(world.start(name).await);
    }
    // (owner, its receiving team); gamma (on n1) sends to each.
    let owned = [("n1", "alpha"), ("n2", "beta"), ("n3", "delta")];
    for entry in ["n1", "n2", "n3"] {
        for (owner, to) in owned.iter().filter(|(owner, _)| *owner != entry) {
            let message = format!("entered at {entry}, run by {owner}");
            let reply = world.tell_when_joined(entry, "gamma", to, &message).await;
            assert_eq!(reply["response"], format!("echo: {message}"), "{reply:#}");
        }
    }
    for (owner, to) in owned {
        if owner != "n1" {
            assert_eq!(world.pairs_on("n1", owner).await, [format!("gamma->{to}")]);
        }
    }

    // 1,000 first tells to the new pair beta→gamma (owned by n1), a third entered at each
    // node, all in flight at once. Each waits for nothing: it is queued, or refused because
    // the pair's queue is full.
    let targets: Vec<(String, String)> = nodes
        .iter()
        .map(|node| {
            let endpoint: iris_node::http::endpoint::Endpoint = serde_json::from_slice(
                &std::fs::read(node.started.endpoint_file.as_ref().unwrap()).unwrap(),
            )
            .unwrap();
            (node.started.url.clone(), endpoint.token)
        })
        .collect();
    let client = support::http();
    let body = r#"{"command":"tell","from":"beta","to":"gamma","message":"first","async":true}"#;
    let calls = (0..1000).map(|i| {
        let (url, token) = &targets[i % targets.len()];
        let request = client
            .post(format!("{url}/api/v1/command"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        async move {
            // A node serves at most 256 connections and closes the longest-idle one for a
            // newcomer; in a burst, a connection whose request it has not read yet counts as
            // idle. Such a request never reached iris, so sending it again is safe.
            for _ in 0..20 {
                match request.try_clone().unwrap().send().await {
                    Ok(response) => return response.json::<Value>().await.unwrap(),
                    Err(e) if e.is_request() => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("the tell never got a connection");
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    let mut sessions = std::collections::BTreeSet::new();
    let mut refused = 0;
    for reply in &replies {
        match reply["kind"].as_str() {
            Some("tell") => {
                sessions.insert(reply["data"]["session_id"].to_string());
            }
            _ => {
                assert_eq!(reply["error"]["code"], "QUEUE_FULL", "{reply:#}");
                refused += 1;
            }
        }
    }
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(refused < 1000);
    // One session of the pair, on its owner, whichever node is asked.
    assert_eq!(
        world.pairs_on("n3", "n1").await,
        ["beta->gamma", "gamma->alpha"]
    );

    for node in nodes {
        node.stop().await;
    }
    let left = agents_under(world.scratch.root());
    assert!(left.is_empty(), "agents left behind: {left:?}");
}

/// `[cluster.tls]` with each node's certificate (`${IRIS_NODE}.pem`), or with `node`'s
/// replaced by `stranger.pem` (signed by another CA).
fn tls_section(stranger: Option<&str>) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let (cert, key) = match stranger {
        Some(_) => ("stranger.pem", "stranger.key"),
        None => ("${IRIS_NODE}.pem", "${IRIS_NODE}.key"),
    };
    format!(
        "[cluster.tls]\ncert = \"{dir}/{cert}\"\nkey = \"{dir}/{key}\"\nca = \"{dir}/ca.pem\"\n"
    )
}

/// Over `[cluster.tls]`, nodes forward to each other as without it, a connection that never
/// says anything does not keep a node out, and a node whose certificate another CA signed
/// never joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_tls_and_a_node_without_a_cluster_certificate_never_joins() {
    let ports = free_ports(2);
    let world = World::new(&ports, &tls_section(None));
    let n1 = world.start("n1").await;
    // A client that connects to n1's cluster port and stays silent: it must not stop n2.
    let silent = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    let n2 = world.start("n2").await;
    let reply = world
        .tell_when_joined("n1", "alpha", "beta", "sealed")
        .await;
    assert_eq!(reply["response"], "echo: sealed", "{reply:#}");
    let reply = world.tell_when_joined("n2", "beta", "alpha", "back").await;
    assert_eq!(reply["response"], "echo: back", "{reply:#}");
    let status = world.iris("n1", &["cluster", "status"]).await;
    assert_eq!(status.json["tls"], true, "{status:#?}");
    drop(silent);
    n2.stop().await;

    // The same n2, but with a certificate that names n2 and that another CA signed.
    let stranger = World::new(&ports, &tls_section(Some("n2")));
    let n2 = stranger.start("n2").await;
    // Long enough for several dials both ways (every 1–2 s).
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let out = world
            .iris("n1", &["tell", "alpha", "beta", "let me in"])
            .await;
        assert_eq!(out.error_code(), "NODE_UNAVAILABLE", "{out:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = world.iris("n1", &["cluster", "status"]).await;
    assert_eq!(node(&status.json, "n2")["state"], "down", "{status:#?}");
    n1.stop().await;
    n2.stop().await;
}
