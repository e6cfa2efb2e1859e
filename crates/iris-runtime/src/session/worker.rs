//! The worker family: the task that runs one job against the agent while the actor's mailbox
//! stays free, and the actor's side of its reports (the agent is up; the job is done).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use iris_agent::codec::DecodedEvent;
use iris_agent::conversation::{Activity, AgentError, Interrupter, TurnLimits, TurnReport};
use iris_agent::process::StopGrace;
use iris_core::{Coded, ProcessState, SessionRecord, Timestamp, TurnId};
use iris_store::{Change, Mutation};
use ractor::ActorRef;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::agent::launched_changes;
use super::agent::{LaunchContext, Launched, LiveAgent};
use super::ledger::finished_row;
use super::phase::Job;
use super::turn::{EVENT_BUFFER, PartialText, ToolCalls, Turn, TurnProgress};
use super::{SessionMsg, SessionState};
use crate::tell::{TellOutcome, TurnError, TurnResult};

impl SessionState {
    pub(super) async fn agent_up(
        &mut self,
        job: u64,
        launched: Launched,
        interrupter: Interrupter,
        activity: tokio::sync::watch::Receiver<Activity>,
    ) {
        let Some(running) = self.phase.running_mut().filter(|r| r.job == job) else {
            return;
        };
        running.interrupter = Some(interrupter.clone());
        running.activity = Some(activity);
        running.pgid = Some(launched.mark.pgid);
        // Told on the row of the turn that runs on this agent (the next one booked).
        self.history_lost |= launched.history_lost;
        if running.cancelled.is_some() {
            interrupter.interrupt();
        }
        let state = match running.kind {
            Job::Wake(_) => ProcessState::Idle,
            _ => ProcessState::Processing,
        };
        self.note(launched_changes(&launched, state)).await;
    }

    /// The worker finished: book the result, answer the caller, keep or drop the agent.
    /// Working → idle (the agent came back) or asleep; then retiring if a sleep waited for the
    /// job; stopping → stopped.
    pub(super) async fn job_done(&mut self, mut done: WorkerDone) {
        let agent_alive = done.agent.is_some();
        let Some((running, after)) = self.phase.end_job(done.job, done.agent.take()) else {
            return;
        };
        let running = *running;
        let crashed = matches!(done.result, Err(TurnError::AgentExited { .. }));
        if crashed {
            self.shared.metrics.crashes.inc();
        }
        if matches!(
            done.result,
            Err(TurnError::Timeout { .. } | TurnError::ToolTimeout { .. })
        ) {
            self.shared.metrics.stalls.inc();
        }
        let process_state = if agent_alive {
            ProcessState::Idle
        } else {
            ProcessState::Stopped
        };
        if crashed {
            // Before the caller hears of the crash, so a crash that exhausts the budget is
            // visible (status `error`) by the time the turn's outcome is.
            self.count_crash().await;
        }
        match running.kind {
            Job::Turn(turn) => {
                self.book_turn(*turn, running.cancelled, &done, process_state)
                    .await;
                if after.shutdown.is_none() {
                    self.compact_if_due().await;
                }
            }
            Job::Wake(reply) => {
                let mut changes = vec![Change::SetProcessState(process_state)];
                if !agent_alive {
                    changes.push(Change::SetAgentProcess(None));
                }
                let result = match &done.result {
                    // Process state is transient (start-up resets it), so it is not awaited.
                    Ok(_) => {
                        self.note(changes).await;
                        Ok((**self.snapshot.load()).clone())
                    }
                    Err(error) => {
                        self.apply_or_log(changes).await;
                        Err(self.start_error(error))
                    }
                };
                let _ = reply.send(result);
            }
            Job::Compact(reply, previous) => {
                let outcome = match &done.result {
                    Ok(Some(report)) if report.failed() => Err(format!(
                        "the agent's /compact failed: {}",
                        error_message(report)
                    )),
                    Ok(Some(report)) if report.compacted => Ok(()),
                    // The CLI declines with a plain answer, e.g. "Not enough messages to
                    // compact."
                    Ok(Some(report)) if !report.text.trim().is_empty() => Err(format!(
                        "the agent did not compact the conversation: {}",
                        report.text.trim()
                    )),
                    Ok(_) => Err(
                        "the agent answered /compact without confirming a compaction (no compact_boundary event); is it a Claude Code CLI that supports /compact in stream-json mode?"
                            .to_owned(),
                    ),
                    Err(error) => Err(error.to_string()),
                };
                self.note(vec![Change::SetProcessState(process_state)])
                    .await;
                // Compacting is a model call: what it cost counts, whatever its outcome.
                let usage = match &done.result {
                    Ok(Some(report)) => Some(report.usage_totals()),
                    _ => None,
                };
                let finished = self.finish_compaction(outcome, previous, usage).await;
                match reply {
                    Some(reply) => {
                        let _ = reply.send(finished);
                    }
                    None => {
                        if let Err(error) = finished {
                            self.auto_compaction_paused = true;
                            tracing::warn!(pair = %self.pair, session = %self.id, %error, "the automatic compaction failed; no other is tried until a compaction succeeds (`iris sessions compact` asks for one)");
                        } else {
                            tracing::info!(pair = %self.pair, session = %self.id, "the conversation was compacted by the compaction policy");
                        }
                    }
                }
            }
        }
        if after.sleep {
            self.retire_agent("put to sleep");
        }
        // Otherwise `retired` answers them once the agent is gone.
        self.answer_sleepers_if_asleep();
        if let Some((grace, reply)) = after.shutdown {
            self.finish_shutdown(grace, reply).await;
        }
    }

