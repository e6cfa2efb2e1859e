//! Runs [`Request`]s against a [`Runtime`]: the one place a command's meaning lives, shared by
//! the embedded CLI, the node's control API and the MCP tools.
//!
//! A request arrives validated ([`crate::request`]): its names, ids and statuses are
//! well-formed. What only the runtime knows is checked here: a team that is not configured is
//! `TEAM_NOT_FOUND`, a session that does not exist is `SESSION_NOT_FOUND`, an empty message is
//! `VALIDATION_ERROR`.

use std::future::Future;
use std::pin::Pin;

use iris_core::{Coded, ErrorCode, Pair, SessionFilter, SessionId, TeamName};
use iris_runtime::{
    Deletion, PairStatus, RuntimeError, TellOptions, TellOutcome, TranscriptRemoval,
};
use iris_runtime::{Runtime, RuntimeStats};

use crate::reply::{
    ApiError, ApiErrorBody, CancelReply, CountersOf, DeleteReply, PairReply, Reply, StatsReply,
    StatusReply, TeamRow, TellReply, TellStatus, TranscriptOutcome, WakeAllEntry,
};
use crate::request::{Request, SessionTarget};

/// How many turns `report` shows when the request gives no limit.
pub const DEFAULT_REPORT_LIMIT: usize = 20;

/// The future an [`Execute`] returns.
pub type Executing<'a> = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send + 'a>>;

/// Anything that runs requests: the [`Service`] over a runtime in this process, or a client of
/// a node that runs them there. Front ends (the HTTP server, MCP) take an `Arc<dyn Execute>`, so
/// they neither know nor depend on where the runtime lives.
pub trait Execute: Send + Sync + std::fmt::Debug {
    /// Runs one request.
    fn execute(&self, request: Request) -> Executing<'_>;
}

/// Executes requests against a runtime. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    runtime: Runtime,
}

impl Execute for Service {
    fn execute(&self, request: Request) -> Executing<'_> {
        Box::pin(Service::execute(self, request))
    }
}

