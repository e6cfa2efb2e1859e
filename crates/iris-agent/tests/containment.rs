//! Containment at the process level: in a cgroup of its own, or swept as a tree under a
//! subreaper, an agent's `setsid` descendants die with it, whether it is stopped or dropped;
//! its CPU time is measured over everything it started; and what a previous run left is reaped
//! by name. The cgroup cases run where this machine lets us create cgroups
//! (`IRIS_REQUIRE_CGROUP=1` makes their absence a failure).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iris_agent::containment::{Containment, ContainmentMode};
use iris_agent::process::{AgentProcess, StopGrace};
use iris_agent::procfs;
use iris_core::config::ContainmentSetting;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A unique node key per test, so tests in parallel never share a node cgroup.
fn key(test: &str) -> String {
    format!("agent-test-{test}-{}", std::process::id())
}

fn cgroup(test: &str) -> Option<Containment> {
    match Containment::new(ContainmentSetting::Cgroup, &key(test)) {
        Ok(containment) => Some(containment),
        Err(error) if std::env::var_os("IRIS_REQUIRE_CGROUP").is_some() => {
            panic!("IRIS_REQUIRE_CGROUP is set but {error}")
        }
        Err(error) => {
            eprintln!("cgroup containment is not tested here: {error}");
            None
        }
    }
}

fn subreaper(test: &str) -> Containment {
    let containment = Containment::new(ContainmentSetting::Subreaper, &key(test)).unwrap();
    assert_eq!(containment.mode(), ContainmentMode::Subreaper);
    containment
}

/// Both modes where available.
fn modes(test: &str) -> Vec<Containment> {
    cgroup(test)
        .into_iter()
        .chain(std::iter::once(subreaper(test)))
        .collect()
}

/// An agent that starts a grandchild in a session of its own and prints its pid, then waits
/// on stdin (so a stop must escalate past nothing: stdin EOF ends it).
fn agent_with_setsid_grandchild() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command.args(["-c", "setsid sleep 300 & echo $!; exec cat"]);
    command
}

async fn grandchild_of(agent: &mut AgentProcess) -> u32 {
    let stdout = agent.take_stdout().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let pid: u32 = line.trim().parse().unwrap();
    // Its own session, out of the agent's process group (once `setsid` has run).
    let pgid = agent.pgid();
    let left = within(Duration::from_secs(10), || {
        procfs::stat(pid).is_some_and(|s| s.pgrp != pgid)
    })
    .await;
    assert!(left, "the grandchild never left the agent's group");
    pid
}

fn alive(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|s| s.is_alive())
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quick() -> StopGrace {
    StopGrace {
        after_stdin_close: Duration::from_secs(5),
        after_sigterm: Duration::from_secs(1),
        after_sigkill: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_takes_its_setsid_grandchild_with_it() {
    for containment in modes("stop") {
        let mode = containment.mode();
        // The sweeper must have a chance to see the grandchild in the subreaper mode; the tag
        // finds it even if not, which is the point of the crash case below.
        let mut agent =
            AgentProcess::spawn(agent_with_setsid_grandchild(), 1024, &containment).unwrap();
        let grandchild = grandchild_of(&mut agent).await;
        let cgroup = agent.cgroup_dir().map(Path::to_path_buf);
        let outcome = agent.stop(quick()).await;
        assert!(outcome.killed_leftovers, "{mode}: the grandchild was left");
        assert!(
            !alive(grandchild),
            "{mode}: the grandchild outlived the stop"
        );
        if let Some(dir) = cgroup {
            assert!(!dir.exists(), "{mode}: the empty cgroup was not removed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_agent_takes_its_setsid_grandchild_with_it() {
    for containment in modes("drop") {
        let mode = containment.mode();
        let mut agent =
            AgentProcess::spawn(agent_with_setsid_grandchild(), 1024, &containment).unwrap();
        let grandchild = grandchild_of(&mut agent).await;
        let cgroup = agent.cgroup_dir().map(Path::to_path_buf);
        drop(agent);
        assert!(
            within(Duration::from_secs(2), || !alive(grandchild)).await,
            "{mode}: the grandchild outlived the drop"
        );
        if let Some(dir) = cgroup {
            assert!(
                within(Duration::from_secs(5), || !dir.exists()).await,
                "{mode}: the cgroup was not removed after the drop"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_time_counts_what_the_agent_started() {
    for containment in modes("cpu") {
        let mode = containment.mode();
        // The agent itself only waits; a grandchild in its own session burns CPU.
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", "setsid sh -c 'while :; do :; done' & exec cat"]);
        let mut agent = AgentProcess::spawn(command, 1024, &containment).unwrap();
        let meter = agent.cpu_meter();
        let grew = within(Duration::from_secs(20), || {
            agent
                .cpu_time()
                .is_some_and(|t| t >= Duration::from_millis(200))
        })
        .await;
        assert!(grew, "{mode}: {:?}", agent.cpu_time());
        assert!(meter.cpu_time().is_some());
        agent.stop(quick()).await;
        drop(agent);
        assert_eq!(
            meter.cpu_time(),
            None,
            "a meter reads nothing once the agent is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_reaps_agent_cgroups_a_killed_run_left() {
    let Some(first) = cgroup("leftover") else {
        return;
    };
    // What a run killed outright leaves: an agent cgroup with a process in it.
    let node_dir: PathBuf = first.cgroup_dir().unwrap();
    let left = node_dir.join("agent-left-behind");
    std::fs::create_dir(&left).unwrap();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    std::fs::write(left.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    drop(first);

    let next = cgroup("leftover").unwrap();
    assert_eq!(
        next.cgroup_dir().unwrap(),
        node_dir,
        "the same node key, the same cgroup"
    );
    assert_eq!(next.reap_leftovers().await, 1);
    assert!(!left.exists(), "the leftover cgroup was removed");
    let status = sleeper.wait().unwrap();
    assert!(
        !status.success(),
        "the leftover process was killed: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subreaper_finds_an_orphan_no_sweep_saw_by_its_tag() {
    let containment = subreaper("orphan");
    // The agent starts a setsid grandchild and exits at once: the grandchild is orphaned
    // (adopted by this process) before any sweep can have seen it.
    let mut command = tokio::process::Command::new("sh");
    command.args(["-c", "setsid sleep 300 & echo $!"]);
    let mut agent = AgentProcess::spawn(command, 1024, &containment).unwrap();
    let grandchild = grandchild_of(&mut agent).await;
    assert!(agent.wait_exit(Duration::from_secs(10)).await.is_some());
    assert!(alive(grandchild));
    assert_eq!(procfs::stat(grandchild).unwrap().ppid, std::process::id());
    agent.stop(quick()).await;
    assert!(!alive(grandchild), "the orphan outlived the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_of_one_node_key_share_its_cgroup_until_the_last_is_done() {
    let Some(first) = cgroup("shared") else {
        return;
    };
    let second = cgroup("shared").unwrap();
    let node_dir = first.cgroup_dir().unwrap();
    // The first runtime is done: the second still spawns into the same node cgroup.
    drop(first);
    let mut agent = AgentProcess::spawn(agent_with_setsid_grandchild(), 1024, &second).unwrap();
    let grandchild = grandchild_of(&mut agent).await;
    assert!(agent.cgroup_dir().unwrap().starts_with(&node_dir));
    agent.stop(quick()).await;
    assert!(!alive(grandchild));
    drop(second);
    assert!(
        !node_dir.exists(),
        "the last runtime removes the node cgroup"
    );
}