    /// Writes a finished turn's bookkeeping durably, then answers its callers.
    pub(super) async fn book_turn(
        &mut self,
        turn: Turn,
        cancelled: Option<TurnError>,
        done: &WorkerDone,
        process_state: ProcessState,
    ) {
        let report = done.result.as_ref().ok().and_then(Option::as_ref);
        let outcome = match cancelled {
            Some(reason) => TellOutcome::Failed {
                turn_id: turn.id(),
                error: reason,
            },
            None => super::worker::outcome_of(turn.id(), &done.result),
        };
        let now = Timestamp::now();
        let mut changes = vec![
            Change::SetCurrentTurn(None),
            Change::SetProcessState(process_state),
            Change::TouchLastUsed(now),
        ];
        if process_state == ProcessState::Stopped {
            changes.push(Change::SetAgentProcess(None));
        }
        if let Some(at) = done.last_event_at {
            changes.push(Change::SetLastResponse(at));
        }
        if let Some(report) = report {
            changes.push(Change::AddUsage(report.usage_totals()));
            if let Some(id) = &report.session_id
                && self.snapshot.load().agent_session_id.as_deref() != Some(id.as_str())
                && (report.session_id_changed || *id != self.id.to_string())
            {
                changes.push(Change::SetAgentSessionId(Some(id.clone())));
            }
        }
        let metrics = &self.shared.metrics;
        match &outcome {
            TellOutcome::Completed(_) => {
                changes.push(Change::IncrementMessageCount(1));
                metrics.turns_completed.inc();
            }
            TellOutcome::Failed {
                error: TurnError::Cancelled,
                ..
            } => metrics.turns_cancelled.inc(),
            _ => {
                changes.push(Change::AddFailedTurns(1));
                metrics.turns_failed.inc();
            }
        }
        metrics.turn_time.observe(done.ran_for);
        let mut row = finished_row(turn.row.clone(), &outcome, report, self.text_limit());
        row.history_lost = std::mem::take(&mut self.history_lost);
        if let Some(report) = report {
            let cost = iris_store::spend::Spend::of(&report.usage_totals());
            row.budget_warning = crate::budget::note_booking(
                &self.shared.budgets(),
                self.id,
                &self.pair.from,
                &self.pair.to,
                cost,
            );
            self.budget_warning = row.budget_warning;
        }
        // Published now (the store applies the same changes in the same order); queued now, so
        // every later write of this session lands after it; awaited by its own task, so the
        // next turn runs while this one's commit is on its way. Its callers hear the outcome
        // only once the write is durable.
        self.publish_changes(&changes);
        let sent = self
            .shared
            .store
            .send(Mutation::RecordTurn {
                session_id: self.id,
                changes,
                turn: row,
                retain: self.retain(),
                spend_day: Some(self.shared.config.budgets().day_of(self.shared.clock.now())),
            })
            .await;
        let (pair, id, myself) = (self.pair.clone(), self.id, self.myself.clone());
        self.bookings.spawn(async move {
            let durable = match sent {
                Ok(pending) => pending.outcome().await.map(drop),
                Err(error) => Err(error),
            };
            // No acknowledgement without a commit: a turn whose bookkeeping is not durable
            // fails with the store's error, whatever the agent answered.
            let outcome = match durable {
                Ok(()) => outcome,
                Err(error) => {
                    tracing::error!(%pair, session = %id, turn = %turn.id(), %error, "could not record the turn's bookkeeping; the turn fails");
                    // The snapshot already counts it: the actor reloads what is durable.
                    let _ = myself.cast(SessionMsg::Resync);
                    TellOutcome::Failed {
                        turn_id: turn.id(),
                        error: TurnError::Store {
                            code: iris_core::Coded::code(&error),
                            message: error.to_string(),
                        },
                    }
                }
            };
            tracing::info!(%pair, session = %id, turn = %turn.id(), outcome = outcome_name(&outcome), "turn finished");
            turn.progress.finish(outcome);
        });
        // Reap the bookings already done, so the set holds only those in flight.
        while self.bookings.try_join_next().is_some() {}
    }
}

