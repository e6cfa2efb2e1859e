//! Start-up: what the runtime does before it accepts any work (design guarantee 4).
//!
//! [`prepare`] runs three steps, in this order:
//!
//! 1. **Validate every team** ([`validate_teams`]). A local team's project directory must pass
//!    [`validate_project_path`]; a remote team's path lives on another machine and is not checked
//!    here. An error names the team and the rule it broke, and stops start-up before the store is
//!    touched.
//! 2. **Reset every process state to `stopped`** ([`Store::reset_all_process_states`]): no agent
//!    process survives a restart of the node, so no record may claim one. Turns that were
//!    queued or running become `interrupted` ([`Store::interrupt_open_turns`]).
//! 3. **Kill leftover agent process groups** recorded by a previous run
//!    ([`Store::agent_process_marks`], [`reap_leftover`]). A group is only killed when its leader
//!    is proven to be the process iris started (same pid *and* start time), so a pid the kernel has
//!    since handed to an unrelated process is never signalled.

use std::collections::HashMap;
use std::time::Duration;

use iris_agent::reap::{ReapOutcome, reap_leftover};
use iris_core::config::Config;
use iris_core::project_path::validate_project_path;
use iris_core::{AgentProcessMark, SessionId};
use iris_store::{Change, Store};
use tokio::task::JoinSet;

use crate::error::RuntimeError;

/// How many leftover process groups [`prepare`] reaps at the same time.
pub const REAP_PARALLELISM: usize = 16;

/// What [`prepare`] found and did.
#[derive(Debug, Clone)]
pub struct StartupReport {
    /// How many records had a process state other than `stopped` (or a current turn) and were
    /// reset.
    pub reset: u64,
    /// Turns that were queued or running when the previous run ended, now `interrupted`.
    pub interrupted_turns: u64,
    /// Every recorded agent process mark and what became of it, in the order the store listed the
    /// marks.
    pub reaped: Vec<(SessionId, ReapOutcome)>,
}

