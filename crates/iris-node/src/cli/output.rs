//! Human output (tables, relative times, spinners) and `--json` output.
//!
//! Under `--json` a command prints exactly one JSON document on stdout: the reply's data
//! (records with the store's snake_case fields and RFC 3339 timestamps, `tell`'s
//! [`TellReply`]), or `{"error":{"code","message"}}`. Without it, replies are aligned tables
//! and sentences, and errors go to stderr as `error: …` with a hint where one helps. Spinners
//! and progress bars draw on stderr, and only when stdout is a terminal and `--json` is off, so
//! piped output never carries them.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use iris_core::{ErrorCode, SessionRecord, Timestamp, TurnRecord};

use iris_api::{
    ApiCode, ApiError, CancelReply, DeleteReply, Reply, StatsReply, StatusReply, TeamRow,
    TellReply, TellStatus, TranscriptOutcome, UnavailableNode, WakeAllEntry,
};

/// Where and how a command prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
    stdout_tty: bool,
}

impl Output {
    /// Output for this process: JSON when `json`, progress only when stdout is a terminal.
    pub fn new(json: bool) -> Output {
        Output {
            json,
            stdout_tty: std::io::stdout().is_terminal(),
        }
    }

    /// Whether `--json` is on.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Whether spinners and progress bars may be shown.
    pub fn interactive(&self) -> bool {
        !self.json && self.stdout_tty
    }

    /// Prints a reply: its JSON document, or its human form (with `headline` first, a sentence
    /// saying what the command did).
    pub fn reply(&self, reply: &Reply, headline: Option<&str>) {
        if self.json {
            self.json_value(&json_document(reply));
            return;
        }
        if let Some(headline) = headline {
            write_stdout(&format!("{headline}\n"));
        }
        let rendered = human(reply, Timestamp::now(), self.table_style());
        write_stdout(&rendered.stdout);
        if !rendered.stderr.is_empty() {
            eprint!("{}", rendered.stderr);
        }
    }

    /// Prints `iris cluster status`: its JSON document, or a table of the nodes.
    pub fn cluster_status(&self, status: &crate::cluster::ClusterStatus) {
        if self.json {
            match serde_json::to_value(status) {
                Ok(value) => self.json_value(&value),
                Err(e) => self.json_value(&serde_json::json!({"error": {"code": "INTERNAL_ERROR", "message": format!("cannot print the cluster status: {e}")}})),
            }
            return;
        }
        write_stdout(&cluster_table(
            status,
            std::time::SystemTime::now(),
            self.table_style(),
        ));
    }

    /// Prints one JSON document on stdout.
    pub fn json_value(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| {
            format!(r#"{{"error":{{"code":"INTERNAL_ERROR","message":"cannot print JSON: {e}"}}}}"#)
        });
        write_stdout(&format!("{text}\n"));
    }

    /// Prints text on stdout as it is.
    pub fn text(&self, text: &str) {
        write_stdout(text);
    }

    /// Prints a note for humans on stderr (never under `--json`, where stdout says it all).
    pub fn note(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }

    /// Prints an error: `{"error":{…}}` on stdout under `--json`, else `error: …` on stderr with
    /// a hint when one helps.
    pub fn error(&self, error: &ApiError) {
        if self.json {
            match serde_json::to_value(error) {
                Ok(value) => self.json_value(&value),
                Err(_) => {
                    write_stdout("{\"error\":{\"code\":\"INTERNAL_ERROR\",\"message\":\"\"}}\n")
                }
            }
            return;
        }
        eprintln!("error: {}", error.error.message);
        if let Some(hint) = hint(error) {
            eprintln!("hint: {hint}");
        }
    }

    /// A spinner with elapsed time, shown while it lives (hidden when not interactive).
    pub fn spinner(&self, message: String) -> Spinner {
        if !self.interactive() {
            return Spinner(ProgressBar::hidden());
        }
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(bar)
    }

