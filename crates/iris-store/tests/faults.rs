//! Storage faults: a full disk (or an I/O error) fails exactly the writes it hits with a typed
//! `STORE_ERROR` naming the cause, never loses an acknowledged write, and the store recovers by
//! itself, without a restart, once the fault is gone.
//!
//! Two ways to fill the disk: a fault-injecting storage backend behind the store's writer
//! (runs anywhere), and a real 2 MiB tmpfs filled with a ballast file (needs root to mount; the
//! test says so and skips without it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../../tests/support/tmpfs.rs"]
mod tmpfs;

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::record;
use iris_core::{Coded, ErrorCode, SessionRecord, Timestamp, TurnId, TurnRecord, TurnStatus};
use iris_store::{Change, FaultKind, Store, StoreError, StoreOptions};
use tmpfs::{Tmpfs, fill_leaving};

const TEXT_LIMIT: usize = 8192;
const RETAIN: u64 = 100_000;

/// What the fault-injecting backend does to writes.
const HEALTHY: u8 = 0;
const FULL: u8 = 1;
const EIO: u8 = 2;

/// A file backend whose writes (and growth) fail with `ENOSPC` or `EIO` while its switch says so.
#[derive(Debug)]
struct FaultyFile {
    file: File,
    fault: Arc<AtomicU8>,
}

impl FaultyFile {
    fn check(&self) -> std::io::Result<()> {
        match self.fault.load(Ordering::SeqCst) {
            FULL => Err(std::io::Error::from_raw_os_error(28)),
            EIO => Err(std::io::Error::from_raw_os_error(5)),
            _ => Ok(()),
        }
    }
}

impl redb::StorageBackend for FaultyFile {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if len > self.file.metadata()?.len() {
            self.check()?;
        }
        self.file.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.file.write_all_at(data, offset)
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        linger: Duration::from_millis(1),
        ..StoreOptions::default()
    }
}

fn open_faulty(path: &Path, fault: &Arc<AtomicU8>) -> Store {
    let (path, fault) = (path.to_path_buf(), fault.clone());
    let file = path.clone();
    Store::open_with_backend(path, options(), move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)?;
        Ok(FaultyFile {
            file,
            fault: fault.clone(),
        })
    })
    .unwrap()
}

/// A finished turn `seq` of `session`, with a message and an answer of `size` bytes each.
fn finished(session: &SessionRecord, seq: u64, size: usize) -> TurnRecord {
    let mut turn = TurnRecord::queued(
        session.session_id,
        seq,
        TurnId::new(),
        session.from_team.clone(),
        &format!("{seq} {}", "m".repeat(size)),
        TEXT_LIMIT,
        Timestamp::now(),
    );
    turn.status = TurnStatus::Completed;
    turn.started_at = Some(turn.queued_at);
    turn.finished_at = Some(Timestamp::now());
    turn.set_text(&"a".repeat(size), TEXT_LIMIT);
    turn
}

/// Books a finished turn as the runtime does: the session's bookkeeping and the row, in one
/// awaited write.
async fn book(store: &Store, session: &SessionRecord, turn: TurnRecord) -> Result<(), StoreError> {
    store
        .record_turn(
            session.session_id,
            vec![Change::IncrementMessageCount(1)],
            turn,
            RETAIN,
            Some(1),
        )
        .await
        .map(drop)
}

/// What a scenario saw: turns acknowledged, turns failed.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: BTreeSet<TurnId>,
    failed: BTreeSet<TurnId>,
}

impl Tally {
    /// Books `turn`; an acknowledged one is remembered, a failed one must be the typed fault.
    async fn book(&mut self, store: &Store, session: &SessionRecord, turn: TurnRecord) -> bool {
        let id = turn.turn_id;
        match book(store, session, turn).await {
            Ok(()) => {
                self.acknowledged.insert(id);
                true
            }
            Err(error) => {
                assert_disk_full(&error);
                self.failed.insert(id);
                false
            }
        }
    }
}

fn assert_disk_full(error: &StoreError) {
    assert_eq!(error.code(), ErrorCode::StoreError, "{error}");
    let StoreError::Unavailable { fault, .. } = error else {
        panic!("not a storage fault: {error:?}");
    };
    assert_eq!(fault.kind, FaultKind::DiskFull, "{error}");
    let message = error.to_string();
    assert!(message.contains("filesystem is full"), "{message}");
    assert!(message.contains("free space"), "{message}");
    assert!(message.contains("without a restart"), "{message}");
    assert!(!message.contains("Previous I/O error"), "{message}");
}

