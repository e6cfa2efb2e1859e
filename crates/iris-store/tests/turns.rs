//! The turn ledger: rows, their indexes, retention, atomic bookkeeping, deletion and start-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{pair, record};
use iris_core::{
    Coded, ErrorCode, SessionId, SessionRecord, Timestamp, TurnFailure, TurnId, TurnRecord,
    TurnStatus, UsageTotals,
};
use iris_store::{Applied, Change, Mutation, Store, StoreError, StoreOptions};

const LIMIT: usize = 64;

/// A queued turn `seq` of `session`, with a fresh id.
fn queued(session: &SessionRecord, seq: u64) -> TurnRecord {
    TurnRecord::queued(
        session.session_id,
        seq,
        TurnId::new(),
        session.from_team.clone(),
        &format!("message {seq}"),
        LIMIT,
        Timestamp::from_millis(1_000 + seq),
    )
}

fn completed(mut turn: TurnRecord) -> TurnRecord {
    turn.status = TurnStatus::Completed;
    turn.started_at = Some(turn.queued_at);
    turn.finished_at = Some(
        turn.queued_at
            .saturating_add(std::time::Duration::from_secs(1)),
    );
    turn.set_text("done", LIMIT);
    turn
}

fn seqs(turns: &[TurnRecord]) -> Vec<u64> {
    turns.iter().map(|t| t.seq).collect()
}

async fn session(store: &Store, from: &str, to: &str) -> SessionRecord {
    store.create(record(from, to)).await.unwrap()
}

#[tokio::test]
async fn a_turn_walks_from_queued_to_running_to_completed() {
    let store = Store::in_memory().unwrap();
    let s = session(&store, "alpha", "beta").await;
    assert_eq!(store.last_turn_seq(s.session_id).unwrap(), 0);
    assert_eq!(store.turns(s.session_id, 10).unwrap(), vec![]);

    let mut turn = queued(&s, 1);
    store.put_turn(turn.clone(), 10).await.unwrap();
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn.clone()));
    assert_eq!(store.turns(s.session_id, 10).unwrap(), vec![turn.clone()]);
    assert_eq!(store.last_turn_seq(s.session_id).unwrap(), 1);
    assert_eq!(store.open_turn_count().unwrap(), 1);

    turn.status = TurnStatus::Running;
    turn.started_at = Some(Timestamp::from_millis(2_000));
    store.put_turn(turn.clone(), 10).await.unwrap();
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn.clone()));
    assert_eq!(
        store.open_turn_count().unwrap(),
        1,
        "still open, counted once"
    );

    let usage = UsageTotals {
        cost_usd: 0.25,
        input_tokens: 10,
        output_tokens: 20,
        cache_creation_input_tokens: 1,
        cache_read_input_tokens: 2,
    };
    let done = Timestamp::from_millis(3_000);
    turn.status = TurnStatus::Completed;
    turn.finished_at = Some(done);
    turn.set_text("the answer", LIMIT);
    turn.subtype = Some("success".into());
    turn.usage = usage;
    turn.duration_ms = Some(1_000);
    turn.num_turns = Some(1);
    let stored = store
        .record_turn(
            s.session_id,
            vec![
                Change::IncrementMessageCount(1),
                Change::TouchLastUsed(done),
                Change::SetLastResponse(done),
                Change::AddUsage(usage),
            ],
            turn.clone(),
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(stored.message_count, 1);
    assert_eq!(stored.last_used_at, done);
    assert_eq!(stored.last_response_at, Some(done));
    assert_eq!(stored.usage, usage);
    assert_eq!(
        store.get_by_session_id(&s.session_id).unwrap(),
        Some(stored)
    );
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn.clone()));
    assert_eq!(store.turns(s.session_id, 10).unwrap(), vec![turn]);
    assert_eq!(store.open_turn_count().unwrap(), 0);
    assert_eq!(store.stats().total_messages, 1);
}

