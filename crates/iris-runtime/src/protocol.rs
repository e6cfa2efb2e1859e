//! The runtime's operations as plain, serializable data.
//!
//! A [`SessionRequest`] names everything an operation needs by value (pairs, session ids,
//! changes), and a [`SessionReply`] or [`RuntimeError`](crate::error::RuntimeError) answers it by value, so a cluster layer
//! can carry requests to the node that owns a pair and bring the answer back.
//! [`Runtime::handle`](crate::Runtime::handle) executes one on this node.

use iris_core::{Pair, SessionId, SessionRecord};
use iris_store::Change;
use serde::{Deserialize, Serialize};

use crate::session::Deletion;

/// One runtime operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SessionRequest {
    /// The pair's session, created if it does not exist.
    GetOrCreate {
        /// The pair.
        pair: Pair,
    },
    /// Create the pair's session; `AlreadyExists` if it has one.
    Create {
        /// The pair.
        pair: Pair,
    },
    /// Apply changes to a session's record through its actor.
    Mutate {
        /// The session.
        session_id: SessionId,
        /// The changes, applied atomically and in order.
        changes: Vec<Change>,
    },
    /// Compact a session.
    Compact {
        /// The session.
        session_id: SessionId,
    },
    /// Delete a session (and its transcript, if asked).
    Delete {
        /// The session.
        session_id: SessionId,
        /// Also remove the transcript.
        delete_transcript: bool,
    },
    /// Take a session out of status `error`.
    Reset {
        /// The pair.
        pair: Pair,
    },
}

/// The answer to a [`SessionRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SessionReply {
    /// The session's record (get-or-create, create, mutate, compact).
    Session(SessionRecord),
    /// The outcome of a deletion.
    Deleted(Deletion),
    /// The request was carried out (reset).
    Done,
}

#[cfg(test)]
mod tests {
    use iris_core::{SessionStatus, TeamName, Timestamp};

    use super::*;
    use crate::RuntimeError;

    fn pair() -> Pair {
        Pair::new(TeamName::new("a").unwrap(), TeamName::new("b").unwrap())
    }

    #[test]
    fn requests_and_replies_round_trip_through_json_and_postcard() {
        let id = SessionId::new_v4();
        let requests = vec![
            SessionRequest::GetOrCreate { pair: pair() },
            SessionRequest::Create { pair: pair() },
            SessionRequest::Mutate {
                session_id: id,
                changes: vec![
                    Change::IncrementMessageCount(2),
                    Change::SetStatus(SessionStatus::Archived),
                    Change::TouchLastUsed(Timestamp::from_millis(5)),
                ],
            },
            SessionRequest::Compact { session_id: id },
            SessionRequest::Delete {
                session_id: id,
                delete_transcript: true,
            },
            SessionRequest::Reset { pair: pair() },
        ];
        for request in requests {
            let json = serde_json::to_string(&request).unwrap();
            assert_eq!(
                serde_json::from_str::<SessionRequest>(&json).unwrap(),
                request
            );
            let bytes = postcard::to_allocvec(&request).unwrap();
            assert_eq!(
                postcard::from_bytes::<SessionRequest>(&bytes).unwrap(),
                request
            );
        }
        let record = SessionRecord::new(pair(), id, Timestamp::from_millis(1));
        let answers: Vec<Result<SessionReply, RuntimeError>> = vec![
            Ok(SessionReply::Session(record)),
            Ok(SessionReply::Done),
            Err(RuntimeError::AlreadyExists {
                pair: pair(),
                existing: id,
            }),
            Err(RuntimeError::NotFound {
                what: format!("with id {id}"),
            }),
        ];
        for answer in answers {
            let bytes = postcard::to_allocvec(&answer).unwrap();
            let back: Result<SessionReply, RuntimeError> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, answer);
        }
    }
}
