//! `PR_SET_PDEATHSIG`: the kernel kills the agent when the thread that spawned it dies, which
//! covers the case where iris itself is killed with SIGKILL and runs no cleanup at all.
#![allow(unsafe_code)]

use tokio::process::Command;

/// Arranges for the child of `command` to receive SIGKILL when its parent dies.
#[cfg(target_os = "linux")]
pub(super) fn set_on(command: &mut Command) {
    use nix::sys::signal::Signal;
    use nix::unistd::{Pid, getppid};

    let parent = Pid::this();
    // SAFETY: the closure runs in the forked child before exec. It calls only prctl(2) and
    // getppid(2), both async-signal-safe, allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // If the parent died between fork and prctl, the signal will never come: give up
            // now instead of running as an orphan.
            if getppid() != parent {
                return Err(std::io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
}

/// Not available off Linux; process groups and kill-on-drop still apply.
#[cfg(not(target_os = "linux"))]
pub(super) fn set_on(_command: &mut Command) {}
