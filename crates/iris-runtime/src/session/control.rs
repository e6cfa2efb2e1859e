//! The control family: the agent's lifecycle (wake, sleep, eviction, health, the idle and
//! passivation timer) and the actor's (shutdown, deletion), and compaction.

use std::time::Duration;

use iris_agent::process::StopGrace;
use iris_core::{ProcessState, SessionRecord, SessionStatus, Timestamp};
use iris_store::Change;
use ractor::RpcReplyPort;
use tokio::time::Instant;

use super::agent::launched_changes;
use super::phase::{Job, Phase};
use super::status::{AgentActivity, Deletion, PairStatus};
use super::transcript::{TranscriptRemoval, remove_transcript};
use super::{SessionMsg, SessionState};
use crate::error::RuntimeError;
use crate::pool::PoolMsg;
use crate::tell::TurnError;

impl SessionState {
    /// Starts the agent now (eager creation), in `pre_start`.
    pub(super) async fn start_agent_now(&mut self) -> Result<(), RuntimeError> {
        let launch = self.launch_context();
        let record = (**self.snapshot.load()).clone();
        let (agent, launched) = launch
            .start(&record)
            .await
            .map_err(|e| self.start_error(&e))?;
        agent.permit.set_busy(false);
        self.phase = Phase::idle_or_asleep(Some(agent));
        // Transient state, not awaited: a lost mark is covered by the guardian and PDEATHSIG.
        self.note(launched_changes(&launched, ProcessState::Idle))
            .await;
        Ok(())
    }

    pub(super) fn start_error(&self, error: &TurnError) -> RuntimeError {
        use iris_core::Coded;
        RuntimeError::Agent {
            pair: self.pair.clone(),
            code: error.code(),
            reason: error.to_string(),
        }
    }

    pub(super) async fn wake(&mut self, reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>) {
        if self.phase.is_stopping() {
            let _ = reply.send(Err(RuntimeError::ShuttingDown));
            return;
        }
        if self.snapshot.load().status == SessionStatus::Error {
            self.crashes.clear();
            self.apply_or_log(vec![Change::SetStatus(SessionStatus::Active)])
                .await;
            tracing::info!(pair = %self.pair, session = %self.id, "woken out of status error");
        }
        self.queue.push_back(Job::Wake(reply));
    }

    pub(super) async fn sleep(
        &mut self,
        force: bool,
        reply: RpcReplyPort<Result<(), RuntimeError>>,
    ) {
        self.fail_queued(TurnError::Cancelled).await;
        self.sleepers.push(reply);
        match &mut self.phase {
            Phase::Working { sleep_after, .. } | Phase::Stopping { sleep_after, .. } => {
                *sleep_after = true;
                if force {
                    self.cancel_running(TurnError::Cancelled).await;
                }
            }
            Phase::Idle { .. } => self.retire_agent("put to sleep"),
            Phase::Asleep | Phase::Retiring { .. } | Phase::Stopped => {}
        }
        self.answer_sleepers_if_asleep();
    }

    /// Answers the sleep requests once the session has no agent (`retired` answers them when
    /// an agent being stopped is gone).
    pub(super) fn answer_sleepers_if_asleep(&mut self) {
        if matches!(self.phase, Phase::Asleep | Phase::Stopped) {
            self.answer_sleepers();
        }
    }

    pub(super) fn answer_sleepers(&mut self) {
        for reply in self.sleepers.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }

    pub(super) fn inspect(&self) -> PairStatus {
        let running = self.phase.running();
        let current_turn = running.and_then(|r| match &r.kind {
            Job::Turn(turn) => Some(turn.id()),
            _ => None,
        });
        // Read from the conversation's watch: the worker that holds the agent is not asked.
        let activity = match running {
            Some(running) => Some(match &running.activity {
                Some(activity) => AgentActivity::of(&activity.borrow()),
                None => AgentActivity::Starting,
            }),
            None => self.phase.idle_agent().map(|_| AgentActivity::Idle),
        };
        PairStatus {
            session: Some((**self.snapshot.load()).clone()),
            awake: self.phase.idle_agent().is_some() || running.is_some(),
            busy: running.is_some(),
            queued: self.queue.len(),
            current_turn,
            activity,
            budget_warning: self.budget_warning,
        }
    }

