//! What a writer can be asked to do, and how each request is applied inside a write transaction.
//!
//! Every mutation checks everything it needs *before* it writes anything, so a rejected
//! mutation leaves no trace in the shared batch transaction.

use std::collections::BTreeMap;

use iris_core::{
    AgentProcessMark, Pair, ProcessState, RequestId, SessionId, SessionRecord, SessionStatus,
    Timestamp, TurnFailure, TurnId, TurnRecord, TurnStatus, UsageTotals,
};
use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::counters::Counters;
use crate::error::{StorageContext, StoreError};
use crate::spend::{self, Spend, SpendScope};
use crate::tables::{
    BUDGET_CAPS, CONVERSATIONS, LIVE, OPEN_TURNS, PAIRS, PAIRS_BY_TO, REQUEST_IDS, SESSIONS, SPEND,
    TURN_IDS, TURNS,
};

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
    /// Delete by session id, with every turn of the session; deleting an unknown id deletes
    /// nothing.
    Delete(SessionId),
    /// Delete by pair, with every turn of the session; deleting an unknown pair deletes nothing.
    DeleteByPair(Pair),
    /// Set every process state to `stopped` and clear every current turn.
    ResetAllProcessStates,
    /// Insert or replace one turn row (keyed by its session and `seq`), then prune the session's
    /// ledger to its newest `retain` rows.
    ///
    /// Fails with `SessionNotFound` if the session does not exist, `InvalidTurn` if `seq` is 0
    /// or the row holds another turn id, and `TurnIdExists` if the turn id names another row.
    /// Pruning keeps the rows with `seq` greater than the session's highest `seq` minus `retain`
    /// (a `retain` of 0 counts as 1), so a late write of a turn older than that is not kept.
    /// Answers [`Applied::Count`] with the number of rows pruned.
    PutTurn {
        /// The row to write.
        turn: TurnRecord,
        /// How many rows of the session to keep.
        retain: u64,
    },
    /// Apply `changes` to a session record (as [`Mutation::Update`]) and write a turn row (as
    /// [`Mutation::PutTurn`]) atomically: both, or neither. `turn.session_id` must be
    /// `session_id`. With `spend_day`, a final row whose stored version was not final adds its
    /// usage to the spend of its session, sender, receiver and the node (see [`crate::spend`]),
    /// in the same commit. Answers [`Applied::Record`] with the record as stored.
    RecordTurn {
        /// The record to change, and the turn's session.
        session_id: SessionId,
        /// The changes to the record.
        changes: Vec<Change>,
        /// The row to write.
        turn: TurnRecord,
        /// How many rows of the session to keep.
        retain: u64,
        /// The budget day its spend counts in (`None`: not counted).
        spend_day: Option<u32>,
    },
    /// Mark every `queued` or `running` turn `interrupted` (finished `at`, with
    /// [`TurnFailure::node_stopped`]), and add each session's number of such turns to its
    /// `interrupted_turns`. Visits only the open-turn index. Answers [`Applied::Count`] with the
    /// number of turns interrupted.
    InterruptOpenTurns {
        /// The time recorded as the turns' `finished_at`.
        at: Timestamp,
    },
    /// Set the cap `key` names (`teams.beta.as_receiver`, see
    /// [`CapKey`](iris_core::config::budget::CapKey)) at run time, over the configuration's;
    /// `None` removes it, so the configuration's applies again. Answers [`Applied::Count`]: 1
    /// if a cap set at run time was replaced or removed, else 0.
    SetBudgetCap {
        /// The cap's key.
        key: String,
        /// The cap, or `None`.
        cap: Option<iris_core::config::budget::Cap>,
    },
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
    /// How many records changed (reset), turns were interrupted, or old turn rows were pruned
    /// (put turn).
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
    turns: Table<'txn, TurnKey, &'static [u8]>,
    turn_ids: Table<'txn, u128, TurnKey>,
    request_ids: Table<'txn, u128, TurnKey>,
    spend: Table<'txn, (u32, &'static str), &'static [u8]>,
    budget_caps: Table<'txn, &'static str, &'static [u8]>,
    open_turns: Table<'txn, TurnKey, ()>,
    conversations: Table<'txn, (u128, &'static str), ()>,
}

/// The key of a turn row: (session id, seq).
pub(crate) type TurnKey = (u128, u64);

