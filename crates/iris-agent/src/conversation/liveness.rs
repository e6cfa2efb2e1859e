//! Liveness of a turn: progress, not silence.
//!
//! The real CLI prints nothing while a tool runs (a 20 s Bash command gave 17 s without a line),
//! so silence alone cannot tell a stalled agent from a busy one. A turn is making progress while
//! any of these holds:
//!
//! - the agent prints events (streamed deltas included);
//! - one of its tool calls is open (a `tool_use` block whose `tool_result` has not come back),
//!   for at most `tool_timeout` from when the call opened;
//! - its processes use CPU (an opaque, monotone counter from the containment; see
//!   [`CPU_SHARE`] for how much counts).
//!
//! Only a turn with none of these for the stall limit (`response_timeout`) is stalled.
//! `Liveness` is the judge: a pure state machine fed with events, instants and CPU readings,
//! so it is tested without processes or clocks. The turn loop wakes at `Liveness::wake_at`,
//! reads the CPU counter and asks `Liveness::check`.
//!
//! **A timer never beats data that has already arrived.** A limit that passes is first only
//! suspected (`Verdict::Confirming`): the turn keeps reading for [`CONFIRM`] (the reader task
//! gets to run and forward whatever is already in the pipe, e.g. after the node was SIGSTOPped
//! and resumed), and only a second check after that window, with nothing new in it, fails the
//! turn. An event in the window clears a stall; a `result` in it completes the turn, whatever the
//! limit.

use std::time::Duration;

use tokio::time::Instant;

use crate::codec::Event;

/// How long an open tool call counts as progress unless told otherwise.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The longest interval between two CPU readings (and liveness checks) during a turn.
///
/// A check costs one read of a small kernel file, so every 5 s costs nothing measurable per
/// busy agent, while it bounds how late a stall is seen: a frozen agent is detected within the
/// stall limit plus one interval (120 s + 5 s by default). A stall limit under 5 s is checked at
/// its own period instead, so detection stays within twice the limit.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest check interval, so that a zero or tiny stall limit cannot spin.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// How long a suspected failure waits for data that has already arrived before it is final.
///
/// Long enough for the reader task to be scheduled and forward a pipe that is already full,
/// even on a loaded machine; negligible against any stall limit.
pub const CONFIRM: Duration = Duration::from_millis(100);

/// The share of one core the agent's processes must use over an interval for the CPU to count
/// as progress: 1 %. An agent waiting on the model or frozen uses next to nothing, while a
/// build, a test run or the CLI's own work use far more; polling and timers stay below it.
pub const CPU_SHARE: u32 = 100;

/// The least CPU growth that counts as progress over any interval, however short, so the
/// granularity of the counter (10 ms clock ticks in `/proc`) is not mistaken for work.
pub const CPU_FLOOR: Duration = Duration::from_millis(20);

/// The limits of one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnLimits {
    /// How long the turn may go without any sign of progress (no event, no open tool call
    /// within `tool_timeout`, no CPU use) before the agent is killed as stalled
    /// (`response_timeout`).
    pub stall: Duration,
    /// How long an open tool call counts as progress, from when it opened.
    pub tool_timeout: Duration,
    /// The longest the turn may take in all, whatever its progress; `None`: no cap.
    pub turn_timeout: Option<Duration>,
}

impl TurnLimits {
    /// Limits with this stall limit, the default tool timeout and no cap on the turn.
    pub fn new(stall: Duration) -> Self {
        TurnLimits {
            stall,
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
            turn_timeout: None,
        }
    }

    /// These limits with this tool timeout.
    pub fn with_tool_timeout(self, tool_timeout: Duration) -> Self {
        TurnLimits {
            tool_timeout,
            ..self
        }
    }

    /// These limits with this cap on the turn's total time (`None`: no cap).
    pub fn with_turn_timeout(self, turn_timeout: Option<Duration>) -> Self {
        TurnLimits {
            turn_timeout,
            ..self
        }
    }

    /// How often the turn's liveness is checked (see [`MAX_CHECK_INTERVAL`]).
    pub fn check_interval(&self) -> Duration {
        self.stall.clamp(MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL)
    }
}

/// A stall limit alone: [`TurnLimits::new`].
impl From<Duration> for TurnLimits {
    fn from(stall: Duration) -> Self {
        TurnLimits::new(stall)
    }
}