    /// Stops the idle agent in the background (idle → retiring); the slot returns when it is
    /// gone.
    pub(super) fn retire_agent(&mut self, why: &'static str) {
        let Some(agent) = self.phase.take_idle_agent() else {
            return;
        };
        tracing::info!(pair = %self.pair, session = %self.id, pid = agent.mark().pid, why, "stopping the agent");
        let myself = self.myself.clone();
        self.phase = Phase::Retiring {
            stop: tokio::spawn(async move {
                agent.stop(StopGrace::default()).await;
                let _ = myself.cast(SessionMsg::Retired);
            }),
        };
    }

    /// The agent being stopped is gone: retiring → asleep.
    pub(super) async fn retired(&mut self) {
        if !matches!(self.phase, Phase::Retiring { .. }) {
            // A shutdown or deletion already waited for it.
            return;
        }
        self.phase = Phase::Asleep;
        self.note(vec![
            Change::SetProcessState(ProcessState::Stopped),
            Change::SetAgentProcess(None),
        ])
        .await;
        self.answer_sleepers();
    }

    pub(super) fn evict(&mut self, permit: u64) {
        match self.phase {
            // Already stopping: the slot comes back when it is gone.
            Phase::Retiring { .. } => {}
            Phase::Idle { .. } => {
                self.shared.metrics.evictions.inc();
                self.retire_agent("evicted to free a process slot");
            }
            Phase::Asleep | Phase::Working { .. } | Phase::Stopping { .. } | Phase::Stopped => {
                let _ = self.shared.pool.cast(PoolMsg::Declined { id: permit });
            }
        }
    }

    pub(super) async fn health_check(&mut self) {
        let shared = self.shared.clone();
        let settings = shared.config.settings();
        if let Some(agent) = self.phase.idle_agent() {
            let pgid = agent.mark().pgid;
            if agent.conversation.has_exited() || !group_alive(pgid).await {
                tracing::warn!(pair = %self.pair, session = %self.id, pgid, "health check: the idle agent is gone");
                self.shared.metrics.health_failures.inc();
                self.retire_agent("its process is gone");
            }
        }
        let Some(running) = self.phase.running() else {
            return;
        };
        let age = running.started.elapsed();
        let stuck_start = running.interrupter.is_none()
            && age > self.shared.agent_start_limit() + Duration::from_secs(5);
        let vanished = match running.pgid {
            Some(pgid) => age > settings.health_check_interval && !group_alive(pgid).await,
            None => false,
        };
        if stuck_start || vanished {
            self.shared.metrics.health_failures.inc();
            tracing::warn!(pair = %self.pair, session = %self.id, stuck_start, vanished, "health check: failing the job in flight");
            let reason = if stuck_start {
                TurnError::Spawn {
                    code: iris_core::ErrorCode::Timeout,
                    reason: format!("the agent did not become ready within {age:?}"),
                }
            } else {
                TurnError::AgentExited {
                    code: None,
                    signal: None,
                    stderr_tail: "the agent's process group vanished without an exit event".into(),
                }
            };
            self.abort_running(reason).await;
        }
    }

    /// Counts an agent crash; past the budget the session goes to status `error`.
    pub(super) async fn count_crash(&mut self) {
        let shared = self.shared.clone();
        let settings = shared.config.settings();
        let now = Instant::now();
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|at| now.duration_since(*at) > settings.crash_window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() > settings.crash_limit.get() {
            tracing::error!(pair = %self.pair, session = %self.id, crashes = self.crashes.len(), window = ?settings.crash_window, "the agent keeps crashing; the session goes to status error until it is woken");
            self.apply_or_log(vec![Change::SetStatus(SessionStatus::Error)])
                .await;
            let reason = TurnError::Interrupted {
                reason: format!(
                    "the agent crashed {} times within {:?}; wake the session to try again",
                    self.crashes.len(),
                    settings.crash_window
                ),
            };
            self.fail_queued(reason).await;
        }
    }

