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
//!
//! **Storage faults.** A commit that fails with an I/O error (a full disk, above all) leaves redb's
//! handle unusable ("previous I/O error, close and re-open the database"). The writer then fails
//! the batch's callers with [`StoreError::Unavailable`], naming the fault, and enters an *outage*:
//! it closes the handle and reopens the file (redb recovers it to its last commit, so nothing
//! committed is lost), then proves it can commit again with a probe transaction. Until a probe
//! succeeds, every job is refused at once with the same error, and the reopen is retried with
//! backoff (50 ms, doubling, at most 5 s) whether or not work arrives, so health comes back
//! without a restart once the fault is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use iris_core::Timestamp;
use iris_core::metrics::{Counter, Histogram};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::counters::Counters;
use crate::error::{FaultKind, OpenError, StorageContext, StorageFault, StoreError};
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

    /// Fails the job for a storage fault that is logged once for its whole batch.
    fn fail_quietly(self, error: &StoreError) {
        match self {
            Job::Submit { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Job::Enqueue(_) => {}
            Job::Flush(reply) => {
                let _ = reply.send(());
            }
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
    /// Whether the store can commit now: false from a storage fault (a full disk, an I/O
    /// error) until the reopened file took a commit again.
    pub healthy: bool,
    /// Write transactions that failed for a storage fault (reopen probes included).
    pub failed_commits: u64,
    /// Mutations that failed for a storage fault: in a failed commit, or refused during an
    /// outage.
    pub failed_mutations: u64,
    /// Times the database was reopened after a fault and took a commit again.
    pub recoveries: u64,
}

impl WriterStats {
    /// Upper bounds of the commit-latency buckets, in microseconds: from a tmpfs commit
    /// (~100 µs) to a stalled disk (seconds).
    pub const COMMIT_TIME_BOUNDS_US: [u64; 12] = COMMIT_TIME_BOUNDS_US;
    /// Upper bounds of the batch-size buckets, in mutations (the default `max_batch` is 8192).
    pub const BATCH_SIZE_BOUNDS: [u64; 12] = BATCH_SIZE_BOUNDS;
}

#[derive(Debug)]
pub(crate) struct WriterCounters {
    batches: Counter,
    mutations: Counter,
    max_batch: Counter,
    commit_time: Histogram,
    batch_size: Histogram,
    /// Set while the writer is in an outage.
    unhealthy: AtomicBool,
    failed_commits: Counter,
    failed_mutations: Counter,
    recoveries: Counter,
}

impl Default for WriterCounters {
    fn default() -> WriterCounters {
        WriterCounters {
            batches: Counter::default(),
            mutations: Counter::default(),
            max_batch: Counter::default(),
            commit_time: Histogram::new(&COMMIT_TIME_BOUNDS_US),
            batch_size: Histogram::new(&BATCH_SIZE_BOUNDS),
            unhealthy: AtomicBool::new(false),
            failed_commits: Counter::default(),
            failed_mutations: Counter::default(),
            recoveries: Counter::default(),
        }
    }
}

/// A histogram's counts as the fixed-size array of [`WriterStats`] (its bounds and one more).
fn counts<const N: usize>(histogram: &Histogram) -> [u64; N] {
    let mut out = [0; N];
    for (slot, count) in out.iter_mut().zip(histogram.counts()) {
        *slot = count;
    }
    out
}

impl WriterCounters {
    pub fn snapshot(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.get(),
            mutations: self.mutations.get(),
            max_batch: self.max_batch.get(),
            commit_time_counts: counts(&self.commit_time),
            commit_time_sum_us: self.commit_time.sum(),
            batch_size_counts: counts(&self.batch_size),
            healthy: !self.unhealthy.load(Ordering::Relaxed),
            failed_commits: self.failed_commits.get(),
            failed_mutations: self.failed_mutations.get(),
            recoveries: self.recoveries.get(),
        }
    }

    fn record(&self, size: usize, took: Duration) {
        let size = size as u64;
        self.batches.inc();
        self.mutations.add(size);
        self.max_batch.raise_to(size);
        self.commit_time.observe_micros(took);
        self.batch_size.observe(size);
    }
}

/// Opens the database (again) and prepares it: the schema checked, missing tables created, the
/// counters loaded. The same function opens the store and reopens it after a fault.
pub(crate) type Open = Box<dyn Fn() -> Result<(Database, Counters), OpenError> + Send + Sync>;

/// How the writer reopens the database after a fault.
pub(crate) struct Opener {
    pub open: Open,
    /// The database file, whose filesystem's free space tells when a full disk is over; `None`
    /// for a backend of the caller's (then only the probe commit decides).
    pub file: Option<std::path::PathBuf>,
}

/// The first wait before reopening after a fault, and the longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A full disk is over once its filesystem has this much available again. Without the margin,
/// a probe commit that fits in the file's own free pages would declare the store healthy while
/// every real write still fails.
pub(crate) const ROOM_AFTER_DISK_FULL: u64 = 256 * 1024;

/// The bytes available to this user on the filesystem of `file`, if that can be read.
fn room(file: &std::path::Path) -> Option<u64> {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty())?;
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Some(blocks.saturating_mul(size))
}

