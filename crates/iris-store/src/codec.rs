//! The on-disk encoding of values: one version byte, then postcard.
//!
//! postcard's wire format is frozen and documented, so a record written today stays readable. A
//! change to [`SessionRecord`]'s fields needs a new version byte here and a decoder for the old
//! one; `tests/fixtures/record_v1.bin` pins version 1.

use iris_core::SessionRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The encoding version this build writes.
pub const RECORD_VERSION: u8 = 1;

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
    postcard::to_extend(value, vec![RECORD_VERSION])
}

/// Decodes bytes written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (&version, payload) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != RECORD_VERSION {
        return Err(DecodeError::UnknownVersion {
            found: version,
            supported: RECORD_VERSION,
        });
    }
    postcard::from_bytes(payload).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// Encodes a session record.
pub fn encode_record(record: &SessionRecord) -> Result<Vec<u8>, postcard::Error> {
    encode(record)
}

/// Decodes a session record.
pub fn decode_record(bytes: &[u8]) -> Result<SessionRecord, DecodeError> {
    decode(bytes)
}