    /// A progress bar over `len` steps with elapsed time (hidden when not interactive).
    pub fn progress(&self, len: u64) -> Spinner {
        if !self.interactive() {
            return Spinner(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{spinner} {pos}/{len} {wide_msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(bar)
    }

    fn table_style(&self) -> TableStyle {
        TableStyle {
            fit_terminal: self.stdout_tty,
        }
    }
}

/// A spinner or progress bar on stderr; cleared when dropped.
#[derive(Debug)]
pub struct Spinner(ProgressBar);

impl Spinner {
    /// Replaces its message.
    pub fn set_message(&self, message: String) {
        self.0.set_message(message);
    }

    /// Advances a progress bar by one step.
    pub fn inc(&self) {
        self.0.inc(1);
    }

    /// Prints a line above it (nothing when it is hidden).
    pub fn println(&self, line: &str) {
        self.0.println(line);
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Writes to stdout; a closed pipe (`iris … | head`) is not an error worth reporting.
fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// What to suggest after an error, when its message does not already say it.
fn hint(error: &ApiError) -> Option<&'static str> {
    let hint = match error.code() {
        ApiCode::Core(ErrorCode::TeamNotFound) => "`iris teams` lists the configured teams",
        ApiCode::Core(ErrorCode::SessionNotFound) => {
            "`iris sessions list` shows the sessions and their ids"
        }
        ApiCode::Core(ErrorCode::ConfigError) => {
            "`iris config check` validates the configuration and shows what it means"
        }
        ApiCode::Core(ErrorCode::StoreLocked) => {
            "stop the other iris process, or run your commands against it"
        }
        ApiCode::NodeUnavailable => "check that `iris node` is running, or stop it to run embedded",
        _ => return None,
    };
    // A message that already names an iris command to run needs no second suggestion.
    (!error.error.message.contains("`iris ")).then_some(hint)
}

/// The JSON document `--json` prints for a reply: its data, without the `kind` envelope.
pub fn json_document(reply: &Reply) -> serde_json::Value {
    let value = match reply {
        Reply::Tell(tell) => serde_json::to_value(tell),
        Reply::Sessions(records) => serde_json::to_value(records),
        Reply::ClusterSessions(listed) => serde_json::to_value(listed),
        Reply::Session(record) => serde_json::to_value(record),
        Reply::Deleted(deleted) => serde_json::to_value(deleted),
        Reply::Turns(turns) => serde_json::to_value(turns),
        Reply::Slept(pair) => serde_json::to_value(pair),
        Reply::Cancelled(cancelled) => serde_json::to_value(cancelled),
        Reply::WokeAll(entries) => serde_json::to_value(entries),
        Reply::Status(status) => serde_json::to_value(status),
        Reply::Teams(teams) => serde_json::to_value(teams),
        Reply::Stats(stats) => serde_json::to_value(stats),
        Reply::Budget(budget) => serde_json::to_value(budget),
    };
    value.unwrap_or_else(|e| {
        serde_json::json!({"error": {"code": ApiCode::Internal, "message": format!("cannot print JSON: {e}")}})
    })
}

/// How tables are laid out.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableStyle {
    /// Wrap columns to the terminal's width.
    pub fit_terminal: bool,
}

/// A reply's human form: what goes to stdout, and notes for stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The reply itself.
    pub stdout: String,
    /// Notes about it (a tell that is still running, …).
    pub stderr: String,
}

impl Rendered {
    fn out(stdout: String) -> Rendered {
        Rendered {
            stdout: with_newline(stdout),
            stderr: String::new(),
        }
    }
}

fn with_newline(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A reply for humans, with times relative to `now`.
pub fn human(reply: &Reply, now: Timestamp, style: TableStyle) -> Rendered {
    match reply {
        Reply::Tell(tell) => tell_text(tell),
        Reply::Sessions(records) if records.is_empty() => Rendered::out("No sessions.".into()),
        Reply::Sessions(records) => Rendered::out(sessions_table(records, now, style)),
        Reply::ClusterSessions(listed) => Rendered {
            stdout: with_newline(if listed.sessions.is_empty() {
                "No sessions.".into()
            } else {
                let records: Vec<_> = listed.sessions.iter().map(|s| s.record.clone()).collect();
                sessions_table(&records, now, style)
            }),
            stderr: unavailable_warnings(&listed.unavailable_nodes, "sessions are not listed"),
        },
        Reply::Session(record) => Rendered::out(session_detail(record, now, style)),
        Reply::Deleted(deleted) => Rendered::out(deleted_text(deleted)),
        Reply::Turns(turns) if turns.is_empty() => Rendered::out("No turns yet.".into()),
        Reply::Turns(turns) => Rendered::out(turns_table(turns, now, style)),
        Reply::Slept(pair) => Rendered::out(format!(
            "{} → {}: asleep (the agent is stopped; the session is kept)",
            pair.from, pair.to
        )),
        Reply::Cancelled(cancelled) => Rendered::out(cancelled_text(cancelled)),
        Reply::WokeAll(entries) if entries.is_empty() => {
            Rendered::out("No other teams to wake.".into())
        }
        Reply::WokeAll(entries) => Rendered::out(woke_all_table(entries, style)),
        Reply::Status(status) => Rendered::out(status_detail(status, now, style)),
        Reply::Teams(teams) if teams.is_empty() => Rendered::out(
            "No teams are configured; add a [teams.NAME] table to the configuration.".into(),
        ),
        Reply::Teams(teams) => Rendered::out(teams_table(teams, now, style)),
        Reply::Budget(budget) if budget.scopes.is_empty() => Rendered::out(
            "No budget caps are set; add a [budgets] table to the configuration (see config/iris.toml).".into(),
        ),
        Reply::Budget(budget) => Rendered::out(budget_table(budget, now, style)),
        Reply::Stats(stats) => Rendered {
            stdout: with_newline(stats_text(stats, style)),
            stderr: unavailable_warnings(
                stats.unavailable_nodes.as_deref().unwrap_or_default(),
                "figures are not counted",
            ),
        },
    }
}

/// `tell`: the reply text only; what a caller that stopped waiting needs to know goes to
/// stderr. (A failed tell is reported as an error by the caller.)
fn tell_text(tell: &TellReply) -> Rendered {
    match tell.status {
        TellStatus::Accepted => Rendered {
            stdout: format!("{}\n", tell.turn_id),
            stderr: format!(
                "queued turn {}; `iris report {} {}` shows its result\n",
                tell.turn_id, tell.from, tell.to
            ),
        },
        TellStatus::CallerTimeout => Rendered {
            stdout: with_newline(tell.response.clone()),
            stderr: format!(
                "stopped waiting; turn {} goes on, and `iris report {} {}` shows its end\n",
                tell.turn_id, tell.from, tell.to
            ),
        },
        _ => Rendered::out(tell.response.clone()),
    }
}

/// Terminals narrower than this (or reporting no width, as some pseudo-terminals do) get
/// unwrapped rows: squeezing columns to a few characters would make them unreadable.
const MIN_FIT_WIDTH: u16 = 60;

/// The nodes of a cluster, one row each, as the answering node sees them.
fn cluster_table(
    status: &crate::cluster::ClusterStatus,
    now: std::time::SystemTime,
    style: TableStyle,
) -> String {
    use crate::cluster::PeerState;
    let mut table = new_table(
        &["NODE", "STATE", "ADDRESS", "HEARTBEAT", "RTT", "TEAMS"],
        style,
    );
    for node in &status.nodes {
        let state = match (&node.state, node.this_node) {
            (_, true) => "this node",
            (PeerState::Up, false) => "up",
            (PeerState::Suspected, false) => "suspected",
            (PeerState::Down, false) => "down",
            (PeerState::ConfigMismatch, false) => "config mismatch",
        };
        let heartbeat = node.last_heartbeat.map_or("-".to_owned(), |at| {
            let ago = now.duration_since(at).unwrap_or_default();
            format!("{:.1}s ago", ago.as_secs_f64())
        });
        let rtt = node
            .rtt_us
            .map_or("-".to_owned(), |us| format!("{:.2}ms", us as f64 / 1000.0));
        table.add_row(vec![
            node.name.clone(),
            state.to_owned(),
            node.address.to_string(),
            heartbeat,
            rtt,
            node.teams.join(", "),
        ]);
    }
    let mut text = format!(
        "node {} (placement {}, links {})\n",
        status.node,
        &status.digest[..12.min(status.digest.len())],
        if status.tls { "TLS" } else { "not encrypted" }
    );
    text.push_str(&finish(table));
    text.push('\n');
    for node in &status.nodes {
        if let Some(why) = &node.mismatch {
            text.push_str(&format!("{}: {why}\n", node.name));
        }
    }
    text
}

fn new_table(header: &[&str], style: TableStyle) -> Table {
    let mut table = plain_table(style);
    table.set_header(header.to_vec());
    table
}

fn plain_table(style: TableStyle) -> Table {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    if style.fit_terminal && table.width().is_some_and(|w| w >= MIN_FIT_WIDTH) {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    table
}

/// Columns of prose, the only ones wrapped to fit the terminal: ids, names, paths and times
/// stay whole, so they can be copied.
const WRAPPABLE: [&str; 4] = ["DESCRIPTION", "MESSAGE", "REPLY", "RESULT"];

/// Two spaces between columns, none at the left edge; no trailing blanks.
fn finish(mut table: Table) -> String {
    let wrappable: Vec<bool> = match table.header() {
        Some(header) => header
            .cell_iter()
            .map(|cell| WRAPPABLE.contains(&cell.content().as_str()))
            .collect(),
        // A key-value table: only the values wrap.
        None => vec![false, true],
    };
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if !wrappable.get(index).copied().unwrap_or(false) {
            column.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
        }
    }
    table.trim_fmt()
}

fn key_values(rows: Vec<(&str, String)>, style: TableStyle) -> String {
    let mut table = plain_table(style);
    for (key, value) in rows {
        table.add_row(vec![key.to_owned(), value]);
    }
    finish(table)
}

fn sessions_table(records: &[SessionRecord], now: Timestamp, style: TableStyle) -> String {
    let mut table = new_table(
        &[
            "SESSION",
            "FROM",
            "TO",
            "STATUS",
            "PROCESS",
            "MESSAGES",
            "LAST USED",
            "COST",
        ],
        style,
    );
    for r in records {
        table.add_row(vec![
            r.session_id.to_string(),
            r.from_team.to_string(),
            r.to_team.to_string(),
            r.status.to_string(),
            r.process_state.to_string(),
            r.message_count.to_string(),
            relative_time(r.last_used_at, now),
            cost(r.usage.cost_usd),
        ]);
    }
    finish(table)
}

fn session_detail(r: &SessionRecord, now: Timestamp, style: TableStyle) -> String {
    let mut rows = vec![
        ("session", r.session_id.to_string()),
        ("pair", format!("{} → {}", r.from_team, r.to_team)),
        ("status", r.status.to_string()),
        ("process", r.process_state.to_string()),
        ("messages", r.message_count.to_string()),
        ("created", dated(r.created_at, now)),
        ("last used", dated(r.last_used_at, now)),
    ];
    if let Some(at) = r.last_response_at {
        rows.push(("last response", dated(at, now)));
    }
    if let Some(turn) = r.current_turn {
        rows.push(("current turn", turn.to_string()));
    }
    rows.push((
        "cost",
        format!(
            "{} ({} tokens in, {} out)",
            cost(r.usage.cost_usd),
            r.usage.input_tokens,
            r.usage.output_tokens
        ),
    ));
    rows.push(("failed turns", r.failed_turns.to_string()));
    rows.push(("interrupted turns", r.interrupted_turns.to_string()));
    if let Some(agent) = &r.agent_session_id {
        rows.push(("agent session", agent.clone()));
    }
    if let Some(command) = &r.launch_command {
        rows.push(("launch command", command.clone()));
    }
    key_values(rows, style)
}

fn deleted_text(deleted: &DeleteReply) -> String {
    let Some(record) = &deleted.deleted else {
        return "Nothing was deleted.".into();
    };
    let transcript = match &deleted.transcript {
        TranscriptOutcome::NotRequested => "kept (pass --transcript to delete it too)".to_owned(),
        TranscriptOutcome::Removed => "deleted".to_owned(),
        TranscriptOutcome::NotFound => "there was none".to_owned(),
        failed @ TranscriptOutcome::Failed(_) => failed.text().into_owned(),
    };
    format!(
        "Deleted session {} ({} → {}); transcript: {transcript}",
        record.session_id, record.from_team, record.to_team
    )
}

fn turns_table(turns: &[TurnRecord], now: Timestamp, style: TableStyle) -> String {
    let mut table = new_table(
        &[
            "SEQ", "STATUS", "FROM", "QUEUED", "TOOK", "COST", "MESSAGE", "REPLY",
        ],
        style,
    );
    for t in turns {
        // From queued to finished: what the sender waited, queue included.
        let took = t.finished_at.map_or_else(
            || "-".to_owned(),
            |end| short_duration(t.queued_at.elapsed_until(end)),
        );
        let mut reply = match (&t.text, &t.error) {
            (_, Some(error)) => format!("{}: {}", error.code, error.message),
            (Some(text), None) => text.clone(),
            (None, None) => String::new(),
        };
        if t.history_lost {
            reply.insert_str(0, "[history lost: the conversation restarted] ");
        }
        table.add_row(vec![
            t.seq.to_string(),
            t.status.to_string(),
            t.from.to_string(),
            relative_time(t.queued_at, now),
            took,
            cost(t.usage.cost_usd),
            one_line(&t.message, 40),
            one_line(&reply, 60),
        ]);
    }
    finish(table)
}

fn cancelled_text(c: &CancelReply) -> String {
    let mut text = format!("{} → {}: ", c.from, c.to);
    text.push_str(if c.interrupted {
        "interrupted the turn in flight"
    } else {
        "no turn was in flight"
    });
    if c.dropped > 0 {
        text.push_str(&format!("; cancelled {} queued turn(s)", c.dropped));
    }
    text
}

fn woke_all_table(entries: &[WakeAllEntry], style: TableStyle) -> String {
    let mut table = new_table(&["TEAM", "RESULT", "SESSION"], style);
    for e in entries {
        let (result, session) = match (&e.session, &e.error) {
            (_, Some(error)) => (
                format!("failed: {} ({})", error.message, error.code),
                "-".into(),
            ),
            (Some(record), None) => ("awake".to_owned(), record.session_id.to_string()),
            (None, None) => ("-".to_owned(), "-".to_owned()),
        };
        table.add_row(vec![e.to.to_string(), result, session]);
    }
    finish(table)
}

fn status_detail(s: &StatusReply, now: Timestamp, style: TableStyle) -> String {
    let mut rows = vec![
        ("pair", format!("{} → {}", s.from, s.to)),
        ("state", pair_state(s)),
    ];
    if let Some(turn) = &s.current_turn {
        rows.push(("current turn", turn.to_string()));
    }
    if let Some(activity) = &s.activity {
        rows.push(("activity", activity.to_string()));
    }
    match &s.session {
        Some(r) => {
            rows.push(("session", r.session_id.to_string()));
            rows.push(("messages", r.message_count.to_string()));
            rows.push(("last used", relative_time(r.last_used_at, now)));
        }
        None => rows.push(("session", "none yet".into())),
    }
    if s.budget_warning {
        rows.push((
            "budget",
            "a cap over this pair is at 80 % or more (`iris budget` shows which)".into(),
        ));
    }
    key_values(rows, style)
}

/// `busy (+2 queued)`, `awake`, `asleep`, or `no session`.
fn pair_state(s: &StatusReply) -> String {
    if s.session.is_none() && !s.awake {
        return "no session".into();
    }
    let mut state = if s.busy {
        match &s.activity {
            Some(activity) => format!("busy, {activity}"),
            None => "busy".to_owned(),
        }
    } else if s.awake {
        "awake".to_owned()
    } else {
        "asleep".to_owned()
    };
    if s.queued > 0 {
        state.push_str(&format!(" (+{} queued)", s.queued));
    }
    if let Some(r) = &s.session
        && r.status != iris_core::SessionStatus::Active
    {
        state.push_str(&format!(", status {}", r.status));
    }
    state
}

fn teams_table(teams: &[TeamRow], now: Timestamp, style: TableStyle) -> String {
    let with_pairs = teams.iter().any(|t| t.pair.is_some());
    let mut header = vec!["TEAM", "DESCRIPTION", "PATH"];
    if with_pairs {
        header.extend(["SESSION", "STATE", "MESSAGES", "LAST USED"]);
    }
    let mut table = new_table(&header, style);
    for t in teams {
        let mut row = vec![t.name.to_string(), t.description.clone(), t.path.clone()];
        if with_pairs {
            match &t.pair {
                Some(pair) => {
                    let session = pair.session.as_ref();
                    row.push(session.map_or("-".into(), |r| r.session_id.to_string()));
                    row.push(pair_state(pair));
                    row.push(session.map_or("-".into(), |r| r.message_count.to_string()));
                    row.push(session.map_or("-".into(), |r| relative_time(r.last_used_at, now)));
                }
                None => row.extend(["-".into(), "(self)".into(), "-".into(), "-".into()]),
            }
        }
        table.add_row(row);
    }
    finish(table)
}

/// `iris budget`: one row per cap, then when the daily ones reset.
fn budget_table(
    budget: &iris_runtime::budget::BudgetReport,
    now: Timestamp,
    style: TableStyle,
) -> String {
    let mut table = new_table(
        &[
            "SCOPE", "KEY", "SPENT", "CAP", "USED", "STATE", "RESETS", "SET BY",
        ],
        style,
    );
    for row in &budget.scopes {
        let key = match &row.pair {
            Some(pair) => format!("{} ({pair})", row.key),
            None => row.key.clone(),
        };
        table.add_row(vec![
            row.scope.clone(),
            key,
            format!("${:.4} / {} tokens", row.spent.usd, row.spent.tokens),
            row.cap.to_string(),
            format!("{:.1} %", row.percent),
            format!("{:?}", row.state).to_lowercase(),
            row.resets_at
                .map_or_else(|| "never".to_owned(), |at| relative_time(at, now)),
            row.set_by.clone(),
        ]);
    }
    format!(
        "{}\nBudget day {} ({}); daily caps reset at {}.\n",
        finish(table),
        budget.day,
        budget.day_offset,
        budget.resets_at
    )
}

/// One warning line per node of a cluster-wide view that did not answer.
fn unavailable_warnings(nodes: &[UnavailableNode], missing: &str) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "warning: node {} did not answer, so its {missing}: {}\n",
                n.node, n.reason
            )
        })
        .collect()
}

