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
use std::time::{Duration, Instant};

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

/// See [`WriterStats::COMMIT_TIME_BOUNDS_US`].
pub(crate) const COMMIT_TIME_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 500_000, 2_000_000,
];

/// See [`WriterStats::BATCH_SIZE_BOUNDS`].
pub(crate) const BATCH_SIZE_BOUNDS: [u64; 12] =
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 8192];

/// Counts of the writer's work, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Write transactions committed.
    pub batches: u64,
    /// Mutations applied (accepted or rejected) in committed batches.
    pub mutations: u64,
    /// The largest batch so far.
    pub max_batch: u64,
    /// Committed batches per commit-latency bucket ([`Self::COMMIT_TIME_BOUNDS_US`], plus one
    /// bucket for everything above); not cumulative. The latency runs from opening the write
    /// transaction until `commit()` returned (the fsync included): what an awaited write adds to
    /// its caller's wait, beyond queueing.
    pub commit_time_counts: [u64; COMMIT_TIME_BOUNDS_US.len() + 1],
    /// The sum of every committed batch's latency, in microseconds.
    pub commit_time_sum_us: u64,
    /// Committed batches per batch-size bucket ([`Self::BATCH_SIZE_BOUNDS`], plus one bucket for
    /// everything above); not cumulative. The sum is [`WriterStats::mutations`].
    pub batch_size_counts: [u64; BATCH_SIZE_BOUNDS.len() + 1],
}

impl WriterStats {
    /// Upper bounds of the commit-latency buckets, in microseconds: from a tmpfs commit
    /// (~100 µs) to a stalled disk (seconds).
    pub const COMMIT_TIME_BOUNDS_US: [u64; 12] = COMMIT_TIME_BOUNDS_US;
    /// Upper bounds of the batch-size buckets, in mutations (the default `max_batch` is 8192).
    pub const BATCH_SIZE_BOUNDS: [u64; 12] = BATCH_SIZE_BOUNDS;
}

#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    batches: AtomicU64,
    mutations: AtomicU64,
    max_batch: AtomicU64,
    commit_time: [AtomicU64; COMMIT_TIME_BOUNDS_US.len() + 1],
    commit_time_sum_us: AtomicU64,
    batch_size: [AtomicU64; BATCH_SIZE_BOUNDS.len() + 1],
}

/// The index of the first bucket whose bound is at least `value` (the overflow bucket if none).
fn bucket(bounds: &[u64], value: u64) -> usize {
    bounds
        .iter()
        .position(|bound| value <= *bound)
        .unwrap_or(bounds.len())
}

impl WriterCounters {
    pub fn snapshot(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            mutations: self.mutations.load(Ordering::Relaxed),
            max_batch: self.max_batch.load(Ordering::Relaxed),
            commit_time_counts: self
                .commit_time
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed)),
            commit_time_sum_us: self.commit_time_sum_us.load(Ordering::Relaxed),
            batch_size_counts: self
                .batch_size
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed)),
        }
    }

    fn record(&self, size: usize, took: Duration) {
        let size = size as u64;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.mutations.fetch_add(size, Ordering::Relaxed);
        self.max_batch.fetch_max(size, Ordering::Relaxed);
        self.commit_time[bucket(&COMMIT_TIME_BOUNDS_US, us)].fetch_add(1, Ordering::Relaxed);
        self.commit_time_sum_us.fetch_add(us, Ordering::Relaxed);
        self.batch_size[bucket(&BATCH_SIZE_BOUNDS, size)].fetch_add(1, Ordering::Relaxed);
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
    std::thread::Builder::new()
        .name("iris-store-writer".into())
        .spawn(move || {
            // A timer-only runtime of the writer's own, to wait for jobs with a deadline while
            // lingering. Built (and dropped) on this thread: a runtime must not be dropped
            // inside the caller's async context. Without it, nothing lingers.
            let clock = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|error| {
                    tracing::warn!(%error, "store writer: no timer, so unawaited writes commit at once");
                })
                .ok();
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
    clock: Option<tokio::runtime::Runtime>,
    batching: Batching,
}

impl Inbox {
    /// Waits for the next batch: the first job, whatever else is queued, and (when nobody waits
    /// for any of it) whatever arrives within the linger. False once every sender is gone and
    /// nothing is left.
    fn fill(&mut self, batch: &mut Vec<Job>) -> bool {
        let Inbox {
            jobs,
            clock,
            batching,
        } = self;
        let Some(first) = jobs.blocking_recv() else {
            return false;
        };
        batch.push(first);
        drain(jobs, batch, batching.max_batch);
        let Some(clock) = clock else {
            return true;
        };
        if batching.linger.is_zero() || batch.iter().any(Job::awaited) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + batching.linger;
        while batch.len() < batching.max_batch {
            // Built inside `block_on`: a tokio timer must be created within its runtime.
            let next =
                clock.block_on(async { tokio::time::timeout_at(deadline, jobs.recv()).await });
            let Ok(Some(job)) = next else {
                // The deadline passed, or every sender is gone: commit what there is.
                break;
            };
            let arrived = batch.len();
            batch.push(job);
            drain(jobs, batch, batching.max_batch);
            if batch[arrived..].iter().any(Job::awaited) {
                break;
            }
        }
        true
    }
}

/// Moves whatever is queued into `batch`, up to `max_batch` jobs in all.
fn drain(jobs: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max_batch: usize) {
    while batch.len() < max_batch {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
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
        let started = Instant::now();
        match self.apply_all(batch) {
            Ok(mut outcomes) => {
                self.shared.work.record(outcomes.len(), started.elapsed());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_lands_in_the_buckets_of_its_latency_and_size() {
        let counters = WriterCounters::default();
        counters.record(1, Duration::from_micros(100));
        counters.record(3, Duration::from_micros(101));
        counters.record(10_000, Duration::from_secs(10));
        let stats = counters.snapshot();
        assert_eq!(stats.batches, 3);
        assert_eq!(stats.mutations, 10_004);
        assert_eq!(stats.max_batch, 10_000);
        assert_eq!(stats.commit_time_counts[0], 1);
        assert_eq!(stats.commit_time_counts[1], 1);
        assert_eq!(stats.commit_time_counts[COMMIT_TIME_BOUNDS_US.len()], 1);
        assert_eq!(stats.commit_time_counts.iter().sum::<u64>(), 3);
        assert_eq!(stats.commit_time_sum_us, 100 + 101 + 10_000_000);
        assert_eq!(stats.batch_size_counts[0], 1);
        assert_eq!(
            stats.batch_size_counts[2], 1,
            "3 mutations: the bucket up to 4"
        );
        assert_eq!(stats.batch_size_counts[BATCH_SIZE_BOUNDS.len()], 1);
    }
}
