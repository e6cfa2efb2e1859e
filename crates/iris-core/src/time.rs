//! Wall-clock timestamps with millisecond precision.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The last millisecond RFC 3339 can spell with a four-digit year (9999-12-31T23:59:59.999Z).
const MAX_MILLIS: u64 = 253_402_300_799_999;

/// A UTC instant, in whole milliseconds since the Unix epoch.
///
/// Binary formats (the store) encode it as an integer; human-readable ones (JSON) as an RFC 3339
/// string such as `2026-11-25T04:56:26.123Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The current time. A clock set before 1970 reads as the epoch.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// From milliseconds since the epoch, clamped to what RFC 3339 can express.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(if millis > MAX_MILLIS {
            MAX_MILLIS
        } else {
            millis
        })
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// From a `SystemTime`, truncated to the millisecond.
    pub fn from_system_time(time: SystemTime) -> Self {
        let millis = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self::from_millis(u64::try_from(millis).unwrap_or(MAX_MILLIS))
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// The time elapsed from `self` until `later`, or zero if `later` is not later.
    pub fn elapsed_until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    /// `self` plus `duration`, saturating.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let add = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self::from_millis(self.0.saturating_add(add))
    }

    /// Parses RFC 3339 (`2026-11-25T04:56:26Z`, fractional seconds allowed).
    pub fn parse_rfc3339(input: &str) -> Result<Self, humantime::TimestampError> {
        humantime::parse_rfc3339_weak(input).map(Self::from_system_time)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_rfc3339_millis(self.to_system_time()), f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = String::deserialize(deserializer)?;
            Timestamp::parse_rfc3339(&raw).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid timestamp {raw:?}: {e}; expected RFC 3339"
                ))
            })
        } else {
            u64::deserialize(deserializer).map(Timestamp::from_millis)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_with_millis_and_parses_back() {
        let ts = Timestamp::from_millis(1_764_046_586_123);
        assert_eq!(ts.to_string(), "2025-11-25T04:56:26.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&ts.to_string()).unwrap(), ts);
    }

    #[test]
    fn json_uses_the_string_form() {
        let ts = Timestamp::from_millis(1000);
        assert_eq!(
            serde_json::to_string(&ts).unwrap(),
            "\"1970-01-01T00:00:01.000Z\""
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>("\"1970-01-01T00:00:01Z\"").unwrap(),
            ts
        );
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn huge_values_clamp_instead_of_panicking() {
        let ts = Timestamp::from_millis(u64::MAX);
        assert!(ts.to_string().starts_with("9999-12-31T23:59:59.999"));
        assert_eq!(ts.saturating_add(Duration::MAX), ts);
    }
}
