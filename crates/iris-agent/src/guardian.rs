//! The guardian: a helper process that SIGKILLs every agent process group this process still
//! owns when this process dies, however it dies.
//!
//! Why it exists: `PR_SET_PDEATHSIG` reaches only the agent itself (not the MCP servers and tools
//! it started in its group), and it fires when the spawning *thread* dies rather than the process.
//! Killing the whole group needs someone who outlives us, like erlexec's port program and its
//! `kill_group`. iris is also a library, so there is no helper binary to exec: the guardian is a
//! plain `fork()` of this process that never execs.
//!
//! How it works (Linux only; elsewhere every function here is a no-op):
//!
//! - The first agent spawn (or [`start`]) forks the guardian. Exactly one exists per process.
//! - A pipe joins us to it. We hold the only write end (`O_CLOEXEC`, so agents and every other
//!   exec'd child never inherit it; non-blocking, so a stuck guardian never stalls a spawn); the
//!   guardian holds the only read end and closes every other descriptor it inherited.
//! - After each agent spawn we write an 8-byte `watch` record with the agent's process group id,
//!   and a `forget` record once that group is known empty (or was just SIGKILLed on drop). Each
//!   record is one `write(2)` of at most `PIPE_BUF` bytes, so records from concurrent threads never
//!   interleave.
//! - Where agents run in cgroups (see [`crate::containment`]), the node's cgroup is registered
//!   too: a `watch-cgroup` record carries the path of its `cgroup.kill` file, which the guardian
//!   opens at once, and a `forget-cgroup` record closes it again.
//! - When this process dies, by any means, the kernel closes the write end; the guardian reads
//!   EOF, SIGKILLs every group still watched, writes `1` to every `cgroup.kill` it holds (which
//!   ends every agent and everything they started, `setsid` tools included), and exits. While
//!   we live, it sleeps in `read(2)`.
//!
//! A write that fails (the guardian is gone, or 8192 records are unread) is logged once and never
//! fails the spawn; the parent-death signal and the start-up reaper remain as fallbacks.
//!
//! Memory: the fork shares our pages copy-on-write, so the guardian keeps what this process
//! held when it was forked (as pages we later change are copied). Call [`start`] early, while
//! the process is small, to keep that cost low.
#![allow(unsafe_code)]

/// Starts the guardian now if it is not running yet, and returns its pid; `None` if it could not
/// be started (logged) or off Linux. Agent spawns start it on first use anyway; calling this early
/// (at start-up, while the process is small) only makes the forked copy cheaper.
pub fn start() -> Option<u32> {
    imp::guardian().map(|g| g.pid)
}

/// The guardian's pid, if it has been started (this never starts it). One guardian serves the
/// whole process.
pub fn pid() -> Option<u32> {
    imp::started().map(|g| g.pid)
}

/// How many process groups this process has asked the guardian to watch and not yet forgotten.
pub fn watched() -> usize {
    imp::WATCHED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The guardian watches `pgid` until the returned token is dropped (which sends `forget`). `None`
/// if the guardian is unavailable: the spawn goes on without it. Each token forgets exactly once,
/// so a pgid reused by a newer agent before an older `forget` arrives stays watched.
pub(crate) fn watch(pgid: u32) -> Option<Watch> {
    let raw = i32::try_from(pgid).ok().filter(|p| *p > 1)?;
    imp::watch(raw).then_some(Watch { pgid: raw })
}

/// The guardian kills the cgroup whose `cgroup.kill` file is `kill_file` when this process dies,
/// until the returned token is dropped. `None` if the guardian is unavailable or the path is too
/// long for one record.
pub(crate) fn watch_cgroup(kill_file: &std::path::Path) -> Option<CgroupWatch> {
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicI32, Ordering};
    static NEXT_ID: AtomicI32 = AtomicI32::new(1);
    let path = kill_file.as_os_str().as_bytes();
    let len = u16::try_from(path.len())
        .ok()
        .filter(|len| usize::from(*len) <= MAX_PATH)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut record = Vec::with_capacity(RECORD + 2 + path.len());
    record.extend_from_slice(&encode(OP_WATCH_CGROUP, id));
    record.extend_from_slice(&len.to_ne_bytes());
    record.extend_from_slice(path);
    imp::send_cgroup(&record).then_some(CgroupWatch { id })
}

