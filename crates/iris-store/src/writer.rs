//! The group-commit writer: one thread owns every write transaction.
//!
//! Callers submit mutations over a bounded channel and await a oneshot acknowledgement, so an
//! async caller (an actor) never blocks. The thread takes one job, drains whatever else is queued
//! (up to `max_batch`), applies them all in one write transaction committed with
//! `Durability::Immediate`, and only then acknowledges each caller. One fsync thus serves a whole
//! batch. A mutation that is rejected fails only its own caller; a storage failure fails the
//! whole batch, and nothing of it is acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::counters::Counters;
use crate::error::{StorageContext, StoreError};
use crate::mutation::{Applied, ApplyError, Mutation, WriteTables};
use crate::tables::{META, META_COUNTERS};

/// A mutation and where to send its outcome.
pub(crate) struct Job {
    pub mutation: Mutation,
    pub reply: oneshot::Sender<Result<Applied, StoreError>>,
}

/// Counts of the writer's work, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Write transactions committed.
    pub batches: u64,
    /// Mutations applied (accepted or rejected) in committed batches.
    pub mutations: u64,
    /// The largest batch so far.
    pub max_batch: u64,
}

#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    batches: AtomicU64,
    mutations: AtomicU64,
    max_batch: AtomicU64,
}

impl WriterCounters {
    pub fn snapshot(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            mutations: self.mutations.load(Ordering::Relaxed),
            max_batch: self.max_batch.load(Ordering::Relaxed),
        }
    }

    fn record(&self, size: usize) {
        let size = size as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.mutations.fetch_add(size, Ordering::Relaxed);
        self.max_batch.fetch_max(size, Ordering::Relaxed);
    }
}

/// State shared between the writer thread and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The counters as of the last commit; `stats` reads them without a transaction.
    pub committed: Mutex<Counters>,
    pub work: WriterCounters,
}

/// Starts the writer thread. It runs until every sender is dropped, then finishes what is queued.
pub(crate) fn spawn(
    db: Arc<Database>,
    shared: Arc<Shared>,
    counters: Counters,
    max_batch: usize,
    mut jobs: mpsc::Receiver<Job>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("iris-store-writer".into())
        .spawn(move || {
            let mut writer = Writer {
                db,
                shared,
                counters,
            };
            let mut batch = Vec::with_capacity(max_batch);
            while let Some(first) = jobs.blocking_recv() {
                batch.push(first);
                while batch.len() < max_batch {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                writer.commit(&mut batch);
            }
            tracing::debug!("store writer stopped: every handle was dropped");
        })
}

struct Writer {
    db: Arc<Database>,
    shared: Arc<Shared>,
    counters: Counters,
}

impl Writer {
    /// Applies and commits `batch`, then acknowledges every job in it.
    fn commit(&mut self, batch: &mut Vec<Job>) {
        let before = self.counters.clone();
        match self.apply_all(batch) {
            Ok(outcomes) => {
                self.shared.work.record(batch.len());
                if let Ok(mut committed) = self.shared.committed.lock() {
                    committed.clone_from(&self.counters);
                }
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    // A caller that stopped waiting (or never waited: `Store::enqueue`) is not an
                    // error, since the write is durable anyway; but a rejection nobody hears of
                    // is logged.
                    if let Err(Err(error)) = job.reply.send(outcome) {
                        tracing::warn!(%error, "a queued store mutation was rejected");
                    }
                }
            }
            Err(error) => {
                self.counters = before;
                tracing::error!(%error, batch = batch.len(), "store batch failed; nothing in it was written");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Runs the batch in one durable transaction. `Err` means nothing was committed.
    fn apply_all(&mut self, batch: &[Job]) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .during("starting a write transaction")?;
        txn.set_durability(Durability::Immediate)
            .during("setting durability")?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut tables = WriteTables::open(&txn)?;
            for job in batch {
                outcomes.push(match tables.apply(&mut self.counters, &job.mutation) {
                    Ok(applied) => Ok(applied),
                    Err(ApplyError::Rejected(e)) => Err(e),
                    Err(ApplyError::Fatal(e)) => return Err(e),
                });
            }
            let counters = codec::encode(&self.counters).map_err(|e| StoreError::Encode {
                what: "counters".into(),
                reason: e.to_string(),
            })?;
            let mut meta = txn.open_table(META).during("opening table meta")?;
            meta.insert(META_COUNTERS, counters.as_slice())
                .during("writing counters")?;
        }
        txn.commit().during("committing")?;
        Ok(outcomes)
    }
}