/// State shared between the writer thread and readers.
pub(crate) struct Shared {
    /// The database; `None` while the writer reopens it after a fault (the old handle must be
    /// closed, releasing the file's lock, before the file can be opened again). Readers hold the
    /// lock only to begin a read transaction; the writer holds it (shared) while it commits.
    pub db: RwLock<Option<Database>>,
    /// The database file as shown in messages (`:memory:` for an in-memory store).
    pub path: String,
    /// The counters as of the last commit; `stats` reads them without a transaction.
    pub committed: Mutex<Counters>,
    pub work: WriterCounters,
    /// The storage fault of the outage in progress, and when it began.
    pub outage: Mutex<Option<(StorageFault, Timestamp)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("path", &self.path)
            .field("work", &self.work)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(db: Database, path: String, counters: Counters) -> Shared {
        Shared {
            db: RwLock::new(Some(db)),
            path,
            committed: Mutex::new(counters),
            work: WriterCounters::default(),
            outage: Mutex::new(None),
        }
    }

    /// The storage fault of the outage in progress, and when it began.
    pub fn outage(&self) -> Option<(StorageFault, Timestamp)> {
        match self.outage.lock() {
            Ok(outage) => outage.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_outage(&self, outage: Option<(StorageFault, Timestamp)>) {
        self.work
            .unhealthy
            .store(outage.is_some(), Ordering::Relaxed);
        match self.outage.lock() {
            Ok(mut slot) => *slot = outage,
            Err(poisoned) => *poisoned.into_inner() = outage,
        }
    }

    /// The error of a write refused (or failed) for `fault`.
    pub fn unavailable(&self, fault: StorageFault) -> StoreError {
        StoreError::Unavailable {
            path: self.path.clone(),
            fault,
        }
    }

    /// A storage error that is a fault of the storage becomes [`StoreError::Unavailable`],
    /// naming the outage's first cause when one is in progress (a full disk, rather than redb's
    /// "previous I/O error" that follows it). Other errors pass unchanged.
    pub fn classify(&self, error: StoreError) -> StoreError {
        let StoreError::Storage { source, .. } = &error else {
            return error;
        };
        let Some(fault) = StorageFault::of(source) else {
            return error;
        };
        let fault = self.outage().map_or(fault, |(first, _)| first);
        self.unavailable(fault)
    }

    /// Begins a read transaction on the current database. While the writer reopens the file
    /// there is none, and the read fails fast with the outage's fault.
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        let db = match self.db.read() {
            Ok(db) => db,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(db) = db.as_ref() else {
            // No handle and no outage: the store was closed, not faulted.
            return Err(self
                .outage()
                .map_or(StoreError::Closed, |(fault, _)| self.unavailable(fault)));
        };
        db.begin_read()
            .during("starting a read")
            .map_err(|e| self.classify(e))
    }
}

/// Starts the writer thread. It runs until every sender is dropped, then finishes what is queued.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    opener: Option<Opener>,
    counters: Counters,
    batching: Batching,
    jobs: mpsc::Receiver<Job>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("iris-store-writer".into())
        .spawn(move || {
            // A timer-only runtime of the writer's own, to wait for jobs with a deadline while
            // lingering or waiting to reopen. Built (and dropped) on this thread: a runtime must
            // not be dropped inside the caller's async context. Without it, nothing lingers, and
            // a reopen after a fault is retried only when work arrives.
            let clock = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|error| {
                    tracing::warn!(%error, "store writer: no timer, so unawaited writes commit at once");
                })
                .ok();
            let mut writer = Writer {
                shared,
                opener,
                counters,
                outage: None,
            };
            let mut inbox = Inbox {
                jobs,
                clock,
                batching,
            };
            let mut batch = Vec::with_capacity(batching.max_batch);
            loop {
                let retry_at = writer.outage.as_ref().map(|o| o.retry_at);
                match inbox.fill(&mut batch, retry_at) {
                    Filled::Closed => break,
                    Filled::Idle => writer.recover(),
                    Filled::Batch => {
                        if retry_at.is_some_and(|at| Instant::now() >= at) {
                            writer.recover();
                        }
                        match writer.outage.as_ref() {
                            Some(outage) => {
                                let error = writer.shared.unavailable(outage.fault.clone());
                                writer.refuse(&mut batch, &error);
                            }
                            None => writer.commit(&mut batch),
                        }
                    }
                }
            }
            tracing::debug!("store writer stopped: every handle was dropped");
        })
}

