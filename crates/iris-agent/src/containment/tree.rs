//! The fallback without a writable cgroup: a child subreaper and a sweep of each agent's process
//! tree.
//!
//! `PR_SET_CHILD_SUBREAPER` makes this process the new parent of any orphaned descendant, so a
//! tool that `setsid`s and whose parent exits stays findable (its parent is us, not init). One
//! sweeper task per runtime reads `/proc` every [`SWEEP_EVERY`] and keeps, for each live agent,
//! the processes descended from it (pid and start time, so a reused pid is never taken for
//! one). Each agent's environment also carries a tag, [`TAG_VAR`]` = <node key>/<n>`, which its
//! descendants inherit: a tool that was started and orphaned between two sweeps is still found
//! by it, and so is whatever a killed node left behind, at the next start. Stopping an agent
//! kills its tree and its tagged processes (each process group whole), looks again until
//! nothing new appears, and reaps the orphans that came back to us.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::procfs::{self, ProcStat};

/// How often the sweeper reads `/proc` for the trees of live agents.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How many times a stop looks again for processes forked while the tree was being killed.
const STOP_ROUNDS: usize = 8;
/// How long a stop waits for the processes it killed to be dead: SIGKILL takes effect when a
/// process next runs, which a loaded machine can delay by milliseconds.
const DEATH_WAIT: Duration = Duration::from_secs(2);
/// The environment variable that tags every process of an agent's tree (`<node key>/<n>`).
pub const TAG_VAR: &str = "IRIS_AGENT_TAG";
/// Agent tag numbers, process-wide.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// Makes this process a child subreaper (once per process); false if the kernel refused.
pub(crate) fn become_subreaper() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            match nix::sys::prctl::set_child_subreaper(true) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "could not become a child subreaper; orphaned agent tools go to init");
                    false
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        false
    })
}

/// One agent's tree as the sweeps have seen it.
#[derive(Debug)]
pub(crate) struct TreeState {
    /// The value of [`TAG_VAR`] in the agent's environment.
    tag: String,
    root: u32,
    root_ticks: Option<u64>,
    /// Descendants seen alive: pid → start time.
    known: Mutex<BTreeMap<u32, u64>>,
    /// The tree's CPU time at the last sweep, in clock ticks.
    cpu_ticks: AtomicU64,
}

impl TreeState {
    /// The tree's CPU time at the last sweep.
    pub(crate) fn cpu_time(&self) -> Duration {
        procfs::ticks_to_duration(self.cpu_ticks.load(Ordering::Relaxed))
    }

    /// Updates the tree from one reading of `/proc`; returns its live members.
    fn update(&self, table: &ProcTable) -> Vec<ProcStat> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let members = table.tree(self.root, self.root_ticks, &known);
        known.clear();
        known.extend(
            members
                .iter()
                .filter(|s| s.pid != self.root)
                .map(|s| (s.pid, s.start_ticks)),
        );
        let cpu = members.iter().map(|s| s.cpu_ticks).sum();
        self.cpu_ticks.store(cpu, Ordering::Relaxed);
        members
    }
}

/// One reading of `/proc`: every process, and the children of each.
struct ProcTable {
    by_pid: HashMap<u32, ProcStat>,
    children: HashMap<u32, Vec<u32>>,
}

impl ProcTable {
    fn read() -> ProcTable {
        Self::from_stats(procfs::all_stats())
    }

    fn from_stats(stats: Vec<ProcStat>) -> ProcTable {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for s in &stats {
            children.entry(s.ppid).or_default().push(s.pid);
        }
        ProcTable {
            by_pid: stats.into_iter().map(|s| (s.pid, s)).collect(),
            children,
        }
    }

    /// The live processes of a tree: the root (if it is still the process that was started)
    /// and the processes known from earlier sweeps (same pid and start time), with every
    /// descendant of each.
    fn tree(
        &self,
        root: u32,
        root_ticks: Option<u64>,
        known: &BTreeMap<u32, u64>,
    ) -> Vec<ProcStat> {
        let same = |pid: u32, ticks: Option<u64>| {
            self.by_pid
                .get(&pid)
                .filter(|s| ticks.is_none_or(|t| t == s.start_ticks))
                .copied()
        };
        let mut seen = BTreeSet::new();
        let mut stack: Vec<u32> = same(root, root_ticks)
            .into_iter()
            .chain(
                known
                    .iter()
                    .filter_map(|(pid, ticks)| same(*pid, Some(*ticks))),
            )
            .map(|s| s.pid)
            .collect();
        let mut members = Vec::new();
        while let Some(pid) = stack.pop() {
            if !seen.insert(pid) {
                continue;
            }
            let Some(stat) = self.by_pid.get(&pid) else {
                continue;
            };
            members.push(*stat);
            stack.extend(self.children.get(&pid).into_iter().flatten().copied());
        }
        members
    }
}

