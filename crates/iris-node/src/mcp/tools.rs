//! The tools: argument types (their JSON schemas are what calling agents see), the mapping from
//! arguments to [`Request`]s, and the rmcp handler that runs them through the [`Backend`].

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;

use super::result::{error_result, reply_result};
use iris_api::error::{INTERNAL_ERROR, USAGE_ERROR};
use iris_api::{ApiError, DeleteReply, Execute, RawRequest, Reply, Request, TranscriptOutcome};

/// What a call without `fromTeam` gets when `iris mcp` was started without `--from`.
pub(super) const FROM_REQUIRED: &str =
    "fromTeam is required: pass it or start `iris mcp --from TEAM`";

/// The longest caller timeout the original accepted (one hour, in milliseconds).
const MAX_TIMEOUT_MS: i64 = 3_600_000;

/// How often a long call reports progress to a client that asked for it (a progress token):
/// clients that reset their request timeout on progress then wait as long as the turn takes.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What the server tells a connecting agent about itself.
const INSTRUCTIONS: &str = "iris runs one persistent agent session per ordered pair of teams \
(fromTeam -> toTeam). You speak for fromTeam (your own team; it may already be set by \
`iris mcp --from TEAM`). Use send_message or ask_message to talk to another team and get its \
reply, quick_message to hand off work without waiting, session_report to read what happened \
to earlier messages, list_teams to see who you can talk to. Conversations are remembered: \
each message continues the same session with that team until session_reboot starts a new one.";

const SEND_MESSAGE: &str = "Send a message to another team's agent and wait for its reply. \
The conversation with that team continues across calls (it remembers earlier messages). \
Returns {status, response, turn_id, session_id, …}: status `completed` with the reply in \
`response`; `caller_timeout` when `timeout` ran out first (`response` holds the reply so far; \
the team keeps working: read the rest later with session_report); `accepted` for timeout -1. \
Messages to one team are answered one at a time, in order.";

const QUICK_MESSAGE: &str = "Send a message to another team's agent without waiting for the \
reply (fire and forget). Returns at once with status `accepted` and the `turn_id`; the team \
works on it in the background. Use for 'tell team X to…' or 'let team Y know…'; read the \
reply later with session_report.";

const ASK_MESSAGE: &str = "Ask another team's agent a question and wait for its answer (the \
same as send_message, named for questions). `timeout` is in milliseconds: 0 or absent waits \
for the answer, -1 returns at once with the turn id, 1..3600000 returns after that long with \
the answer so far while the team keeps working.";

const TEAM_WAKE: &str = "Start the agent of the session from fromTeam to `team` ahead of time, \
so the next message is answered without start-up delay. Creates the session if there is none. \
Returns the session record.";

const TEAM_SLEEP: &str = "Stop the agent of the session from fromTeam to `team`, freeing its \
process. Queued messages are cancelled; the message in progress finishes first unless \
`force` is true, which interrupts it. The session (and its memory) is kept: the next message \
starts the agent again.";

const TEAM_WAKE_ALL: &str = "Wake the sessions from fromTeam to every other configured team \
(a few at a time). Returns one entry per team, with its session or why it did not wake.";

const TEAM_STATUS: &str = "The live state of fromTeam's sessions: with `team`, that one \
session (awake, busy, queued messages, the message in progress, what the agent is doing: \
\"streaming\", \"running tool Bash for 3m12s\", \"idle\"; its record); without, every \
configured team with the state of the session from fromTeam to it.";

const SESSION_REPORT: &str = "The most recent messages from fromTeam to `team`, newest first: \
each with its status (queued, running, completed, failed, cancelled, interrupted), the \
message, the reply, timings and errors. Use it to read replies to quick_message, or the rest \
of a reply after a caller timeout.";

const SESSION_CANCEL: &str = "Interrupt the message `team` is working on for fromTeam. With \
`dropQueue`, messages waiting behind it are cancelled too. The session and its agent stay.";

const SESSION_DELETE: &str = "Delete the session from fromTeam to `toTeam` for good: its \
agent is stopped, its record removed and (unless `transcript` is false) its conversation \
transcript deleted. The next message starts a brand-new session.";