#[tokio::test]
async fn turns_are_listed_newest_first_and_limited() {
    let store = Store::in_memory().unwrap();
    let a = session(&store, "alpha", "beta").await;
    let b = session(&store, "beta", "alpha").await;
    for seq in 1..=5 {
        store
            .put_turn(completed(queued(&a, seq)), 100)
            .await
            .unwrap();
    }
    store.put_turn(queued(&b, 1), 100).await.unwrap();
    assert_eq!(
        seqs(&store.turns(a.session_id, 100).unwrap()),
        [5, 4, 3, 2, 1]
    );
    assert_eq!(seqs(&store.turns(a.session_id, 2).unwrap()), [5, 4]);
    assert_eq!(store.turns(a.session_id, 0).unwrap(), vec![]);
    assert_eq!(seqs(&store.turns(b.session_id, 100).unwrap()), [1]);
    assert_eq!(store.last_turn_seq(a.session_id).unwrap(), 5);
    assert_eq!(store.last_turn_seq(b.session_id).unwrap(), 1);
    assert_eq!(store.turns(SessionId::new_v4(), 10).unwrap(), vec![]);
    assert_eq!(store.last_turn_seq(SessionId::new_v4()).unwrap(), 0);
    assert_eq!(store.turn(TurnId::new()).unwrap(), None);
}

#[tokio::test]
async fn bad_turns_are_typed_rejections_that_write_nothing() {
    let store = Store::in_memory().unwrap();
    let s = session(&store, "alpha", "beta").await;
    let first = queued(&s, 1);
    store.put_turn(first.clone(), 10).await.unwrap();

    // Unknown session.
    let mut orphan = queued(&s, 1);
    orphan.session_id = SessionId::new_v4();
    let e = store.put_turn(orphan.clone(), 10).await.unwrap_err();
    assert!(
        matches!(e, StoreError::SessionNotFound { session_id } if session_id == orphan.session_id),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::SessionNotFound);
    assert_eq!(store.turn(orphan.turn_id).unwrap(), None);

    // Turn numbers start at 1.
    let e = store.put_turn(queued(&s, 0), 10).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidTurn { seq: 0, .. }), "{e}");
    assert_eq!(e.code(), ErrorCode::ValidationError);

    // The same turn id at another number.
    let mut moved = first.clone();
    moved.seq = 2;
    let e = store.put_turn(moved, 10).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::TurnIdExists { turn_id, seq: 1, session_id }
            if *turn_id == first.turn_id && *session_id == s.session_id),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::AlreadyExists);

    // Another turn id at a taken number.
    let impostor = queued(&s, 1);
    let e = store.put_turn(impostor.clone(), 10).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidTurn { seq: 1, .. }), "{e}");
    assert_eq!(store.turn(impostor.turn_id).unwrap(), None);

    // Nothing of the above was written.
    assert_eq!(store.turns(s.session_id, 10).unwrap(), vec![first]);
    assert_eq!(store.open_turn_count().unwrap(), 1);
    assert_eq!(store.last_turn_seq(s.session_id).unwrap(), 1);
}

