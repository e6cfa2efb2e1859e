//! Signalling and watching a process group.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Sends `signal` to every process in group `pgid`. An empty group is not an error.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    // pgid 0 or 1 would address our own group or init: never signal those.
    if raw <= 1 {
        return;
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => {
            tracing::warn!(pgid, %signal, %error, "could not signal the agent's process group")
        }
    }
}

/// Whether any live process is left in group `pgid`.
///
/// `kill(-pgid, 0)` alone would also count zombies, and orphaned grandchildren become zombies
/// that linger wherever PID 1 does not reap promptly (containers, micro-VMs). So a positive
/// answer is confirmed against `/proc`, off the async threads.
pub(crate) async fn group_has_live_members(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 || matches!(killpg(Pid::from_raw(raw), None), Err(Errno::ESRCH)) {
        return false;
    }
    tokio::task::spawn_blocking(move || !crate::procfs::live_group_members(pgid).is_empty())
        .await
        .unwrap_or(true)
}

/// Waits, polling, until group `pgid` has no live member or `limit` passes; returns whether it
/// emptied.
pub(crate) async fn wait_group_empty(pgid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(2);
    loop {
        if !group_has_live_members(pgid).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
