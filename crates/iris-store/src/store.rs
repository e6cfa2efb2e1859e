//! The public [`Store`] handle: opening, reads, and writes through the group-commit writer.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use iris_core::{
    AgentProcessMark, Pair, RequestId, SessionFilter, SessionId, SessionRecord, SessionStats,
    SessionStatus, TeamName, Timestamp, TurnId, TurnRecord,
};
use redb::backends::InMemoryBackend;
use redb::{Database, ReadOnlyTable, ReadableTable, ReadableTableMetadata, TableHandle};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::counters::Counters;
use crate::error::{OpenError, StorageContext, StorageFault, StoreError};
use crate::mutation::{
    Applied, Change, Mutation, TurnKey, decode_session, decode_turn, key, turn_id_key,
};
use crate::spend::{Spend, SpendScope, StoredCap};
use crate::tables::{
    BUDGET_CAPS, CONVERSATIONS, LIVE, META, META_COUNTERS, META_SCHEMA, OPEN_TURNS, PAIRS,
    PAIRS_BY_TO, REQUEST_IDS, SCHEMA_VERSION, SESSIONS, SPEND, TABLE_NAMES, TURN_IDS, TURNS,
};
use crate::writer::{self, Batching, Job, Open, Opener, Shared, WriterStats};
use iris_core::config::budget::Cap;

/// How a store is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most mutations committed in one transaction. `1` commits every mutation on its own,
    /// which is the anchor the group-commit benchmark compares against.
    pub max_batch: usize,
    /// How many mutations may wait for the writer before submitters wait for room.
    pub queue_capacity: usize,
    /// How long a batch made only of unawaited writes ([`Store::enqueue`]) may wait for more
    /// work before it commits. An awaited write ends the wait at once. Zero commits at once.
    pub linger: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch: 8192,
            queue_capacity: 65_536,
            linger: Duration::from_millis(2),
        }
    }
}

/// A mutation the writer has queued ([`Store::send`]); its outcome arrives once its batch is
/// committed.
#[derive(Debug)]
#[must_use = "the write is queued either way; await `outcome` to know it is durable"]
pub struct PendingWrite {
    answer: oneshot::Receiver<Result<Applied, StoreError>>,
}

impl PendingWrite {
    /// Waits until the mutation is durable (or rejected, or its batch failed).
    pub async fn outcome(self) -> Result<Applied, StoreError> {
        self.answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// A cheap, cloneable handle to the session store.
///
/// Reads run on the caller's thread against a consistent snapshot (redb MVCC) and never wait for
/// writes. Writes are submitted to one writer thread that commits them in groups, each durably,
/// and resolve once their group is on disk. The writer stops and the file is released when the
/// last handle is dropped, or at once for every handle by [`Store::close`].
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: Option<PathBuf>,
    shared: Arc<Shared>,
    /// The writer's queue; `None` once the store is closed.
    jobs: RwLock<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    /// A sender to the writer, unless the store is closed. Each caller sends on its own clone,
    /// so no lock is held across an await.
    fn jobs(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        self.jobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Stops the writer once it has committed what is queued, and closes the database, which
    /// releases the file's lock so it can be opened again. Blocking (joins the writer thread).
    fn close(&self) {
        // Closing the channel lets the writer finish what is queued (senders still in flight
        // hold clones only as long as their send).
        self.jobs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!(path = %self.shared.path, "the store writer thread panicked");
        }
        // The writer is gone: close the database now rather than with the last `Shared`.
        let db = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(db);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The file is released by the time the last handle is gone, so the same process can
        // reopen it.
        self.close();
    }
}

/// Whether a store can commit, as its writer last found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// The storage fault of the outage in progress (a full disk, an I/O error), if any. While
    /// it lasts, writes fail fast with [`StoreError::Unavailable`] and the writer reopens the
    /// database with backoff.
    pub fault: Option<StorageFault>,
    /// When the outage began.
    pub since: Option<Timestamp>,
    /// Write transactions that failed for a storage fault, since the store was opened.
    pub failed_commits: u64,
    /// Times the store recovered from an outage.
    pub recoveries: u64,
}