#[tokio::test]
async fn retention_keeps_exactly_the_newest_rows_and_their_indexes() {
    let store = Store::in_memory().unwrap();
    let s = session(&store, "alpha", "beta").await;
    let other = session(&store, "beta", "alpha").await;
    store.put_turn(queued(&other, 1), 3).await.unwrap();
    let mut written = Vec::new();
    for seq in 1..=10 {
        // Odd turns stay open, so the open index must be pruned too.
        let turn = if seq % 2 == 0 {
            completed(queued(&s, seq))
        } else {
            queued(&s, seq)
        };
        let pruned = store
            .submit(Mutation::PutTurn {
                turn: turn.clone(),
                retain: 3,
            })
            .await
            .unwrap();
        assert_eq!(pruned, Applied::Count(u64::from(seq > 3)), "seq {seq}");
        written.push(turn);
    }
    assert_eq!(seqs(&store.turns(s.session_id, 100).unwrap()), [10, 9, 8]);
    for turn in &written {
        let expected = (turn.seq > 7).then(|| turn.clone());
        assert_eq!(
            store.turn(turn.turn_id).unwrap(),
            expected,
            "seq {}",
            turn.seq
        );
    }
    // Open: seq 9 of `s`, and `other`'s turn, which another session's pruning never touches.
    assert_eq!(store.open_turn_count().unwrap(), 2);
    assert_eq!(seqs(&store.turns(other.session_id, 10).unwrap()), [1]);

    // A late write of a turn older than the window is pruned at once.
    let late = completed(written[1].clone());
    assert_eq!(
        store
            .submit(Mutation::PutTurn {
                turn: late.clone(),
                retain: 3
            })
            .await
            .unwrap(),
        Applied::Count(1)
    );
    assert_eq!(store.turn(late.turn_id).unwrap(), None);

    // A smaller retention prunes more on the next write; zero keeps the newest row.
    let mut newest = written[9].clone();
    newest.set_text("again", LIMIT);
    store.put_turn(newest.clone(), 0).await.unwrap();
    assert_eq!(store.turns(s.session_id, 100).unwrap(), vec![newest]);
    assert_eq!(store.open_turn_count().unwrap(), 1);
}

#[tokio::test]
async fn record_turn_is_all_or_nothing() {
    let store = Store::in_memory().unwrap();
    let s = session(&store, "alpha", "beta").await;
    let taken = queued(&s, 1);
    store.put_turn(taken.clone(), 10).await.unwrap();
    let changes = vec![
        Change::IncrementMessageCount(1),
        Change::AddUsage(UsageTotals {
            cost_usd: 1.0,
            ..UsageTotals::default()
        }),
    ];

    // Against an unknown session: neither the record nor the turn.
    let ghost = SessionId::new_v4();
    let mut turn = completed(queued(&s, 2));
    turn.session_id = ghost;
    let e = store
        .record_turn(ghost, changes.clone(), turn.clone(), 10, None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::SessionNotFound { .. }), "{e}");
    assert_eq!(store.turn(turn.turn_id).unwrap(), None);
    assert_eq!(store.get_by_session_id(&ghost).unwrap(), None);

    // A turn of another session.
    let turn = completed(queued(&s, 2));
    let e = store
        .record_turn(SessionId::new_v4(), changes.clone(), turn.clone(), 10, None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidTurn { .. }), "{e}");

    // A turn that cannot be written leaves the record's changes unapplied.
    let mut clash = completed(queued(&s, 2));
    clash.turn_id = taken.turn_id;
    let e = store
        .record_turn(s.session_id, changes.clone(), clash, 10, None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::TurnIdExists { .. }), "{e}");

    assert_eq!(
        store.get_by_session_id(&s.session_id).unwrap(),
        Some(s.clone())
    );
    assert_eq!(store.turns(s.session_id, 10).unwrap(), vec![taken]);
    assert_eq!(store.stats().total_messages, 0);

    // And a good one does both.
    let stored = store
        .record_turn(s.session_id, changes, turn.clone(), 10, None)
        .await
        .unwrap();
    assert_eq!(stored.message_count, 1);
    assert_eq!(stored.usage.cost_usd, 1.0);
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn));
}

