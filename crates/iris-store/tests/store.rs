//! The original's session-store catalogue (reference §8.2, §8.3), ported, plus the cases where
//! this store deliberately does better. Test names that start with `fixes_` assert our behaviour
//! where the original had a defect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{pair, record, record_at, team};
use iris_core::{
    Coded, ErrorCode, ProcessState, SessionFilter, SessionId, SessionStatus, Timestamp, TurnId,
};
use iris_store::{Change, Mutation, OpenError, Store, StoreError};
use tempfile::TempDir;

fn file_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("data/sessions.redb")).unwrap();
    (dir, store)
}

// ----- opening -----

#[test]
fn open_creates_the_parent_directory_and_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/iris.redb");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.path(), Some(path.as_path()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n").unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::NotADatabase { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::StoreCorrupt);
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "these are my notes, not a database\n"
    );
}

#[test]
fn a_truncated_database_gives_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    drop(Store::open(&path).unwrap());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len().min(700)]).unwrap();
    // Either a typed error or a repaired, empty-but-valid store; never a panic.
    if let Ok(store) = Store::open(&path) {
        assert_eq!(store.stats().total, 0);
    }
}

#[test]
fn a_second_open_of_a_held_file_says_another_node_may_be_using_it() {
    let (dir, _held) = file_store();
    let err = Store::open(dir.path().join("data/sessions.redb")).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::StoreLocked);
    assert!(err.to_string().contains("another iris node"), "{err}");
}

#[test]
fn an_unknown_schema_version_is_refused_with_found_and_supported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            let v = iris_store::codec::encode(&99u32).unwrap();
            meta.insert("schema_version", v.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    match &err {
        OpenError::UnsupportedSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, 99);
            assert_eq!(*supported, iris_store::SCHEMA_VERSION);
        }
        other => panic!("expected UnsupportedSchema, got {other}"),
    }
}

#[test]
fn another_programs_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("their_table"))
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("their_table"), "{err}");
}

#[tokio::test]
async fn a_corrupt_record_is_a_typed_error_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let id = {
        let store = Store::open(&path).unwrap();
        store.create(record("a", "b")).await.unwrap().session_id
    };
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(redb::TableDefinition::<u128, &[u8]>::new("sessions"))
                .unwrap();
            t.insert(id.as_uuid().as_u128(), [1u8, 0xff, 0xff].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let err = store.get_by_session_id(&id).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&id.to_string()), "{err}");
}

#[tokio::test]
async fn records_and_counters_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let created = {
        let store = Store::open(&path).unwrap();
        let r = store.create(record("alpha", "beta")).await.unwrap();
        store
            .update(r.session_id, Change::IncrementMessageCount(7))
            .await
            .unwrap();
        store.create(record("beta", "alpha")).await.unwrap();
        r
    };
    let store = Store::open(&path).unwrap();
    let back = store.get_by_pair(&pair("alpha", "beta")).unwrap().unwrap();
    assert_eq!(back.session_id, created.session_id);
    assert_eq!(back.message_count, 7);
    let stats = store.stats();
    assert_eq!((stats.total, stats.total_messages), (2, 7));
    // Row ids keep counting after a reopen.
    let third = store.create(record("gamma", "alpha")).await.unwrap();
    assert_eq!(third.id, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_what_is_queued_releases_the_file_and_closes_every_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let store = Store::open(&path).unwrap();
    let other_handle = store.clone();
    let r = store.create(record("alpha", "beta")).await.unwrap();
    // Queued, never awaited: close still commits it.
    store
        .enqueue(Mutation::Update {
            session_id: r.session_id,
            changes: vec![Change::IncrementMessageCount(4)],
        })
        .await
        .unwrap();
    store.close(Duration::from_secs(10)).await.unwrap();

    // Every handle is closed, for writes and reads, with the error that says what to do.
    let write = other_handle.create(record("beta", "alpha")).await;
    assert!(matches!(write, Err(StoreError::Closed)), "{write:?}");
    let read = other_handle.get_by_pair(&pair("alpha", "beta"));
    assert!(matches!(read, Err(StoreError::Closed)), "{read:?}");
    assert!(
        read.unwrap_err()
            .to_string()
            .contains("open the database again")
    );
    // Closing twice is harmless.
    other_handle.close(Duration::from_secs(1)).await.unwrap();

    // Released while the old handles still exist: it opens at once, with everything in it.
    let reopened = Store::open(&path).unwrap();
    let back = reopened
        .get_by_pair(&pair("alpha", "beta"))
        .unwrap()
        .unwrap();
    assert_eq!(back.message_count, 4);
}

