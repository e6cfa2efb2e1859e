//! The guardian. Multi-process: when the process that owns agents is killed with SIGKILL (no
//! cleanup runs, and PDEATHSIG reaches only the agents themselves), the guardian still kills every
//! agent's whole process group, grandchildren included, and then exits. In-process: a dropped or
//! stopped agent is forgotten, and the one guardian keeps serving later spawns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iris_agent::containment::Containment;
use iris_agent::conversation::{ConfiguredPolicy, Conversation, ConversationOptions};
use iris_agent::guardian;
use iris_agent::process::{AgentProcess, StopGrace, StopStage};
use iris_agent::procfs;
use iris_core::SessionId;
use iris_core::config::GrantPermission;

const CHILD_ENV: &str = "IRIS_GUARDIAN_CHILD";
const PROJECT_ENV: &str = "IRIS_GUARDIAN_PROJECT";
const CONFIG_ENV: &str = "IRIS_GUARDIAN_CONFIG";
const STALL: Duration = Duration::from_secs(20);

/// What each agent of the node does before the node is killed.
const SCRIPTS: &[&[&str]] = &[
    &["!grandchild"],
    &["!grandchild", "!ignore-sigterm"],
    &["!ignore-sigterm", "!grandchild"],
    &["!ignore-sigterm"],
    &["hello"],
];

/// fake-claude on a new conversation, in directories the parent test owns (the node is killed,
/// so it could not remove temporary directories of its own).
fn fake_claude() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(support::fake_claude());
    c.args(iris_agent::command::STREAM_JSON_ARGS)
        .arg(format!("--session-id={}", SessionId::new_v4()))
        .arg("--permission-prompt-tool=stdio")
        .current_dir(std::env::var_os(PROJECT_ENV).unwrap())
        .env("CLAUDE_CONFIG_DIR", std::env::var_os(CONFIG_ENV).unwrap())
        .env_remove("CLAUDECODE")
        .env_remove("FAKE_CLAUDE_FAIL_START")
        .env_remove("FAKE_CLAUDE_START_DELAY_MS");
    c
}

/// The "node": starts agents (some leave a grandchild in their group, some ignore SIGTERM),
/// prints their groups, grandchildren and the guardian's pid, then waits to be killed. Ignored so
/// that it runs only when the test below starts this binary with `CHILD_ENV` set.
#[test]
#[ignore = "runs only as the child of killing_the_owner_kills_every_agent_group"]
fn child_node() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let policy = Arc::new(ConfiguredPolicy::new(GrantPermission::Yes, vec![], vec![]));
        let options = ConversationOptions {
            spawn_timeout: STALL,
            ..ConversationOptions::default()
        };
        let mut agents = Vec::new();
        for script in SCRIPTS {
            let mut agent = Conversation::start(fake_claude(), policy.clone(), options.clone())
                .await
                .unwrap();
            println!("group {}", agent.process().pgid());
            for line in *script {
                let report = agent.turn(line, None, STALL).await.unwrap();
                // A `!grandchild` reply ends with `pid=<the grandchild's pid>`.
                if let Some((_, pid)) = report.text.rsplit_once("pid=") {
                    println!("grandchild {}", pid.trim());
                }
            }
            agents.push(agent);
        }
        println!("guardian {}", guardian::pid().unwrap());
        println!("ready");
        tokio::time::sleep(Duration::from_secs(300)).await;
        drop(agents);
    });
}

/// What the node reported.
#[derive(Debug, Default)]
struct Report {
    groups: BTreeSet<u32>,
    grandchildren: BTreeSet<u32>,
    guardian: Option<u32>,
}

/// Reads the node's report up to its `ready` line. libtest prints "test child_node ... " before
/// the child's own output, on the same line, so each keyword is searched for, not matched.
fn read_report(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<Report> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut report = Report::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let number = |key: &str| {
                line.split(key)
                    .nth(1)
                    .and_then(|n| n.trim().parse::<u32>().ok())
            };
            if let Some(pgid) = number("group ") {
                report.groups.insert(pgid);
            } else if let Some(pid) = number("grandchild ") {
                report.grandchildren.insert(pid);
            } else if let Some(pid) = number("guardian ") {
                report.guardian = Some(pid);
            } else if line.contains("ready") {
                let _ = tx.send(report);
                return;
            }
        }
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

