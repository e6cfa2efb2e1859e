//! Containment through the runtime: whatever way an agent is stopped, nothing it started
//! survives it, not even a tool in a session of its own (`setsid`), which is how the real CLI
//! runs Bash commands. fake-claude's `!tool <ms> <marker>` is such a tool (it creates the
//! marker when it ends), and `!daemon <ms> <marker>` one the agent leaves running after its
//! turn. Each scenario runs in both modes: cgroup (where this machine lets us create cgroups;
//! `IRIS_REQUIRE_CGROUP=1` makes its absence a failure) and the subreaper fallback, chosen by
//! configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iris::agent::containment::{Containment, ContainmentMode};
use iris::agent::procfs;
use iris::core::config::{Config, ContainmentSetting};
use iris::core::{Coded, ProcessState, TeamName};
use iris::runtime::{Runtime, TellOptions, TellOutcome};
use iris::store::Store;
use support::{World, fake_claude};

/// How long a killed tool may linger (the bound).
const GONE_WITHIN: Duration = Duration::from_secs(2);
/// How long each tool would run if it were not killed: far longer than any scenario, so a tool
/// that is gone was killed, and its marker (written as it ends) can never appear.
const TOOL_MS: u64 = 60_000;

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

/// The modes to test here: the subreaper always; the cgroup where it can be had.
fn modes() -> Vec<ContainmentSetting> {
    let mut modes = vec![ContainmentSetting::Subreaper];
    match Containment::new(ContainmentSetting::Cgroup, "probe-containment-test") {
        Ok(_) => modes.push(ContainmentSetting::Cgroup),
        Err(error) if std::env::var_os("IRIS_REQUIRE_CGROUP").is_some() => {
            panic!("IRIS_REQUIRE_CGROUP is set but {error}")
        }
        Err(error) => eprintln!("cgroup containment is not tested here: {error}"),
    }
    modes
}

async fn runtime(
    world: &World,
    mode: ContainmentSetting,
    settings: &str,
    teams: &[(&str, &str)],
) -> Runtime {
    let settings = format!("containment = \"{}\"\n{settings}", mode.as_str());
    let config: Config = world.config_with_teams(teams, fake_claude(), &settings);
    let store = Store::open(world.db_path()).unwrap();
    let runtime = Runtime::start(config, store).await.unwrap();
    let expected = match mode {
        ContainmentSetting::Cgroup => ContainmentMode::Cgroup,
        _ => ContainmentMode::Subreaper,
    };
    assert_eq!(runtime.containment(), expected);
    runtime
}