fn stats_text(stats: &StatsReply, style: TableStyle) -> String {
    let s = &stats.sessions;
    let by = |counts: Vec<(String, u64)>| {
        let shown: Vec<String> = counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        if shown.is_empty() {
            "-".to_owned()
        } else {
            shown.join(", ")
        }
    };
    let mut rows = vec![
        ("sessions", s.total.to_string()),
        (
            "by status",
            by(s.by_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()),
        ),
        (
            "by process",
            by(s.by_process_state
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()),
        ),
        ("messages", s.total_messages.to_string()),
        ("live actors", stats.live_actors.to_string()),
        (
            "containment",
            stats
                .containment
                .map_or_else(|| "-".to_owned(), |mode| mode.as_str().to_owned()),
        ),
        ("live processes", stats.live_processes.to_string()),
    ];
    if let Some(nodes) = &stats.nodes {
        rows.insert(0, ("nodes", nodes.join(", ")));
    }
    // Without a node, the counters would only count this command: say so once, not per row.
    let counters: Vec<(String, String)> = match stats.counters_of {
        iris_api::CountersOf::Node => stats
            .counters
            .iter()
            .map(|(name, n)| (name.replace('_', " "), n.to_string()))
            .collect(),
        iris_api::CountersOf::ThisCommand => vec![(
            "counters".to_owned(),
            "none: no node runs (start one with `iris node` to count tells, spawns, stalls…)"
                .to_owned(),
        )],
    };
    rows.extend(counters.iter().map(|(k, v)| (k.as_str(), v.clone())));
    key_values(rows, style)
}

