//! [`Request`]: one operation on a runtime, with every field already validated into its domain
//! type. Front ends build it from text once ([`Request::try_from`] a [`RawRequest`], or
//! [`Request::from_json`]); everything after that (the [`Service`](crate::Service), a node's
//! client, a forward to another node) works with names, ids and waits that are known to be valid.
//!
//! Validation happens in one order for every front end, so the same mistake gets the same code:
//! a zero tell timeout is `USAGE_ERROR`; a malformed team name, session id or status is
//! `VALIDATION_ERROR`. Whether a team is *configured* is the service's question
//! (`TEAM_NOT_FOUND`), since only the runtime knows its configuration.

use std::str::FromStr;
use std::time::Duration;

use iris_core::config::budget::{Cap, CapKey};
use iris_core::{Coded, RequestId, SessionId, SessionStatus, TeamName};
use iris_runtime::Wait;
use serde::{Deserialize, Serialize};

use crate::error::{ApiCode, ApiError};
use crate::wire::{RawRequest, RawSessionTarget};

/// One operation, as every front end (CLI, HTTP, MCP, a forwarding node) hands it to a
/// [`Service`](crate::Service). On the wire it is its [`RawRequest`] form, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRequest", into = "RawRequest")]
pub enum Request {
    /// Send `message` from `from` to `to`, and wait for the answer as `wait` says.
    Tell {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
        /// The message.
        message: String,
        /// How long the caller waits.
        wait: Wait,
        /// Run at most once: a tell with the id of one the pair already took joins its turn.
        request_id: Option<RequestId>,
    },
    /// List session records, newest use first.
    SessionsList {
        /// Only sessions from this team.
        from: Option<TeamName>,
        /// Only sessions to this team.
        to: Option<TeamName>,
        /// Only sessions in this status.
        status: Option<SessionStatus>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// One session record.
    SessionsShow {
        /// Which session.
        target: SessionTarget,
    },
    /// Delete a session (stopping its agent).
    SessionsDelete {
        /// The session.
        session_id: SessionId,
        /// Also delete the agent's transcript.
        transcript: bool,
    },
    /// Compact a session's conversation.
    SessionsCompact {
        /// The session.
        session_id: SessionId,
    },
    /// Delete the pair's session and transcript, then create a new one.
    SessionsReboot {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
    },
    /// The pair's most recent turns, newest first.
    Report {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
        /// At most this many (default [`DEFAULT_REPORT_LIMIT`](crate::DEFAULT_REPORT_LIMIT)).
        limit: Option<usize>,
    },
    /// Create the pair's session if needed and start its agent.
    Wake {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
    },
    /// Stop the pair's agent after its turn in flight (`force`: interrupt it).
    Sleep {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
        /// Interrupt the turn in flight.
        force: bool,
    },
    /// Interrupt the pair's turn in flight.
    Cancel {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
        /// Also fail every queued turn as cancelled.
        drop_queue: bool,
    },
    /// Wake the sessions from `from` to every other team.
    WakeAll {
        /// The sending team.
        from: TeamName,
    },
    /// The pair's live status.
    Status {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
    },
    /// Every configured team, with the state of the pair from `from` when given.
    Teams {
        /// The team whose pairs to show.
        from: Option<TeamName>,
    },
    /// Totals: sessions by status and process state, live actors and processes, turns.
    Stats,
    /// Spend against every budget cap that is set.
    Budget,
    /// Set the cap `key` names at run time, over the configuration's.
    BudgetSet {
        /// Which cap.
        key: CapKey,
        /// Its limit.
        cap: Cap,
    },
    /// Remove the cap `key` names that was set at run time.
    BudgetReset {
        /// Which cap.
        key: CapKey,
    },
}

/// A session named by id or by pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionTarget {
    /// By session id.
    Id(SessionId),
    /// By pair.
    Pair {
        /// The sending team.
        from: TeamName,
        /// The receiving team.
        to: TeamName,
    },
}

/// What a request does to the runtime, which decides how long a caller may wait for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Reads records or live state; answers promptly.
    Read,
    /// Changes a session or its agent (may stop or start a process).
    Control,
    /// A tell, whose reply comes when `Wait` says.
    Tell(Wait),
}

