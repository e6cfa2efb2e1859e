//! The public [`Runtime`] handle.

use std::sync::Arc;
use std::time::Duration;

use iris_agent::containment::ContainmentMode;
use iris_agent::process::StopGrace;
use iris_core::config::Config;
use iris_core::{
    CompactionPolicy, Pair, ProcessState, SessionFilter, SessionId, SessionRecord, SessionStats,
    TeamName, Timestamp, TurnId, TurnRecord,
};
use iris_store::{Change, Store};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::error::RuntimeError;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::pool::{PoolArgs, PoolMsg, PoolView, ProcessPool};
use crate::registry::Live;
use crate::registry::{Registry, RegistryMsg};
use crate::session::SessionHandle;
use crate::session::{
    Cancelled, Deletion, PairStatus, SessionMsg, Ticket, TranscriptRemoval, shutdown_timeout,
};
use crate::shared::Shared;
use crate::startup::{self, StartupReport};
use crate::tell::{TellOptions, TellOutcome, TurnError, TurnEvent, Wait};

/// How long a message to a live session may wait for its answer.
const SESSION_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `shutdown` waits for the store's writer to commit what is queued and release the
/// file: a few commits on a healthy disk; only a stalled disk comes near it.
const STORE_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// A cheap, cloneable handle to a running iris runtime. `Send + Sync`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use iris_core::{TeamName, config::Config};
/// use iris_runtime::Runtime;
///
/// let config = Config::load("config/iris.toml".as_ref())?;
/// let store = iris_store::Store::open(config.database().path().ok_or("in-memory")?)?;
/// let runtime = Runtime::start(config, store).await?;
/// let (alpha, beta) = (TeamName::new("alpha")?, TeamName::new("beta")?);
/// let session = runtime.get_or_create_session(&alpha, &beta).await?;
/// println!("alpha->beta is session {}", session.session_id);
/// runtime.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
    /// The live sessions, as the registry publishes them.
    live: Arc<Live>,
    registry: ActorRef<RegistryMsg>,
    startup: Arc<StartupReport>,
}

impl Runtime {
    /// Runs the start-up sequence (validate teams, reset process states, reap leftovers of a
    /// previous run), then starts the registry.
    pub async fn start(config: Config, store: Store) -> Result<Runtime, RuntimeError> {
        Runtime::start_with_clock(config, store, Clock::system()).await
    }

    /// [`Runtime::start`], reading the time of day for budgets from `clock` (which budget day
    /// a spend counts on, so when daily caps reset).
    pub async fn start_with_clock(
        config: Config,
        store: Store,
        clock: Clock,
    ) -> Result<Runtime, RuntimeError> {
        let containment = startup::containment(&config).await?;
        let report =
            startup::prepare(&config, &store, &containment, Duration::from_secs(2)).await?;
        let metrics = Arc::new(Metrics::default());
        let settings = config.settings();
        let pool_args = PoolArgs {
            max: settings.max_processes.get(),
            health_check_interval: settings.health_check_interval,
            metrics: metrics.clone(),
        };
        let (pool, _join) = Actor::spawn(None, ProcessPool, pool_args)
            .await
            .map_err(|e| RuntimeError::Start {
                what: "the process pool",
                reason: e.to_string(),
            })?;
        let in_force = crate::budget::in_force::InForce::load(&config, &store)?;
        let shared = Shared::new(config, store, pool, metrics, containment, clock, in_force);
        let live = Arc::new(Live::new());
        let (registry, _join) = Actor::spawn(None, Registry, (shared.clone(), live.clone()))
            .await
            .map_err(|e| RuntimeError::Start {
                what: "the registry",
                reason: e.to_string(),
            })?;
        Ok(Runtime {
            shared,
            live,
            registry,
            startup: Arc::new(report),
        })
    }

    /// Spend against every budget cap that is set (`iris budget`).
    pub fn budget(&self) -> Result<crate::budget::BudgetReport, RuntimeError> {
        crate::budget::report(&self.shared.budgets())
    }

