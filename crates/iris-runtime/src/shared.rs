//! What every actor of one runtime shares. (The published map of live sessions is the
//! registry's: [`crate::registry::Live`].)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use iris_agent::containment::Containment;
use iris_agent::process::CpuMeter;
use iris_core::Pair;
use iris_core::config::Config;
use iris_store::Store;
use ractor::ActorRef;

use crate::budget::in_force::InForce;
use crate::budget::{BudgetState, Gate};
use crate::clock::Clock;
use crate::error::RuntimeError;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::pool::PoolMsg;

/// Configuration, store and bookkeeping shared by the registry and the session actors.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub store: Store,
    /// The node's process pool.
    pub pool: ActorRef<PoolMsg>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Set by shutdown: no new tells, wakes or sessions.
    pub closing: AtomicBool,
    /// What holds each agent and everything it starts.
    pub containment: Containment,
    /// Per pair, woken when a queued turn leaves its session's queue (kept across the
    /// session's actors, so a tell waiting for room hears of the next actor's too).
    pub rooms: DashMap<Pair, Arc<tokio::sync::Notify>>,
    /// The CPU meter of each live agent, for metrics (an agent that is gone reads `None` and
    /// is dropped from the map at the next read).
    pub agent_meters: DashMap<Pair, CpuMeter>,
    /// Where sessions publish what happens to them.
    pub events: Arc<EventBus>,
    /// The wall clock of budgets (which day a spend counts on).
    pub clock: Clock,
    /// The budget caps in force and the alerts given.
    pub budget: BudgetState,
}

impl Shared {
    pub fn new(
        config: Config,
        store: Store,
        pool: ActorRef<PoolMsg>,
        metrics: Arc<Metrics>,
        containment: Containment,
        clock: Clock,
        budgets: InForce,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            store,
            pool,
            metrics,
            closing: AtomicBool::new(false),
            containment,
            rooms: DashMap::new(),
            agent_meters: DashMap::new(),
            events: Arc::new(EventBus::new()),
            clock,
            budget: BudgetState::new(budgets),
        })
    }

    /// What a budget check reads and writes.
    pub fn budgets(&self) -> Gate<'_> {
        Gate {
            config: &self.config,
            store: &self.store,
            clock: &self.clock,
            state: &self.budget,
            metrics: &self.metrics,
            events: &self.events,
        }
    }

    /// The notification that the pair's queue has room again.
    pub fn room(&self, pair: &Pair) -> Arc<tokio::sync::Notify> {
        self.rooms.entry(pair.clone()).or_default().clone()
    }

    /// The CPU time of each live agent, by pair (blocking reads of small kernel files).
    pub fn agent_cpu(&self) -> Vec<(Pair, Duration)> {
        let mut cpu = Vec::new();
        self.agent_meters
            .retain(|pair, meter| match meter.cpu_time() {
                Some(time) => {
                    cpu.push((pair.clone(), time));
                    true
                }
                None => meter.is_alive(),
            });
        cpu.sort_by(|a, b| a.0.cmp(&b.0));
        cpu
    }

    /// Fails once shutdown has begun.
    pub fn check_open(&self) -> Result<(), RuntimeError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(RuntimeError::ShuttingDown);
        }
        Ok(())
    }

    /// How long a caller waits for a session to be created: a pool slot, the agent's start,
    /// plus a margin for the durable writes.
    pub fn creation_timeout(&self) -> Duration {
        self.agent_start_limit() + Duration::from_secs(10)
    }

    /// The longest an agent's start can take: `spawn_timeout` for a pool slot, then up to
    /// three launches (the first, and one correction for each way the CLI can refuse the
    /// conversation), each bounded by `spawn_timeout` or a team's `session_init_timeout`.
    pub fn agent_start_limit(&self) -> Duration {
        let settings = self.config.settings();
        let longest_launch = self
            .config
            .teams()
            .values()
            .map(|team| team.effective_session_init_timeout(settings))
            .fold(settings.spawn_timeout, Duration::max);
        settings.spawn_timeout + longest_launch * 3
    }

    /// Checks that both teams are configured, `to` first as in the original.
    pub fn check_teams(&self, pair: &Pair) -> Result<(), RuntimeError> {
        for team in [&pair.to, &pair.from] {
            if self.config.team(team).is_none() {
                return Err(RuntimeError::UnknownTeam { team: team.clone() });
            }
        }
        if let Some(node) = self.config.node_of(&pair.to)
            && !self.config.hosts(&pair.to)
        {
            return Err(RuntimeError::HostedElsewhere {
                team: pair.to.clone(),
                node: node.clone(),
            });
        }
        Ok(())
    }
}