#[tokio::test]
async fn deleting_a_session_deletes_its_turns_and_their_index_entries() {
    let store = Store::in_memory().unwrap();
    let a = session(&store, "alpha", "beta").await;
    let b = session(&store, "beta", "alpha").await;
    let c = session(&store, "gamma", "alpha").await;
    let mut turns = Vec::new();
    for s in [&a, &b, &c] {
        for seq in 1..=3 {
            let turn = if seq == 3 {
                queued(s, seq)
            } else {
                completed(queued(s, seq))
            };
            store.put_turn(turn.clone(), 10).await.unwrap();
            turns.push(turn);
        }
    }
    assert_eq!(store.open_turn_count().unwrap(), 3);

    store.delete(a.session_id).await.unwrap().unwrap();
    store
        .delete_by_pair(pair("beta", "alpha"))
        .await
        .unwrap()
        .unwrap();
    for gone in [&a, &b] {
        assert_eq!(store.turns(gone.session_id, 10).unwrap(), vec![]);
        assert_eq!(store.last_turn_seq(gone.session_id).unwrap(), 0);
    }
    for turn in &turns {
        let kept = turn.session_id == c.session_id;
        assert_eq!(store.turn(turn.turn_id).unwrap().is_some(), kept);
    }
    assert_eq!(seqs(&store.turns(c.session_id, 10).unwrap()), [3, 2, 1]);
    assert_eq!(store.open_turn_count().unwrap(), 1);

    // A new session of a deleted pair starts an empty ledger.
    let again = session(&store, "alpha", "beta").await;
    assert_eq!(store.last_turn_seq(again.session_id).unwrap(), 0);
    store.put_turn(queued(&again, 1), 10).await.unwrap();
    assert_eq!(store.open_turn_count().unwrap(), 2);
}

#[tokio::test]
async fn open_turns_are_interrupted_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let (a, b, c, a_turns, b_turn, c_turn) = {
        let store = Store::open(&path).unwrap();
        let a = session(&store, "alpha", "beta").await;
        let b = session(&store, "beta", "alpha").await;
        let c = session(&store, "gamma", "alpha").await;
        let done = completed(queued(&a, 1));
        let mut running = queued(&a, 2);
        running.status = TurnStatus::Running;
        running.started_at = Some(Timestamp::from_millis(5_000));
        let waiting = queued(&a, 3);
        for turn in [&done, &running, &waiting] {
            store.put_turn(turn.clone(), 10).await.unwrap();
        }
        let b_turn = queued(&b, 1);
        store.put_turn(b_turn.clone(), 10).await.unwrap();
        let c_turn = completed(queued(&c, 1));
        store.put_turn(c_turn.clone(), 10).await.unwrap();
        (a, b, c, [done, running, waiting], b_turn, c_turn)
    };

    let store = Store::open(&path).unwrap();
    assert_eq!(store.open_turn_count().unwrap(), 3);
    let at = Timestamp::from_millis(9_000);
    assert_eq!(store.interrupt_open_turns(at).await.unwrap(), 3);
    assert_eq!(store.open_turn_count().unwrap(), 0);

    let interrupted = |mut turn: TurnRecord| {
        turn.status = TurnStatus::Interrupted;
        turn.finished_at = Some(at);
        turn.error = Some(TurnFailure::node_stopped());
        turn
    };
    let [done, running, waiting] = a_turns;
    assert_eq!(
        store.turns(a.session_id, 10).unwrap(),
        vec![interrupted(waiting), interrupted(running), done]
    );
    assert_eq!(
        store.turn(b_turn.turn_id).unwrap(),
        Some(interrupted(b_turn))
    );
    assert_eq!(store.turn(c_turn.turn_id).unwrap(), Some(c_turn));

    let count = |s: &SessionRecord| {
        store
            .get_by_session_id(&s.session_id)
            .unwrap()
            .unwrap()
            .interrupted_turns
    };
    assert_eq!((count(&a), count(&b), count(&c)), (2, 1, 0));
    assert_eq!(store.stats().total, 3);

    // Nothing is left to interrupt.
    assert_eq!(store.interrupt_open_turns(at).await.unwrap(), 0);
    assert_eq!(count(&a), 2);
}

