//! The `!tool` subprocess: like the real CLI's Bash tool, it runs in a session of its own
//! (`setsid`), so killing fake-claude's process group does not reach it; it sleeps, then creates
//! its marker file, so a test can see that a tool outlived its agent.
//!
//! The subprocess is fake-claude itself, run again in a helper mode
//! (`<program> [prefix…] --fake-claude-tool-helper <ms> [marker]`): no shell. The prefix is what
//! came before fake-claude's own arguments on the command line (`iris fake-claude …` has the
//! prefix `fake-claude`). When fake-claude cannot tell how it was started (an embedder called
//! [`crate::main_with_args`] with arguments of its own), it runs `sleep` instead, and creates the
//! marker itself once `sleep` ends.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

/// The first argument that selects the helper mode.
pub const HELPER_FLAG: &str = "--fake-claude-tool-helper";

/// How to start this program again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relaunch {
    /// The executable.
    pub exe: PathBuf,
    /// The arguments before fake-claude's own.
    pub prefix: Vec<OsString>,
}

impl Relaunch {
    /// How this process was started, given the arguments fake-claude was handed: they must be
    /// the tail of the process's command line.
    pub fn detect(argv: &[String]) -> Option<Relaunch> {
        let process: Vec<OsString> = std::env::args_os().collect();
        let cut = process.len().checked_sub(argv.len())?;
        if cut == 0 {
            return None;
        }
        let tail_matches = process[cut..]
            .iter()
            .zip(argv)
            .all(|(a, b)| a.to_string_lossy() == b.as_str());
        if !tail_matches {
            return None;
        }
        Some(Relaunch {
            exe: std::env::current_exe().ok()?,
            prefix: process[1..cut].to_vec(),
        })
    }
}

/// Whether fake-claude must create the marker itself after the subprocess ends (it ran plain
/// `sleep`).
#[derive(Debug)]
pub struct Spawned {
    /// The subprocess, in a session of its own.
    pub child: Child,
    /// The marker to create once `child` has ended, for the `sleep` fallback.
    pub marker_after: Option<PathBuf>,
}

/// Starts the tool subprocess: `ms` of sleep, then `marker` (if any) is created.
pub fn spawn_tool(
    relaunch: Option<&Relaunch>,
    ms: u64,
    marker: Option<&Path>,
) -> io::Result<Spawned> {
    let (mut command, marker_after) = match relaunch {
        Some(relaunch) => {
            let mut command = Command::new(&relaunch.exe);
            command
                .args(&relaunch.prefix)
                .arg(HELPER_FLAG)
                .arg(ms.to_string());
            if let Some(marker) = marker {
                command.arg(marker);
            }
            (command, None)
        }
        None => {
            let mut command = Command::new("sleep");
            command.arg(seconds(ms));
            (command, marker.map(Path::to_path_buf))
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and calls only `setsid`, which is
    // async-signal-safe; it touches no memory of the parent. A fresh child is never a process
    // group leader, so `setsid` succeeds unless the system is out of resources.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    Ok(Spawned {
        child: command.spawn()?,
        marker_after,
    })
}

/// `ms` as a `sleep` argument in seconds (`1.5`, `20`).
pub fn seconds(ms: u64) -> String {
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

/// Creates `marker` (empty) if it does not exist.
pub fn touch(marker: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(marker)
        .map(drop)
}

/// The helper mode: `<ms> [marker]`.
pub fn run_helper(args: &[String]) -> ExitCode {
    let Some(ms) = args.first().and_then(|ms| ms.parse::<u64>().ok()) else {
        crate::protocol::log("fake-claude: the tool helper needs <ms> [marker]");
        return ExitCode::from(2);
    };
    std::thread::sleep(Duration::from_millis(ms));
    if let Some(marker) = args.get(1)
        && let Err(e) = touch(Path::new(marker))
    {
        crate::protocol::log(&format!("fake-claude: cannot create {marker}: {e}"));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_for_sleep() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(20_000), "20");
        assert_eq!(seconds(1_500), "1.5");
        assert_eq!(seconds(250), "0.25");
        assert_eq!(seconds(1_001), "1.001");
    }

    #[test]
    fn an_embedder_with_other_arguments_gets_no_relaunch() {
        assert_eq!(
            Relaunch::detect(&["--surely-not-this-test-binary's-argument".to_owned()]),
            None
        );
    }
}