const SESSION_REBOOT: &str = "Start over with `toTeam`: the session from fromTeam is deleted \
with its transcript and a fresh one is created in its place. Use when the conversation has \
become too long or confused.";

const LIST_TEAMS: &str = "Every configured team: name, description, project path. With \
fromTeam (or a default team), also the state of the session from it to each team.";

const SESSION_LIST: &str = "Session records, most recently used first, optionally filtered \
by fromTeam, toTeam and status (active, error, …) and cut to `limit`. Filters are only what \
you pass: a default team does not apply here.";

const SESSION_STATS: &str = "Node-wide totals: sessions by status and process state, live \
session actors and agent processes, and counters of turns by outcome, spawns and crashes.";

/// `send_message` and `ask_message`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessageArgs {
    /// The team to send to: its agent answers.
    #[serde(alias = "team")]
    pub to_team: String,
    /// The message (instructions or a question), in plain words.
    pub message: String,
    /// Your own team, the sender. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
    /// Milliseconds to wait: 0 or absent waits for the reply; -1 returns at once with the
    /// turn id; 1 to 3600000 returns after that long with the reply so far (the team keeps
    /// working).
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// `quick_message`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct QuickMessageArgs {
    /// The team to send to.
    #[serde(alias = "team")]
    pub to_team: String,
    /// The message.
    pub message: String,
    /// Your own team, the sender. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
}

/// Tools that act on the session from `fromTeam` to `team`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TeamArgs {
    /// The other team: the one whose agent the session talks to.
    #[serde(alias = "toTeam")]
    pub team: String,
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
}

/// `team_sleep`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SleepArgs {
    /// The team whose agent to stop.
    #[serde(alias = "toTeam")]
    pub team: String,
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
    /// Interrupt the message in progress instead of letting it finish (default false).
    #[serde(default)]
    pub force: bool,
}

/// `session_report`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReportArgs {
    /// The team the messages went to.
    #[serde(alias = "toTeam")]
    pub team: String,
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
    /// At most this many messages (default 20).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `session_cancel`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelArgs {
    /// The team whose work to interrupt.
    #[serde(alias = "toTeam")]
    pub team: String,
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
    /// Also cancel the messages waiting behind it (default false).
    #[serde(default)]
    pub drop_queue: bool,
}

/// `team_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusArgs {
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
    /// Only this team's session; absent: every configured team.
    #[serde(default, alias = "toTeam")]
    pub team: Option<String>,
}

/// `team_wake_all`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WakeAllArgs {
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
}

/// `session_delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteArgs {
    /// The team the session talks to.
    #[serde(alias = "team")]
    pub to_team: String,
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
    /// Also delete the conversation transcript (default true).
    #[serde(default = "yes")]
    pub transcript: bool,
}

/// `session_reboot`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PairArgs {
    /// The team the session talks to.
    #[serde(alias = "team")]
    pub to_team: String,
    /// Your own team. Defaults to the team `iris mcp --from TEAM` was started with.
    #[serde(default)]
    pub from_team: Option<String>,
}

/// `list_teams`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListTeamsArgs {
    /// Show the state of the session from this team to each team. Defaults to the team
    /// `iris mcp --from TEAM` was started with; with neither, teams only.
    #[serde(default)]
    pub from_team: Option<String>,
}

/// `session_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionListArgs {
    /// Only sessions from this team.
    #[serde(default)]
    pub from_team: Option<String>,
    /// Only sessions to this team.
    #[serde(default)]
    pub to_team: Option<String>,
    /// Only sessions in this status (`active`, `error`, …).
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<usize>,
}

fn yes() -> bool {
    true
}

/// The sender: `given` unless blank, else the default team, else an error that says how to
/// give one.
pub(super) fn resolve_from(
    given: Option<String>,
    default: Option<&str>,
) -> Result<String, ApiError> {
    match given.filter(|team| !team.trim().is_empty()) {
        Some(team) => Ok(team),
        None => default
            .map(str::to_owned)
            .ok_or_else(|| ApiError::new(USAGE_ERROR, FROM_REQUIRED)),
    }
}

