//! The group-commit writer: one thread owns every write transaction.
//!
//! Callers submit mutations over a bounded channel and await a oneshot acknowledgement, so an
//! async caller (an actor) never blocks. The thread takes one job, drains whatever else is queued
//! (up to `max_batch`), applies them all in one write transaction committed with
//! `Durability::Immediate`, and only then acknowledges each caller. One fsync thus serves a whole
//! batch. A mutation that is rejected fails only its own caller; a storage failure fails the
//! whole batch, and nothing of it is acknowledged.
//!
//! Writes nobody awaits (`Store::enqueue`: transient state such as a turn's `queued` row) may
//! *linger*: a batch made only of them waits up to `linger` for more work before committing, so
//! they ride along with the next awaited write instead of costing a commit of their own. Anything
//! awaited (a submit or a flush) ends the wait at once, so lingering never delays a caller; a
//! crash inside the window loses only unacknowledged writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::counters::Counters;
use crate::error::{StorageContext, StoreError};
use crate::mutation::{Applied, ApplyError, Mutation, WriteTables};
use crate::tables::{META, META_COUNTERS};

/// What the writer is asked to do.
pub(crate) enum Job {
    /// Apply a mutation and report its outcome to a waiting submitter.
    Submit {
        mutation: Mutation,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
    /// Apply a mutation nobody waits for; it may linger.
    Enqueue(Mutation),
    /// Commit whatever lingers, then answer.
    Flush(oneshot::Sender<()>),
}

impl Job {
    fn mutation(&self) -> Option<&Mutation> {
        match self {
            Job::Submit { mutation, .. } | Job::Enqueue(mutation) => Some(mutation),
            Job::Flush(_) => None,
        }
    }

    /// Whether someone waits for this job, so its batch must not linger.
    fn awaited(&self) -> bool {
        !matches!(self, Job::Enqueue(_))
    }

    /// Reports the job's outcome (`None` for a flush) to whoever waits.
    fn answer(self, outcome: Option<Result<Applied, StoreError>>) {
        match (self, outcome) {
            (Job::Submit { reply, .. }, Some(outcome)) => {
                // A submitter that stopped waiting is not an error: the write is durable anyway.
                let _ = reply.send(outcome);
            }
            (Job::Enqueue(_), Some(Err(error))) => {
                tracing::warn!(%error, "a queued store mutation was rejected");
            }
            (Job::Flush(reply), _) => {
                let _ = reply.send(());
            }
            _ => {}
        }
    }
}

/// How the writer thread batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// The most mutations in one transaction.
    pub max_batch: usize,
    /// How long a batch of unawaited writes may wait for more work.
    pub linger: Duration,
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
    batching: Batching,
    jobs: mpsc::Receiver<Job>,
) -> std::io::Result<JoinHandle<()>> {
    // A timer-only runtime of the writer's own, to wait for jobs with a deadline while lingering.
    let clock = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("iris-store-writer".into())
        .spawn(move || {
            let mut writer = Writer {
                db,
                shared,
                counters,
            };
            let mut inbox = Inbox {
                jobs,
                clock,
                batching,
            };
            let mut batch = Vec::with_capacity(batching.max_batch);
            while inbox.fill(&mut batch) {
                writer.commit(&mut batch);
            }
            tracing::debug!("store writer stopped: every handle was dropped");
        })
}

/// The writer's side of the job channel.
struct Inbox {
    jobs: mpsc::Receiver<Job>,
    clock: tokio::runtime::Runtime,
    batching: Batching,
}

impl Inbox {
    /// Waits for the next batch: the first job, whatever else is queued, and (when nobody waits
    /// for any of it) whatever arrives within the linger. False once every sender is gone and
    /// nothing is left.
    fn fill(&mut self, batch: &mut Vec<Job>) -> bool {
        let Some(first) = self.jobs.blocking_recv() else {
            return false;
        };
        batch.push(first);
        self.drain(batch);
        if self.batching.linger.is_zero() || batch.iter().any(Job::awaited) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + self.batching.linger;
        while batch.len() < self.batching.max_batch && !batch.iter().any(Job::awaited) {
            let jobs = &mut self.jobs;
            // Built inside `block_on`: a tokio timer must be created within its runtime.
            let next = self
                .clock
                .block_on(async { tokio::time::timeout_at(deadline, jobs.recv()).await });
            match next {
                Ok(Some(job)) => {
                    batch.push(job);
                    self.drain(batch);
                }
                // The deadline passed, or every sender is gone: commit what there is.
                Ok(None) | Err(_) => break,
            }
        }
        true
    }

    fn drain(&mut self, batch: &mut Vec<Job>) {
        while batch.len() < self.batching.max_batch {
            match self.jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
    }
}

struct Writer {
    db: Arc<Database>,
    shared: Arc<Shared>,
    counters: Counters,
}

impl Writer {
    /// Applies and commits `batch`, then acknowledges every job in it.
    fn commit(&mut self, batch: &mut Vec<Job>) {
        if batch.iter().all(|job| job.mutation().is_none()) {
            // Only flushes: everything before them is committed already.
            batch.drain(..).for_each(|job| job.answer(None));
            return;
        }
        let before = self.counters.clone();
        match self.apply_all(batch) {
            Ok(mut outcomes) => {
                self.shared.work.record(outcomes.len());
                if let Ok(mut committed) = self.shared.committed.lock() {
                    committed.clone_from(&self.counters);
                }
                let mut outcomes = outcomes.drain(..);
                for job in batch.drain(..) {
                    let outcome = job.mutation().and_then(|_| outcomes.next());
                    job.answer(outcome);
                }
            }
            Err(error) => {
                self.counters = before;
                tracing::error!(%error, batch = batch.len(), "store batch failed; nothing in it was written");
                for job in batch.drain(..) {
                    let failed = job.mutation().map(|_| Err(error.clone()));
                    job.answer(failed);
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
            for mutation in batch.iter().filter_map(Job::mutation) {
                outcomes.push(match tables.apply(&mut self.counters, mutation) {
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