/// A cgroup the guardian will kill if this process dies; dropping it makes the guardian forget
/// it (close its `cgroup.kill`).
#[derive(Debug)]
pub(crate) struct CgroupWatch {
    id: i32,
}

impl Drop for CgroupWatch {
    fn drop(&mut self) {
        imp::send_cgroup(&encode(OP_FORGET_CGROUP, self.id));
    }
}

/// A process group the guardian watches; dropping it tells the guardian to forget the group.
/// Drop it only once the group is empty or has just been sent SIGKILL.
#[derive(Debug)]
pub(crate) struct Watch {
    pgid: i32,
}

impl Drop for Watch {
    fn drop(&mut self) {
        imp::forget(self.pgid);
    }
}

/// Record operations, shared by both sides of the pipe.
const OP_WATCH: i32 = 1;
const OP_FORGET: i32 = 2;
/// Followed by a native-endian `u16` length and that many bytes of a `cgroup.kill` path.
const OP_WATCH_CGROUP: i32 = 3;
const OP_FORGET_CGROUP: i32 = 4;
/// One record: the operation and the pgid (or cgroup id), native-endian `i32`s (both ends are
/// this program).
const RECORD: usize = 8;
/// The longest `cgroup.kill` path a record carries: the whole record stays within `PIPE_BUF`
/// (4096 on Linux), so it is written atomically, and the guardian's buffer holds it with a NUL.
const MAX_PATH: usize = 4096 - RECORD - 2 - 1;
/// How many node cgroups the guardian holds at once (one per runtime; more are not killed).
const CGROUP_SLOTS: usize = 64;

fn encode(op: i32, pgid: i32) -> [u8; RECORD] {
    let [a, b, c, d] = op.to_ne_bytes();
    let [e, f, g, h] = pgid.to_ne_bytes();
    [a, b, c, d, e, f, g, h]
}

fn decode(record: [u8; RECORD]) -> (i32, i32) {
    let [a, b, c, d, e, f, g, h] = record;
    (
        i32::from_ne_bytes([a, b, c, d]),
        i32::from_ne_bytes([e, f, g, h]),
    )
}

/// Applies one record to the guardian's table, whose first `len` slots are the watched pgids,
/// and returns the new length. A multiset: a pgid watched twice (reused by a newer agent before
/// the older one's `forget` arrived) stays watched until both forget it. Runs in the forked
/// guardian, so it neither allocates nor panics; a full table drops the new watch.
fn apply(table: &mut [i32], len: usize, (op, pgid): (i32, i32)) -> usize {
    match op {
        // Never 0 (our own group), 1 (init) or negative: `kill(-pgid)` must name one group.
        OP_WATCH if pgid > 1 => match table.get_mut(len) {
            Some(slot) => {
                *slot = pgid;
                len + 1
            }
            None => len,
        },
        OP_FORGET => {
            let Some(live) = table.get_mut(..len) else {
                return len;
            };
            match live.iter().position(|p| *p == pgid) {
                Some(at) => {
                    live.swap(at, len - 1);
                    len - 1
                }
                None => len,
            }
        }
        _ => len,
    }
}

/// A slot of the guardian's cgroup table: the cgroup's id and its open `cgroup.kill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CgroupSlot {
    id: i32,
    fd: i32,
}

/// Adds a cgroup to the guardian's table (whose first `len` slots are in use) and returns the
/// new length; a full table keeps the old length (the caller closes the descriptor).
fn add_cgroup(table: &mut [CgroupSlot], len: usize, slot: CgroupSlot) -> usize {
    match table.get_mut(len) {
        Some(free) => {
            *free = slot;
            len + 1
        }
        None => len,
    }
}