/// How long a tell waits, from the original's `timeout` (milliseconds): `Ok((timeout,
/// no_wait))` as [`RawRequest::Tell`] takes them.
pub(super) fn wait_mode(timeout: Option<i64>) -> Result<(Option<Duration>, bool), ApiError> {
    match timeout {
        None | Some(0) => Ok((None, false)),
        Some(-1) => Ok((None, true)),
        Some(ms @ 1..=MAX_TIMEOUT_MS) => {
            Ok((Some(Duration::from_millis(ms.unsigned_abs())), false))
        }
        Some(other) => Err(ApiError::new(
            iris_core::ErrorCode::ValidationError,
            format!(
                "timeout must be -1 (return at once with the turn id), 0 (wait for the reply) or \
                 1 to {MAX_TIMEOUT_MS} milliseconds; got {other}"
            ),
        )),
    }
}

fn tell(
    from: String,
    to: String,
    message: String,
    timeout: Option<i64>,
) -> Result<RawRequest, ApiError> {
    if message.trim().is_empty() {
        return Err(ApiError::new(
            iris_core::ErrorCode::ValidationError,
            format!("the message to {to} is empty: say what you want {to} to do or answer"),
        ));
    }
    let (timeout, no_wait) = wait_mode(timeout)?;
    Ok(RawRequest::Tell {
        from,
        to,
        message,
        timeout,
        no_wait,
        request_id: None,
    })
}

/// `send_message` / `ask_message`.
pub(super) fn message_request(
    args: MessageArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    let from = resolve_from(args.from_team, default)?;
    tell(from, args.to_team, args.message, args.timeout)
}

/// `quick_message`: a tell that returns at once (the original's timeout -1).
pub(super) fn quick_request(
    args: QuickMessageArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    let from = resolve_from(args.from_team, default)?;
    tell(from, args.to_team, args.message, Some(-1))
}

pub(super) fn wake_request(args: TeamArgs, default: Option<&str>) -> Result<RawRequest, ApiError> {
    Ok(RawRequest::Wake {
        from: resolve_from(args.from_team, default)?,
        to: args.team,
    })
}

pub(super) fn sleep_request(
    args: SleepArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    Ok(RawRequest::Sleep {
        from: resolve_from(args.from_team, default)?,
        to: args.team,
        force: args.force,
    })
}

pub(super) fn wake_all_request(
    args: WakeAllArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    Ok(RawRequest::WakeAll {
        from: resolve_from(args.from_team, default)?,
    })
}

/// `team_status`: one pair's status, or every team seen from `fromTeam`.
pub(super) fn status_request(
    args: StatusArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    let from = resolve_from(args.from_team, default)?;
    Ok(match args.team.filter(|team| !team.trim().is_empty()) {
        Some(to) => RawRequest::Status { from, to },
        None => RawRequest::Teams { from: Some(from) },
    })
}

pub(super) fn report_request(
    args: ReportArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    Ok(RawRequest::Report {
        from: resolve_from(args.from_team, default)?,
        to: args.team,
        limit: args.limit,
    })
}

pub(super) fn cancel_request(
    args: CancelArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    Ok(RawRequest::Cancel {
        from: resolve_from(args.from_team, default)?,
        to: args.team,
        drop_queue: args.drop_queue,
    })
}

pub(super) fn reboot_request(
    args: PairArgs,
    default: Option<&str>,
) -> Result<RawRequest, ApiError> {
    Ok(RawRequest::SessionsReboot {
        from: resolve_from(args.from_team, default)?,
        to: args.to_team,
    })
}

/// `list_teams`: never an error for a missing sender; it only adds the pairs' state.
pub(super) fn teams_request(args: ListTeamsArgs, default: Option<&str>) -> RawRequest {
    RawRequest::Teams {
        from: resolve_from(args.from_team, default).ok(),
    }
}

/// `session_list`: the filters exactly as given (a default team is not a filter).
pub(super) fn list_request(args: SessionListArgs) -> RawRequest {
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    RawRequest::SessionsList {
        from: given(args.from_team),
        to: given(args.to_team),
        status: given(args.status),
        limit: args.limit,
    }
}

