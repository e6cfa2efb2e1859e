//! Cross-crate: what an embedder does with today's `iris` crate — load a configuration, persist a
//! session record, hold a conversation with the team's agent (fake-claude), and record the turn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use iris::agent::command::{self, LaunchOptions};
use iris::agent::conversation::{ConfiguredPolicy, Conversation, ConversationOptions};
use iris::agent::process::StopGrace;
use iris::core::config::Config;
use iris::core::{Pair, ProcessState, SessionId, SessionRecord, TeamName, Timestamp};
use iris::store::Change;

#[tokio::test]
async fn config_store_and_agent_work_together() {
    let root = tempfile::tempdir().unwrap();
    let claude_home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("teams/alpha")).unwrap();
    std::fs::create_dir_all(root.path().join("teams/beta")).unwrap();
    let toml = format!(
        r#"
[database]
path = "data/iris.redb"

[agent]
command = {fake:?}
env = {{ CLAUDE_CONFIG_DIR = {home:?} }}

[teams.alpha]
path = "teams/alpha"
description = "asks"

[teams.beta]
path = "teams/beta"
description = "answers"
grant_permission = "yes"
"#,
        fake = support::fake_claude().display().to_string(),
        home = claude_home.path().display().to_string(),
    );
    std::fs::write(root.path().join("iris.toml"), toml).unwrap();
    let config = Config::load(&root.path().join("iris.toml")).unwrap();

    let db = config.database().path().unwrap().to_path_buf();
    let store = iris::Store::open(&db).unwrap();
    let (alpha, beta) = (
        TeamName::new("alpha").unwrap(),
        TeamName::new("beta").unwrap(),
    );
    let pair = Pair::new(alpha, beta.clone());
    let record = store
        .create(SessionRecord::new(
            pair.clone(),
            SessionId::new_v4(),
            Timestamp::now(),
        ))
        .await
        .unwrap();

    let team = config.team(&beta).unwrap();
    let path = iris::core::project_path::validate_project_path(&team.path).unwrap();
    assert!(path.ends_with("teams/beta"));
    let launch = command::build_launch(
        &beta,
        team,
        &config.agent_for(&beta).unwrap(),
        &command::Conversation::New(record.session_id),
        &LaunchOptions::default(),
    )
    .unwrap();
    let policy = Arc::new(ConfiguredPolicy::new(
        team.grant_permission,
        team.allowed_tools.clone(),
        team.disallowed_tools.clone(),
    ));
    let mut conversation =
        Conversation::start(launch.to_command(), policy, ConversationOptions::default())
            .await
            .unwrap();
    store
        .update_all(
            record.session_id,
            vec![
                Change::SetProcessState(ProcessState::Idle),
                Change::SetAgentProcess(Some(conversation.process().mark())),
                Change::SetDebugInfo {
                    launch_command: Some(launch.display()),
                    team_config_snapshot: Some(command::team_config_snapshot(
                        &beta,
                        team,
                        &config.agent_for(&beta).unwrap(),
                    )),
                },
            ],
        )
        .await
        .unwrap();

    let report = conversation
        .turn("hello beta", None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(report.text, "echo: hello beta");
    store
        .update_all(
            record.session_id,
            vec![
                Change::IncrementMessageCount(1),
                Change::SetLastResponse(Timestamp::now()),
                Change::AddUsage(report.usage_totals()),
            ],
        )
        .await
        .unwrap();
    conversation.stop(StopGrace::default()).await;
    store
        .update_all(
            record.session_id,
            vec![
                Change::SetProcessState(ProcessState::Stopped),
                Change::SetAgentProcess(None),
            ],
        )
        .await
        .unwrap();
    drop(store);

    // Everything survives a reopen.
    let store = iris::Store::open(&db).unwrap();
    let back = store.get_by_pair(&pair).unwrap().unwrap();
    assert_eq!(back.message_count, 1);
    assert!(back.usage.cost_usd > 0.0);
    assert!(back.launch_command.unwrap().contains("--session-id="));
    assert_eq!(back.process_state, ProcessState::Stopped);
    let locator = iris::core::transcript::TranscriptLocator::new(claude_home.path());
    assert!(locator.transcript_exists(&path, &record.session_id));
}