impl Request {
    /// Reads a request from its JSON wire form. Text that is not a request (not JSON, an
    /// unknown command or field) is `USAGE_ERROR`; a request with an invalid value has that
    /// value's code (see the module documentation).
    pub fn from_json(bytes: &[u8]) -> Result<Request, ApiError> {
        let raw = RawRequest::from_json(bytes).map_err(|e| {
            ApiError::new(
                ApiCode::Usage,
                format!(
                    "the body is not an iris command: {}; send JSON such as {{\"command\":\"stats\"}} or {{\"command\":\"tell\",\"from\":\"alpha\",\"to\":\"beta\",\"message\":\"hi\"}}",
                    iris_core::redact::clip(&e.to_string())
                ),
            )
        })?;
        Request::try_from(raw)
    }

    /// The request's command name, as its wire tag (`tell`, `sessions_list`, …): for logs,
    /// never its content (messages may be private).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Tell { .. } => "tell",
            Request::SessionsList { .. } => "sessions_list",
            Request::SessionsShow { .. } => "sessions_show",
            Request::SessionsDelete { .. } => "sessions_delete",
            Request::SessionsCompact { .. } => "sessions_compact",
            Request::SessionsReboot { .. } => "sessions_reboot",
            Request::Report { .. } => "report",
            Request::Wake { .. } => "wake",
            Request::Sleep { .. } => "sleep",
            Request::Cancel { .. } => "cancel",
            Request::WakeAll { .. } => "wake_all",
            Request::Status { .. } => "status",
            Request::Teams { .. } => "teams",
            Request::Stats => "stats",
            Request::Budget => "budget",
            Request::BudgetSet { .. } => "budget_set",
            Request::BudgetReset { .. } => "budget_reset",
        }
    }

    /// What the request does (see [`RequestKind`]).
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Tell { wait, .. } => RequestKind::Tell(*wait),
            Request::SessionsList { .. }
            | Request::SessionsShow { .. }
            | Request::Report { .. }
            | Request::Status { .. }
            | Request::Teams { .. }
            | Request::Stats
            | Request::Budget => RequestKind::Read,
            Request::BudgetSet { .. } | Request::BudgetReset { .. } => RequestKind::Control,
            Request::SessionsDelete { .. }
            | Request::SessionsCompact { .. }
            | Request::SessionsReboot { .. }
            | Request::Wake { .. }
            | Request::Sleep { .. }
            | Request::Cancel { .. }
            | Request::WakeAll { .. } => RequestKind::Control,
        }
    }
}

impl TryFrom<RawRequest> for Request {
    type Error = ApiError;

    fn try_from(raw: RawRequest) -> Result<Request, ApiError> {
        Ok(match raw {
            RawRequest::Tell {
                from,
                to,
                message,
                timeout,
                no_wait,
                request_id,
            } => {
                // Checked first, as on the command line (`--timeout 0s` is a usage error):
                // a zero wait would return before the turn could even start.
                let wait = wait_of(timeout, no_wait)?;
                Request::Tell {
                    from: team(&from)?,
                    to: team(&to)?,
                    message,
                    wait,
                    request_id: request_id.as_deref().map(request_id_of).transpose()?,
                }
            }
            RawRequest::SessionsList {
                from,
                to,
                status,
                limit,
            } => Request::SessionsList {
                from: from.as_deref().map(team).transpose()?,
                to: to.as_deref().map(team).transpose()?,
                status: status.as_deref().map(session_status).transpose()?,
                limit,
            },
            RawRequest::SessionsShow { target } => Request::SessionsShow {
                target: match target {
                    RawSessionTarget::Id { session_id } => {
                        SessionTarget::Id(session_id_of(&session_id)?)
                    }
                    RawSessionTarget::Pair { from, to } => SessionTarget::Pair {
                        from: team(&from)?,
                        to: team(&to)?,
                    },
                },
            },
            RawRequest::SessionsDelete {
                session_id,
                transcript,
            } => Request::SessionsDelete {
                session_id: session_id_of(&session_id)?,
                transcript,
            },
            RawRequest::SessionsCompact { session_id } => Request::SessionsCompact {
                session_id: session_id_of(&session_id)?,
            },
            RawRequest::SessionsReboot { from, to } => Request::SessionsReboot {
                from: team(&from)?,
                to: team(&to)?,
            },
            RawRequest::Report { from, to, limit } => Request::Report {
                from: team(&from)?,
                to: team(&to)?,
                limit,
            },
            RawRequest::Wake { from, to } => Request::Wake {
                from: team(&from)?,
                to: team(&to)?,
            },
            RawRequest::Sleep { from, to, force } => Request::Sleep {
                from: team(&from)?,
                to: team(&to)?,
                force,
            },
            RawRequest::Cancel {
                from,
                to,
                drop_queue,
            } => Request::Cancel {
                from: team(&from)?,
                to: team(&to)?,
                drop_queue,
            },
            RawRequest::WakeAll { from } => Request::WakeAll { from: team(&from)? },
            RawRequest::Status { from, to } => Request::Status {
                from: team(&from)?,
                to: team(&to)?,
            },
            RawRequest::Teams { from } => Request::Teams {
                from: from.as_deref().map(team).transpose()?,
            },
            RawRequest::Stats => Request::Stats,
            RawRequest::Budget => Request::Budget,
            RawRequest::BudgetSet { key, usd, tokens } => {
                let cap = Cap { usd, tokens };
                cap.check().map_err(|e| invalid_cap(&key, e))?;
                Request::BudgetSet {
                    key: CapKey::parse(&key).map_err(|e| invalid_cap(&key, e))?,
                    cap,
                }
            }
            RawRequest::BudgetReset { key } => Request::BudgetReset {
                key: CapKey::parse(&key).map_err(|e| invalid_cap(&key, e))?,
            },
        })
    }
}