/// Waits (bounded) until the store commits again by itself: no write is needed for that.
async fn wait_healthy(store: &Store, within: Duration) {
    let deadline = Instant::now() + within;
    while !store.health().is_healthy() {
        assert!(
            Instant::now() < deadline,
            "the store did not recover within {within:?}: {:?}",
            store.health()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.writer_stats().healthy);
}

/// Reopens the file as a fresh process would, and checks that exactly the acknowledged turns
/// are there, with a message count to match.
async fn check_after_restart(path: &Path, session: &SessionRecord, tally: &Tally) {
    let store = Store::open(path).unwrap();
    let present: BTreeSet<TurnId> = store
        .turns(session.session_id, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|t| t.status == TurnStatus::Completed)
        .map(|t| t.turn_id)
        .collect();
    eprintln!(
        "after the restart: {} acknowledged, {} present, {} failed with STORE_ERROR",
        tally.acknowledged.len(),
        present.len(),
        tally.failed.len()
    );
    assert_eq!(
        present, tally.acknowledged,
        "every acknowledged turn, and only those, is present"
    );
    let stored = store
        .get_by_session_id(&session.session_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.message_count, tally.acknowledged.len() as u64);
    assert_eq!(
        store.stats().total_messages,
        tally.acknowledged.len() as u64
    );
}

#[tokio::test]
async fn a_full_disk_fails_its_writes_typed_and_the_store_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let fault = Arc::new(AtomicU8::new(HEALTHY));
    let mut tally = Tally::default();
    let session;
    {
        let store = open_faulty(&path, &fault);
        session = store.create(record("alpha", "beta")).await.unwrap();
        let mut seq = 0;
        for _ in 0..20 {
            seq += 1;
            assert!(
                tally
                    .book(&store, &session, finished(&session, seq, 500))
                    .await
            );
        }

        fault.store(FULL, Ordering::SeqCst);
        // Pipelined, as the runtime books turns: each queued behind the last.
        let mut pending = Vec::new();
        for _ in 0..30 {
            seq += 1;
            let turn = finished(&session, seq, 500);
            let id = turn.turn_id;
            let write = store
                .send(iris_store::Mutation::RecordTurn {
                    session_id: session.session_id,
                    changes: vec![Change::IncrementMessageCount(1)],
                    turn,
                    retain: RETAIN,
                    spend_day: Some(1),
                })
                .await
                .unwrap();
            pending.push((id, write));
        }
        for (id, write) in pending {
            match write.outcome().await {
                Ok(_) => {
                    tally.acknowledged.insert(id);
                }
                Err(error) => {
                    assert_disk_full(&error);
                    tally.failed.insert(id);
                }
            }
        }
        assert_eq!(
            tally.failed.len(),
            30,
            "every write on the full disk failed"
        );

        // The outage is visible, and writes fail fast while it lasts.
        let health = store.health();
        assert!(!health.is_healthy());
        assert_eq!(health.fault.as_ref().unwrap().kind, FaultKind::DiskFull);
        assert!(health.since.is_some());
        let stats = store.writer_stats();
        assert!(!stats.healthy);
        assert!(stats.failed_commits >= 1);
        assert!(stats.failed_mutations >= 30);
        assert_disk_full(&store.unavailable().unwrap());
        let started = Instant::now();
        seq += 1;
        assert!(
            !tally
                .book(&store, &session, finished(&session, seq, 10))
                .await
        );
        assert!(started.elapsed() < Duration::from_secs(1), "fails fast");

        // Space comes back: the store recovers by itself, with no write to prompt it.
        fault.store(HEALTHY, Ordering::SeqCst);
        wait_healthy(&store, Duration::from_secs(10)).await;
        assert!(store.health().recoveries >= 1);
        assert!(store.unavailable().is_none());
        for _ in 0..10 {
            seq += 1;
            assert!(
                tally
                    .book(&store, &session, finished(&session, seq, 500))
                    .await
            );
        }
        // Reads work again, and see what was committed before the fault.
        assert_eq!(
            store
                .get_by_session_id(&session.session_id)
                .unwrap()
                .unwrap()
                .message_count,
            30
        );
    }
    check_after_restart(&path, &session, &tally).await;
}

