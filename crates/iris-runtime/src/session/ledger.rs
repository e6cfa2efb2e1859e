//! The ledger family: the session's record (durable changes, transient notes, the published
//! snapshot, reloading it after a failed write) and each turn's bookkeeping, booked durably
//! before its callers hear of it. Also the deletion and error marking the registry does for a
//! pair without a live actor.

use std::sync::Arc;
use std::time::Duration;

use iris_agent::conversation::TurnReport;
use iris_agent::process::StopGrace;
use iris_core::{
    Coded, Pair, ProcessState, SessionId, SessionRecord, SessionStatus, Timestamp, TurnFailure,
    TurnRecord, TurnStatus, truncate_text,
};
use iris_store::{Change, Mutation, PendingWrite};
use ractor::ActorRef;
use tokio::sync::oneshot;

use super::status::Deletion;
use super::transcript::{TranscriptRemoval, remove_transcript};
use super::turn::Turn;
use super::{SessionMsg, SessionState, shutdown_timeout};
use crate::error::RuntimeError;
use crate::events::EventKind;
use crate::shared::Shared;
use crate::tell::TellOutcome;

impl SessionState {
    /// Writes `changes` durably, then republishes the snapshot.
    pub(super) async fn apply(
        &mut self,
        changes: Vec<Change>,
    ) -> Result<SessionRecord, RuntimeError> {
        let record = self.shared.store.update_all(self.id, changes).await?;
        self.publish(record.clone());
        Ok(record)
    }

    pub(super) async fn apply_or_log(&mut self, changes: Vec<Change>) {
        if let Err(error) = self.apply(changes).await {
            tracing::warn!(pair = %self.pair, session = %self.id, %error, "could not update the session record");
        }
    }

    /// Records transient state (process state, current turn): published at once, written in
    /// order behind earlier writes, not awaited.
    pub(super) async fn note(&mut self, changes: Vec<Change>) {
        self.publish_changes(&changes);
        self.enqueue(Mutation::Update {
            session_id: self.id,
            changes,
        })
        .await;
    }

    pub(super) fn publish_changes(&mut self, changes: &[Change]) {
        let mut record = (**self.snapshot.load()).clone();
        for change in changes {
            change.apply_to(&mut record);
        }
        self.publish(record);
    }

    pub(super) fn publish(&mut self, record: SessionRecord) {
        self.announce(&self.snapshot.load(), &record);
        self.snapshot.store(Arc::new(record));
    }

    /// Publishes to the event stream what changed from `before` to `after`: the agent process
    /// that came or went, and the record's state.
    fn announce(&self, before: &SessionRecord, after: &SessionRecord) {
        let (events, pair, session_id) = (&self.shared.events, Some(&self.pair), self.id);
        match (&before.agent_process, &after.agent_process) {
            (old, Some(new)) if old.as_ref().map(|o| o.pid) != Some(new.pid) => {
                let pid = new.pid;
                events.publish(pair, EventKind::ProcessStarted { session_id, pid });
            }
            (Some(_), None) => events.publish(pair, EventKind::ProcessStopped { session_id }),
            _ => {}
        }
        let shown = |r: &SessionRecord| {
            (
                r.status,
                r.process_state,
                r.message_count,
                r.usage.cost_usd.to_bits(),
                r.last_used_at,
                r.current_turn,
            )
        };
        if shown(before) != shown(after) {
            events.publish(
                pair,
                EventKind::Session {
                    session_id,
                    status: after.status,
                    process_state: after.process_state,
                    message_count: after.message_count,
                    cost_usd: after.usage.cost_usd,
                    last_used_at: after.last_used_at,
                    current_turn: after.current_turn,
                    queued: self.queue.len(),
                },
            );
        }
    }

