//! What a writer can be asked to do, and how each request is applied inside a write transaction.
//!
//! Every mutation checks everything it needs *before* it writes anything, so a rejected
//! mutation leaves no trace in the shared batch transaction.

use iris_core::{
    AgentProcessMark, Pair, ProcessState, SessionId, SessionRecord, SessionStatus, Timestamp,
    TurnId, UsageTotals,
};
use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::counters::Counters;
use crate::error::{StorageContext, StoreError};
use crate::tables::{LIVE, PAIRS, PAIRS_BY_TO, SESSIONS};

/// One durable write, submitted to the store's writer. Plain data, so a later layer can forward
/// it between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Mutation {
    /// Insert a new record. The store assigns its `id`. Fails with `PairExists` or
    /// `SessionIdExists`.
    Create(SessionRecord),
    /// Insert several records atomically: all of them, or none.
    CreateMany(Vec<SessionRecord>),
    /// Apply changes, in order and atomically, to one record.
    Update {
        /// The record to change.
        session_id: SessionId,
        /// The changes.
        changes: Vec<Change>,
    },
    /// Set the status of several records atomically: all of them, or none.
    SetStatusMany {
        /// The records to change.
        session_ids: Vec<SessionId>,
        /// The new status.
        status: SessionStatus,
    },
    /// Replace a record wholesale. The pair, session id and row id must match the stored record.
    Put(SessionRecord),
    /// Delete by session id; deleting an unknown id deletes nothing.
    Delete(SessionId),
    /// Delete by pair; deleting an unknown pair deletes nothing.
    DeleteByPair(Pair),
    /// Set every process state to `stopped` and clear every current turn.
    ResetAllProcessStates,
}

/// One change to a record, applied by [`Mutation::Update`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Change {
    /// Set `last_used_at`.
    TouchLastUsed(Timestamp),
    /// Add to `message_count` (saturating).
    IncrementMessageCount(u64),
    /// Set `message_count` to zero (compaction).
    ResetMessageCount,
    /// Set `status`.
    SetStatus(SessionStatus),
    /// Set `process_state`.
    SetProcessState(ProcessState),
    /// Set or clear `current_turn`.
    SetCurrentTurn(Option<TurnId>),
    /// Set `last_response_at`.
    SetLastResponse(Timestamp),
    /// Overwrite both debug fields.
    SetDebugInfo {
        /// The new `launch_command`.
        launch_command: Option<String>,
        /// The new `team_config_snapshot`.
        team_config_snapshot: Option<String>,
    },
    /// Set or clear the id the agent reported.
    SetAgentSessionId(Option<String>),
    /// Set or clear the live process mark.
    SetAgentProcess(Option<AgentProcessMark>),
    /// Add a completed turn's usage to the totals.
    AddUsage(UsageTotals),
    /// Count failed turns.
    AddFailedTurns(u64),
    /// Count interrupted turns.
    AddInterruptedTurns(u64),
}

impl Change {
    /// Applies this change to `record` in memory.
    pub fn apply_to(&self, record: &mut SessionRecord) {
        match self {
            Change::TouchLastUsed(at) => record.last_used_at = *at,
            Change::IncrementMessageCount(by) => {
                record.message_count = record.message_count.saturating_add(*by);
            }
            Change::ResetMessageCount => record.message_count = 0,
            Change::SetStatus(status) => record.status = *status,
            Change::SetProcessState(state) => record.process_state = *state,
            Change::SetCurrentTurn(turn) => record.current_turn = *turn,
            Change::SetLastResponse(at) => record.last_response_at = Some(*at),
            Change::SetDebugInfo {
                launch_command,
                team_config_snapshot,
            } => {
                record.launch_command.clone_from(launch_command);
                record.team_config_snapshot.clone_from(team_config_snapshot);
            }
            Change::SetAgentSessionId(id) => record.agent_session_id.clone_from(id),
            Change::SetAgentProcess(mark) => record.agent_process = *mark,
            Change::AddUsage(usage) => record.usage.accumulate(usage),
            Change::AddFailedTurns(n) => {
                record.failed_turns = record.failed_turns.saturating_add(*n)
            }
            Change::AddInterruptedTurns(n) => {
                record.interrupted_turns = record.interrupted_turns.saturating_add(*n);
            }
        }
    }
}

/// What an applied mutation produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The record as stored (create, update, put).
    Record(SessionRecord),
    /// The records as stored (batch create, batch status).
    Records(Vec<SessionRecord>),
    /// The deleted record, if there was one.
    Deleted(Option<SessionRecord>),
    /// How many records changed (reset).
    Count(u64),
}