/// What [`Inbox::fill`] found.
enum Filled {
    /// A batch to commit.
    Batch,
    /// Nothing arrived before the deadline.
    Idle,
    /// Every sender is gone and nothing is left.
    Closed,
}

/// The writer's side of the job channel.
struct Inbox {
    jobs: mpsc::Receiver<Job>,
    clock: Option<tokio::runtime::Runtime>,
    batching: Batching,
}

impl Inbox {
    /// Waits for the next batch: the first job, whatever else is queued, and (when nobody waits
    /// for any of it) whatever arrives within the linger. Waits for the first job only until
    /// `until`, if given (and a timer exists).
    fn fill(&mut self, batch: &mut Vec<Job>, until: Option<Instant>) -> Filled {
        let Inbox {
            jobs,
            clock,
            batching,
        } = self;
        let first = match (until, clock.as_ref()) {
            (Some(until), Some(clock)) => {
                let deadline = tokio::time::Instant::from_std(until);
                match clock.block_on(async { tokio::time::timeout_at(deadline, jobs.recv()).await })
                {
                    Ok(first) => first,
                    Err(_) => return Filled::Idle,
                }
            }
            _ => jobs.blocking_recv(),
        };
        let Some(first) = first else {
            return Filled::Closed;
        };
        batch.push(first);
        drain(jobs, batch, batching.max_batch);
        let Some(clock) = clock else {
            return Filled::Batch;
        };
        if batching.linger.is_zero() || batch.iter().any(Job::awaited) {
            return Filled::Batch;
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
        Filled::Batch
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

/// A storage fault the writer is recovering from.
struct Outage {
    fault: StorageFault,
    /// Whether the database handle is unusable (redb's "previous I/O error") and must be
    /// reopened; false once it was, until a probe fails again.
    broken: bool,
    began: Instant,
    /// The wait before the next reopen after this one fails.
    backoff: Duration,
    retry_at: Instant,
    /// Reopens tried so far.
    attempts: u32,
}

/// Why a recovery attempt did not end the outage.
struct Stuck {
    /// Whether the handle is (still, or again) unusable.
    broken: bool,
    why: String,
}

struct Writer {
    shared: Arc<Shared>,
    /// How to reopen the database; `None` for an in-memory store, which has nothing to reopen.
    opener: Option<Opener>,
    counters: Counters,
    outage: Option<Outage>,
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
                let mutations = batch.iter().filter(|j| j.mutation().is_some()).count();
                let fault = match &error {
                    StoreError::Storage { source, .. } => StorageFault::of(source),
                    _ => None,
                };
                let Some(fault) = fault else {
                    tracing::error!(%error, batch = mutations, "store batch failed; nothing in it was written");
                    for job in batch.drain(..) {
                        let failed = job.mutation().map(|_| Err(error.clone()));
                        job.answer(failed);
                    }
                    return;
                };
                let work = &self.shared.work;
                work.failed_commits.inc();
                work.failed_mutations.add(mutations as u64);
                tracing::error!(%error, batch = mutations, fault = fault.kind.as_str(), "store commit failed; nothing in the batch was written; the store reopens the database and refuses writes until it can commit again");
                let refused = self.shared.unavailable(fault.clone());
                // The outage is public before any caller hears of it, so health never says ok to
                // someone whose write just failed.
                self.begin_outage(fault);
                batch.drain(..).for_each(|job| job.fail_quietly(&refused));
                self.recover();
            }
        }
    }

