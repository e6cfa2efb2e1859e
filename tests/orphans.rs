//! Multi-process: a node running the runtime is killed with SIGKILL while its agents are alive
//! (some left a grandchild in their group, some ignore SIGTERM, some are in the middle of a long
//! turn). No process of any agent group survives it for more than 2 s, and the next runtime on
//! the same database reports the turns that were in flight as `interrupted`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iris::agent::procfs;
use iris::agent::reap::ReapOutcome;
use iris::core::{ErrorCode, ProcessState, TeamName, TurnId, TurnStatus};
use iris::runtime::{Runtime, TellOptions, TellOutcome};
use iris::store::Store;
use support::{World, fake_claude};

const CHILD_ENV: &str = "IRIS_ORPHANS_CHILD";
const ROOT_ENV: &str = "IRIS_ORPHANS_ROOT";
const CLAUDE_HOME_ENV: &str = "IRIS_ORPHANS_CLAUDE_HOME";

const FROM: &str = "node";
/// Each pair `FROM`→team: the turns it completes, then the turns it leaves open (the first one
/// running, the others queued behind it) when the node is killed.
const SCRIPTS: &[(&str, &[&str], &[&str])] = &[
    ("g1", &["!grandchild"], &[]),
    ("g2", &["!grandchild", "!ignore-sigterm"], &[]),
    ("s1", &["!ignore-sigterm"], &[]),
    ("l1", &["!grandchild"], &["!sleep 30000", "queued behind"]),
    ("l2", &[], &["!sleep 30000"]),
    ("l3", &["!ignore-sigterm"], &["!sleep 30000"]),
];

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

fn team_names() -> Vec<&'static str> {
    std::iter::once(FROM)
        .chain(SCRIPTS.iter().map(|(to, _, _)| *to))
        .collect()
}

fn db_path(root: &Path) -> PathBuf {
    root.join("data/iris.redb")
}

/// Polls `check` every 10 ms for up to `limit`; returns whether it held.
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

/// The "node": runs a runtime on the parent's database, brings its agents to the state in
/// `SCRIPTS`, prints their groups, grandchildren, open turns and the guardian's pid, then waits
/// to be killed. Ignored so that it runs only when the test below starts this binary with
/// `CHILD_ENV` set.
#[test]
#[ignore = "runs only as the child of killing_a_node_leaves_no_agent_and_interrupts_its_turns"]
fn child_node() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let root = PathBuf::from(std::env::var_os(ROOT_ENV).unwrap());
    let claude_home = PathBuf::from(std::env::var_os(CLAUDE_HOME_ENV).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let teams: Vec<(&str, &str)> = team_names().into_iter().map(|t| (t, "")).collect();
        let config = support::config_in(&root, &claude_home, &teams, fake_claude(), "");
        let runtime = Runtime::start(config, Store::open(db_path(&root)).unwrap())
            .await
            .unwrap();
        let from = team(FROM);
        for (to, done, open) in SCRIPTS {
            let to = team(to);
            runtime.wake(&from, &to).await.unwrap();
            for message in *done {
                let outcome = runtime
                    .tell(&from, &to, *message, TellOptions::complete())
                    .await
                    .unwrap();
                let TellOutcome::Completed(result) = &outcome else {
                    panic!("{to}: {message}: {outcome:?}");
                };
                // A `!grandchild` reply ends with `pid=<the grandchild's pid>`.
                if let Some((_, pid)) = result.text.rsplit_once("pid=") {
                    println!("grandchild {}", pid.trim());
                }
            }
            for (index, message) in open.iter().enumerate() {
                let turn = runtime.submit(&from, &to, *message).await.unwrap();
                let id = turn.turn_id();
                // Durably in the ledger before the node reports ready: running, or queued.
                let expected = if index == 0 {
                    TurnStatus::Running
                } else {
                    TurnStatus::Queued
                };
                let stored = within(Duration::from_secs(10), || {
                    runtime
                        .turn(&id)
                        .unwrap()
                        .is_some_and(|row| row.status == expected)
                })
                .await;
                assert!(stored, "{to}: turn {id} never became {expected:?}");
                println!("open {to} {id}");
            }
            let mark = runtime
                .get_session(&from, &to)
                .unwrap()
                .and_then(|r| r.agent_process)
                .unwrap_or_else(|| panic!("{to} has no agent"));
            println!("group {}", mark.pgid);
        }
        println!("guardian {}", iris::agent::guardian::pid().unwrap());
        println!("ready");
        tokio::time::sleep(Duration::from_secs(300)).await;
        drop(runtime);
    });
}

/// What the node reported.
#[derive(Debug, Default, Clone)]
struct Report {
    groups: BTreeSet<u32>,
    grandchildren: BTreeSet<u32>,
    /// Open turns by team.
    open: BTreeMap<String, Vec<TurnId>>,
    guardian: Option<u32>,
    /// Everything the node printed (for failure messages).
    lines: Vec<String>,
}

impl Report {
    fn open_turns(&self) -> usize {
        self.open.values().map(Vec::len).sum()
    }
}

/// Reads the node's report up to its `ready` line; sends what it has when the node's output
/// ends early. libtest prints "test child_node ... " before the node's own output, on the same
/// line, so each keyword is searched for, not matched.
fn read_report(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<(Report, bool)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut report = Report::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            report.lines.push(line.clone());
            let after = |key: &str| line.split(key).nth(1).map(str::trim);
            let number = |key: &str| after(key).and_then(|n| n.parse::<u32>().ok());
            if let Some(pgid) = number("group ") {
                report.groups.insert(pgid);
            } else if let Some(pid) = number("grandchild ") {
                report.grandchildren.insert(pid);
            } else if let Some(pid) = number("guardian ") {
                report.guardian = Some(pid);
            } else if let Some((to, id)) = after("open ").and_then(|rest| rest.split_once(' ')) {
                let id: TurnId = id.trim().parse().unwrap();
                report.open.entry(to.to_owned()).or_default().push(id);
            } else if line.contains("ready") {
                let _ = tx.send((report, true));
                return;
            }
        }
        let _ = tx.send((report, false));
    });
    rx
}

