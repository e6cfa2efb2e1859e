//! Multi-process: a node is stopped (SIGTERM) or killed (SIGKILL) while its agent runs a tool
//! in a session of its own (fake-claude's `!tool`, which is how the real CLI runs Bash). In
//! cgroup mode nothing the agent started survives either for more than 2 s, and the tool's side
//! effect never happens. In the subreaper fallback SIGTERM is as clean, while after SIGKILL the
//! tool runs on until the node's next start kills it by its tag: the limit ARCHITECTURE.md
//! states. `iris stats` names the mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const IRIS: &str = env!("CARGO_BIN_EXE_iris");
const STEP: Duration = Duration::from_secs(60);
const GONE_WITHIN: Duration = Duration::from_secs(2);

struct World {
    dir: tempfile::TempDir,
    mode: &'static str,
}

impl World {
    fn new(mode: &'static str) -> World {
        let world = World {
            dir: tempfile::tempdir().unwrap(),
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
command = "fake-claude"

[teams.alpha]
path = "{root}/alpha"

[teams.beta]
path = "{root}/beta"
grant_permission = "yes"
"#,
            root = root.display(),
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
        tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("the node started in time")
            .unwrap()
            .expect("the node printed its start-up line");
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
    match Containment::new(ContainmentSetting::Cgroup, "probe-node-containment-test") {
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

/// Live processes whose command line names `marker` (the tool's own argument).
fn tool_pids(marker: &Path) -> Vec<u32> {
    let needle = marker.display().to_string();
    iris_agent::procfs::all_stats()
        .into_iter()
        .filter(|s| s.is_alive())
        .filter(|s| {
            iris_agent::procfs::cmdline(s.pid).is_some_and(|args| args.iter().any(|a| a == &needle))
        })
        .map(|s| s.pid)
        .collect()
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

/// Starts a tool of `ms` through the node and waits until it runs.
async fn start_tool(world: &World, name: &str, ms: u64) -> PathBuf {
    let marker = world.marker(name);
    world
        .ok(&[
            "tell",
            "alpha",
            "beta",
            &format!("!tool {ms} {name}"),
            "--async",
        ])
        .await;
    assert!(
        within(STEP, || !tool_pids(&marker).is_empty()).await,
        "the tool never started"
    );
    marker
}

async fn stop_and_check(mode: &'static str, how: Signal) {
    let world = World::new(mode);
    let mut node = world.start_node().await;
    let stats = world.ok(&["stats"]).await;
    assert_eq!(stats["containment"], mode, "{stats:#}");
    // Longer than the node's graceful stop, so the agent cannot finish the turn first.
    let ms = 45_000;
    let marker = start_tool(&world, "tool", ms).await;
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
    assert!(started.elapsed() < Duration::from_millis(ms));
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
    stop_and_check("cgroup", Signal::SIGTERM).await;
    stop_and_check("cgroup", Signal::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_subreaper_sigterm_is_clean_and_the_next_start_reaps_what_sigkill_left() {
    stop_and_check("subreaper", Signal::SIGTERM).await;

    let world = World::new("subreaper");
    let mut node = world.start_node().await;
    let marker = start_tool(&world, "left", 60_000).await;
    signal(&node, Signal::SIGKILL);
    tokio::time::timeout(STEP, node.wait())
        .await
        .unwrap()
        .unwrap();
    // The documented limit: the guardian kills the agent's group, not the tool's session.
    assert!(!tool_pids(&marker).is_empty());
    let mut restarted = world.start_node().await;
    assert!(
        within(GONE_WITHIN, || tool_pids(&marker).is_empty()).await,
        "the next start did not kill the tool by its tag: {:?}",
        tool_pids(&marker)
    );
    signal(&restarted, Signal::SIGTERM);
    tokio::time::timeout(STEP, restarted.wait())
        .await
        .unwrap()
        .unwrap();
}