/// `$0.0123`; a cost too small to show in four decimals is `<$0.0001`, not zero.
fn cost(usd: f64) -> String {
    if usd > 0.0 && usd < 0.000_05 {
        return "<$0.0001".into();
    }
    format!("${usd:.4}")
}

/// The first line of `text`, at most `max` characters, with `…` when cut.
fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let cut = line.chars().count() > max || text.lines().nth(1).is_some();
    let mut out: String = line.chars().take(max).collect();
    if cut {
        out.push('…');
    }
    out
}

/// An RFC 3339 time with its relative form: `2026-01-02T03:04:05.000Z (3m ago)`.
fn dated(at: Timestamp, now: Timestamp) -> String {
    format!("{at} ({})", relative_time(at, now))
}

/// `just now`, `42s ago`, `3m ago`, `5h ago`, `2d ago`; a date beyond 30 days; `in 3m` for a
/// time ahead of the clock.
pub fn relative_time(at: Timestamp, now: Timestamp) -> String {
    if at > now {
        let ahead = now.elapsed_until(at);
        if ahead < Duration::from_secs(5) {
            return "just now".into();
        }
        return format!("in {}", short_duration(ahead));
    }
    let ago = at.elapsed_until(now);
    if ago < Duration::from_secs(5) {
        return "just now".into();
    }
    if ago > Duration::from_secs(30 * 86_400) {
        return at.to_string().chars().take(10).collect();
    }
    format!("{} ago", short_duration(ago))
}

