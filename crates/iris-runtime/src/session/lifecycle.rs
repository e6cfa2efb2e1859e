//! Lifecycle of a session's agent: wake, sleep, cancel, eviction, health check, the timer
//! (idle timeout and passivation), shutdown, deletion and compaction.

use super::*;

impl SessionState {
    /// Starts the agent now (eager creation), in `pre_start`.
    pub(super) async fn start_agent_now(&mut self) -> Result<(), RuntimeError> {
        let launch = LaunchContext {
            shared: self.shared.clone(),
            session: self.myself.clone(),
            pair: self.pair.clone(),
            id: self.id,
        };
        let record = (**self.snapshot.load()).clone();
        let (agent, launched) = launch
            .start(&record)
            .await
            .map_err(|e| self.start_error(&e))?;
        agent.permit.set_busy(false);
        self.agent = Some(agent);
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
        if self.stopping.is_some() {
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
        if self.running.is_some() {
            self.sleep_after_turn = true;
            if force {
                self.cancel_running(TurnError::Cancelled).await;
            }
            return;
        }
        self.retire_agent("put to sleep");
        if self.retiring.is_none() {
            self.answer_sleepers();
        }
    }

    pub(super) fn answer_sleepers(&mut self) {
        for reply in self.sleepers.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }

    pub(super) async fn cancel(&mut self, drop_queue: bool) -> Cancelled {
        let dropped = if drop_queue {
            self.fail_queued(TurnError::Cancelled).await
        } else {
            0
        };
        let interrupted = self.running.is_some();
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
        let Some(running) = self.running.as_mut() else {
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
        let Some(running) = self.running.as_ref() else {
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

    /// Cancels every queued turn with `error`; returns how many there were.
    pub(super) async fn fail_queued(&mut self, error: TurnError) -> usize {
        let mut failed = 0;
        for job in std::mem::take(&mut self.queue) {
            match job {
                Job::Turn(turn) => {
                    failed += 1;
                    let outcome = TellOutcome::Failed {
                        turn_id: turn.id(),
                        error: error.clone(),
                    };
                    let row =
                        turns::finished_row(turn.row.clone(), &outcome, None, self.text_limit());
                    self.enqueue(Mutation::PutTurn {
                        turn: row,
                        retain: self.retain(),
                    })
                    .await;
                    turn.progress.finish(outcome);
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

    pub(super) fn inspect(&self) -> PairStatus {
        let current_turn = self.running.as_ref().and_then(|r| match &r.kind {
            Job::Turn(turn) => Some(turn.id()),
            _ => None,
        });
        // Read from the conversation's watch: the worker that holds the agent is not asked.
        let activity = match &self.running {
            Some(running) => Some(match &running.activity {
                Some(activity) => AgentActivity::of(&activity.borrow()),
                None => AgentActivity::Starting,
            }),
            None => self.agent.as_ref().map(|_| AgentActivity::Idle),
        };
        PairStatus {
            session: Some((**self.snapshot.load()).clone()),
            awake: self.agent.is_some() || self.running.is_some(),
            busy: self.running.is_some(),
            queued: self.queue.len(),
            current_turn,
            activity,
        }
    }

    /// Stops the idle agent in the background; the slot returns when it is gone.
    pub(super) fn retire_agent(&mut self, why: &'static str) {
        let Some(agent) = self.agent.take() else {
            return;
        };
        tracing::info!(pair = %self.pair, session = %self.id, pid = agent.mark().pid, why, "stopping the agent");
        let myself = self.myself.clone();
        self.retiring = Some(tokio::spawn(async move {
            agent.stop(StopGrace::default()).await;
            let _ = myself.cast(SessionMsg::Retired);
        }));
    }

    pub(super) async fn retired(&mut self) {
        self.retiring = None;
        self.note(vec![
            Change::SetProcessState(ProcessState::Stopped),
            Change::SetAgentProcess(None),
        ])
        .await;
        self.answer_sleepers();
    }

    pub(super) fn evict(&mut self, permit: u64) {
        if self.retiring.is_some() {
            // Already stopping: the slot comes back when it is gone.
            return;
        }
        if self.running.is_none() && self.agent.is_some() {
            self.shared.metrics.evictions.inc();
            self.retire_agent("evicted to free a process slot");
        } else {
            let _ = self.shared.pool.cast(PoolMsg::Declined { id: permit });
        }
    }

    pub(super) async fn health_check(&mut self) {
        let shared = self.shared.clone();
        let settings = shared.config.settings();
        if let Some(agent) = &self.agent {
            let pgid = agent.mark().pgid;
            if agent.conversation.has_exited() || !group_alive(pgid).await {
                tracing::warn!(pair = %self.pair, session = %self.id, pgid, "health check: the idle agent is gone");
                self.shared.metrics.health_failures.inc();
                self.retire_agent("its process is gone");
            }
        }
        let Some(running) = self.running.as_ref() else {
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

    // ----- timers -----

    /// When the timer should next fire: the idle timeout of an idle agent, or passivation of a
    /// session with nothing alive.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.running.is_some() || self.retiring.is_some() || !self.queue.is_empty() {
            return None;
        }
        if self.agent.is_some() {
            let team = self.shared.config.team(&self.pair.to)?;
            return Some(
                self.idle_since + team.effective_idle_timeout(self.shared.config.settings()),
            );
        }
        Some(self.last_activity + self.shared.config.settings().passivate_after)
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
        if self.agent.is_some() {
            self.shared.metrics.idle_stops.inc();
            self.retire_agent("idle timeout");
        } else {
            tracing::debug!(pair = %self.pair, "passivating an idle session");
            self.myself.stop(Some("passivated".into()));
        }
    }

    // ----- stopping -----

    pub(super) async fn shutdown(&mut self, grace: StopGrace, reply: RpcReplyPort<()>) {
        self.fail_queued(TurnError::Interrupted {
            reason: "the node is shutting down".into(),
        })
        .await;
        if self.running.is_some() {
            // Let the turn in flight finish within the grace; job_done completes the shutdown.
            self.stopping = Some((grace, reply));
            // The timer ends by itself; if the actor stops first, its message goes nowhere.
            drop(
                self.myself
                    .send_after(grace.after_stdin_close, || SessionMsg::ShutdownDeadline),
            );
            return;
        }
        self.finish_shutdown(grace, reply).await;
    }

    pub(super) async fn shutdown_deadline(&mut self) {
        if self.stopping.is_some() && self.running.is_some() {
            self.abort_running(TurnError::Interrupted {
                reason: "the node shut down before the turn finished".into(),
            })
            .await;
        }
    }

    pub(super) async fn finish_shutdown(&mut self, grace: StopGrace, reply: RpcReplyPort<()>) {
        self.stop_agent(grace).await;
        self.settle_bookings().await;
        let _ = reply.send(());
        self.myself.stop(Some("shutdown".into()));
    }

    /// Stops the agent, if any (waiting for it), and records that it is gone.
    pub(super) async fn stop_agent(&mut self, grace: StopGrace) {
        if let Some(retiring) = self.retiring.take() {
            let _ = retiring.await;
        }
        let Some(agent) = self.agent.take() else {
            return;
        };
        agent.stop(grace).await;
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
        if self.running.is_some() {
            self.abort_running(reason).await;
        }
        self.stop_agent(StopGrace::default()).await;
        self.settle_bookings().await;
        self.answer_sleepers();
    }

    // ----- compaction -----

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
}

/// Whether any process of the group is alive, judged from /proc off the actor's thread.
async fn group_alive(pgid: u32) -> bool {
    tokio::task::spawn_blocking(move || !iris_agent::procfs::live_group_members(pgid).is_empty())
        .await
        .unwrap_or(true)
}