/// A duration as people read it, to the second: `3m12s`, `1h`, `4s`; under a second, in
/// milliseconds (`250ms`).
pub fn format_elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// What an agent is doing, as far as its conversation can tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Activity {
    /// No turn is in flight.
    #[default]
    Idle,
    /// A turn is in flight and the model has the floor: it streams, or the CLI waits for it.
    Streaming,
    /// A tool call is open: the oldest one, if several are.
    RunningTool {
        /// The tool's name (`Bash`, `mcp__server__tool`, …).
        name: String,
        /// When the call opened.
        since: Instant,
    },
}

/// An open tool call.
#[derive(Debug, Clone)]
struct OpenTool {
    id: String,
    name: String,
    since: Instant,
}

/// A reading of the agent's CPU counter.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    used: Duration,
}

/// The judge's answer at a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The turn is alive; wake again at [`Liveness::wake_at`].
    Alive,
    /// A limit passed; keep reading what has already arrived and check again at
    /// [`Liveness::wake_at`] (the end of the confirmation window).
    Confirming,
    /// No progress for the stall limit.
    Stalled,
    /// No progress for the stall limit, and the open tool call `tool` (the oldest) has been
    /// open longer than the tool timeout, for `ran`.
    ToolTimedOut {
        /// The tool's name.
        tool: String,
        /// How long it had been open.
        ran: Duration,
    },
    /// The turn ran longer than its cap.
    TurnTimedOut,
}

/// Judges whether one turn is making progress. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Liveness {
    limits: TurnLimits,
    check_every: Duration,
    started: Instant,
    /// The latest instant the turn was seen making progress.
    progress_at: Instant,
    /// The last CPU reading, if the counter could be read.
    cpu: Option<CpuSample>,
    /// When the CPU was last read (or tried), which paces the checks.
    checked_at: Instant,
    /// Open tool calls, oldest first.
    open: Vec<OpenTool>,
    /// A failure is suspected; it is final at this instant if nothing clears it.
    confirming: Option<Instant>,
}

impl Liveness {
    /// A turn that started at `now`, with the agent's CPU counter then (`None`: unknown).
    pub fn new(limits: TurnLimits, now: Instant, cpu: Option<Duration>) -> Self {
        Liveness {
            limits,
            check_every: limits.check_interval(),
            started: now,
            progress_at: now,
            cpu: cpu.map(|used| CpuSample { at: now, used }),
            checked_at: now,
            open: Vec::new(),
            confirming: None,
        }
    }

    /// The agent printed `event` at `now`: progress. Tool calls it opens or closes are noted.
    /// Returns whether the [`activity`](Self::activity) changed.
    pub fn event(&mut self, event: &Event, now: Instant) -> bool {
        self.progress_at = self.progress_at.max(now);
        let oldest = self.open.first().map(|t| t.id.clone());
        match event {
            Event::Assistant(assistant) => {
                for (id, name) in assistant.message.tool_uses() {
                    if !self.open.iter().any(|t| t.id == id) {
                        self.open.push(OpenTool {
                            id: id.to_owned(),
                            name: name.to_owned(),
                            since: now,
                        });
                    }
                }
            }
            Event::User(user) => {
                for id in user.tool_result_ids() {
                    self.open.retain(|t| t.id != id);
                }
            }
            _ => {}
        }
        oldest != self.open.first().map(|t| t.id.clone())
    }

    /// What the agent is doing: running its oldest open tool call, or streaming.
    pub fn activity(&self) -> Activity {
        match self.open.first() {
            Some(tool) => Activity::RunningTool {
                name: tool.name.clone(),
                since: tool.since,
            },
            None => Activity::Streaming,
        }
    }

    /// When the turn must be checked next: the next CPU reading, the stall limit, the turn's
    /// cap or the end of a confirmation window, whichever comes first.
    pub fn wake_at(&self) -> Instant {
        if let Some(until) = self.confirming {
            // The limit that passed is being confirmed: nothing else is due before its end.
            return until;
        }
        let at = (self.checked_at + self.check_every).min(self.stall_deadline());
        match self.turn_deadline() {
            Some(deadline) => at.min(deadline),
            None => at,
        }
    }