/// Kills whatever is left, so that a failing run does not leak processes.
fn kill_all(report: &Report) {
    for pgid in &report.groups {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
    }
    for pid in report.grandchildren.iter().chain(&report.guardian) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Polls `done` every 10 ms for up to `limit`; returns whether it became true.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn killing_the_owner_kills_every_agent_group() {
    support::fake_claude(); // built once here, not raced by the node
    let project = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let mut node = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_node",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(PROJECT_ENV, project.path())
        .env(CONFIG_ENV, config.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let report =
        match read_report(node.stdout.take().unwrap()).recv_timeout(Duration::from_secs(60)) {
            Ok(report) => report,
            Err(_) => {
                node.kill().unwrap();
                panic!("the child node never reported its agents");
            }
        };
    let guardian = report.guardian.unwrap();
    assert_eq!(report.groups.len(), SCRIPTS.len(), "{report:?}");
    assert_eq!(report.grandchildren.len(), 3, "{report:?}");
    assert!(alive(guardian), "{report:?}");
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

    node.kill().unwrap(); // SIGKILL: the node runs no cleanup.
    node.wait().unwrap();

    let emptied = within(Duration::from_secs(2), || survivors(&report).is_empty());
    let left = survivors(&report);
    // The guardian exits once it has killed the groups (a zombie under PID 1 counts as gone).
    let guardian_exited = within(Duration::from_secs(2), || !alive(guardian));
    kill_all(&report);
    assert!(
        emptied,
        "still alive 2 s after the node was killed: {left:?}"
    );
    assert!(guardian_exited, "the guardian {guardian} outlived its work");
    drop((project, config));
}

fn cat() -> tokio::process::Command {
    tokio::process::Command::new("cat")
}

fn quick() -> StopGrace {
    StopGrace {
        after_stdin_close: Duration::from_secs(10),
        after_sigterm: Duration::from_millis(200),
        after_sigkill: Duration::from_secs(5),
    }
}

async fn group_empty(pgid: u32) -> bool {
    support::group_empties(pgid).await
}

/// The only test in this binary that spawns agents in-process, so the watch count is its own.
#[tokio::test(flavor = "multi_thread")]
async fn dropped_and_stopped_agents_are_forgotten_and_the_guardian_keeps_serving() {
    let first = AgentProcess::spawn(cat(), 1024, &Containment::default()).unwrap();
    let guardian = guardian::pid().expect("the first spawn starts the guardian");
    assert!(alive(guardian));
    assert_eq!(
        guardian::start(),
        Some(guardian),
        "one guardian per process"
    );
    assert_eq!(guardian::watched(), 1);

    // The guardian was forked after `first` was spawned, so it inherited our end of `first`'s
    // stdin: it must have closed it, or `cat` would never see EOF and the stop would need SIGTERM.
    let mut first = first;
    let pgid = first.pgid();
    let outcome = first.stop(quick()).await;
    assert!(
        matches!(
            outcome.stage,
            StopStage::StdinClosed | StopStage::AlreadyExited
        ),
        "{outcome:?}"
    );
    assert!(group_empty(pgid).await);
    assert_eq!(
        guardian::watched(),
        0,
        "a stop that empties the group forgets it"
    );

    let second = AgentProcess::spawn(cat(), 1024, &Containment::default()).unwrap();
    let third = AgentProcess::spawn(cat(), 1024, &Containment::default()).unwrap();
    assert_eq!(guardian::watched(), 2);
    let (second_pgid, third_pgid) = (second.pgid(), third.pgid());
    drop(second);
    assert_eq!(guardian::watched(), 1, "a drop forgets the group");
    assert!(group_empty(second_pgid).await);
    drop(third);
    assert!(group_empty(third_pgid).await);
    assert_eq!(guardian::watched(), 0);

    // Still the same guardian, alive, and spawning still works.
    assert_eq!(guardian::pid(), Some(guardian));
    assert!(alive(guardian));
    let mut fourth = AgentProcess::spawn(cat(), 1024, &Containment::default()).unwrap();
    assert_eq!(guardian::watched(), 1);
    fourth.stop(quick()).await;
    assert_eq!(guardian::watched(), 0);
    assert!(alive(guardian));
    let stat = procfs::stat(guardian).unwrap();
    assert_eq!(stat.ppid, std::process::id(), "the guardian is our child");
    assert_ne!(
        stat.pgrp,
        procfs::stat(std::process::id()).unwrap().pgrp,
        "the guardian left our process group, so Ctrl-C to it does not reach the guardian"
    );
}
