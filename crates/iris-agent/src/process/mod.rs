//! Agent child processes: spawn in a process group, watch for exit, stop gracefully.
//!
//! Every agent leads its own process group, so a signal reaches the agent *and* whatever it
//! started (MCP servers, tool subprocesses). The group is killed with SIGKILL when the
//! [`AgentProcess`] is dropped, whatever path dropped it; tokio's `kill_on_drop` (which
//! process-wrap's `KillOnDrop` also relies on) would reach the leader only. On Linux the agent
//! also gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the thread that spawned it even when
//! this process is killed outright. (The death signal follows the spawning *thread*: spawn from
//! a runtime worker thread, not from a short-lived blocking thread.) The death signal reaches the
//! agent only, not what it started; so each group is also registered with the process's
//! [`guardian`], which SIGKILLs every group still registered when this process
//! dies, and is told to forget a group once it is empty or killed. What leaves the group (a
//! `setsid` tool, a daemon) is held by the spawn's [`Containment`]: the agent's own cgroup, or
//! its swept and tagged process tree, which the stop and the drop kill after the group.

pub(crate) mod group;
mod pdeathsig;
mod stderr_tail;

use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use iris_core::{AgentProcessMark, Coded, ErrorCode};
use nix::sys::signal::Signal;
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

use crate::containment::{Containment, ContainmentMode, Held};
use crate::guardian;

pub use crate::containment::CpuMeter;
pub use stderr_tail::{DEFAULT_STDERR_TAIL, StderrTail};

/// How long the exit watcher waits for stderr to drain after the agent exits, so the tail it
/// reports includes the agent's last words. Bounded: a grandchild may hold stderr open.
const STDERR_SETTLE: Duration = Duration::from_millis(250);

/// How an agent process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, if it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The last few KiB it wrote to stderr.
    pub stderr_tail: String,
}

impl ExitInfo {
    fn from_status(status: ExitStatus, stderr_tail: String) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
            stderr_tail,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}")?,
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "was killed by signal {sig} ({s})")?,
                Err(_) => write!(f, "was killed by signal {sig}")?,
            },
            (None, None) => write!(f, "ended with an unknown status")?,
        }
        if !self.stderr_tail.is_empty() {
            write!(f, "; stderr: {}", self.stderr_tail)?;
        }
        Ok(())
    }
}

/// Why an agent process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The executable does not exist.
    #[error(
        "agent command {program:?} was not found; install it, or set `command` in [agent] or [teams.NAME.agent] to its path"
    )]
    NotFound {
        /// The program that was run.
        program: String,
    },
    /// The executable exists but may not be run.
    #[error("agent command {program:?} is not executable ({source}); check its permissions")]
    PermissionDenied {
        /// The program that was run.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// What was to hold the agent (its cgroup) could not be readied.
    #[error(
        "could not ready the {mode} containment for agent command {program:?}: {source}; check that this process may create cgroups under its own, or set containment = \"auto\""
    )]
    Contain {
        /// The program that was to run.
        program: String,
        /// The containment mode in force.
        mode: ContainmentMode,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure to start it (a missing working directory, too many processes…).
    #[error("could not start agent command {program:?}: {source}")]
    Io {
        /// The program that was run.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Coded for SpawnError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ProcessError
    }
}

/// The waits of a graceful stop (the Claude Agent SDK's order and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopGrace {
    /// After closing stdin, how long to wait for the agent to exit on its own (it flushes its
    /// transcript then).
    pub after_stdin_close: Duration,
    /// After SIGTERM to the group, how long to wait before SIGKILL.
    pub after_sigterm: Duration,
    /// After SIGKILL, how long to wait for the exit to be observed.
    pub after_sigkill: Duration,
}

impl Default for StopGrace {
    fn default() -> Self {
        StopGrace {
            after_stdin_close: Duration::from_secs(5),
            after_sigterm: Duration::from_secs(5),
            after_sigkill: Duration::from_secs(5),
        }
    }
}

/// Which step of the stop sequence ended the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopStage {
    /// It had exited before the stop began.
    AlreadyExited,
    /// It exited after its stdin was closed.
    StdinClosed,
    /// It exited after SIGTERM.
    Sigterm,
    /// It needed SIGKILL.
    Sigkill,
}

/// The result of [`AgentProcess::stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOutcome {
    /// Which step ended it.
    pub stage: StopStage,
    /// Its exit, if observed (absent only if even SIGKILL was not observed in time).
    pub exit: Option<ExitInfo>,
    /// Whether processes it left in its group (grandchildren) had to be killed.
    pub killed_leftovers: bool,
}

