//! Actor-level tests of the session runtime, with fake-claude as the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use iris::core::{Coded, ErrorCode, ProcessState, SessionFilter, TeamName};
use iris::runtime::{Runtime, RuntimeError, TellOptions, TellOutcome};
use iris::store::Store;
use support::{World, fake_claude, start};

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
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
    assert_eq!(runtime.stats().sessions.total, 10_000);
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
    assert_eq!(runtime.stats().sessions.total, 0);
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
    assert_eq!(
        runtime.stats().sessions.total,
        0,
        "no record is left behind"
    );

    // Fix the agent: the same runtime now creates the session.
    std::os::unix::fs::symlink(fake_claude(), &agent).unwrap();
    let record = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    assert_eq!(record.process_state, ProcessState::Idle);
    assert_eq!(runtime.stats().sessions.total, 1);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_returns_the_database_opens_again_at_once() {
    let world = World::new();
    for cycle in 1..=5u64 {
        // The caller keeps a handle of its own: shutdown closes that one too.
        let store = Store::open(world.db_path()).unwrap();
        let config = world.config(&["a", "b"], fake_claude(), "");
        let runtime = Runtime::start(config, store.clone()).await.unwrap();
        let told = runtime
            .tell(
                &team("a"),
                &team("b"),
                format!("cycle {cycle}"),
                TellOptions::complete(),
            )
            .await
            .unwrap();
        assert!(matches!(told, TellOutcome::Completed(_)), "{told:?}");
        runtime.shutdown(Duration::from_secs(2)).await;
        let closed = store.get_by_pair(&iris::core::Pair::new(team("a"), team("b")));
        assert_eq!(closed.unwrap_err().code(), ErrorCode::StoreError);
        // No retry: the lock is gone by the time shutdown returned, and everything is there.
        let reopened =
            Store::open(world.db_path()).unwrap_or_else(|error| panic!("cycle {cycle}: {error}"));
        let record = reopened
            .get_by_pair(&iris::core::Pair::new(team("a"), team("b")))
            .unwrap()
            .unwrap();
        assert_eq!(record.message_count, cycle);
    }
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

/// Polls `check` until it holds, for at most five seconds.
async fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the condition never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn deleting_stops_the_agent_removes_the_record_and_the_transcript() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "").await;
    let record = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    let mark = record.agent_process.unwrap();
    // fake-claude writes its transcript at the first user message; make one exist.
    let project = world.root.path().join("teams/b").canonicalize().unwrap();
    let locator = iris::core::transcript::TranscriptLocator::new(world.claude_home.path());
    let path = locator.transcript_path(&project, &record.session_id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{}\n").unwrap();

    let deletion = runtime
        .delete_session(&record.session_id, true)
        .await
        .unwrap();
    assert_eq!(
        deletion.deleted.map(|r| r.session_id),
        Some(record.session_id)
    );
    assert_eq!(
        deletion.transcript,
        iris::runtime::TranscriptRemoval::Removed(vec![path.clone()])
    );
    assert!(!path.exists());
    assert!(
        runtime
            .get_session_by_id(&record.session_id)
            .unwrap()
            .is_none()
    );
    assert!(
        iris::agent::procfs::live_group_members(mark.pgid).is_empty(),
        "the agent was stopped"
    );
    eventually(|| runtime.live_sessions() == 0).await;

    // The pair is free: the next request creates a new session.
    let fresh = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    assert_ne!(fresh.session_id, record.session_id);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn deleting_an_unknown_id_deletes_nothing() {
    let world = World::new();
    let runtime = start(&world, &["a"], "").await;
    let deletion = runtime
        .delete_session(&iris::core::SessionId::new_v4(), true)
        .await
        .unwrap();
    assert_eq!(deletion.deleted, None);
}

#[tokio::test]
async fn compaction_walks_the_status_and_resets_the_count() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "").await;
    let record = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    runtime
        .increment_message_count(&record.session_id, 600)
        .await
        .unwrap();
    let before = runtime
        .get_session_by_id(&record.session_id)
        .unwrap()
        .unwrap();
    assert!(runtime.should_compact(&before));
    let after = runtime.compact_session(&record.session_id).await.unwrap();
    assert_eq!(after.message_count, 0);
    assert_eq!(after.status, iris::core::SessionStatus::Active);
    assert!(!runtime.should_compact(&after));
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_tell_names_the_session_that_ran_it_even_one_it_created() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "session_init = \"lazy\"").await;
    assert!(
        runtime
            .get_session(&team("a"), &team("b"))
            .unwrap()
            .is_none()
    );
    let told = runtime
        .tell_in_session(&team("a"), &team("b"), "hi", TellOptions::complete())
        .await
        .unwrap();
    assert!(matches!(told.outcome, TellOutcome::Completed(_)));
    let created = runtime
        .get_session(&team("a"), &team("b"))
        .unwrap()
        .unwrap();
    assert_eq!(told.session_id, created.session_id);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_past_the_policy_is_compacted_after_its_turn() {
    let world = World::new();
    let policy = "[settings.compaction]\nmax_messages = 2";
    let runtime = start(&world, &["a", "b"], policy).await;
    let (a, b) = (team("a"), team("b"));
    let tell = |n: u32| runtime.tell(&a, &b, format!("message {n}"), TellOptions::complete());
    for n in 1..=2 {
        assert!(matches!(tell(n).await.unwrap(), TellOutcome::Completed(_)));
    }
    let shown = || {
        runtime
            .get_session(&team("a"), &team("b"))
            .unwrap()
            .unwrap()
    };
    // At the limit, not past it: nothing happens.
    assert_eq!(shown().message_count, 2);
    assert!(matches!(tell(3).await.unwrap(), TellOutcome::Completed(_)));
    // Past it: the agent compacts its conversation (fake-claude answers /compact with a
    // compact_boundary), the count starts again and the session stays usable.
    eventually(|| {
        let record = shown();
        record.message_count == 0 && record.status == iris::core::SessionStatus::Active
    })
    .await;
    assert!(matches!(tell(4).await.unwrap(), TellOutcome::Completed(_)));
    assert_eq!(shown().message_count, 1);
    runtime.shutdown(Duration::from_secs(2)).await;
}