impl Service {
    /// A service over `runtime`.
    pub fn new(runtime: Runtime) -> Service {
        Service { runtime }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Runs one request. Session records in the reply are shown with their secrets redacted
    /// ([`shown_record`]), whenever they were stored.
    pub async fn execute(&self, request: Request) -> Result<Reply, ApiError> {
        self.run(request).await.map(shown_reply)
    }

    async fn run(&self, request: Request) -> Result<Reply, ApiError> {
        match request {
            Request::Tell {
                from,
                to,
                message,
                wait,
                request_id,
            } => self
                .tell(from, to, message, TellOptions { wait, request_id })
                .await
                .map(Reply::Tell),
            Request::SessionsList {
                from,
                to,
                status,
                limit,
            } => {
                // Filters take any valid name: sessions of a team removed from the
                // configuration are still stored and worth listing.
                let mut filter = SessionFilter::all();
                filter.from = from;
                filter.to = to;
                filter.status = status;
                filter.limit = limit;
                Ok(Reply::Sessions(self.runtime.list_sessions(&filter)?))
            }
            Request::SessionsShow { target } => self.show(target).map(Reply::Session),
            Request::SessionsDelete {
                session_id,
                transcript,
            } => {
                let deletion = self.runtime.delete_session(&session_id, transcript).await?;
                deletion_reply(&session_id, deletion).map(Reply::Deleted)
            }
            Request::SessionsCompact { session_id } => Ok(Reply::Session(
                self.runtime.compact_session(&session_id).await?,
            )),
            Request::SessionsReboot { from, to } => {
                let (from, to) = self.pair(from, to)?;
                Ok(Reply::Session(self.runtime.reboot(&from, &to).await?))
            }
            Request::Report { from, to, limit } => {
                let (from, to) = self.known_or_stored_pair(from, to)?;
                let limit = limit.unwrap_or(DEFAULT_REPORT_LIMIT);
                Ok(Reply::Turns(self.runtime.report(&from, &to, limit)?))
            }
            Request::Wake { from, to } => {
                let (from, to) = self.pair(from, to)?;
                Ok(Reply::Session(self.runtime.wake(&from, &to).await?))
            }
            Request::Sleep { from, to, force } => {
                let (from, to) = self.pair(from, to)?;
                self.runtime.sleep(&from, &to, force).await?;
                Ok(Reply::Slept(PairReply { from, to }))
            }
            Request::Cancel {
                from,
                to,
                drop_queue,
            } => {
                let (from, to) = self.pair(from, to)?;
                let cancelled = self.runtime.cancel(&from, &to, drop_queue).await?;
                Ok(Reply::Cancelled(CancelReply {
                    from,
                    to,
                    interrupted: cancelled.interrupted,
                    dropped: cancelled.dropped,
                }))
            }
            Request::WakeAll { from } => {
                let from = self.team(from)?;
                let woken = self.runtime.wake_all(&from).await;
                Ok(Reply::WokeAll(woken.into_iter().map(wake_entry).collect()))
            }
            Request::Status { from, to } => {
                let (from, to) = self.pair(from, to)?;
                let status = self.runtime.status(&from, &to).await?;
                Ok(Reply::Status(status_reply(from, to, status)))
            }
            Request::Teams { from } => self.teams(from).await.map(Reply::Teams),
            Request::Stats => Ok(Reply::Stats(stats_reply(
                self.runtime.stats(),
                self.runtime.metrics().counters,
            ))),
            Request::Budget => Ok(Reply::Budget(self.runtime.budget()?)),
            Request::BudgetSet { key, cap } => Ok(Reply::Budget(
                self.runtime
                    .set_budget_cap(&key.to_string(), Some(cap))
                    .await?,
            )),
            Request::BudgetReset { key } => Ok(Reply::Budget(
                self.runtime.set_budget_cap(&key.to_string(), None).await?,
            )),
        }
    }

    async fn tell(
        &self,
        from: TeamName,
        to: TeamName,
        message: String,
        options: TellOptions,
    ) -> Result<TellReply, ApiError> {
        let (from, to) = self.pair(from, to)?;
        if message.trim().is_empty() {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "the message is empty; write what the receiving team should do",
            ));
        }
        let told = self
            .runtime
            .tell_in_session(&from, &to, message, options)
            .await?;
        Ok(tell_reply(from, to, Some(told.session_id), told.outcome))
    }

    fn show(&self, target: SessionTarget) -> Result<iris_core::SessionRecord, ApiError> {
        match target {
            SessionTarget::Id(id) => self
                .runtime
                .get_session_by_id(&id)?
                .ok_or_else(|| RuntimeError::no_session_with_id(id).into()),
            SessionTarget::Pair { from, to } => {
                let (from, to) = self.known_or_stored_pair(from, to)?;
                match self.runtime.get_session(&from, &to)? {
                    Some(record) => Ok((*record).clone()),
                    None => Err(RuntimeError::no_session_for(Pair::new(from, to)).into()),
                }
            }
        }
    }

    async fn teams(&self, from: Option<TeamName>) -> Result<Vec<TeamRow>, ApiError> {
        let from = from.map(|name| self.team(name)).transpose()?;
        let mut rows = Vec::new();
        for (name, team) in self.runtime.config().teams() {
            let pair = match &from {
                Some(from) if from != name => {
                    let status = self.runtime.status(from, name).await?;
                    Some(status_reply(from.clone(), name.clone(), status))
                }
                _ => None,
            };
            let path = match &team.remote {
                Some(remote) => format!("{}:{}", remote.destination, team.path.display()),
                // The configured path keeps `..` (resolving it lexically would be wrong across
                // symlinks); the directory it names is what a reader wants to see.
                None => std::fs::canonicalize(&team.path)
                    .unwrap_or_else(|_| team.path.clone())
                    .display()
                    .to_string(),
            };
            rows.push(TeamRow {
                name: name.clone(),
                description: team.description.clone(),
                path,
                pair,
            });
        }
        Ok(rows)
    }

    /// A configured team.
    fn team(&self, team: TeamName) -> Result<TeamName, ApiError> {
        if self.runtime.config().team(&team).is_none() {
            return Err(RuntimeError::UnknownTeam { team }.into());
        }
        Ok(team)
    }

    /// Two configured teams.
    fn pair(&self, from: TeamName, to: TeamName) -> Result<(TeamName, TeamName), ApiError> {
        Ok((self.team(from)?, self.team(to)?))
    }

    /// A pair for reading what is stored: a pair whose team left the configuration can still
    /// be read, but if it has no session, an unknown team is the better answer.
    fn known_or_stored_pair(
        &self,
        from: TeamName,
        to: TeamName,
    ) -> Result<(TeamName, TeamName), ApiError> {
        if self.runtime.get_session(&from, &to)?.is_none() {
            return self.pair(from, to);
        }
        Ok((from, to))
    }
}