#[tokio::test]
async fn an_io_error_is_named_as_such_and_heals_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let fault = Arc::new(AtomicU8::new(HEALTHY));
    let store = open_faulty(&path, &fault);
    let session = store.create(record("alpha", "beta")).await.unwrap();
    fault.store(EIO, Ordering::SeqCst);
    let error = book(&store, &session, finished(&session, 1, 10))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::StoreError);
    let StoreError::Unavailable { fault: cause, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(cause.kind, FaultKind::Io);
    let message = error.to_string();
    assert!(message.contains("I/O error"), "{message}");
    assert!(message.contains("check the disk"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    // A read during the outage fails typed too (or succeeds): never redb's raw "re-open" text.
    if let Err(error) = store.get_by_session_id(&session.session_id) {
        assert_eq!(error.code(), ErrorCode::StoreError);
        assert!(!error.to_string().contains("Previous I/O error"), "{error}");
    }
    fault.store(HEALTHY, Ordering::SeqCst);
    wait_healthy(&store, Duration::from_secs(10)).await;
    book(&store, &session, finished(&session, 2, 10))
        .await
        .unwrap();
    assert_eq!(store.turns(session.session_id, 10).unwrap().len(), 1);
}

#[tokio::test]
async fn a_reader_holding_a_transaction_does_not_keep_the_store_from_recovering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iris.redb");
    let fault = Arc::new(AtomicU8::new(HEALTHY));
    let store = open_faulty(&path, &fault);
    let session = store.create(record("alpha", "beta")).await.unwrap();
    for seq in 1..=50 {
        book(&store, &session, finished(&session, seq, 100))
            .await
            .unwrap();
    }
    // Reads in a loop on other threads while the store fails and recovers.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop, id) = (store.clone(), stop.clone(), session.session_id);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _ = store.turns(id, 50);
                }
            })
        })
        .collect();
    fault.store(FULL, Ordering::SeqCst);
    assert!(
        book(&store, &session, finished(&session, 51, 10))
            .await
            .is_err()
    );
    fault.store(HEALTHY, Ordering::SeqCst);
    wait_healthy(&store, Duration::from_secs(10)).await;
    book(&store, &session, finished(&session, 52, 10))
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    readers.into_iter().for_each(|r| r.join().unwrap());
    assert_eq!(store.turns(session.session_id, 100).unwrap().len(), 51);
}

#[tokio::test]
async fn a_real_full_tmpfs_loses_no_acknowledged_write_and_heals_once_space_is_freed() {
    let Some(tmpfs) = Tmpfs::mount("2m") else {
        return;
    };
    let path = tmpfs.path().join("iris.redb");
    let mut tally = Tally::default();
    let session;
    {
        let store = Store::open_with(&path, options()).unwrap();
        session = store.create(record("alpha", "beta")).await.unwrap();
        let mut seq = 0;
        for _ in 0..20 {
            seq += 1;
            assert!(
                tally
                    .book(&store, &session, finished(&session, seq, 2000))
                    .await
            );
        }
        let ballast = fill_leaving(tmpfs.path(), 160 * 1024);
        // Write until the disk refuses, then on.
        let mut after_first_failure = 0;
        while after_first_failure < 20 {
            seq += 1;
            assert!(seq < 5_000, "the full disk never refused a write");
            if !tally
                .book(&store, &session, finished(&session, seq, 2000))
                .await
                || !tally.failed.is_empty()
            {
                after_first_failure += 1;
            }
        }
        assert!(!store.health().is_healthy());
        assert_eq!(
            store.health().fault.unwrap().kind,
            FaultKind::DiskFull,
            "named as a full disk"
        );

        std::fs::remove_file(&ballast).unwrap();
        wait_healthy(&store, Duration::from_secs(15)).await;
        for _ in 0..10 {
            seq += 1;
            assert!(
                tally
                    .book(&store, &session, finished(&session, seq, 2000))
                    .await,
                "writes succeed again once space is back"
            );
        }
    }
    assert!(!tally.failed.is_empty());
    assert!(
        tally.acknowledged.len() > 30,
        "the database used the last space itself"
    );
    check_after_restart(&path, &session, &tally).await;
}