/// Live processes whose command line names `marker` (the tool's own argument).
fn tool_pids(marker: &Path) -> Vec<u32> {
    let needle = marker.display().to_string();
    procfs::all_stats()
        .into_iter()
        .filter(|s| s.is_alive() && s.pid != std::process::id())
        .filter(|s| procfs::cmdline(s.pid).is_some_and(|args| args.iter().any(|a| a == &needle)))
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

/// A tool with its marker, in the team's directory.
struct Tool {
    marker: PathBuf,
    started: Option<Instant>,
}

impl Tool {
    fn new(world: &World, team: &str, name: &str) -> Tool {
        Tool {
            marker: world.root.path().join("teams").join(team).join(name),
            started: None,
        }
    }

    fn directive(&self, kind: &str) -> String {
        format!(
            "!{kind} {TOOL_MS} {}",
            self.marker.file_name().unwrap().to_string_lossy()
        )
    }

    /// Waits until the tool runs; returns its pid.
    async fn running(&mut self) -> u32 {
        let marker = self.marker.clone();
        assert!(
            within(Duration::from_secs(20), || !tool_pids(&marker).is_empty()).await,
            "the tool never started"
        );
        self.started = Some(Instant::now());
        tool_pids(&self.marker)[0]
    }

    /// Asserts that the tool is gone within [`GONE_WITHIN`], long before its time, so its side
    /// effect can never happen.
    async fn assert_killed(&self, what: &str) {
        let marker = self.marker.clone();
        assert!(
            within(GONE_WITHIN, || tool_pids(&marker).is_empty()).await,
            "{what}: the tool outlived its agent: {:?}",
            tool_pids(&marker)
        );
        assert!(self.started.unwrap().elapsed() < Duration::from_millis(TOOL_MS));
        assert!(
            !self.marker.exists(),
            "{what}: the tool's side effect happened after the kill"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_sleep_a_cancel_and_a_crash_leave_no_tool_running() {
    for mode in modes() {
        let world = World::new();
        let rt = runtime(
            &world,
            mode,
            "",
            &[("a", ""), ("b", ""), ("c", ""), ("d", "")],
        )
        .await;
        let (a, b, c, d) = (team("a"), team("b"), team("c"), team("d"));

        let mut forced = Tool::new(&world, "b", "forced");
        let turn = rt.submit(&a, &b, forced.directive("tool")).await.unwrap();
        forced.running().await;
        rt.sleep(&a, &b, true).await.unwrap();
        assert!(matches!(turn.outcome().await, TellOutcome::Failed { .. }));
        forced
            .assert_killed(&format!("{mode:?} forced sleep"))
            .await;

        let mut cancelled = Tool::new(&world, "c", "cancelled");
        let turn = rt
            .submit(&a, &c, cancelled.directive("tool"))
            .await
            .unwrap();
        cancelled.running().await;
        rt.cancel(&a, &c, false).await.unwrap();
        assert!(matches!(turn.outcome().await, TellOutcome::Failed { .. }));
        cancelled.assert_killed(&format!("{mode:?} cancel")).await;

        let mut crashed = Tool::new(&world, "d", "crashed");
        let turn = rt.submit(&a, &d, crashed.directive("tool")).await.unwrap();
        let tool = crashed.running().await;
        let agent = procfs::stat(tool).unwrap().ppid;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &agent.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        assert!(matches!(turn.outcome().await, TellOutcome::Failed { .. }));
        crashed
            .assert_killed(&format!("{mode:?} crash mid-tool"))
            .await;

        rt.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_kill_leaves_no_tool_running() {
    for mode in modes() {
        let world = World::new();
        // The tool prints nothing and uses no CPU: past tool_timeout it is no sign of progress.
        let settings = "response_timeout = \"1s\"\ntool_timeout = \"1s\"";
        let rt = runtime(&world, mode, settings, &[("a", ""), ("b", "")]).await;
        let mut tool = Tool::new(&world, "b", "stalled");
        let turn = rt
            .submit(&team("a"), &team("b"), tool.directive("tool"))
            .await
            .unwrap();
        tool.running().await;
        match turn.outcome().await {
            TellOutcome::Failed { error, .. } => {
                assert_eq!(error.code(), iris::core::ErrorCode::Timeout, "{error}")
            }
            other => panic!("{mode:?}: expected a stall, got {other:?}"),
        }
        tool.assert_killed(&format!("{mode:?} stall kill")).await;
        rt.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stop_and_an_eviction_end_what_the_agent_left_running() {
    for mode in modes() {
        let world = World::new();
        let rt = runtime(
            &world,
            mode,
            "max_processes = 1",
            &[
                ("a", ""),
                ("b", "idle_timeout = \"300ms\""),
                ("c", ""),
                ("d", ""),
            ],
        )
        .await;
        let (a, b, c, d) = (team("a"), team("b"), team("c"), team("d"));

        // Idle stop: the turn ends, the daemon it left runs on until the agent is stopped.
        let mut idle = Tool::new(&world, "b", "idle");
        let told = rt
            .tell(&a, &b, idle.directive("daemon"), TellOptions::complete())
            .await
            .unwrap();
        assert!(matches!(told, TellOutcome::Completed(_)), "{told:?}");
        idle.running().await;
        let stopped = within(Duration::from_secs(10), || {
            rt.get_session(&a, &b)
                .ok()
                .flatten()
                .is_some_and(|r| r.process_state == ProcessState::Stopped)
        })
        .await;
        assert!(stopped, "{mode:?}: the idle agent was not stopped");
        idle.assert_killed(&format!("{mode:?} idle stop")).await;

        // Eviction: one process slot; c's idle agent makes way for d's.
        let mut evicted = Tool::new(&world, "c", "evicted");
        let told = rt
            .tell(&a, &c, evicted.directive("daemon"), TellOptions::complete())
            .await
            .unwrap();
        assert!(matches!(told, TellOutcome::Completed(_)), "{told:?}");
        evicted.running().await;
        let told = rt
            .tell(&a, &d, "hello", TellOptions::complete())
            .await
            .unwrap();
        assert!(matches!(told, TellOutcome::Completed(_)), "{told:?}");
        evicted.assert_killed(&format!("{mode:?} eviction")).await;

        rt.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_has_a_cgroup_of_its_own_that_goes_with_it() {
    if !modes().contains(&ContainmentSetting::Cgroup) {
        return;
    }
    let world = World::new();
    let rt = runtime(
        &world,
        ContainmentSetting::Cgroup,
        "",
        &[("a", ""), ("b", "")],
    )
    .await;
    let mut tool = Tool::new(&world, "b", "cgroup");
    let turn = rt
        .submit(&team("a"), &team("b"), tool.directive("tool"))
        .await
        .unwrap();
    let pid = tool.running().await;
    // The tool left the agent's session and group, but not its cgroup.
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
    let cpu = rt.agent_cpu();
    assert_eq!(cpu.len(), 1, "one live agent is metered: {cpu:?}");
    rt.sleep(&team("a"), &team("b"), true).await.unwrap();
    let _ = turn.outcome().await;
    tool.assert_killed("cgroup forced sleep").await;
    let agent_dir = cgroup_dir_of(&line);
    assert!(
        !agent_dir.exists(),
        "the agent's cgroup {} was not removed",
        agent_dir.display()
    );
    rt.shutdown(Duration::from_secs(5)).await;
}

/// Where the cgroup `path` (a `0::` line) is mounted.
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
