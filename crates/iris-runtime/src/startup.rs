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
//!    queued or running become `interrupted` ([`Store::interrupt_open_turns`]), and a session
//!    stored as `compacting` is `active` again (its compaction died with the previous run).
//! 3. **Kill leftover agent process groups** recorded by a previous run
//!    ([`Store::agent_process_marks`], [`reap_leftover`]). A group is only killed when its leader
//!    is proven to be the process iris started (same pid *and* start time), so a pid the kernel has
//!    since handed to an unrelated process is never signalled. In cgroup containment, every agent
//!    cgroup left under this node's cgroup is killed and removed too
//!    ([`Containment::reap_leftovers`]): a cgroup's name is exact, unlike a pid, and it holds the
//!    tools that left the agent's group.

use std::collections::HashMap;
use std::time::Duration;

use iris_agent::containment::{Containment, ContainmentError};
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
    /// Sessions stored as `compacting` (a compaction the previous run never finished), now
    /// `active` again.
    pub repaired_compactions: u64,
    /// Every recorded agent process mark and what became of it, in the order the store listed the
    /// marks.
    pub reaped: Vec<(SessionId, ReapOutcome)>,
    /// Processes killed in agent cgroups a previous run left (cgroup containment only).
    pub reaped_from_cgroups: usize,
}

/// The name this node's agent cgroups are kept under (`iris-<key>`): the database file's name
/// and a hash of its absolute path, so two nodes on one host never share it, and a restarted
/// node finds what its previous run left. An in-memory store has no previous run: the key is
/// unique to this process and runtime.
pub fn node_key(config: &Config) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static IN_MEMORY: AtomicU64 = AtomicU64::new(0);
    let Some(path) = config.database().path() else {
        let n = IN_MEMORY.fetch_add(1, Ordering::Relaxed);
        return format!("mem-{}-{n}", std::process::id());
    };
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{stem}-{:012x}", hash & 0xffff_ffff_ffff)
}

/// Sets up the containment `config` asks for, off the async threads, and logs the mode.
pub async fn containment(config: &Config) -> Result<Containment, RuntimeError> {
    let setting = config.settings().containment;
    let key = node_key(config);
    let made = tokio::task::spawn_blocking(move || Containment::new(setting, &key)).await;
    let containment = match made {
        Ok(result) => {
            result.map_err(|e: ContainmentError| RuntimeError::Containment(e.to_string()))?
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(RuntimeError::ShuttingDown),
    };
    tracing::info!(mode = %containment.mode(), "agent containment: {}", containment.describe());
    Ok(containment)
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
        .filter(|(name, team)| !team.is_remote() && config.hosts(name))
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
    containment: &Containment,
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
    let repaired_compactions = repair_compactions(store).await?;
    if interrupted_turns > 0 {
        tracing::warn!(
            turns = interrupted_turns,
            "turns in flight when the previous run ended are marked interrupted"
        );
    }

    // 3. Reap.
    let marks = store.agent_process_marks()?;
    let reaped = reap_all(store, marks, patience).await?;
    let reaped_from_cgroups = containment.reap_leftovers().await;
    if reaped_from_cgroups > 0 {
        tracing::warn!(
            processes = reaped_from_cgroups,
            "killed processes left in agent cgroups by the previous run"
        );
    }
    Ok(StartupReport {
        reset,
        interrupted_turns,
        repaired_compactions,
        reaped,
        reaped_from_cgroups,
    })
}

/// Sets every session stored as `compacting` back to `active`: no compaction survives a
/// restart, and the status would otherwise stay forever. Free when there is none (the store
/// counts sessions by status); a scan of the sessions otherwise.
async fn repair_compactions(store: &Store) -> Result<u64, RuntimeError> {
    let compacting = iris_core::SessionStatus::Compacting;
    if store
        .stats()
        .by_status
        .get(&compacting)
        .copied()
        .unwrap_or(0)
        == 0
    {
        return Ok(0);
    }
    let filter = iris_core::SessionFilter {
        status: Some(compacting),
        ..iris_core::SessionFilter::all()
    };
    let reader = store.clone();
    let stuck = match tokio::task::spawn_blocking(move || reader.list(&filter)).await {
        Ok(listed) => listed?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(RuntimeError::ShuttingDown),
    };
    for record in &stuck {
        store
            .update_all(
                record.session_id,
                vec![Change::SetStatus(iris_core::SessionStatus::Active)],
            )
            .await?;
        tracing::warn!(pair = %record.pair(), session = %record.session_id, "a compaction the previous run did not finish is abandoned; the session is active again");
    }
    Ok(stuck.len() as u64)
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
