//! Containment: every process an agent starts dies with it.
//!
//! A process group is not enough. The real Claude Code CLI runs each Bash tool command in a
//! session of its own (`setsid`), outside the agent's group and out of reach of
//! `PR_SET_PDEATHSIG`; a daemonizing tool or an MCP server can do the same. So each agent is
//! also held by one of two mechanisms, chosen once per runtime ([`Containment::new`]):
//!
//! - [`ContainmentMode::Cgroup`], on Linux with a writable cgroup v2 hierarchy (root, or a
//!   delegated subtree such as a systemd service with `Delegate=yes`). Each agent starts in a
//!   cgroup of its own, `<node's cgroup>/iris-<node key>/agent-<n>`, which the child joins
//!   before `exec` (so it never runs outside). Stopping the agent ends with `cgroup.kill`
//!   (Linux 5.14+), or freeze-and-kill where that file is missing: nothing in the cgroup
//!   escapes, `setsid`, double forks and daemons included. The empty cgroup is then removed.
//!   The [`guardian`](crate::guardian) kills the whole `iris-<node key>` cgroup when the
//!   process dies, and the next start reaps what is left there by name
//!   ([`Containment::reap_leftovers`]).
//! - [`ContainmentMode::Subreaper`], the fallback. The process becomes a child subreaper
//!   (`PR_SET_CHILD_SUBREAPER`), so an agent's orphaned descendants come back to it instead of
//!   init, and a sweep of `/proc` keeps each agent's descendant tree while it runs. Stopping the
//!   agent kills that whole tree, each process group whole. Each agent's environment carries a
//!   tag (`IRIS_AGENT_TAG=<node key>/<n>`) that its descendants inherit, so a process orphaned
//!   before any sweep saw it is still found. Its limits: a process that clears its environment
//!   *and* leaves the tree between two sweeps is not found; and when this process is killed
//!   with SIGKILL only the agents' process groups die at once (the guardian kills groups, not
//!   trees): their `setsid` descendants run on, reparented to init, until the node's next
//!   start kills them by their tag.
//! - [`ContainmentMode::ProcessGroup`]: only the process group (off Linux, or by choice in
//!   library use of [`crate::process`]); what leaves the group is not contained.
//!
//! Both modes also measure the CPU time of the agent's whole tree
//! ([`crate::process::AgentProcess::cpu_time`]), which is how a turn that prints nothing while
//! a tool computes is told apart from a stalled one.

mod cgroup;
mod tree;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use iris_core::config::ContainmentSetting;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

pub use cgroup::CgroupUnavailable;

/// How long a stop waits for a killed cgroup or tree to empty.
const EMPTY_WITHIN: Duration = Duration::from_secs(5);

/// How the agents of a runtime are contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainmentMode {
    /// Each agent in a cgroup v2 of its own, killed with `cgroup.kill`.
    Cgroup,
    /// This process is a child subreaper and sweeps each agent's descendant tree.
    Subreaper,
    /// The agent's process group only.
    ProcessGroup,
}

impl ContainmentMode {
    /// The mode's name as configured and reported: `cgroup`, `subreaper`, `process-group`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainmentMode::Cgroup => "cgroup",
            ContainmentMode::Subreaper => "subreaper",
            ContainmentMode::ProcessGroup => "process-group",
        }
    }

    /// Every mode, for metrics that label each.
    pub const ALL: [ContainmentMode; 3] = [
        ContainmentMode::Cgroup,
        ContainmentMode::Subreaper,
        ContainmentMode::ProcessGroup,
    ];
}