    /// Replaces the snapshot's durable fields with the store's, after a write it had published
    /// ahead of its commit failed. The transient fields (process state, current turn, agent
    /// process) are this actor's own knowledge and stay. Turns still committing are waited for
    /// first: their changes are published too, and are durable only once they land. If the
    /// store cannot be read now (it is being reopened after a fault), this is tried again.
    pub(super) async fn resync(&mut self) {
        self.settle_bookings().await;
        let _ = self.shared.store.flush().await;
        match self.shared.store.get_by_session_id(&self.id) {
            Ok(Some(mut stored)) => {
                let live = self.snapshot.load_full();
                stored.process_state = live.process_state;
                stored.current_turn = live.current_turn;
                stored.agent_process = live.agent_process;
                tracing::info!(pair = %self.pair, session = %self.id, message_count = stored.message_count, "the session record was reloaded from the store after a failed write");
                self.publish(stored);
            }
            // Deleted meanwhile: the deletion stops this actor.
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(pair = %self.pair, session = %self.id, %error, "cannot reload the session record yet; trying again");
                self.myself.send_after(RESYNC_RETRY, || SessionMsg::Resync);
            }
        }
    }

    /// Writes a turn's first ledger row: with `Store::send` when its caller asked to be able
    /// to await it ([`Turn::first_row`]), else queued without waiting.
    pub(super) async fn write_first_row(&self, turn: &mut Turn, row: Mutation) {
        match turn.first_row.take() {
            Some(waiter) => self.send_first_row(waiter, row).await,
            None => self.enqueue(row).await,
        }
    }

    /// Submits a turn's first row and hands its pending commit to the caller's ticket. If the
    /// store refuses it, the waiter is dropped: the caller then waits for a flush instead,
    /// which reports the store's error.
    pub(super) async fn send_first_row(
        &self,
        waiter: oneshot::Sender<PendingWrite>,
        row: Mutation,
    ) {
        match self.shared.store.send(row).await {
            Ok(pending) => {
                let _ = waiter.send(pending);
            }
            Err(error) => {
                tracing::warn!(pair = %self.pair, session = %self.id, %error, "could not queue a turn's first row");
            }
        }
    }

    /// Queues a write behind earlier ones without waiting for its commit.
    pub(super) async fn enqueue(&self, mutation: Mutation) {
        if let Err(error) = self.shared.store.enqueue(mutation).await {
            tracing::warn!(pair = %self.pair, session = %self.id, %error, "could not queue a write");
        }
    }

    pub(super) fn text_limit(&self) -> usize {
        self.shared.config.settings().turn_text_limit.get()
    }

    pub(super) fn retain(&self) -> u64 {
        self.shared.config.settings().turn_retention.get() as u64
    }

    /// Waits (bounded) until every finished turn's bookkeeping is durable and its callers are
    /// answered: before the actor stops (which would otherwise abort them), before a resync,
    /// and before a queued turn's budget check (which must count their spend).
    pub(super) async fn settle_bookings(&mut self) {
        let all = async { while self.bookings.join_next().await.is_some() {} };
        if tokio::time::timeout(BOOKING_SETTLE_LIMIT, all)
            .await
            .is_err()
        {
            tracing::error!(pair = %self.pair, session = %self.id, limit = ?BOOKING_SETTLE_LIMIT, "the store did not confirm finished turns in time; going on without them (if the session stops now, their callers hear that it stopped)");
        }
    }
}

/// How long a session waits for its finished turns' bookkeeping (a few commits at most).
const BOOKING_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Deletes `pair`'s session (only if it is session `expect`, when given): through its actor
/// when one runs, else directly in the store (no other writer can exist: the registry holds the
/// pair's key while this runs).
///
/// An actor that stopped before it took the deletion (it passivated a moment before) owns
/// nothing any more: once it is gone, the record is deleted from the store directly, so
/// passivation never surfaces as an error.
pub(crate) async fn delete_session(
    shared: &Arc<Shared>,
    pair: &Pair,
    expect: Option<SessionId>,
    actor: Option<ActorRef<SessionMsg>>,
    delete_transcript: bool,
) -> Result<Deletion, RuntimeError> {
    let deletion = delete_through(shared, pair, expect, actor, delete_transcript).await?;
    if let Some(record) = &deletion.deleted {
        let session_id = record.session_id;
        shared
            .events
            .publish(Some(pair), EventKind::SessionDeleted { session_id });
    }
    Ok(deletion)
}

