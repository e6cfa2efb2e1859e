//! The tell family: turns come in, wait in the queue, and go one at a time to a worker; a
//! cancel interrupts the one in flight or drops the queue.

use iris_agent::conversation::TurnLimits;
use iris_core::{ProcessState, RequestId, SessionStatus, TurnId};
use iris_store::{Change, Mutation};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::SessionState;
use super::agent::LaunchContext;
use super::ledger::finished_row;
use super::phase::{Job, Phase, Running, Worker};
use super::status::Cancelled;
use super::turn::{EventSink, Ticket, Turn, TurnProgress};
use super::worker::{WorkOrder, WorkerDone, work};
use crate::error::RuntimeError;
use crate::events::EventKind;
use crate::tell::{TellOutcome, TurnError};

impl SessionState {
    /// Queues a turn. With `record_first_row`, its first ledger row (`queued`, or `running`
    /// when it starts at once) is committed promptly and the ticket can await that commit: the
    /// caller will hold only the turn id and must be able to look it up. A tell whose
    /// `request_id` made a turn already joins that turn instead.
    pub(super) async fn tell(
        &mut self,
        from: iris_core::TeamName,
        message: String,
        record_first_row: bool,
        request_id: Option<RequestId>,
    ) -> Result<Ticket, RuntimeError> {
        if let Some(request_id) = request_id
            && let Some(ticket) = self.join_request(request_id)?
        {
            tracing::info!(pair = %self.pair, session = %self.id, turn = %ticket.turn_id, %request_id, "a retried request joins its turn");
            return Ok(ticket);
        }
        self.refuse_new_work()?;
        crate::budget::check(&self.shared.budgets(), Some(self.id), &from, &self.pair.to)?;
        let depth = self.shared.config.settings().queue_depth.get();
        if self.queued_turns() >= depth {
            return Err(RuntimeError::QueueFull {
                pair: self.pair.clone(),
                depth,
            });
        }
        let seq = self.next_seq()?;
        let (first_row, first_row_rx) = record_first_row.then(oneshot::channel).unzip();
        let stream = EventSink {
            bus: self.shared.events.clone(),
            pair: self.pair.clone(),
        };
        let (progress, ticket) =
            TurnProgress::with_first_row(self.id, TurnId::new(), first_row_rx, Some(stream));
        let mut turn = Turn::queued(
            self.id,
            seq,
            from,
            message,
            self.text_limit(),
            progress.clone(),
            first_row,
        );
        if let Some(request_id) = request_id {
            turn.row.request_id = Some(request_id);
            self.open_requests.insert(request_id, progress.clone());
        }
        if !self.starts_at_once() {
            // A turn that starts in this very handler gets its `running` row straight away;
            // writing a `queued` row first would only cost a write.
            let row = Mutation::PutTurn {
                turn: turn.row.clone(),
                retain: self.retain(),
            };
            self.write_first_row(&mut turn, row).await;
        }
        tracing::debug!(pair = %self.pair, session = %self.id, turn = %progress.turn_id, seq, "turn queued");
        self.shared.metrics.tells.inc();
        self.queue.push_back(Job::Turn(Box::new(turn)));
        let (turn_id, queued) = (progress.turn_id, self.queued_turns());
        self.shared
            .events
            .publish(Some(&self.pair), EventKind::TurnQueued { turn_id, queued });
        Ok(ticket)
    }

    /// The turn an earlier tell with `request_id` made: open in this actor, or in the ledger.
    /// An id that named a tell of another session is refused.
    fn join_request(&self, request_id: RequestId) -> Result<Option<Ticket>, RuntimeError> {
        if let Some(progress) = self.open_requests.get(&request_id) {
            return Ok(Some(progress.ticket(self.id)));
        }
        // A short read of one index entry and its row, like `next_seq`'s.
        let Some(turn) = self.shared.store.turn_by_request(request_id)? else {
            return Ok(None);
        };
        if turn.session_id != self.id {
            return Err(RuntimeError::RequestReused {
                request_id,
                pair: self.pair.clone(),
                session: turn.session_id,
            });
        }
        Ok(Some(Ticket::of_ledger(&turn)))
    }

    /// The turns waiting in the queue (not the one running).
    pub(super) fn queued_turns(&self) -> usize {
        self.queue
            .iter()
            .filter(|j| matches!(j, Job::Turn(_)))
            .count()
    }

    /// Whether a job queued now starts within this message's handler (`run_next`): the phase
    /// takes jobs and nothing waits ahead.
    pub(super) fn starts_at_once(&self) -> bool {
        self.phase.accepts_jobs() && self.queue.is_empty()
    }

    /// Refuses new work (a turn, a compaction) while the session shuts down, or while it
    /// cannot take any ([`Self::fail_fast`]).
    pub(super) fn refuse_new_work(&self) -> Result<(), RuntimeError> {
        if self.phase.is_stopping() {
            return Err(RuntimeError::ShuttingDown);
        }
        self.fail_fast()
    }