impl fmt::Display for ContainmentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the configured containment cannot be had here.
#[derive(Debug, thiserror::Error)]
pub enum ContainmentError {
    /// `containment = "cgroup"` was asked for and the hierarchy cannot hold agents.
    #[error(
        "containment = \"cgroup\" needs a writable cgroup v2 hierarchy, and {0}; run iris as root or in a delegated cgroup (a systemd service with Delegate=yes), or set containment = \"auto\" to fall back to a subreaper"
    )]
    Cgroup(#[source] CgroupUnavailable),
    /// `containment = "subreaper"` was asked for and the kernel refused it.
    #[error(
        "containment = \"subreaper\" needs PR_SET_CHILD_SUBREAPER, which this system refused; set containment = \"process-group\""
    )]
    Subreaper,
}

impl iris_core::Coded for ContainmentError {
    fn code(&self) -> iris_core::ErrorCode {
        iris_core::ErrorCode::ConfigError
    }
}

/// How a runtime contains its agents: cheap to clone, shared by every spawn of the runtime.
#[derive(Debug, Clone)]
pub struct Containment {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    Cgroup(cgroup::NodeCgroup),
    Subreaper(Arc<tree::Sweeper>),
    ProcessGroup,
}

impl Containment {
    /// Process groups only: what leaves an agent's group is not contained.
    pub fn process_group() -> Containment {
        Containment {
            inner: Arc::new(Inner::ProcessGroup),
        }
    }

    /// The containment `setting` asks for, for the node whose agents' cgroups are named after
    /// `node_key` (letters, digits, `-`, `_` and `.`; it names `iris-<node key>` under this
    /// process's cgroup). `auto` takes a cgroup where the hierarchy is writable, else the
    /// subreaper, else process groups, and logs why. Blocking (it reads `/proc` and makes a
    /// directory in cgroupfs): call it at start-up, off async threads.
    pub fn new(
        setting: ContainmentSetting,
        node_key: &str,
    ) -> Result<Containment, ContainmentError> {
        let inner = match setting {
            ContainmentSetting::ProcessGroup => Inner::ProcessGroup,
            ContainmentSetting::Cgroup => {
                Inner::Cgroup(cgroup::NodeCgroup::open(node_key).map_err(ContainmentError::Cgroup)?)
            }
            ContainmentSetting::Subreaper if tree::become_subreaper() => {
                Inner::Subreaper(Arc::new(tree::Sweeper::new(node_key)))
            }
            ContainmentSetting::Subreaper => return Err(ContainmentError::Subreaper),
            ContainmentSetting::Auto => match cgroup::NodeCgroup::open(node_key) {
                Ok(node) => Inner::Cgroup(node),
                Err(reason) => {
                    tracing::warn!(%reason, "agents cannot have cgroups of their own here; falling back to a subreaper (a node killed with SIGKILL leaves its agents' setsid tools until its next start)");
                    if tree::become_subreaper() {
                        Inner::Subreaper(Arc::new(tree::Sweeper::new(node_key)))
                    } else {
                        Inner::ProcessGroup
                    }
                }
            },
        };
        Ok(Containment {
            inner: Arc::new(inner),
        })
    }

    /// The mode in force.
    pub fn mode(&self) -> ContainmentMode {
        match &*self.inner {
            Inner::Cgroup(_) => ContainmentMode::Cgroup,
            Inner::Subreaper(_) => ContainmentMode::Subreaper,
            Inner::ProcessGroup => ContainmentMode::ProcessGroup,
        }
    }

    /// The node's cgroup directory, in cgroup mode.
    pub fn cgroup_dir(&self) -> Option<PathBuf> {
        match &*self.inner {
            Inner::Cgroup(node) => Some(node.dir().to_path_buf()),
            _ => None,
        }
    }

    /// One line for logs and `iris stats`: the mode and what it rests on.
    pub fn describe(&self) -> String {
        match &*self.inner {
            Inner::Cgroup(node) => format!(
                "cgroup: each agent in a cgroup of its own under {}, stopped with {}",
                node.dir().display(),
                if node.can_kill() {
                    "cgroup.kill"
                } else {
                    "freeze-and-kill (this kernel has no cgroup.kill)"
                }
            ),
            Inner::Subreaper(_) => "subreaper: orphaned agent descendants come back to this process; each agent's process tree is swept and killed whole".into(),
            Inner::ProcessGroup => "process-group: each agent's process group is killed; processes that leave it are not contained".into(),
        }
    }