// ----- create -----

#[tokio::test]
async fn create_assigns_an_id_and_the_originals_defaults() {
    let (_dir, store) = file_store();
    let r = store
        .create(record("team-iris", "team-alpha"))
        .await
        .unwrap();
    assert!(r.id > 0);
    assert_eq!(r.from_team, team("team-iris"));
    assert_eq!(r.to_team, team("team-alpha"));
    assert_eq!(r.message_count, 0);
    assert_eq!(r.status, SessionStatus::Active);
    assert_eq!(r.process_state, ProcessState::Stopped);
    assert_eq!(r.created_at, r.last_used_at);
    assert_eq!(r.launch_command, None);
    assert_eq!(r.team_config_snapshot, None);
    assert_eq!(store.get_by_session_id(&r.session_id).unwrap(), Some(r));
}

#[tokio::test]
async fn create_stores_optional_debug_fields() {
    let store = Store::in_memory().unwrap();
    let mut r = record("team-beta", "team-alpha");
    r.launch_command = Some("claude --resume=x".into());
    r.team_config_snapshot = Some("{\"path\":\"/p\"}".into());
    let stored = store.create(r.clone()).await.unwrap();
    let back = store.get_by_session_id(&r.session_id).unwrap().unwrap();
    assert_eq!(back.launch_command, r.launch_command);
    assert_eq!(back.team_config_snapshot, r.team_config_snapshot);
    assert_eq!(back, stored);
}

#[tokio::test]
async fn a_duplicate_session_id_is_rejected_and_nothing_is_written() {
    let store = Store::in_memory().unwrap();
    let first = store.create(record("a", "b")).await.unwrap();
    let mut dup = record("c", "d");
    dup.session_id = first.session_id;
    let err = store.create(dup).await.unwrap_err();
    assert!(matches!(err, StoreError::SessionIdExists { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::AlreadyExists);
    assert_eq!(store.get_by_pair(&pair("c", "d")).unwrap(), None);
    assert_eq!(store.stats().total, 1);
}

#[tokio::test]
async fn a_duplicate_pair_is_rejected_naming_the_existing_session() {
    let store = Store::in_memory().unwrap();
    let first = store.create(record("a", "b")).await.unwrap();
    let err = store.create(record("a", "b")).await.unwrap_err();
    match &err {
        StoreError::PairExists { pair: p, existing } => {
            assert_eq!(*p, pair("a", "b"));
            assert_eq!(*existing, first.session_id);
        }
        other => panic!("expected PairExists, got {other}"),
    }
    assert!(err.to_string().contains("a->b"), "{err}");
    assert_eq!(store.list(&SessionFilter::all()).unwrap().len(), 1);
}

#[tokio::test]
async fn both_directions_and_self_pairs_are_distinct_sessions() {
    let store = Store::in_memory().unwrap();
    let ab = store.create(record("a", "b")).await.unwrap();
    let ba = store.create(record("b", "a")).await.unwrap();
    let aa = store.create(record("a", "a")).await.unwrap();
    assert_ne!(ab.session_id, ba.session_id);
    assert_eq!(store.get_by_pair(&pair("a", "b")).unwrap(), Some(ab));
    assert_eq!(store.get_by_pair(&pair("b", "a")).unwrap(), Some(ba));
    assert_eq!(store.get_by_pair(&pair("a", "a")).unwrap(), Some(aa));
}

#[tokio::test]
async fn get_returns_none_for_what_does_not_exist() {
    let store = Store::in_memory().unwrap();
    assert_eq!(store.get_by_pair(&pair("a", "b")).unwrap(), None);
    assert_eq!(store.get_by_session_id(&SessionId::new_v4()).unwrap(), None);
    store.create(record("a", "b")).await.unwrap();
    assert!(store.get_by_pair(&pair("a", "b")).unwrap().is_some());
    assert_eq!(store.get_by_pair(&pair("b", "a")).unwrap(), None);
}

#[tokio::test]
async fn unusual_but_valid_team_names_work() {
    let store = Store::in_memory().unwrap();
    store
        .create(record("team-with-@-symbol", "team_with_underscore"))
        .await
        .unwrap();
    let back = store
        .get_by_pair(&pair("team-with-@-symbol", "team_with_underscore"))
        .unwrap();
    assert!(back.is_some());
}

#[tokio::test]
async fn fifty_unique_pairs_are_all_retrievable() {
    let store = Store::in_memory().unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            store
                .create(record(&format!("from{i}"), "to"))
                .await
                .unwrap(),
        );
    }
    for r in ids {
        assert_eq!(store.get_by_session_id(&r.session_id).unwrap(), Some(r));
    }
}