/// `reply` with every session record in it shown through [`shown_record`].
fn shown_reply(reply: Reply) -> Reply {
    match reply {
        Reply::Sessions(mut records) => {
            records.iter_mut().for_each(shown_record);
            Reply::Sessions(records)
        }
        Reply::Session(mut record) => {
            shown_record(&mut record);
            Reply::Session(record)
        }
        Reply::Deleted(mut deleted) => {
            deleted.deleted.iter_mut().for_each(shown_record);
            Reply::Deleted(deleted)
        }
        Reply::Status(mut status) => {
            status.session.iter_mut().for_each(shown_record);
            Reply::Status(status)
        }
        Reply::Teams(mut rows) => {
            for row in &mut rows {
                if let Some(pair) = &mut row.pair {
                    pair.session.iter_mut().for_each(shown_record);
                }
            }
            Reply::Teams(rows)
        }
        Reply::WokeAll(mut entries) => {
            for entry in &mut entries {
                entry.session.iter_mut().for_each(shown_record);
            }
            Reply::WokeAll(entries)
        }
        other => other,
    }
}

/// A session record as iris shows it: its launch line and configuration snapshot pass through
/// the redaction once more. Records written since redaction at the source carry no secret
/// already; a record written by an older iris may, and this hides what can be recognised (URL
/// passwords, tokens, every `env` value of the snapshot).
pub fn shown_record(record: &mut iris_core::SessionRecord) {
    if let Some(line) = &mut record.launch_command
        && let std::borrow::Cow::Owned(shown) = iris_core::redact::redact_text(line)
    {
        *line = shown;
    }
    if let Some(snapshot) = &mut record.team_config_snapshot {
        let shown = match serde_json::from_str::<serde_json::Value>(snapshot) {
            Ok(mut value) => {
                iris_core::redact::redact_json(&mut value);
                serde_json::to_string_pretty(&value).ok()
            }
            Err(_) => Some(iris_core::redact::redact_text(snapshot).into_owned()),
        };
        if let Some(shown) = shown {
            *snapshot = shown;
        }
    }
}

/// The body of an error with a code.
fn error_body(error: &(impl Coded + std::fmt::Display)) -> ApiErrorBody {
    ApiError::coded(error).error
}

/// What `tell` answers, for each outcome: `completed` with the text, cost, usage and duration;
/// `accepted` with nothing yet; `caller_timeout` with the text streamed so far; `failed` with
/// the turn's error code and message.
pub fn tell_reply(
    from: TeamName,
    to: TeamName,
    session_id: Option<SessionId>,
    outcome: TellOutcome,
) -> TellReply {
    let turn_id = outcome.turn_id();
    let mut reply = TellReply {
        from,
        to,
        session_id,
        turn_id,
        status: TellStatus::Completed,
        response: String::new(),
        cost_usd: None,
        usage: None,
        duration_ms: None,
        error: None,
    };
    match outcome {
        TellOutcome::Completed(result) => {
            reply.response = result.text;
            reply.cost_usd = Some(result.cost_usd);
            reply.usage = Some(result.usage);
            reply.duration_ms = Some(result.duration_ms);
        }
        TellOutcome::Accepted { .. } => reply.status = TellStatus::Accepted,
        TellOutcome::CallerTimeout { partial, .. } => {
            reply.status = TellStatus::CallerTimeout;
            reply.response = partial;
        }
        TellOutcome::Failed { error, .. } => {
            reply.status = TellStatus::Failed;
            reply.error = Some(error_body(&error));
        }
    }
    reply
}

/// A deletion's reply; deleting a session that does not exist is `SESSION_NOT_FOUND`, so a
/// mistyped id is not mistaken for a success.
fn deletion_reply(id: &SessionId, deletion: Deletion) -> Result<DeleteReply, ApiError> {
    let Some(record) = deletion.deleted else {
        return Err(RuntimeError::no_session_with_id(*id).into());
    };
    Ok(DeleteReply {
        deleted: Some(record),
        transcript: transcript_outcome(&deletion.transcript),
    })
}

/// What the runtime did to the transcript, as the API reports it.
pub fn transcript_outcome(removal: &TranscriptRemoval) -> TranscriptOutcome {
    match removal {
        TranscriptRemoval::NotRequested => TranscriptOutcome::NotRequested,
        TranscriptRemoval::Removed(_) => TranscriptOutcome::Removed,
        TranscriptRemoval::NotFound => TranscriptOutcome::NotFound,
        TranscriptRemoval::Failed { path, reason } => TranscriptOutcome::Failed(match path {
            Some(path) => format!("{} ({reason})", path.display()),
            None => reason.clone(),
        }),
    }
}

