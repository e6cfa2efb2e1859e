//! The start-up reaper, against real process groups standing in for a previous run's agents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iris_agent::procfs;
use iris_agent::reap::{ReapOutcome, reap_leftover};
use iris_core::AgentProcessMark;

const PATIENCE: Duration = Duration::from_millis(500);

/// Starts `program args` as the leader of its own group, as a previous run would have.
fn previous_run(program: &str, args: &[&str]) -> (Child, AgentProcessMark) {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    let start_ticks = procfs::stat(pid).map(|s| s.start_ticks);
    (
        child,
        AgentProcessMark {
            pid,
            pgid: pid,
            start_ticks,
        },
    )
}

async fn wait_for_members(pgid: u32, n: usize) {
    for _ in 0..200 {
        if procfs::live_group_members(pgid).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("group {pgid} never had {n} members");
}

#[tokio::test]
async fn a_leftover_group_with_a_grandchild_is_killed() {
    let (mut child, mark) = previous_run("sh", &["-c", "sleep 300 & exec sleep 300"]);
    wait_for_members(mark.pgid, 2).await;
    let outcome = reap_leftover(mark, PATIENCE).await;
    assert_eq!(
        outcome,
        ReapOutcome::Killed {
            pgid: mark.pgid,
            members: 2
        }
    );
    assert!(procfs::live_group_members(mark.pgid).is_empty());
    child.wait().unwrap();
}

#[tokio::test]
async fn a_leftover_fake_claude_is_killed() {
    let fake = support::fake_claude().display().to_string();
    let config = tempfile::tempdir().unwrap();
    let session = format!("--session-id={}", iris_core::SessionId::new_v4());
    let (mut child, mark) = {
        let mut cmd = Command::new(&fake);
        cmd.args(iris_agent::command::STREAM_JSON_ARGS)
            .arg(&session)
            .env("CLAUDE_CONFIG_DIR", config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0);
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let mark = AgentProcessMark {
            pid,
            pgid: pid,
            start_ticks: procfs::stat(pid).map(|s| s.start_ticks),
        };
        (child, mark)
    };
    wait_for_members(mark.pgid, 1).await;
    assert!(matches!(
        reap_leftover(mark, PATIENCE).await,
        ReapOutcome::Killed { .. }
    ));
    assert!(procfs::live_group_members(mark.pgid).is_empty());
    child.wait().unwrap();
}

#[tokio::test]
async fn grandchildren_are_killed_after_the_leader_is_gone() {
    let (mut child, mark) = previous_run("sh", &["-c", "sleep 300 & exit 0"]);
    child.wait().unwrap();
    wait_for_members(mark.pgid, 1).await;
    assert!(matches!(
        reap_leftover(mark, PATIENCE).await,
        ReapOutcome::Killed { .. }
    ));
    assert!(procfs::live_group_members(mark.pgid).is_empty());
}

#[tokio::test]
async fn a_reused_pid_is_spared() {
    // An unrelated process that happens to have the recorded pid: same number, other start time.
    let (mut child, real) = previous_run("sleep", &["300"]);
    let recorded = AgentProcessMark {
        start_ticks: real.start_ticks.map(|t| t.wrapping_sub(1)),
        ..real
    };
    assert_eq!(
        reap_leftover(recorded, PATIENCE).await,
        ReapOutcome::PidReused { pid: real.pid }
    );
    assert!(
        procfs::stat(real.pid).is_some_and(|s| s.is_alive()),
        "it was killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_mark_without_a_start_time_is_not_trusted() {
    let (mut child, real) = previous_run("sleep", &["300"]);
    let recorded = AgentProcessMark {
        start_ticks: None,
        ..real
    };
    assert_eq!(
        reap_leftover(recorded, PATIENCE).await,
        ReapOutcome::Unverifiable { pid: real.pid }
    );
    assert!(procfs::stat(real.pid).is_some_and(|s| s.is_alive()));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_group_that_is_gone_is_reported_as_not_running() {
    let (mut child, mark) = previous_run("true", &[]);
    child.wait().unwrap();
    assert_eq!(reap_leftover(mark, PATIENCE).await, ReapOutcome::NotRunning);
}
