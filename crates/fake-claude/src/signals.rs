//! Ignoring SIGTERM for `!ignore-sigterm`: one of fake-claude's two unsafe calls (the other is
//! `setsid` in `helper.rs`).
#![allow(unsafe_code)]

use std::io;

/// Ignores SIGTERM from now on (children spawned later inherit this).
pub fn ignore_sigterm() -> io::Result<()> {
    // SAFETY: `signal` with `SIG_IGN` installs no handler code, so there is no async-signal-safety
    // concern; it only changes the process's disposition for SIGTERM, which nothing else in this
    // program relies on.
    let previous = unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