impl StoreHealth {
    /// Whether the store can commit (no outage in progress).
    pub fn is_healthy(&self) -> bool {
        self.fault.is_none()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` with default options.
    ///
    /// The parent directory is created if missing, and a new file gets mode 0600.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, OpenError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store at `path`.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, OpenError> {
        let path = path.as_ref().to_path_buf();
        let file = path.clone();
        let open: Open = Box::new(move || {
            let io = |source| OpenError::Io {
                path: file.clone(),
                source,
            };
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            // Create the file ourselves so that it is private from its first byte.
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&file)
                .map_err(io)?;
            let db = Database::builder()
                .create(&file)
                .map_err(|e| classify_open_error(&file, e.into()))?;
            let counters = prepare_schema(&db, &file)?;
            Ok((db, counters))
        });
        let opener = Opener {
            open,
            file: Some(path.clone()),
        };
        Self::start(opener, true, Some(path), options)
    }

    /// Opens (or creates) a store on a storage backend of the caller's: `backend` is called to
    /// open it, and again whenever the store reopens it after a storage fault (so it must give
    /// access to the same data each time, releasing it when dropped). `name` stands for the
    /// database in messages. Meant for fault-injection tests and unusual storage.
    pub fn open_with_backend<B, F>(
        name: impl Into<PathBuf>,
        options: StoreOptions,
        backend: F,
    ) -> Result<Store, OpenError>
    where
        B: redb::StorageBackend,
        F: Fn() -> std::io::Result<B> + Send + Sync + 'static,
    {
        let name = name.into();
        let shown = name.clone();
        let open: Open = Box::new(move || {
            let backend = backend().map_err(|source| OpenError::Io {
                path: shown.clone(),
                source,
            })?;
            let db = Database::builder()
                .create_with_backend(backend)
                .map_err(|e| classify_open_error(&shown, e.into()))?;
            let counters = prepare_schema(&db, &shown)?;
            Ok((db, counters))
        });
        let opener = Opener { open, file: None };
        Self::start(opener, true, Some(name), options)
    }

    /// A store held in memory only, for tests and throwaway runs.
    pub fn in_memory() -> Result<Store, OpenError> {
        Self::in_memory_with(StoreOptions::default())
    }

    /// A store held in memory only.
    pub fn in_memory_with(options: StoreOptions) -> Result<Store, OpenError> {
        let memory = Path::new(":memory:");
        let open: Open = Box::new(move || {
            let db = Database::builder()
                .create_with_backend(InMemoryBackend::new())
                .map_err(|e| classify_open_error(memory, e.into()))?;
            let counters = prepare_schema(&db, memory)?;
            Ok((db, counters))
        });
        // Reopening would start from nothing: an in-memory store is never reopened.
        Self::start(Opener { open, file: None }, false, None, options)
    }

    fn start(
        opener: Opener,
        reopenable: bool,
        path: Option<PathBuf>,
        options: StoreOptions,
    ) -> Result<Store, OpenError> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        let (db, counters) = (opener.open)()?;
        let shared = Arc::new(Shared::new(
            db,
            shown.display().to_string(),
            counters.clone(),
        ));
        let (jobs, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let thread = writer::spawn(
            shared.clone(),
            reopenable.then_some(opener),
            counters,
            Batching {
                max_batch: options.max_batch.max(1),
                linger: options.linger,
            },
            receiver,
        )
        .map_err(|source| OpenError::Io {
            path: shown.clone(),
            source,
        })?;
        tracing::debug!(path = %shown.display(), "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                shared,
                jobs: RwLock::new(Some(jobs)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Closes the store for every handle: the writer commits what is already queued, then the
    /// database is closed and its file released (another [`Store::open`] of it succeeds at once).
    /// Later writes fail with [`StoreError::Closed`], and so do reads. Waits at most `limit` for
    /// the writer (a commit on a stalled disk can take long); past it the store still closes,
    /// later, and the error says so.
    pub async fn close(&self, limit: Duration) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        let closing = tokio::task::spawn_blocking(move || inner.close());
        match tokio::time::timeout(limit, closing).await {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::CloseTimedOut {
                path: self.inner.shared.path.clone(),
                waited: limit,
            }),
        }
    }

    /// Whether the store can commit now, and what stops it if not. Cheap (no transaction).
    pub fn health(&self) -> StoreHealth {
        let outage = self.inner.shared.outage();
        let work = self.inner.shared.work.snapshot();
        StoreHealth {
            since: outage.as_ref().map(|(_, since)| *since),
            fault: outage.map(|(fault, _)| fault),
            failed_commits: work.failed_commits,
            recoveries: work.recoveries,
        }
    }

    /// The error a write would get now if the store is in an outage (see [`Store::health`]),
    /// for callers that should fail fast rather than start work they could not record.
    pub fn unavailable(&self) -> Option<StoreError> {
        self.inner
            .shared
            .outage()
            .map(|(fault, _)| self.inner.shared.unavailable(fault))
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    // ----- reads -----

    /// The record with this session id.
    pub fn get_by_session_id(
        &self,
        session_id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.reading(|| {
            let sessions = self.read_table(SESSIONS, "sessions")?;
            read_session(&sessions, key(session_id))
        })
    }

    /// The record of this pair.
    pub fn get_by_pair(&self, pair: &Pair) -> Result<Option<SessionRecord>, StoreError> {
        self.reading(|| {
            let txn = self.inner.shared.begin_read()?;
            let pairs = txn.open_table(PAIRS).during("opening table pairs")?;
            let Some(raw) = pairs
                .get((pair.from.as_str(), pair.to.as_str()))
                .during("reading a pair")?
                .map(|g| g.value())
            else {
                return Ok(None);
            };
            let sessions = txn.open_table(SESSIONS).during("opening table sessions")?;
            read_session(&sessions, raw)
        })
    }

    /// The records that pass `filter`, newest `last_used_at` first (ties by id), limited.
    ///
    /// A filter on `from` or `to` reads only that team's index range; otherwise every record is
    /// read.
    pub fn list(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>, StoreError> {
        self.reading(|| {
            let txn = self.inner.shared.begin_read()?;
            let sessions = txn.open_table(SESSIONS).during("opening table sessions")?;
            let mut records = Vec::new();
            let mut keep = |record: SessionRecord| {
                if filter.matches(&record) {
                    records.push(record);
                }
            };
            let index = match (&filter.from, &filter.to) {
                (Some(from), _) => Some((PAIRS, from)),
                (None, Some(to)) => Some((PAIRS_BY_TO, to)),
                (None, None) => None,
            };
            if let Some((table, team)) = index {
                let index = txn.open_table(table).during("opening a pair index")?;
                for raw in team_range(&index, team)? {
                    if let Some(record) = read_session(&sessions, raw)? {
                        keep(record);
                    }
                }
            } else {
                for entry in sessions.iter().during("scanning sessions")? {
                    let (k, v) = entry.during("scanning sessions")?;
                    keep(decode_session(k.value(), v.value())?);
                }
            }
            filter.order_and_limit(&mut records);
            Ok(records)
        })
    }

    /// Aggregate statistics, from counters maintained by every write (no scan).
    pub fn stats(&self) -> SessionStats {
        match self.inner.shared.committed.lock() {
            Ok(counters) => counters.stats(),
            Err(poisoned) => poisoned.into_inner().stats(),
        }
    }

    /// How much work the writer has done.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.shared.work.snapshot()
    }

    /// Records that carry an agent process mark, i.e. whose process may have outlived a crashed
    /// node. Reads only the live index.
    pub fn agent_process_marks(&self) -> Result<Vec<(SessionId, AgentProcessMark)>, StoreError> {
        self.reading(|| {
            let txn = self.inner.shared.begin_read()?;
            let live = txn.open_table(LIVE).during("opening table live")?;
            let sessions = txn.open_table(SESSIONS).during("opening table sessions")?;
            let mut marks = Vec::new();
            for entry in live.iter().during("scanning live sessions")? {
                let raw = entry.during("scanning live sessions")?.0.value();
                if let Some(record) = read_session(&sessions, raw)?
                    && let Some(mark) = record.agent_process
                {
                    marks.push((record.session_id, mark));
                }
            }
            Ok(marks)
        })
    }

    /// The session's newest turns, newest first, at most `limit`. Reads only the session's
    /// range of the ledger.
    pub fn turns(
        &self,
        session_id: SessionId,
        limit: usize,
    ) -> Result<Vec<TurnRecord>, StoreError> {
        self.reading(|| {
            let turns = self.read_table(TURNS, "opening table turns")?;
            let raw = key(&session_id);
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            for entry in turns
                .range((raw, 0)..=(raw, u64::MAX))
                .during("reading turns")?
                .rev()
            {
                let (k, v) = entry.during("reading turns")?;
                out.push(decode_turn(k.value(), v.value())?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// The turn with this id, if the ledger still holds it.
    pub fn turn(&self, turn_id: TurnId) -> Result<Option<TurnRecord>, StoreError> {
        self.turn_by_index(TURN_IDS, turn_id_key(&turn_id), |turn| {
            turn.turn_id == turn_id
        })
    }

    /// The turn a tell with this request id made, if the ledger still holds it.
    pub fn turn_by_request(&self, request_id: RequestId) -> Result<Option<TurnRecord>, StoreError> {
        self.turn_by_index(REQUEST_IDS, request_id.as_uuid().as_u128(), |turn| {
            turn.request_id == Some(request_id)
        })
    }

    /// The turn an index (turn ids, request ids) points at for `key`, if `is_it` holds for it:
    /// an index entry is trusted only if the row it points at is the turn looked for.
    fn turn_by_index(
        &self,
        index: redb::TableDefinition<'static, u128, TurnKey>,
        key: u128,
        is_it: impl Fn(&TurnRecord) -> bool,
    ) -> Result<Option<TurnRecord>, StoreError> {
        self.reading(|| {
            let txn = self.inner.shared.begin_read()?;
            let table = txn.open_table(index).during("opening a turn index")?;
            let Some(at) = table
                .get(key)
                .during("reading a turn index")?
                .map(|g| g.value())
            else {
                return Ok(None);
            };
            let turns = txn.open_table(TURNS).during("opening table turns")?;
            Ok(read_turn(&turns, at)?.filter(|turn| is_it(turn)))
        })
    }

    /// What `scope` spent on budget `day` ([`crate::spend::WHOLE_LIFE`] for a session).
    pub fn spend(&self, scope: &SpendScope, day: u32) -> Result<Spend, StoreError> {
        self.reading(|| {
            let table = self.read_table(SPEND, "opening table spend")?;
            let key = scope.to_string();
            let Some(guard) = table.get((day, key.as_str())).during("reading spend")? else {
                return Ok(Spend::default());
            };
            codec::decode(guard.value()).map_err(|e| StoreError::Corrupt {
                what: format!("the spend of {key} on day {day}"),
                reason: e.to_string(),
            })
        })
    }

    /// The caps set at run time (`iris budget set`), by key, as stored. A row that cannot be
    /// read is skipped and logged: the configuration's cap applies there.
    pub fn budget_caps(&self) -> Result<Vec<(String, Cap)>, StoreError> {
        self.reading(|| {
            let table = self.read_table(BUDGET_CAPS, "opening table budget_caps")?;
            let mut out = Vec::new();
            for entry in table.iter().during("reading budget caps")? {
                let (k, v) = entry.during("reading budget caps")?;
                match codec::decode::<StoredCap>(v.value()) {
                    Ok(cap) => out.push((k.value().to_owned(), Cap::from(cap))),
                    Err(error) => {
                        tracing::warn!(key = k.value(), %error, "an unreadable budget cap is skipped; the configuration's applies");
                    }
                }
            }
            Ok(out)
        })
    }

    /// Every scope's spend on budget `day` (one key range).
    pub fn spend_on(&self, day: u32) -> Result<Vec<(SpendScope, Spend)>, StoreError> {
        self.reading(|| {
            let table = self.read_table(SPEND, "opening table spend")?;
            let mut out = Vec::new();
            for entry in table
                .range((day, "")..=(day, "\u{10FFFF}"))
                .during("reading spend")?
            {
                let (k, v) = entry.during("reading spend")?;
                let (_, key) = k.value();
                let (Ok(scope), Ok(spend)) = (key.parse(), codec::decode::<Spend>(v.value()))
                else {
                    tracing::warn!(scope = key, day, "an unreadable spend counter is skipped");
                    continue;
                };
                out.push((scope, spend));
            }
            Ok(out)
        })
    }

    /// The highest turn number the ledger holds for the session, or 0 if it holds none.
    pub fn last_turn_seq(&self, session_id: SessionId) -> Result<u64, StoreError> {
        self.reading(|| {
            let turns = self.read_table(TURNS, "opening table turns")?;
            let raw = key(&session_id);
            let last = turns
                .range((raw, 0)..=(raw, u64::MAX))
                .during("reading turns")?
                .next_back()
                .transpose()
                .during("reading turns")?;
            Ok(last.map_or(0, |(k, _)| k.value().1))
        })
    }

    /// Every conversation id the session has used: its own id first, then each id its agent
    /// reported (after `/clear`, the CLI continues under a new one), in no particular order.
    pub fn conversation_ids(&self, session_id: SessionId) -> Result<Vec<String>, StoreError> {
        self.reading(|| {
            let table = self.read_table(CONVERSATIONS, "opening table conversations")?;
            let raw = key(&session_id);
            let mut ids = vec![session_id.to_string()];
            for entry in table
                .range((raw, "")..=(raw, "\u{10FFFF}"))
                .during("reading conversation ids")?
            {
                let (k, _) = entry.during("reading conversation ids")?;
                let id = k.value().1.to_owned();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(ids)
        })
    }

    /// How many turns are `queued` or `running`, across every session (no scan).
    pub fn open_turn_count(&self) -> Result<u64, StoreError> {
        self.reading(|| {
            let open = self.read_table(OPEN_TURNS, "opening table open_turns")?;
            open.len().during("counting open turns")
        })
    }

    // ----- writes -----

    /// Submits one mutation and waits until it is durable (or rejected).
    pub async fn submit(&self, mutation: Mutation) -> Result<Applied, StoreError> {
        self.send(mutation).await?.outcome().await
    }

    /// Queues one mutation behind every one submitted or queued before it (waiting only for
    /// room in the queue), and returns its outcome to await later: a caller can go on with
    /// further writes, in order, while this one commits. It is awaited as a [`Store::submit`]
    /// is, so it never lingers.
    pub async fn send(&self, mutation: Mutation) -> Result<PendingWrite, StoreError> {
        let jobs = self.inner.jobs()?;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::Submit { mutation, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingWrite { answer })
    }

    /// Queues one mutation behind every mutation submitted or queued before it, without waiting
    /// for its commit: for writes whose outcome nobody awaits (transient process-state changes,
    /// a turn's `queued` and `running` rows). Returns once the writer has accepted it (waiting
    /// only for room in the queue). It is committed in order, but its outcome is not reported:
    /// a rejection is logged by the writer. It may wait up to [`StoreOptions::linger`] for an
    /// awaited write to share its commit. By the time a later [`Store::submit`] or
    /// [`Store::flush`] resolves, this one has been committed (or rejected, or failed with its
    /// batch).
    pub async fn enqueue(&self, mutation: Mutation) -> Result<(), StoreError> {
        let jobs = self.inner.jobs()?;
        jobs.send(Job::Enqueue(mutation))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Waits until every mutation submitted or queued before it has been committed (or
    /// rejected), without lingering. Costs no transaction when nothing is pending.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let jobs = self.inner.jobs()?;
        let (reply, done) = oneshot::channel();
        jobs.send(Job::Flush(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)
    }

    /// Inserts a new record; the returned copy carries the assigned row `id`.
    pub async fn create(&self, record: SessionRecord) -> Result<SessionRecord, StoreError> {
        self.submit(Mutation::Create(record))
            .await
            .and_then(Applied::into_record)
    }

    /// Inserts several records in one transaction: all of them, or none.
    pub async fn create_many(
        &self,
        records: Vec<SessionRecord>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.submit(Mutation::CreateMany(records))
            .await
            .and_then(Applied::into_records)
    }

    /// Applies one change to a record.
    pub async fn update(
        &self,
        session_id: SessionId,
        change: Change,
    ) -> Result<SessionRecord, StoreError> {
        self.update_all(session_id, vec![change]).await
    }

    /// Applies several changes to one record atomically.
    pub async fn update_all(
        &self,
        session_id: SessionId,
        changes: Vec<Change>,
    ) -> Result<SessionRecord, StoreError> {
        self.submit(Mutation::Update {
            session_id,
            changes,
        })
        .await
        .and_then(Applied::into_record)
    }

    /// Sets the status of several records in one transaction: all of them, or none.
    pub async fn set_status_many(
        &self,
        session_ids: Vec<SessionId>,
        status: SessionStatus,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.submit(Mutation::SetStatusMany {
            session_ids,
            status,
        })
        .await
        .and_then(Applied::into_records)
    }

    /// Replaces a stored record wholesale (same pair, session id and row id).
    pub async fn put(&self, record: SessionRecord) -> Result<SessionRecord, StoreError> {
        self.submit(Mutation::Put(record))
            .await
            .and_then(Applied::into_record)
    }

    /// Deletes by session id, returning the deleted record (`None` if there was none).
    pub async fn delete(&self, session_id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.submit(Mutation::Delete(session_id))
            .await
            .and_then(Applied::into_deleted)
    }

    /// Deletes by pair, returning the deleted record (`None` if there was none).
    pub async fn delete_by_pair(&self, pair: Pair) -> Result<Option<SessionRecord>, StoreError> {
        self.submit(Mutation::DeleteByPair(pair))
            .await
            .and_then(Applied::into_deleted)
    }

    /// Sets every process state to `stopped` and clears every current turn; returns how many
    /// records changed. Visits only the live index, so its cost follows the records it changes.
    pub async fn reset_all_process_states(&self) -> Result<u64, StoreError> {
        self.submit(Mutation::ResetAllProcessStates)
            .await
            .and_then(Applied::into_count)
    }

    /// Inserts or replaces one turn row, then prunes the session's ledger to its newest `retain`
    /// rows. See [`Mutation::PutTurn`].
    pub async fn put_turn(&self, turn: TurnRecord, retain: u64) -> Result<(), StoreError> {
        self.submit(Mutation::PutTurn { turn, retain })
            .await
            .and_then(Applied::into_count)
            .map(drop)
    }

    /// Applies `changes` to the session record and writes `turn`, in one durable write: both, or
    /// neither; with `spend_day`, a finished turn's usage is counted in its scopes' spend too.
    /// Returns the record as stored. See [`Mutation::RecordTurn`].
    pub async fn record_turn(
        &self,
        session_id: SessionId,
        changes: Vec<Change>,
        turn: TurnRecord,
        retain: u64,
        spend_day: Option<u32>,
    ) -> Result<SessionRecord, StoreError> {
        self.submit(Mutation::RecordTurn {
            session_id,
            changes,
            turn,
            retain,
            spend_day,
        })
        .await
        .and_then(Applied::into_record)
    }

    /// Marks every `queued` or `running` turn `interrupted` as of `at`, counting them on their
    /// sessions' `interrupted_turns`; returns how many turns changed. Visits only the open-turn
    /// index. Meant for start-up, before any new turn is queued.
    pub async fn interrupt_open_turns(&self, at: Timestamp) -> Result<u64, StoreError> {
        self.submit(Mutation::InterruptOpenTurns { at })
            .await
            .and_then(Applied::into_count)
    }

    /// Sets (or, with `None`, removes) the cap `key` names at run time, durably; returns
    /// whether a cap set earlier was replaced or removed.
    pub async fn set_budget_cap(&self, key: String, cap: Option<Cap>) -> Result<bool, StoreError> {
        self.submit(Mutation::SetBudgetCap { key, cap })
            .await
            .and_then(Applied::into_count)
            .map(|n| n > 0)
    }

    /// Runs a read, reporting a storage fault as [`StoreError::Unavailable`].
    fn reading<T>(&self, read: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        read().map_err(|error| self.inner.shared.classify(error))
    }

    fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: redb::TableDefinition<K, V>,
        name: &'static str,
    ) -> Result<ReadOnlyTable<K, V>, StoreError> {
        let txn = self.inner.shared.begin_read()?;
        txn.open_table(table).during(name)
    }
}

impl Applied {
    fn into_record(self) -> Result<SessionRecord, StoreError> {
        match self {
            Applied::Record(record) => Ok(record),
            other => Err(unexpected(other)),
        }
    }

    fn into_records(self) -> Result<Vec<SessionRecord>, StoreError> {
        match self {
            Applied::Records(records) => Ok(records),
            other => Err(unexpected(other)),
        }
    }

    fn into_deleted(self) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Applied::Deleted(record) => Ok(record),
            other => Err(unexpected(other)),
        }
    }

    fn into_count(self) -> Result<u64, StoreError> {
        match self {
            Applied::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

/// The writer answered a mutation with the wrong kind of outcome: a bug in this crate.
fn unexpected(applied: Applied) -> StoreError {
    StoreError::Corrupt {
        what: "a writer acknowledgement".into(),
        reason: format!("unexpected outcome {applied:?}; please report this bug"),
    }
}

fn read_turn(
    turns: &ReadOnlyTable<TurnKey, &'static [u8]>,
    at: TurnKey,
) -> Result<Option<TurnRecord>, StoreError> {
    let guard = turns.get(at).during("reading a turn")?;
    guard.map(|g| decode_turn(at, g.value())).transpose()
}

fn read_session(
    sessions: &ReadOnlyTable<u128, &'static [u8]>,
    raw: u128,
) -> Result<Option<SessionRecord>, StoreError> {
    let guard = sessions.get(raw).during("reading a session")?;
    guard.map(|g| decode_session(raw, g.value())).transpose()
}

/// The session keys of every pair whose first element is `team`, from a pair index.
fn team_range(
    index: &ReadOnlyTable<(&'static str, &'static str), u128>,
    team: &TeamName,
) -> Result<Vec<u128>, StoreError> {
    let mut keys = Vec::new();
    for entry in index
        .range((team.as_str(), "")..)
        .during("reading a pair index")?
    {
        let (k, v) = entry.during("reading a pair index")?;
        if k.value().0 != team.as_str() {
            break;
        }
        keys.push(v.value());
    }
    Ok(keys)
}

/// Checks (or writes, for a new file) the schema version, creates missing tables, and loads the
/// counters, recounting them if they are missing.
fn prepare_schema(db: &Database, path: &Path) -> Result<Counters, OpenError> {
    let storage = |source: redb::Error| classify_open_error(path, source);
    let txn = db.begin_write().map_err(|e| storage(e.into()))?;
    let existing: Vec<String> = txn
        .list_tables()
        .map_err(|e| storage(e.into()))?
        .map(|t| t.name().to_owned())
        .collect();
    let counters;
    {
        let mut meta = txn.open_table(META).map_err(|e| storage(e.into()))?;
        let stored_version = meta
            .get(META_SCHEMA)
            .map_err(|e| storage(e.into()))?
            .map(|g| codec::decode::<u32>(g.value()));
        match stored_version {
            None if existing.iter().any(|t| !TABLE_NAMES.contains(&t.as_str())) => {
                return Err(OpenError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("it holds tables {existing:?} but no iris schema version"),
                });
            }
            None => {
                let version = codec::encode(&SCHEMA_VERSION).map_err(|e| corrupt(path, e))?;
                meta.insert(META_SCHEMA, version.as_slice())
                    .map_err(|e| storage(e.into()))?;
            }
            Some(Ok(SCHEMA_VERSION)) => {}
            Some(Ok(found)) => {
                return Err(OpenError::UnsupportedSchema {
                    path: path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(Err(e)) => return Err(corrupt(path, e)),
        }
        let stored_counters = meta
            .get(META_COUNTERS)
            .map_err(|e| storage(e.into()))?
            .map(|g| codec::decode::<Counters>(g.value()));
        counters = match stored_counters {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => return Err(corrupt(path, e)),
            None => None,
        };
    }
    for table in [PAIRS, PAIRS_BY_TO] {
        txn.open_table(table).map_err(|e| storage(e.into()))?;
    }
    txn.open_table(LIVE).map_err(|e| storage(e.into()))?;
    // The turn tables are new in this build; a file written before them gets them here, empty
    // (see `tables` on why the schema version stays 1).
    txn.open_table(TURN_IDS).map_err(|e| storage(e.into()))?;
    txn.open_table(REQUEST_IDS).map_err(|e| storage(e.into()))?;
    txn.open_table(SPEND).map_err(|e| storage(e.into()))?;
    txn.open_table(BUDGET_CAPS).map_err(|e| storage(e.into()))?;
    txn.open_table(TURNS).map_err(|e| storage(e.into()))?;
    txn.open_table(OPEN_TURNS).map_err(|e| storage(e.into()))?;
    txn.open_table(CONVERSATIONS)
        .map_err(|e| storage(e.into()))?;
    let counters = {
        let sessions = txn.open_table(SESSIONS).map_err(|e| storage(e.into()))?;
        match counters {
            Some(c) => c,
            None => recount(&sessions).map_err(|e| match e {
                StoreError::Storage { source, .. } => OpenError::Corrupt {
                    path: path.to_path_buf(),
                    reason: source.to_string(),
                },
                other => corrupt(path, other),
            })?,
        }
    };
    txn.commit().map_err(|e| storage(e.into()))?;
    Ok(counters)
}

/// Rebuilds counters by scanning every record (only for a file that has none).
fn recount(sessions: &redb::Table<u128, &'static [u8]>) -> Result<Counters, StoreError> {
    let mut counters = Counters::default();
    if sessions.len().during("counting sessions")? == 0 {
        return Ok(counters);
    }
    for entry in sessions.iter().during("scanning sessions")? {
        let (k, v) = entry.during("scanning sessions")?;
        let record = decode_session(k.value(), v.value())?;
        counters.next_id = counters.next_id.max(record.id + 1);
        counters.add(&record);
    }
    Ok(counters)
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> OpenError {
    OpenError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Maps redb's open failures onto errors that say what to do.
fn classify_open_error(path: &Path, error: redb::Error) -> OpenError {
    let path = path.to_path_buf();
    match error {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            OpenError::Locked { path }
        }
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            OpenError::NotADatabase {
                path,
                reason: io.to_string(),
            }
        }
        // A read past the end: the file ends before the data its header describes.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            OpenError::Corrupt {
                path,
                reason: "the file is truncated: it ends before the data its header describes, as after a copy cut short"
                    .to_owned(),
            }
        }
        redb::Error::Corrupted(reason) => OpenError::Corrupt { path, reason },
        redb::Error::UpgradeRequired(version) => OpenError::Corrupt {
            path,
            reason: format!("redb file format {version} needs an upgrade"),
        },
        source => OpenError::Storage { path, source },
    }
}