    /// Fails when the session is in status `error`: it must be woken (or reset) first.
    /// Also fails, with the store's `STORE_ERROR`, while the store cannot commit (a full disk):
    /// a turn run now could not be recorded.
    pub(super) fn fail_fast(&self) -> Result<(), RuntimeError> {
        if self.snapshot.load().status == SessionStatus::Error {
            return Err(RuntimeError::SessionFailed {
                pair: self.pair.clone(),
                reason: "the session is in status error".into(),
            });
        }
        if let Some(error) = self.shared.store.unavailable() {
            return Err(error.into());
        }
        Ok(())
    }

    pub(super) fn next_seq(&mut self) -> Result<u64, RuntimeError> {
        let last = match self.last_seq {
            Some(last) => last,
            None => self.shared.store.last_turn_seq(self.id)?,
        };
        self.last_seq = Some(last + 1);
        Ok(last + 1)
    }

    /// A budget cap reached since `turn` was queued (by the turns before it, here or under a
    /// shared cap): the turn then fails as a new tell would be refused. The bookings of this
    /// session's earlier turns are waited for first, so their spend is counted.
    async fn cap_reached_while_queued(&mut self, turn: &Turn) -> Option<TurnError> {
        if !self.shared.budget.in_force().budgets.any() {
            return None;
        }
        self.settle_bookings().await;
        let gate = self.shared.budgets();
        match crate::budget::check(&gate, Some(self.id), &turn.row.from, &self.pair.to) {
            Err(RuntimeError::BudgetExceeded(exceeded)) => Some(TurnError::BudgetExceeded {
                message: format!(
                    "a budget cap was reached while the turn waited in the queue: {exceeded}"
                ),
            }),
            // A counter that cannot be read now: the turn runs, and its booking meets the fault.
            _ => None,
        }
    }

    /// Starts the next job while the phase takes jobs (asleep or idle).
    pub(super) async fn run_next(&mut self) {
        while self.phase.accepts_jobs() {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            match job {
                Job::Turn(turn) => {
                    if let Some(refusal) = self.cap_reached_while_queued(&turn).await {
                        self.fail_turn(*turn, refusal).await;
                        continue;
                    }
                    let message = turn.message.clone();
                    self.start_job(Job::Turn(turn), Some(message)).await;
                }
                Job::Wake(reply) if self.phase.idle_agent().is_some() => {
                    let _ = reply.send(Ok((**self.snapshot.load()).clone()));
                }
                Job::Wake(reply) => self.start_job(Job::Wake(reply), None).await,
                // The agent is started for it if needed: only the agent can compact its
                // conversation, and only its confirmation resets the count.
                Job::Compact(reply, previous) => {
                    self.start_job(Job::Compact(reply, previous), Some("/compact".into()))
                        .await;
                }
            }
        }
    }

    /// Hands the job (and the agent, if one is idle) to a worker task: asleep or idle →
    /// working.
    pub(super) async fn start_job(&mut self, mut kind: Job, message: Option<String>) {
        self.jobs += 1;
        let job = self.jobs;
        let launch = self.launch_context();
        let mut agent = self.phase.take_idle_agent();
        // An agent whose spending limit no longer matches what the budgets leave is launched
        // again (its worker stops it first): with too much, the turn could run past a cap that
        // other pairs brought closer; with too little, it would stop short of a raised cap or a
        // new day's.
        let relaunch =
            agent.take_if(|a| crate::budget::limit_is_stale(a.spending, launch.spending_limit));
        if let Some(stale) = &relaunch {
            tracing::info!(pair = %self.pair, session = %self.id, given = ?stale.spending.limit, spent = stale.spending.spent, now = ?launch.spending_limit, "the agent's spending limit no longer matches the budgets; launching it again");
        }
        let interrupter = agent.as_ref().map(|a| a.conversation.interrupter());
        let activity = agent.as_ref().map(|a| a.conversation.activity());
        let pgid = agent.as_ref().map(|a| a.mark().pgid);
        let mut changes = vec![Change::SetProcessState(if agent.is_some() {
            ProcessState::Processing
        } else {
            ProcessState::Spawning
        })];
        let (progress, row, first_row) = match &mut kind {
            Job::Turn(turn) => {
                changes.push(Change::SetCurrentTurn(Some(turn.id())));
                turn.start();
                let row = turn.row.clone();
                self.shared
                    .metrics
                    .queue_wait
                    .observe(turn.queued_instant.elapsed());
                turn.progress.started();
                tracing::debug!(pair = %self.pair, session = %self.id, turn = %turn.id(), "turn running");
                (
                    Some(turn.progress.clone()),
                    Some(row),
                    turn.first_row.take(),
                )
            }
            Job::Wake(_) | Job::Compact(..) => (None, None, None),
        };
        match row {
            // One write for the record's transient state and the turn's `running` row.
            Some(row) => {
                self.publish_changes(&changes);
                // The turn's `running` row: nothing is spent yet.
                let write = Mutation::RecordTurn {
                    session_id: self.id,
                    changes,
                    turn: row,
                    retain: self.retain(),
                    spend_day: None,
                };
                match first_row {
                    Some(waiter) => self.send_first_row(waiter, write).await,
                    None => self.enqueue(write).await,
                }
            }
            None => self.note(changes).await,
        }
        let worker = Worker(tokio::spawn(work(WorkOrder {
            launch,
            record: (**self.snapshot.load()).clone(),
            agent,
            relaunch,
            job,
            message,
            progress,
            limits: self.turn_limits(),
            myself: self.myself.clone(),
        })));
        self.phase = Phase::Working {
            running: Box::new(Running {
                job,
                kind,
                worker,
                interrupter,
                activity,
                pgid,
                started: Instant::now(),
                cancelled: None,
            }),
            sleep_after: false,
        };
    }

