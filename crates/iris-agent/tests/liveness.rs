//! Liveness, not silence: a turn is judged by its progress. A silent tool longer than the stall
//! limit completes; a frozen agent, a model call that hangs and a tool past its timeout without
//! CPU use fail; a turn's cap holds whatever its progress; and a limit never beats an answer
//! that had already arrived. Driven through `Conversation` against fake-claude.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use iris_agent::conversation::{
    Activity, AgentError, ConfiguredPolicy, Conversation, ConversationOptions, PermissionPolicy,
    TurnLimits,
};
use iris_core::SessionId;
use iris_core::config::GrantPermission;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Team, group_empties};
use tokio::sync::mpsc;

/// fake-claude's `!tool` reports itself as a background task after this long; far beyond every
/// tool here, so each one is truly silent, as the real CLI's Bash tool mostly is.
const NO_TASK_NOTICE: (&str, &str) = ("FAKE_CLAUDE_TASK_NOTICE_MS", "600000");

/// A bound on each test's wait, far beyond what it should take: a hang fails, not a slow run.
const BOUND: Duration = Duration::from_secs(60);

async fn start(team: &Team, partial_messages: bool) -> Conversation {
    let mut command = team.command(&SessionId::new_v4(), &[NO_TASK_NOTICE]);
    if partial_messages {
        command.arg("--include-partial-messages");
    }
    let policy: Arc<dyn PermissionPolicy> =
        Arc::new(ConfiguredPolicy::new(GrantPermission::Yes, vec![], vec![]));
    Conversation::start(command, policy, ConversationOptions::default())
        .await
        .unwrap()
}

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {BOUND:?}"))
}

fn stall(stall: Duration) -> TurnLimits {
    TurnLimits::new(stall)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tool_longer_than_the_stall_limit_completes_and_shows_as_running() {
    let team = Team::new();
    let mut c = start(&team, false).await;
    let mut activity = c.activity();
    let mut seen = vec![activity.borrow_and_update().clone()];
    let watcher = tokio::spawn(async move {
        while activity.changed().await.is_ok() {
            seen.push(activity.borrow_and_update().clone());
            if seen.last() == Some(&Activity::Idle) {
                break;
            }
        }
        seen
    });
    // A 3 s tool that prints nothing, with a 1 s stall limit.
    let report = bounded(
        "the tool turn",
        c.turn(
            "!tool 3000 tool-marker",
            None,
            stall(Duration::from_secs(1)),
        ),
    )
    .await
    .unwrap();
    assert!(report.text.starts_with("after tool"), "{}", report.text);
    assert!(team.project.path().join("tool-marker").exists());
    let seen = bounded("the activity watcher", watcher).await.unwrap();
    assert!(
        seen.iter()
            .any(|a| matches!(a, Activity::RunningTool { name, .. } if name == "Bash")),
        "{seen:?}"
    );
    assert_eq!(seen.first(), Some(&Activity::Idle), "{seen:?}");
    assert_eq!(seen.last(), Some(&Activity::Idle), "{seen:?}");
    assert_eq!(*c.activity().borrow(), Activity::Idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_agent_is_killed_as_stalled() {
    let team = Team::new();
    let mut c = start(&team, true).await;
    let pid = c.process().pid();
    let pgid = c.process().pgid();
    // A minute of streaming, frozen as soon as it has begun.
    let (tx, mut events) = mpsc::channel(1024);
    let freezer = tokio::spawn(async move {
        events.recv().await.expect("the turn printed something");
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
        while events.recv().await.is_some() {}
    });
    let error = bounded(
        "the frozen turn",
        c.turn("!stream 600 100", Some(&tx), stall(Duration::from_secs(1))),
    )
    .await
    .unwrap_err();
    drop(tx);
    freezer.await.unwrap();
    assert!(
        matches!(error, AgentError::Stalled { .. }),
        "{error:?}: {error}"
    );
    assert!(error.to_string().contains("response_timeout"), "{error}");
    assert!(group_empties(pgid).await, "the frozen agent was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_that_hangs_without_output_is_a_stall() {
    let team = Team::new();
    let mut c = start(&team, true).await;
    let error = bounded(
        "the hanging turn",
        c.turn("!hang", None, stall(Duration::from_secs(1))),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, AgentError::Stalled { .. }),
        "{error:?}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_past_its_timeout_without_cpu_fails_naming_the_tool() {
    let team = Team::new();
    let mut c = start(&team, false).await;
    let limits = TurnLimits::new(Duration::from_secs(1)).with_tool_timeout(Duration::from_secs(1));
    let error = bounded(
        "the over-long tool",
        c.turn("!tool 30000 late-marker", None, limits),
    )
    .await
    .unwrap_err();
    match &error {
        AgentError::ToolTimedOut { tool, limit, .. } => {
            assert_eq!(tool, "Bash");
            assert_eq!(*limit, Duration::from_secs(1));
        }
        other => panic!("expected a tool timeout, got {other:?}: {other}"),
    }
    let shown = error.to_string();
    assert!(
        shown.contains("Bash") && shown.contains("tool_timeout"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turn_timeout_caps_a_turn_that_keeps_streaming() {
    let team = Team::new();
    let mut c = start(&team, true).await;
    // Streams every 100 ms for a minute: always making progress, yet capped at 1 s.
    let limits =
        TurnLimits::new(Duration::from_secs(30)).with_turn_timeout(Some(Duration::from_secs(1)));
    let error = bounded("the capped turn", c.turn("!stream 600 100", None, limits))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentError::TurnTimedOut { limit } if limit == Duration::from_secs(1)),
        "{error:?}: {error}"
    );
    assert!(error.to_string().contains("turn_timeout"), "{error}");
}

/// The node froze (here: its only runtime thread blocked) while the agent's answer arrived and
/// the stall limit passed. On resuming, the answer already in the pipe wins over the timer.
#[tokio::test(flavor = "current_thread")]
async fn an_answer_that_arrived_while_the_node_was_frozen_beats_the_timer() {
    let team = Team::new();
    let mut c = start(&team, false).await;
    let (frozen_tx, frozen) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Freeze this runtime for three stall limits: the answer (after 200 ms) comes meanwhile.
        std::thread::sleep(Duration::from_secs(3));
        let _ = frozen_tx.send(());
    });
    let report = bounded(
        "the turn",
        c.turn("!sleep 200", None, stall(Duration::from_secs(1))),
    )
    .await
    .unwrap();
    assert!(report.text.starts_with("echo:"), "{}", report.text);
    frozen
        .await
        .expect("the runtime was frozen during the turn");
}
