//! `iris node` as people run it: real processes. A node is started on a scratch configuration
//! (teams in temp dirs, fake-claude as the agent), and the CLI runs as separate client processes
//! that find it through the endpoint file next to the database.
//!
//! Covered: every command through the node; 20 concurrent tells; a second node on the same
//! database (exit 4, naming the holder); a wrong token (exit 6); the HTTP surface (auth,
//! `/healthz`, `/metrics`, errors); stale and unreachable endpoint files; SIGTERM with live agents
//! leaves none; SIGKILL leaves none within 2 s and a restarted node has every record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use iris_node::http::endpoint::{self, Endpoint};
use serde_json::Value;
use support::{Node, Out, STEP, Scratch, http};

/// A scratch installation: teams alpha, beta and gamma, fake-claude as the agent.
struct World {
    scratch: Scratch,
}

impl std::ops::Deref for World {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        &self.scratch
    }
}

impl World {
    fn new() -> World {
        let scratch = Scratch::new(&["alpha", "beta", "gamma"]);
        // `fake-claude` is found next to the iris binary when it was built (`cargo build -p
        // fake-claude`), else iris plays it itself.
        scratch.write_config(&format!(
            r#"
[settings]
spawn_timeout = "20s"
queue_depth = 32

[database]
path = "{db}"

[agent]
command = "fake-claude"

[teams.alpha]
path = "{root}/alpha"
description = "team alpha"

[teams.beta]
path = "{root}/beta"
description = "team beta"

[teams.gamma]
path = "{root}/gamma"
description = "team gamma"
"#,
            db = scratch.db().display(),
            root = scratch.root().display(),
        ));
        World { scratch }
    }

    /// Runs `iris --json ARGS…` to its end.
    async fn iris(&self, args: &[&str]) -> Out {
        support::run(self.command(), args).await
    }

    /// Runs `iris --json ARGS…` and expects it to succeed.
    async fn ok(&self, args: &[&str]) -> Value {
        let out = self.iris(args).await;
        assert_eq!(out.code, Some(0), "{out:#?}");
        out.json
    }

    async fn start_node(&self) -> Node {
        let node = self.scratch.start_node(self.command()).await;
        assert_eq!(
            node.started.endpoint_file.as_deref(),
            Some(self.endpoint_file().as_path())
        );
        node
    }
}