/// The outcome of one mutation inside a batch: `Err(Rejected)` fails only that caller, while
/// `Err(Fatal)` aborts the whole transaction.
pub(crate) enum ApplyError {
    Rejected(StoreError),
    Fatal(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Storage { .. } | StoreError::Encode { .. } | StoreError::Corrupt { .. } => {
                ApplyError::Fatal(e)
            }
            other => ApplyError::Rejected(other),
        }
    }
}

/// The tables of one write transaction, opened once per batch.
pub(crate) struct WriteTables<'txn> {
    sessions: Table<'txn, u128, &'static [u8]>,
    pairs: Table<'txn, (&'static str, &'static str), u128>,
    pairs_by_to: Table<'txn, (&'static str, &'static str), u128>,
    live: Table<'txn, u128, ()>,
}

impl<'txn> WriteTables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(WriteTables {
            sessions: txn.open_table(SESSIONS).during("opening table sessions")?,
            pairs: txn.open_table(PAIRS).during("opening table pairs")?,
            pairs_by_to: txn
                .open_table(PAIRS_BY_TO)
                .during("opening table pairs_by_to")?,
            live: txn.open_table(LIVE).during("opening table live")?,
        })
    }

    /// Applies one mutation, keeping `counters` in step.
    pub(crate) fn apply(
        &mut self,
        counters: &mut Counters,
        mutation: &Mutation,
    ) -> Result<Applied, ApplyError> {
        Ok(match mutation {
            Mutation::Create(record) => Applied::Record(
                self.create_many(counters, std::slice::from_ref(record))?
                    .remove(0),
            ),
            Mutation::CreateMany(records) => Applied::Records(self.create_many(counters, records)?),
            Mutation::Update {
                session_id,
                changes,
            } => {
                let mut record = self.require(session_id)?;
                let old = record.clone();
                for change in changes {
                    change.apply_to(&mut record);
                }
                self.store(counters, Some(&old), &record)?;
                Applied::Record(record)
            }
            Mutation::SetStatusMany {
                session_ids,
                status,
            } => {
                // All must exist before any is written. Each is then re-read, so that an id
                // listed twice is counted once.
                for id in session_ids {
                    self.require(id)?;
                }
                let mut out = Vec::with_capacity(session_ids.len());
                for id in session_ids {
                    let old = self.require(id)?;
                    let mut record = old.clone();
                    record.status = *status;
                    self.store(counters, Some(&old), &record)?;
                    out.push(record);
                }
                Applied::Records(out)
            }
            Mutation::Put(record) => {
                let old = self.require(&record.session_id)?;
                check_same_identity(&old, record)?;
                self.store(counters, Some(&old), record)?;
                Applied::Record(record.clone())
            }
            Mutation::Delete(session_id) => Applied::Deleted(self.delete(counters, session_id)?),
            Mutation::DeleteByPair(pair) => {
                let id = self.pair_id(pair)?;
                Applied::Deleted(match id {
                    Some(id) => self.delete(counters, &id)?,
                    None => None,
                })
            }
            Mutation::ResetAllProcessStates => Applied::Count(self.reset_process_states(counters)?),
        })
    }

    fn create_many(
        &mut self,
        counters: &mut Counters,
        records: &[SessionRecord],
    ) -> Result<Vec<SessionRecord>, StoreError> {
        // Check every record, against the table and against each other, before writing any.
        let mut seen_ids = std::collections::HashSet::new();
        let mut seen_pairs = std::collections::HashMap::new();
        for record in records {
            let pair = record.pair();
            if let Some(existing) = self.pair_id(&pair)?.or(seen_pairs.get(&pair).copied()) {
                return Err(StoreError::PairExists { pair, existing });
            }
            if self.get(&record.session_id)?.is_some() || !seen_ids.insert(record.session_id) {
                return Err(StoreError::SessionIdExists {
                    session_id: record.session_id,
                });
            }
            seen_pairs.insert(pair, record.session_id);
        }
        let mut stored = Vec::with_capacity(records.len());
        for record in records {
            let mut record = record.clone();
            record.id = counters.take_id();
            let key = key(&record.session_id);
            let (from, to) = (record.from_team.as_str(), record.to_team.as_str());
            self.pairs
                .insert((from, to), key)
                .during("inserting a pair")?;
            self.pairs_by_to
                .insert((to, from), key)
                .during("inserting a pair")?;
            self.store(counters, None, &record)?;
            stored.push(record);
        }
        Ok(stored)
    }

    fn delete(
        &mut self,
        counters: &mut Counters,
        session_id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let Some(record) = self.get(session_id)? else {
            return Ok(None);
        };
        let key = key(session_id);
        let (from, to) = (record.from_team.as_str(), record.to_team.as_str());
        self.sessions.remove(key).during("deleting a session")?;
        self.pairs.remove((from, to)).during("deleting a pair")?;
        self.pairs_by_to
            .remove((to, from))
            .during("deleting a pair")?;
        self.live.remove(key).during("deleting a session")?;
        counters.remove(&record);
        Ok(Some(record))
    }

    fn reset_process_states(&mut self, counters: &mut Counters) -> Result<u64, StoreError> {
        let keys = self
            .live
            .iter()
            .during("scanning live sessions")?
            .map(|entry| entry.map(|(k, _)| k.value()))
            .collect::<Result<Vec<u128>, _>>()
            .during("scanning live sessions")?;
        let mut changed = 0;
        for raw in keys {
            let Some(old) = self.get_raw(raw)? else {
                // An index entry without a record: drop it rather than fail start-up.
                self.live.remove(raw).during("repairing the live index")?;
                continue;
            };
            if old.process_state == ProcessState::Stopped && old.current_turn.is_none() {
                continue;
            }
            let mut record = old.clone();
            record.process_state = ProcessState::Stopped;
            record.current_turn = None;
            self.store(counters, Some(&old), &record)?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Writes `record` (replacing `old`), its live-index entry and its counts.
    fn store(
        &mut self,
        counters: &mut Counters,
        old: Option<&SessionRecord>,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let bytes = codec::encode_record(record).map_err(|e| StoreError::Encode {
            what: format!("session {}", record.session_id),
            reason: e.to_string(),
        })?;
        let key = key(&record.session_id);
        self.sessions
            .insert(key, bytes.as_slice())
            .during("writing a session")?;
        if is_live(record) {
            self.live
                .insert(key, ())
                .during("indexing a live session")?;
        } else if old.is_some_and(is_live) {
            self.live.remove(key).during("indexing a live session")?;
        }
        match old {
            Some(old) => counters.replace(old, record),
            None => counters.add(record),
        }
        Ok(())
    }

    fn require(&self, session_id: &SessionId) -> Result<SessionRecord, StoreError> {
        self.get(session_id)?.ok_or(StoreError::SessionNotFound {
            session_id: *session_id,
        })
    }

    fn get(&self, session_id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.get_raw(key(session_id))
    }

    fn get_raw(&self, raw: u128) -> Result<Option<SessionRecord>, StoreError> {
        let guard = self.sessions.get(raw).during("reading a session")?;
        guard.map(|g| decode_session(raw, g.value())).transpose()
    }

    fn pair_id(&self, pair: &Pair) -> Result<Option<SessionId>, StoreError> {
        let guard = self
            .pairs
            .get((pair.from.as_str(), pair.to.as_str()))
            .during("reading a pair")?;
        guard.map(|g| session_id_from_key(g.value())).transpose()
    }
}

/// Whether a record belongs in the `live` index: start-up must visit it.
pub(crate) fn is_live(record: &SessionRecord) -> bool {
    record.process_state != ProcessState::Stopped
        || record.current_turn.is_some()
        || record.agent_process.is_some()
}

fn check_same_identity(old: &SessionRecord, new: &SessionRecord) -> Result<(), StoreError> {
    let reason = if old.id != new.id {
        "the row id differs"
    } else if old.from_team != new.from_team || old.to_team != new.to_team {
        "the pair differs"
    } else {
        return Ok(());
    };
    Err(StoreError::Mismatch {
        session_id: new.session_id,
        reason,
    })
}

/// The table key of a session id.
pub(crate) fn key(session_id: &SessionId) -> u128 {
    session_id.as_uuid().as_u128()
}

pub(crate) fn session_id_from_key(raw: u128) -> Result<SessionId, StoreError> {
    SessionId::from_uuid(uuid_from(raw)).map_err(|version| StoreError::Corrupt {
        what: format!("session key {}", uuid_from(raw)),
        reason: format!("UUID version {version} instead of 4"),
    })
}

pub(crate) fn decode_session(raw: u128, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    codec::decode_record(bytes).map_err(|e| StoreError::Corrupt {
        what: format!("session {}", uuid_from(raw)),
        reason: e.to_string(),
    })
}

fn uuid_from(raw: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(raw)
}