    /// Sets the cap `key` names at run time (`teams.beta.as_receiver`, `node_daily`,
    /// `session`), over the configuration's, or with `None` goes back to the configuration's.
    /// Durable: it holds after a restart. In force for the next tell; a live agent whose
    /// spending limit no longer matches is launched again before its next turn. Answers the
    /// budgets as they are now.
    pub async fn set_budget_cap(
        &self,
        key: &str,
        cap: Option<iris_core::config::budget::Cap>,
    ) -> Result<crate::budget::BudgetReport, RuntimeError> {
        let shared = &self.shared;
        shared.check_open()?;
        let _one_at_a_time = shared.budget.setting.lock().await;
        let setting = match &cap {
            Some(cap) => crate::budget::in_force::checked(&shared.config, key, cap)?,
            None => iris_core::config::budget::CapKey::parse(key).map_err(|reason| {
                RuntimeError::InvalidBudgetCap {
                    key: key.to_owned(),
                    reason,
                }
            })?,
        };
        shared
            .store
            .set_budget_cap(setting.to_string(), cap)
            .await?;
        let in_force = crate::budget::in_force::InForce::load(&shared.config, &shared.store)?;
        shared.budget.put(in_force);
        match cap {
            Some(cap) => {
                tracing::info!(cap = %setting, limit = %cap, "a budget cap was set at run time")
            }
            None => {
                tracing::info!(cap = %setting, "a budget cap set at run time was removed; the configuration's applies")
            }
        }
        crate::budget::report(&shared.budgets())
    }

    /// The runtime's event stream: sessions' state, turns' lifecycle, budget alerts.
    pub fn events(&self) -> Arc<crate::events::EventBus> {
        self.shared.events.clone()
    }

    /// The configuration the runtime runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// What start-up found and did.
    pub fn startup_report(&self) -> &StartupReport {
        &self.startup
    }

