//! The conformance scenarios through the `iris` binary, as users run it, against the real Claude
//! Code CLI (pinned, offline against the loopback mock API) and against fake-claude, with the
//! same assertions: embedded (every command is its own runtime, so every command is a restart)
//! and through a node (agents stay warm; the clients talk HTTP). See `tests/conformance.rs` at
//! the workspace root for the `Runtime`-level list and how the real CLI is found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Each suite uses its own share of the agents' scripts.
#[allow(dead_code)]
#[path = "../../../tests/conformance/agents.rs"]
mod agents;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agents::Agent;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const IRIS: &str = env!("CARGO_BIN_EXE_iris");

/// How long one command may take (the real CLI resumes in about a second).
const STEP: Duration = Duration::from_secs(60);

/// A binary of this workspace (package and binary `name`), next to `iris`; built if missing (a
/// test run of one package builds only that package's binaries).
fn workspace_binary(name: &str) -> PathBuf {
    let path = Path::new(IRIS).with_file_name(name);
    if !path.exists() {
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", name, "--bin", name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building {name} failed");
    }
    path
}

/// A config file with teams alpha and beta for one agent, default settings.
struct World {
    root: tempfile::TempDir,
    agent: Agent,
}

impl World {
    /// A world whose team beta's table also holds `beta_extra` (TOML).
    fn new(agent: Agent, beta_extra: &str) -> World {
        let root = tempfile::tempdir().unwrap();
        for dir in ["home", "claude", "teams/alpha", "teams/beta"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let env = agent.env_toml(&root.path().join("claude"), false);
        let config = format!(
            "[agent]\ncommand = {:?}\nenv = {env}\n\n\
             [teams.alpha]\npath = \"teams/alpha\"\ngrant_permission = \"yes\"\n\n\
             [teams.beta]\npath = \"teams/beta\"\ngrant_permission = \"yes\"\n{beta_extra}\n",
            agent.command.display().to_string()
        );
        std::fs::write(root.path().join("iris.toml"), config).unwrap();
        World { root, agent }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(IRIS);
        command
            .arg("--config")
            .arg(self.root.path().join("iris.toml"))
            .env("HOME", self.root.path().join("home"))
            .env_remove("IRIS_CONFIG")
            .env_remove("IRIS_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `iris --json ARGS…` to its end: the exit code and the JSON document.
    async fn iris(&self, args: &[&str]) -> (Option<i32>, Value) {
        let mut command = self.command();
        command.arg("--json").args(args);
        let output = tokio::time::timeout(STEP, command.output())
            .await
            .unwrap_or_else(|_| panic!("iris {args:?} did not finish within {STEP:?}"))
            .unwrap();
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "iris {args:?}: stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code(), json)
    }

    /// `iris tell alpha beta MESSAGE`, which must complete: its JSON.
    async fn tell(&self, message: &str) -> Value {
        let (code, reply) = self.iris(&["tell", "alpha", "beta", message]).await;
        assert_eq!(code, Some(0), "{}: {reply:#}", self.agent.name());
        assert_eq!(reply["status"], "completed", "{}", self.agent.name());
        reply
    }

    /// Where the agent keeps team beta's transcript of conversation `id`.
    fn transcript(&self, id: &str) -> PathBuf {
        let project = self.root.path().join("teams/beta").canonicalize().unwrap();
        iris_core::transcript::TranscriptLocator::new(self.root.path().join("claude"))
            .transcript_path(&project, &iris_core::SessionId::parse(id).unwrap())
    }

    /// A node on this world's database, up once it has printed its start-up line.
    async fn start_node(&self) -> Child {
        let mut command = self.command();
        command
            .args(["--json", "node", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(STEP, BufReader::new(stdout).lines().next_line())
            .await
            .expect("the node started in time")
            .unwrap()
            .expect("the node printed its start-up line");
        assert!(line.contains("endpoint"), "{line}");
        child
    }
}

/// Stops a node with SIGTERM and waits for it (its agents stop with it).
async fn stop_node(mut node: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(node.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(STEP, node.wait())
        .await
        .expect("the node stopped in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Polls `iris --json report` until the newest turn is final.
async fn newest_final_turn(world: &World) -> Value {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (_, turns) = world.iris(&["report", "alpha", "beta"]).await;
        let newest = turns[0].clone();
        if !["queued", "running"].contains(&newest["status"].as_str().unwrap_or("")) {
            return newest;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn did not end: {newest:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- the scenarios -----

/// Embedded, every command a restart: each tell resumes the conversation with its context;
/// `tell --json`, `report` and `sessions show` agree on the exact cost; an API error exits 5
/// with a sentence.
async fn embedded_commands_resume_and_cost_exactly(world: World) {
    let agent = &world.agent;
    let first = world.tell("hi").await;
    assert_eq!(first["response"], agent.echo("hi", 1), "{}", agent.name());
    let second = world.tell("second").await;
    assert_eq!(
        second["response"],
        agent.echo("second", 2),
        "{}",
        agent.name()
    );
    for (reply, text, n) in [(&first, "hi", 1), (&second, "second", 2)] {
        let cost = reply["cost_usd"].as_f64().unwrap();
        assert!(
            close(cost, agent.echo_cost(text, n)),
            "{}: {cost}",
            agent.name()
        );
    }

    let (code, turns) = world.iris(&["report", "alpha", "beta"]).await;
    assert_eq!(code, Some(0));
    let turns = turns.as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert!(
        turns.iter().all(|t| t["started_at"].is_string()),
        "{turns:#?}"
    );
    let ledger: f64 = turns
        .iter()
        .map(|t| t["usage"]["cost_usd"].as_f64().unwrap())
        .sum();
    let (_, session) = world.iris(&["sessions", "show", "alpha", "beta"]).await;
    let total = session["usage"]["cost_usd"].as_f64().unwrap();
    assert!(
        close(total, ledger),
        "{}: {total} vs {ledger}",
        agent.name()
    );

    let (code, failed) = world
        .iris(&["tell", "alpha", "beta", &agent.api_error(400)])
        .await;
    assert_eq!(code, Some(5), "{}: {failed:#}", agent.name());
    assert_eq!(failed["status"], "failed");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("API error (HTTP 400)"),
        "{}: {message}",
        agent.name()
    );
}

/// Through a node: a warm agent answers in context, an asynchronous turn is cancelled, the
/// conversation is compacted (the agent confirms it), and a node restart resumes it.
async fn node_commands_cancel_compact_and_resume(world: World) {
    let agent = &world.agent;
    let node = world.start_node().await;
    let session = world.tell("one").await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(world.tell("two").await["response"], agent.echo("two", 2));

    let (code, accepted) = world
        .iris(&["tell", "alpha", "beta", &agent.slow(), "--async"])
        .await;
    assert_eq!(code, Some(0), "{accepted:#}");
    assert_eq!(accepted["status"], "accepted");
    let (code, _) = world.iris(&["cancel", "alpha", "beta"]).await;
    assert_eq!(code, Some(0));
    let cancelled = newest_final_turn(&world).await;
    assert_eq!(
        cancelled["status"],
        "cancelled",
        "{}: {cancelled:#}",
        agent.name()
    );

    let (code, compacted) = world.iris(&["sessions", "compact", &session]).await;
    assert_eq!(code, Some(0), "{}: {compacted:#}", agent.name());
    assert_eq!(compacted["message_count"], 0, "{compacted:#}");
    stop_node(node).await;

    let node = world.start_node().await;
    let after = world.tell("after restart").await;
    assert!(
        after["response"]
            .as_str()
            .unwrap()
            .starts_with("echo: after restart (turns seen: "),
        "{}: {after:#}",
        agent.name()
    );
    stop_node(node).await;
}

/// Embedded: a tool call runs when permitted, several text blocks end in the last, and an MCP
/// server from the team's `mcp_config` answers the model's tool call.
async fn embedded_tools_blocks_and_mcp(world: World) {
    let agent = &world.agent;
    let tool = world.tell(&agent.tool("marker")).await;
    assert!(
        tool["response"]
            .as_str()
            .unwrap()
            .starts_with("after tool:"),
        "{}: {tool:#}",
        agent.name()
    );
    assert!(
        world.root.path().join("teams/beta/marker").exists(),
        "{}",
        agent.name()
    );
    let blocks = world.tell(&agent.blocks(&["a1", "b2", "c3"])).await;
    assert_eq!(blocks["response"], "c3", "{}", agent.name());
    let mcp = world
        .tell(&agent.mcp("mcp__probe__echo", r#"{"text": "over mcp"}"#))
        .await;
    assert_eq!(mcp["response"], "after mcp: over mcp", "{}", agent.name());
}

/// Embedded: after a `/clear` the conversation goes on under its new id; a reboot removes both
/// transcripts; a transcript that disappears restarts the conversation, and `report` says the
/// history was lost.
async fn embedded_clear_reboot_and_lost_history(world: World) {
    let agent = &world.agent;
    let first = world.tell("one").await;
    let id = first["session_id"].as_str().unwrap().to_owned();
    world.tell("/clear").await;
    let (_, session) = world.iris(&["sessions", "show", "alpha", "beta"]).await;
    let new_id = session["agent_session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no new id after /clear: {session:#}", agent.name()))
        .to_owned();
    let after = world.tell("after clear").await;
    assert!(
        after["response"]
            .as_str()
            .unwrap()
            .starts_with("echo: after clear"),
        "{after:#}"
    );
    let (old, new) = (world.transcript(&id), world.transcript(&new_id));
    assert!(old.exists() && new.exists(), "{}", agent.name());
    let (code, rebooted) = world.iris(&["sessions", "reboot", "alpha", "beta"]).await;
    assert_eq!(code, Some(0), "{rebooted:#}");
    assert!(
        !old.exists() && !new.exists(),
        "{}: reboot removes both",
        agent.name()
    );

    let fresh = world.tell("x").await;
    let transcript = world.transcript(fresh["session_id"].as_str().unwrap());
    std::fs::remove_file(&transcript).unwrap();
    let again = world.tell("y").await;
    assert_eq!(again["response"], agent.echo("y", 1), "{}", agent.name());
    let (_, turns) = world.iris(&["report", "alpha", "beta"]).await;
    assert_eq!(
        turns[0]["history_lost"],
        true,
        "{}: {turns:#}",
        agent.name()
    );
}

/// Runs `$scenario` against every agent, in a world whose team beta also holds `$beta_extra`.
macro_rules! for_each_agent {
    ($scenario:ident) => {
        for_each_agent!($scenario, "")
    };
    ($scenario:ident, $beta_extra:expr) => {
        for agent in Agent::all(&workspace_binary("fake-claude")).await {
            eprintln!(
                "conformance: {} against {}",
                stringify!($scenario),
                agent.name()
            );
            $scenario(World::new(agent, $beta_extra)).await;
        }
    };
}

/// Team beta's MCP server: anthropic-mock's stdio server (tools `list_teams` and `echo`).
fn probe_server() -> String {
    let mock = workspace_binary("anthropic-mock");
    format!(
        "[teams.beta.mcp_config.mcpServers.probe]\ncommand = {:?}\nargs = [\"--mcp-stdio\"]\n",
        mock.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_embedded_commands() {
    for_each_agent!(embedded_commands_resume_and_cost_exactly);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_node_commands() {
    for_each_agent!(node_commands_cancel_compact_and_resume);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_embedded_tools_blocks_and_mcp() {
    for_each_agent!(embedded_tools_blocks_and_mcp, &probe_server());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_embedded_clear_reboot_and_lost_history() {
    for_each_agent!(embedded_clear_reboot_and_lost_history);
}