    /// Kills what a previous run of this node left, by name: every agent cgroup under the
    /// node's (which holds nothing else), or in the subreaper fallback every process tagged as
    /// one of this node's agents. Call it at start-up, before any agent is spawned. Returns how
    /// many processes were killed. Nothing to do for process groups (see [`crate::reap`]).
    pub async fn reap_leftovers(&self) -> usize {
        let node = match &*self.inner {
            Inner::Cgroup(node) => node,
            Inner::Subreaper(sweeper) => {
                let sweeper = sweeper.clone();
                let killed = tokio::task::spawn_blocking(move || sweeper.reap_tagged())
                    .await
                    .unwrap_or(0);
                if killed > 0 {
                    tracing::warn!(
                        killed,
                        "killed agent processes left by a previous run (found by their tag)"
                    );
                }
                return killed;
            }
            Inner::ProcessGroup => return 0,
        };
        let mut killed = 0;
        for cgroup in node.agent_cgroups() {
            let members = cgroup.members().len();
            if members > 0 {
                tracing::warn!(cgroup = %cgroup.dir().display(), members, "killing an agent cgroup left by a previous run");
            }
            if cgroup.kill_and_remove(EMPTY_WITHIN).await.is_some() {
                killed += members;
            }
        }
        killed
    }

    /// Readies what will hold one agent (its cgroup), before the spawn.
    pub(crate) fn prepare(&self) -> io::Result<Prepared> {
        Ok(match &*self.inner {
            Inner::Cgroup(node) => Prepared::Cgroup(node.new_agent()?),
            Inner::Subreaper(sweeper) => Prepared::Tree(sweeper.clone(), sweeper.new_tag()),
            Inner::ProcessGroup => Prepared::Group,
        })
    }
}

impl Default for Containment {
    fn default() -> Self {
        Containment::process_group()
    }
}

/// What will hold an agent, readied before its spawn.
#[derive(Debug)]
pub(crate) enum Prepared {
    Cgroup(cgroup::AgentCgroup),
    Tree(Arc<tree::Sweeper>, String),
    Group,
}

impl Prepared {
    /// Arranges for the child to be held from before `exec`.
    pub(crate) fn apply_to(&self, command: &mut Command) {
        match self {
            Prepared::Cgroup(cgroup) => cgroup.join_before_exec(command),
            Prepared::Tree(_, tag) => {
                command.env(tree::TAG_VAR, tag);
            }
            Prepared::Group => {}
        }
    }

    /// What holds the agent `pid` (started at `start_ticks`) now that it runs.
    pub(crate) fn holding(self, pid: u32, start_ticks: Option<u64>) -> Held {
        match self {
            Prepared::Cgroup(mut cgroup) => {
                cgroup.joined();
                Held::Cgroup(cgroup)
            }
            Prepared::Tree(sweeper, tag) => Held::Tree(sweeper.track(tag, pid, start_ticks)),
            Prepared::Group => Held::Group,
        }
    }

    /// The spawn failed: remove the unused cgroup.
    pub(crate) fn abandon(self) {
        if let Prepared::Cgroup(cgroup) = self {
            let _ = std::fs::remove_dir(cgroup.dir());
        }
    }
}

/// Reads the CPU time of one agent (and what it started) from elsewhere, such as a metrics
/// scrape, without owning the agent. Reads `None` once the agent is gone.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    source: MeterSource,
    alive: std::sync::Weak<()>,
}

#[derive(Debug, Clone)]
enum MeterSource {
    Cgroup(PathBuf),
    Tree(std::sync::Weak<tree::TreeState>),
    Process(u32),
}

