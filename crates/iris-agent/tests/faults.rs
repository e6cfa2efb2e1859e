//! The agent fault matrix: every fake-claude directive and start-up fault, driven through
//! `Conversation`. Each must end in the right outcome or typed error within its limit, and leave
//! nothing running in the agent's process group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use iris_agent::codec::{CodecError, Event};
use iris_agent::conversation::{
    AgentError, ConfiguredPolicy, Conversation, ConversationOptions, PermissionPolicy,
};
use iris_agent::process::{SpawnError, StopGrace, StopStage};
use iris_core::SessionId;
use iris_core::config::GrantPermission;
use support::{Team, group_empties};
use tokio::sync::mpsc;

const STALL: Duration = Duration::from_secs(20);

fn policy(grant: GrantPermission) -> Arc<dyn PermissionPolicy> {
    Arc::new(ConfiguredPolicy::new(grant, vec![], vec![]))
}

fn options() -> ConversationOptions {
    ConversationOptions {
        spawn_timeout: Duration::from_secs(20),
        interrupt_grace: Duration::from_secs(5),
        ..ConversationOptions::default()
    }
}

fn quick_stop() -> StopGrace {
    StopGrace {
        after_stdin_close: Duration::from_secs(2),
        after_sigterm: Duration::from_millis(300),
        after_sigkill: Duration::from_secs(5),
    }
}

async fn start(team: &Team, id: &SessionId) -> Conversation {
    Conversation::start(
        team.command(id, &[]),
        policy(GrantPermission::Yes),
        options(),
    )
    .await
    .unwrap()
}

/// Stops the conversation and checks that its whole process group is gone.
async fn stop_clean(mut c: Conversation) -> StopStage {
    let pgid = c.process().pgid();
    let outcome = c.stop(quick_stop()).await;
    assert!(group_empties(pgid).await, "processes left in group {pgid}");
    outcome.stage
}

#[tokio::test]
async fn a_turn_echoes_with_cost_usage_and_the_session_id() {
    let team = Team::new();
    let id = SessionId::new_v4();
    let mut c = start(&team, &id).await;
    let report = c.turn("hello there", None, STALL).await.unwrap();
    assert_eq!(report.text, "echo: hello there");
    assert!(!report.failed());
    assert_eq!(report.result.subtype, "success");
    assert!(report.result.total_cost_usd.unwrap() > 0.0);
    assert!(report.result.usage.unwrap().input_tokens > 0);
    assert_eq!(report.session_id.as_deref(), Some(id.to_string().as_str()));
    assert!(!report.session_id_changed);
    assert!(team.transcript(&id).is_some(), "the transcript was written");
    assert_eq!(stop_clean(c).await, StopStage::StdinClosed);
}

#[tokio::test]
async fn a_resumed_conversation_continues_the_same_transcript() {
    let team = Team::new();
    let id = SessionId::new_v4();
    let mut c = start(&team, &id).await;
    c.turn("first", None, STALL).await.unwrap();
    stop_clean(c).await;
    let mut c = Conversation::start(team.resume(&id), policy(GrantPermission::Yes), options())
        .await
        .unwrap();
    let report = c.turn("second", None, STALL).await.unwrap();
    assert_eq!(report.session_id.as_deref(), Some(id.to_string().as_str()));
    stop_clean(c).await;
    let transcript = std::fs::read_to_string(team.transcript(&id).unwrap()).unwrap();
    assert!(transcript.contains("first") && transcript.contains("second"));
}

#[tokio::test]
async fn every_text_block_reaches_the_sink_and_the_text_is_the_results() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let (tx, mut rx) = mpsc::channel(64);
    let report = c
        .turn("!blocks chunk 1|chunk 2|chunk 3", Some(&tx), STALL)
        .await
        .unwrap();
    drop(tx);
    let mut texts = Vec::new();
    let mut saw_result = false;
    while let Some(e) = rx.recv().await {
        match e.event {
            Event::Assistant(a) => texts.push(a.text()),
            Event::Result(_) => saw_result = true,
            _ => {}
        }
    }
    // One `assistant` event per block, as the real CLI prints them; the turn's text is the
    // result's, which holds the last block.
    assert_eq!(texts, ["chunk 1", "chunk 2", "chunk 3"]);
    assert!(saw_result);
    assert_eq!(report.text, "chunk 3");
    stop_clean(c).await;
}