fn alive(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|s| s.is_alive())
}

/// The live members of every agent group, and every live grandchild.
fn survivors(report: &Report) -> BTreeSet<u32> {
    let members = report
        .groups
        .iter()
        .flat_map(|pgid| procfs::live_group_members(*pgid));
    let grandchildren = report.grandchildren.iter().copied().filter(|p| alive(*p));
    members.chain(grandchildren).collect()
}

/// Kills the node and whatever it left, however the test ends, so that a failing run does not
/// leak processes.
struct Cleanup {
    node: Child,
    report: Report,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.node.kill();
        let _ = self.node.wait();
        for pgid in &self.report.groups {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
        for pid in self
            .report
            .grandchildren
            .iter()
            .chain(&self.report.guardian)
        {
            if alive(*pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_leaves_no_agent_and_interrupts_its_turns() {
    fake_claude(); // built once here, not raced by the node
    let world = World::new();
    let node_stderr = world.root.path().join("node.stderr");
    let node = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_node",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(ROOT_ENV, world.root.path())
        .env(CLAUDE_HOME_ENV, world.claude_home.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&node_stderr).unwrap())
        .spawn()
        .unwrap();
    let mut cleanup = Cleanup {
        node,
        report: Report::default(),
    };
    let reports = read_report(cleanup.node.stdout.take().unwrap());
    let received =
        tokio::task::spawn_blocking(move || reports.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap();
    let (report, ready) = received.unwrap_or_default();
    cleanup.report = report.clone();
    assert!(
        ready,
        "the node never became ready; it printed:\n{}\nstderr:\n{}",
        report.lines.join("\n"),
        std::fs::read_to_string(&node_stderr).unwrap_or_default()
    );
    assert_eq!(report.groups.len(), SCRIPTS.len(), "{report:?}");
    assert_eq!(report.grandchildren.len(), 3, "{report:?}");
    let expected_open: usize = SCRIPTS.iter().map(|(_, _, open)| open.len()).sum();
    assert_eq!(report.open_turns(), expected_open, "{report:?}");
    for pgid in &report.groups {
        assert!(!procfs::live_group_members(*pgid).is_empty(), "{report:?}");
    }
    for pid in &report.grandchildren {
        // A grandchild is in its agent's group, not a group of its own.
        let stat = procfs::stat(*pid).unwrap();
        assert!(
            stat.is_alive() && report.groups.contains(&stat.pgrp),
            "{stat:?}"
        );
    }

    cleanup.node.kill().unwrap(); // SIGKILL: the node runs no cleanup.
    cleanup.node.wait().unwrap();
    let emptied = within(Duration::from_secs(2), || survivors(&report).is_empty()).await;
    assert!(
        emptied,
        "still alive 2 s after the node was killed: {:?}",
        survivors(&report)
    );

    // A new runtime on the same database: the open turns were interrupted.
    let config = world.config(&team_names(), fake_claude(), "");
    let runtime = Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap();
    let interrupted = runtime.startup_report().interrupted_turns;
    assert!(
        interrupted >= expected_open as u64,
        "{interrupted} interrupted turns, {expected_open} were open"
    );
    // The guardian left the start-up reaper nothing to kill, and every mark is resolved.
    let reaped = &runtime.startup_report().reaped;
    assert_eq!(reaped.len(), SCRIPTS.len(), "{reaped:?}");
    for (session, outcome) in reaped {
        assert!(
            matches!(
                outcome,
                ReapOutcome::NotRunning | ReapOutcome::PidReused { .. }
            ),
            "{session}: {outcome:?}"
        );
    }
    let from = team(FROM);
    for (to, _, _) in SCRIPTS {
        let record = runtime.get_session(&from, &team(to)).unwrap().unwrap();
        assert_eq!(record.process_state, ProcessState::Stopped, "{record:?}");
        assert_eq!(record.agent_process, None, "{record:?}");
    }
    for (to, ids) in &report.open {
        let rows = runtime.report(&from, &team(to), 10).unwrap();
        for id in ids {
            let row = rows
                .iter()
                .find(|row| row.turn_id == *id)
                .unwrap_or_else(|| panic!("{to}: turn {id} is not in the report: {rows:?}"));
            assert_eq!(row.status, TurnStatus::Interrupted, "{row:?}");
            assert_eq!(
                row.error.as_ref().map(|e| e.code),
                Some(ErrorCode::ProcessError),
                "{row:?}"
            );
            assert!(row.finished_at.is_some(), "{row:?}");
            assert_eq!(runtime.turn(id).unwrap().as_ref(), Some(row));
        }
        let record = runtime.get_session(&from, &team(to)).unwrap().unwrap();
        assert_eq!(record.current_turn, None, "{record:?}");
    }
    // Turns that had finished stay as they were.
    for (to, done, _) in SCRIPTS {
        let rows = runtime.report(&from, &team(to), 10).unwrap();
        let completed = rows
            .iter()
            .filter(|row| row.status == TurnStatus::Completed)
            .count();
        assert_eq!(completed, done.len(), "{to}: {rows:?}");
    }
    runtime.shutdown(Duration::from_secs(2)).await;
    drop(cleanup);
}