/// Checks every team of `config`, in name order, and returns the first problem.
///
/// A local team's `path` must pass [`validate_project_path`] (absolute, existing, a readable
/// directory, outside system and credential locations); the error is
/// [`RuntimeError::InvalidTeam`] naming the team, with the path rule's message (which names the
/// path) as its reason. A remote team (one with a `remote` table) skips the path checks: its path
/// is on the remote host.
///
/// Use [`team_problems`] to get every problem rather than the first.
///
/// This does blocking filesystem work (it canonicalizes and lists each directory). It is meant for
/// start-up and command-line checks; async code should run it in
/// [`tokio::task::spawn_blocking`], as [`prepare`] does.
pub fn validate_teams(config: &Config) -> Result<(), RuntimeError> {
    match team_problems(config).into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// Every problem [`validate_teams`] would report, one per failing team, in team name order; empty
/// when the configuration is fine. Meant for `iris config check`, which shows them all at once.
///
/// Like [`validate_teams`], this does blocking filesystem work.
pub fn team_problems(config: &Config) -> Vec<RuntimeError> {
    config
        .teams()
        .iter()
        .filter(|(_, team)| !team.is_remote())
        .filter_map(|(name, team)| {
            validate_project_path(&team.path)
                .err()
                .map(|e| RuntimeError::InvalidTeam {
                    team: name.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// Runs the start-up steps (see the [module documentation](self)): validate every team, reset
/// every process state to `stopped`, then reap the agent process groups a previous run left
/// behind, giving each group `patience` between SIGTERM and SIGKILL.
///
/// Validation runs first, on a blocking thread, and a failure returns before the store is
/// touched. Up to [`REAP_PARALLELISM`] groups are reaped at once.
///
/// After reaping, a session's recorded process mark is cleared when the recorded process is no
/// longer ours to worry about ([`ReapOutcome::NotRunning`], [`ReapOutcome::Killed`],
/// [`ReapOutcome::PidReused`]), and **kept** when it may still be ours
/// ([`ReapOutcome::Unverifiable`], [`ReapOutcome::Survived`]), so that a later start-up tries
/// again. Every outcome is logged: at `warn` when a group was killed or survived, at `info`
/// otherwise.
///
/// If clearing a mark fails, the remaining groups are still reaped (an interrupted kill is worse
/// than a stale mark) and the first store error is returned at the end.
pub async fn prepare(
    config: &Config,
    store: &Store,
    patience: Duration,
) -> Result<StartupReport, RuntimeError> {
    // 1. Validate, off the async threads.
    let owned = config.clone();
    match tokio::task::spawn_blocking(move || validate_teams(&owned)).await {
        Ok(result) => result?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(RuntimeError::ShuttingDown),
    }

    // 2. Reset.
    let reset = store.reset_all_process_states().await?;
    if reset > 0 {
        tracing::info!(
            records = reset,
            "reset process states left by a previous run"
        );
    }
    let interrupted_turns = store
        .interrupt_open_turns(iris_core::Timestamp::now())
        .await?;
    if interrupted_turns > 0 {
        tracing::warn!(
            turns = interrupted_turns,
            "turns in flight when the previous run ended are marked interrupted"
        );
    }

    // 3. Reap.
    let marks = store.agent_process_marks()?;
    let reaped = reap_all(store, marks, patience).await?;
    Ok(StartupReport {
        reset,
        interrupted_turns,
        reaped,
    })
}

/// Reaps every mark with bounded parallelism, logs each outcome and clears the marks that no longer
/// describe a process of ours. Returns the outcomes in the order of `marks`.
async fn reap_all(
    store: &Store,
    marks: Vec<(SessionId, AgentProcessMark)>,
    patience: Duration,
) -> Result<Vec<(SessionId, ReapOutcome)>, RuntimeError> {
    let mut outcomes: Vec<Option<ReapOutcome>> = vec![None; marks.len()];
    let mut first_error: Option<RuntimeError> = None;
    let mut pending = marks.iter().map(|(_, mark)| *mark).enumerate();
    let mut running: JoinSet<ReapOutcome> = JoinSet::new();
    let mut index_of = HashMap::new();
    loop {
        while running.len() < REAP_PARALLELISM {
            let Some((index, mark)) = pending.next() else {
                break;
            };
            let task = running.spawn(reap_leftover(mark, patience));
            index_of.insert(task.id(), index);
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (task, outcome) = match joined {
            Ok((task, outcome)) => (task, Some(outcome)),
            Err(e) => {
                tracing::error!(error = %e, "a task reaping a leftover agent process group failed");
                (e.id(), None)
            }
        };
        let Some(&index) = index_of.get(&task) else {
            continue;
        };
        let (session_id, mark) = marks[index];
        // A reap task that panicked proved nothing: treat it as unverifiable and keep the mark.
        let outcome = outcome.unwrap_or(ReapOutcome::Unverifiable { pid: mark.pid });
        log_outcome(session_id, mark, &outcome);
        if clears_mark(&outcome)
            && let Err(e) = store
                .update(session_id, Change::SetAgentProcess(None))
                .await
        {
            tracing::error!(
                session_id = %session_id,
                error = %e,
                "could not clear the agent process mark"
            );
            first_error.get_or_insert(e.into());
        }
        outcomes[index] = Some(outcome);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(marks
        .iter()
        .zip(outcomes)
        .map(|(&(session_id, mark), outcome)| {
            let outcome = outcome.unwrap_or(ReapOutcome::Unverifiable { pid: mark.pid });
            (session_id, outcome)
        })
        .collect())
}

/// Whether the recorded process is no longer ours, so its mark can go.
fn clears_mark(outcome: &ReapOutcome) -> bool {
    match outcome {
        ReapOutcome::NotRunning | ReapOutcome::Killed { .. } | ReapOutcome::PidReused { .. } => {
            true
        }
        ReapOutcome::Unverifiable { .. } | ReapOutcome::Survived { .. } => false,
    }
}

fn log_outcome(session_id: SessionId, mark: AgentProcessMark, outcome: &ReapOutcome) {
    let (pid, pgid) = (mark.pid, mark.pgid);
    match outcome {
        ReapOutcome::NotRunning => tracing::info!(
            session_id = %session_id, pid, pgid,
            "the agent process group of the previous run is gone"
        ),
        ReapOutcome::PidReused { .. } => tracing::info!(
            session_id = %session_id, pid, pgid,
            "the recorded agent pid now belongs to another process; left it alone"
        ),
        ReapOutcome::Unverifiable { .. } => tracing::info!(
            session_id = %session_id, pid, pgid,
            "could not prove the recorded agent process is ours (no start time); left it alone, kept the mark"
        ),
        ReapOutcome::Killed { members, .. } => tracing::warn!(
            session_id = %session_id, pid, pgid, members,
            "killed an agent process group left by the previous run"
        ),
        ReapOutcome::Survived { members, .. } => tracing::warn!(
            session_id = %session_id, pid, pgid, survivors = ?members,
            "processes of a leftover agent process group survived SIGKILL; kept the mark"
        ),
    }
}

#[cfg(test)]
mod tests;
