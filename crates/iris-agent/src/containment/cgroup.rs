//! Containment in cgroup v2: one cgroup per agent, under one cgroup per node.
//!
//! Layout: `<this process's cgroup>/iris-<node key>/agent-<n>`. The node's cgroup is found from
//! `/proc/self/mountinfo` (where the unified hierarchy is mounted, and which part of it) and
//! `/proc/self/cgroup` (the `0::` line), never from an assumed path. No controller is enabled:
//! `cgroup.procs`, `cgroup.kill`, `cgroup.freeze`, `cgroup.events` and `cpu.stat` are core files
//! of every non-root cgroup, so this works in the hybrid layout too (v2 mounted beside the v1
//! controllers) and never touches the "no internal processes" rule.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::guardian;

/// The prefix of a node's cgroup; the rest of the name is the node key.
pub(crate) const NODE_PREFIX: &str = "iris-";
/// The prefix of an agent's cgroup inside the node's.
const AGENT_PREFIX: &str = "agent-";
/// Agent cgroup numbers, process-wide, so two runtimes of one node key never race for a name.
static NEXT_AGENT: AtomicU64 = AtomicU64::new(1);
/// The node cgroups this process uses, and by how many runtimes: the last one to go removes
/// the directory.
static USERS: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());
/// How many processes freeze-and-kill signals before it gives up a round (a fork bomb).
const FREEZE_KILL_ROUNDS: usize = 64;

/// Why the cgroup v2 hierarchy cannot hold agents here.
#[derive(Debug, thiserror::Error)]
pub enum CgroupUnavailable {
    /// No cgroup2 filesystem is mounted.
    #[error("no cgroup v2 hierarchy is mounted (/proc/self/mountinfo lists no cgroup2)")]
    NotMounted,
    /// `/proc/self/cgroup` has no `0::` line, or it lies outside the mounted part.
    #[error("this process's cgroup v2 path is unknown ({0})")]
    UnknownCgroup(String),
    /// The node's cgroup could not be created or used.
    #[error("cannot create agent cgroups under {path}: {source}")]
    NotWritable {
        /// The directory in question.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The unified hierarchy's mount point and the part of the hierarchy mounted there, from the
/// text of `/proc/self/mountinfo`. Fields: id, parent, dev, root, mount point, options,
/// optional fields, `-`, type, source, super options; paths escape spaces as octal.
pub(crate) fn unified_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_ascii_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split_ascii_whitespace();
        let root = unescape(fields.nth(3)?);
        let mount_point = unescape(fields.next()?);
        Some((PathBuf::from(mount_point), root))
    })
}

/// This process's cgroup v2 path, from the text of `/proc/self/cgroup`.
pub(crate) fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_end().to_owned())
}