impl CpuMeter {
    /// The CPU time so far, if the agent still runs and its containment measures it: its whole
    /// cgroup, its swept tree, or else the agent process and the children it waited for.
    /// Blocking, but one read of a small kernel file.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.alive.upgrade()?;
        match &self.source {
            MeterSource::Cgroup(dir) => cgroup::cpu_time_of(dir),
            MeterSource::Tree(tree) => tree.upgrade().map(|t| t.cpu_time()),
            MeterSource::Process(pid) => {
                crate::procfs::stat(*pid).map(|s| crate::procfs::ticks_to_duration(s.cpu_ticks))
            }
        }
    }

    /// Whether the agent is still held by its process handle.
    pub fn is_alive(&self) -> bool {
        self.alive.strong_count() > 0
    }
}

/// What holds a running agent and everything it started.
#[derive(Debug)]
pub(crate) enum Held {
    Cgroup(cgroup::AgentCgroup),
    Tree(Arc<tree::TreeState>),
    Group,
}

impl Held {
    /// CPU time of everything held, if known here.
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        match self {
            Held::Cgroup(cgroup) => cgroup.cpu_time(),
            Held::Tree(tree) => Some(tree.cpu_time()),
            Held::Group => None,
        }
    }

    /// A meter of the CPU time of what is held (the agent `pid` alone in process-group mode),
    /// valid while `alive` is.
    pub(crate) fn meter(&self, pid: u32, alive: &Arc<()>) -> CpuMeter {
        let source = match self {
            Held::Cgroup(cgroup) => MeterSource::Cgroup(cgroup.dir().to_path_buf()),
            Held::Tree(tree) => MeterSource::Tree(Arc::downgrade(tree)),
            Held::Group => MeterSource::Process(pid),
        };
        CpuMeter {
            source,
            alive: Arc::downgrade(alive),
        }
    }

    /// The cgroup's directory, in cgroup mode.
    pub(crate) fn cgroup_dir(&self) -> Option<&std::path::Path> {
        match self {
            Held::Cgroup(cgroup) => Some(cgroup.dir()),
            _ => None,
        }
    }

    /// Kills everything held, now, without waiting for it to be gone.
    pub(crate) fn kill_now(&self) {
        match self {
            Held::Cgroup(cgroup) => cgroup.kill(),
            // At once, not on another thread: the tree must die while the agent still holds
            // it together. Once the agent is gone its tools are orphans, and a shell whose
            // command died first runs the rest of its script (`sleep 60; touch marker`). One
            // read of `/proc`, on a fault or a stop only.
            Held::Tree(tree) => {
                tree::kill_tree(tree);
            }
            Held::Group => {}
        }
    }

    /// Whether this is the subreaper's swept tree.
    pub(crate) fn is_tree(&self) -> bool {
        matches!(self, Held::Tree(_))
    }

    /// Kills everything still held and waits until it is gone (and the cgroup removed).
    /// Returns how many processes were left, or `None` if some survived the wait.
    pub(crate) async fn kill_and_wait(&self) -> Option<usize> {
        match self {
            Held::Cgroup(cgroup) => cgroup.kill_and_remove(EMPTY_WITHIN).await,
            Held::Tree(tree) => {
                let killing = tree.clone();
                let killed = tokio::task::spawn_blocking(move || tree::kill_tree(&killing))
                    .await
                    .ok()?;
                // SIGKILL is delivered asynchronously: give the killed a moment to die.
                let deadline = tokio::time::Instant::now() + EMPTY_WITHIN;
                loop {
                    let counting = tree.clone();
                    let alive = tokio::task::spawn_blocking(move || tree::live_members(&counting))
                        .await
                        .ok()?;
                    if alive == 0 {
                        return Some(killed);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            Held::Group => Some(0),
        }
    }

    /// After a kill on drop: removes the cgroup once it empties, in the background when a
    /// runtime is at hand (else the next start-up reaps it).
    pub(crate) fn clean_up_later(self) {
        if let Held::Cgroup(cgroup) = self
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                cgroup.kill_and_remove(EMPTY_WITHIN).await;
            });
        }
    }
}
