//! The wire form of a request: [`RawRequest`], JSON tagged by `command`
//! (`{"command":"tell","from":"alpha",…}`), exactly as front ends and older clients send it.
//! Every field is still text here; [`Request`](crate::Request) is what it means once validated.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One command. A field it does not know is an error (a misspelt `timout` must not silently
/// mean "wait for the whole turn").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawRequest {
    /// Send `message` from `from` to `to`.
    Tell {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
        /// The message.
        message: String,
        /// Return after this long with what has streamed so far (the turn goes on).
        #[serde(default, with = "humantime_option")]
        timeout: Option<Duration>,
        /// Return at once with the turn id.
        #[serde(default, rename = "async")]
        no_wait: bool,
        /// Run at most once: a retry with the same id joins the first attempt's turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// List session records, newest use first.
    SessionsList {
        /// Only sessions from this team.
        #[serde(default)]
        from: Option<String>,
        /// Only sessions to this team.
        #[serde(default)]
        to: Option<String>,
        /// Only sessions in this status (`active`, `error`, …).
        #[serde(default)]
        status: Option<String>,
        /// At most this many.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// One session record.
    SessionsShow {
        /// Which session.
        target: RawSessionTarget,
    },
    /// Delete a session (stopping its agent).
    SessionsDelete {
        /// The session id.
        session_id: String,
        /// Also delete the agent's transcript.
        #[serde(default)]
        transcript: bool,
    },
    /// Compact a session's conversation.
    SessionsCompact {
        /// The session id.
        session_id: String,
    },
    /// Delete the pair's session and transcript, then create a new one.
    SessionsReboot {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
    },
    /// The pair's most recent turns, newest first.
    Report {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
        /// At most this many (default 20).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Create the pair's session if needed and start its agent.
    Wake {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
    },
    /// Stop the pair's agent after its turn in flight (`force`: interrupt it).
    Sleep {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
        /// Interrupt the turn in flight.
        #[serde(default)]
        force: bool,
    },
    /// Interrupt the pair's turn in flight.
    Cancel {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
        /// Also fail every queued turn as cancelled.
        #[serde(default)]
        drop_queue: bool,
    },
    /// Wake the sessions from `from` to every other team.
    WakeAll {
        /// The sending team.
        from: String,
    },
    /// The pair's live status.
    Status {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
    },
    /// Every configured team, with the state of the pair from `from` when given.
    Teams {
        /// The team whose pairs to show.
        #[serde(default)]
        from: Option<String>,
    },
    /// Totals: sessions by status and process state, live actors and processes, turns.
    Stats,
    /// Spend against every budget cap that is set.
    Budget,
    /// Set a budget cap at run time, over the configuration's (durable).
    BudgetSet {
        /// Which cap: `session`, `node_daily`, `teams.NAME.as_sender`,
        /// `teams.NAME.as_receiver`.
        key: String,
        /// At most this many US dollars.
        #[serde(default)]
        usd: Option<f64>,
        /// At most this many tokens.
        #[serde(default)]
        tokens: Option<u64>,
    },
    /// Remove a cap set at run time: the configuration's applies again.
    BudgetReset {
        /// Which cap.
        key: String,
    },
}

impl RawRequest {
    /// Reads a request from JSON, refusing any field it does not know. (serde's
    /// `deny_unknown_fields` covers the commands with fields; a command without any, such as
    /// `stats`, is checked here.)
    pub fn from_json(bytes: &[u8]) -> Result<RawRequest, serde_json::Error> {
        use serde::de::Error as _;
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        if let Some(object) = value.as_object()
            && let Some(command @ ("stats" | "budget")) =
                object.get("command").and_then(serde_json::Value::as_str)
            && let Some(extra) = object.keys().find(|key| *key != "command")
        {
            return Err(serde_json::Error::custom(format!(
                "unknown field `{}`: the `{command}` command takes no fields",
                iris_core::redact::clip(extra)
            )));
        }
        serde_json::from_value(value)
    }
}

/// A session named by id or by pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum RawSessionTarget {
    /// By session id.
    Id {
        /// The session id (a UUID).
        session_id: String,
    },
    /// By pair.
    Pair {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn unknown_fields_are_refused() {
        let tell = r#"{"command":"tell","from":"a","to":"b","message":"hi","timout":"5s"}"#;
        let read = |text: &str| RawRequest::from_json(text.as_bytes());
        let error = read(tell).unwrap_err().to_string();
        assert!(error.contains("timout"), "{error}");
        let stats = r#"{"command":"stats","verbose":true}"#;
        assert!(read(stats).unwrap_err().to_string().contains("verbose"));
        let show = r#"{"command":"sessions_show","target":{"session_id":"x","extra":1}}"#;
        assert!(read(show).is_err());
        // What is known still reads.
        let good = r#"{"command":"tell","from":"a","to":"b","message":"hi","timeout":"5s"}"#;
        assert!(matches!(
            read(good).unwrap(),
            RawRequest::Tell {
                timeout: Some(_),
                ..
            }
        ));
        assert_eq!(read(r#"{"command":"stats"}"#).unwrap(), RawRequest::Stats);
        assert_eq!(read(r#"{"command":"budget"}"#).unwrap(), RawRequest::Budget);
        assert!(read(r#"{"command":"budget","day":1}"#).is_err());
        let show = r#"{"command":"sessions_show","target":{"from":"a","to":"b"}}"#;
        assert!(read(show).is_ok());
        assert!(read("{ not json").is_err());
    }
}

/// `Option<Duration>` as a humantime string (`"30s"`).
mod humantime_option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