/// What a worker brings back to its session.
#[derive(Debug)]
pub(crate) struct WorkerDone {
    pub job: u64,
    /// The agent, if it is still alive and usable.
    pub agent: Option<LiveAgent>,
    /// The turn's report (`None` for a job that only needed the agent up).
    pub result: Result<Option<TurnReport>, TurnError>,
    /// When the agent last said anything (kept in memory, persisted once per turn).
    pub last_event_at: Option<Timestamp>,
    /// How long the turn ran, from the message sent (after any spawn) to its end.
    pub ran_for: Duration,
}

/// One job for a worker.
#[derive(Debug)]
pub(crate) struct WorkOrder {
    pub launch: LaunchContext,
    pub record: SessionRecord,
    pub agent: Option<LiveAgent>,
    /// An agent to stop before a new one is launched (its spending limit is stale).
    pub relaunch: Option<LiveAgent>,
    pub job: u64,
    /// The message to send; `None` only brings the agent up.
    pub message: Option<String>,
    pub progress: Option<Arc<TurnProgress>>,
    /// The turn's limits (stall, tool and turn timeouts).
    pub limits: TurnLimits,
    pub myself: ActorRef<SessionMsg>,
}

/// Runs one job: starts the agent if there is none (telling the session as soon as it is up),
/// sends the message, streams events to the turn's subscribers, and reports back.
pub(crate) async fn work(order: WorkOrder) {
    let myself = order.myself.clone();
    let done = run(order).await;
    let _ = myself.cast(SessionMsg::TurnDone(Box::new(done)));
}

async fn run(order: WorkOrder) -> WorkerDone {
    let WorkOrder {
        launch,
        record,
        agent,
        relaunch,
        job,
        message,
        progress,
        limits,
        myself,
    } = order;
    if let Some(stale) = relaunch {
        // Before the launch, so the two never hold the conversation (or two slots) at once.
        stale.stop(StopGrace::default()).await;
    }
    let done = |agent, result, last_event_at, ran_for| WorkerDone {
        job,
        agent,
        result,
        last_event_at,
        ran_for,
    };
    let mut agent = match agent.filter(|a| !a.conversation.has_exited()) {
        Some(agent) => agent,
        None => match launch.start(&record).await {
            Ok((agent, launched)) => {
                let _ = myself.cast(SessionMsg::AgentUp {
                    job,
                    launched: Box::new(launched),
                    interrupter: agent.conversation.interrupter(),
                    activity: agent.conversation.activity(),
                });
                agent
            }
            Err(error) => return done(None, Err(error), None, Duration::ZERO),
        },
    };
    let Some(message) = message else {
        agent.permit.set_busy(false);
        return done(Some(agent), Ok(None), None, Duration::ZERO);
    };
    agent.permit.set_busy(true);
    let began = Instant::now();
    let (sink, mut events) = mpsc::channel::<DecodedEvent>(EVENT_BUFFER);
    let last_event = Mutex::new(None);
    let turn = async {
        let sink = sink;
        agent.conversation.turn(&message, Some(&sink), limits).await
    };
    let forward = async {
        let mut partial = PartialText::default();
        let mut tools = ToolCalls::default();
        while let Some(decoded) = events.recv().await {
            *last_event.lock().unwrap_or_else(PoisonError::into_inner) = Some(Timestamp::now());
            if let Some(progress) = &progress {
                partial.feed(&decoded.event, progress);
                tools.feed(&decoded.event, progress);
            }
        }
    };
    let (result, ()) = tokio::join!(turn, forward);
    let ran_for = began.elapsed();
    let last_event_at = last_event
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let result = result.map(Some).map_err(agent_failure);
    if let Ok(Some(report)) = &result {
        agent.spending.spent += report.usage_totals().cost_usd;
    }
    if agent.conversation.has_exited() || result.is_err() {
        // Every turn error leaves the agent dead or killed (exit, stall, protocol breach, an
        // interrupt it ignored): sweep its group (grandchildren) and give the slot back.
        agent.stop(StopGrace::default()).await;
        return done(None, result, last_event_at, ran_for);
    }
    agent.permit.set_busy(false);
    done(Some(agent), result, last_event_at, ran_for)
}