/// Takes cgroup `id` out of the table; returns the new length and its descriptor, if present.
fn remove_cgroup(table: &mut [CgroupSlot], len: usize, id: i32) -> (usize, Option<i32>) {
    let Some(live) = table.get_mut(..len) else {
        return (len, None);
    };
    match live.iter().position(|s| s.id == id) {
        Some(at) => {
            let fd = live[at].fd;
            live.swap(at, len - 1);
            (len - 1, Some(fd))
        }
        None => (len, None),
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use nix::errno::Errno;
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::libc;
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    use nix::unistd::{ForkResult, fork, pipe2, write};

    use super::{
        CGROUP_SLOTS, CgroupSlot, MAX_PATH, OP_FORGET, OP_FORGET_CGROUP, OP_WATCH, OP_WATCH_CGROUP,
        RECORD, add_cgroup, apply, decode, encode, remove_cgroup,
    };

    /// Most groups watched at once. The table is allocated before the fork because the guardian
    /// may not allocate; 64 Ki agents per process is far beyond any real load.
    const CAPACITY: usize = 65_536;
    /// Descriptors closed one by one in the guardian if `close_range(2)` is missing (Linux < 5.9).
    const FALLBACK_FD_LIMIT: i32 = 65_536;
    /// Signals are numbered 1..NSIG; NSIG is 65 on Linux.
    const NSIG: i32 = 65;

    pub(super) struct Guardian {
        pub(super) pid: u32,
        to_guardian: OwnedFd,
    }

    static GUARDIAN: OnceLock<Option<Guardian>> = OnceLock::new();
    pub(super) static WATCHED: AtomicUsize = AtomicUsize::new(0);
    static WARNED: AtomicBool = AtomicBool::new(false);

    /// The guardian, started on first call. A failed start is not retried: it is logged, and
    /// agents keep their other protections.
    pub(super) fn guardian() -> Option<&'static Guardian> {
        GUARDIAN
            .get_or_init(|| match spawn() {
                Ok(guardian) => {
                    tracing::debug!(pid = guardian.pid, "agent guardian started");
                    Some(guardian)
                }
                Err(error) => {
                    tracing::warn!(%error, "could not start the agent guardian; agent process groups will not be killed if this process dies");
                    None
                }
            })
            .as_ref()
    }

    pub(super) fn started() -> Option<&'static Guardian> {
        GUARDIAN.get()?.as_ref()
    }

    pub(super) fn watch(pgid: i32) -> bool {
        let sent = guardian().is_some_and(|g| g.send(OP_WATCH, pgid));
        if sent {
            WATCHED.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Sends a cgroup record (already encoded); false if the guardian is unavailable.
    pub(super) fn send_cgroup(record: &[u8]) -> bool {
        guardian().is_some_and(|g| g.send_bytes(record, 0))
    }

    pub(super) fn forget(pgid: i32) {
        WATCHED.fetch_sub(1, Ordering::Relaxed);
        if let Some(guardian) = started() {
            guardian.send(OP_FORGET, pgid);
        }
    }

    impl Guardian {
        /// Writes one record; on failure, warns (once per process) and returns false.
        fn send(&self, op: i32, pgid: i32) -> bool {
            self.send_bytes(&encode(op, pgid), pgid)
        }

        /// Writes one whole record (at most `PIPE_BUF` bytes, so in one atomic write).
        fn send_bytes(&self, record: &[u8], pgid: i32) -> bool {
            match write_record(self.to_guardian.as_fd(), record) {
                Ok(n) if n == record.len() => true,
                outcome => {
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            guardian = self.pid,
                            pgid,
                            ?outcome,
                            "could not reach the agent guardian; agent process groups may outlive this process if it is killed (warned once)"
                        );
                    }
                    false
                }
            }
        }
    }

    /// `write(2)` with SIGPIPE blocked on this thread: a dead guardian must be an `EPIPE`, not a
    /// signal that kills an embedder which left SIGPIPE at its default. A SIGPIPE the write
    /// raised is taken off the thread before the mask is restored.
    fn write_record(fd: BorrowedFd<'_>, record: &[u8]) -> nix::Result<usize> {
        let sigpipe = SigSet::from(Signal::SIGPIPE);
        let mut previous = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&sigpipe), Some(&mut previous))?;
        let written = write(fd, record);
        if written == Err(Errno::EPIPE) && !previous.contains(Signal::SIGPIPE) {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: both pointers are to live, initialized values for the duration of the call;
            // a null info pointer is allowed. A zero timeout makes it a non-blocking poll.
            unsafe { libc::sigtimedwait(sigpipe.as_ref(), std::ptr::null_mut(), &now) };
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
        written
    }

    /// Creates the pipe and forks the guardian.
    fn spawn() -> nix::Result<Guardian> {
        let (from_parent, to_guardian) = pipe2(OFlag::O_CLOEXEC)?;
        fcntl(&to_guardian, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        // The guardian's table, allocated here because the guardian may not allocate. Zeroed
        // memory of this size is mapped lazily, so untouched pages cost nothing.
        let mut table = vec![0_i32; CAPACITY];
        let input = from_parent.as_raw_fd();
        // SAFETY: this process may be multi-threaded, so until it exits the child may only make
        // async-signal-safe calls: it runs `guard`, which makes raw system calls (setsid, chdir,
        // sigaction, close_range/close, read, kill, _exit) and touches only its stack and `table`,
        // allocated above. It never allocates, takes no lock, does no logging, never returns or
        // unwinds (it ends in `_exit`), so no destructor runs in it.
        match unsafe { fork() }? {
            ForkResult::Child => guard(input, &mut table),
            ForkResult::Parent { child } => {
                // The guardian holds the only read end: with ours closed, writing to a dead
                // guardian fails at once (EPIPE) instead of filling a pipe nobody reads.
                drop(from_parent);
                Ok(Guardian {
                    pid: child.as_raw().unsigned_abs(),
                    to_guardian,
                })
            }
        }
    }

    /// The guardian's whole life. Async-signal-safe calls only (see the SAFETY note in `spawn`).
    fn guard(input: RawFd, table: &mut [i32]) -> ! {
        detach();
        close_all_but(input);
        let mut len = 0;
        let mut cgroups = [CgroupSlot { id: 0, fd: -1 }; CGROUP_SLOTS];
        let mut cgroups_len = 0;
        let mut record = [0_u8; RECORD];
        while read_exact(input, &mut record) {
            match decode(record) {
                (OP_WATCH_CGROUP, id) => {
                    let Some(fd) = open_kill_file(input) else {
                        break;
                    };
                    if fd >= 0 {
                        let grown = add_cgroup(&mut cgroups, cgroups_len, CgroupSlot { id, fd });
                        if grown == cgroups_len {
                            // SAFETY: close(2) of a descriptor this process just opened.
                            unsafe { libc::close(fd) };
                        }
                        cgroups_len = grown;
                    }
                }
                (OP_FORGET_CGROUP, id) => {
                    let (shrunk, fd) = remove_cgroup(&mut cgroups, cgroups_len, id);
                    cgroups_len = shrunk;
                    if let Some(fd) = fd {
                        // SAFETY: close(2) of a descriptor this process opened.
                        unsafe { libc::close(fd) };
                    }
                }
                op => len = apply(table, len, op),
            }
        }
        // EOF: every write end is closed, so the process that owns these groups is gone.
        for pgid in table.iter().take(len).copied().filter(|p| *p > 1) {
            // SAFETY: kill(2) is async-signal-safe; `-pgid` names exactly one process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        for slot in cgroups.iter().take(cgroups_len) {
            // SAFETY: write(2) of a static one-byte buffer to a descriptor this process opened.
            unsafe { libc::write(slot.fd, c"1".as_ptr().cast(), 1) };
        }
        // SAFETY: _exit(2) ends the process without running atexit handlers or destructors.
        unsafe { libc::_exit(0) }
    }

    /// Reads the rest of a `watch-cgroup` record (its length and path) and opens the path for
    /// writing. `None` if the pipe broke; `Some(-1)` if the path could not be opened.
    fn open_kill_file(input: RawFd) -> Option<i32> {
        let mut len = [0_u8; 2];
        if !read_exact(input, &mut len) {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes(len));
        let mut path = [0_u8; MAX_PATH + 1];
        let slice = path.get_mut(..len)?;
        if !read_exact(input, slice) {
            return None;
        }
        // The byte after the path is still 0: the path is NUL-terminated.
        // SAFETY: open(2) is async-signal-safe; `path` is NUL-terminated within its bounds.
        let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC) };
        Some(fd)
    }

    /// Leaves the parent's session, so terminal signals sent to its group (Ctrl-C) or session
    /// (hang-up) do not reach the guardian; leaves its working directory, so that is not kept
    /// busy; and drops the parent's signal handlers, whose code expects the parent's state.
    fn detach() {
        // SAFETY: setsid(2), chdir(2) and sigaction(2) are async-signal-safe system calls; the
        // path is a static NUL-terminated string and the sigaction structs live on this stack.
        unsafe {
            libc::setsid();
            libc::chdir(c"/".as_ptr());
            for signal in 1..NSIG {
                let mut current: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
                    continue;
                }
                // Ignored signals stay ignored (e.g. under nohup); handled ones go back to default.
                if current.sa_sigaction != libc::SIG_DFL && current.sa_sigaction != libc::SIG_IGN {
                    let mut default: libc::sigaction = std::mem::zeroed();
                    default.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(signal, &default, std::ptr::null_mut());
                }
            }
        }
    }

    /// Closes every descriptor but `keep`. Holding any of them would be harmful: a copy of an
    /// agent's stdin write end would keep that agent from ever seeing EOF, and a copy of our
    /// pipe's write end would keep the guardian from seeing our death.
    fn close_all_but(keep: RawFd) {
        let keep = keep.unsigned_abs();
        // SAFETY: close_range(2) and close(2) are async-signal-safe system calls on integers.
        unsafe {
            let below = keep == 0 || libc::syscall(libc::SYS_close_range, 0, keep - 1, 0) == 0;
            let above = libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0) == 0;
            if !(below && above) {
                for fd in (0..FALLBACK_FD_LIMIT).filter(|fd| fd.unsigned_abs() != keep) {
                    libc::close(fd);
                }
            }
        }
    }

    /// Fills `record` from the pipe; false at EOF or on any error but EINTR.
    fn read_exact(input: RawFd, record: &mut [u8]) -> bool {
        let mut filled = 0;
        while let Some(rest) = record.get_mut(filled..).filter(|r| !r.is_empty()) {
            // SAFETY: read(2) is async-signal-safe; it writes at most `rest.len()` bytes into
            // `rest`, which is valid for that many.
            let n = unsafe { libc::read(input, rest.as_mut_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(0) => return false,
                Ok(n) => filled += n,
                Err(_) if Errno::last() == Errno::EINTR => {}
                Err(_) => return false,
            }
        }
        true
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::sync::atomic::AtomicUsize;

    #[allow(dead_code)] // never constructed: there is no guardian off Linux
    pub(super) struct Guardian {
        pub(super) pid: u32,
    }

    pub(super) static WATCHED: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn guardian() -> Option<&'static Guardian> {
        None
    }

    pub(super) fn started() -> Option<&'static Guardian> {
        None
    }

    pub(super) fn watch(_pgid: i32) -> bool {
        false
    }

    pub(super) fn forget(_pgid: i32) {}

    pub(super) fn send_cgroup(_record: &[u8]) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        assert_eq!(decode(encode(OP_FORGET, 123_456)), (OP_FORGET, 123_456));
        assert_eq!(decode(encode(OP_WATCH, i32::MAX)), (OP_WATCH, i32::MAX));
    }

    #[test]
    fn the_table_is_a_multiset_of_watched_groups() {
        let mut table = [0; 4];
        let mut len = 0;
        for pgid in [10, 20, 10] {
            len = apply(&mut table, len, (OP_WATCH, pgid));
        }
        len = apply(&mut table, len, (OP_FORGET, 10));
        assert_eq!(len, 2);
        let mut live = table[..len].to_vec();
        live.sort();
        assert_eq!(
            live,
            [10, 20],
            "a pgid watched twice is forgotten once per forget"
        );
        len = apply(&mut table, len, (OP_FORGET, 99));
        assert_eq!(len, 2, "forgetting an unknown group changes nothing");
    }

    #[test]
    fn our_own_group_init_and_all_processes_are_never_watched() {
        let mut table = [0; 4];
        for pgid in [0, 1, -1, -42] {
            assert_eq!(apply(&mut table, 0, (OP_WATCH, pgid)), 0);
        }
    }

    #[test]
    fn the_cgroup_table_adds_and_removes_by_id() {
        let empty = CgroupSlot { id: 0, fd: -1 };
        let mut table = [empty; 2];
        let mut len = 0;
        for (id, fd) in [(1, 10), (2, 20), (3, 30)] {
            len = add_cgroup(&mut table, len, CgroupSlot { id, fd });
        }
        assert_eq!(len, 2, "a full table takes no more");
        assert_eq!(remove_cgroup(&mut table, len, 1), (1, Some(10)));
        assert_eq!(remove_cgroup(&mut table, 1, 1), (1, None));
        assert_eq!(table[0], CgroupSlot { id: 2, fd: 20 });
    }

    #[test]
    fn a_full_table_drops_new_watches_instead_of_failing() {
        let mut table = [0; 2];
        let mut len = 0;
        for pgid in [10, 20, 30] {
            len = apply(&mut table, len, (OP_WATCH, pgid));
        }
        assert_eq!((len, table), (2, [10, 20]));
        assert_eq!(
            apply(&mut table, len, (7, 10)),
            2,
            "unknown ops are ignored"
        );
    }
}