/// A duration in its largest whole unit: `850ms`, `42s`, `3m`, `5h`, `2d`.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use iris_core::{Pair, SessionId, TeamName, TurnId};

    use super::*;
    use iris_api::{ApiErrorBody, PairReply};

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    #[test]
    fn status_says_when_a_budget_over_the_pair_is_at_80_percent() {
        let status = |budget_warning| StatusReply {
            from: TeamName::new("alpha").unwrap(),
            to: TeamName::new("beta").unwrap(),
            session: None,
            awake: false,
            busy: false,
            queued: 0,
            current_turn: None,
            activity: None,
            budget_warning,
        };
        let shown = |s| human(&Reply::Status(s), NOW, TableStyle::default()).stdout;
        assert!(shown(status(true)).contains("iris budget"));
        assert!(!shown(status(false)).contains("budget"));
    }

    fn ago(secs: u64) -> Timestamp {
        Timestamp::from_millis(NOW.as_millis() - secs * 1000)
    }

    fn record() -> SessionRecord {
        let pair = Pair::new(
            TeamName::new("alpha").unwrap(),
            TeamName::new("beta").unwrap(),
        );
        let mut record = SessionRecord::new(pair, SessionId::new_v4(), ago(600));
        record.last_used_at = ago(180);
        record.message_count = 3;
        record
    }

    #[test]
    fn relative_times_use_the_largest_unit() {
        assert_eq!(relative_time(NOW, NOW), "just now");
        assert_eq!(relative_time(ago(42), NOW), "42s ago");
        assert_eq!(relative_time(ago(180), NOW), "3m ago");
        assert_eq!(relative_time(ago(5 * 3600 + 10), NOW), "5h ago");
        assert_eq!(relative_time(ago(2 * 86_400), NOW), "2d ago");
        let old = ago(90 * 86_400);
        assert_eq!(relative_time(old, NOW), old.to_string()[..10]);
        let ahead = Timestamp::from_millis(NOW.as_millis() + 120_000);
        assert_eq!(relative_time(ahead, NOW), "in 2m");
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(cost(0.00001), "<$0.0001");
        assert_eq!(cost(0.0), "$0.0000");
        assert_eq!(cost(0.01234), "$0.0123");
    }

    #[test]
    fn records_print_as_json_with_snake_case_fields_and_rfc3339_times() {
        let r = record();
        let json = json_document(&Reply::Sessions(vec![r.clone()]));
        let first = &json[0];
        for key in [
            "id",
            "from_team",
            "to_team",
            "session_id",
            "created_at",
            "last_used_at",
            "message_count",
            "status",
            "process_state",
        ] {
            assert!(first.get(key).is_some(), "{key} in {first}");
        }
        assert_eq!(first["session_id"], r.session_id.to_string());
        let created = first["created_at"].as_str().unwrap();
        assert!(created.ends_with('Z') && created.contains('T'), "{created}");
        assert_eq!(first["status"], "active");
        // A single record prints as an object, not wrapped in `kind`/`data`.
        let json = json_document(&Reply::Session(r));
        assert!(json.get("kind").is_none() && json.get("from_team").is_some());
    }

    #[test]
    fn a_sessions_table_is_aligned_with_relative_times() {
        let r = record();
        let text = human(
            &Reply::Sessions(vec![r.clone()]),
            NOW,
            TableStyle::default(),
        )
        .stdout;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("SESSION"), "{text}");
        // Columns line up: every header starts where its value starts.
        let at = lines[0].find("FROM").unwrap();
        assert_eq!(&lines[1][at..at + 5], "alpha");
        assert!(lines[1].contains("3m ago"), "{text}");
        assert!(lines[1].contains(&r.session_id.to_string()));
        assert!(
            !text.lines().any(|l| l.ends_with(' ')),
            "no trailing blanks"
        );
        let empty = human(&Reply::Sessions(vec![]), NOW, TableStyle::default());
        assert_eq!(empty.stdout, "No sessions.\n");
    }

    #[test]
    fn tell_prints_the_reply_text_only() {
        let mut tell = TellReply {
            from: "alpha".parse().unwrap(),
            to: "beta".parse().unwrap(),
            session_id: None,
            turn_id: TurnId::new(),
            status: TellStatus::Completed,
            response: "echo: hello".into(),
            cost_usd: Some(0.0),
            usage: None,
            duration_ms: Some(1),
            error: None,
        };
        let out = human(&Reply::Tell(tell.clone()), NOW, TableStyle::default());
        assert_eq!(out.stdout, "echo: hello\n");
        assert_eq!(out.stderr, "");
        tell.status = TellStatus::Accepted;
        tell.response.clear();
        let out = human(&Reply::Tell(tell.clone()), NOW, TableStyle::default());
        assert_eq!(out.stdout, format!("{}\n", tell.turn_id));
        assert!(
            out.stderr.contains("iris report alpha beta"),
            "{}",
            out.stderr
        );
        tell.status = TellStatus::CallerTimeout;
        tell.response = "partial".into();
        let out = human(&Reply::Tell(tell), NOW, TableStyle::default());
        assert_eq!(out.stdout, "partial\n");
        assert!(out.stderr.contains("goes on"), "{}", out.stderr);
    }

    #[test]
    fn other_replies_have_a_human_form() {
        let r = record();
        let detail = human(&Reply::Session(r.clone()), NOW, TableStyle::default()).stdout;
        assert!(
            detail.contains("alpha → beta") && detail.contains("3m ago"),
            "{detail}"
        );
        let slept = human(
            &Reply::Slept(PairReply {
                from: "a".parse().unwrap(),
                to: "b".parse().unwrap(),
            }),
            NOW,
            TableStyle::default(),
        );
        assert!(slept.stdout.contains("asleep"));
        let woke = human(
            &Reply::WokeAll(vec![
                WakeAllEntry {
                    to: "beta".parse().unwrap(),
                    session: Some(r),
                    error: None,
                },
                WakeAllEntry {
                    to: "gamma".parse().unwrap(),
                    session: None,
                    error: Some(ApiErrorBody {
                        code: iris_core::ErrorCode::ProcessError.into(),
                        message: "boom".into(),
                    }),
                },
            ]),
            NOW,
            TableStyle::default(),
        )
        .stdout;
        assert!(
            woke.contains("awake") && woke.contains("failed: boom"),
            "{woke}"
        );
    }

    #[test]
    fn hints_are_given_only_when_the_message_lacks_them() {
        let e = ApiError::new(ErrorCode::TeamNotFound, "unknown team x");
        assert!(hint(&e).unwrap().contains("iris teams"));
        let e = ApiError::new(
            ErrorCode::SessionNotFound,
            "no session; `iris sessions list` shows the sessions",
        );
        assert_eq!(hint(&e), None);
        let e = ApiError::new(ErrorCode::ConfigError, "none found; run `iris config init`");
        assert_eq!(hint(&e), None);
        assert_eq!(hint(&ApiError::new(ErrorCode::Timeout, "slow")), None);
    }

    #[test]
    fn long_text_is_cut_to_one_line() {
        assert_eq!(one_line("short", 10), "short");
        assert_eq!(one_line("abcdefghijkl", 5), "abcde…");
        assert_eq!(one_line("one\ntwo", 10), "one…");
    }
}
