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
//!   agent stops (SIGSTOP) and then kills that whole tree. Its limits: a process that escapes
//!   between two sweeps *and* whose parent chain is gone before the stop is not found, and when
//!   this process is killed with SIGKILL only the agents' process groups die (the guardian
//!   kills groups, not trees); their `setsid` descendants are left to init.
//! - [`ContainmentMode::ProcessGroup`]: only the process group (off Linux, or by choice in
//!   library use of [`crate::process`]); what leaves the group is not contained.
//!
//! Both modes also measure the CPU time of the agent's whole tree
//! ([`crate::process::AgentProcess::cpu_time`]), which is how a turn that prints nothing while
//! a tool computes is told apart from a stalled one.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
}

impl fmt::Display for ContainmentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a runtime contains its agents: cheap to clone, shared by every spawn of the runtime.
#[derive(Debug, Clone)]
pub struct Containment {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    ProcessGroup,
}

impl Containment {
    /// Process groups only: what leaves an agent's group is not contained.
    pub fn process_group() -> Containment {
        Containment {
            inner: Arc::new(Inner::ProcessGroup),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> ContainmentMode {
        match &*self.inner {
            Inner::ProcessGroup => ContainmentMode::ProcessGroup,
        }
    }
}

impl Default for Containment {
    fn default() -> Self {
        Containment::process_group()
    }
}