    /// Refuses a batch at once during an outage.
    fn refuse(&mut self, batch: &mut Vec<Job>, error: &StoreError) {
        let mutations = batch.iter().filter(|j| j.mutation().is_some()).count();
        self.shared.work.failed_mutations.add(mutations as u64);
        tracing::debug!(
            batch = mutations,
            "store writes refused: the store is recovering from a storage fault"
        );
        batch.drain(..).for_each(|job| job.fail_quietly(error));
    }

    /// Enters an outage (the handle is unusable); the first reopen is due at once.
    fn begin_outage(&mut self, fault: StorageFault) {
        let now = Instant::now();
        self.shared
            .set_outage(Some((fault.clone(), Timestamp::now())));
        self.outage = Some(Outage {
            fault,
            broken: true,
            began: now,
            backoff: BACKOFF_FIRST,
            retry_at: now,
            attempts: 0,
        });
    }

    /// Reopens the failed handle (so reads work again), waits for room on a full disk, then
    /// probes with a commit. On success the outage ends; otherwise the next try is scheduled
    /// after a doubled backoff.
    fn recover(&mut self) {
        let Some(outage) = self.outage.as_mut() else {
            return;
        };
        outage.attempts += 1;
        let attempt = outage.attempts;
        let (broken, kind) = (outage.broken, outage.fault.kind);
        let result = self.try_recover(broken, kind);
        let Some(outage) = self.outage.as_mut() else {
            return;
        };
        match result {
            Ok(()) => {
                tracing::warn!(
                    fault = %outage.fault,
                    after = ?outage.began.elapsed(),
                    attempts = attempt,
                    "store recovered: the database was reopened and commits again"
                );
                self.outage = None;
                self.shared.set_outage(None);
                self.shared.work.recoveries.inc();
            }
            Err(Stuck { broken, why }) => {
                outage.broken = broken;
                let wait = outage.backoff;
                outage.retry_at = Instant::now() + wait;
                outage.backoff = (wait * 2).min(BACKOFF_MAX);
                // The first few failures say why; later ones would only repeat it.
                if attempt <= 3 || attempt.is_power_of_two() {
                    tracing::warn!(why = %why, attempts = attempt, retry_in = ?wait, "store still cannot commit; retrying");
                }
            }
        }
    }

    fn try_recover(&mut self, broken: bool, kind: FaultKind) -> Result<(), Stuck> {
        let Some(opener) = self.opener.as_ref() else {
            return Err(Stuck {
                broken,
                why: "an in-memory store cannot be reopened".into(),
            });
        };
        if broken {
            // The old handle goes first: it holds the file's lock.
            drop(self.take_db());
            let (db, counters) = (opener.open)().map_err(|e| Stuck {
                broken: true,
                why: e.to_string(),
            })?;
            self.put_db(db);
            // What the file holds is the truth: everything committed, nothing of a failed
            // batch.
            self.counters = counters.clone();
            if let Ok(mut committed) = self.shared.committed.lock() {
                *committed = counters;
            }
        }
        if kind == FaultKind::DiskFull
            && let Some(file) = opener.file.as_deref()
            && let Some(room) = room(file)
            && room < ROOM_AFTER_DISK_FULL
        {
            return Err(Stuck {
                broken: false,
                why: format!(
                    "its filesystem is still full ({room} bytes available, {ROOM_AFTER_DISK_FULL} needed)"
                ),
            });
        }
        // The probe: a real durable commit (the counters, unchanged).
        match self.apply_all(&[]) {
            Ok(_) => Ok(()),
            Err(error) => {
                self.shared.work.failed_commits.inc();
                let fault = matches!(&error, StoreError::Storage { source, .. } if StorageFault::of(source).is_some());
                Err(Stuck {
                    // A fault leaves this handle unusable too.
                    broken: fault,
                    why: error.to_string(),
                })
            }
        }
    }

    fn take_db(&self) -> Option<Database> {
        match self.shared.db.write() {
            Ok(mut db) => db.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    fn put_db(&self, db: Database) {
        match self.shared.db.write() {
            Ok(mut slot) => *slot = Some(db),
            Err(poisoned) => *poisoned.into_inner() = Some(db),
        }
    }

    /// Runs the batch in one durable transaction. `Err` means nothing was committed.
    fn apply_all(&mut self, batch: &[Job]) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let shared = self.shared.clone();
        let db = match shared.db.read() {
            Ok(db) => db,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(db) = db.as_ref() else {
            return Err(StoreError::storage("starting a write transaction")(
                redb::Error::DatabaseClosed,
            ));
        };
        let mut txn = db.begin_write().during("starting a write transaction")?;
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