#[tokio::test]
async fn turn_mutations_are_plain_data() {
    let store = Store::in_memory().unwrap();
    let s = session(&store, "alpha", "beta").await;
    let turn = queued(&s, 1);
    let mutations = [
        Mutation::PutTurn {
            turn: turn.clone(),
            retain: 5,
        },
        Mutation::RecordTurn {
            session_id: s.session_id,
            changes: vec![Change::IncrementMessageCount(1)],
            turn: completed(turn),
            retain: 5,
            spend_day: Some(7),
        },
        Mutation::InterruptOpenTurns {
            at: Timestamp::from_millis(1),
        },
    ];
    for mutation in mutations {
        let bytes = postcard::to_allocvec(&mutation).unwrap();
        let back: Mutation = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, mutation);
        store.submit(back).await.unwrap();
    }
    assert_eq!(
        store
            .get_by_session_id(&s.session_id)
            .unwrap()
            .unwrap()
            .message_count,
        1
    );
    assert_eq!(store.open_turn_count().unwrap(), 0);
}

/// A file written before the ledger existed (its five tables only, no counters) opens, keeps its
/// records, and gets an empty ledger that works.
#[tokio::test]
async fn a_database_from_before_the_ledger_opens_and_gains_one() {
    use redb::TableDefinition;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let mut old = record("alpha", "beta");
    old.id = 1;
    old.message_count = 4;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let key = old.session_id.as_uuid().as_u128();
            let mut meta = txn
                .open_table(TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            let version = iris_store::codec::encode(&1u32).unwrap();
            meta.insert("schema_version", version.as_slice()).unwrap();
            let mut sessions = txn
                .open_table(TableDefinition::<u128, &[u8]>::new("sessions"))
                .unwrap();
            let bytes = iris_store::codec::encode_record(&old).unwrap();
            sessions.insert(key, bytes.as_slice()).unwrap();
            let mut pairs = txn
                .open_table(TableDefinition::<(&str, &str), u128>::new("pairs"))
                .unwrap();
            pairs.insert(("alpha", "beta"), key).unwrap();
            let mut by_to = txn
                .open_table(TableDefinition::<(&str, &str), u128>::new("pairs_by_to"))
                .unwrap();
            by_to.insert(("beta", "alpha"), key).unwrap();
            txn.open_table(TableDefinition::<u128, ()>::new("live"))
                .unwrap();
        }
        txn.commit().unwrap();
    }

    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get_by_pair(&pair("alpha", "beta")).unwrap(),
        Some(old.clone())
    );
    assert_eq!(store.stats().total_messages, 4);
    // Reads work before any write has touched the new tables.
    assert_eq!(store.turns(old.session_id, 10).unwrap(), vec![]);
    assert_eq!(store.open_turn_count().unwrap(), 0);
    assert_eq!(
        store.interrupt_open_turns(Timestamp::now()).await.unwrap(),
        0
    );
    let turn = queued(&old, 1);
    store.put_turn(turn.clone(), 10).await.unwrap();
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn));
    let created = session(&store, "beta", "alpha").await;
    assert_eq!(created.id, 2, "row numbers continue after the old ones");
}

#[tokio::test]
async fn enqueued_writes_apply_in_order_and_a_rejection_stays_alone() {
    let store = Store::in_memory().unwrap();
    let s = session(&store, "alpha", "beta").await;
    let mut turn = queued(&s, 1);
    store
        .enqueue(Mutation::PutTurn {
            turn: turn.clone(),
            retain: 10,
        })
        .await
        .unwrap();
    // Rejected (turn number 0): logged by the writer, reported to nobody, harmless to the rest.
    store
        .enqueue(Mutation::PutTurn {
            turn: queued(&s, 0),
            retain: 10,
        })
        .await
        .unwrap();
    turn.status = TurnStatus::Running;
    store
        .enqueue(Mutation::PutTurn {
            turn: turn.clone(),
            retain: 10,
        })
        .await
        .unwrap();
    // A later awaited write resolves only after the queued ones.
    store
        .update(s.session_id, Change::IncrementMessageCount(1))
        .await
        .unwrap();
    assert_eq!(store.turns(s.session_id, 10).unwrap(), vec![turn]);
    assert_eq!(store.open_turn_count().unwrap(), 1);
}