    /// The pair's session, created if it does not exist. An existing live session is read
    /// without entering any mailbox.
    pub async fn get_or_create_session(
        &self,
        from: &TeamName,
        to: &TeamName,
    ) -> Result<Arc<SessionRecord>, RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        if let Some(handle) = self.live.get(&pair) {
            return Ok(handle.record());
        }
        Ok(self.obtain(pair, false).await?.record())
    }

    /// Creates the pair's session; `AlreadyExists` if it has one.
    pub async fn create_session(
        &self,
        from: &TeamName,
        to: &TeamName,
    ) -> Result<Arc<SessionRecord>, RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        Ok(self.obtain(pair, true).await?.record())
    }

    /// The pair's session, if it has one. Never creates.
    pub fn get_session(
        &self,
        from: &TeamName,
        to: &TeamName,
    ) -> Result<Option<Arc<SessionRecord>>, RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        if let Some(handle) = self.live.get(&pair) {
            return Ok(Some(handle.record()));
        }
        Ok(self.shared.store.get_by_pair(&pair)?.map(Arc::new))
    }

    /// The session with this id, if any.
    pub fn get_session_by_id(&self, id: &SessionId) -> Result<Option<SessionRecord>, RuntimeError> {
        Ok(self
            .shared
            .store
            .get_by_session_id(id)?
            .map(|stored| self.freshest(stored)))
    }

    /// Sessions matching `filter`, newest use first (the store's order).
    pub fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, RuntimeError> {
        let stored = self.shared.store.list(filter)?;
        Ok(stored.into_iter().map(|r| self.freshest(r)).collect())
    }

    /// A live session's own snapshot in place of its stored record: the actor publishes
    /// transient state (process state, agent process, current turn) at once, while the store
    /// may take up to its linger to commit it.
    fn freshest(&self, stored: SessionRecord) -> SessionRecord {
        let live = self.live.get(&stored.pair()).map(|h| h.record());
        match live {
            Some(record) if record.session_id == stored.session_id => (*record).clone(),
            _ => stored,
        }
    }

    /// Sets `last_used_at` to now.
    pub async fn record_usage(&self, id: &SessionId) -> Result<SessionRecord, RuntimeError> {
        self.mutate(id, vec![Change::TouchLastUsed(Timestamp::now())])
            .await
    }

    /// Adds `by` to the message count.
    pub async fn increment_message_count(
        &self,
        id: &SessionId,
        by: u64,
    ) -> Result<SessionRecord, RuntimeError> {
        self.mutate(id, vec![Change::IncrementMessageCount(by)])
            .await
    }

    /// Deletes the session with this id: its actor and agent stop, the record is deleted
    /// durably, and with `delete_transcript` the transcript file too (a failure to remove it is
    /// reported in the result). Deleting an unknown id deletes nothing, as in the original.
    pub async fn delete_session(
        &self,
        id: &SessionId,
        delete_transcript: bool,
    ) -> Result<Deletion, RuntimeError> {
        let Some(record) = self.shared.store.get_by_session_id(id)? else {
            return Ok(Deletion {
                deleted: None,
                transcript: TranscriptRemoval::NotRequested,
            });
        };
        let pair = record.pair();
        let answer = self
            .registry
            .call(
                |reply| RegistryMsg::Retire {
                    pair: pair.clone(),
                    expect: Some(*id),
                    delete_transcript,
                    reply,
                },
                Some(shutdown_timeout(&StopGrace::default())),
            )
            .await;
        unwrap_call(answer, || format!("deleting session {pair}"))?
    }

    /// Compacts the session with this id: status `compacting`, `/compact` to its agent if one
    /// runs, message count reset, status `active`; status `error` if the agent fails.
    pub async fn compact_session(&self, id: &SessionId) -> Result<SessionRecord, RuntimeError> {
        let timeout = self.shared.config.settings().response_timeout + Duration::from_secs(5);
        self.call_session(Target::Id(id), timeout, |reply| SessionMsg::Compact {
            reply,
        })
        .await
    }

    /// Takes a session out of status `error` after repeated failures of its actor, so the next
    /// request brings it up again. A no-op for a healthy session.
    pub async fn reset_session(&self, from: &TeamName, to: &TeamName) -> Result<(), RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        let answer = self
            .registry
            .call(
                |reply| RegistryMsg::Reset {
                    pair: pair.clone(),
                    reply,
                },
                Some(SESSION_CALL_TIMEOUT),
            )
            .await;
        unwrap_call(answer, || format!("resetting session {pair}"))?
    }

    // ----- tells -----

    /// Queues `message` as a turn of the `from`→`to` session (created if needed) and waits for
    /// it as `options.wait` says. Errors before the turn exists (unknown team, full queue, a
    /// session in status `error`, shutdown) are `Err`; everything after is a [`TellOutcome`].
    pub async fn tell(
        &self,
        from: &TeamName,
        to: &TeamName,
        message: impl Into<String>,
        options: TellOptions,
    ) -> Result<TellOutcome, RuntimeError> {
        Ok(self
            .tell_in_session(from, to, message, options)
            .await?
            .outcome)
    }

    /// [`Runtime::tell`], also naming the session that ran the turn (created by the tell if the
    /// pair had none), so a caller need not look it up again.
    pub async fn tell_in_session(
        &self,
        from: &TeamName,
        to: &TeamName,
        message: impl Into<String>,
        options: TellOptions,
    ) -> Result<Told, RuntimeError> {
        let began = tokio::time::Instant::now();
        let room_until = match options.wait {
            Wait::Async => Some(began),
            Wait::Complete => None,
            Wait::Timeout(limit) => Some(began + limit),
        };
        // A caller that does not wait for the end holds only the turn id: the turn's first
        // ledger row is committed for it, so the id can be looked up at once.
        let record_first_row = !matches!(options.wait, Wait::Complete);
        let mut turn = self
            .submit_waiting(
                from,
                to,
                message.into(),
                room_until,
                Submission {
                    record_first_row,
                    request_id: options.request_id,
                },
            )
            .await?;
        let outcome = match options.wait {
            Wait::Async => TellOutcome::Accepted {
                turn_id: turn.turn_id(),
            },
            Wait::Complete => turn.outcome().await,
            Wait::Timeout(limit) => {
                turn.outcome_within(limit.saturating_sub(began.elapsed()))
                    .await
            }
        };
        if !matches!(
            outcome,
            TellOutcome::Completed(_) | TellOutcome::Failed { .. }
        ) {
            self.first_row_recorded(&mut turn).await?;
        }
        Ok(Told {
            session_id: turn.session_id(),
            outcome,
        })
    }

    /// Queues a turn like [`Runtime::submit`], but a full queue is waited out: the tell waits
    /// for room (in the order room appears, racing other waiters) until `until`, or without
    /// limit when it is `None`. Only then, or when `until` has passed already, does it fail with
    /// `QueueFull`.
    pub async fn submit_when_room(
        &self,
        from: &TeamName,
        to: &TeamName,
        message: impl Into<String>,
        until: Option<tokio::time::Instant>,
    ) -> Result<TurnHandle, RuntimeError> {
        self.submit_waiting(from, to, message.into(), until, Submission::default())
            .await
    }

    /// [`Runtime::submit_when_room`], optionally with the turn's first row committed for the
    /// caller (see [`Runtime::first_row_recorded`]).
    async fn submit_waiting(
        &self,
        from: &TeamName,
        to: &TeamName,
        message: String,
        until: Option<tokio::time::Instant>,
        submission: Submission,
    ) -> Result<TurnHandle, RuntimeError> {
        let room = self.shared.room(&Pair::new(from.clone(), to.clone()));
        loop {
            // Registered before the attempt, so room made while it runs is not missed.
            let freed = room.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_submit(from, to, message.clone(), submission).await {
                Err(full @ RuntimeError::QueueFull { .. }) => {
                    let waited = match until {
                        None => {
                            freed.await;
                            true
                        }
                        Some(until) => tokio::time::timeout_at(until, freed).await.is_ok(),
                    };
                    if !waited {
                        self.shared.metrics.queue_full.inc();
                        return Err(full);
                    }
                }
                other => return other,
            }
        }
    }

    /// Queues a turn and returns its handle at once: its id, its event stream and its outcome.
    /// A full queue fails at once with `QueueFull` (see [`Runtime::submit_when_room`]).
    pub async fn submit(
        &self,
        from: &TeamName,
        to: &TeamName,
        message: impl Into<String>,
    ) -> Result<TurnHandle, RuntimeError> {
        let submitted = self
            .try_submit(from, to, message, Submission::default())
            .await;
        if let Err(RuntimeError::QueueFull { .. }) = &submitted {
            self.shared.metrics.queue_full.inc();
        }
        submitted
    }

    /// One attempt to queue a turn (a refusal is not counted: the caller may wait and retry).
    async fn try_submit(
        &self,
        from: &TeamName,
        to: &TeamName,
        message: impl Into<String>,
        submission: Submission,
    ) -> Result<TurnHandle, RuntimeError> {
        self.shared.check_open()?;
        // The caps that do not need the session, checked before it is created (a retry with a
        // request id goes to the session: it may join a turn that ran before the cap).
        if submission.request_id.is_none() {
            crate::budget::check(&self.shared.budgets(), None, from, to)?;
        }
        let message = message.into();
        let pair = Pair::new(from.clone(), to.clone());
        let ticket = self
            .call_session(Target::Pair(&pair), SESSION_CALL_TIMEOUT, |reply| {
                SessionMsg::Tell {
                    from: from.clone(),
                    message: message.clone(),
                    record_first_row: submission.record_first_row,
                    request_id: submission.request_id,
                    reply,
                }
            })
            .await?;
        Ok(TurnHandle { ticket })
    }

    /// Waits until the turn's first ledger row is durable, so its id can be looked up: the
    /// commit the session made for it, not a flush of every session's writes. A turn whose
    /// first row the store refused falls back to a flush, which reports the store's error.
    async fn first_row_recorded(&self, turn: &mut TurnHandle) -> Result<(), RuntimeError> {
        let pending = match turn.ticket.first_row.take() {
            Some(written) => written.await.ok(),
            None => None,
        };
        match pending {
            Some(pending) => pending.outcome().await.map(drop)?,
            None => self.shared.store.flush().await?,
        }
        Ok(())
    }

    /// A turn from the ledger, by id: queued, running, or finished (also after a restart).
    ///
    /// A turn's `queued` and `running` rows are written without being awaited, so a turn
    /// submitted a moment ago may not be visible yet (at most the store's linger, 2 ms by
    /// default); [`Runtime::tell`] returns a bare turn id only once its row is durable.
    pub fn turn(&self, turn_id: &TurnId) -> Result<Option<TurnRecord>, RuntimeError> {
        Ok(self.shared.store.turn(*turn_id)?)
    }

    /// The pair's most recent turns, newest first (from the ledger, so also after a restart).
    pub fn report(
        &self,
        from: &TeamName,
        to: &TeamName,
        limit: usize,
    ) -> Result<Vec<TurnRecord>, RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        let Some(record) = self.get_session(from, to)? else {
            return Err(RuntimeError::no_session_for(pair));
        };
        Ok(self.shared.store.turns(record.session_id, limit)?)
    }

    // ----- lifecycle -----

    /// Creates the pair's session if needed and starts its agent (spawn and handshake). Also
    /// takes the session out of status `error`.
    pub async fn wake(
        &self,
        from: &TeamName,
        to: &TeamName,
    ) -> Result<SessionRecord, RuntimeError> {
        self.shared.check_open()?;
        let pair = Pair::new(from.clone(), to.clone());
        let limit = self.shared.agent_start_limit() + SESSION_CALL_TIMEOUT;
        self.call_session(Target::Pair(&pair), limit, |reply| SessionMsg::Wake {
            reply,
        })
        .await
    }

    /// Wakes `from`→every other configured team, a few at a time. One answer per team.
    pub async fn wake_all(
        &self,
        from: &TeamName,
    ) -> Vec<(TeamName, Result<SessionRecord, RuntimeError>)> {
        const PARALLEL: usize = 4;
        let teams: Vec<TeamName> = self
            .shared
            .config
            .team_names()
            .filter(|team| *team != from && self.shared.config.hosts(team))
            .cloned()
            .collect();
        let mut answers = Vec::with_capacity(teams.len());
        for batch in teams.chunks(PARALLEL) {
            let mut wakes = tokio::task::JoinSet::new();
            for (index, team) in batch.iter().enumerate() {
                let (runtime, from, team) = (self.clone(), from.clone(), team.clone());
                wakes.spawn(async move { (index, runtime.wake(&from, &team).await) });
            }
            let mut results: Vec<Option<Result<SessionRecord, RuntimeError>>> =
                (0..batch.len()).map(|_| None).collect();
            while let Some(joined) = wakes.join_next().await {
                if let Ok((index, result)) = joined {
                    results[index] = Some(result);
                }
            }
            for (team, result) in batch.iter().zip(results) {
                let result = result.unwrap_or(Err(RuntimeError::ShuttingDown));
                answers.push((team.clone(), result));
            }
        }
        answers
    }

    /// Stops the pair's agent after the turn in flight (`force`: interrupts it first). Queued
    /// turns are cancelled. A pair without a live session is asleep already.
    pub async fn sleep(
        &self,
        from: &TeamName,
        to: &TeamName,
        force: bool,
    ) -> Result<(), RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        let limit = self.sleep_limit(to, force);
        let answer = self
            .call_live(&pair, limit, |reply| SessionMsg::Sleep { force, reply })
            .await;
        match answer {
            Some(slept) => slept?,
            None => Ok(()), // no live session: asleep already
        }
    }

    /// How long a sleep of `to`'s agent may take to answer: the agent's stop, after (unless
    /// `force`) the turn in flight, which runs until the team's `turn_timeout` if it has one,
    /// and may otherwise be silent in a tool for its `tool_timeout` plus the stall limit.
    fn sleep_limit(&self, to: &TeamName, force: bool) -> Duration {
        let settings = self.shared.config.settings();
        let stop = settings.response_timeout + shutdown_timeout(&StopGrace::default());
        if force {
            return stop;
        }
        let tool = self
            .shared
            .config
            .tool_timeout_for(to)
            .unwrap_or(settings.tool_timeout);
        // A turn that keeps making progress runs until its cap, if it has one.
        let turn = self
            .shared
            .config
            .turn_timeout_for(to)
            .flatten()
            .unwrap_or(tool + settings.response_timeout);
        stop + turn
    }

    /// Interrupts the pair's turn in flight; with `drop_queue`, cancels its queued turns too
    /// (each fails as `Cancelled`).
    pub async fn cancel(
        &self,
        from: &TeamName,
        to: &TeamName,
        drop_queue: bool,
    ) -> Result<Cancelled, RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        self.call_live(&pair, SESSION_CALL_TIMEOUT, |reply| SessionMsg::Cancel {
            drop_queue,
            reply,
        })
        .await
        .unwrap_or(Ok(Cancelled::default()))
    }

    /// Deletes the pair's session and its transcript, then creates a new one, as the original
    /// does.
    pub async fn reboot(
        &self,
        from: &TeamName,
        to: &TeamName,
    ) -> Result<SessionRecord, RuntimeError> {
        self.shared.check_open()?;
        if let Some(record) = self.get_session(from, to)? {
            self.delete_session(&record.session_id, true).await?;
        }
        Ok((*self.get_or_create_session(from, to).await?).clone())
    }

    /// What the pair's session is doing (never creates one).
    pub async fn status(&self, from: &TeamName, to: &TeamName) -> Result<PairStatus, RuntimeError> {
        let pair = Pair::new(from.clone(), to.clone());
        self.shared.check_teams(&pair)?;
        let live = self
            .call_live(&pair, SESSION_CALL_TIMEOUT, |reply| SessionMsg::Inspect {
                reply,
            })
            .await;
        if let Some(Ok(status)) = live {
            return Ok(status);
        }
        Ok(PairStatus {
            session: self.shared.store.get_by_pair(&pair)?,
            awake: false,
            busy: false,
            queued: 0,
            current_turn: None,
            activity: None,
            budget_warning: false,
        })
    }

    /// Whether the pair's agent process is alive.
    pub async fn is_awake(&self, from: &TeamName, to: &TeamName) -> Result<bool, RuntimeError> {
        Ok(self.status(from, to).await?.awake)
    }

    /// The runtime's counters and histograms.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The process pool's occupancy.
    pub async fn pool(&self) -> Result<PoolView, RuntimeError> {
        let answer = self
            .shared
            .pool
            .call(
                |reply| PoolMsg::Inspect { reply },
                Some(SESSION_CALL_TIMEOUT),
            )
            .await;
        unwrap_call(answer, || "the process pool".to_owned())
    }

    /// Whether `record` should be compacted now, by the configured thresholds: what a session
    /// checks after each completed turn, to compact its conversation by itself.
    pub fn should_compact(&self, record: &SessionRecord) -> bool {
        let policy: &CompactionPolicy = &self.shared.config.settings().compaction;
        policy.should_compact(record, Timestamp::now())
    }

    /// Totals by status and by process state, plus live actors, live agent processes and the
    /// store's write batches.
    pub fn stats(&self) -> RuntimeStats {
        let sessions = self.shared.store.stats();
        RuntimeStats {
            live_processes: sessions
                .by_process_state
                .iter()
                .filter(|(state, _)| **state != ProcessState::Stopped)
                .map(|(_, n)| *n)
                .sum(),
            sessions,
            live_actors: self.live.len() as u64,
            store_write_batches: self.shared.store.writer_stats().batches,
            containment: self.shared.containment.mode(),
            agent_cpu: self.shared.agent_cpu(),
        }
    }

    /// How agents are contained on this node.
    pub fn containment(&self) -> ContainmentMode {
        self.shared.containment.mode()
    }

    /// The CPU time each live agent (with everything it started) has used, by pair, where the
    /// containment measures it. Reads one small kernel file per agent.
    pub fn agent_cpu(&self) -> Vec<(Pair, Duration)> {
        self.shared.agent_cpu()
    }

    /// Agent processes spawned since start.
    pub fn agent_spawns(&self) -> u64 {
        self.shared.metrics.spawns.get()
    }

    /// Live session actors.
    pub fn live_sessions(&self) -> usize {
        self.live.len()
    }

    /// Stops every session (their agents gracefully, within `grace` per step) and the registry,
    /// then closes the store: when this returns, what the sessions wrote is durable and the
    /// database file is released (it can be opened again at once, in this process or another).
    /// Every [`Store`] handle, the caller's own clones included, is closed with it.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        let stop = StopGrace {
            after_stdin_close: grace,
            after_sigterm: grace,
            after_sigkill: Duration::from_secs(5),
        };
        let handles: Vec<SessionHandle> = self.live.iter().map(|e| e.value().clone()).collect();
        // Every session stops its agent at the same time; each stop is bounded.
        let stops: Vec<_> = handles
            .into_iter()
            .map(|h| {
                tokio::spawn(async move {
                    let _ = h
                        .actor
                        .call(
                            |reply| SessionMsg::Shutdown { grace: stop, reply },
                            Some(shutdown_timeout(&stop)),
                        )
                        .await;
                })
            })
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
        if let Err(error) = self
            .registry
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
            .await
        {
            tracing::warn!(%error, "the registry did not stop in time");
        }
        self.shared.pool.stop(Some("shutdown".into()));
        if let Err(error) = self.shared.store.close(STORE_CLOSE_LIMIT).await {
            tracing::warn!(%error, "the store did not close in time");
        }
    }

    /// Routes `changes` through the session's actor, the only writer of its record.
    async fn mutate(
        &self,
        id: &SessionId,
        changes: Vec<Change>,
    ) -> Result<SessionRecord, RuntimeError> {
        self.call_session(Target::Id(id), SESSION_CALL_TIMEOUT, |reply| {
            SessionMsg::Mutate {
                changes: changes.clone(),
                reply,
            }
        })
        .await
    }

    /// Asks the target session's actor, bringing it up if needed (a pair's session is created
    /// if it has none; a session id never creates). An actor can stop between the lookup and
    /// the call (passivation drops what is queued behind it), so a call that finds it gone is
    /// retried a few times against a fresh actor; a session deleted meanwhile is `NotFound`.
    async fn call_session<T: Send + 'static>(
        &self,
        target: Target<'_>,
        timeout: Duration,
        message: impl Fn(RpcReplyPort<Result<T, RuntimeError>>) -> SessionMsg,
    ) -> Result<T, RuntimeError> {
        // Each retry meets a freshly started actor, which passivates only after a whole
        // `passivate_after` without messages; several in a row happen only when that is tiny and
        // the machine is loaded (seen in tests with 1 ms on a busy machine).
        const ATTEMPTS: u32 = 6;
        let mut attempt = 0;
        loop {
            let handle = match target {
                Target::Pair(pair) => match self.live_handle(pair) {
                    Some(handle) => handle,
                    None => self.obtain(pair.clone(), false).await?,
                },
                Target::Id(id) => self.handle_for(id).await?,
            };
            let answer = handle.actor.call(&message, Some(timeout)).await;
            let answer = unwrap_call(answer, || match target {
                Target::Pair(pair) => format!("session {pair}"),
                Target::Id(id) => format!("session {id}"),
            });
            let answer = match target {
                Target::Id(id) => self.gone_if_deleted(id, answer),
                Target::Pair(_) => answer,
            };
            match answer {
                Err(RuntimeError::ShuttingDown)
                    if attempt + 1 < ATTEMPTS && self.shared.check_open().is_ok() =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt))).await;
                }
                other => return other?,
            }
        }
    }

    /// An actor that went away mid-call was usually stopped by a deletion: say `NotFound` then,
    /// not that the runtime is shutting down.
    fn gone_if_deleted<T>(
        &self,
        id: &SessionId,
        result: Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        match result {
            Err(RuntimeError::ShuttingDown)
                if matches!(self.shared.store.get_by_session_id(id), Ok(None)) =>
            {
                Err(RuntimeError::no_session_with_id(*id))
            }
            other => other,
        }
    }

    /// The pair's live handle, if it has a live actor.
    fn live_handle(&self, pair: &Pair) -> Option<SessionHandle> {
        self.live.get(pair).map(|h| h.value().clone())
    }

    /// Asks the pair's live actor, if it has one (never brings a session up).
    async fn call_live<T: Send + 'static>(
        &self,
        pair: &Pair,
        timeout: Duration,
        message: impl Fn(RpcReplyPort<T>) -> SessionMsg,
    ) -> Option<Result<T, RuntimeError>> {
        // An actor that passivated between the lookup and the call never saw the message: it is
        // asleep, or (if a request brought it back meanwhile) the new actor gets the message.
        // Passivation never surfaces as an error.
        const ATTEMPTS: u32 = 6;
        let mut attempt = 0;
        loop {
            let handle = self.live_handle(pair)?;
            let answer = handle.actor.call(&message, Some(timeout)).await;
            match unwrap_call(answer, || format!("session {pair}")) {
                Err(RuntimeError::ShuttingDown)
                    if attempt + 1 < ATTEMPTS && self.shared.check_open().is_ok() =>
                {
                    attempt += 1;
                    // Gone once it has stopped; the registry then forgets it.
                    let _ = handle.actor.wait(Some(SESSION_CALL_TIMEOUT)).await;
                    // Still listed until the registry hears that it stopped (which a loaded
                    // machine can delay): no actor is live, as when the map has none.
                    let stopped = handle.actor.get_id();
                    if self
                        .live_handle(pair)
                        .is_some_and(|h| h.actor.get_id() == stopped)
                    {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt))).await;
                }
                other => return Some(other),
            }
        }
    }

    /// The live actor of the session with this id, brought up from the store if needed.
    async fn handle_for(&self, id: &SessionId) -> Result<SessionHandle, RuntimeError> {
        let record = self
            .shared
            .store
            .get_by_session_id(id)?
            .ok_or_else(|| RuntimeError::no_session_with_id(*id))?;
        self.obtain_as(record.pair(), false, Some(*id)).await
    }

    /// Test hook: makes the pair's actor fail as a panic would.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub async fn inject_session_failure(
        &self,
        from: &TeamName,
        to: &TeamName,
    ) -> Result<(), RuntimeError> {
        let handle = self
            .obtain(Pair::new(from.clone(), to.clone()), false)
            .await?;
        handle
            .actor
            .cast(SessionMsg::Crash)
            .map_err(|_| RuntimeError::ShuttingDown)
    }

    async fn obtain(&self, pair: Pair, must_create: bool) -> Result<SessionHandle, RuntimeError> {
        self.obtain_as(pair, must_create, None).await
    }

    async fn obtain_as(
        &self,
        pair: Pair,
        must_create: bool,
        expect: Option<SessionId>,
    ) -> Result<SessionHandle, RuntimeError> {
        let answer = self
            .registry
            .call(
                |reply| RegistryMsg::Obtain {
                    pair: pair.clone(),
                    must_create,
                    expect,
                    reply,
                },
                Some(self.shared.creation_timeout()),
            )
            .await;
        unwrap_call(answer, || format!("creating the session of {pair}"))?
    }
}