    /// Checks the turn at `now`, with the agent's CPU counter then (`None`: unknown).
    pub fn check(&mut self, now: Instant, cpu: Option<Duration>) -> Verdict {
        self.note_cpu(now, cpu);
        // An open tool call is progress up to its tool timeout.
        if let Some(until) = self.tools_progress_until() {
            self.progress_at = self.progress_at.max(until.min(now));
        }
        let failure = if self.turn_deadline().is_some_and(|deadline| now >= deadline) {
            Some(Verdict::TurnTimedOut)
        } else if now >= self.stall_deadline() {
            Some(match self.open.first() {
                Some(tool) => Verdict::ToolTimedOut {
                    tool: tool.name.clone(),
                    ran: now.saturating_duration_since(tool.since),
                },
                None => Verdict::Stalled,
            })
        } else {
            None
        };
        match (failure, self.confirming) {
            (None, _) => {
                self.confirming = None;
                Verdict::Alive
            }
            (Some(failure), Some(until)) if now >= until => failure,
            (Some(_), Some(_)) => Verdict::Confirming,
            (Some(_), None) => {
                self.confirming = Some(now + CONFIRM);
                Verdict::Confirming
            }
        }
    }

    /// Compares a CPU reading with the previous one: growth of at least [`CPU_SHARE`] of the
    /// interval (and [`CPU_FLOOR`]) is progress, dated `now` (the latest it can have happened,
    /// so no working agent is judged early).
    fn note_cpu(&mut self, now: Instant, cpu: Option<Duration>) {
        self.checked_at = now;
        let Some(used) = cpu else {
            return;
        };
        if let Some(previous) = self.cpu {
            let grown = used.saturating_sub(previous.used);
            let interval = now.saturating_duration_since(previous.at);
            if grown >= CPU_FLOOR && grown >= interval / CPU_SHARE {
                self.progress_at = self.progress_at.max(now);
            }
        }
        self.cpu = Some(CpuSample { at: now, used });
    }

    /// Until when the open tool calls count as progress (the latest tool timeout among them).
    fn tools_progress_until(&self) -> Option<Instant> {
        self.open
            .iter()
            .map(|tool| tool.since + self.limits.tool_timeout)
            .max()
    }

    /// When the turn is stalled if nothing else happens.
    fn stall_deadline(&self) -> Instant {
        let progress = match self.tools_progress_until() {
            Some(until) => self.progress_at.max(until),
            None => self.progress_at,
        };
        progress + self.limits.stall
    }

    fn turn_deadline(&self) -> Option<Instant> {
        self.limits.turn_timeout.map(|cap| self.started + cap)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(stall: u32) -> TurnLimits {
        TurnLimits::new(stall * S)
    }

    fn start() -> Instant {
        Instant::from_std(std::time::Instant::now())
    }

    fn tool_use(id: &str, name: &str) -> Event {
        Event::from_value(
            json!({"type": "assistant", "message": {"model": "m", "content": [
            {"type": "tool_use", "id": id, "name": name, "input": {"command": "make"}}]}}),
        )
    }

    fn tool_result(id: &str) -> Event {
        Event::from_value(
            json!({"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "done"}]}}),
        )
    }

    fn delta() -> Event {
        Event::from_value(
            json!({"type": "stream_event", "event": {"type": "content_block_delta",
            "index": 0, "delta": {"type": "text_delta", "text": "x"}}}),
        )
    }

    /// Runs the judge's own schedule from `t0` with a constant CPU counter until it gives a
    /// final verdict (or `limit` passes), returning the verdict and when it came.
    fn run_until_verdict(
        judge: &mut Liveness,
        cpu: impl Fn(Instant) -> Option<Duration>,
        limit: Instant,
    ) -> (Verdict, Instant) {
        for _ in 0..100_000 {
            let at = judge.wake_at();
            assert!(at <= limit, "no verdict before the limit");
            match judge.check(at, cpu(at)) {
                Verdict::Alive | Verdict::Confirming => {}
                verdict => return (verdict, at),
            }
        }
        panic!("the judge's schedule does not advance")
    }

    #[test]
    fn silence_without_tool_or_cpu_is_a_stall_after_the_limit_and_its_confirmation() {
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, Some(Duration::ZERO));
        assert_eq!(
            judge.check(t0 + 2 * S, Some(Duration::ZERO)),
            Verdict::Alive
        );
        // At the limit the stall is only suspected; data that arrived may still clear it.
        assert_eq!(
            judge.check(t0 + 4 * S, Some(Duration::ZERO)),
            Verdict::Confirming
        );
        assert_eq!(judge.wake_at(), t0 + 4 * S + CONFIRM);
        assert_eq!(
            judge.check(t0 + 4 * S + CONFIRM, Some(Duration::ZERO)),
            Verdict::Stalled
        );
    }

    #[test]
    fn an_event_in_the_confirmation_window_clears_the_stall() {
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, None);
        assert_eq!(judge.check(t0 + 4 * S, None), Verdict::Confirming);
        judge.event(&delta(), t0 + 4 * S);
        assert_eq!(judge.check(t0 + 4 * S + CONFIRM, None), Verdict::Alive);
        assert_eq!(judge.wake_at(), t0 + 8 * S, "the limit runs from the event");
    }

    #[test]
    fn events_keep_a_turn_alive_indefinitely() {
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, None);
        for second in 1u32..=100 {
            judge.event(&delta(), t0 + 3 * second * S);
            assert_eq!(judge.check(t0 + 3 * second * S + S, None), Verdict::Alive);
        }
    }