impl From<Request> for RawRequest {
    fn from(request: Request) -> RawRequest {
        let text = |name: TeamName| name.to_string();
        match request {
            Request::Tell {
                from,
                to,
                message,
                wait,
                request_id,
            } => {
                let (timeout, no_wait) = match wait {
                    Wait::Complete => (None, false),
                    Wait::Timeout(limit) => (Some(limit), false),
                    Wait::Async => (None, true),
                };
                RawRequest::Tell {
                    from: text(from),
                    to: text(to),
                    message,
                    timeout,
                    no_wait,
                    request_id: request_id.map(|id| id.to_string()),
                }
            }
            Request::SessionsList {
                from,
                to,
                status,
                limit,
            } => RawRequest::SessionsList {
                from: from.map(text),
                to: to.map(text),
                status: status.map(|s| s.as_str().to_owned()),
                limit,
            },
            Request::SessionsShow { target } => RawRequest::SessionsShow {
                target: match target {
                    SessionTarget::Id(id) => RawSessionTarget::Id {
                        session_id: id.to_string(),
                    },
                    SessionTarget::Pair { from, to } => RawSessionTarget::Pair {
                        from: text(from),
                        to: text(to),
                    },
                },
            },
            Request::SessionsDelete {
                session_id,
                transcript,
            } => RawRequest::SessionsDelete {
                session_id: session_id.to_string(),
                transcript,
            },
            Request::SessionsCompact { session_id } => RawRequest::SessionsCompact {
                session_id: session_id.to_string(),
            },
            Request::SessionsReboot { from, to } => RawRequest::SessionsReboot {
                from: text(from),
                to: text(to),
            },
            Request::Report { from, to, limit } => RawRequest::Report {
                from: text(from),
                to: text(to),
                limit,
            },
            Request::Wake { from, to } => RawRequest::Wake {
                from: text(from),
                to: text(to),
            },
            Request::Sleep { from, to, force } => RawRequest::Sleep {
                from: text(from),
                to: text(to),
                force,
            },
            Request::Cancel {
                from,
                to,
                drop_queue,
            } => RawRequest::Cancel {
                from: text(from),
                to: text(to),
                drop_queue,
            },
            Request::WakeAll { from } => RawRequest::WakeAll { from: text(from) },
            Request::Status { from, to } => RawRequest::Status {
                from: text(from),
                to: text(to),
            },
            Request::Teams { from } => RawRequest::Teams {
                from: from.map(text),
            },
            Request::Stats => RawRequest::Stats,
            Request::Budget => RawRequest::Budget,
            Request::BudgetSet { key, cap } => RawRequest::BudgetSet {
                key: key.to_string(),
                usd: cap.usd,
                tokens: cap.tokens,
            },
            Request::BudgetReset { key } => RawRequest::BudgetReset {
                key: key.to_string(),
            },
        }
    }
}

