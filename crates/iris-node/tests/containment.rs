//! Multi-process, in the conformance style (the real Claude Code CLI's Bash tool, and
//! fake-claude's `!tool`, both in sessions of their own): a node is stopped (SIGTERM) or killed
//! (SIGKILL) while its agent runs a tool. In
//! cgroup mode nothing the agent started survives either for more than 2 s, and the tool's side
//! effect never happens. In the subreaper fallback SIGTERM is as clean, while after SIGKILL the
//! tool may run on until the node's next start kills it by its tag: the limit ARCHITECTURE.md
//! states. Its side effect never happens either way. `iris stats` names the mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

// Each suite uses its own share of the agents' scripts.
#[allow(dead_code)]
#[path = "../../../tests/conformance/agents.rs"]
mod agents;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agents::{Agent, processes_naming as tool_pids};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const IRIS: &str = env!("CARGO_BIN_EXE_iris");

/// fake-claude, next to `iris` (built if a run of this package alone has not built it).
fn fake_claude() -> PathBuf {
    let path = std::path::Path::new(IRIS).with_file_name("fake-claude");
    if !path.exists() {
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "fake-claude", "--bin", "fake-claude"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building fake-claude failed");
    }
    path
}
const STEP: Duration = Duration::from_secs(60);
const GONE_WITHIN: Duration = Duration::from_secs(2);

struct World {
    dir: tempfile::TempDir,
    agent: Agent,
    mode: &'static str,
}

impl World {
    fn new(mode: &'static str, agent: Agent) -> World {
        let world = World {
            dir: tempfile::tempdir().unwrap(),
            agent,
            mode,
        };
        let root = world.dir.path();
        for dir in ["alpha", "beta", "home/.claude"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let config = format!(
            r#"
[settings]
containment = "{mode}"

[database]
path = "{root}/data/iris.redb"

[agent]
command = {command:?}
env = {env}

[teams.alpha]
path = "{root}/alpha"

[teams.beta]
path = "{root}/beta"
grant_permission = "yes"
"#,
            root = root.display(),
            command = world.agent.command.display().to_string(),
            env = world.agent.env_toml(&root.join("home/.claude"), false),
        );
        std::fs::write(root.join("iris.toml"), config).unwrap();
        world
    }

    fn command(&self) -> Command {
        let mut command = Command::new(IRIS);
        command
            .arg("--config")
            .arg(self.dir.path().join("iris.toml"))
            .env("HOME", self.dir.path().join("home"))
            .env("CLAUDE_CONFIG_DIR", self.dir.path().join("home/.claude"))
            .env_remove("IRIS_CONFIG")
            .env_remove("IRIS_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn ok(&self, args: &[&str]) -> Value {
        let mut command = self.command();
        command.arg("--json").args(args);
        let out = tokio::time::timeout(STEP, command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "iris {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn start_node(&self) -> Child {
        let log = std::fs::File::create(self.dir.path().join("node.log")).unwrap();
        let mut command = self.command();
        command
            .args(["--json", "node", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("the node started in time")
            .unwrap()
            .expect("the node printed its start-up line");
        let started: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(started["containment"], self.mode, "{line}");
        child
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join("beta").join(name)
    }
}

/// Whether this machine lets us create cgroups (else cgroup mode is not tested, unless
/// `IRIS_REQUIRE_CGROUP` says it must be).
fn cgroup_available() -> bool {
    use iris_agent::containment::Containment;
    use iris_core::config::ContainmentSetting;
    match Containment::new(
        ContainmentSetting::Cgroup,
        &format!("probe-node-containment-test-{}", std::process::id()),
    ) {
        Ok(_) => true,
        Err(error) if std::env::var_os("IRIS_REQUIRE_CGROUP").is_some() => {
            panic!("IRIS_REQUIRE_CGROUP is set but {error}")
        }
        Err(error) => {
            eprintln!("cgroup containment is not tested here: {error}");
            false
        }
    }
}

async fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(node: &Child, signal: Signal) {
    let pid = i32::try_from(node.id().unwrap()).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

/// Starts a tool of `secs` through the node and waits until it runs.
async fn start_tool(world: &World, name: &str, secs: u64) -> PathBuf {
    let marker = world.marker(name);
    let message = world.agent.long_tool(secs, &marker);
    world
        .ok(&["tell", "alpha", "beta", &message, "--async"])
        .await;
    assert!(
        within(STEP, || !tool_pids(&marker).is_empty()).await,
        "the tool never started"
    );
    marker
}

async fn stop_and_check(mode: &'static str, agent: Agent, how: Signal) {
    let world = World::new(mode, agent);
    let mode = format!("{} in {mode} mode", world.agent.name());
    let mut node = world.start_node().await;
    let stats = world.ok(&["stats"]).await;
    assert!(mode.ends_with(&format!("{} mode", stats["containment"].as_str().unwrap())));
    // Longer than the node's graceful stop, so the agent cannot finish the turn first.
    let secs = 45;
    let marker = start_tool(&world, "tool", secs).await;
    let started = Instant::now();
    signal(&node, how);
    tokio::time::timeout(STEP, node.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        within(GONE_WITHIN, || tool_pids(&marker).is_empty()).await,
        "{mode}, node {how}: the tool outlived the node: {:?}",
        tool_pids(&marker)
    );
    // The tool writes its marker as it ends: gone before its time, it was killed, and the
    // side effect can never happen.
    assert!(started.elapsed() < Duration::from_secs(secs));
    assert!(
        !marker.exists(),
        "{mode}, node {how}: the tool's side effect happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cgroup_no_tool_survives_a_node_sigterm_or_sigkill() {
    if !cgroup_available() {
        return;
    }
    for how in [Signal::SIGTERM, Signal::SIGKILL] {
        for agent in Agent::all(&fake_claude()).await {
            stop_and_check("cgroup", agent, how).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_subreaper_sigterm_is_clean_and_the_next_start_reaps_what_sigkill_left() {
    for agent in Agent::all(&fake_claude()).await {
        stop_and_check("subreaper", agent, Signal::SIGTERM).await;
    }
    for agent in Agent::all(&fake_claude()).await {
        sigkill_then_restart(agent).await;
    }
}

/// The subreaper's limit and its remedy: SIGKILL leaves the tool, the next start kills it.
async fn sigkill_then_restart(agent: Agent) {
    let world = World::new("subreaper", agent);
    let mut node = world.start_node().await;
    let marker = start_tool(&world, "left", 60).await;
    signal(&node, Signal::SIGKILL);
    tokio::time::timeout(STEP, node.wait())
        .await
        .unwrap()
        .unwrap();
    // The documented limit: the guardian kills the agent's group, not the tool's session.
    // fake-claude's tool always outlives it, so the next start's reaping is always exercised.
    // The real CLI may still kill its own tool first (it reads EOF on stdin when the node dies,
    // and races the guardian), which is no guarantee and no failure either.
    let survived = !tool_pids(&marker).is_empty();
    if world.agent.dialect == agents::Dialect::Fake {
        assert!(survived, "fake-claude's tool died with the node");
    }
    let mut restarted = world.start_node().await;
    assert!(
        within(GONE_WITHIN, || tool_pids(&marker).is_empty()).await,
        "the next start did not kill the tool by its tag: {:?}",
        tool_pids(&marker)
    );
    assert!(
        !marker.exists(),
        "{}: the tool's side effect happened (it survived the node: {survived})",
        world.agent.name()
    );
    signal(&restarted, Signal::SIGTERM);
    tokio::time::timeout(STEP, restarted.wait())
        .await
        .unwrap()
        .unwrap();
}
