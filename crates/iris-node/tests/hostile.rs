//! Hostile files and clients, as a careless or hostile user would try them: planted endpoint
//! files, configuration paths that are devices or FIFOs, secrets in a team's environment, idle
//! connections that would exhaust the node's descriptors, a frozen node, malformed requests, and
//! the small gaps (truncated database, oversized values, dotted team names, spawn failures, a
//! deleted endpoint file). Real processes throughout: the `iris` binary, a node, fake-claude.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use iris_node::http::endpoint::{self, Endpoint};
use serde_json::Value;
use support::{IRIS, Node, Out, STEP, Scratch, http, until};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// The secret every test tries to leak.
const SECRET: &str = "PASSWORD-hostile-7f3a";

/// A scratch installation: teams alpha, beta and gamma (fake-claude), `leaky` (an agent that
/// prints its database URL, password included, to stderr and exits) and `broken` (fake-claude
/// told to fail its start). Every agent's environment holds [`SECRET`].
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
        World::with_extra("")
    }

    fn with_extra(extra: &str) -> World {
        let scratch = Scratch::new(&["alpha", "beta", "gamma", "leaky", "broken"]);
        let root = scratch.root();
        let script = root.join("leaky-agent.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"FATAL: cannot connect to $DATABASE_URL (password $DB_PASSWORD)\" >&2\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        scratch.write_config(&format!(
            r#"
[settings]
spawn_timeout = "20s"

[database]
path = "{db}"

[agent]
command = "fake-claude"
env = {{ DATABASE_URL = "postgres://app:{SECRET}@db.internal:5432/app", DB_PASSWORD = "{SECRET}" }}

[teams.alpha]
path = "{root}/alpha"

[teams.beta]
path = "{root}/beta"
mcp_config = '{{"mcpServers":{{"db":{{"command":"db-mcp","env":{{"DB_TOKEN":"{SECRET}"}}}}}}}}'

[teams.gamma]
path = "{root}/gamma"

[teams.leaky]
path = "{root}/leaky"
agent = {{ command = "{script}" }}

[teams.broken]
path = "{root}/broken"
agent = {{ env = {{ FAKE_CLAUDE_FAIL_START = "1" }} }}
{extra}
"#,
            db = scratch.db().display(),
            root = root.display(),
            script = script.display(),
        ));
        World { scratch }
    }

    /// `iris` for a command: the installation's, with the secret in the caller's environment
    /// too (a command must not leak what it inherits either).
    fn command(&self) -> Command {
        let mut command = self.scratch.command();
        command.env(
            "DATABASE_URL",
            format!("postgres://app:{SECRET}@from-env/app"),
        );
        command
    }

    /// Runs `iris --json ARGS…` to its end.
    async fn iris(&self, args: &[&str]) -> Out {
        self.iris_with(args, &[]).await
    }

    /// Runs `iris --json ARGS…` with extra environment variables.
    async fn iris_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut command = self.command();
        for (name, value) in env {
            command.env(name, value);
        }
        support::run(command, args).await
    }

    async fn ok(&self, args: &[&str]) -> Value {
        let out = self.iris(args).await;
        assert_eq!(out.code, Some(0), "{out:#?}");
        out.json
    }

    /// Starts `iris node`, optionally under a descriptor limit.
    async fn start_node(&self, nofile: Option<u32>) -> Node {
        let command = match nofile {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                self.prepare(&mut command);
                command
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg(IRIS)
                    .arg("--config")
                    .arg(self.config());
                command
            }
            None => self.scratch.command(),
        };
        let node = self.scratch.start_node(command).await;
        assert_eq!(
            node.started.endpoint_file.as_deref(),
            Some(self.endpoint_file().as_path())
        );
        node
    }
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_no_output_no_error_and_not_the_database() {
    let world = World::new();
    world.ok(&["tell", "alpha", "beta", "hello"]).await;
    world.ok(&["wake", "alpha", "gamma"]).await;
    let mut shown = Vec::new();
    for args in [
        &["sessions", "show", "alpha", "beta"][..],
        &["sessions", "list"],
        &["teams", "--from", "alpha"],
        &["status", "alpha", "beta"],
    ] {
        shown.push((args.join(" "), world.ok(args).await.to_string()));
    }
    let record = world.ok(&["sessions", "show", "alpha", "beta"]).await;
    let launch = record["launch_command"].as_str().unwrap();
    assert!(
        launch.contains("DATABASE_URL="),
        "names are shown: {launch}"
    );
    let snapshot = record["team_config_snapshot"].as_str().unwrap();
    assert!(snapshot.contains("DATABASE_URL"), "{snapshot}");
    assert!(snapshot.contains("db-mcp"), "{snapshot}");

    // An agent that prints its secrets to stderr and exits: the error quotes its stderr, but
    // not the secrets.
    let failed = world.iris(&["tell", "alpha", "leaky", "hello"]).await;
    assert_ne!(failed.code, Some(0), "{failed:#?}");
    assert!(
        failed
            .error_message()
            .contains("FATAL: cannot connect to <redacted>"),
        "the stderr tail is quoted, redacted: {failed:#?}"
    );
    shown.push(("failed tell".into(), format!("{failed:?}")));
    let woken = world.iris(&["wake-all", "alpha"]).await;
    shown.push(("wake-all".into(), format!("{woken:?}")));
    let report = world.iris(&["report", "alpha", "leaky"]).await;
    shown.push(("report".into(), format!("{report:?}")));
    // Text output too.
    let mut command = world.command();
    command.args(["sessions", "show", "alpha", "beta"]);
    let text = command.output().await.unwrap();
    shown.push((
        "sessions show (text)".into(),
        String::from_utf8_lossy(&text.stdout).into_owned(),
    ));
    for (what, text) in &shown {
        assert_no_secret(what, text);
    }

    // Nowhere in the database file's bytes either.
    let bytes = std::fs::read(world.db()).unwrap();
    let found = bytes
        .windows(SECRET.len())
        .filter(|w| *w == SECRET.as_bytes())
        .count();
    assert_eq!(found, 0, "the database holds the secret {found} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_hides_values_unless_asked() {
    let world = World::with_extra(
        "\n[teams.envy]\npath = \"${HOME}\"\nagent = { env = { URL = \"${DATABASE_URL}\" } }\n",
    );
    let text = world.iris(&["config", "check"]).await;
    // (`--json` was given: the JSON form.)
    assert_eq!(text.code, Some(0), "{text:#?}");
    assert_no_secret("config check --json", &text.stdout);
    assert!(
        text.stdout.contains("<hidden: ${DATABASE_URL}>"),
        "{text:#?}"
    );
    let mut plain = world.command();
    plain.args(["config", "check"]);
    let plain = plain.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&plain.stdout);
    assert!(plain.status.success(), "{stdout}");
    assert_no_secret("config check", &stdout);
    assert!(stdout.contains("<hidden: ${HOME}>"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("--show-values"),
        "it says how to see them"
    );
    let shown = world.iris(&["config", "check", "--show-values"]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    assert!(shown.stdout.contains(SECRET), "asked for: {shown:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_fifos_and_planted_endpoint_files_are_refused() {
    let world = World::new();
    // A device as the configuration: refused at once, not read.
    let started = Instant::now();
    let mut command = Command::new(IRIS);
    command.args(["--json", "--config", "/dev/zero", "stats"]);
    let out = tokio::time::timeout(STEP, command.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("character device"),
        "{error}"
    );
    // A FIFO nobody writes: refused without blocking.
    let fifo = world.root().join("fifo.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut command = Command::new(IRIS);
    command
        .arg("--json")
        .arg("--config")
        .arg(&fifo)
        .arg("stats");
    let out = tokio::time::timeout(STEP, command.output())
        .await
        .expect("a FIFO does not block")
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FIFO"));
    assert!(started.elapsed() < STEP);

    // A planted endpoint file, while the database is held (as by a node): the CLI refuses it
    // and sends nothing to the address it names.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let held = iris_store::Store::open(world.db()).unwrap();
    let me = std::process::id();
    let planted = Endpoint {
        addr: trap_addr,
        pid: me,
        token: endpoint::new_token().unwrap(),
        start_ticks: iris_agent::procfs::stat(me).map(|s| s.start_ticks),
    };
    let data = world.db().parent().unwrap().to_path_buf();
    let file = world.endpoint_file();
    // Others may write the directory.
    std::fs::write(&file, serde_json::to_vec(&planted).unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = world.iris(&["stats"]).await;
    assert_eq!(out.code, Some(6), "{out:#?}");
    assert_eq!(out.error_code(), "NODE_UNAVAILABLE");
    assert!(out.error_message().contains("refusing"), "{out:#?}");
    assert!(
        out.error_message().contains("writable by other users"),
        "{out:#?}"
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Others may write the file.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = world.iris(&["stats"]).await;
    assert_eq!(out.error_code(), "NODE_UNAVAILABLE", "{out:#?}");
    assert!(out.error_message().contains("0666"), "{out:#?}");
    // Someone else owns it (only root can arrange that).
    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
        let out = world.iris(&["stats"]).await;
        assert_eq!(out.error_code(), "NODE_UNAVAILABLE", "{out:#?}");
        assert!(
            out.error_message().contains("owned by uid 65534"),
            "{out:#?}"
        );
    }
    // The trap never saw a connection.
    let accepted = tokio::time::timeout(Duration::from_millis(100), trap.accept()).await;
    assert!(
        accepted.is_err(),
        "the CLI connected to the planted address"
    );
    drop(held);
    // Without a node holding the database, the planted file is removed and the command runs.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    world.ok(&["stats"]).await;
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_gaps_each_give_a_clear_error() {
    let world = World::new();
    world.ok(&["stats"]).await;

    // A value far too long is echoed clipped.
    let huge = "x".repeat(20_000);
    let out = world.iris(&["tell", "alpha", &huge, "hi"]).await;
    assert_eq!(out.error_code(), "VALIDATION_ERROR", "{out:#?}");
    assert!(
        out.error_message().len() < 600,
        "{} bytes",
        out.error_message().len()
    );

    // A dotted team name's hint is a table header one can paste.
    let out = world.iris(&["tell", "alpha", "b.c", "hi"]).await;
    assert_eq!(out.error_code(), "TEAM_NOT_FOUND", "{out:#?}");
    assert!(out.error_message().contains(r#"[teams."b.c"]"#), "{out:#?}");

    // A database cut short says so.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(world.db())
        .unwrap();
    file.set_len(100).unwrap();
    drop(file);
    let out = world.iris(&["stats"]).await;
    assert_eq!(out.error_code(), "STORE_CORRUPT", "{out:#?}");
    assert!(out.error_message().contains("truncated"), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_refuses_what_it_does_not_understand_clearly() {
    let world = World::new();
    let node = world.start_node(None).await;
    let endpoint = world.endpoint();
    let url = endpoint.url();
    let client = http();
    let command = |body: &'static str| {
        client
            .post(format!("{url}/api/v1/command"))
            .bearer_auth(&endpoint.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // A misspelt field is refused, not ignored.
    let response =
        command(r#"{"command":"tell","from":"alpha","to":"beta","message":"hi","timout":"1s"}"#)
            .await
            .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "USAGE_ERROR", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timout")
    );
    let response = command(r#"{"command":"stats","verbose":true}"#)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // A zero timeout is refused, as on the command line.
    let response =
        command(r#"{"command":"tell","from":"alpha","to":"beta","message":"hi","timeout":"0s"}"#)
            .await
            .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "USAGE_ERROR", "{body}");
    let cli = world
        .iris(&["tell", "alpha", "beta", "hi", "--timeout", "0s"])
        .await;
    assert_eq!(cli.code, Some(2), "{cli:#?}");

    // A GET on the command route: 405 with a JSON error.
    let response = client
        .get(format!("{url}/api/v1/command"))
        .bearer_auth(&endpoint.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "USAGE_ERROR", "{body}");

    // Malformed MCP JSON: a JSON-RPC parse error.
    let response = client
        .post(format!("{url}/mcp"))
        .bearer_auth(&endpoint.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{ this is not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], -32700, "{body}");

    // The 401 names no file.
    let response = client
        .get(format!("{url}/healthz"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    let dir = world.root().display().to_string();
    assert!(!body.contains(&dir), "{body}");
    assert!(!body.contains(".node"), "{body}");

    // A spawn that fails is counted.
    let failed = world.iris(&["tell", "alpha", "broken", "hi"]).await;
    assert_ne!(failed.code, Some(0), "{failed:#?}");
    let metrics = support::scrape_metrics(&url, &endpoint.token).await;
    let failures: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("iris_spawn_failures_total "))
        .unwrap_or_else(|| panic!("no iris_spawn_failures_total in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(failures >= 1, "{metrics}");

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_endpoint_file_is_written_again() {
    let world = World::new();
    let node = world.start_node(None).await;
    let before = world.endpoint();
    std::fs::remove_file(world.endpoint_file()).unwrap();
    let file = world.endpoint_file();
    until("the endpoint file is back", || file.exists()).await;
    // Written whole (atomically), and the same endpoint.
    assert_eq!(world.endpoint(), before);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Commands find the node through it.
    assert_eq!(world.ok(&["stats"]).await["live_actors"], 0);
    node.stop().await;
    assert!(
        !file.exists(),
        "a stopping node removes it and does not put it back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_fails_its_clients_and_a_long_turn_is_not_cut() {
    let world = World::new();
    let node = world.start_node(None).await;
    let url = world.endpoint().url();
    // A turn longer than the client's silence deadline completes: the node's heartbeats show
    // it is alive meanwhile.
    let long = world
        .iris_with(
            &["tell", "alpha", "beta", "!sleep 3000"],
            &[(iris_node::http::client::IDLE_TIMEOUT_VAR, "1s")],
        )
        .await;
    assert_eq!(long.code, Some(0), "{long:#?}");
    assert_eq!(long.json["status"], "completed", "{long:#?}");

    // A frozen node: the client gives up after its silence deadline, saying so.
    node.signal(nix::sys::signal::Signal::SIGSTOP);
    let frozen = world
        .iris_with(
            &["tell", "alpha", "beta", "hello"],
            &[(iris_node::http::client::IDLE_TIMEOUT_VAR, "2s")],
        )
        .await;
    node.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(frozen.code, Some(6), "{frozen:#?}");
    assert_eq!(frozen.error_code(), "NODE_UNAVAILABLE");
    assert!(
        frozen.error_message().contains("did not answer"),
        "{frozen:#?}"
    );
    assert!(frozen.error_message().contains(&url), "{frozen:#?}");
    // Thawed, it answers again.
    world.ok(&["stats"]).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_under_a_low_descriptor_limit_do_not_starve_a_tell() {
    let world = World::new();
    let node = world.start_node(Some(64)).await;
    let endpoint = world.endpoint();
    world.ok(&["tell", "alpha", "beta", "warm up"]).await;
    // 80 connections that never say anything, more than the node has descriptors for.
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(tokio::net::TcpStream::connect(endpoint.addr).await.unwrap());
    }
    // A warm tell is answered well before any header timeout could have freed a slot.
    let started = Instant::now();
    let tell = world.iris(&["tell", "alpha", "beta", "still there?"]).await;
    let took = started.elapsed();
    assert_eq!(tell.code, Some(0), "{tell:#?}");
    assert_eq!(tell.json["response"], "echo: still there?");
    assert!(
        took < iris_node::http::serve::HEADER_READ_TIMEOUT / 2,
        "the tell took {took:?} behind idle connections"
    );
    // The idle connections were closed to make room, not left to hold descriptors.
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(10), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was closed");
    drop(idle);
    node.stop().await;
}