/// How long a tell's caller waits: `async` wins over a timeout; a zero timeout is refused.
fn wait_of(timeout: Option<Duration>, no_wait: bool) -> Result<Wait, ApiError> {
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(ApiError::new(
            ApiCode::Usage,
            "the timeout must be greater than zero, such as 30s; to return at once with the turn id, ask for async instead",
        ));
    }
    Ok(match (no_wait, timeout) {
        (true, _) => Wait::Async,
        (false, Some(limit)) => Wait::Timeout(limit),
        (false, None) => Wait::Complete,
    })
}

/// A valid team name (syntax only: whether it is configured is the service's question).
/// A budget cap that cannot be set: the key, and why.
fn invalid_cap(key: &str, reason: String) -> ApiError {
    ApiError::new(
        ApiCode::from(iris_core::ErrorCode::ValidationError),
        format!("budget cap {key}: {reason}"),
    )
}

pub(crate) fn team(name: &str) -> Result<TeamName, ApiError> {
    TeamName::new(name).map_err(|e| ApiError::coded(&e))
}

/// A valid session id.
fn session_id_of(text: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(text.trim()).map_err(|e| {
        ApiError::new(
            e.code(),
            format!("{e}; `iris sessions list` shows the sessions and their ids"),
        )
    })
}

/// A request id: a hyphenated UUID.
fn request_id_of(text: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(text.trim()).map_err(|e| ApiError::coded(&e))
}

