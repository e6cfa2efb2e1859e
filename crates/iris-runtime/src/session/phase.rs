//! Where a session stands: its [`Phase`], which owns exactly the data valid in it (the idle
//! agent, the job on the worker, the agent being stopped), and the jobs that move it.
//!
//! The handlers are transitions between phases. What the code relied on without saying is now
//! what the type allows:
//! - while a job runs, the worker holds the agent, so no idle agent exists beside it;
//! - no job starts while an agent is being stopped (its slot and its group are still taken);
//! - a shutdown waits only for a job in flight, and nothing starts once the session stopped.
//!
//! ```text
//!            start_job                      job_done (agent back / gone)
//!  Asleep ─────────────► Working ──────────────────────► Idle / Asleep
//!  Idle   ─────────────►    │ shutdown                   (sleep_after: ► Retiring)
//!                           ▼
//!                        Stopping ── job_done / deadline ──► Stopped
//!  Idle ── sleep / idle timeout / eviction / health ──► Retiring ── Retired ──► Asleep
//!  any ── shutdown (nothing in flight) / delete / actor stop ──► Stopped
//! ```

use iris_agent::conversation::{Activity, Interrupter};
use iris_agent::process::StopGrace;
use iris_core::{SessionRecord, SessionStatus};
use ractor::RpcReplyPort;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::agent::LiveAgent;
use super::turn::Turn;
use crate::error::RuntimeError;
use crate::tell::TurnError;

/// The phase of a session actor.
#[derive(Debug)]
pub(super) enum Phase {
    /// No agent process, nothing running, nothing being stopped. Its timer passivates the
    /// actor once nothing has happened for `passivate_after`.
    Asleep,
    /// An agent is up and waits for work. Its timer stops the agent at the idle timeout.
    Idle {
        /// The agent (boxed: an asleep session, the common case, pays only for a pointer).
        agent: Box<LiveAgent>,
        /// Since when it has been idle.
        since: Instant,
    },
    /// A job is on the worker, which holds the agent if there is one.
    Working {
        /// The job.
        running: Box<Running>,
        /// Stop the agent once the job ends (a sleep came in while it ran).
        sleep_after: bool,
    },
    /// An agent is being stopped in the background; no job starts until it is gone.
    Retiring {
        /// The task stopping it; it sends `Retired` when done.
        stop: JoinHandle<()>,
    },
    /// A shutdown waits for the job in flight, bounded by its grace (`ShutdownDeadline`).
    Stopping {
        /// The job.
        running: Box<Running>,
        /// A sleep came in first: the agent is stopped as a sleep stops it, then the shutdown
        /// completes.
        sleep_after: bool,
        /// How the agent is stopped once the job is done.
        grace: StopGrace,
        /// The shutdown's caller.
        reply: RpcReplyPort<()>,
    },
    /// Shut down or deleted: the actor stops after this handler and nothing starts.
    Stopped,
}

impl Phase {
    /// Whether a job may start: nothing runs, no agent is being stopped, the session is not
    /// stopping.
    pub(super) fn accepts_jobs(&self) -> bool {
        matches!(self, Phase::Asleep | Phase::Idle { .. })
    }

    /// Whether the session is shutting down or gone: it takes no new work.
    pub(super) fn is_stopping(&self) -> bool {
        matches!(self, Phase::Stopping { .. } | Phase::Stopped)
    }

    /// The job in flight.
    pub(super) fn running(&self) -> Option<&Running> {
        match self {
            Phase::Working { running, .. } | Phase::Stopping { running, .. } => Some(running),
            _ => None,
        }
    }

    /// The job in flight, to update.
    pub(super) fn running_mut(&mut self) -> Option<&mut Running> {
        match self {
            Phase::Working { running, .. } | Phase::Stopping { running, .. } => Some(running),
            _ => None,
        }
    }

    /// The idle agent.
    pub(super) fn idle_agent(&self) -> Option<&LiveAgent> {
        match self {
            Phase::Idle { agent, .. } => Some(agent),
            _ => None,
        }
    }

    /// Takes the idle agent, leaving the session asleep.
    pub(super) fn take_idle_agent(&mut self) -> Option<LiveAgent> {
        match std::mem::replace(self, Phase::Asleep) {
            Phase::Idle { agent, .. } => Some(*agent),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Ends job `job` if it is the one in flight: the phase becomes idle with the agent the job
    /// gave back (or asleep without one), and what was to happen after the job is returned.
    /// `None` for a report of a job no longer in flight (its agent, if any, is dropped: killed).
    pub(super) fn end_job(
        &mut self,
        job: u64,
        agent: Option<LiveAgent>,
    ) -> Option<(Box<Running>, AfterJob)> {
        if self.running().is_none_or(|r| r.job != job) {
            return None;
        }
        match std::mem::replace(self, Phase::idle_or_asleep(agent)) {
            Phase::Working {
                running,
                sleep_after,
            } => Some((
                running,
                AfterJob {
                    sleep: sleep_after,
                    shutdown: None,
                },
            )),
            Phase::Stopping {
                running,
                sleep_after,
                grace,
                reply,
            } => Some((
                running,
                AfterJob {
                    sleep: sleep_after,
                    shutdown: Some((grace, reply)),
                },
            )),
            // Not reached: a job is in flight only in these two phases.
            other => {
                *self = other;
                None
            }
        }
    }

    /// Idle with `agent` from now on, or asleep without one (after a job, the agent it gave
    /// back if it is still alive).
    pub(super) fn idle_or_asleep(agent: Option<LiveAgent>) -> Phase {
        match agent {
            Some(agent) => Phase::Idle {
                agent: Box::new(agent),
                since: Instant::now(),
            },
            None => Phase::Asleep,
        }
    }
}

/// What the session does once the job in flight is done, taken from its phase by `job_done`.
#[derive(Debug, Default)]
pub(super) struct AfterJob {
    /// Stop the agent (a sleep came in while the job ran).
    pub sleep: bool,
    /// Complete a shutdown.
    pub shutdown: Option<(StopGrace, RpcReplyPort<()>)>,
}

/// Work waiting for the agent, in arrival order.
#[derive(Debug)]
pub(super) enum Job {
    Turn(Box<Turn>),
    Wake(RpcReplyPort<Result<SessionRecord, RuntimeError>>),
    /// A compaction, asked for (with its caller) or due by the compaction policy (without),
    /// and the status to return to if it fails.
    Compact(
        Option<RpcReplyPort<Result<SessionRecord, RuntimeError>>>,
        SessionStatus,
    ),
}

/// A worker task, aborted when dropped: if the actor dies, its worker (and the agent the
/// worker holds, whose group is killed on drop) goes with it.
#[derive(Debug)]
pub(super) struct Worker(pub JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The job on the worker.
#[derive(Debug)]
pub(super) struct Running {
    pub job: u64,
    pub kind: Job,
    pub worker: Worker,
    /// Reaches the agent once it is up.
    pub interrupter: Option<Interrupter>,
    /// What the agent does, once it is up.
    pub activity: Option<tokio::sync::watch::Receiver<Activity>>,
    pub pgid: Option<u32>,
    pub started: Instant,
    /// Set when the turn was cancelled: what to report instead of its own ending.
    pub cancelled: Option<TurnError>,
}
