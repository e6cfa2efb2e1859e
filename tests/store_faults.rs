//! A full disk under a running runtime: tells go on while the database's filesystem fills up.
//! Every tell answered `Completed` is in the ledger after a restart, every other one failed with
//! `STORE_ERROR` naming the full disk, tells fail fast while it lasts, and once space is freed
//! tells complete again without a restart.
//!
//! The database lives on a 2 MiB tmpfs, which needs root to mount: without it the test says so
//! and skips (the store's own tests inject the same fault through a storage backend).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use iris::core::{Coded, ErrorCode, TeamName, TurnId, TurnStatus};
use iris::runtime::{Runtime, RuntimeError, TellOptions, TellOutcome, TurnError};
use iris::store::{FaultKind, Store};
use support::tmpfs::{Tmpfs, fill_leaving};
use support::{World, fake_claude};

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

fn assert_disk_full(code: ErrorCode, message: &str) {
    assert_eq!(code, ErrorCode::StoreError, "{message}");
    assert!(message.contains("filesystem is full"), "{message}");
    assert!(message.contains("free space"), "{message}");
}

#[derive(Debug, Default)]
struct Tally {
    completed: BTreeSet<TurnId>,
    /// Ran, but their bookkeeping could not be stored.
    failed: usize,
    /// Refused up front while the store could not commit.
    refused: usize,
}

impl Tally {
    /// One tell; true if it completed.
    async fn tell(&mut self, runtime: &Runtime, n: usize) -> bool {
        let (a, b) = (team("alpha"), team("beta"));
        let message = format!("tell {n} {}", "x".repeat(2000));
        match runtime.tell(&a, &b, message, TellOptions::complete()).await {
            Ok(TellOutcome::Completed(result)) => {
                self.completed.insert(result.turn_id);
                true
            }
            Ok(TellOutcome::Failed { error, .. }) => {
                assert!(matches!(error, TurnError::Store { .. }), "{error:?}");
                assert_disk_full(error.code(), &error.to_string());
                self.failed += 1;
                false
            }
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(error) => {
                assert!(matches!(error, RuntimeError::Store(..)), "{error:?}");
                assert_disk_full(error.code(), &error.to_string());
                self.refused += 1;
                false
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_on_a_disk_that_fills_up_lose_nothing_acknowledged_and_recover_without_a_restart() {
    let Some(tmpfs) = Tmpfs::mount("2m") else {
        return;
    };
    let world = World::new();
    let path = tmpfs.path().join("iris.redb");
    let config = world.config(&["alpha", "beta"], fake_claude(), "");
    let store = Store::open(&path).unwrap();
    let runtime = Runtime::start(config, store.clone()).await.unwrap();
    let mut tally = Tally::default();

    // 99 tells; after the 30th the filesystem is filled but for 160 KiB, which the database
    // then uses up by itself.
    let mut ballast = None;
    for n in 1..=99 {
        if n == 31 {
            ballast = Some(fill_leaving(tmpfs.path(), 160 * 1024));
        }
        tally.tell(&runtime, n).await;
    }
    eprintln!(
        "99 tells on a filling disk: {} completed, {} failed with STORE_ERROR after running, {} refused with STORE_ERROR",
        tally.completed.len(),
        tally.failed,
        tally.refused
    );
    assert!(tally.completed.len() >= 30);
    assert!(tally.failed + tally.refused > 0, "the disk never filled up");
    let health = store.health();
    assert!(!health.is_healthy(), "{health:?}");
    assert_eq!(health.fault.unwrap().kind, FaultKind::DiskFull);

    // Fail fast while it lasts.
    let started = Instant::now();
    assert!(!tally.tell(&runtime, 100).await);
    assert!(started.elapsed() < Duration::from_secs(2));

    // Space back: tells complete again, with no restart.
    std::fs::remove_file(ballast.unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !store.health().is_healthy() {
        assert!(
            Instant::now() < deadline,
            "no recovery: {:?}",
            store.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 101..=105 {
        assert!(
            tally.tell(&runtime, n).await,
            "tell {n} after space came back"
        );
    }
    // What the session shows is what is durable: the turns whose bookkeeping failed were
    // counted ahead of their commit, and are no longer.
    // (The reload waits for the store to be readable again, so this may take a moment.)
    let shown = || {
        runtime
            .get_session(&team("alpha"), &team("beta"))
            .unwrap()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while shown().message_count != tally.completed.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the session shows {} messages, {} are durable",
            shown().message_count,
            tally.completed.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let session_id = shown().session_id;
    runtime.shutdown(Duration::from_secs(5)).await;

    // The restart: exactly the acknowledged turns are in the ledger. Shutdown released the file
    // (closing the test's own handle too), so it opens at once.
    let store = Store::open(&path).unwrap();
    let present: BTreeSet<TurnId> = store
        .turns(session_id, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|t| t.status == TurnStatus::Completed)
        .map(|t| t.turn_id)
        .collect();
    eprintln!(
        "after the restart: {} acknowledged, {} present",
        tally.completed.len(),
        present.len()
    );
    assert_eq!(present, tally.completed);
    let record = store.get_by_session_id(&session_id).unwrap().unwrap();
    assert_eq!(record.message_count, tally.completed.len() as u64);
}