// ----- list -----

async fn list_fixture(store: &Store) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for (i, (from, to)) in [
        ("frontend", "backend"),
        ("mobile", "backend"),
        ("team-beta", "backend"),
        ("frontend", "database"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = store
            .create(record_at(from, to, 1_000 + i as u64))
            .await
            .unwrap();
        ids.push(r.session_id);
    }
    ids
}

#[tokio::test]
async fn list_filters_by_from_to_status_and_limit() {
    let store = Store::in_memory().unwrap();
    let ids = list_fixture(&store).await;
    let all = store.list(&SessionFilter::all()).unwrap();
    assert_eq!(all.len(), 4);
    let from_frontend = store
        .list(&SessionFilter::all().from_team(team("frontend")))
        .unwrap();
    assert_eq!(from_frontend.len(), 2);
    assert!(
        from_frontend
            .iter()
            .all(|r| r.from_team == team("frontend"))
    );
    let beta = store
        .list(&SessionFilter::all().from_team(team("team-beta")))
        .unwrap();
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0].to_team, team("backend"));
    let to_backend = store
        .list(&SessionFilter::all().to_team(team("backend")))
        .unwrap();
    assert_eq!(to_backend.len(), 3);
    assert!(to_backend.iter().all(|r| r.to_team == team("backend")));

    store
        .update(ids[0], Change::SetStatus(SessionStatus::Archived))
        .await
        .unwrap();
    let active = SessionFilter::all().with_status(SessionStatus::Active);
    assert_eq!(store.list(&active).unwrap().len(), 3);
    let archived = store
        .list(&SessionFilter::all().with_status(SessionStatus::Archived))
        .unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].session_id, ids[0]);

    assert_eq!(store.list(&SessionFilter::all().limit(2)).unwrap().len(), 2);
    assert_eq!(
        store.list(&SessionFilter::all().limit(0)).unwrap().len(),
        4,
        "limit 0 means no limit, as in the original"
    );
}

#[tokio::test]
async fn list_orders_by_last_used_newest_first() {
    let store = Store::in_memory().unwrap();
    let ids = list_fixture(&store).await;
    let order: Vec<_> = store
        .list(&SessionFilter::all())
        .unwrap()
        .into_iter()
        .map(|r| r.session_id)
        .collect();
    assert_eq!(order, vec![ids[3], ids[2], ids[1], ids[0]]);
    store
        .update(ids[0], Change::TouchLastUsed(Timestamp::from_millis(5_000)))
        .await
        .unwrap();
    assert_eq!(
        store.list(&SessionFilter::all()).unwrap()[0].session_id,
        ids[0]
    );
}

#[tokio::test]
async fn list_breaks_ties_by_row_id() {
    let store = Store::in_memory().unwrap();
    for to in ["c", "b", "a"] {
        store.create(record_at("x", to, 42)).await.unwrap();
    }
    let rows: Vec<u64> = store
        .list(&SessionFilter::all())
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(rows, vec![1, 2, 3]);
}

#[tokio::test]
async fn list_filters_by_creation_and_use_time_strictly() {
    let store = Store::in_memory().unwrap();
    store.create(record_at("a", "b", 100)).await.unwrap();
    store.create(record_at("a", "c", 200)).await.unwrap();
    let after = |ms| SessionFilter::all().created_after(Timestamp::from_millis(ms));
    assert_eq!(store.list(&after(100)).unwrap().len(), 1);
    assert_eq!(store.list(&after(99)).unwrap().len(), 2);
    let used = SessionFilter::all().used_after(Timestamp::from_millis(150));
    assert_eq!(store.list(&used).unwrap().len(), 1);
}