async fn delete_through(
    shared: &Arc<Shared>,
    pair: &Pair,
    expect: Option<SessionId>,
    actor: Option<ActorRef<SessionMsg>>,
    delete_transcript: bool,
) -> Result<Deletion, RuntimeError> {
    let limit = shutdown_timeout(&StopGrace::default());
    if let Some(actor) = actor {
        let answer = actor
            .call(
                |reply| SessionMsg::Delete {
                    delete_transcript,
                    reply,
                },
                Some(limit),
            )
            .await;
        match answer {
            Ok(ractor::rpc::CallResult::Success(Err(RuntimeError::ShuttingDown)))
                if shared.check_open().is_ok() => {}
            Ok(ractor::rpc::CallResult::Success(result)) => return result,
            Ok(ractor::rpc::CallResult::Timeout) => {
                return Err(RuntimeError::Timeout {
                    what: format!("deleting session {pair}"),
                });
            }
            _ if shared.check_open().is_err() => return Err(RuntimeError::ShuttingDown),
            // Passivated before it saw the deletion.
            _ => {}
        }
        // Its last writes are done once it has stopped.
        if actor.wait(Some(limit)).await.is_err() {
            return Err(RuntimeError::Timeout {
                what: format!("deleting session {pair} (waiting for its actor to stop)"),
            });
        }
    }
    let Some(record) = shared
        .store
        .get_by_pair(pair)?
        .filter(|r| expect.is_none_or(|id| r.session_id == id))
    else {
        return Ok(Deletion {
            deleted: None,
            transcript: TranscriptRemoval::NotRequested,
        });
    };
    let deleted = shared.store.delete(record.session_id).await?;
    let transcript = if delete_transcript {
        remove_transcript(shared, pair, &record).await
    } else {
        TranscriptRemoval::NotRequested
    };
    Ok(Deletion {
        deleted,
        transcript,
    })
}

/// Records durably that `pair`'s session failed too often.
pub(crate) async fn mark_error(shared: Arc<Shared>, pair: Pair) {
    let result = match shared.store.get_by_pair(&pair) {
        Ok(Some(record)) => shared
            .store
            .update_all(
                record.session_id,
                vec![
                    Change::SetStatus(SessionStatus::Error),
                    Change::SetProcessState(ProcessState::Stopped),
                ],
            )
            .await
            .map(|_| ()),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::error!(%pair, %error, "could not record the session's error status");
    }
}

/// How soon a session tries again to reload its record when the store could not be read.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// The final ledger row of a turn.
pub(crate) fn finished_row(
    mut row: TurnRecord,
    outcome: &TellOutcome,
    report: Option<&TurnReport>,
    limit: usize,
) -> TurnRecord {
    row.finished_at = Some(Timestamp::now());
    if let Some(report) = report {
        let (text, truncated) = truncate_text(&report.text, limit);
        row.text = Some(text);
        row.text_truncated = truncated;
        row.subtype = Some(report.result.subtype.clone());
        row.is_error = report.failed();
        row.usage = report.usage_totals();
        row.duration_ms = Some(report.result.duration_ms);
        row.num_turns = Some(report.result.num_turns);
    }
    match outcome {
        TellOutcome::Completed(_) => row.status = TurnStatus::Completed,
        TellOutcome::Failed { error, .. } => {
            row.status = error.turn_status();
            row.error = Some(TurnFailure {
                code: error.code(),
                message: error.to_string(),
            });
        }
        TellOutcome::Accepted { .. } | TellOutcome::CallerTimeout { .. } => {}
    }
    row
}
