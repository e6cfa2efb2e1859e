use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::*;
use crate::procfs;

fn quick() -> StopGrace {
    StopGrace {
        after_stdin_close: Duration::from_millis(200),
        after_sigterm: Duration::from_millis(200),
        after_sigkill: Duration::from_secs(5),
    }
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Waits (bounded) until no live process is left in `pgid`.
async fn group_gone(pgid: u32) -> bool {
    group::wait_group_empty(pgid, Duration::from_secs(5)).await
}

#[tokio::test]
async fn a_missing_binary_is_a_typed_not_found() {
    let err = AgentProcess::spawn(
        cmd("/nonexistent/agent-binary", &[]),
        1024,
        &Containment::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SpawnError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/agent-binary"));
}

#[tokio::test]
async fn the_agent_leads_its_own_process_group() {
    let p = AgentProcess::spawn(cmd("sleep", &["30"]), 1024, &Containment::default()).unwrap();
    let stat = procfs::stat(p.pid()).unwrap();
    assert_eq!(stat.pgrp, p.pid());
    assert_eq!(p.mark().pgid, p.pid());
    assert_eq!(p.mark().start_ticks, Some(stat.start_ticks));
}

#[tokio::test]
async fn closing_stdin_ends_an_agent_that_reads_it() {
    let mut p = AgentProcess::spawn(cmd("cat", &[]), 1024, &Containment::default()).unwrap();
    let mut stdin = p.take_stdin().unwrap();
    stdin.write_all(b"hi\n").await.unwrap();
    drop(stdin);
    let out = p.stop(quick()).await;
    // Depending on scheduling the exit is seen before or after the stop begins; both are right.
    assert!(
        matches!(out.stage, StopStage::StdinClosed | StopStage::AlreadyExited),
        "{out:?}"
    );
    assert!(out.exit.unwrap().success());
    assert!(group_gone(p.pgid()).await);
}

#[tokio::test]
async fn sigterm_follows_when_stdin_eof_is_ignored() {
    let mut p = AgentProcess::spawn(cmd("sleep", &["30"]), 1024, &Containment::default()).unwrap();
    let out = p.stop(quick()).await;
    assert_eq!(out.stage, StopStage::Sigterm);
    assert_eq!(out.exit.unwrap().signal, Some(libc_sigterm()));
    assert!(group_gone(p.pgid()).await);
}

#[tokio::test]
async fn sigkill_follows_when_sigterm_is_ignored() {
    let script = "trap '' TERM; while :; do sleep 1; done";
    let mut p =
        AgentProcess::spawn(cmd("sh", &["-c", script]), 1024, &Containment::default()).unwrap();
    // Let the shell install its trap before the stop begins.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = p.stop(quick()).await;
    assert_eq!(out.stage, StopStage::Sigkill);
    assert!(group_gone(p.pgid()).await);
}

#[tokio::test]
async fn stop_kills_what_the_agent_left_in_its_group() {
    let mut p = AgentProcess::spawn(
        cmd("sh", &["-c", "sleep 30 & echo started; exec cat"]),
        1024,
        &Containment::default(),
    )
    .unwrap();
    let pgid = p.pgid();
    // A generous wait for stdin EOF: `cat` must get scheduled, even on a loaded machine.
    let grace = StopGrace {
        after_stdin_close: Duration::from_secs(10),
        ..quick()
    };
    let out = p.stop(grace).await;
    assert_eq!(out.stage, StopStage::StdinClosed);
    assert!(out.killed_leftovers, "the background sleep was left behind");
    assert!(procfs::live_group_members(pgid).is_empty());
    // Idempotent.
    let again = p.stop(quick()).await;
    assert_eq!(again.stage, StopStage::AlreadyExited);
    assert!(!again.killed_leftovers);
}

#[tokio::test]
async fn dropping_the_handle_kills_the_whole_group() {
    let p = AgentProcess::spawn(
        cmd("sh", &["-c", "sleep 30 & sleep 30"]),
        1024,
        &Containment::default(),
    )
    .unwrap();
    let pgid = p.pgid();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(procfs::live_group_members(pgid).len() >= 2);
    drop(p);
    assert!(group_gone(pgid).await);
}

#[tokio::test]
async fn the_exit_report_carries_code_and_stderr_tail() {
    let p = AgentProcess::spawn(
        cmd("sh", &["-c", "echo first >&2; echo boom >&2; exit 3"]),
        1024,
        &Containment::default(),
    )
    .unwrap();
    let exit = p.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.stderr_tail, "first\nboom");
    assert!(exit.to_string().contains("exited with code 3"));
    assert!(exit.to_string().contains("boom"));
}

#[tokio::test]
async fn a_signal_death_is_reported_by_name() {
    let p = AgentProcess::spawn(cmd("sleep", &["30"]), 1024, &Containment::default()).unwrap();
    p.kill();
    let exit = p.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(exit.signal, Some(9));
    assert!(exit.to_string().contains("SIGKILL"), "{exit}");
}

fn libc_sigterm() -> i32 {
    Signal::SIGTERM as i32
}