    /// How to launch this pair's agent: with the dollars left under the budget caps that cover
    /// the pair as its spending limit (read now, so a respawn gets what is left then).
    pub(super) fn launch_context(&self) -> LaunchContext {
        let spending_limit = if self.shared.budget.in_force().budgets.any() {
            crate::budget::remaining_usd(
                &self.shared.budgets(),
                self.id,
                &self.pair.from,
                &self.pair.to,
            )
        } else {
            None
        };
        LaunchContext {
            shared: self.shared.clone(),
            session: self.myself.clone(),
            pair: self.pair.clone(),
            id: self.id,
            spending_limit,
        }
    }

    /// The limits of a turn of this pair's agent: `response_timeout`, and the receiving team's
    /// `tool_timeout` and `turn_timeout` (its own, or the settings').
    pub(super) fn turn_limits(&self) -> TurnLimits {
        let config = &self.shared.config;
        let settings = config.settings();
        TurnLimits::new(settings.response_timeout)
            .with_tool_timeout(
                config
                    .tool_timeout_for(&self.pair.to)
                    .unwrap_or(settings.tool_timeout),
            )
            .with_turn_timeout(
                config
                    .turn_timeout_for(&self.pair.to)
                    .unwrap_or(settings.turn_timeout),
            )
    }

    pub(super) async fn cancel(&mut self, drop_queue: bool) -> Cancelled {
        let dropped = if drop_queue {
            self.fail_queued(TurnError::Cancelled).await
        } else {
            0
        };
        let interrupted = self.phase.running().is_some();
        if interrupted {
            self.cancel_running(TurnError::Cancelled).await;
        }
        Cancelled {
            interrupted,
            dropped,
        }
    }

    /// Interrupts the job in flight and reports `reason` for it. An agent that is still
    /// starting has nothing to interrupt: the worker is aborted, which kills it.
    pub(super) async fn cancel_running(&mut self, reason: TurnError) {
        let Some(running) = self.phase.running_mut() else {
            return;
        };
        running.cancelled.get_or_insert(reason.clone());
        match &running.interrupter {
            Some(interrupter) => interrupter.interrupt(),
            None => self.abort_running(reason).await,
        }
    }

    /// Aborts the worker (dropping the agent it holds kills the agent's group) and finishes
    /// its job as if the worker had reported `reason`.
    pub(super) async fn abort_running(&mut self, reason: TurnError) {
        let Some(running) = self.phase.running() else {
            return;
        };
        running.worker.0.abort();
        let done = WorkerDone {
            job: running.job,
            agent: None,
            result: Err(reason),
            last_event_at: None,
            ran_for: running.started.elapsed(),
        };
        self.job_done(done).await;
    }

    /// Ends a turn that never ran with `error`: its final row, then, once that is durable (or
    /// failed to be), its callers, so what they hear is what the ledger says. Awaited by its
    /// own task, like a booking.
    async fn fail_turn(&mut self, turn: Turn, error: TurnError) {
        let outcome = TellOutcome::Failed {
            turn_id: turn.id(),
            error,
        };
        let row = finished_row(turn.row.clone(), &outcome, None, self.text_limit());
        let sent = self
            .shared
            .store
            .send(Mutation::PutTurn {
                turn: row,
                retain: self.retain(),
            })
            .await;
        let (pair, id) = (self.pair.clone(), self.id);
        self.bookings.spawn(async move {
            let durable = match sent {
                Ok(pending) => pending.outcome().await.map(drop),
                Err(error) => Err(error),
            };
            if let Err(error) = durable {
                tracing::warn!(%pair, session = %id, turn = %turn.id(), %error, "could not record that a queued turn failed");
            }
            turn.progress.finish(outcome);
        });
    }

    /// Cancels every queued turn with `error`; returns how many there were.
    pub(super) async fn fail_queued(&mut self, error: TurnError) -> usize {
        let mut failed = 0;
        for job in std::mem::take(&mut self.queue) {
            match job {
                Job::Turn(turn) => {
                    failed += 1;
                    self.fail_turn(*turn, error.clone()).await;
                }
                Job::Wake(reply) => {
                    let _ = reply.send(Err(RuntimeError::Busy {
                        pair: self.pair.clone(),
                        what: format!("dropping its queue ({error})"),
                    }));
                }
                Job::Compact(reply, previous) => {
                    // It never ran: the status it set goes back.
                    self.apply_or_log(vec![Change::SetStatus(previous)]).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(RuntimeError::Busy {
                            pair: self.pair.clone(),
                            what: format!("dropping its queue ({error})"),
                        }));
                    }
                }
            }
        }
        failed
    }
}