/// Store options whose unawaited writes linger for `linger`.
fn lingering(linger: std::time::Duration) -> StoreOptions {
    StoreOptions {
        linger,
        ..StoreOptions::default()
    }
}

/// A store whose unawaited writes linger far longer than any test takes.
fn lingering_store() -> Store {
    Store::in_memory_with(lingering(std::time::Duration::from_secs(600))).unwrap()
}

/// Queues (unawaited) turn 1 of `s` and returns it.
async fn enqueue_queued(store: &Store, s: &SessionRecord) -> TurnRecord {
    let turn = queued(s, 1);
    store
        .enqueue(Mutation::PutTurn {
            turn: turn.clone(),
            retain: 10,
        })
        .await
        .unwrap();
    turn
}

#[tokio::test]
async fn unawaited_writes_linger_and_share_the_next_awaited_commit() {
    let store = lingering_store();
    let s = session(&store, "alpha", "beta").await;
    let before = store.writer_stats().batches;
    let turn = enqueue_queued(&store, &s).await;
    tokio::task::yield_now().await;
    assert_eq!(store.turn(turn.turn_id).unwrap(), None, "still lingering");
    store
        .update(s.session_id, Change::IncrementMessageCount(1))
        .await
        .unwrap();
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn));
    assert_eq!(
        store.writer_stats().batches - before,
        1,
        "the lingering write rode along with the awaited one"
    );
}

#[tokio::test]
async fn flush_commits_lingering_writes_and_costs_nothing_when_none_wait() {
    let store = lingering_store();
    let s = session(&store, "alpha", "beta").await;
    let before = store.writer_stats().batches;
    store.flush().await.unwrap();
    assert_eq!(store.writer_stats().batches, before, "nothing to commit");
    let turn = enqueue_queued(&store, &s).await;
    store.flush().await.unwrap();
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn));
    assert_eq!(store.writer_stats().batches, before + 1);
}

#[tokio::test]
async fn a_lingering_write_commits_on_its_own_after_the_linger() {
    let store = Store::in_memory_with(lingering(std::time::Duration::from_millis(20))).unwrap();
    let s = session(&store, "alpha", "beta").await;
    let turn = enqueue_queued(&store, &s).await;
    // No deadline asserted: only that it lands without any awaited write behind it.
    let mut found = None;
    for _ in 0..500 {
        found = store.turn(turn.turn_id).unwrap();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(found, Some(turn));
}

#[tokio::test]
async fn dropping_the_store_commits_what_lingers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let store = Store::open_with(&path, lingering(std::time::Duration::from_secs(600))).unwrap();
    let s = session(&store, "alpha", "beta").await;
    let turn = enqueue_queued(&store, &s).await;
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn));
}

#[tokio::test]
async fn a_sent_write_keeps_its_place_in_line_and_reports_when_durable() {
    let store = lingering_store();
    let s = session(&store, "alpha", "beta").await;
    let first = queued(&s, 1);
    let pending = store
        .send(Mutation::PutTurn {
            turn: first.clone(),
            retain: 10,
        })
        .await
        .unwrap();
    // Queued after the sent write: it must not overtake it (same row, a later status).
    let mut running = first.clone();
    running.status = TurnStatus::Running;
    store
        .enqueue(Mutation::PutTurn {
            turn: running.clone(),
            retain: 10,
        })
        .await
        .unwrap();
    assert!(matches!(pending.outcome().await, Ok(Applied::Count(0))));
    store.flush().await.unwrap();
    assert_eq!(store.turn(first.turn_id).unwrap(), Some(running));
}

