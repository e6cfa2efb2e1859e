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
/// left out.
pub fn all_stats() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir(Path::new("/proc")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// The live (non-zombie) processes whose process group is `pgid`.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    all_stats()
        .into_iter()
        .filter(|s| s.pgrp == pgid && s.is_alive())
        .map(|s| s.pid)
        .collect()
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
    use super::*;

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
