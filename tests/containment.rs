//! Containment through the runtime, in the conformance style: against the real Claude Code CLI
//! (its Bash tool, which runs each command in a session of its own) and fake-claude (`!tool`,
//! `!daemon`: subprocesses in sessions of their own), with the same assertions. Whatever way an
//! agent is stopped (forced sleep, cancel, crash mid-tool, stall, idle stop, eviction, the
//! runtime's shutdown as on a node SIGTERM), the tool it started is gone within 2 s, long
//! before it would have created its marker, so the side effect never happens.
//!
//! Each scenario runs in the default mode (`auto`: a cgroup where this machine lets us create
//! one; `IRIS_REQUIRE_CGROUP=1` makes its absence a failure) and in the subreaper fallback,
//! chosen by configuration. A node SIGKILL is in `crates/iris-node/tests/containment.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

#[allow(dead_code)]
#[path = "conformance/agents.rs"]
mod agents;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agents::Agent;
use iris::agent::containment::{Containment, ContainmentMode};
use iris::core::config::{Config, ContainmentSetting};
use iris::core::{Coded, ErrorCode, ProcessState, TeamName};
use iris::runtime::{Runtime, TellOptions, TellOutcome};
use iris::store::Store;

/// How long a killed tool may linger (the bound).
const GONE_WITHIN: Duration = Duration::from_secs(2);
/// How long each tool would run if it were not killed: far longer than any scenario, so a tool
/// that is gone was killed, and its marker (created as it ends) can never appear.
const TOOL_SECS: u64 = 60;

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

/// The modes to test: the default (a cgroup here, where possible) and the subreaper fallback.
fn modes() -> Vec<ContainmentSetting> {
    let cgroup = match Containment::new(
        ContainmentSetting::Cgroup,
        &format!("probe-containment-test-{}", std::process::id()),
    ) {
        Ok(_) => true,
        Err(error) if std::env::var_os("IRIS_REQUIRE_CGROUP").is_some() => {
            panic!("IRIS_REQUIRE_CGROUP is set but {error}")
        }
        Err(error) => {
            eprintln!("cgroup containment is not tested here: {error}");
            false
        }
    };
    if cgroup {
        vec![ContainmentSetting::Auto, ContainmentSetting::Subreaper]
    } else {
        vec![ContainmentSetting::Subreaper]
    }
}

/// One scenario's world: team directories, the agent's config dir, a database.
struct World {
    root: tempfile::TempDir,
    agent: Agent,
    mode: ContainmentSetting,
}

impl World {
    fn new(agent: Agent, mode: ContainmentSetting) -> World {
        World {
            root: tempfile::tempdir().unwrap(),
            agent,
            mode,
        }
    }

    fn what(&self) -> String {
        format!("{} in {} mode", self.agent.name(), self.mode.as_str())
    }

    /// A runtime with teams `a` and each of `teams` (`(name, extra TOML)`), and `settings`.
    async fn runtime(&self, settings: &str, teams: &[(&str, &str)]) -> Runtime {
        let claude = self.root.path().join("claude");
        std::fs::create_dir_all(&claude).unwrap();
        let mut toml = format!(
            "[settings]\ncontainment = \"{}\"\n{settings}\n[agent]\ncommand = {:?}\nenv = {}\n",
            self.mode.as_str(),
            self.agent.command.display().to_string(),
            self.agent.env_toml(&claude, false)
        );
        for (name, extra) in std::iter::once(&("a", "")).chain(teams) {
            std::fs::create_dir_all(self.root.path().join("teams").join(name)).unwrap();
            toml.push_str(&format!(
                "[teams.{name}]\npath = \"teams/{name}\"\ngrant_permission = \"yes\"\n{extra}\n"
            ));
        }
        let config =
            Config::from_toml_str(&toml, self.root.path(), "containment.toml", &|_| None).unwrap();
        let store = Store::open(self.root.path().join("data/iris.redb")).unwrap();
        let runtime = Runtime::start(config, store).await.unwrap();
        if self.mode == ContainmentSetting::Subreaper {
            assert_eq!(runtime.containment(), ContainmentMode::Subreaper);
        } else {
            assert_eq!(runtime.containment(), ContainmentMode::Cgroup);
        }
        runtime
    }

    /// A tool run by team `to`'s agent, named `name`.
    fn tool(&self, to: &str, name: &str) -> Tool {
        Tool {
            marker: self.root.path().join("teams").join(to).join(name),
            started: None,
        }
    }
}

/// A long tool in a session of its own, which creates its marker when it ends.
struct Tool {
    marker: PathBuf,
    started: Option<Instant>,
}