/// The sweeper of one runtime: the trees of its live agents, and the task that sweeps them.
#[derive(Debug)]
pub(crate) struct Sweeper {
    node_key: String,
    trees: Mutex<Vec<Weak<TreeState>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Sweeper {
    /// The sweeper of the node whose agents are tagged `<node_key>/<n>`.
    pub(crate) fn new(node_key: &str) -> Sweeper {
        Sweeper {
            node_key: node_key.to_owned(),
            trees: Mutex::default(),
            task: Mutex::default(),
        }
    }

    /// A new agent's tag, for [`TAG_VAR`] in its environment.
    pub(crate) fn new_tag(&self) -> String {
        format!(
            "{}/{}",
            self.node_key,
            NEXT_TAG.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Kills every process tagged as an agent of this node: what a previous run left when it
    /// was killed outright. Returns how many. Blocking (reads `/proc`).
    pub(crate) fn reap_tagged(&self) -> usize {
        let prefix = format!("{}/", self.node_key);
        let found = kill_as_found(|| {
            procfs::all_stats()
                .into_iter()
                .filter(|s| s.is_alive() && s.pid != std::process::id())
                .filter(|s| {
                    procfs::environ_has(s.pid, TAG_VAR, |v| v.starts_with(prefix.as_bytes()))
                })
                .collect()
        });
        found.len()
    }

    /// Starts keeping the tree of the agent `root` (started at `root_ticks`, tagged `tag`). The
    /// sweeper task starts with the first tree; it ends when the sweeper is dropped.
    pub(crate) fn track(
        self: &Arc<Self>,
        tag: String,
        root: u32,
        root_ticks: Option<u64>,
    ) -> Arc<TreeState> {
        let tree = Arc::new(TreeState {
            tag,
            root,
            root_ticks,
            known: Mutex::new(BTreeMap::new()),
            cpu_ticks: AtomicU64::new(0),
        });
        self.trees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&tree));
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_none_or(|t| t.is_finished())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            *task = Some(runtime.spawn(sweep_loop(Arc::downgrade(self))));
        }
        tree
    }