/// A running agent child process, leader of its own process group.
#[derive(Debug)]
pub struct AgentProcess {
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: StderrTail,
    exit: watch::Receiver<Option<ExitInfo>>,
    start_ticks: Option<u64>,
    /// Cleared once the stop sequence has emptied the group, so drop does not signal a pgid that
    /// may since have been reused.
    armed: bool,
    /// The guardian's watch over the group, dropped (forgetting the group) when `armed` is
    /// cleared, for the same reason. `None` if the guardian is unavailable.
    watch: Option<guardian::Watch>,
    /// What holds everything the agent started (its cgroup, or its swept process tree); `None`
    /// once the stop has emptied and removed it.
    held: Option<Held>,
    /// Held while this handle lives: [`CpuMeter`]s read nothing once it is dropped.
    alive: std::sync::Arc<()>,
}

impl AgentProcess {
    /// Spawns `command` with piped stdio, as the leader of a new process group, with the parent
    /// death signal set, held by `containment`. The command's program, arguments, environment
    /// and working directory are the caller's (see `crate::command`); no shell is involved.
    pub fn spawn(
        mut command: Command,
        stderr_capacity: usize,
        containment: &Containment,
    ) -> Result<AgentProcess, SpawnError> {
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        pdeathsig::set_on(&mut command);
        let prepared = containment
            .prepare()
            .map_err(|source| SpawnError::Contain {
                program: program.clone(),
                mode: containment.mode(),
                source,
            })?;
        prepared.apply_to(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                prepared.abandon();
                return Err(spawn_error(program, source));
            }
        };
        // A spawned child always has a pid until it is reaped, and nothing has waited on it yet.
        let pid = child.id().unwrap_or_default();
        // At once: until the guardian knows the group, only PDEATHSIG covers it.
        let watch = guardian::watch(pid);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = StderrTail::new(stderr_capacity);
        // The values the agent was given (a team's `env`) never reach an error message.
        stderr.hide(
            command
                .as_std()
                .get_envs()
                .filter_map(|(_, value)| value)
                .map(|value| value.to_string_lossy().into_owned()),
        );
        let drain = child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(stderr.clone().drain(pipe)));
        let (exit_tx, exit) = watch::channel(None);
        let tail = stderr.clone();
        // The watcher owns the child and ends when the child exits, which dropping this
        // AgentProcess guarantees (the group is killed).
        tokio::spawn(async move {
            let status = child.wait().await;
            if let Some(drain) = drain {
                let _ = tokio::time::timeout(STDERR_SETTLE, drain).await;
            }
            let info = match status {
                Ok(status) => ExitInfo::from_status(status, tail.text()),
                Err(e) => ExitInfo {
                    code: None,
                    signal: None,
                    stderr_tail: format!("waiting for the agent failed: {e}"),
                },
            };
            tracing::debug!(pid, exit = %info, "agent process exited");
            let _ = exit_tx.send(Some(info));
        });
        let start_ticks = crate::procfs::stat(pid).map(|s| s.start_ticks);
        let held = prepared.holding(pid, start_ticks);
        tracing::debug!(pid, program, cgroup = ?held.cgroup_dir(), "agent process spawned");
        Ok(AgentProcess {
            pid,
            stdin,
            stdout,
            stderr,
            exit,
            start_ticks,
            armed: true,
            watch,
            held: Some(held),
            alive: std::sync::Arc::new(()),
        })
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its process group id (it leads its group, so this equals the pid).
    pub fn pgid(&self) -> u32 {
        self.pid
    }

    /// What a restarted node needs to find and kill this group safely.
    pub fn mark(&self) -> AgentProcessMark {
        AgentProcessMark {
            pid: self.pid,
            pgid: self.pgid(),
            start_ticks: self.start_ticks,
        }
    }

    /// Takes the stdin pipe (once).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Takes the stdout pipe (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The tail of its stderr so far.
    pub fn stderr_tail(&self) -> &StderrTail {
        &self.stderr
    }

    /// Its exit, if it has exited.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// A receiver that sees the exit when it happens.
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.clone()
    }

    /// Waits for the agent to exit, for at most `limit`.
    pub async fn wait_exit(&self, limit: Duration) -> Option<ExitInfo> {
        let mut exit = self.exit.clone();
        let waited = tokio::time::timeout(limit, exit.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(info)) => info.clone(),
            // The watcher is gone without a report, or the time ran out.
            _ => self.exit_info(),
        }
    }

    /// The CPU time the agent has used so far, with everything it started that the containment
    /// sees (its cgroup, or its process tree), if it can be read. It only grows while the agent
    /// works; a turn that prints nothing while this grows is busy, not stalled. A cheap read of
    /// one small kernel file.
    pub fn cpu_time(&self) -> Option<Duration> {
        if let Some(time) = self.held.as_ref().and_then(Held::cpu_time) {
            return Some(time);
        }
        let stat = crate::procfs::stat(self.pid)?;
        Some(crate::procfs::ticks_to_duration(stat.cpu_ticks))
    }

    /// A meter of [`AgentProcess::cpu_time`] that others can read while this agent lives.
    pub fn cpu_meter(&self) -> CpuMeter {
        match &self.held {
            Some(held) => held.meter(self.pid, &self.alive),
            None => Held::Group.meter(self.pid, &self.alive),
        }
    }

    /// The agent's own cgroup, when it runs in one.
    pub fn cgroup_dir(&self) -> Option<&std::path::Path> {
        self.held.as_ref().and_then(Held::cgroup_dir)
    }

    /// Sends SIGKILL to the whole group now, and kills everything else the agent started (its
    /// cgroup or its process tree), without waiting.
    pub fn kill(&self) {
        // What it started first, while the agent still holds it together (see `Held::kill_now`).
        if let Some(held) = &self.held {
            held.kill_now();
        }
        group::signal_group(self.pgid(), Signal::SIGKILL);
    }

    /// Stops the agent: close stdin and wait, then SIGTERM the group and wait, then SIGKILL the
    /// group and wait; finally kill whatever else is left in the group. Idempotent: once the
    /// agent has exited it only sweeps the group again.
    pub async fn stop(&mut self, grace: StopGrace) -> StopOutcome {
        let pgid = self.pgid();
        let (stage, exit) = if let Some(exit) = self.exit_info() {
            (StopStage::AlreadyExited, Some(exit))
        } else {
            self.stdin.take();
            if let Some(exit) = self.wait_exit(grace.after_stdin_close).await {
                (StopStage::StdinClosed, Some(exit))
            } else if let Some(held) = self.held.as_ref().filter(|h| h.is_tree()) {
                // The subreaper's tree is not one unit the kernel kills at once: a SIGTERM would
                // let the agent kill its tools one by one, and a shell outlive its command.
                // Everything it started dies now, the agent with it.
                tracing::debug!(pgid, "agent ignored stdin EOF; killing its process tree");
                held.kill_now();
                group::signal_group(pgid, Signal::SIGKILL);
                (
                    StopStage::Sigkill,
                    self.wait_exit(grace.after_sigkill).await,
                )
            } else {
                tracing::debug!(
                    pgid,
                    "agent ignored stdin EOF; sending SIGTERM to its group"
                );
                group::signal_group(pgid, Signal::SIGTERM);
                if let Some(exit) = self.wait_exit(grace.after_sigterm).await {
                    (StopStage::Sigterm, Some(exit))
                } else {
                    tracing::warn!(pgid, "agent ignored SIGTERM; sending SIGKILL to its group");
                    group::signal_group(pgid, Signal::SIGKILL);
                    (
                        StopStage::Sigkill,
                        self.wait_exit(grace.after_sigkill).await,
                    )
                }
            }
        };
        let mut killed_leftovers = self.sweep_group(grace.after_sigterm).await;
        killed_leftovers |= self.kill_held().await;
        StopOutcome {
            stage,
            exit,
            killed_leftovers,
        }
    }

    /// Ends whatever the agent left in its group: SIGTERM, a short wait, then SIGKILL. Returns
    /// whether anything was left.
    async fn sweep_group(&mut self, patience: Duration) -> bool {
        let pgid = self.pgid();
        if !self.armed || !group::group_has_live_members(pgid).await {
            self.disarm();
            return false;
        }
        group::signal_group(pgid, Signal::SIGTERM);
        if !group::wait_group_empty(pgid, patience.min(Duration::from_secs(1))).await {
            group::signal_group(pgid, Signal::SIGKILL);
            if !group::wait_group_empty(pgid, Duration::from_secs(5)).await {
                tracing::error!(pgid, "processes survive SIGKILL in the agent's group");
                return true;
            }
        }
        self.disarm();
        true
    }

    /// Ends what the agent started outside its group (in its cgroup, or in its process tree)
    /// and removes its cgroup. Returns whether anything was left.
    async fn kill_held(&mut self) -> bool {
        let Some(held) = &self.held else {
            return false;
        };
        match held.kill_and_wait().await {
            Some(left) => {
                self.held = None;
                if left > 0 {
                    tracing::debug!(
                        pid = self.pid,
                        left,
                        "killed what the agent left running outside its process group"
                    );
                }
                left > 0
            }
            // Kept: drop kills it again, and start-up reaps the cgroup.
            None => true,
        }
    }

    /// Marks the group as empty: from now on its pgid may belong to someone else, so neither
    /// drop nor the guardian may signal it.
    fn disarm(&mut self) {
        self.armed = false;
        // Dropping the watch tells the guardian to forget the group.
        self.watch = None;
    }
}

/// The spawn error for an `io::Error` of `Command::spawn`.
fn spawn_error(program: String, source: std::io::Error) -> SpawnError {
    match source.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound { program },
        std::io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied { program, source },
        _ => SpawnError::Io { program, source },
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.armed {
            group::signal_group(self.pgid(), Signal::SIGKILL);
        }
        if let Some(held) = self.held.take() {
            held.kill_now();
            held.clean_up_later();
        }
        // Forget only after the kill: if this process dies between the two, the guardian
        // still kills the group.
        self.watch = None;
    }
}

#[cfg(test)]
mod tests;