/// Where `cgroup` (a path in the hierarchy) is, given the mount point and the mounted root.
pub(crate) fn cgroup_dir(mount_point: &Path, mount_root: &str, cgroup: &str) -> Option<PathBuf> {
    let relative = if mount_root == "/" {
        cgroup
    } else {
        let rest = cgroup.strip_prefix(mount_root)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    // A deleted cgroup is reported with a " (deleted)" suffix: it cannot hold children.
    if relative.ends_with(" (deleted)") {
        return None;
    }
    Some(mount_point.join(relative.trim_start_matches('/')))
}

/// Undoes the octal escapes (`\040` for a space) of `/proc` mount tables.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0_u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The node's cgroup, which holds one cgroup per agent.
#[derive(Debug)]
pub(crate) struct NodeCgroup {
    dir: PathBuf,
    /// Whether `cgroup.kill` exists (Linux 5.14+); else agents are frozen and killed.
    can_kill: bool,
    /// The guardian kills this cgroup if the process dies; dropped (forgotten) with it.
    _watch: Option<guardian::CgroupWatch>,
}

impl NodeCgroup {
    /// Creates (or reuses) `iris-<key>` under this process's cgroup and proves that agent
    /// cgroups can be made and joined there. Blocking: small reads and writes of cgroupfs.
    pub(crate) fn open(key: &str) -> Result<NodeCgroup, CgroupUnavailable> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| CgroupUnavailable::UnknownCgroup(format!("/proc/self/mountinfo: {e}")))?;
        let (mount_point, mount_root) =
            unified_mount(&mountinfo).ok_or(CgroupUnavailable::NotMounted)?;
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| CgroupUnavailable::UnknownCgroup(format!("/proc/self/cgroup: {e}")))?;
        let own = own_cgroup(&proc_cgroup).ok_or_else(|| {
            CgroupUnavailable::UnknownCgroup("/proc/self/cgroup has no `0::` line".into())
        })?;
        let parent = cgroup_dir(&mount_point, &mount_root, &own).ok_or_else(|| {
            CgroupUnavailable::UnknownCgroup(format!(
                "{own} is not inside the part mounted at {} ({mount_root})",
                mount_point.display()
            ))
        })?;
        let dir = parent.join(format!("{NODE_PREFIX}{key}"));
        let not_writable = |source| CgroupUnavailable::NotWritable {
            path: dir.clone(),
            source,
        };
        // Held until this node cgroup counts as used: a runtime of the same node key that is
        // dropping meanwhile must not remove the directory from under this one.
        let mut users = USERS.lock().unwrap_or_else(PoisonError::into_inner);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(not_writable(e)),
        }
        // A probe child: creating one, and being allowed to move a process into it, is what
        // every spawn will need.
        let probe = dir.join(format!("probe-{}", std::process::id()));
        fs::create_dir(&probe).or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(not_writable(e)),
        })?;
        let can_kill = probe.join("cgroup.kill").exists();
        let writable =
            nix::unistd::access(&probe.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK);
        let _ = fs::remove_dir(&probe);
        writable.map_err(|e| not_writable(io::Error::from(e)))?;
        let watch = guardian::watch_cgroup(&dir.join("cgroup.kill"));
        *users.entry(dir.clone()).or_default() += 1;
        Ok(NodeCgroup {
            dir,
            can_kill,
            _watch: watch,
        })
    }

    /// The node's cgroup directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `cgroup.kill` is available (else freeze-and-kill is used).
    pub(crate) fn can_kill(&self) -> bool {
        self.can_kill
    }

    /// Creates a new, empty agent cgroup. Blocking, but one `mkdir` and one `open` of cgroupfs.
    pub(crate) fn new_agent(&self) -> io::Result<AgentCgroup> {
        loop {
            let n = NEXT_AGENT.fetch_add(1, Ordering::Relaxed);
            let dir = self.dir.join(format!("{AGENT_PREFIX}{n}"));
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // Left by an earlier runtime of this node key in this process: take another.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let procs = OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map(OwnedFd::from);
            return match procs {
                Ok(procs) => Ok(AgentCgroup {
                    dir,
                    procs: Some(procs),
                    can_kill: self.can_kill,
                }),
                Err(e) => {
                    let _ = fs::remove_dir(&dir);
                    Err(e)
                }
            };
        }
    }

    /// The agent cgroups now under the node's (left by an earlier run, at start-up).
    pub(crate) fn agent_cgroups(&self) -> Vec<AgentCgroup> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| AgentCgroup {
                dir: e.path(),
                procs: None,
                can_kill: self.can_kill,
            })
            .collect()
    }
}