/// Which session a call is for.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Pair(&'a Pair),
    Id(&'a SessionId),
}

/// The answer of an actor call, with a timeout or a dead actor as typed errors.
fn unwrap_call<T, M>(
    answer: Result<CallResult<T>, ractor::MessagingErr<M>>,
    what: impl FnOnce() -> String,
) -> Result<T, RuntimeError> {
    match answer {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(RuntimeError::Timeout { what: what() }),
        Ok(CallResult::SenderError) | Err(_) => Err(RuntimeError::ShuttingDown),
    }
}

/// Runtime statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Totals, by status and by process state (from the store's counters).
    pub sessions: SessionStats,
    /// Session actors running on this node.
    pub live_actors: u64,
    /// Sessions whose agent process is not stopped.
    pub live_processes: u64,
    /// Write transactions the store has committed.
    pub store_write_batches: u64,
    /// How agents are contained on this node.
    pub containment: ContainmentMode,
    /// CPU time used so far by each live agent and everything it started, where the
    /// containment measures it (by pair).
    pub agent_cpu: Vec<(Pair, Duration)>,
}

/// A tell's outcome, with the session that ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct Told {
    /// The pair's session (created by the tell if it had none).
    pub session_id: SessionId,
    /// How the turn ended, or how far the caller waited.
    pub outcome: TellOutcome,
}

