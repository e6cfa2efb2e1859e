//! Actor-level tests of the session runtime, with fake-claude as the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use iris::core::{Coded, ErrorCode, ProcessState, SessionFilter, TeamName};
use iris::runtime::{Runtime, RuntimeError};
use iris::store::Store;
use support::{World, fake_claude};

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

async fn start(world: &World, teams: &[&str], settings: &str) -> Runtime {
    let config = world.config(teams, fake_claude(), settings);
    Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_get_or_create_calls_share_one_creation() {
    let world = World::new();
    let runtime = start(&world, &["alpha", "beta"], "").await;
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                runtime
                    .get_or_create_session(&team("alpha"), &team("beta"))
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for call in calls {
        ids.insert(call.await.unwrap().unwrap().session_id);
    }
    assert_eq!(ids.len(), 1, "all callers got the same session");
    assert_eq!(
        runtime.list_sessions(&SessionFilter::all()).unwrap().len(),
        1
    );
    assert_eq!(runtime.agent_spawns(), 1, "the agent was spawned once");
    let record = runtime
        .get_session(&team("alpha"), &team("beta"))
        .unwrap()
        .unwrap();
    assert_eq!(record.process_state, ProcessState::Idle);
    assert!(record.agent_process.is_some());
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_distinct_pairs_are_created_concurrently() {
    let world = World::new();
    let names: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let runtime = start(&world, &refs, "session_init = \"lazy\"").await;
    let mut calls = Vec::with_capacity(10_000);
    for from in &names {
        for to in &names {
            let (runtime, from, to) = (runtime.clone(), team(from), team(to));
            calls.push(tokio::spawn(async move {
                runtime.get_or_create_session(&from, &to).await
            }));
        }
    }
    let mut ids = HashSet::new();
    for call in calls {
        ids.insert(call.await.unwrap().unwrap().session_id);
    }
    assert_eq!(ids.len(), 10_000);
    assert_eq!(runtime.stats().total, 10_000);
    assert_eq!(runtime.agent_spawns(), 0, "lazy creation spawns no agent");
}

#[tokio::test]
async fn pairs_are_directional_and_self_pairs_work() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "session_init = \"lazy\"").await;
    let ab = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    let ba = runtime
        .get_or_create_session(&team("b"), &team("a"))
        .await
        .unwrap();
    let aa = runtime
        .get_or_create_session(&team("a"), &team("a"))
        .await
        .unwrap();
    assert_ne!(ab.session_id, ba.session_id);
    assert_ne!(ab.session_id, aa.session_id);
    let again = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    assert_eq!((again.session_id, again.id), (ab.session_id, ab.id));
}

#[tokio::test]
async fn an_unknown_to_is_reported_before_an_unknown_from() {
    let world = World::new();
    let runtime = start(&world, &["a"], "").await;
    let err = runtime
        .get_or_create_session(&team("ghost-from"), &team("ghost-to"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnknownTeam { team: t } if t.as_str() == "ghost-to"),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::TeamNotFound);
    let err = runtime
        .get_or_create_session(&team("ghost-from"), &team("a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnknownTeam { team: t } if t.as_str() == "ghost-from"),
        "{err}"
    );
    assert_eq!(runtime.stats().total, 0);
}

#[tokio::test]
async fn create_session_refuses_an_existing_pair() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "session_init = \"lazy\"").await;
    let first = runtime
        .create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    let err = runtime
        .create_session(&team("a"), &team("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::AlreadyExists { existing, .. } if *existing == first.session_id),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_eager_creation_leaves_nothing_and_a_later_attempt_succeeds() {
    let world = World::new();
    let agent = world.root.path().join("bin/agent");
    std::fs::create_dir_all(agent.parent().unwrap()).unwrap();
    let config = world.config(&["a", "b"], &agent, "");
    let runtime = Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.get_or_create_session(&team("a"), &team("b")).await })
        })
        .collect();
    let mut messages = HashSet::new();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.code(), ErrorCode::ProcessError, "{err}");
        messages.insert(err.to_string());
    }
    assert_eq!(
        messages.len(),
        1,
        "every waiter got the same error: {messages:?}"
    );
    assert_eq!(runtime.stats().total, 0, "no record is left behind");

    // Fix the agent: the same runtime now creates the session.
    std::os::unix::fs::symlink(fake_claude(), &agent).unwrap();
    let record = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    assert_eq!(record.process_state, ProcessState::Idle);
    assert_eq!(runtime.stats().total, 1);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn records_survive_a_restart_with_process_states_stopped() {
    let world = World::new();
    let id = {
        let runtime = start(&world, &["a", "b"], "").await;
        let record = runtime
            .get_or_create_session(&team("a"), &team("b"))
            .await
            .unwrap();
        runtime
            .increment_message_count(&record.session_id, 3)
            .await
            .unwrap();
        runtime.shutdown(Duration::from_secs(2)).await;
        record.session_id
    };
    {
        // What a crash mid-turn would leave: a process state that is not `stopped`.
        let store = Store::open(world.db_path()).unwrap();
        store
            .update(
                id,
                iris::store::Change::SetProcessState(ProcessState::Processing),
            )
            .await
            .unwrap();
    }
    let runtime = start(&world, &["a", "b"], "").await;
    let record = runtime.get_session_by_id(&id).unwrap().unwrap();
    assert_eq!(record.message_count, 3);
    assert_eq!(record.process_state, ProcessState::Stopped);
    assert_eq!(runtime.startup_report().reset, 1);
    let again = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    assert_eq!(
        again.session_id, id,
        "the restarted runtime brings back the same session"
    );
}

#[tokio::test]
async fn mutations_of_an_unknown_id_are_typed_not_found() {
    let world = World::new();
    let runtime = start(&world, &["a"], "").await;
    let err = runtime
        .increment_message_count(&iris::core::SessionId::new_v4(), 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::SessionNotFound);
}