/// A known session status.
fn session_status(text: &str) -> Result<SessionStatus, ApiError> {
    SessionStatus::from_str(text.trim()).map_err(|e| ApiError::coded(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use iris_core::ErrorCode;
    use proptest::prelude::*;

    use super::*;

    fn read(json: &str) -> Result<Request, ApiError> {
        Request::from_json(json.as_bytes())
    }

    #[test]
    fn inputs_are_validated_into_stable_codes() {
        let e = team("a b").unwrap_err();
        assert_eq!(e.code(), ErrorCode::ValidationError);
        assert!(e.error.message.contains("a b"), "{e}");

        let e = session_id_of("not-a-uuid").unwrap_err();
        assert_eq!(e.code(), ErrorCode::ValidationError);
        assert!(e.error.message.contains("not-a-uuid"), "{e}");
        assert!(e.error.message.contains("UUID"), "{e}");
        let id = SessionId::new_v4();
        assert_eq!(session_id_of(&format!(" {id} ")).unwrap(), id);

        let e = session_status("sleeping").unwrap_err();
        assert_eq!(e.code(), ErrorCode::ValidationError);
        assert!(e.error.message.contains("active, idle"), "{e}");
        assert_eq!(session_status("error").unwrap(), SessionStatus::Error);
    }

    #[test]
    fn a_request_that_is_not_one_is_a_usage_error_and_an_invalid_value_has_its_code() {
        let not_json = read("{ not json").unwrap_err();
        assert_eq!(not_json.code(), ApiCode::Usage);
        assert!(
            not_json.to_string().contains("not an iris command"),
            "{not_json}"
        );
        let misspelt =
            read(r#"{"command":"tell","from":"a","to":"b","message":"hi","timout":"5s"}"#)
                .unwrap_err();
        assert_eq!(misspelt.code(), ApiCode::Usage);
        assert!(misspelt.to_string().contains("timout"), "{misspelt}");
        let zero =
            read(r#"{"command":"tell","from":"a b","to":"b","message":"hi","timeout":"0s"}"#)
                .unwrap_err();
        assert_eq!(
            zero.code(),
            ApiCode::Usage,
            "a zero timeout is checked first"
        );
        let name = read(r#"{"command":"wake","from":"a b","to":"b"}"#).unwrap_err();
        assert_eq!(name.code(), ErrorCode::ValidationError);
        let id = read(r#"{"command":"sessions_compact","session_id":"x"}"#).unwrap_err();
        assert_eq!(id.code(), ErrorCode::ValidationError);
        let status = read(r#"{"command":"sessions_list","status":"napping"}"#).unwrap_err();
        assert_eq!(status.code(), ErrorCode::ValidationError);
    }

    #[test]
    fn async_wins_over_a_timeout_and_each_wait_has_its_kind() {
        let both = read(
            r#"{"command":"tell","from":"a","to":"b","message":"hi","timeout":"5s","async":true}"#,
        )
        .unwrap();
        assert_eq!(both.kind(), RequestKind::Tell(Wait::Async));
        let limited =
            read(r#"{"command":"tell","from":"a","to":"b","message":"hi","timeout":"5s"}"#)
                .unwrap();
        assert_eq!(
            limited.kind(),
            RequestKind::Tell(Wait::Timeout(Duration::from_secs(5)))
        );
        assert_eq!(
            read(r#"{"command":"stats"}"#).unwrap().kind(),
            RequestKind::Read
        );
        let sleep = read(r#"{"command":"sleep","from":"a","to":"b"}"#).unwrap();
        assert_eq!(
            (sleep.kind(), sleep.name()),
            (RequestKind::Control, "sleep")
        );
    }

    /// A request with valid values, as any front end may send it.
    fn any_request() -> impl Strategy<Value = RawRequest> {
        let name = "[a-z][a-z0-9_-]{0,12}";
        let id = any::<u128>().prop_map(uuid_text);
        let status = prop::sample::select(vec!["active", "idle", "error", "compacting"]);
        prop_oneof![
            (
                name,
                name,
                ".{1,20}",
                prop::option::of(1u64..10_000),
                any::<bool>(),
                prop::option::of(id.clone()),
            )
                .prop_map(|(from, to, message, ms, no_wait, request_id)| {
                    RawRequest::Tell {
                        from,
                        to,
                        message,
                        // What `async` wins over is not kept: the wire form of `Wait::Async` has
                        // no timeout.
                        timeout: ms.filter(|_| !no_wait).map(Duration::from_millis),
                        no_wait,
                        request_id,
                    }
                }),
            (
                prop::option::of(name),
                prop::option::of(status),
                prop::option::of(0usize..100)
            )
                .prop_map(|(from, status, limit)| RawRequest::SessionsList {
                    from: from.clone(),
                    to: from,
                    status: status.map(str::to_owned),
                    limit,
                }),
            id.clone().prop_map(|session_id| RawRequest::SessionsShow {
                target: RawSessionTarget::Id { session_id }
            }),
            (id, any::<bool>()).prop_map(|(session_id, transcript)| {
                RawRequest::SessionsDelete {
                    session_id,
                    transcript,
                }
            }),
            (name, name, any::<bool>()).prop_map(|(from, to, drop_queue)| RawRequest::Cancel {
                from,
                to,
                drop_queue
            }),
            prop::option::of(name).prop_map(|from| RawRequest::Teams { from }),
            Just(RawRequest::Stats),
            Just(RawRequest::Budget),
            (
                prop_oneof![
                    Just("session".to_owned()),
                    Just("node_daily".to_owned()),
                    name.prop_map(|n| format!("teams.{n}.as_sender")),
                ],
                prop::option::of(1u32..10_000),
                prop::option::of(1u64..1_000_000),
            )
                .prop_filter("a cap sets a limit", |(_, usd, tokens)| {
                    usd.is_some() || tokens.is_some()
                })
                .prop_map(|(key, usd, tokens)| RawRequest::BudgetSet {
                    key,
                    usd: usd.map(f64::from),
                    tokens,
                }),
        ]
    }

    fn uuid_text(n: u128) -> String {
        // A v4 UUID's text, from any 128 bits (version and variant set).
        let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
        let hex = format!("{n:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    proptest! {
        /// The typed request is its wire form, byte for byte: what a front end sends is what a
        /// node reads, and what a node forwards is what it was sent.
        #[test]
        fn a_valid_request_survives_the_wire_unchanged(raw in any_request()) {
            let json = serde_json::to_string(&raw).unwrap();
            let typed = Request::from_json(json.as_bytes()).unwrap();
            prop_assert_eq!(serde_json::to_string(&typed).unwrap(), json.clone());
            prop_assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), typed);
        }
    }
}