    #[test]
    fn an_open_tool_call_is_progress_until_its_result() {
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, None);
        assert!(judge.event(&tool_use("t1", "Bash"), t0));
        assert_eq!(
            judge.activity(),
            Activity::RunningTool {
                name: "Bash".into(),
                since: t0
            }
        );
        // A silent 20 s tool with a 4 s stall limit and no CPU reading at all.
        let mut at = t0;
        while at < t0 + 20 * S {
            at = judge.wake_at();
            assert_eq!(judge.check(at, None), Verdict::Alive, "at {:?}", at - t0);
        }
        assert!(judge.event(&tool_result("t1"), t0 + 20 * S));
        assert_eq!(judge.activity(), Activity::Streaming);
        // Closed: silence counts again, from the result.
        assert_eq!(judge.check(t0 + 23 * S, None), Verdict::Alive);
        assert_eq!(judge.check(t0 + 24 * S, None), Verdict::Confirming);
    }

    #[test]
    fn a_tool_open_past_its_timeout_without_cpu_times_out() {
        let t0 = start();
        let tools = limits(4).with_tool_timeout(60 * S);
        let mut judge = Liveness::new(tools, t0, Some(Duration::ZERO));
        judge.event(&tool_use("t1", "Bash"), t0 + S);
        let (verdict, at) = run_until_verdict(&mut judge, |_| Some(Duration::ZERO), t0 + 600 * S);
        assert_eq!(
            verdict,
            Verdict::ToolTimedOut {
                tool: "Bash".into(),
                ran: at - (t0 + S)
            }
        );
        // The tool counted for its timeout, then the stall limit ran.
        assert!(at >= t0 + 65 * S, "{:?}", at - t0);
        assert!(
            at <= t0 + 65 * S + tools.check_interval() + CONFIRM,
            "{:?}",
            at - t0
        );
    }

    #[test]
    fn cpu_use_keeps_a_silent_turn_alive() {
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, Some(Duration::ZERO));
        // Half a core for a minute, without a line of output: alive throughout.
        let busy = |at: Instant| Some((at - t0) / 2);
        let mut at = t0;
        while at < t0 + 60 * S {
            at = judge.wake_at();
            assert_eq!(
                judge.check(at, busy(at)),
                Verdict::Alive,
                "at {:?}",
                at - t0
            );
        }
        // Then the CPU stops: a stall within the limit plus one check interval.
        let stopped = at;
        let frozen = busy(stopped);
        let (verdict, when) = run_until_verdict(&mut judge, |_| frozen, t0 + 600 * S);
        assert_eq!(verdict, Verdict::Stalled);
        assert!(
            when <= stopped + 4 * S + limits(4).check_interval() + CONFIRM,
            "{:?}",
            when - stopped
        );
    }

    #[test]
    fn a_trickle_of_cpu_is_not_progress() {
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, Some(Duration::ZERO));
        // 0.5 % of a core (timers, polling): the turn still stalls.
        let trickle = |at: Instant| Some((at - t0) / 200);
        let (verdict, when) = run_until_verdict(&mut judge, trickle, t0 + 600 * S);
        assert_eq!(verdict, Verdict::Stalled);
        assert_eq!(when, t0 + 4 * S + CONFIRM);
    }

    #[test]
    fn a_frozen_agent_stalls_within_the_limit_plus_one_interval() {
        // It printed and worked until t0 + 10 s, then froze (SIGSTOP: no output, no CPU).
        for stall in [1, 4, 120] {
            let t0 = start();
            let limits = limits(stall);
            let mut judge = Liveness::new(limits, t0, Some(Duration::ZERO));
            let frozen_at = t0 + 10 * S;
            let cpu = |at: Instant| Some(at.min(frozen_at) - t0);
            let mut at = t0;
            while at + limits.check_interval() < frozen_at {
                at = judge.wake_at();
                judge.event(&delta(), at);
                assert_eq!(judge.check(at, cpu(at)), Verdict::Alive);
            }
            let (verdict, when) = run_until_verdict(&mut judge, cpu, t0 + 1000 * S);
            assert_eq!(verdict, Verdict::Stalled, "stall {stall}");
            let bound = frozen_at + limits.stall + limits.check_interval() + CONFIRM;
            assert!(when <= bound, "stall {stall}: {:?}", when - frozen_at);
            assert!(
                when >= frozen_at + limits.stall,
                "stall {stall}: {:?}",
                when - frozen_at
            );
        }
    }

    #[test]
    fn the_turn_timeout_caps_a_turn_whatever_its_progress() {
        let t0 = start();
        let capped = limits(4).with_turn_timeout(Some(30 * S));
        let mut judge = Liveness::new(capped, t0, None);
        let (verdict, at) = loop {
            let at = judge.wake_at();
            judge.event(&delta(), at);
            match judge.check(at, None) {
                Verdict::Alive | Verdict::Confirming => {}
                verdict => break (verdict, at),
            }
        };
        assert_eq!(verdict, Verdict::TurnTimedOut);
        assert_eq!(at, t0 + 30 * S + CONFIRM, "events do not extend the cap");
    }

    #[test]
    fn parallel_tool_calls_show_the_oldest_and_count_until_all_close() {
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, None);
        judge.event(&tool_use("a", "Bash"), t0);
        assert!(!judge.event(&tool_use("b", "Read"), t0 + S));
        assert!(judge.event(&tool_result("a"), t0 + 2 * S));
        assert_eq!(
            judge.activity(),
            Activity::RunningTool {
                name: "Read".into(),
                since: t0 + S
            }
        );
        assert_eq!(judge.check(t0 + 30 * S, None), Verdict::Alive);
        judge.event(&tool_result("b"), t0 + 31 * S);
        assert_eq!(judge.activity(), Activity::Streaming);
    }

    #[test]
    fn the_real_cli_s_tool_call_opens_and_closes() {
        // Claude Code 2.1.197 running a 20 s Bash command (recorded): the tool is open from
        // its `assistant` event to the `user` event with its result, and nothing else opens one.
        let recorded = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/recorded-claude-2.1.197/long_tool_partial.stdout.jsonl"
        ));
        let t0 = start();
        let mut judge = Liveness::new(limits(4), t0, None);
        let mut seen = Vec::new();
        for line in recorded.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if judge.event(&Event::from_value(value), t0) {
                seen.push(judge.activity());
            }
        }
        assert_eq!(
            seen,
            vec![
                Activity::RunningTool {
                    name: "Bash".into(),
                    since: t0
                },
                Activity::Streaming
            ]
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_elapsed(Duration::from_millis(192_400)), "3m12s");
        assert_eq!(format_elapsed(30 * 60 * S), "30m");
        assert_eq!(format_elapsed(3723 * S), "1h2m3s");
        assert_eq!(format_elapsed(4 * S), "4s");
        assert_eq!(format_elapsed(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn check_intervals_are_bounded() {
        assert_eq!(limits(120).check_interval(), MAX_CHECK_INTERVAL);
        assert_eq!(limits(2).check_interval(), 2 * S);
        assert_eq!(
            TurnLimits::new(Duration::ZERO).check_interval(),
            MIN_CHECK_INTERVAL
        );
    }
}