/// The process groups of the sessions' agents, from their records (polled: the process mark of
/// a new agent is written without waiting).
async fn agent_groups(world: &World, sessions: usize) -> Vec<u32> {
    let deadline = Instant::now() + STEP;
    loop {
        let list = world.ok(&["sessions", "list"]).await;
        let groups: Vec<u32> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["agent_process"]["pgid"].as_u64())
            .map(|g| u32::try_from(g).unwrap())
            .collect();
        if groups.len() >= sessions {
            for pgid in &groups {
                assert!(
                    !iris_agent::procfs::live_group_members(*pgid).is_empty(),
                    "agent group {pgid} should be alive"
                );
            }
            return groups;
        }
        assert!(Instant::now() < deadline, "agents never recorded: {list:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no process of any of `groups` is alive.
async fn groups_empty_within(groups: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<(u32, Vec<u32>)> = groups
            .iter()
            .map(|g| (*g, iris_agent::procfs::live_group_members(*g)))
            .filter(|(_, members)| !members.is_empty())
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent processes still alive after {limit:?}: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_goes_through_the_node_and_sigterm_leaves_no_agent() {
    let world = World::new();
    let mut node = world.start_node().await;
    let endpoint = world.endpoint();
    assert_eq!(endpoint.pid, node.started.pid);
    assert_eq!(endpoint.addr, node.started.addr);
    let mode = std::fs::metadata(world.endpoint_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the endpoint file is private");

    let tell = world.ok(&["tell", "alpha", "beta", "hello"]).await;
    assert_eq!(tell["status"], "completed", "{tell:#}");
    assert_eq!(tell["response"], "echo: hello");
    let session_id = tell["session_id"].as_str().unwrap().to_owned();

    // Only the node has live actors: an embedded `stats` would start a fresh runtime with none.
    let stats = world.ok(&["stats"]).await;
    assert!(stats["live_actors"].as_u64().unwrap() >= 1, "{stats:#}");
    assert_eq!(stats["counters_of"], "node", "{stats:#}");
    assert_eq!(stats["sessions"]["total"], 1);

    let list = world.ok(&["sessions", "list", "--from", "alpha"]).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    let by_pair = world.ok(&["sessions", "show", "alpha", "beta"]).await;
    assert_eq!(by_pair["session_id"], session_id.as_str());
    assert_eq!(by_pair["message_count"], 1);
    let by_id = world.ok(&["sessions", "show", &session_id]).await;
    assert_eq!(by_id["from_team"], "alpha");

    let report = world.ok(&["report", "alpha", "beta"]).await;
    assert_eq!(report.as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(report[0]["status"], "completed");

    let woke = world.ok(&["wake", "alpha", "gamma"]).await;
    assert_eq!(woke["to_team"], "gamma", "{woke:#}");
    let teams = world.ok(&["teams", "--from", "alpha"]).await;
    let names: Vec<&str> = teams
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma"], "{teams:#}");

    let cancelled = world.ok(&["cancel", "alpha", "beta"]).await;
    assert_eq!(cancelled["interrupted"], false, "{cancelled:#}");
    world.ok(&["sleep", "alpha", "gamma"]).await;
    world.ok(&["wake-all", "beta"]).await;
    world.ok(&["sessions", "compact", &session_id]).await;

    let rebooted = world.ok(&["sessions", "reboot", "alpha", "beta"]).await;
    let new_id = rebooted["session_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, session_id, "a reboot makes a new session");
    let gone = world.iris(&["sessions", "show", &session_id]).await;
    assert_eq!(gone.code, Some(3), "{gone:#?}");

    let gamma = world.ok(&["sessions", "show", "alpha", "gamma"]).await;
    let gamma_id = gamma["session_id"].as_str().unwrap().to_owned();
    let deleted = world.ok(&["sessions", "delete", &gamma_id]).await;
    assert_eq!(
        deleted["deleted"]["session_id"],
        gamma_id.as_str(),
        "{deleted:#}"
    );

    // An error made in the node comes back with its code and exit class.
    let unknown = world.iris(&["tell", "alpha", "nobody", "hi"]).await;
    assert_eq!(unknown.code, Some(3), "{unknown:#?}");
    assert_eq!(unknown.json["error"]["code"], "TEAM_NOT_FOUND");

    // Live agents now: alpha→beta (rebooted) and beta→alpha, beta→gamma (wake-all).
    world.ok(&["wake", "alpha", "beta"]).await;
    let groups = agent_groups(&world, 3).await;

    node.signal(nix::sys::signal::Signal::SIGTERM);
    let status = node.wait(STEP).await;
    assert!(
        status.success(),
        "the node stops cleanly on SIGTERM: {status:?}"
    );
    groups_empty_within(&groups, Duration::ZERO).await;
    assert!(
        !world.endpoint_file().exists(),
        "the endpoint file is removed"
    );
    // Graceful, not left to the guardian: the node stopped every agent and recorded it.
    {
        let store = iris_store::Store::open(world.db()).unwrap();
        let records = store.list(&iris_core::SessionFilter::all()).unwrap();
        assert_eq!(records.len(), 3);
        for record in records {
            assert_eq!(record.agent_process, None, "{record:?}");
            assert_eq!(record.process_state, iris_core::ProcessState::Stopped);
        }
    }

    // Without the node, commands run embedded on the same records.
    let embedded = world.ok(&["sessions", "list"]).await;
    assert_eq!(embedded.as_array().unwrap().len(), 3, "{embedded:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_tells_all_succeed() {
    let world = World::new();
    let mut node = world.start_node().await;
    let tells: Vec<_> = (0..20)
        .map(|i| {
            let mut command = world.command();
            command.args(["--json", "tell", "alpha", "beta", &format!("message {i}")]);
            tokio::spawn(async move {
                tokio::time::timeout(STEP, command.output())
                    .await
                    .expect("a tell finished in time")
                    .unwrap()
            })
        })
        .collect();
    for (i, tell) in tells.into_iter().enumerate() {
        let output = tell.await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "tell {i}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let reply: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(reply["status"], "completed", "tell {i}: {reply:#}");
        assert_eq!(reply["response"], format!("echo: message {i}"));
    }
    let session = world.ok(&["sessions", "show", "alpha", "beta"]).await;
    assert_eq!(session["message_count"], 20, "{session:#}");
    let stats = world.ok(&["stats"]).await;
    assert_eq!(stats["counters"]["turns_completed"], 20, "{stats:#}");

    node.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(node.wait(STEP).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_is_private_and_its_own() {
    let world = World::new();
    let mut node = world.start_node().await;
    let endpoint = world.endpoint();
    let url = endpoint.url();
    let client = http();

    // Health and metrics, with the token.
    let health: Value = client
        .get(format!("{url}/healthz"))
        .bearer_auth(&endpoint.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pid"], node.started.pid);
    world.ok(&["tell", "alpha", "beta", "count me"]).await;
    let metrics = client
        .get(format!("{url}/metrics"))
        .bearer_auth(&endpoint.token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for series in [
        "iris_live_sessions 1",
        "iris_turns_total{outcome=\"completed\"} 1",
        "iris_turn_duration_seconds_count 1",
        "iris_store_commit_duration_seconds_count",
        "iris_store_batch_size_bucket{le=\"+Inf\"}",
        "iris_queued_turns 0",
        "iris_cost_usd ",
    ] {
        assert!(text.contains(series), "no {series:?} in\n{text}");
    }

    // Every route needs the token, unknown ones included.
    for path in ["/healthz", "/metrics", "/mcp", "/nowhere"] {
        for token in [None, Some("wrong"), Some(&endpoint.token[..63])] {
            let mut request = client.get(format!("{url}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} with {token:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{path}");
        }
    }
    let response = client
        .post(format!("{url}/api/v1/command"))
        .body(r#"{"command":"stats"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // The control API: a reply, a typed error with its status, a bad body, a huge body.
    let command = |body: String| {
        client
            .post(format!("{url}/api/v1/command"))
            .bearer_auth(&endpoint.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = command(r#"{"command":"stats"}"#.into()).await.unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["kind"], "stats", "{reply:#}");
    let response = command(r#"{"command":"status","from":"alpha","to":"nobody"}"#.into())
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TEAM_NOT_FOUND", "{body:#}");
    let response = command(r#"{"command":"explode"}"#.into()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "USAGE_ERROR", "{body:#}");
    let huge = format!(
        r#"{{"command":"tell","from":"alpha","to":"beta","message":"{}"}}"#,
        "x".repeat(iris_node::http::MAX_BODY)
    );
    // Refused from its Content-Length, before it is read: the client sees the 413, or (if it
    // was still writing when the node closed the connection) a failed write.
    match command(huge).await {
        Ok(response) => assert_eq!(response.status(), 413),
        Err(error) => assert!(error.is_request() || error.is_body(), "{error:?}"),
    }
    assert_eq!(
        command(r#"{"command":"stats"}"#.into())
            .await
            .unwrap()
            .status(),
        200
    );

    // A second node on the same database is refused, naming the one that holds it.
    let second = world.iris(&["node", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(second.code, Some(4), "{second:#?}");
    assert_eq!(second.json["error"]["code"], "STORE_LOCKED");
    let message = second.error_message();
    assert!(
        message.contains(&format!("pid {}", node.started.pid)),
        "{message}"
    );
    assert!(message.contains(&endpoint.addr.to_string()), "{message}");

    // A wrong token in the endpoint file: exit 6, saying what is wrong. The file is rewritten in
    // place (same pid and start time), as someone editing it would.
    let mut forged = endpoint.clone();
    forged.token = "0".repeat(64);
    std::fs::write(world.endpoint_file(), serde_json::to_vec(&forged).unwrap()).unwrap();
    let refused = world.iris(&["stats"]).await;
    assert_eq!(refused.code, Some(6), "{refused:#?}");
    assert_eq!(refused.json["error"]["code"], "UNAUTHORIZED");
    assert!(
        refused.error_message().contains("does not match"),
        "{refused:#?}"
    );
    std::fs::write(
        world.endpoint_file(),
        serde_json::to_vec(&endpoint).unwrap(),
    )
    .unwrap();
    world.ok(&["stats"]).await;

    node.signal(nix::sys::signal::Signal::SIGINT);
    assert!(
        node.wait(STEP).await.success(),
        "SIGINT stops the node cleanly too"
    );
    assert!(!world.endpoint_file().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_no_agent_and_a_restarted_node_has_every_record() {
    let world = World::new();
    let mut node = world.start_node().await;
    world
        .ok(&["tell", "alpha", "beta", "before the crash"])
        .await;
    world.ok(&["wake", "alpha", "gamma"]).await;
    world.ok(&["wake", "gamma", "alpha"]).await;
    let before = world.ok(&["sessions", "list"]).await;
    let groups = agent_groups(&world, 3).await;

    node.signal(nix::sys::signal::Signal::SIGKILL);
    node.wait(STEP).await;
    // The guardian kills every agent group once the node is gone.
    groups_empty_within(&groups, Duration::from_secs(2)).await;
    // The endpoint file is left behind, stale: commands ignore it (and run embedded).
    assert!(world.endpoint_file().exists());
    let embedded = world.ok(&["stats"]).await;
    assert_eq!(embedded["live_actors"], 0, "{embedded:#}");
    assert!(
        !world.endpoint_file().exists(),
        "an embedded command removes a stale endpoint file"
    );

    let mut restarted = world.start_node().await;
    let after = world.ok(&["sessions", "list"]).await;
    let ids = |list: &Value| {
        let mut ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["session_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(ids(&after).len(), 3);
    let session = world.ok(&["sessions", "show", "alpha", "beta"]).await;
    assert_eq!(session["message_count"], 1);
    let again = world
        .ok(&["tell", "alpha", "beta", "after the crash"])
        .await;
    assert_eq!(again["response"], "echo: after the crash");
    let report = world.ok(&["report", "alpha", "beta"]).await;
    assert_eq!(report.as_array().unwrap().len(), 2, "{report:#}");

    restarted.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(restarted.wait(STEP).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_files_without_a_node() {
    let world = World::new();
    std::fs::create_dir_all(world.db().parent().unwrap()).unwrap();

    // A file whose pid is this test process, alive, but where nothing listens: the command
    // trusts it and says what to do.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let pid = std::process::id();
    let unreachable = Endpoint {
        addr: closed,
        pid,
        token: endpoint::new_token().unwrap(),
        start_ticks: iris_agent::procfs::stat(pid).map(|s| s.start_ticks),
    };
    endpoint::write(&world.db(), &unreachable).await.unwrap();
    let out = world.iris(&["stats"]).await;
    assert_eq!(out.code, Some(6), "{out:#?}");
    assert_eq!(out.json["error"]["code"], "NODE_UNAVAILABLE");
    let message = out.error_message();
    assert!(message.contains(&closed.to_string()), "{message}");
    assert!(message.contains("Is the node running?"), "{message}");
    assert!(
        message.contains(&world.endpoint_file().display().to_string()),
        "{message}"
    );

    // A file left by a process that is gone is ignored.
    let mut stale = unreachable;
    stale.start_ticks = stale.start_ticks.map(|t| t + 1);
    endpoint::write(&world.db(), &stale).await.unwrap();
    let out = world.ok(&["stats"]).await;
    assert_eq!(out["live_actors"], 0);
    assert!(!world.endpoint_file().exists());

    // So is a garbled one, when nothing holds the database.
    std::fs::write(world.endpoint_file(), "{ not an endpoint").unwrap();
    let out = world.ok(&["stats"]).await;
    assert_eq!(out["live_actors"], 0);
    assert!(!world.endpoint_file().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_held_by_a_process_that_is_not_a_node() {
    let world = World::new();
    // This test process holds the database, as an embedded command would.
    let held = iris_store::Store::open(world.db()).unwrap();

    let node = world.iris(&["node", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(node.code, Some(4), "{node:#?}");
    assert!(
        node.error_message().contains("no running iris node"),
        "{node:#?}"
    );

    // A command waits a moment for the database (a node may be starting, another command
    // finishing) …
    let started = Instant::now();
    let out = world.iris(&["stats"]).await;
    assert_eq!(out.code, Some(4), "{out:#?}");
    assert_eq!(out.json["error"]["code"], "STORE_LOCKED");
    assert!(
        started.elapsed() >= iris_node::backend::LOCK_WAIT,
        "it waited"
    );
    assert!(out.error_message().contains("iris node"), "{out:#?}");

    // … and runs as soon as it is free.
    let mut command = world.command();
    command.args(["--json", "stats"]);
    let waiting = tokio::spawn(async move { tokio::time::timeout(STEP, command.output()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(held);
    let output = waiting.await.unwrap().expect("in time").unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_turn_answers_its_caller_and_stops() {
    let world = World::new();
    let mut node = world.start_node().await;
    world.ok(&["wake", "alpha", "beta"]).await;
    let groups = agent_groups(&world, 1).await;
    // A turn that outlasts the shutdown grace.
    let mut command = world.command();
    command.args(["--json", "tell", "alpha", "beta", "!sleep 60000"]);
    let caller = tokio::spawn(async move { tokio::time::timeout(STEP, command.output()).await });
    let deadline = Instant::now() + STEP;
    loop {
        let status = world.ok(&["sessions", "show", "alpha", "beta"]).await;
        if status["current_turn"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "the turn never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stopping = Instant::now();
    node.signal(nix::sys::signal::Signal::SIGTERM);
    let output = caller
        .await
        .unwrap()
        .expect("the caller got an answer")
        .unwrap();
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!output.status.success(), "{reply:#}");
    assert!(
        reply["status"] == "failed" || reply["error"].is_object(),
        "the turn was cut short: {reply:#}"
    );
    assert!(node.wait(STEP).await.success());
    assert!(
        stopping.elapsed() < iris_node::node::SHUTDOWN_GRACE + Duration::from_secs(10),
        "the grace bounds the stop: {:?}",
        stopping.elapsed()
    );
    groups_empty_within(&groups, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_what_the_agent_is_doing() {
    let world = World::new();
    let _node = world.start_node().await;
    let none = world.ok(&["status", "alpha", "beta"]).await;
    assert_eq!(none["awake"], false, "{none:#}");
    assert!(none.get("activity").is_none(), "{none:#}");
    world.ok(&["wake", "alpha", "beta"]).await;
    let idle = world.ok(&["status", "alpha", "beta"]).await;
    assert_eq!(idle["activity"], "idle", "{idle:#}");

    // A turn waiting on its (silent) model call: the model has the floor.
    world
        .ok(&["tell", "alpha", "beta", "!sleep 60000", "--async"])
        .await;
    let deadline = Instant::now() + STEP;
    loop {
        let status = world.ok(&["status", "alpha", "beta"]).await;
        if status["activity"] == "streaming" {
            assert_eq!(status["busy"], true, "{status:#}");
            break;
        }
        assert!(Instant::now() < deadline, "never streaming: {status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut command = world.command();
    command.args(["status", "alpha", "beta"]);
    let human = command.output().await.unwrap();
    let shown = String::from_utf8_lossy(&human.stdout);
    assert!(shown.contains("busy, streaming"), "{shown}");
    assert!(shown.contains("activity"), "{shown}");
    world.ok(&["cancel", "alpha", "beta"]).await;
}