#[tokio::test]
async fn a_missing_binary_fails_at_once() {
    let team = Team::new();
    let mut cmd = team.command(&SessionId::new_v4(), &[]);
    let cmd = {
        let std = cmd.as_std_mut();
        let mut fresh = tokio::process::Command::new("/nonexistent/claude");
        fresh.args(std.get_args());
        fresh
    };
    let err = Conversation::start(cmd, policy(GrantPermission::Yes), options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::Spawn(SpawnError::NotFound { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn an_exit_before_the_handshake_fails_at_once_with_status_and_stderr() {
    let team = Team::new();
    let cmd = team.command(&SessionId::new_v4(), &[("FAKE_CLAUDE_FAIL_START", "1")]);
    let mut opts = options();
    // Far longer than the test may take: the failure must not wait for it.
    opts.spawn_timeout = Duration::from_secs(600);
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        Conversation::start(cmd, policy(GrantPermission::Yes), opts),
    )
    .await
    .expect("the start waited instead of failing at once")
    .unwrap_err();
    match err {
        AgentError::ExitedBeforeReady { exit, .. } => {
            assert_eq!(exit.code, Some(2));
            assert!(
                exit.stderr_tail.contains("simulated start failure"),
                "{exit}"
            );
        }
        other => panic!("expected ExitedBeforeReady, got {other}"),
    }
}

#[tokio::test]
async fn a_slow_start_beyond_the_spawn_timeout_is_a_timeout_and_is_killed() {
    let team = Team::new();
    let cmd = team.command(
        &SessionId::new_v4(),
        &[("FAKE_CLAUDE_START_DELAY_MS", "60000")],
    );
    let mut opts = options();
    opts.spawn_timeout = Duration::from_millis(300);
    let err = Conversation::start(cmd, policy(GrantPermission::Yes), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::HandshakeTimeout { .. }), "{err}");
    assert!(err.to_string().contains("spawn_timeout"), "{err}");
}

#[tokio::test]
async fn a_stall_is_killed_after_the_silence_limit() {
    for directive in ["!stall", "!hang"] {
        let team = Team::new();
        let mut c = start(&team, &SessionId::new_v4()).await;
        let pgid = c.process().pgid();
        let err = c
            .turn(directive, None, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AgentError::Stalled { .. }),
            "{directive}: {err}"
        );
        assert!(group_empties(pgid).await);
        stop_clean(c).await;
    }
}

#[tokio::test]
async fn a_crash_mid_turn_fails_at_once_with_code_and_stderr() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let err = c
        .turn("!crash 3", None, Duration::from_secs(600))
        .await
        .unwrap_err();
    match &err {
        AgentError::Exited { exit } => {
            assert_eq!(exit.code, Some(3));
            assert!(exit.stderr_tail.contains("crash"), "{exit}");
        }
        other => panic!("expected Exited, got {other}"),
    }
    assert!(matches!(
        c.turn("again", None, STALL).await,
        Err(AgentError::NotRunning)
    ));
    stop_clean(c).await;
}

#[tokio::test]
async fn a_malformed_json_line_is_a_protocol_error_and_kills_the_agent() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let pgid = c.process().pgid();
    let err = c.turn("!garbage", None, STALL).await.unwrap_err();
    assert!(
        matches!(err, AgentError::Protocol(CodecError::Malformed { .. })),
        "{err}"
    );
    assert!(group_empties(pgid).await);
}

#[tokio::test]
async fn a_big_reply_is_fine_and_an_over_long_line_is_a_protocol_error() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let report = c.turn("!big 200000", None, STALL).await.unwrap();
    assert_eq!(report.text.len(), 200_000);
    stop_clean(c).await;

    let mut opts = options();
    opts.max_line = 10_000;
    let mut c = Conversation::start(
        team.command(&SessionId::new_v4(), &[]),
        policy(GrantPermission::Yes),
        opts,
    )
    .await
    .unwrap();
    let err = c.turn("!big 50000", None, STALL).await.unwrap_err();
    assert!(matches!(err, AgentError::Protocol(_)), "{err}");
    stop_clean(c).await;
}

#[tokio::test]
async fn a_slow_reply_within_the_stall_limit_completes() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let report = c.turn("!sleep 200", None, STALL).await.unwrap();
    assert!(!report.failed());
    assert!(report.text.starts_with("echo:"), "{}", report.text);
    stop_clean(c).await;
}

#[tokio::test]
async fn an_error_result_is_a_failed_turn() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let report = c.turn("!error", None, STALL).await.unwrap();
    assert!(report.failed());
    assert!(report.result.is_error);
    stop_clean(c).await;
}

#[tokio::test]
async fn grandchildren_die_with_the_agent() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let report = c.turn("!grandchild", None, STALL).await.unwrap();
    let pid: u32 = report
        .text
        .rsplit("pid=")
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("the reply names the grandchild");
    assert!(iris_agent::procfs::stat(pid).is_some_and(|s| s.is_alive()));
    stop_clean(c).await;
    assert!(!iris_agent::procfs::stat(pid).is_some_and(|s| s.is_alive()));
}