fn wake_entry(
    (team, result): (TeamName, Result<iris_core::SessionRecord, RuntimeError>),
) -> WakeAllEntry {
    match result {
        Ok(session) => WakeAllEntry {
            to: team,
            session: Some(session),
            error: None,
        },
        Err(error) => WakeAllEntry {
            to: team,
            session: None,
            error: Some(error_body(&error)),
        },
    }
}

/// A pair's status as the API shows it.
pub fn status_reply(from: TeamName, to: TeamName, status: PairStatus) -> StatusReply {
    StatusReply {
        from,
        to,
        session: status.session,
        awake: status.awake,
        busy: status.busy,
        queued: status.queued,
        current_turn: status.current_turn,
        activity: status.activity,
        budget_warning: status.budget_warning,
    }
}

/// Node-wide totals: the store's counts, the live figures and the runtime's counters.
pub fn stats_reply(stats: RuntimeStats, counters: Vec<(String, u64)>) -> StatsReply {
    let mut counters: std::collections::BTreeMap<String, u64> = counters.into_iter().collect();
    counters.insert("store_write_batches".into(), stats.store_write_batches);
    StatsReply {
        sessions: stats.sessions,
        live_actors: stats.live_actors,
        live_processes: stats.live_processes,
        counters,
        containment: Some(stats.containment),
        counters_of: CountersOf::Node,
        nodes: None,
        unavailable_nodes: None,
        agent_cpu_seconds: stats
            .agent_cpu
            .iter()
            .map(|(pair, cpu)| (pair.to_string(), cpu.as_secs_f64()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use iris_core::{TurnId, UsageTotals};
    use iris_runtime::{TurnError, TurnResult};

    use super::*;

    fn team(name: &str) -> TeamName {
        TeamName::new(name).unwrap()
    }

    #[test]
    fn a_completed_tell_carries_text_cost_usage_and_duration() {
        let turn_id = TurnId::new();
        let outcome = TellOutcome::Completed(TurnResult {
            turn_id,
            text: "echo: hello".into(),
            subtype: "success".into(),
            is_error: false,
            cost_usd: 0.25,
            usage: UsageTotals {
                cost_usd: 0.25,
                input_tokens: 3,
                output_tokens: 4,
                ..UsageTotals::default()
            },
            duration_ms: 12,
            num_turns: 1,
        });
        let sid = SessionId::new_v4();
        let reply = tell_reply(team("alpha"), team("beta"), Some(sid), outcome);
        assert_eq!(reply.status, TellStatus::Completed);
        assert_eq!(reply.turn_id, turn_id);
        assert_eq!(reply.session_id, Some(sid));
        assert_eq!(reply.response, "echo: hello");
        assert_eq!(reply.cost_usd, Some(0.25));
        assert_eq!(reply.duration_ms, Some(12));
        assert_eq!(reply.usage.as_ref().unwrap().output_tokens, 4);
        assert!(reply.error.is_none());
        // `error` is absent (not null) unless the turn failed.
        let json = serde_json::to_value(&reply).unwrap();
        assert!(json.get("error").is_none(), "{json}");
        assert_eq!(json["status"], "completed");
        for key in [
            "from",
            "to",
            "session_id",
            "turn_id",
            "status",
            "response",
            "cost_usd",
            "usage",
            "duration_ms",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
    }

    #[test]
    fn accepted_and_caller_timeout_carry_the_turn_id_and_the_text_so_far() {
        let turn_id = TurnId::new();
        let accepted = tell_reply(
            team("a"),
            team("b"),
            None,
            TellOutcome::Accepted { turn_id },
        );
        assert_eq!(
            (accepted.status, accepted.response.as_str()),
            (TellStatus::Accepted, "")
        );
        assert_eq!(accepted.turn_id, turn_id);
        assert_eq!(accepted.cost_usd, None);
        let timeout = tell_reply(
            team("a"),
            team("b"),
            None,
            TellOutcome::CallerTimeout {
                turn_id,
                partial: "half".into(),
            },
        );
        assert_eq!(
            (timeout.status, timeout.response.as_str()),
            (TellStatus::CallerTimeout, "half")
        );
        assert!(timeout.error.is_none());
    }

    #[test]
    fn status_shows_what_the_agent_is_doing_and_keeps_its_json_fields() {
        let busy = PairStatus {
            session: None,
            awake: true,
            busy: true,
            queued: 0,
            current_turn: Some(TurnId::new()),
            activity: Some(iris_runtime::AgentActivity::RunningTool {
                tool: "Bash".into(),
                running_for_ms: 192_400,
            }),
            budget_warning: false,
        };
        let reply = status_reply(team("a"), team("b"), busy);
        assert_eq!(
            reply.activity.as_ref().map(ToString::to_string).as_deref(),
            Some("running tool Bash for 3m12s")
        );
        let json = serde_json::to_value(&reply).unwrap();
        for field in [
            "from",
            "to",
            "session",
            "awake",
            "busy",
            "queued",
            "current_turn",
        ] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        assert_eq!(json["activity"], "running tool Bash for 3m12s");
        // An older reply without the field still reads.
        let mut older = json.clone();
        older.as_object_mut().unwrap().remove("activity");
        let read: StatusReply = serde_json::from_value(older).unwrap();
        assert_eq!(read.activity, None);
        let asleep = PairStatus {
            session: None,
            awake: false,
            busy: false,
            queued: 0,
            current_turn: None,
            activity: None,
            budget_warning: false,
        };
        let json = serde_json::to_value(status_reply(team("a"), team("b"), asleep)).unwrap();
        assert!(json.get("activity").is_none(), "{json}");
    }

    #[test]
    fn a_failed_tell_carries_the_turn_errors_code_and_message() {
        let cases = [
            (
                TurnError::Timeout {
                    after: Duration::from_secs(5),
                },
                "TIMEOUT",
            ),
            (
                TurnError::ToolTimeout {
                    tool: "Bash".into(),
                    ran: Duration::from_secs(1900),
                    limit: Duration::from_secs(1800),
                },
                "TIMEOUT",
            ),
            (
                TurnError::TurnTimeout {
                    limit: Duration::from_secs(3600),
                },
                "TIMEOUT",
            ),
            (TurnError::PoolExhausted { max: 2 }, "POOL_LIMIT_EXCEEDED"),
            (TurnError::Cancelled, "PROCESS_ERROR"),
            (
                TurnError::Spawn {
                    code: ErrorCode::ConfigError,
                    reason: "bad".into(),
                },
                "CONFIG_ERROR",
            ),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let reply = tell_reply(
                team("a"),
                team("b"),
                None,
                TellOutcome::Failed {
                    turn_id: TurnId::new(),
                    error,
                },
            );
            assert_eq!(reply.status, TellStatus::Failed);
            let body = reply.error.unwrap();
            assert_eq!(body.code.as_str(), code);
            assert_eq!(body.message, message);
        }
    }

    #[test]
    fn transcript_outcomes_have_stable_names() {
        // As on the wire, and back.
        let transcript_text = |removal: &TranscriptRemoval| {
            let outcome = transcript_outcome(removal);
            let json = serde_json::to_value(&outcome).unwrap();
            assert_eq!(
                serde_json::from_value::<TranscriptOutcome>(json.clone()).unwrap(),
                outcome
            );
            json.as_str().unwrap().to_owned()
        };
        assert_eq!(
            transcript_text(&TranscriptRemoval::NotRequested),
            "not_requested"
        );
        assert_eq!(
            transcript_text(&TranscriptRemoval::Removed(vec!["/t".into()])),
            "removed"
        );
        assert_eq!(transcript_text(&TranscriptRemoval::NotFound), "not_found");
        let failed = transcript_text(&TranscriptRemoval::Failed {
            path: Some("/t/x.jsonl".into()),
            reason: "denied".into(),
        });
        assert!(
            failed.starts_with("failed:")
                && failed.contains("/t/x.jsonl")
                && failed.contains("denied"),
            "{failed}"
        );
    }

    #[test]
    fn deleting_nothing_is_session_not_found() {
        let id = SessionId::new_v4();
        let e = deletion_reply(
            &id,
            Deletion {
                deleted: None,
                transcript: TranscriptRemoval::NotRequested,
            },
        )
        .unwrap_err();
        assert_eq!(e.code().as_str(), "SESSION_NOT_FOUND");
        assert!(e.error.message.contains(&id.to_string()), "{e}");
    }

    #[test]
    fn stats_keep_every_counter_by_name() {
        let stats = RuntimeStats {
            sessions: iris_core::SessionStats::default(),
            live_actors: 2,
            live_processes: 1,
            store_write_batches: 9,
            containment: iris_agent::containment::ContainmentMode::Subreaper,
            agent_cpu: Vec::new(),
        };
        let reply = stats_reply(stats, vec![("tells".into(), 3), ("spawns".into(), 1)]);
        assert_eq!(reply.live_actors, 2);
        assert_eq!(reply.live_processes, 1);
        assert_eq!(reply.counters["tells"], 3);
        assert_eq!(reply.counters["spawns"], 1);
        assert_eq!(reply.counters["store_write_batches"], 9);
        assert_eq!(
            serde_json::to_value(&reply).unwrap()["containment"],
            "subreaper"
        );
    }
}