impl<'txn> WriteTables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(WriteTables {
            sessions: txn.open_table(SESSIONS).during("opening table sessions")?,
            pairs: txn.open_table(PAIRS).during("opening table pairs")?,
            pairs_by_to: txn
                .open_table(PAIRS_BY_TO)
                .during("opening table pairs_by_to")?,
            live: txn.open_table(LIVE).during("opening table live")?,
            turns: txn.open_table(TURNS).during("opening table turns")?,
            turn_ids: txn.open_table(TURN_IDS).during("opening table turn_ids")?,
            request_ids: txn
                .open_table(REQUEST_IDS)
                .during("opening table request_ids")?,
            spend: txn.open_table(SPEND).during("opening table spend")?,
            budget_caps: txn
                .open_table(BUDGET_CAPS)
                .during("opening table budget_caps")?,
            open_turns: txn
                .open_table(OPEN_TURNS)
                .during("opening table open_turns")?,
            conversations: txn
                .open_table(CONVERSATIONS)
                .during("opening table conversations")?,
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
            Mutation::PutTurn { turn, retain } => {
                self.check_turn(turn)?;
                Applied::Count(self.write_turn(turn, *retain)?)
            }
            Mutation::RecordTurn {
                session_id,
                changes,
                turn,
                retain,
                spend_day,
            } => {
                if turn.session_id != *session_id {
                    return Err(StoreError::InvalidTurn {
                        session_id: *session_id,
                        seq: turn.seq,
                        reason: "the turn belongs to another session",
                    }
                    .into());
                }
                let old = self.check_turn(turn)?;
                let mut record = old.clone();
                for change in changes {
                    change.apply_to(&mut record);
                }
                self.store(counters, Some(&old), &record)?;
                if let Some(day) = spend_day {
                    self.count_spend(&record, turn, *day)?;
                }
                self.write_turn(turn, *retain)?;
                Applied::Record(record)
            }
            Mutation::InterruptOpenTurns { at } => {
                Applied::Count(self.interrupt_open_turns(counters, *at)?)
            }
            Mutation::SetBudgetCap { key, cap } => {
                let replaced =
                    match cap {
                        Some(cap) => {
                            let bytes = codec::encode(&crate::spend::StoredCap::from(*cap))
                                .map_err(|e| StoreError::Encode {
                                    what: format!("the budget cap {key}"),
                                    reason: e.to_string(),
                                })?;
                            self.budget_caps
                                .insert(key.as_str(), bytes.as_slice())
                                .during("writing a budget cap")?
                        }
                        None => self
                            .budget_caps
                            .remove(key.as_str())
                            .during("removing a budget cap")?,
                    };
                Applied::Count(u64::from(replaced.is_some()))
            }
        })
    }

    /// Checks that `turn` may be written, and returns its session's record. Writes nothing.
    fn check_turn(&self, turn: &TurnRecord) -> Result<SessionRecord, StoreError> {
        let record = self.require(&turn.session_id)?;
        let invalid = |reason| StoreError::InvalidTurn {
            session_id: turn.session_id,
            seq: turn.seq,
            reason,
        };
        if turn.seq == 0 {
            return Err(invalid("turn numbers start at 1"));
        }
        let at = turn_key(&turn.session_id, turn.seq);
        let holder = self
            .turn_ids
            .get(turn_id_key(&turn.turn_id))
            .during("reading a turn id")?
            .map(|g| g.value());
        if let Some(holder) = holder
            && holder != at
            && self.turn_id_at(holder)? == Some(turn.turn_id)
        {
            return Err(StoreError::TurnIdExists {
                turn_id: turn.turn_id,
                session_id: session_id_from_key(holder.0)?,
                seq: holder.1,
            });
        }
        if let Some(existing) = self.turn_id_at(at)?
            && existing != turn.turn_id
        {
            return Err(invalid("another turn id holds this number"));
        }
        Ok(record)
    }

    /// Writes a checked turn row and its index entries, then prunes its session's ledger.
    /// Returns how many rows were pruned.
    fn write_turn(&mut self, turn: &TurnRecord, retain: u64) -> Result<u64, StoreError> {
        let bytes = codec::encode_turn(turn).map_err(|e| StoreError::Encode {
            what: format!("turn {} of session {}", turn.seq, turn.session_id),
            reason: e.to_string(),
        })?;
        let at = turn_key(&turn.session_id, turn.seq);
        self.turns
            .insert(at, bytes.as_slice())
            .during("writing a turn")?;
        self.turn_ids
            .insert(turn_id_key(&turn.turn_id), at)
            .during("indexing a turn id")?;
        if let Some(request_id) = &turn.request_id {
            self.request_ids
                .insert(request_id.as_uuid().as_u128(), at)
                .during("indexing a request id")?;
        }
        if turn.status.is_final() {
            self.open_turns.remove(at).during("indexing open turns")?;
        } else {
            self.open_turns
                .insert(at, ())
                .during("indexing open turns")?;
        }
        self.prune_turns(at.0, retain)
    }

    /// Deletes the session's rows older than its newest `retain` (at least one is kept).
    fn prune_turns(&mut self, session: u128, retain: u64) -> Result<u64, StoreError> {
        let newest = self
            .turns
            .range((session, 0)..=(session, u64::MAX))
            .during("reading turns")?
            .next_back()
            .transpose()
            .during("reading turns")?
            .map_or(0, |(k, _)| k.value().1);
        let cutoff = newest.saturating_sub(retain.max(1));
        if cutoff == 0 {
            return Ok(0);
        }
        self.remove_turns(session, cutoff)
    }

    /// Deletes the session's rows with `seq <= through`, and their index entries.
    fn remove_turns(&mut self, session: u128, through: u64) -> Result<u64, StoreError> {
        let mut doomed = Vec::new();
        for entry in self
            .turns
            .range((session, 0)..=(session, through))
            .during("reading turns")?
        {
            let (k, v) = entry.during("reading turns")?;
            doomed.push((k.value(), lenient_ids(k.value(), v.value())));
        }
        for (at, (turn_id, request_id)) in &doomed {
            self.turns.remove(*at).during("deleting a turn")?;
            self.open_turns.remove(*at).during("deleting a turn")?;
            if let Some(turn_id) = turn_id {
                unindex(&mut self.turn_ids, turn_id_key(turn_id), *at)?;
            }
            if let Some(request_id) = request_id {
                unindex(&mut self.request_ids, request_id.as_uuid().as_u128(), *at)?;
            }
        }
        Ok(doomed.len() as u64)
    }

    fn interrupt_open_turns(
        &mut self,
        counters: &mut Counters,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let keys = self
            .open_turns
            .iter()
            .during("scanning open turns")?
            .map(|entry| entry.map(|(k, _)| k.value()))
            .collect::<Result<Vec<TurnKey>, _>>()
            .during("scanning open turns")?;
        let mut per_session: BTreeMap<u128, u64> = BTreeMap::new();
        for key in keys {
            self.open_turns.remove(key).during("indexing open turns")?;
            let turn = {
                let Some(guard) = self.turns.get(key).during("reading a turn")? else {
                    // An index entry without a row: dropping it is the repair.
                    continue;
                };
                match codec::decode_turn(guard.value()) {
                    Ok(turn) => turn,
                    Err(error) => {
                        // The ledger is a history, not the session's state: an unreadable row
                        // must not stop start-up. It stays for an operator to inspect.
                        tracing::warn!(
                            session = %uuid_from(key.0),
                            seq = key.1,
                            %error,
                            "an open turn is unreadable; leaving it as it is"
                        );
                        continue;
                    }
                }
            };
            if turn.status.is_final() {
                continue;
            }
            let mut turn = turn;
            turn.status = TurnStatus::Interrupted;
            turn.finished_at = Some(at);
            turn.error = Some(TurnFailure::node_stopped());
            let bytes = codec::encode_turn(&turn).map_err(|e| StoreError::Encode {
                what: format!("turn {} of session {}", turn.seq, turn.session_id),
                reason: e.to_string(),
            })?;
            self.turns
                .insert(key, bytes.as_slice())
                .during("writing a turn")?;
            *per_session.entry(key.0).or_default() += 1;
        }
        let mut changed = 0;
        for (session, n) in per_session {
            changed += n;
            // A turn whose session is gone (deleted by an older build) has no count to bump.
            if let Some(old) = self.get_raw(session)? {
                let mut record = old.clone();
                Change::AddInterruptedTurns(n).apply_to(&mut record);
                self.store(counters, Some(&old), &record)?;
            }
        }
        Ok(changed)
    }

    /// The turn id of the row at `at`, if there is a readable one.
    /// Adds a turn's usage to its scopes' spend on `day`, if it is final and its stored row was
    /// not: a finished turn counts once, however often its row is written.
    fn count_spend(
        &mut self,
        record: &SessionRecord,
        turn: &TurnRecord,
        day: u32,
    ) -> Result<(), StoreError> {
        let at = turn_key(&turn.session_id, turn.seq);
        let counted_before = self
            .turns
            .get(at)
            .during("reading a turn")?
            .and_then(|g| codec::decode_turn(g.value()).ok())
            .is_some_and(|stored| stored.is_final());
        let spend = Spend::of(&turn.usage);
        if !turn.is_final() || counted_before || spend.is_zero() {
            return Ok(());
        }
        let scopes = [
            (spend::WHOLE_LIFE, SpendScope::Session(turn.session_id)),
            (day, SpendScope::Sender(turn.from.clone())),
            (day, SpendScope::Receiver(record.to_team.clone())),
            (day, SpendScope::Node),
        ];
        for (day, scope) in scopes {
            let key = scope.to_string();
            let before = match self.spend.get((day, key.as_str())).during("reading spend")? {
                Some(g) => codec::decode::<Spend>(g.value()).unwrap_or_else(|error| {
                    tracing::warn!(scope = %key, day, %error, "a spend counter is unreadable; counting from zero");
                    Spend::default()
                }),
                None => Spend::default(),
            };
            let bytes = codec::encode(&before.plus(spend)).map_err(|e| StoreError::Encode {
                what: format!("the spend of {key}"),
                reason: e.to_string(),
            })?;
            self.spend
                .insert((day, key.as_str()), bytes.as_slice())
                .during("writing spend")?;
        }
        Ok(())
    }

    fn turn_id_at(&self, at: TurnKey) -> Result<Option<TurnId>, StoreError> {
        let guard = self.turns.get(at).during("reading a turn")?;
        Ok(guard.and_then(|g| lenient_turn_id(at, g.value())))
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
        self.remove_turns(key, u64::MAX)?;
        let spent = SpendScope::Session(*session_id).to_string();
        self.spend
            .remove((spend::WHOLE_LIFE, spent.as_str()))
            .during("deleting a session's spend")?;
        self.conversations
            .retain_in((key, "")..=(key, "\u{10FFFF}"), |_, _| false)
            .during("deleting a session's conversation ids")?;
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
        if let Some(id) = &record.agent_session_id
            && old.is_none_or(|old| old.agent_session_id.as_ref() != Some(id))
        {
            self.conversations
                .insert((key, id.as_str()), ())
                .during("recording a conversation id")?;
        }
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

/// The table key of a turn row.
pub(crate) fn turn_key(session_id: &SessionId, seq: u64) -> TurnKey {
    (key(session_id), seq)
}

/// The table key of a turn id.
pub(crate) fn turn_id_key(turn_id: &TurnId) -> u128 {
    turn_id.as_uuid().as_u128()
}

/// The turn id of a stored row, or `None` (with a warning) if the row is unreadable. Used where a
/// row is about to be replaced or deleted, so that damage in the ledger's history cannot block
/// new turns or a session's deletion.
/// Removes `key` from a turn index if it points at the row `at` (a newer row may hold it).
fn unindex(index: &mut Table<'_, u128, TurnKey>, key: u128, at: TurnKey) -> Result<(), StoreError> {
    let points_here = index
        .get(key)
        .during("reading a turn index")?
        .is_some_and(|g| g.value() == at);
    if points_here {
        index.remove(key).during("deleting a turn")?;
    }
    Ok(())
}

fn lenient_turn_id(at: TurnKey, bytes: &[u8]) -> Option<TurnId> {
    lenient_ids(at, bytes).0
}

/// The turn id and request id of a stored row, when it can be read (see [`lenient_turn_id`]).
fn lenient_ids(at: TurnKey, bytes: &[u8]) -> (Option<TurnId>, Option<RequestId>) {
    match codec::decode_turn(bytes) {
        Ok(turn) => (Some(turn.turn_id), turn.request_id),
        Err(error) => {
            tracing::warn!(
                session = %uuid_from(at.0),
                seq = at.1,
                %error,
                "a turn row is unreadable; replacing or deleting it anyway"
            );
            (None, None)
        }
    }
}

pub(crate) fn decode_turn(at: TurnKey, bytes: &[u8]) -> Result<TurnRecord, StoreError> {
    codec::decode_turn(bytes).map_err(|e| StoreError::Corrupt {
        what: format!("turn {} of session {}", at.1, uuid_from(at.0)),
        reason: e.to_string(),
    })
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