/// The one read `session_delete` needs before it can delete by id: the pair's record, if any.
fn pair_lookup(from: &str, to: &str) -> RawRequest {
    RawRequest::SessionsList {
        from: Some(from.to_owned()),
        to: Some(to.to_owned()),
        status: None,
        limit: Some(1),
    }
}

/// The MCP server: the tools, the backend they run on, and the default sender.
#[derive(Debug, Clone)]
pub(super) struct IrisTools {
    executor: Arc<dyn Execute>,
    default_from: Option<String>,
    tool_router: ToolRouter<IrisTools>,
}

#[tool_router]
impl IrisTools {
    /// Tools over `executor`; calls without `fromTeam` speak for `default_from`.
    pub(super) fn new(executor: Arc<dyn Execute>, default_from: Option<String>) -> IrisTools {
        IrisTools {
            executor,
            default_from,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = SEND_MESSAGE)]
    async fn send_message(
        &self,
        Parameters(args): Parameters<MessageArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(message_request(args, self.sender()), &context)
            .await
    }

    #[tool(description = QUICK_MESSAGE)]
    async fn quick_message(
        &self,
        Parameters(args): Parameters<QuickMessageArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(quick_request(args, self.sender()), &context).await
    }

    #[tool(description = ASK_MESSAGE)]
    async fn ask_message(
        &self,
        Parameters(args): Parameters<MessageArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(message_request(args, self.sender()), &context)
            .await
    }

    #[tool(description = TEAM_WAKE)]
    async fn team_wake(
        &self,
        Parameters(args): Parameters<TeamArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(wake_request(args, self.sender()), &context).await
    }

    #[tool(description = TEAM_SLEEP)]
    async fn team_sleep(
        &self,
        Parameters(args): Parameters<SleepArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(sleep_request(args, self.sender()), &context).await
    }

    #[tool(description = TEAM_WAKE_ALL)]
    async fn team_wake_all(
        &self,
        Parameters(args): Parameters<WakeAllArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(wake_all_request(args, self.sender()), &context)
            .await
    }

    #[tool(description = TEAM_STATUS, annotations(read_only_hint = true))]
    async fn team_status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(status_request(args, self.sender()), &context)
            .await
    }

    #[tool(description = SESSION_REPORT, annotations(read_only_hint = true))]
    async fn session_report(
        &self,
        Parameters(args): Parameters<ReportArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(report_request(args, self.sender()), &context)
            .await
    }

    #[tool(description = SESSION_CANCEL)]
    async fn session_cancel(
        &self,
        Parameters(args): Parameters<CancelArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(cancel_request(args, self.sender()), &context)
            .await
    }

    #[tool(description = SESSION_DELETE, annotations(destructive_hint = true))]
    async fn session_delete(
        &self,
        Parameters(args): Parameters<DeleteArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let from = match resolve_from(args.from_team, self.sender()) {
            Ok(from) => from,
            Err(error) => return error_result(&error),
        };
        self.delete_pair(from, args.to_team, args.transcript, &context)
            .await
    }

    #[tool(description = SESSION_REBOOT, annotations(destructive_hint = true))]
    async fn session_reboot(
        &self,
        Parameters(args): Parameters<PairArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(reboot_request(args, self.sender()), &context)
            .await
    }

    #[tool(description = LIST_TEAMS, annotations(read_only_hint = true))]
    async fn list_teams(
        &self,
        Parameters(args): Parameters<ListTeamsArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(Ok(teams_request(args, self.sender())), &context)
            .await
    }

    #[tool(description = SESSION_LIST, annotations(read_only_hint = true))]
    async fn session_list(
        &self,
        Parameters(args): Parameters<SessionListArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(Ok(list_request(args)), &context).await
    }

    #[tool(description = SESSION_STATS, annotations(read_only_hint = true))]
    async fn session_stats(&self, context: RequestContext<RoleServer>) -> CallToolResult {
        self.run(Ok(RawRequest::Stats), &context).await
    }
}

impl IrisTools {
    /// The team calls speak for when they name none (`iris mcp --from TEAM`).
    fn sender(&self) -> Option<&str> {
        self.default_from.as_deref()
    }