impl Tool {
    /// The message that makes the agent run the tool and wait for it.
    fn run(&self, agent: &Agent) -> String {
        agent.long_tool(TOOL_SECS, &self.marker)
    }

    /// The message that makes the agent start the tool in the background and end its turn.
    fn leave_running(&self, agent: &Agent) -> String {
        agent.background_tool(TOOL_SECS, &self.marker)
    }

    fn pids(&self) -> Vec<u32> {
        agents::processes_naming(&self.marker)
    }

    /// Waits until the tool runs.
    async fn running(&mut self, what: &str) {
        assert!(
            within(Duration::from_secs(60), || !self.pids().is_empty()).await,
            "{what}: the tool never started"
        );
        self.started = Some(Instant::now());
    }

    /// The tool is gone within [`GONE_WITHIN`], long before its time, so its side effect can
    /// never happen.
    async fn assert_killed(&self, what: &str) {
        assert!(
            within(GONE_WITHIN, || self.pids().is_empty()).await,
            "{what}: the tool outlived its agent: {:?}",
            self.pids()
        );
        assert!(self.started.unwrap().elapsed() < Duration::from_secs(TOOL_SECS));
        assert!(
            !self.marker.exists(),
            "{what}: the tool's side effect happened"
        );
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

/// The pid of the pair's agent, from its record (written without waiting: polled).
async fn agent_pid(rt: &Runtime, from: &TeamName, to: &TeamName) -> u32 {
    let mut pid = None;
    within(Duration::from_secs(10), || {
        pid = rt
            .get_session(from, to)
            .ok()
            .flatten()
            .and_then(|r| r.agent_process)
            .map(|m| m.pid);
        pid.is_some()
    })
    .await;
    pid.expect("the agent's process is recorded")
}

fn failed(what: &str, outcome: TellOutcome) -> iris::runtime::TurnError {
    match outcome {
        TellOutcome::Failed { error, .. } => error,
        other => panic!("{what}: expected a failed turn, got {other:?}"),
    }
}

/// Runs `scenario` for every agent in every mode.
macro_rules! for_each_agent_and_mode {
    ($scenario:ident) => {
        for mode in modes() {
            for agent in Agent::all(support::fake_claude()).await {
                let world = World::new(agent, mode);
                eprintln!(
                    "containment: {} against {}",
                    stringify!($scenario),
                    world.what()
                );
                $scenario(world).await;
            }
        }
    };
}

async fn forced_sleep_and_cancel(world: World) {
    let what = world.what();
    let rt = world.runtime("", &[("b", ""), ("c", "")]).await;
    let (a, b, c) = (team("a"), team("b"), team("c"));

    let mut tool = world.tool("b", "forced");
    let turn = rt.submit(&a, &b, tool.run(&world.agent)).await.unwrap();
    tool.running(&what).await;
    rt.sleep(&a, &b, true).await.unwrap();
    failed(&what, turn.outcome().await);
    tool.assert_killed(&format!("{what}, forced sleep")).await;

    let mut tool = world.tool("c", "cancelled");
    let turn = rt.submit(&a, &c, tool.run(&world.agent)).await.unwrap();
    tool.running(&what).await;
    rt.cancel(&a, &c, false).await.unwrap();
    failed(&what, turn.outcome().await);
    tool.assert_killed(&format!("{what}, cancel")).await;
    rt.shutdown(Duration::from_secs(5)).await;
}

async fn crash_mid_tool(world: World) {
    let what = world.what();
    let rt = world.runtime("", &[("b", "")]).await;
    let (a, b) = (team("a"), team("b"));
    let mut tool = world.tool("b", "crashed");
    let turn = rt.submit(&a, &b, tool.run(&world.agent)).await.unwrap();
    tool.running(&what).await;
    let agent = agent_pid(&rt, &a, &b).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &agent.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    failed(&what, turn.outcome().await);
    tool.assert_killed(&format!("{what}, crash mid-tool")).await;
    rt.shutdown(Duration::from_secs(5)).await;
}

async fn stall_mid_tool(world: World) {
    let what = world.what();
    // A frozen agent prints nothing and uses no CPU; its open tool call counts as progress
    // only within tool_timeout.
    let settings = "response_timeout = \"2s\"\ntool_timeout = \"1s\"";
    let rt = world.runtime(settings, &[("b", "")]).await;
    let (a, b) = (team("a"), team("b"));
    let mut tool = world.tool("b", "stalled");
    let turn = rt.submit(&a, &b, tool.run(&world.agent)).await.unwrap();
    tool.running(&what).await;
    let agent = agent_pid(&rt, &a, &b).await;
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &agent.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let error = failed(&what, turn.outcome().await);
    assert_eq!(error.code(), ErrorCode::Timeout, "{what}: {error}");
    tool.assert_killed(&format!("{what}, stall kill")).await;
    rt.shutdown(Duration::from_secs(5)).await;
}

/// Has `to`'s agent start `tool` in the background and end its turn; waits until the tool runs.
async fn leave_running(world: &World, rt: &Runtime, to: &TeamName, tool: &mut Tool) {
    let what = world.what();
    let message = tool.leave_running(&world.agent);
    let told = rt
        .tell(&team("a"), to, message, TellOptions::complete())
        .await
        .unwrap();
    assert!(
        matches!(told, TellOutcome::Completed(_)),
        "{what}: {told:?}"
    );
    tool.running(&what).await;
}

async fn idle_stop_and_eviction(world: World) {
    let what = world.what();
    let teams = [("b", "idle_timeout = \"500ms\""), ("c", ""), ("d", "")];
    let rt = world.runtime("max_processes = 1", &teams).await;
    let (a, b, c, d) = (team("a"), team("b"), team("c"), team("d"));

    // Idle stop: the turn ends, and what it left running lives until the agent is stopped.
    let mut tool = world.tool("b", "idle");
    leave_running(&world, &rt, &b, &mut tool).await;
    let stopped = within(Duration::from_secs(10), || {
        rt.get_session(&a, &b)
            .ok()
            .flatten()
            .is_some_and(|r| r.process_state == ProcessState::Stopped)
    })
    .await;
    assert!(stopped, "{what}: the idle agent was not stopped");
    tool.assert_killed(&format!("{what}, idle stop")).await;

    // Eviction: one process slot; c's idle agent makes way for d's.
    let mut tool = world.tool("c", "evicted");
    leave_running(&world, &rt, &c, &mut tool).await;
    let told = rt
        .tell(&a, &d, "hello", TellOptions::complete())
        .await
        .unwrap();
    assert!(
        matches!(told, TellOutcome::Completed(_)),
        "{what}: {told:?}"
    );
    tool.assert_killed(&format!("{what}, eviction")).await;
    rt.shutdown(Duration::from_secs(5)).await;
}

async fn shutdown_mid_tool(world: World) {
    let what = world.what();
    let rt = world.runtime("", &[("b", "")]).await;
    let mut tool = world.tool("b", "shutdown");
    let turn = rt
        .submit(&team("a"), &team("b"), tool.run(&world.agent))
        .await
        .unwrap();
    tool.running(&what).await;
    // What a node does on SIGTERM.
    rt.shutdown(Duration::from_secs(1)).await;
    failed(&what, turn.outcome().await);
    tool.assert_killed(&format!("{what}, shutdown")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_sleep_and_a_cancel_leave_no_tool_running() {
    for_each_agent_and_mode!(forced_sleep_and_cancel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_tool_leaves_no_tool_running() {
    for_each_agent_and_mode!(crash_mid_tool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_kill_leaves_no_tool_running() {
    for_each_agent_and_mode!(stall_mid_tool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stop_and_an_eviction_end_what_the_agent_left_running() {
    for_each_agent_and_mode!(idle_stop_and_eviction);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_leaves_no_tool_running() {
    for_each_agent_and_mode!(shutdown_mid_tool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_has_a_cgroup_of_its_own_that_goes_with_it() {
    if !modes().contains(&ContainmentSetting::Auto) {
        return;
    }
    let world = World::new(
        Agent::all(support::fake_claude()).await.remove(0),
        ContainmentSetting::Cgroup,
    );
    let what = world.what();
    let rt = world.runtime("", &[("b", "")]).await;
    let mut tool = world.tool("b", "cgroup");
    let turn = rt
        .submit(&team("a"), &team("b"), tool.run(&world.agent))
        .await
        .unwrap();
    tool.running(&what).await;
    // The tool left the agent's session and process group, but not its cgroup.
    let pid = tool.pids()[0];
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("/iris-") && line.contains("/agent-"),
        "{line}"
    );
    assert_eq!(rt.agent_cpu().len(), 1, "the live agent is metered");
    rt.sleep(&team("a"), &team("b"), true).await.unwrap();
    let _ = turn.outcome().await;
    tool.assert_killed(&what).await;
    let agent_dir = cgroup_dir_of(&line);
    assert!(
        !agent_dir.exists(),
        "the agent's cgroup {} was not removed",
        agent_dir.display()
    );
    rt.shutdown(Duration::from_secs(5)).await;
}

/// Where the cgroup `path` (of a `0::` line) is in the mounted hierarchy.
fn cgroup_dir_of(path: &str) -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|r| r.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap();
    Path::new(mount).join(path.trim_start_matches('/'))
}
