//! Reading process facts from Linux's `/proc`: what a supervisor needs to tell a live agent from
//! a zombie, and its own agent from an unrelated process that reused the pid.
//!
//! These are blocking reads of an in-memory filesystem; call them from `spawn_blocking` in async
//! code that must not stall.

use std::path::Path;

/// The fields of `/proc/<pid>/stat` that iris uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The process id.
    pub pid: u32,
    /// One-letter state: `R`, `S`, `D`, `Z` (zombie), `T`, `X` (dead), ….
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group id.
    pub pgrp: u32,
    /// Start time in clock ticks since boot; with the pid, it identifies a process uniquely.
    pub start_ticks: u64,
    /// CPU time used, in clock ticks: its own (user and system) and that of its children it
    /// has waited for.
    pub cpu_ticks: u64,
}

impl ProcStat {
    /// Whether the process still runs (is neither a zombie nor dead).
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/<pid>/stat`; `None` if the process does not exist or the file is unreadable.
pub fn stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// Parses the text of a stat file. The command name (field 2) may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(pid: u32, text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // After pgrp: session, tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt, then utime,
    // stime, cutime, cstime (fields 14-17), priority, nice, num_threads, itrealvalue, then
    // starttime (field 22).
    let mut cpu_ticks = 0_u64;
    for field in fields.by_ref().skip(8).take(4) {
        cpu_ticks = cpu_ticks.saturating_add(field.parse().ok()?);
    }
    let start_ticks = fields.nth(4)?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
        start_ticks,
        cpu_ticks,
    })
}

/// Clock ticks per second, the unit of [`ProcStat::cpu_ticks`] and [`ProcStat::start_ticks`].
pub fn ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        // sysconf(_SC_CLK_TCK) is USER_HZ, 100 on every Linux architecture iris runs on.
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// Clock ticks as a duration.
pub fn ticks_to_duration(ticks: u64) -> std::time::Duration {
    let per_second = ticks_per_second();
    std::time::Duration::from_secs(ticks / per_second)
        + std::time::Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// Every process's stat (zombies included), read one by one: a process that exits meanwhile is
/// left out. Empty if `/proc` cannot be read; see [`try_all_stats`] to tell that apart.
pub fn all_stats() -> Vec<ProcStat> {
    try_all_stats().unwrap_or_default()
}

/// Every process's stat, or the error that kept `/proc` from being read (descriptors exhausted,
/// say). A process that exits while it is read is left out; that is not an error.
pub fn try_all_stats() -> std::io::Result<Vec<ProcStat>> {
    try_all_stats_in(Path::new("/proc"))
}

/// [`try_all_stats`] for a `/proc` mounted at `root`.
fn try_all_stats_in(root: &Path) -> std::io::Result<Vec<ProcStat>> {
    let mut stats = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        match std::fs::read_to_string(root.join(pid.to_string()).join("stat")) {
            Ok(text) => stats.extend(parse_stat(pid, &text)),
            // The process exited between the listing and the read.
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stats)
}

/// Whether a failed read of `/proc/<pid>/…` means the process is gone (rather than that the
/// read itself failed).
fn is_gone(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::NotFound || error.raw_os_error() == Some(libc_esrch())
}

/// `ESRCH`, which a read of a process that just exited may return.
fn libc_esrch() -> i32 {
    nix::errno::Errno::ESRCH as i32
}

/// The live (non-zombie) processes whose process group is `pgid`.
///
/// **A failed read is not an empty group.** When `/proc` cannot be read (no descriptor left, a
/// transient kernel error), nothing is known, and the group is taken to be alive: the answer is
/// `[pgid]`, its leader. Callers ask this to decide whether an agent is gone (the health check)
/// or a stop is done; wrongly answering "gone" would drop a healthy agent, while wrongly
/// answering "alive" only waits (every such wait is bounded) and is corrected by the next look.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    live_group_members_in(Path::new("/proc"), pgid)
}

fn live_group_members_in(root: &Path, pgid: u32) -> Vec<u32> {
    match try_all_stats_in(root) {
        Ok(stats) => stats
            .into_iter()
            .filter(|s| s.pgrp == pgid && s.is_alive())
            .map(|s| s.pid)
            .collect(),
        Err(error) => {
            tracing::warn!(pgid, %error, "could not read /proc; taking the process group to be alive");
            vec![pgid]
        }
    }
}

/// Whether `/proc/<pid>/environ` has the entry `NAME=value` for which `matches(value)` holds.
/// False if the process is gone or its environment is unreadable (another user's).
pub fn environ_has(pid: u32, name: &str, matches: impl Fn(&[u8]) -> bool) -> bool {
    let Ok(bytes) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    bytes.split(|b| *b == 0).any(|entry| {
        entry
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .is_some_and(&matches)
    })
}

/// The NUL-separated arguments of `/proc/<pid>/cmdline`.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn an_unreadable_proc_is_not_an_empty_group() {
        // /proc cannot be listed (as when no descriptor is left): nothing is known, so the
        // group counts as alive.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-proc");
        assert_eq!(live_group_members_in(&missing, 4242), vec![4242]);
        // A process's stat that cannot be read for another reason than its exit: the same.
        std::fs::create_dir_all(dir.path().join("4242/stat")).unwrap();
        assert_eq!(live_group_members_in(dir.path(), 4242), vec![4242]);
        // A process that exited between the listing and the read is just left out.
        std::fs::remove_dir(dir.path().join("4242/stat")).unwrap();
        assert_eq!(live_group_members_in(dir.path(), 4242), Vec::<u32>::new());
        // And the real /proc answers about this process's group.
        let me = std::process::id();
        let group = stat(me).unwrap().pgrp;
        assert!(live_group_members(group).contains(&me));
    }

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parens() {
        let line = "4242 (my (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let s = parse_stat(4242, line).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.pgrp, s.start_ticks, s.cpu_ticks),
            ('S', 1, 4242, 987654, 1 + 2)
        );
        assert!(s.is_alive());
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(parse_stat(1, ""), None);
        assert_eq!(parse_stat(1, "1 (x) Z"), None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.is_alive());
        assert!(!cmdline(me).unwrap().is_empty());
    }
}
