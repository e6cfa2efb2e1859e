//! Session ids (UUID v4), turn ids, and the request ids that make a retry safe.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::error::{Coded, ErrorCode};

/// Why a string is not a valid [`SessionId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    /// The input is empty.
    #[error(
        "session id cannot be empty: expected a UUID v4 such as 550e8400-e29b-41d4-a716-446655440000"
    )]
    Empty,
    /// The input is not a hyphenated UUID.
    #[error(
        "invalid session id {}: expected a hyphenated UUID v4 such as 550e8400-e29b-41d4-a716-446655440000",
        crate::redact::quoted(input)
    )]
    Malformed {
        /// The rejected input.
        input: String,
    },
    /// The input is a UUID, but not a random (version 4, RFC 4122 variant) one.
    #[error(
        "invalid session id {}: it is a UUID of version {version}, but iris session ids are UUID v4",
        crate::redact::quoted(input)
    )]
    NotVersion4 {
        /// The rejected input.
        input: String,
        /// The version nibble found.
        version: usize,
    },
}

impl Coded for SessionIdError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ValidationError
    }
}

/// The id of a session: a UUID v4 that is also the agent's conversation id (the transcript's
/// file name).
///
/// Parsing accepts only the hyphenated form, in either case, and only version 4 with the RFC 4122
/// variant: the original's regex, which its own store never applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A fresh random id.
    pub fn new_v4() -> Self {
        SessionId(Uuid::new_v4())
    }

    /// Parses and validates `input`.
    pub fn parse(input: &str) -> Result<Self, SessionIdError> {
        if input.is_empty() {
            return Err(SessionIdError::Empty);
        }
        let malformed = || SessionIdError::Malformed {
            input: input.to_owned(),
        };
        // `Uuid::try_parse` also takes the simple, braced and URN forms; the original did not.
        if input.len() != 36 {
            return Err(malformed());
        }
        let uuid = Uuid::try_parse(input).map_err(|_| malformed())?;
        Self::from_uuid(uuid).map_err(|version| SessionIdError::NotVersion4 {
            input: input.to_owned(),
            version,
        })
    }

    /// Wraps a UUID if it is a v4 of the RFC 4122 variant; otherwise returns its version number.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, usize> {
        if uuid.get_version_num() == 4 && uuid.get_variant() == uuid::Variant::RFC4122 {
            Ok(SessionId(uuid))
        } else {
            Err(uuid.get_version_num())
        }
    }

    /// The inner UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 raw bytes, used as a storage key.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for SessionId {
    type Err = SessionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionId::parse(s)
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = String::deserialize(deserializer)?;
            SessionId::parse(&raw).map_err(serde::de::Error::custom)
        } else {
            let uuid = Uuid::deserialize(deserializer)?;
            SessionId::from_uuid(uuid).map_err(|version| {
                serde::de::Error::custom(format!(
                    "stored session id {uuid} is UUID v{version}, not v4"
                ))
            })
        }
    }
}

/// The id of one turn (one tell) of a session. Time-ordered (UUID v7), so ids sort by creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TurnId(Uuid);

impl TurnId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        TurnId(Uuid::now_v7())
    }

    /// The inner UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for TurnId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for TurnId {
    fn from(uuid: Uuid) -> Self {
        TurnId(uuid)
    }
}

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for TurnId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(TurnId)
    }
}

/// The id a caller gives a request so that it runs at most once: a retry, or a late duplicate,
/// with the same id gets the first one's outcome instead of running again. A cluster node mints
/// one for every request it forwards (UUID v7); a client may give its own (any UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(Uuid);