#[tokio::test]
async fn an_agent_that_ignores_sigterm_is_killed() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    c.turn("!ignore-sigterm", None, STALL).await.unwrap();
    // Leave a long turn in flight, so that stdin EOF does not end the agent either.
    let busy = tokio::time::timeout(
        Duration::from_millis(300),
        c.turn("!sleep 60000", None, STALL),
    );
    assert!(busy.await.is_err(), "the sleeping turn ended early");
    let pgid = c.process().pgid();
    let grace = StopGrace {
        after_stdin_close: Duration::from_millis(200),
        after_sigterm: Duration::from_millis(300),
        after_sigkill: Duration::from_secs(5),
    };
    let outcome = c.stop(grace).await;
    assert_eq!(outcome.stage, StopStage::Sigkill);
    assert!(group_empties(pgid).await);
}

#[tokio::test]
async fn an_abandoned_turn_does_not_answer_the_next_one() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        c.turn("!sleep 500", None, STALL),
    );
    assert!(abandoned.await.is_err());
    let next = c.turn("second", None, STALL).await.unwrap();
    assert_eq!(next.text, "echo: second");
    stop_clean(c).await;
}

#[tokio::test]
async fn exit_after_reply_completes_the_turn_then_reports_not_running() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let report = c.turn("!exit-after-reply", None, STALL).await.unwrap();
    assert!(!report.failed());
    c.process()
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(c.turn("more", None, STALL).await.is_err());
    stop_clean(c).await;
}

#[tokio::test]
async fn permission_requests_are_answered_by_the_policy() {
    for (grant, expected) in [
        (GrantPermission::Yes, "permission Bash: allow"),
        (GrantPermission::No, "permission Bash: deny"),
    ] {
        let team = Team::new();
        let mut c = Conversation::start(
            team.command(&SessionId::new_v4(), &[]),
            policy(grant),
            options(),
        )
        .await
        .unwrap();
        let report = c.turn("!permission Bash", None, STALL).await.unwrap();
        assert!(report.text.contains(expected), "{}", report.text);
        stop_clean(c).await;
    }
}

#[tokio::test]
async fn an_interrupt_ends_the_turn_in_flight() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    let interrupter = c.interrupter();
    let poke = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        interrupter.interrupt();
    });
    let report = c.turn("!sleep 60000", None, STALL).await.unwrap();
    poke.await.unwrap();
    assert!(report.failed());
    assert_eq!(report.result.subtype, "error_during_execution");
    // The conversation is still usable.
    let next = c.turn("after", None, STALL).await.unwrap();
    assert_eq!(next.text, "echo: after");
    stop_clean(c).await;
}

#[tokio::test]
async fn an_interrupt_made_before_its_turn_starts_ends_that_turn_and_no_later_one() {
    let team = Team::new();
    let mut c = start(&team, &SessionId::new_v4()).await;
    // Cancelled before its message is even sent (a supervisor may cancel a turn it has
    // assigned but not yet started): the turn must still end, not wait out a stall.
    c.interrupter().interrupt();
    let report = c.turn("!hang", None, STALL).await.unwrap();
    assert!(report.failed());
    assert_eq!(report.result.subtype, "error_during_execution");
    // An interrupt that comes after its turn has ended does nothing to a later turn.
    let stale = c.interrupter();
    let next = c.turn("after", None, STALL).await.unwrap();
    stale.interrupt();
    assert_eq!(next.text, "echo: after");
    let later = c.turn("later", None, STALL).await.unwrap();
    assert_eq!(later.text, "echo: later");
    stop_clean(c).await;
}

#[tokio::test]
async fn a_launch_built_from_team_config_holds_a_conversation() {
    use iris_agent::command::{self, LaunchOptions};
    use iris_core::TeamName;
    use iris_core::config::Config;

    let team = Team::new();
    let toml = format!(
        "[agent]\ncommand = {:?}\nenv = {{ CLAUDE_CONFIG_DIR = {:?} }}\n[teams.beta]\npath = {:?}\ngrant_permission = \"yes\"\n",
        support::fake_claude().display().to_string(),
        team.config.path().display().to_string(),
        team.project.path().display().to_string(),
    );
    let config = Config::from_toml_str(&toml, team.project.path(), "test.toml", &|_| None).unwrap();
    let beta = TeamName::new("beta").unwrap();
    let id = SessionId::new_v4();
    let launch = command::build_launch(
        &beta,
        config.team(&beta).unwrap(),
        &config.agent_for(&beta).unwrap(),
        &command::Conversation::New(id),
        &LaunchOptions::default(),
    )
    .unwrap();
    let mut c = Conversation::start(launch.to_command(), policy(GrantPermission::Yes), options())
        .await
        .unwrap();
    let report = c.turn("via config", None, STALL).await.unwrap();
    assert_eq!(report.text, "echo: via config");
    assert_eq!(report.session_id, Some(id.to_string()));
    stop_clean(c).await;
    assert!(team.transcript(&id).is_some());
}