#[tokio::test]
async fn list_from_one_team_among_ninety_pairs() {
    let store = Store::in_memory().unwrap();
    let teams: Vec<String> = (0..10).map(|i| format!("team{i}")).collect();
    let mut records = Vec::new();
    for from in &teams {
        for to in teams.iter().filter(|t| *t != from) {
            records.push(record(from, to));
        }
    }
    store.create_many(records).await.unwrap();
    let rows = store
        .list(&SessionFilter::all().from_team(team("team0")))
        .unwrap();
    assert_eq!(rows.len(), 9);
    let to_rows = store
        .list(&SessionFilter::all().to_team(team("team9")))
        .unwrap();
    assert_eq!(to_rows.len(), 9);
}

#[tokio::test]
async fn list_is_empty_on_a_new_store() {
    let store = Store::in_memory().unwrap();
    assert!(store.list(&SessionFilter::all()).unwrap().is_empty());
}

// ----- updates -----

#[tokio::test]
async fn touch_last_used_moves_forward() {
    let store = Store::in_memory().unwrap();
    let r = store.create(record_at("a", "b", 1_000)).await.unwrap();
    let later = Timestamp::from_millis(1_010);
    let back = store
        .update(r.session_id, Change::TouchLastUsed(later))
        .await
        .unwrap();
    assert!(back.last_used_at > r.last_used_at);
    assert_eq!(back.created_at, r.created_at);
}

#[tokio::test]
async fn message_counts_accumulate() {
    let store = Store::in_memory().unwrap();
    let r = store.create(record("a", "b")).await.unwrap();
    let id = r.session_id;
    assert_eq!(
        store
            .update(id, Change::IncrementMessageCount(1))
            .await
            .unwrap()
            .message_count,
        1
    );
    for n in [5, 3, 2, 1] {
        store
            .update(id, Change::IncrementMessageCount(n))
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_by_session_id(&id).unwrap().unwrap().message_count,
        12
    );
    store
        .update(id, Change::IncrementMessageCount(1_000_000))
        .await
        .unwrap();
    let back = store.get_by_session_id(&id).unwrap().unwrap();
    assert_eq!(back.message_count, 1_000_012);
    store.update(id, Change::ResetMessageCount).await.unwrap();
    assert_eq!(
        store.get_by_session_id(&id).unwrap().unwrap().message_count,
        0
    );
    assert_eq!(store.stats().total_messages, 0);
}