#[tokio::test]
async fn a_turn_is_found_by_its_request_id_until_it_is_pruned() {
    let store = Store::in_memory().unwrap();
    let s = session(&store, "alpha", "beta").await;
    let request = iris_core::RequestId::new();
    let mut first = queued(&s, 1);
    first.request_id = Some(request);
    store.put_turn(first.clone(), 2).await.unwrap();
    assert_eq!(store.turn_by_request(request).unwrap(), Some(first.clone()));
    // The row's later versions keep the index current; an unknown id finds nothing.
    let first = completed(first);
    store.put_turn(first.clone(), 2).await.unwrap();
    assert_eq!(store.turn_by_request(request).unwrap(), Some(first));
    assert_eq!(
        store.turn_by_request(iris_core::RequestId::new()).unwrap(),
        None
    );
    // Retention prunes the row and its request id with it.
    for seq in 2..=3 {
        store.put_turn(completed(queued(&s, seq)), 2).await.unwrap();
    }
    assert_eq!(store.turn_by_request(request).unwrap(), None);
}

#[tokio::test]
async fn a_finished_turn_counts_its_spend_once_in_every_scope_and_a_restart_keeps_it() {
    use iris_store::spend::{Spend, SpendScope, WHOLE_LIFE};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spend.redb");
    let store = Store::open(&path).unwrap();
    let s = session(&store, "alpha", "beta").await;
    let usage = UsageTotals {
        cost_usd: 0.25,
        input_tokens: 100,
        output_tokens: 20,
        cache_creation_input_tokens: 5,
        cache_read_input_tokens: 9_000,
    };
    let day = 20_430;
    let book = |turn: TurnRecord, spend_day| {
        let store = store.clone();
        async move {
            store
                .record_turn(turn.session_id, Vec::new(), turn, 10, spend_day)
                .await
                .unwrap()
        }
    };
    // Running: nothing spent yet. Finished: counted. Written again: not counted twice.
    let mut turn = queued(&s, 1);
    turn.status = TurnStatus::Running;
    book(turn.clone(), Some(day)).await;
    let mut done = completed(turn);
    done.usage = usage;
    book(done.clone(), Some(day)).await;
    book(done, Some(day)).await;
    let once = Spend {
        usd: 0.25,
        tokens: 125,
    };
    let (alpha, beta) = (team("alpha"), team("beta"));
    let scopes = [
        (SpendScope::Session(s.session_id), WHOLE_LIFE),
        (SpendScope::Sender(alpha.clone()), day),
        (SpendScope::Receiver(beta.clone()), day),
        (SpendScope::Node, day),
    ];
    for (scope, on) in &scopes {
        assert_eq!(store.spend(scope, *on).unwrap(), once, "{scope}");
    }
    assert_eq!(
        store.spend(&SpendScope::Node, day + 1).unwrap(),
        Spend::default()
    );
    assert_eq!(store.spend_on(day).unwrap().len(), 3);
    drop(store);

    // Reopened: the same; a second turn adds up.
    let store = Store::open(&path).unwrap();
    for (scope, on) in &scopes {
        assert_eq!(store.spend(scope, *on).unwrap(), once, "{scope}");
    }
    let mut second = completed(queued(&s, 2));
    second.usage = usage;
    store
        .record_turn(s.session_id, Vec::new(), second, 10, Some(day))
        .await
        .unwrap();
    assert_eq!(
        store.spend(&SpendScope::Node, day).unwrap(),
        once.plus(once)
    );
    // Deleting the session takes its lifetime spend with it; the day's stay.
    store.delete(s.session_id).await.unwrap();
    assert_eq!(
        store
            .spend(&SpendScope::Session(s.session_id), WHOLE_LIFE)
            .unwrap(),
        Spend::default()
    );
    assert_eq!(
        store.spend(&SpendScope::Node, day).unwrap(),
        once.plus(once)
    );
}

fn team(name: &str) -> iris_core::TeamName {
    iris_core::TeamName::new(name).unwrap()
}