    /// Sweeps every live tree once (blocking: reads `/proc`).
    fn sweep(&self) {
        let trees: Vec<Arc<TreeState>> = {
            let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
            trees.retain(|t| t.strong_count() > 0);
            trees.iter().filter_map(Weak::upgrade).collect()
        };
        if trees.is_empty() {
            return;
        }
        let table = ProcTable::read();
        for tree in trees {
            let members = tree.update(&table);
            reap_orphan_zombies(&members);
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

async fn sweep_loop(sweeper: Weak<Sweeper>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(strong) = sweeper.upgrade() else {
            return;
        };
        if tokio::task::spawn_blocking(move || strong.sweep())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Kills the whole tree and every process with the agent's tag, looking again for what was
/// forked meanwhile, and reaps the orphans that came back to this process. Returns how many
/// processes were killed. Blocking (reads `/proc`).
pub(crate) fn kill_tree(tree: &TreeState) -> usize {
    let me = std::process::id();
    kill_as_found(|| {
        let table = ProcTable::read();
        let mut members = tree.update(&table);
        // Orphaned before any sweep saw them: found by the tag they inherited.
        members.extend(table.by_pid.values().filter(|s| {
            s.pid != me
                && s.pid != tree.root
                && s.is_alive()
                && procfs::environ_has(s.pid, TAG_VAR, |v| v == tree.tag.as_bytes())
        }));
        members
    })
    .len()
}

/// Kills (SIGKILL) whatever `find` returns, and asks again until nothing new turns up: what a
/// member forked meanwhile is found by its parent chain or its tag. Then it waits (within
/// [`DEATH_WAIT`]) until they are dead, so none is left running when a stop returns, and reaps
/// those that are our children. Returns what was killed.
///
/// Parents die before their children, and each member that leads a process group takes its
/// whole group with it. The order matters: a shell running `sleep 60; touch marker` (each
/// command in a group of its own, as the real CLI's shell does) whose `sleep` died first could
/// run `touch` before its own kill lands, if this thread is preempted between the two; a shell
/// with a SIGKILL pending never runs another command.
///
/// Nothing is stopped with SIGSTOP first: the group of a tool in a session of its own is an
/// orphaned process group, and when a stopped member's parent exits the kernel sends such a
/// group SIGHUP and SIGCONT (POSIX job control), which can let a shell running
/// `sleep 60; touch marker` see its `sleep` die and run `touch` before the kill lands.
fn kill_as_found(find: impl Fn() -> Vec<ProcStat>) -> BTreeMap<u32, u64> {
    let own_group = nix::unistd::getpgrp().as_raw().unsigned_abs();
    let mut killed: BTreeMap<u32, u64> = BTreeMap::new();
    for _ in 0..STOP_ROUNDS {
        let fresh: Vec<ProcStat> = find()
            .into_iter()
            .filter(|s| s.is_alive() && !killed.contains_key(&s.pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for s in parents_first(fresh) {
            if s.pgrp == s.pid && s.pgrp != own_group {
                crate::process::group::signal_group(s.pgrp, Signal::SIGKILL);
            }
            signal(s.pid, Signal::SIGKILL);
            killed.insert(s.pid, s.start_ticks);
        }
    }
    wait_until_dead(&killed);
    let table = ProcTable::read();
    let dead: Vec<ProcStat> = killed
        .iter()
        .filter_map(|(pid, ticks)| {
            table
                .by_pid
                .get(pid)
                .filter(|s| s.start_ticks == *ticks)
                .copied()
        })
        .collect();
    reap_orphan_zombies(&dead);
    killed
}

/// Waits (polling, within [`DEATH_WAIT`]) until none of `killed` (pid → start time) is alive.
fn wait_until_dead(killed: &BTreeMap<u32, u64>) {
    let deadline = std::time::Instant::now() + DEATH_WAIT;
    let any_alive = || {
        killed.iter().any(|(pid, ticks)| {
            procfs::stat(*pid).is_some_and(|s| s.start_ticks == *ticks && s.is_alive())
        })
    };
    while any_alive() {
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                "processes killed with SIGKILL are still running after {DEATH_WAIT:?}; they die when next scheduled"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `procs` ordered so that each comes after its parent (and every ancestor) among them.
fn parents_first(procs: Vec<ProcStat>) -> Vec<ProcStat> {
    let parent: HashMap<u32, u32> = procs.iter().map(|s| (s.pid, s.ppid)).collect();
    let depth = |pid: u32| {
        let mut depth = 0;
        let mut at = pid;
        // Bounded: a pid reused while we read /proc could make a cycle.
        while let Some(&up) = parent.get(&at) {
            if depth > procs.len() {
                break;
            }
            depth += 1;
            at = up;
        }
        depth
    };
    let mut ordered: Vec<(usize, ProcStat)> = procs.iter().map(|s| (depth(s.pid), *s)).collect();
    ordered.sort_by_key(|(depth, s)| (*depth, s.pid));
    ordered.into_iter().map(|(_, s)| s).collect()
}

/// How many of the tree's processes are alive (zombies aside), re-read from `/proc`
/// (blocking).
pub(crate) fn live_members(tree: &TreeState) -> usize {
    tree.update(&ProcTable::read())
        .iter()
        .filter(|s| s.is_alive())
        .count()
}

/// Waits for (reaps) the zombies among `members` that are our children: orphans of an agent's
/// tree that the subreaper took in. Only these exact pids, never `waitpid(-1)`, which would
/// steal the exit status of a child tokio is waiting for.
fn reap_orphan_zombies(members: &[ProcStat]) {
    let me = std::process::id();
    for s in members.iter().filter(|s| s.ppid == me && !s.is_alive()) {
        if let Ok(raw) = i32::try_from(s.pid) {
            let _ = waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG));
        }
    }
}

fn signal(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid).map(Pid::from_raw)
        && raw.as_raw() > 1
    {
        let _ = kill(raw, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, start_ticks: u64) -> ProcStat {
        ProcStat {
            pid,
            state: 'S',
            ppid,
            pgrp: pid,
            start_ticks,
            cpu_ticks: 1,
        }
    }

    fn pids(members: Vec<ProcStat>) -> BTreeSet<u32> {
        members.into_iter().map(|s| s.pid).collect()
    }

    #[test]
    fn parents_are_killed_before_their_children_whatever_their_pids() {
        // A reused (lower) pid for the child: pid order would kill it first.
        let shell = stat(500, 1, 5);
        let sleep = stat(20, 500, 6);
        let touch_to_be = stat(30, 20, 7);
        let stranger = stat(40, 1, 8);
        let order: Vec<u32> = parents_first(vec![touch_to_be, sleep, stranger, shell])
            .into_iter()
            .map(|s| s.pid)
            .collect();
        assert_eq!(order, [40, 500, 20, 30]);
    }

    #[test]
    fn a_parent_cycle_from_reused_pids_still_orders_every_process() {
        let order = parents_first(vec![stat(1, 2, 1), stat(2, 1, 1), stat(3, 2, 1)]);
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn the_tree_is_the_root_and_every_descendant() {
        let table = ProcTable::from_stats(vec![
            stat(1, 0, 1),
            stat(10, 1, 5),
            stat(11, 10, 6),
            stat(12, 11, 7),
            stat(20, 1, 8),
        ]);
        let tree = table.tree(10, Some(5), &BTreeMap::new());
        assert_eq!(pids(tree), BTreeSet::from([10, 11, 12]));
    }

    #[test]
    fn known_orphans_stay_in_the_tree_after_their_parent_is_gone() {
        // 12 was seen under the agent; its parent died and it was reparented to us (99).
        let table = ProcTable::from_stats(vec![stat(99, 1, 1), stat(12, 99, 7), stat(13, 12, 9)]);
        let known = BTreeMap::from([(12, 7)]);
        assert_eq!(
            pids(table.tree(10, Some(5), &known)),
            BTreeSet::from([12, 13])
        );
    }

    #[test]
    fn a_reused_pid_is_not_taken_for_a_member() {
        let table = ProcTable::from_stats(vec![stat(10, 1, 50), stat(12, 1, 70)]);
        let known = BTreeMap::from([(12, 7)]);
        assert!(table.tree(10, Some(5), &known).is_empty());
    }
}