impl RequestId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        RequestId(Uuid::now_v7())
    }

    /// Parses a request id: a hyphenated UUID.
    pub fn parse(input: &str) -> Result<Self, RequestIdError> {
        match Uuid::try_parse(input) {
            Ok(uuid) if input.len() == 36 => Ok(RequestId(uuid)),
            _ => Err(RequestIdError {
                input: input.to_owned(),
            }),
        }
    }

    /// The inner UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for RequestId {
    fn from(uuid: Uuid) -> Self {
        RequestId(uuid)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for RequestId {
    type Err = RequestIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a string is not a valid [`RequestId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid request id {}: expected a hyphenated UUID such as 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    crate::redact::quoted(input)
)]
pub struct RequestIdError {
    /// The rejected input.
    pub input: String,
}

impl Coded for RequestIdError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ValidationError
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_the_originals_valid_ids() {
        for id in [
            "550e8400-e29b-41d4-a716-446655440000",
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            "123e4567-e89b-42d3-a456-426614174000",
        ] {
            assert_eq!(
                SessionId::parse(id).map(|s| s.to_string()),
                Ok(id.to_owned())
            );
        }
    }

    #[test]
    fn uppercase_is_accepted_and_displayed_lowercase() {
        let id = SessionId::parse("550E8400-E29B-41D4-A716-446655440000").unwrap();
        assert_eq!(id.to_string(), "550e8400-e29b-41d4-a716-446655440000");
    }

    #[test]
    fn rejects_the_originals_invalid_ids() {
        assert_eq!(SessionId::parse(""), Err(SessionIdError::Empty));
        for bad in [
            "not-a-uuid",
            "550e8400-e29b-41d4-a716",
            "550e8400-e29b-41d4-a716-446655440000-extra",
            "550e8400e29b41d4a716446655440000",
        ] {
            let e = SessionId::parse(bad).unwrap_err();
            assert!(matches!(e, SessionIdError::Malformed { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(bad));
        }
        let e = SessionId::parse("12345678-1234-1234-1234-123456789012").unwrap_err();
        assert!(
            matches!(e, SessionIdError::NotVersion4 { version: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn rejects_braced_and_urn_forms_that_uuid_alone_would_take() {
        assert!(SessionId::parse("{550e8400-e29b-41d4-a716-446655440000}").is_err());
        assert!(SessionId::parse("urn:uuid:550e8400-e29b-41d4-a716-446655440000").is_err());
    }

    #[test]
    fn rejects_a_v4_nibble_with_the_wrong_variant() {
        assert!(matches!(
            SessionId::parse("550e8400-e29b-41d4-c716-446655440000"),
            Err(SessionIdError::NotVersion4 { .. })
        ));
    }

    #[test]
    fn generated_ids_are_v4_and_unique() {
        let ids: HashSet<SessionId> = (0..100).map(|_| SessionId::new_v4()).collect();
        assert_eq!(ids.len(), 100);
        for id in ids {
            assert_eq!(SessionId::parse(&id.to_string()), Ok(id));
        }
    }

    #[test]
    fn json_is_the_hyphenated_string() {
        let id = SessionId::parse("f47ac10b-58cc-4372-a567-0e02b2c3d479").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"f47ac10b-58cc-4372-a567-0e02b2c3d479\"");
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        assert!(
            serde_json::from_str::<SessionId>("\"f47ac10b58cc4372a567 0e02b2c3d479\"").is_err()
        );
    }

    #[test]
    fn postcard_round_trips_and_rejects_stored_non_v4() {
        let id = SessionId::new_v4();
        let bytes = postcard::to_allocvec(&id).unwrap();
        assert_eq!(postcard::from_bytes::<SessionId>(&bytes).unwrap(), id);
        let v7 = postcard::to_allocvec(&Uuid::now_v7()).unwrap();
        assert!(postcard::from_bytes::<SessionId>(&v7).is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in any::<String>()) {
            let _ = SessionId::parse(&s);
        }

        #[test]
        fn v4_ids_round_trip(bytes in any::<[u8; 16]>()) {
            let id = SessionId(uuid::Builder::from_random_bytes(bytes).into_uuid());
            prop_assert_eq!(SessionId::parse(&id.to_string()), Ok(id));
        }
    }

    #[test]
    fn a_request_id_is_a_hyphenated_uuid_and_prints_as_it_was_given() {
        let id = RequestId::new();
        assert_eq!(RequestId::parse(&id.to_string()), Ok(id));
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(
            RequestId::parse(&simple).map_err(|e| e.code()),
            Err(ErrorCode::ValidationError)
        );
        assert!(RequestId::parse("").is_err());
    }
}
