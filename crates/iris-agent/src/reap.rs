//! Reaping agent process groups that a previous run of iris left behind.
//!
//! A node that is killed outright cannot stop its agents. Their direct children die with it
//! (`PR_SET_PDEATHSIG`), but grandchildren such as MCP servers may live on in the agent's
//! process group. Each session record keeps an [`AgentProcessMark`]; at start-up the runtime hands
//! every mark to [`reap_leftover`], which kills the group only if it can prove the group is the one
//! iris started, so that a pid the kernel has since given to an unrelated process is never killed.

use std::time::Duration;

use iris_core::AgentProcessMark;
use nix::sys::signal::Signal;

use crate::process::group;
use crate::procfs;

/// What [`reap_leftover`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReapOutcome {
    /// Nothing of the group is alive.
    NotRunning,
    /// The pid now belongs to another process (its start time differs); it was left alone.
    PidReused {
        /// The pid in question.
        pid: u32,
    },
    /// The mark carries no start time, so the process could not be proven to be ours; it was left
    /// alone.
    Unverifiable {
        /// The pid in question.
        pid: u32,
    },
    /// The leftover group was killed.
    Killed {
        /// The group that was killed.
        pgid: u32,
        /// How many live processes it had.
        members: usize,
    },
    /// The group was signalled but processes were still alive after the wait.
    Survived {
        /// The group.
        pgid: u32,
        /// What was still alive.
        members: Vec<u32>,
    },
}

/// Finds and kills what is left of the agent process group `mark` describes.
///
/// The group is ours when its leader still runs with the start time recorded at spawn, or when
/// the leader is gone but members of its group remain (a pid cannot be reused as a new group's id
/// while the old group still has members). SIGTERM goes first, then SIGKILL after `patience`.
pub async fn reap_leftover(mark: AgentProcessMark, patience: Duration) -> ReapOutcome {
    let probe = tokio::task::spawn_blocking(move || {
        let leader = procfs::stat(mark.pid);
        let members = procfs::live_group_members(mark.pgid);
        (leader, members)
    })
    .await;
    let Ok((leader, members)) = probe else {
        return ReapOutcome::Unverifiable { pid: mark.pid };
    };
    match leader.filter(|s| s.is_alive()) {
        Some(stat) => match mark.start_ticks {
            Some(ticks) if ticks != stat.start_ticks => {
                return ReapOutcome::PidReused { pid: mark.pid };
            }
            None => return ReapOutcome::Unverifiable { pid: mark.pid },
            Some(_) => {}
        },
        None if members.is_empty() => return ReapOutcome::NotRunning,
        None => {}
    }
    let count = members.len().max(1);
    tracing::warn!(
        pid = mark.pid,
        pgid = mark.pgid,
        members = count,
        "killing an agent process group left by a previous run"
    );
    group::signal_group(mark.pgid, Signal::SIGTERM);
    if !group::wait_group_empty(mark.pgid, patience).await {
        group::signal_group(mark.pgid, Signal::SIGKILL);
        if !group::wait_group_empty(mark.pgid, Duration::from_secs(5)).await {
            let pgid = mark.pgid;
            let members = tokio::task::spawn_blocking(move || procfs::live_group_members(pgid))
                .await
                .unwrap_or_default();
            return ReapOutcome::Survived { pgid, members };
        }
    }
    ReapOutcome::Killed {
        pgid: mark.pgid,
        members: count,
    }
}