#[tokio::test]
async fn a_hundred_increments_and_touches_count_a_hundred() {
    let store = Store::in_memory().unwrap();
    let id = store.create(record("a", "b")).await.unwrap().session_id;
    for i in 0..100 {
        store
            .update_all(
                id,
                vec![
                    Change::IncrementMessageCount(1),
                    Change::TouchLastUsed(Timestamp::from_millis(i)),
                ],
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_by_session_id(&id).unwrap().unwrap().message_count,
        100
    );
}

#[tokio::test]
async fn status_walks_persist() {
    let store = Store::in_memory().unwrap();
    let id = store.create(record("a", "b")).await.unwrap().session_id;
    for status in [
        SessionStatus::CompactPending,
        SessionStatus::Archived,
        SessionStatus::CompactPending,
        SessionStatus::Active,
    ] {
        store.update(id, Change::SetStatus(status)).await.unwrap();
        assert_eq!(
            store.get_by_session_id(&id).unwrap().unwrap().status,
            status
        );
    }
}

#[tokio::test]
async fn every_process_state_round_trips() {
    let store = Store::in_memory().unwrap();
    let id = store.create(record("a", "b")).await.unwrap().session_id;
    for state in ProcessState::ALL {
        store
            .update(id, Change::SetProcessState(*state))
            .await
            .unwrap();
        let back = store.get_by_session_id(&id).unwrap().unwrap();
        assert_eq!(back.process_state, *state);
        assert_eq!(store.stats().by_process_state[state], 1);
    }
}

#[tokio::test]
async fn debug_info_is_set_overwritten_and_round_trips_long_values() {
    let store = Store::in_memory().unwrap();
    let id = store.create(record("a", "b")).await.unwrap().session_id;
    let set = |cmd: &str, snap: &str| Change::SetDebugInfo {
        launch_command: Some(cmd.into()),
        team_config_snapshot: Some(snap.into()),
    };
    store.update(id, set("first", "{}")).await.unwrap();
    let long_cmd = format!("claude {}", "--flag ".repeat(100));
    let long_snap = format!("{{\"x\":\"{}\"}}", "y".repeat(1000));
    store.update(id, set(&long_cmd, &long_snap)).await.unwrap();
    let back = store.get_by_session_id(&id).unwrap().unwrap();
    assert_eq!(back.launch_command.as_deref(), Some(long_cmd.as_str()));
    assert_eq!(
        back.team_config_snapshot.as_deref(),
        Some(long_snap.as_str())
    );
}

#[tokio::test]
async fn current_turn_and_last_response_are_written() {
    let store = Store::in_memory().unwrap();
    let id = store.create(record("a", "b")).await.unwrap().session_id;
    let turn = TurnId::new();
    let at = Timestamp::from_millis(77);
    let back = store
        .update_all(
            id,
            vec![
                Change::SetCurrentTurn(Some(turn)),
                Change::SetLastResponse(at),
            ],
        )
        .await
        .unwrap();
    assert_eq!(back.current_turn, Some(turn));
    assert_eq!(back.last_response_at, Some(at));
}

#[tokio::test]
async fn fixes_original_updates_to_an_unknown_id_are_typed_not_found() {
    let store = Store::in_memory().unwrap();
    let ghost = SessionId::new_v4();
    let err = store
        .update(ghost, Change::IncrementMessageCount(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SessionNotFound { session_id } if session_id == ghost));
    assert_eq!(err.code(), ErrorCode::SessionNotFound);
}

#[tokio::test]
async fn put_replaces_a_record_but_not_its_identity() {
    let store = Store::in_memory().unwrap();
    let r = store.create(record("a", "b")).await.unwrap();
    let mut changed = r.clone();
    changed.message_count = 9;
    changed.process_state = ProcessState::Idle;
    assert_eq!(store.put(changed.clone()).await.unwrap(), changed);
    assert_eq!(store.stats().total_messages, 9);
    let mut moved = changed.clone();
    moved.to_team = team("c");
    let err = store.put(moved).await.unwrap_err();
    assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");
    assert_eq!(
        store.get_by_session_id(&r.session_id).unwrap(),
        Some(changed)
    );
}

// ----- delete -----

#[tokio::test]
async fn delete_removes_the_record_and_its_pair() {
    let store = Store::in_memory().unwrap();
    let r = store.create(record("a", "b")).await.unwrap();
    assert_eq!(store.delete(r.session_id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.get_by_session_id(&r.session_id).unwrap(), None);
    assert_eq!(store.get_by_pair(&pair("a", "b")).unwrap(), None);
    assert!(
        store
            .list(&SessionFilter::all().to_team(team("b")))
            .unwrap()
            .is_empty()
    );
    // The pair is free again.
    store.create(record("a", "b")).await.unwrap();
}

#[tokio::test]
async fn delete_by_pair_works_for_self_pairs() {
    let store = Store::in_memory().unwrap();
    store.create(record("a", "a")).await.unwrap();
    store.create(record("a", "b")).await.unwrap();
    assert!(
        store
            .delete_by_pair(pair("a", "a"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.get_by_pair(&pair("a", "a")).unwrap(), None);
    assert!(store.get_by_pair(&pair("a", "b")).unwrap().is_some());
}

#[tokio::test]
async fn deleting_what_does_not_exist_deletes_nothing() {
    let store = Store::in_memory().unwrap();
    assert_eq!(store.delete(SessionId::new_v4()).await.unwrap(), None);
    assert_eq!(store.delete_by_pair(pair("a", "b")).await.unwrap(), None);
}

// ----- stats -----

#[tokio::test]
async fn stats_are_zero_on_an_empty_store() {
    let store = Store::in_memory().unwrap();
    let stats = store.stats();
    assert_eq!(
        (
            stats.total,
            stats.active,
            stats.archived,
            stats.total_messages
        ),
        (0, 0, 0, 0)
    );
    assert!(stats.by_status.values().all(|n| *n == 0));
    assert_eq!(stats.by_status.len(), 7);
    assert_eq!(stats.by_process_state.len(), 5);
}

#[tokio::test]
async fn stats_count_status_and_messages() {
    let store = Store::in_memory().unwrap();
    let mut ids = Vec::new();
    for (i, n) in [10, 25, 5].into_iter().enumerate() {
        let r = store.create(record("a", &format!("t{i}"))).await.unwrap();
        store
            .update(r.session_id, Change::IncrementMessageCount(n))
            .await
            .unwrap();
        ids.push(r.session_id);
    }
    store
        .update(ids[0], Change::SetStatus(SessionStatus::Archived))
        .await
        .unwrap();
    let stats = store.stats();
    assert_eq!(stats.total, 3);
    assert_eq!(stats.active, 2);
    assert_eq!(stats.archived, 1);
    assert_eq!(stats.total_messages, 40);
    store.delete(ids[1]).await.unwrap();
    let stats = store.stats();
    assert_eq!((stats.total, stats.total_messages), (2, 15));
}

// ----- process state reset -----

#[tokio::test]
async fn reset_stops_every_running_process_state_and_clears_turns() {
    let store = Store::in_memory().unwrap();
    let mut ids = Vec::new();
    for (i, state) in [
        ProcessState::Processing,
        ProcessState::Idle,
        ProcessState::Spawning,
        ProcessState::Stopped,
    ]
    .into_iter()
    .enumerate()
    {
        let r = store.create(record("a", &format!("t{i}"))).await.unwrap();
        store
            .update_all(
                r.session_id,
                vec![
                    Change::SetProcessState(state),
                    Change::IncrementMessageCount(3),
                    Change::SetCurrentTurn((state != ProcessState::Stopped).then(TurnId::new)),
                ],
            )
            .await
            .unwrap();
        ids.push(r.session_id);
    }
    assert_eq!(store.reset_all_process_states().await.unwrap(), 3);
    for id in &ids {
        let r = store.get_by_session_id(id).unwrap().unwrap();
        assert_eq!(r.process_state, ProcessState::Stopped);
        assert_eq!(r.current_turn, None);
        assert_eq!(r.message_count, 3, "counts are preserved");
        assert_eq!(r.status, SessionStatus::Active, "status is preserved");
    }
    assert_eq!(store.stats().by_process_state[&ProcessState::Stopped], 4);
    assert_eq!(store.reset_all_process_states().await.unwrap(), 0);
}

#[tokio::test]
async fn reset_keeps_process_marks_for_the_reaper() {
    let store = Store::in_memory().unwrap();
    let r = store.create(record("a", "b")).await.unwrap();
    let mark = iris_core::AgentProcessMark {
        pid: 4242,
        pgid: 4242,
        start_ticks: Some(99),
    };
    store
        .update_all(
            r.session_id,
            vec![
                Change::SetProcessState(ProcessState::Idle),
                Change::SetAgentProcess(Some(mark)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(store.reset_all_process_states().await.unwrap(), 1);
    assert_eq!(
        store.agent_process_marks().unwrap(),
        vec![(r.session_id, mark)]
    );
    store
        .update(r.session_id, Change::SetAgentProcess(None))
        .await
        .unwrap();
    assert!(store.agent_process_marks().unwrap().is_empty());
}

// ----- batches -----

#[tokio::test]
async fn create_many_is_all_or_nothing() {
    let store = Store::in_memory().unwrap();
    store.create(record("a", "b")).await.unwrap();
    let batch = vec![record("x", "y"), record("a", "b"), record("y", "x")];
    let err = store.create_many(batch).await.unwrap_err();
    assert!(matches!(err, StoreError::PairExists { .. }), "{err}");
    assert_eq!(store.stats().total, 1);
    assert_eq!(store.get_by_pair(&pair("x", "y")).unwrap(), None);

    let dup_inside = vec![record("p", "q"), record("p", "q")];
    assert!(store.create_many(dup_inside).await.is_err());
    assert_eq!(store.stats().total, 1);

    let ok = store
        .create_many(vec![record("x", "y"), record("y", "x")])
        .await
        .unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(store.stats().total, 3);
}

#[tokio::test]
async fn set_status_many_is_all_or_nothing() {
    let store = Store::in_memory().unwrap();
    let a = store.create(record("a", "b")).await.unwrap().session_id;
    let b = store.create(record("b", "a")).await.unwrap().session_id;
    let err = store
        .set_status_many(vec![a, SessionId::new_v4(), b], SessionStatus::Archived)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SessionNotFound { .. }));
    assert_eq!(store.stats().archived, 0);
    let done = store
        .set_status_many(vec![a, b], SessionStatus::Archived)
        .await
        .unwrap();
    assert!(done.iter().all(|r| r.status == SessionStatus::Archived));
    assert_eq!(store.stats().archived, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_mutation_never_poisons_its_batch() {
    let store = Store::in_memory().unwrap();
    store.create(record("taken", "pair")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let r = if i % 4 == 0 {
                record("taken", "pair")
            } else {
                record(&format!("from{i}"), "to")
            };
            store.create(r).await
        }));
    }
    let mut ok = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::PairExists { .. }) => assert_eq!(i % 4, 0),
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 150);
    assert_eq!(store.stats().total, 151);
    assert!(store.writer_stats().batches <= store.writer_stats().mutations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let store = Store::in_memory().unwrap();
    let id = store.create(record("a", "b")).await.unwrap().session_id;
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.update(id, Change::IncrementMessageCount(1)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        store.get_by_session_id(&id).unwrap().unwrap().message_count,
        500
    );
    let work = store.writer_stats();
    assert_eq!(work.mutations, 501);
    assert!(
        work.max_batch > 1,
        "500 concurrent writes were never grouped: {work:?}"
    );
    // Every committed batch is in both histograms, and the sizes add up to the mutations.
    assert_eq!(work.commit_time_counts.iter().sum::<u64>(), work.batches);
    assert_eq!(work.batch_size_counts.iter().sum::<u64>(), work.batches);
    assert!(work.commit_time_sum_us > 0);
}

#[tokio::test]
async fn submit_takes_plain_mutations() {
    let store = Store::in_memory().unwrap();
    let r = record("a", "b");
    store.submit(Mutation::Create(r.clone())).await.unwrap();
    let deleted = store
        .submit(Mutation::DeleteByPair(pair("a", "b")))
        .await
        .unwrap();
    assert!(matches!(deleted, iris_store::Applied::Deleted(Some(_))));
}

#[tokio::test]
async fn reads_see_a_consistent_snapshot_while_writes_continue() {
    let store = Store::in_memory().unwrap();
    let id = store.create(record("a", "b")).await.unwrap().session_id;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                store
                    .update(id, Change::IncrementMessageCount(1))
                    .await
                    .unwrap();
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        let now = store.get_by_session_id(&id).unwrap().unwrap().message_count;
        assert!(now >= last, "a read went backwards: {now} < {last}");
        last = now;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
}

// ----- conversation ids -----

#[tokio::test]
async fn every_conversation_id_a_session_used_is_kept_until_it_is_deleted() {
    let (_dir, store) = file_store();
    let r = store.create(record("alpha", "beta")).await.unwrap();
    let other = store.create(record("beta", "alpha")).await.unwrap();
    let own = r.session_id.to_string();
    assert_eq!(
        store.conversation_ids(r.session_id).unwrap(),
        std::slice::from_ref(&own)
    );
    // Two `/clear`s: the agent reported two new ids in turn; an id set again is one entry.
    for id in [
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
    ] {
        store
            .update(r.session_id, Change::SetAgentSessionId(Some(id.into())))
            .await
            .unwrap();
    }
    store
        .update(r.session_id, Change::IncrementMessageCount(1))
        .await
        .unwrap();
    let mut ids = store.conversation_ids(r.session_id).unwrap();
    assert_eq!(ids.remove(0), own, "the session's own id comes first");
    ids.sort();
    assert_eq!(
        ids,
        [
            "11111111-1111-4111-8111-111111111111",
            "22222222-2222-4222-8222-222222222222"
        ]
    );
    store.delete(r.session_id).await.unwrap();
    assert_eq!(store.conversation_ids(r.session_id).unwrap(), [own]);
    assert_eq!(
        store.conversation_ids(other.session_id).unwrap(),
        [other.session_id.to_string()],
        "another session's ids are its own"
    );
}