    /// When the timer should next fire: the idle timeout of an idle agent, or passivation of a
    /// session with nothing alive.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if !self.queue.is_empty() {
            return None;
        }
        match &self.phase {
            Phase::Idle { since, .. } => {
                let team = self.shared.config.team(&self.pair.to)?;
                Some(*since + team.effective_idle_timeout(self.shared.config.settings()))
            }
            Phase::Asleep => {
                Some(self.last_activity + self.shared.config.settings().passivate_after)
            }
            _ => None,
        }
    }

    /// Keeps one timer armed no later than the current deadline. Later deadlines do not
    /// re-arm it: when it fires early, [`Self::tick`] re-arms for the time left.
    pub(super) fn rearm(&mut self) {
        let Some(deadline) = self.deadline() else {
            return;
        };
        if let Some((armed, timer)) = &self.timer
            && *armed <= deadline
            && !timer.is_finished()
        {
            return;
        }
        if let Some((_, old)) = self.timer.take() {
            old.abort();
        }
        let after = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let timer = self.myself.send_after(after, || SessionMsg::Tick);
        self.timer = Some((deadline, timer));
    }

    pub(super) fn tick(&mut self) {
        self.timer = None;
        let Some(deadline) = self.deadline() else {
            return;
        };
        if Instant::now() < deadline {
            return; // rearm() sets the timer for the time left
        }
        if self.phase.idle_agent().is_some() {
            self.shared.metrics.idle_stops.inc();
            self.retire_agent("idle timeout");
        } else {
            tracing::debug!(pair = %self.pair, "passivating an idle session");
            self.myself.stop(Some("passivated".into()));
        }
    }

    pub(super) async fn shutdown(&mut self, grace: StopGrace, reply: RpcReplyPort<()>) {
        self.fail_queued(TurnError::Interrupted {
            reason: "the node is shutting down".into(),
        })
        .await;
        match std::mem::replace(&mut self.phase, Phase::Stopped) {
            // A second shutdown while one waits takes its place (the first caller's reply is
            // dropped, and it sees the actor stop).
            Phase::Working {
                running,
                sleep_after,
            }
            | Phase::Stopping {
                running,
                sleep_after,
                ..
            } => {
                // Let the turn in flight finish within the grace; job_done completes the
                // shutdown.
                self.phase = Phase::Stopping {
                    running,
                    sleep_after,
                    grace,
                    reply,
                };
                // The timer ends by itself; if the actor stops first, its message goes nowhere.
                drop(
                    self.myself
                        .send_after(grace.after_stdin_close, || SessionMsg::ShutdownDeadline),
                );
            }
            other => {
                self.phase = other;
                self.finish_shutdown(grace, reply).await;
            }
        }
    }

    pub(super) async fn shutdown_deadline(&mut self) {
        if matches!(self.phase, Phase::Stopping { .. }) {
            self.abort_running(TurnError::Interrupted {
                reason: "the node shut down before the turn finished".into(),
            })
            .await;
        }
    }

    /// Stops the agent and the actor: → stopped.
    pub(super) async fn finish_shutdown(&mut self, grace: StopGrace, reply: RpcReplyPort<()>) {
        self.stop_agent(grace).await;
        self.phase = Phase::Stopped;
        self.settle_bookings().await;
        let _ = reply.send(());
        self.myself.stop(Some("shutdown".into()));
    }

    /// Stops the agent, if any (waiting for it), and records that it is gone: idle or
    /// retiring → asleep. A job in flight is not touched (its worker holds the agent).
    pub(super) async fn stop_agent(&mut self, grace: StopGrace) {
        match std::mem::replace(&mut self.phase, Phase::Asleep) {
            // Its `Retired` may never be handled now: the stop is recorded here.
            Phase::Retiring { stop } => {
                let _ = stop.await;
            }
            Phase::Idle { agent, .. } => agent.stop(grace).await,
            other => {
                self.phase = other;
                return;
            }
        }
        self.apply_or_log(vec![
            Change::SetProcessState(ProcessState::Stopped),
            Change::SetAgentProcess(None),
        ])
        .await;
    }

    /// Stops the agent, deletes the record durably, then the transcript if asked.
    pub(super) async fn delete(
        &mut self,
        delete_transcript: bool,
    ) -> Result<Deletion, RuntimeError> {
        self.fail_queued(TurnError::Interrupted {
            reason: "the session was deleted".into(),
        })
        .await;
        self.abort_running(TurnError::Interrupted {
            reason: "the session was deleted".into(),
        })
        .await;
        self.stop_agent(StopGrace::default()).await;
        self.phase = Phase::Stopped;
        let deleted = self.shared.store.delete(self.id).await?;
        let transcript = if delete_transcript {
            remove_transcript(&self.shared, &self.pair, &self.snapshot.load()).await
        } else {
            TranscriptRemoval::NotRequested
        };
        tracing::info!(pair = %self.pair, session = %self.id, ?transcript, "session deleted");
        Ok(Deletion {
            deleted,
            transcript,
        })
    }

    /// The actor is stopping (normally, or after a failure): nothing it owns may outlive it.
    /// Callers of unfinished turns get `Interrupted`, and the agent's group is killed.
    pub(super) async fn abandon_everything(&mut self) {
        if let Some((_, timer)) = self.timer.take() {
            timer.abort();
        }
        let reason = TurnError::Interrupted {
            reason: "the session stopped".into(),
        };
        self.fail_queued(reason.clone()).await;
        self.abort_running(reason).await;
        self.stop_agent(StopGrace::default()).await;
        self.phase = Phase::Stopped;
        self.settle_bookings().await;
        self.answer_sleepers();
    }

    /// The end of a compaction: the count is reset only when the agent confirmed it; a failed
    /// one changes nothing but its cost (the status goes back to what it was).
    pub(super) async fn finish_compaction(
        &mut self,
        outcome: Result<(), String>,
        previous: SessionStatus,
        usage: Option<iris_core::UsageTotals>,
    ) -> Result<SessionRecord, RuntimeError> {
        let cost = usage.map(Change::AddUsage);
        match outcome {
            Ok(()) => {
                self.auto_compaction_paused = false;
                let mut changes = vec![
                    Change::ResetMessageCount,
                    Change::SetStatus(SessionStatus::Active),
                ];
                changes.extend(cost);
                self.apply(changes).await
            }
            Err(reason) => {
                let mut changes = vec![Change::SetStatus(previous)];
                changes.extend(cost);
                self.apply(changes).await?;
                Err(RuntimeError::Agent {
                    pair: self.pair.clone(),
                    code: iris_core::ErrorCode::ProcessError,
                    reason: format!(
                        "the conversation was not compacted and nothing changed: {reason}"
                    ),
                })
            }
        }
    }
    /// Queues the compaction a caller asked for, behind the jobs already queued.
    pub(super) async fn compact(
        &mut self,
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    ) {
        if let Err(error) = self.refuse_new_work() {
            let _ = reply.send(Err(error));
            return;
        }
        let previous = self.snapshot.load().status;
        self.apply_or_log(vec![Change::SetStatus(SessionStatus::Compacting)])
            .await;
        self.queue.push_back(Job::Compact(Some(reply), previous));
    }

    /// Queues a compaction when the compaction policy says the conversation has grown enough
    /// (`[settings.compaction]`), after a turn: never on a plain mutation of the count, never
    /// while one is queued or the session is not `active`, and not again after an automatic one
    /// failed (until one succeeds). It runs after the turns already queued.
    pub(super) async fn compact_if_due(&mut self) {
        let record = self.snapshot.load_full();
        let policy = &self.shared.config.settings().compaction;
        let queued = self.queue.iter().any(|job| matches!(job, Job::Compact(..)));
        if self.auto_compaction_paused
            || queued
            || self.phase.is_stopping()
            || record.status != SessionStatus::Active
            || !policy.should_compact(&record, Timestamp::now())
        {
            return;
        }
        tracing::info!(pair = %self.pair, session = %self.id, messages = record.message_count, "the conversation is due for compaction by the compaction policy");
        self.apply_or_log(vec![Change::SetStatus(SessionStatus::Compacting)])
            .await;
        self.queue
            .push_back(Job::Compact(None, SessionStatus::Active));
    }
}

/// Whether any process of the group is alive, judged from /proc off the actor's thread.
async fn group_alive(pgid: u32) -> bool {
    tokio::task::spawn_blocking(move || !iris_agent::procfs::live_group_members(pgid).is_empty())
        .await
        .unwrap_or(true)
}