/// The turn error an agent failure is reported as.
pub(crate) fn agent_failure(error: AgentError) -> TurnError {
    match error {
        AgentError::Stalled { after } => TurnError::Timeout { after },
        AgentError::ToolTimedOut {
            tool, ran, limit, ..
        } => TurnError::ToolTimeout { tool, ran, limit },
        AgentError::TurnTimedOut { limit } => TurnError::TurnTimeout { limit },
        AgentError::Exited { exit } | AgentError::ExitedBeforeReady { exit, .. } => {
            TurnError::AgentExited {
                code: exit.code,
                signal: exit.signal,
                stderr_tail: exit.stderr_tail,
            }
        }
        AgentError::InterruptTimedOut { .. } => TurnError::Cancelled,
        AgentError::NotRunning => TurnError::Interrupted {
            reason: "the agent had stopped".into(),
        },
        other @ (AgentError::Spawn(_)
        | AgentError::HandshakeTimeout { .. }
        | AgentError::HandshakeRejected { .. }) => TurnError::Spawn {
            code: other.code(),
            reason: other.to_string(),
        },
        other => TurnError::Agent {
            reason: other.to_string(),
        },
    }
}

/// The caller's outcome of a finished turn.
pub(crate) fn outcome_of(
    turn_id: TurnId,
    result: &Result<Option<TurnReport>, TurnError>,
) -> TellOutcome {
    match result {
        Ok(None) => TellOutcome::Failed {
            turn_id,
            error: TurnError::Agent {
                reason: "no message was sent to the agent".into(),
            },
        },
        Ok(Some(report)) if stopped_at_spending_limit(report) => TellOutcome::Failed {
            turn_id,
            error: TurnError::BudgetExceeded {
                message: format!(
                    "the agent stopped at the spending limit iris gave it (--max-budget-usd, what was left under the tightest budget cap over this pair): {}; see `iris budget`",
                    error_message(report)
                ),
            },
        },
        Ok(Some(report)) if report.failed() => TellOutcome::Failed {
            turn_id,
            error: TurnError::ErrorResult {
                subtype: report.result.subtype.clone(),
                message: error_message(report),
                api_error_status: report.result.api_error_status,
            },
        },
        Ok(Some(report)) => {
            let usage = report.usage_totals();
            TellOutcome::Completed(TurnResult {
                turn_id,
                text: report.text.clone(),
                subtype: report.result.subtype.clone(),
                is_error: report.result.is_error,
                cost_usd: usage.cost_usd,
                usage,
                duration_ms: report.result.duration_ms,
                num_turns: report.result.num_turns,
            })
        }
        Err(error) => TellOutcome::Failed {
            turn_id,
            error: error.clone(),
        },
    }
}

/// Whether the agent ended the turn at its `--max-budget-usd`: `error_max_budget_usd`, as
/// 2.1.197 reports it, or the `terminal_reason` newer CLIs add.
fn stopped_at_spending_limit(report: &TurnReport) -> bool {
    report.result.subtype == "error_max_budget_usd"
        || report.result.terminal_reason.as_deref() == Some("budget_exhausted")
}

/// What an error result says: its text, else its `errors`, else the assistant's text.
pub(crate) fn error_message(report: &TurnReport) -> String {
    let result = &report.result;
    match result.result.as_deref() {
        Some(text) if !text.trim().is_empty() => text.to_owned(),
        _ if !result.errors.is_empty() => result.errors.join("; "),
        _ => report.text.clone(),
    }
}

fn outcome_name(outcome: &TellOutcome) -> &'static str {
    match outcome {
        TellOutcome::Completed(_) => "completed",
        TellOutcome::Failed { .. } => "failed",
        TellOutcome::Accepted { .. } => "accepted",
        TellOutcome::CallerTimeout { .. } => "caller_timeout",
    }
}