/// How a turn is submitted, beyond its message.
#[derive(Debug, Clone, Copy, Default)]
struct Submission {
    /// The caller will hold only the turn id: commit its first row promptly.
    record_first_row: bool,
    /// Made at most once under this id.
    request_id: Option<iris_core::RequestId>,
}

/// A queued turn: its id, its events as they stream, and its outcome.
#[derive(Debug)]
pub struct TurnHandle {
    ticket: Ticket,
}

impl TurnHandle {
    /// The turn's id.
    pub fn turn_id(&self) -> TurnId {
        self.ticket.turn_id
    }

    /// The session that runs the turn (created by the submission if the pair had none).
    pub fn session_id(&self) -> SessionId {
        self.ticket.session_id
    }

    /// A new subscription to the turn's events, from now on.
    pub fn events(&self) -> broadcast::Receiver<TurnEvent> {
        self.ticket.events.resubscribe()
    }

    /// Takes the subscription that was made when the turn was queued (it misses nothing).
    pub fn into_events(self) -> broadcast::Receiver<TurnEvent> {
        self.ticket.events
    }

    /// Takes the subscription that was made when the turn was queued (it misses nothing), and
    /// keeps the handle for its outcome. A later call gets a subscription from then on.
    pub fn take_events(&mut self) -> broadcast::Receiver<TurnEvent> {
        let fresh = self.ticket.events.resubscribe();
        std::mem::replace(&mut self.ticket.events, fresh)
    }

    /// The assistant text streamed so far.
    pub fn partial(&self) -> String {
        self.ticket
            .partial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits for the turn to end. Never hangs: if its session stops without finishing it, the
    /// outcome is `Interrupted`.
    pub async fn outcome(&self) -> TellOutcome {
        let mut outcome = self.ticket.outcome.clone();
        match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or_else(|| self.vanished()),
            Err(_) => self.vanished(),
        }
    }

    /// Waits at most `limit`; then `CallerTimeout` with the text so far (the turn goes on).
    pub async fn outcome_within(&self, limit: Duration) -> TellOutcome {
        match tokio::time::timeout(limit, self.outcome()).await {
            Ok(outcome) => outcome,
            Err(_) => TellOutcome::CallerTimeout {
                turn_id: self.turn_id(),
                partial: self.partial(),
            },
        }
    }

    fn vanished(&self) -> TellOutcome {
        TellOutcome::Failed {
            turn_id: self.turn_id(),
            error: TurnError::Interrupted {
                reason: "its session stopped before the turn finished".into(),
            },
        }
    }
}

#[cfg(test)]
mod handle_tests;
