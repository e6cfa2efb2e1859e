//! The turn queue: tells come in, one job at a time goes to a worker, and a finished turn is
//! booked durably before its callers hear of it.

use super::*;

impl SessionState {
    pub(super) async fn tell(
        &mut self,
        from: iris_core::TeamName,
        message: String,
    ) -> Result<Ticket, RuntimeError> {
        if self.stopping.is_some() {
            return Err(RuntimeError::ShuttingDown);
        }
        self.fail_fast()?;
        let depth = self.shared.config.settings().queue_depth.get();
        if self.queued_turns() >= depth {
            return Err(RuntimeError::QueueFull {
                pair: self.pair.clone(),
                depth,
            });
        }
        let seq = self.next_seq()?;
        let (progress, ticket) = TurnProgress::new(self.id, TurnId::new());
        let turn = Turn::queued(
            self.id,
            seq,
            from,
            message,
            self.text_limit(),
            progress.clone(),
        );
        if !self.starts_at_once() {
            // A turn that starts in this very handler gets its `running` row straight away;
            // writing a `queued` row first would only cost a write.
            self.enqueue(Mutation::PutTurn {
                turn: turn.row.clone(),
                retain: self.retain(),
            })
            .await;
        }
        tracing::debug!(pair = %self.pair, session = %self.id, turn = %progress.turn_id, seq, "turn queued");
        self.shared.metrics.tells.inc();
        self.queue.push_back(Job::Turn(Box::new(turn)));
        Ok(ticket)
    }

    /// The turns waiting in the queue (not the one running).
    pub(super) fn queued_turns(&self) -> usize {
        self.queue
            .iter()
            .filter(|j| matches!(j, Job::Turn(_)))
            .count()
    }

    /// Whether a job queued now starts within this message's handler (`run_next`): nothing
    /// runs, no agent is being stopped, the session is not stopping, and nothing waits ahead.
    fn starts_at_once(&self) -> bool {
        self.running.is_none()
            && self.retiring.is_none()
            && self.stopping.is_none()
            && self.queue.is_empty()
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

    /// Starts the next job when nothing runs and no agent is being stopped.
    pub(super) async fn run_next(&mut self) {
        while self.running.is_none() && self.retiring.is_none() {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            match job {
                Job::Turn(turn) => {
                    let message = turn.message.clone();
                    self.start_job(Job::Turn(turn), Some(message)).await;
                }
                Job::Wake(reply) if self.agent.is_some() => {
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

    /// Hands the job (and the agent, if one is idle) to a worker task.
    pub(super) async fn start_job(&mut self, mut kind: Job, message: Option<String>) {
        self.jobs += 1;
        let job = self.jobs;
        let agent = self.agent.take();
        let interrupter = agent.as_ref().map(|a| a.conversation.interrupter());
        let activity = agent.as_ref().map(|a| a.conversation.activity());
        let pgid = agent.as_ref().map(|a| a.mark().pgid);
        let mut changes = vec![Change::SetProcessState(if agent.is_some() {
            ProcessState::Processing
        } else {
            ProcessState::Spawning
        })];
        let (progress, row) = match &mut kind {
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
                (Some(turn.progress.clone()), Some(row))
            }
            Job::Wake(_) | Job::Compact(..) => (None, None),
        };
        match row {
            // One write for the record's transient state and the turn's `running` row.
            Some(row) => {
                self.publish_changes(&changes);
                self.enqueue(Mutation::RecordTurn {
                    session_id: self.id,
                    changes,
                    turn: row,
                    retain: self.retain(),
                })
                .await;
            }
            None => self.note(changes).await,
        }
        let launch = LaunchContext {
            shared: self.shared.clone(),
            session: self.myself.clone(),
            pair: self.pair.clone(),
            id: self.id,
        };
        let worker = Worker(tokio::spawn(turns::work(turns::WorkOrder {
            launch,
            record: (**self.snapshot.load()).clone(),
            agent,
            job,
            message,
            progress,
            limits: self.turn_limits(),
            myself: self.myself.clone(),
        })));
        self.running = Some(Box::new(Running {
            job,
            kind,
            worker,
            interrupter,
            activity,
            pgid,
            started: Instant::now(),
            cancelled: None,
        }));
    }

    /// The limits of a turn of this pair's agent: `response_timeout`, and the receiving team's
    /// `tool_timeout` and `turn_timeout` (its own, or the settings').
    fn turn_limits(&self) -> TurnLimits {
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

    pub(super) async fn agent_up(
        &mut self,
        job: u64,
        launched: Launched,
        interrupter: Interrupter,
        activity: tokio::sync::watch::Receiver<Activity>,
    ) {
        let Some(running) = self.running.as_mut().filter(|r| r.job == job) else {
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
    pub(super) async fn job_done(&mut self, mut done: WorkerDone) {
        let Some(running) = self.running.take_if(|r| r.job == done.job) else {
            return;
        };
        let running = *running;
        let crashed = matches!(done.result, Err(TurnError::AgentExited { .. }));
        let agent_alive = done.agent.is_some();
        self.agent = done.agent.take();
        self.idle_since = Instant::now();
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
                self.compact_if_due().await;
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
                        turns::error_message(report)
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
        if self.sleep_after_turn {
            self.sleep_after_turn = false;
            self.retire_agent("put to sleep");
        }
        if self.agent.is_none() && self.retiring.is_none() {
            // Otherwise `retired` answers them once the agent is gone.
            self.answer_sleepers();
        }
        if let Some((grace, reply)) = self.stopping.take() {
            self.finish_shutdown(grace, reply).await;
        }
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
            || self.stopping.is_some()
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
            None => turns::outcome_of(turn.id(), &done.result),
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
        let mut row = turns::finished_row(turn.row.clone(), &outcome, report, self.text_limit());
        row.history_lost = std::mem::take(&mut self.history_lost);
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

    /// Waits (bounded) until every finished turn's bookkeeping is durable and its callers are
    /// answered: before the actor stops, which would otherwise abort them.
    pub(super) async fn settle_bookings(&mut self) {
        let all = async { while self.bookings.join_next().await.is_some() {} };
        if tokio::time::timeout(BOOKING_SETTLE_LIMIT, all)
            .await
            .is_err()
        {
            tracing::error!(pair = %self.pair, session = %self.id, "the store did not confirm finished turns in time; their callers hear that the session stopped");
        }
    }
}

/// How long a stopping session waits for its last turns' bookkeeping (a few commits at most).
const BOOKING_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn outcome_name(outcome: &TellOutcome) -> &'static str {
    match outcome {
        TellOutcome::Completed(_) => "completed",
        TellOutcome::Failed { .. } => "failed",
        TellOutcome::Accepted { .. } => "accepted",
        TellOutcome::CallerTimeout { .. } => "caller_timeout",
    }
}