/// Passivation uses a short real timer: paused tokio time would also advance past the store's
/// writer thread (a real thread) and time out the calls that wait for it.
#[tokio::test]
async fn a_passivated_session_comes_back_with_the_same_record() {
    let world = World::new();
    let runtime = start(
        &world,
        &["a", "b"],
        "session_init = \"lazy\"\npassivate_after = \"300ms\"",
    )
    .await;
    let record = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    runtime
        .increment_message_count(&record.session_id, 2)
        .await
        .unwrap();
    eventually(|| runtime.live_sessions() == 0).await;
    let back = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    assert_eq!(back.session_id, record.session_id);
    assert_eq!(back.message_count, 2);
    assert_eq!(runtime.live_sessions(), 1);
}

#[tokio::test]
async fn a_failed_actor_restarts_and_three_failures_mark_the_session_error() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "session_init = \"lazy\"").await;
    let (a, b) = (team("a"), team("b"));
    let record = runtime.get_or_create_session(&a, &b).await.unwrap();
    runtime
        .increment_message_count(&record.session_id, 5)
        .await
        .unwrap();

    runtime.inject_session_failure(&a, &b).await.unwrap();
    // Restarted from its stored record: the same session, with its count.
    let after_one = runtime
        .increment_message_count(&record.session_id, 1)
        .await
        .unwrap();
    assert_eq!(after_one.message_count, 6);

    runtime.inject_session_failure(&a, &b).await.unwrap();
    runtime.inject_session_failure(&a, &b).await.unwrap();
    let mut last = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        match runtime.get_or_create_session(&a, &b).await {
            Err(e) => {
                last = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let err = last.expect("requests fail fast after three failures");
    assert!(matches!(err, RuntimeError::SessionFailed { .. }), "{err}");
    eventually(|| {
        runtime
            .get_session_by_id(&record.session_id)
            .unwrap()
            .is_some_and(|r| r.status == iris::core::SessionStatus::Error)
    })
    .await;

    // A reset brings it back, with its record.
    runtime.reset_session(&a, &b).await.unwrap();
    let back = runtime.get_or_create_session(&a, &b).await.unwrap();
    assert_eq!(back.session_id, record.session_id);
    assert_eq!(back.status, iris::core::SessionStatus::Active);
    assert_eq!(back.message_count, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_racing_a_deletion_never_resurrects_the_pair() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "session_init = \"lazy\"").await;
    for _ in 0..50 {
        let old = runtime
            .get_or_create_session(&team("a"), &team("b"))
            .await
            .unwrap()
            .session_id;
        let (r1, r2, r3) = (runtime.clone(), runtime.clone(), runtime.clone());
        let delete = tokio::spawn(async move { r1.delete_session(&old, false).await });
        let increment = tokio::spawn(async move { r2.increment_message_count(&old, 1).await });
        let second_delete = tokio::spawn(async move { r3.delete_session(&old, false).await });
        let deleted = [
            delete.await.unwrap().unwrap(),
            second_delete.await.unwrap().unwrap(),
        ];
        assert_eq!(
            deleted.iter().filter(|d| d.deleted.is_some()).count(),
            1,
            "exactly one of two concurrent deletions deletes"
        );
        match increment.await.unwrap() {
            Ok(record) => assert_eq!(record.session_id, old, "the increment hit another session"),
            Err(e) => assert_eq!(e.code(), ErrorCode::SessionNotFound, "{e}"),
        }
        assert!(
            runtime
                .get_session(&team("a"), &team("b"))
                .unwrap()
                .is_none(),
            "the deleted pair came back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_survive_an_actor_that_keeps_passivating() {
    let world = World::new();
    // Passivation after 1 ms races every call with an actor that is about to stop.
    let runtime = start(
        &world,
        &["a", "b"],
        "session_init = \"lazy\"\npassivate_after = \"1ms\"",
    )
    .await;
    let id = runtime
        .get_or_create_session(&team("a"), &team("b"))
        .await
        .unwrap()
        .session_id;
    for n in 1..=200 {
        let record = runtime.increment_message_count(&id, 1).await.unwrap();
        assert_eq!((record.session_id, record.message_count), (id, n));
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_cancel_and_delete_never_meet_a_passivating_actor_as_an_error() {
    let world = World::new();
    // Passivation after 1 ms: every call races an actor that is about to stop.
    let runtime = start(
        &world,
        &["a", "b"],
        "session_init = \"lazy\"\npassivate_after = \"1ms\"",
    )
    .await;
    let (a, b) = (team("a"), team("b"));
    for n in 0..150_u64 {
        let id = runtime
            .get_or_create_session(&a, &b)
            .await
            .unwrap()
            .session_id;
        // Vary the moment, so some calls land right as the actor stops.
        tokio::time::sleep(Duration::from_micros(n % 7 * 300)).await;
        runtime.sleep(&a, &b, n % 2 == 0).await.unwrap();
        tokio::time::sleep(Duration::from_micros(n % 5 * 300)).await;
        runtime.cancel(&a, &b, true).await.unwrap();
        tokio::time::sleep(Duration::from_micros(n % 3 * 400)).await;
        let deletion = runtime.delete_session(&id, false).await.unwrap();
        assert_eq!(
            deletion.deleted.map(|r| r.session_id),
            Some(id),
            "round {n}"
        );
        assert!(
            runtime.get_session_by_id(&id).unwrap().is_none(),
            "round {n}: the record is still stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_by_id_never_deletes_its_successor() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "session_init = \"lazy\"").await;
    let (a, b) = (team("a"), team("b"));
    let first = runtime.get_or_create_session(&a, &b).await.unwrap();
    runtime
        .delete_session(&first.session_id, false)
        .await
        .unwrap();
    let second = runtime.get_or_create_session(&a, &b).await.unwrap();
    assert_ne!(first.session_id, second.session_id);
    // A late deletion of the first id leaves the pair's new session alone.
    let late = runtime
        .delete_session(&first.session_id, false)
        .await
        .unwrap();
    assert_eq!(late.deleted, None);
    assert!(
        runtime
            .get_session_by_id(&second.session_id)
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn create_mutate_delete_and_reset_by_their_calls() {
    let world = World::new();
    let runtime = start(&world, &["a", "b"], "session_init = \"lazy\"").await;
    let created = runtime
        .create_session(&team("a"), &team("b"))
        .await
        .unwrap();
    let again = runtime
        .create_session(&team("a"), &team("b"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::AlreadyExists);
    let mutated = runtime
        .increment_message_count(&created.session_id, 4)
        .await
        .unwrap();
    assert_eq!(mutated.message_count, 4);
    let deletion = runtime
        .delete_session(&created.session_id, false)
        .await
        .unwrap();
    assert_eq!(
        deletion.deleted.map(|r| r.session_id),
        Some(created.session_id)
    );
    runtime.reset_session(&team("a"), &team("b")).await.unwrap();
}

/// In a cluster, a runtime runs only the pairs whose receiving team its node hosts: a pair
/// placed on another node is refused with the node to send it through, and no agent starts
/// here; `wake_all` wakes only this node's teams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_only_the_pairs_whose_receiving_team_it_hosts() {
    let world = World::new();
    let cluster = "\n[cluster]\ncookie = \"c\"\n[cluster.nodes.n1]\naddress = \"127.0.0.1:7501\"\n[cluster.nodes.n2]\naddress = \"127.0.0.1:7502\"\n";
    let config = world
        .config_with_teams(
            &[
                ("alpha", "node = \"n1\""),
                ("beta", "node = \"n2\""),
                ("gamma", ""),
            ],
            fake_claude(),
            cluster,
        )
        .serving_as(iris::core::config::cluster::NodeName::new("n1").unwrap());
    let runtime = Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap();
    let (alpha, beta, gamma) = (team("alpha"), team("beta"), team("gamma"));
    let refused = runtime
        .tell(&alpha, &beta, "hi", TellOptions::complete())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RuntimeError::HostedElsewhere { node, .. } if node.as_str() == "n2"),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("cluster node n2"), "{refused}");
    assert_eq!(runtime.get_session(&alpha, &beta).unwrap(), None);
    // Its own teams, and teams placed on no node, run here.
    let outcome = runtime
        .tell(&beta, &alpha, "hi", TellOptions::complete())
        .await
        .unwrap();
    assert!(matches!(outcome, TellOutcome::Completed(_)), "{outcome:?}");
    let woken: Vec<String> = runtime
        .wake_all(&alpha)
        .await
        .into_iter()
        .map(|(team, _)| team.to_string())
        .collect();
    assert_eq!(woken, [gamma.to_string()]);
    runtime.shutdown(Duration::from_secs(5)).await;
}