impl Drop for NodeCgroup {
    /// Removes the node's cgroup once the runtime is done with it, with any empty agent cgroup
    /// left in it (a cgroup that still holds a process stays, for the next start to reap).
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(PoisonError::into_inner);
        let left = users.get_mut(&self.dir).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left.unwrap_or(0) > 0 {
            // Another runtime of this node key in this process still uses it.
            return;
        }
        users.remove(&self.dir);
        for agent in self.agent_cgroups() {
            let _ = fs::remove_dir(agent.dir());
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// One agent's cgroup. The child joins it before `exec`; [`AgentCgroup::kill`] ends everything
/// in it; it is removed once empty.
#[derive(Debug)]
pub(crate) struct AgentCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, open for the child to write itself into (close-on-exec).
    procs: Option<OwnedFd>,
    can_kill: bool,
}

impl AgentCgroup {
    /// The cgroup's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the child of `command` move itself into this cgroup after `fork` and before
    /// `exec`, so the agent never runs outside it. A failed move fails the spawn.
    pub(crate) fn join_before_exec(&self, command: &mut Command) {
        let Some(fd) = self.procs.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        // SAFETY: the closure runs in the forked child before exec. It makes one write(2) of a
        // static buffer to a descriptor the parent keeps open until the spawn returns; it
        // allocates nothing and takes no lock. Writing "0" moves the writing process.
        unsafe {
            command.pre_exec(move || {
                let written = nix::libc::write(fd, c"0".as_ptr().cast(), 1);
                if written == 1 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
    }

    /// Drops the descriptor the child used to join (once it has been spawned).
    pub(crate) fn joined(&mut self) {
        self.procs = None;
    }

    /// Kills every process in the cgroup now: `cgroup.kill`, or else freeze, SIGKILL each
    /// member, thaw. Blocking, but only small writes to cgroupfs; safe in `Drop`.
    pub(crate) fn kill(&self) {
        if self.can_kill {
            if let Err(error) = write_file(&self.dir.join("cgroup.kill"), b"1")
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(cgroup = %self.dir.display(), %error, "could not kill the agent's cgroup");
            }
            return;
        }
        self.freeze_and_kill();
    }

    /// For kernels without `cgroup.kill`: a frozen process cannot fork, so SIGKILL to every
    /// member of a frozen cgroup leaves nothing (a fatal signal ends even a frozen process).
    fn freeze_and_kill(&self) {
        let _ = write_file(&self.dir.join("cgroup.freeze"), b"1");
        for _ in 0..FREEZE_KILL_ROUNDS {
            let members = self.members();
            if members.is_empty() {
                break;
            }
            for pid in members {
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
            std::thread::yield_now();
        }
        let _ = write_file(&self.dir.join("cgroup.freeze"), b"0");
    }

    /// The pids in the cgroup (zombies not yet reaped included).
    pub(crate) fn members(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any process is left in it (`populated` of `cgroup.events`); a cgroup that is gone
    /// is empty.
    pub(crate) fn populated(&self) -> bool {
        fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|text| text.lines().any(|l| l.trim() == "populated 1"))
            .unwrap_or(false)
    }

    /// The CPU time of every process that ever ran in the cgroup (`usage_usec` of `cpu.stat`).
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(&self.dir)
    }

    /// Kills what is in the cgroup, waits up to `limit` for it to empty, and removes it.
    /// Returns how many processes were in it when the kill began, or `None` if it did not
    /// empty in time (it is then left for the next start-up to reap).
    pub(crate) async fn kill_and_remove(&self, limit: Duration) -> Option<usize> {
        let this = self.clone_path();
        let left = tokio::task::spawn_blocking(move || {
            let members = this.members().len();
            if members > 0 {
                this.kill();
            }
            members
        })
        .await
        .unwrap_or(0);
        let deadline = tokio::time::Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        while self.populated() {
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(cgroup = %self.dir.display(), "processes survive the kill of the agent's cgroup");
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            if !self.can_kill {
                // Freeze-and-kill is one pass; a process that was mid-fork needs another.
                self.kill();
            }
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(cgroup = %self.dir.display(), %error, "could not remove the agent's empty cgroup");
            }
        }
        Some(left)
    }

    /// The same cgroup, without the join descriptor (for blocking work off the async thread).
    fn clone_path(&self) -> AgentCgroup {
        AgentCgroup {
            dir: self.dir.clone(),
            procs: None,
            can_kill: self.can_kill,
        }
    }
}

/// The CPU time of cgroup `dir` (`usage_usec` of its `cpu.stat`, present without any
/// controller).
pub(crate) fn cpu_time_of(dir: &Path) -> Option<Duration> {
    let text = fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let usec = text
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_micros(usec))
}

/// Writes `bytes` to a cgroupfs file in one write (the kernel acts on each write).
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_among_v1_controllers() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
41 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            unified_mount(mountinfo),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".into()))
        );
        assert_eq!(unified_mount("31 30 0:27 / /x rw - cgroup cgroup rw"), None);
    }

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        let line = "41 30 0:38 /sub /mnt/my\\040cgroups rw - cgroup2 none rw";
        assert_eq!(
            unified_mount(line),
            Some((PathBuf::from("/mnt/my cgroups"), "/sub".into()))
        );
    }

    #[test]
    fn the_own_cgroup_is_the_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/iris.service\n";
        assert_eq!(
            own_cgroup(text).as_deref(),
            Some("/system.slice/iris.service")
        );
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn the_cgroup_directory_accounts_for_a_mounted_subtree() {
        let mount = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup_dir(mount, "/", "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/a/b"))
        );
        assert_eq!(
            cgroup_dir(mount, "/", "/"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup_dir(mount, "/a", "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/b"))
        );
        assert_eq!(
            cgroup_dir(mount, "/a", "/ab"),
            None,
            "not inside the mounted part"
        );
        assert_eq!(cgroup_dir(mount, "/", "/a (deleted)"), None);
    }
}