    /// Runs a request built from a call's arguments; a bad argument is a tool error.
    async fn run(
        &self,
        request: Result<RawRequest, ApiError>,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let outcome = match request.and_then(Request::try_from) {
            Ok(request) => self.execute(request, context).await,
            Err(error) => Err(error),
        };
        tool_result(outcome)
    }
}

/// A call's outcome as MCP returns it: the reply, or a tool error.
fn tool_result(outcome: Result<Reply, ApiError>) -> CallToolResult {
    match outcome {
        Ok(reply) => reply_result(&reply),
        Err(error) => error_result(&error),
    }
}

impl IrisTools {
    /// Runs one request on the executor. While it runs, a client that sent a progress token
    /// hears from us every [`PROGRESS_EVERY`], so a long tell does not look like a dead server.
    async fn execute(
        &self,
        request: Request,
        context: &RequestContext<RoleServer>,
    ) -> Result<Reply, ApiError> {
        let work = self.executor.execute(request);
        let Some(token) = context.meta.get_progress_token() else {
            return work.await;
        };
        tokio::pin!(work);
        let started = tokio::time::Instant::now();
        let mut heartbeat = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
        // A slow client must not earn a burst of catch-up notifications.
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                reply = &mut work => return reply,
                _ = heartbeat.tick() => {
                    let waited = started.elapsed().as_secs();
                    let progress = ProgressNotificationParam::new(token.clone(), waited as f64)
                        .with_message(format!("still working ({waited} s)"));
                    // A client that stopped listening costs us nothing: the reply still comes.
                    if let Err(error) = context.peer.notify_progress(progress).await {
                        tracing::debug!(%error, "progress notification not delivered");
                    }
                }
            }
        }
    }

    /// `session_delete`: the original deletes by pair; the API deletes by session id, so find
    /// the pair's record first. No session is not an error (the original's "No session found").
    async fn delete_pair(
        &self,
        from: String,
        to: String,
        transcript: bool,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let lookup = match Request::try_from(pair_lookup(&from, &to)) {
            Ok(lookup) => lookup,
            Err(error) => return error_result(&error),
        };
        let found = match self.execute(lookup, context).await {
            Ok(Reply::Sessions(records)) => records.into_iter().next(),
            Ok(other) => {
                return error_result(&ApiError::new(
                    INTERNAL_ERROR,
                    format!(
                        "looking up the session {from} -> {to} gave an unexpected reply: {other:?}"
                    ),
                ));
            }
            Err(error) => return error_result(&error),
        };
        match found {
            Some(record) => {
                let request = Request::SessionsDelete {
                    session_id: record.session_id,
                    transcript,
                };
                tool_result(self.execute(request, context).await)
            }
            None => reply_result(&Reply::Deleted(DeleteReply {
                deleted: None,
                transcript: if transcript {
                    TranscriptOutcome::NotFound
                } else {
                    TranscriptOutcome::NotRequested
                },
            })),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for IrisTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("iris", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Every tool, with the original's names first.
    const TOOLS: [&str; 14] = [
        "send_message",
        "quick_message",
        "ask_message",
        "team_wake",
        "team_sleep",
        "team_wake_all",
        "team_status",
        "session_report",
        "session_cancel",
        "session_delete",
        "session_reboot",
        "list_teams",
        "session_list",
        "session_stats",
    ];

    fn args<T: serde::de::DeserializeOwned>(value: Value) -> T {
        match serde_json::from_value(value) {
            Ok(args) => args,
            Err(e) => panic!("arguments rejected: {e}"),
        }
    }

    fn schema(tool: &str) -> Value {
        let tools = IrisTools::tool_router().list_all();
        let found = tools.iter().find(|t| t.name == tool);
        match found {
            Some(t) => Value::Object(t.input_schema.as_ref().clone()),
            None => panic!("no tool {tool}"),
        }
    }

    fn properties(tool: &str) -> Vec<String> {
        let mut names: Vec<String> = schema(tool)["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn required(tool: &str) -> Vec<String> {
        let mut names: Vec<String> = schema(tool)["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn every_tool_is_listed_with_a_description() {
        let tools = IrisTools::tool_router().list_all();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        let mut expected = TOOLS.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected);
        for tool in &tools {
            let description = tool.description.as_deref().unwrap_or_default();
            assert!(description.len() > 60, "{} is barely described", tool.name);
        }
    }

    #[test]
    fn arguments_keep_the_original_camel_case_names() {
        let message = ["fromTeam", "message", "timeout", "toTeam"];
        assert_eq!(properties("send_message"), message);
        assert_eq!(properties("ask_message"), message);
        assert_eq!(required("send_message"), ["message", "toTeam"]);
        assert_eq!(
            properties("quick_message"),
            ["fromTeam", "message", "toTeam"]
        );
        assert_eq!(properties("team_wake"), ["fromTeam", "team"]);
        assert_eq!(required("team_wake"), ["team"]);
        assert_eq!(properties("team_sleep"), ["force", "fromTeam", "team"]);
        assert_eq!(properties("team_wake_all"), ["fromTeam"]);
        assert_eq!(properties("team_status"), ["fromTeam", "team"]);
        assert!(required("team_status").is_empty());
        assert_eq!(properties("session_report"), ["fromTeam", "limit", "team"]);
        assert_eq!(
            properties("session_cancel"),
            ["dropQueue", "fromTeam", "team"]
        );
        assert_eq!(
            properties("session_delete"),
            ["fromTeam", "toTeam", "transcript"]
        );
        assert_eq!(required("session_delete"), ["toTeam"]);
        assert_eq!(properties("session_reboot"), ["fromTeam", "toTeam"]);
        assert_eq!(properties("list_teams"), ["fromTeam"]);
        assert_eq!(
            properties("session_list"),
            ["fromTeam", "limit", "status", "toTeam"]
        );
        assert!(properties("session_stats").is_empty());
        // An optional integer: `"integer"` or `["integer", "null"]`.
        let timeout = &schema("send_message")["properties"]["timeout"]["type"];
        let integer = json!("integer");
        assert!(
            *timeout == integer || timeout.as_array().is_some_and(|t| t.contains(&integer)),
            "timeout is {timeout}"
        );
    }

    #[test]
    fn from_team_is_the_argument_then_the_default_then_an_error() {
        let given = resolve_from(Some("gamma".into()), Some("alpha"));
        assert_eq!(given.ok().as_deref(), Some("gamma"));
        let defaulted = resolve_from(None, Some("alpha"));
        assert_eq!(defaulted.ok().as_deref(), Some("alpha"));
        let blank = resolve_from(Some("  ".into()), Some("alpha"));
        assert_eq!(blank.ok().as_deref(), Some("alpha"));
        let missing = resolve_from(None, None).err();
        assert_eq!(missing.as_ref().map(ApiError::code), Some(USAGE_ERROR));
        assert_eq!(
            missing.map(|e| e.error.message).as_deref(),
            Some("fromTeam is required: pass it or start `iris mcp --from TEAM`")
        );
    }

    #[test]
    fn every_pair_tool_uses_the_default_sender() {
        let pair = |request: Result<RawRequest, ApiError>| match request {
            Ok(
                RawRequest::Wake { from, to }
                | RawRequest::Sleep { from, to, .. }
                | RawRequest::Report { from, to, .. }
                | RawRequest::Cancel { from, to, .. }
                | RawRequest::SessionsReboot { from, to }
                | RawRequest::Status { from, to }
                | RawRequest::Tell { from, to, .. },
            ) => (from, to),
            other => panic!("not a pair request: {other:?}"),
        };
        let d = Some("alpha");
        let expected = ("alpha".to_owned(), "beta".to_owned());
        let team = || json!({"team": "beta"});
        let to_team = || json!({"toTeam": "beta"});
        let message = || json!({"toTeam": "beta", "message": "hi"});
        assert_eq!(pair(wake_request(args(team()), d)), expected);
        assert_eq!(pair(sleep_request(args(team()), d)), expected);
        assert_eq!(pair(report_request(args(team()), d)), expected);
        assert_eq!(pair(cancel_request(args(team()), d)), expected);
        assert_eq!(pair(status_request(args(team()), d)), expected);
        assert_eq!(pair(reboot_request(args(to_team()), d)), expected);
        assert_eq!(pair(message_request(args(message()), d)), expected);
        assert_eq!(pair(quick_request(args(message()), d)), expected);
        let wake_all = wake_all_request(args(json!({})), d);
        assert!(matches!(wake_all, Ok(RawRequest::WakeAll { from }) if from == "alpha"));
        // And without a default, each of them says how to give one.
        let missing = wake_request(args(team()), None).err();
        assert_eq!(missing.as_ref().map(ApiError::code), Some(USAGE_ERROR));
        let missing = message_request(args(message()), None).err();
        assert_eq!(missing.as_ref().map(ApiError::code), Some(USAGE_ERROR));
    }

    #[test]
    fn team_and_to_team_are_accepted_for_each_other() {
        let sleep: SleepArgs = args(json!({"toTeam": "beta", "force": true}));
        assert_eq!((sleep.team.as_str(), sleep.force), ("beta", true));
        let reboot: PairArgs = args(json!({"team": "beta", "fromTeam": "alpha"}));
        assert_eq!(reboot.to_team, "beta");
        // The original's extra arguments (persist, ttlDays, parallel, …) are ignored, not refused.
        let message: MessageArgs = args(json!({"toTeam": "b", "message": "m", "persist": true}));
        assert_eq!(message.to_team, "b");
    }

    #[test]
    fn the_timeout_keeps_the_original_meaning() {
        assert_eq!(wait_mode(None).ok(), Some((None, false)));
        assert_eq!(wait_mode(Some(0)).ok(), Some((None, false)));
        assert_eq!(wait_mode(Some(-1)).ok(), Some((None, true)));
        assert_eq!(
            wait_mode(Some(30_000)).ok(),
            Some((Some(Duration::from_secs(30)), false))
        );
        assert!(wait_mode(Some(MAX_TIMEOUT_MS)).is_ok());
        for bad in [-2, MAX_TIMEOUT_MS + 1] {
            let error = wait_mode(Some(bad)).err();
            assert_eq!(
                error.as_ref().map(|e| e.code().as_str()),
                Some("VALIDATION_ERROR")
            );
        }
        let tell = message_request(
            args(json!({"toTeam": "beta", "message": "hi", "fromTeam": "alpha", "timeout": 1500})),
            None,
        );
        assert_eq!(
            tell.ok(),
            Some(RawRequest::Tell {
                from: "alpha".into(),
                to: "beta".into(),
                message: "hi".into(),
                timeout: Some(Duration::from_millis(1500)),
                no_wait: false,
                request_id: None,
            })
        );
    }

    #[test]
    fn quick_message_never_waits_and_an_empty_message_is_refused() {
        let quick = quick_request(args(json!({"toTeam": "beta", "message": "go"})), Some("a"));
        assert!(matches!(
            quick,
            Ok(RawRequest::Tell {
                no_wait: true,
                timeout: None,
                ..
            })
        ));
        let empty = message_request(args(json!({"toTeam": "beta", "message": " "})), Some("a"));
        assert_eq!(
            empty.err().as_ref().map(|e| e.code().as_str()),
            Some("VALIDATION_ERROR")
        );
    }

    #[test]
    fn status_without_a_team_shows_every_team() {
        let all = status_request(args(json!({})), Some("alpha"));
        assert_eq!(
            all.ok(),
            Some(RawRequest::Teams {
                from: Some("alpha".into())
            })
        );
    }

    #[test]
    fn listing_teams_needs_no_sender_and_listing_sessions_ignores_the_default() {
        assert_eq!(
            teams_request(args(json!({})), None),
            RawRequest::Teams { from: None }
        );
        assert_eq!(
            teams_request(args(json!({})), Some("alpha")),
            RawRequest::Teams {
                from: Some("alpha".into())
            }
        );
        assert_eq!(
            list_request(args(json!({"toTeam": "beta", "limit": 5}))),
            RawRequest::SessionsList {
                from: None,
                to: Some("beta".into()),
                status: None,
                limit: Some(5),
            }
        );
    }

    #[test]
    fn session_delete_removes_the_transcript_unless_told_not_to() {
        let delete: DeleteArgs = args(json!({"toTeam": "beta"}));
        assert!(delete.transcript);
        let keep: DeleteArgs = args(json!({"toTeam": "beta", "transcript": false}));
        assert!(!keep.transcript);
    }
}
