//! The on-disk encoding of values: one version byte, then postcard.
//!
//! postcard's wire format is frozen and documented, so a value written today stays readable. Each
//! kind of value has its own version byte: a change to [`SessionRecord`]'s fields needs a new
//! [`RECORD_VERSION`] and a decoder for the old one, a change to [`TurnRecord`]'s a new
//! [`TURN_VERSION`]. `tests/fixtures/record_v1.bin` pins record version 1, and
//! `tests/fixtures/turn_v1.bin` to `turn_v4.bin` turn versions 1 to 4.
//!
//! Each later turn version appended one field: version 2 `history_lost`, version 3
//! `request_id`, version 4 `budget_warning`. postcard writes a struct as its fields in order with no framing, and both a
//! `false` and a `None` as the byte 0, so an older payload followed by one 0 byte per missing
//! field *is* the current encoding of the same turn with those fields at their defaults: that
//! is how the older versions are still read.

use iris_core::{SessionRecord, TurnRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The encoding version this build writes for session records and internal values.
pub const RECORD_VERSION: u8 = 1;

/// The encoding version this build writes for turn records.
pub const TURN_VERSION: u8 = 4;

/// Why stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty value")]
    Empty,
    /// A version byte this build does not know.
    #[error("encoding version {found} is not supported (this build reads version {supported})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The payload is not valid postcard for the expected type.
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// Encodes `value` as the version byte followed by postcard.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    encode_as(RECORD_VERSION, value)
}

/// Decodes bytes written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_as(RECORD_VERSION, bytes)
}

/// Encodes a session record.
pub fn encode_record(record: &SessionRecord) -> Result<Vec<u8>, postcard::Error> {
    encode(record)
}

/// Decodes a session record.
pub fn decode_record(bytes: &[u8]) -> Result<SessionRecord, DecodeError> {
    decode(bytes)
}

/// Encodes a turn record ([`TURN_VERSION`] followed by postcard).
pub fn encode_turn(turn: &TurnRecord) -> Result<Vec<u8>, postcard::Error> {
    encode_as(TURN_VERSION, turn)
}

/// Decodes a turn record written by [`encode_turn`], or by an older turn encoding version.
pub fn decode_turn(bytes: &[u8]) -> Result<TurnRecord, DecodeError> {
    match bytes.split_first() {
        Some((&version, payload)) if (1..TURN_VERSION).contains(&version) => {
            // An older version lacks the trailing fields added since, each read as its default
            // from one 0 byte; see the module's documentation.
            let missing = usize::from(TURN_VERSION - version);
            let mut upgraded = Vec::with_capacity(bytes.len() + missing);
            upgraded.push(TURN_VERSION);
            upgraded.extend_from_slice(payload);
            upgraded.resize(upgraded.len() + missing, 0);
            decode_as(TURN_VERSION, &upgraded)
        }
        _ => decode_as(TURN_VERSION, bytes),
    }
}

fn encode_as<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(value, vec![version])
}

fn decode_as<T: DeserializeOwned>(supported: u8, bytes: &[u8]) -> Result<T, DecodeError> {
    let (&version, payload) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != supported {
        return Err(DecodeError::UnknownVersion {
            found: version,
            supported,
        });
    }
    postcard::from_bytes(payload).map_err(|e| DecodeError::Malformed(e.to_string()))
}
