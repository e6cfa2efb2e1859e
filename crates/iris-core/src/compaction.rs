//! When a conversation has grown enough that it should be compacted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::SessionRecord;
use crate::time::Timestamp;

/// The thresholds of [`CompactionPolicy::should_compact`]. Defaults are the original's: more than
/// 500 messages, or more than 100 messages on a session older than 7 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionPolicy {
    /// Compact when `message_count` is strictly greater than this.
    pub max_messages: u64,
    /// Compact an old session when `message_count` is strictly greater than this…
    pub aged_messages: u64,
    /// …and the session is strictly older than this.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            max_messages: 500,
            aged_messages: 100,
            max_age: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

impl CompactionPolicy {
    /// Whether `record` should be compacted at `now`.
    pub fn should_compact(&self, record: &SessionRecord, now: Timestamp) -> bool {
        record.message_count > self.max_messages
            || (record.message_count > self.aged_messages
                && record.created_at.elapsed_until(now) > self.max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pair, SessionId, TeamName};

    fn record(messages: u64, created: Timestamp) -> SessionRecord {
        let pair = Pair::new(TeamName::new("a").unwrap(), TeamName::new("b").unwrap());
        let mut r = SessionRecord::new(pair, SessionId::new_v4(), created);
        r.message_count = messages;
        r
    }

    #[test]
    fn the_originals_thresholds_are_strict() {
        let policy = CompactionPolicy::default();
        let now = Timestamp::from_millis(30 * 24 * 3600 * 1000);
        let fresh = now;
        let week = Duration::from_secs(7 * 24 * 3600).as_millis() as u64;
        let exactly_a_week = Timestamp::from_millis(now.as_millis() - week);
        let older = Timestamp::from_millis(now.as_millis() - week - 1);
        assert!(!policy.should_compact(&record(500, fresh), now));
        assert!(policy.should_compact(&record(501, fresh), now));
        assert!(!policy.should_compact(&record(101, fresh), now));
        assert!(!policy.should_compact(&record(101, exactly_a_week), now));
        assert!(policy.should_compact(&record(101, older), now));
        assert!(!policy.should_compact(&record(100, older), now));
    }

    #[test]
    fn thresholds_are_configurable() {
        let policy = CompactionPolicy {
            max_messages: 10,
            aged_messages: 5,
            max_age: Duration::from_secs(60),
        };
        let now = Timestamp::from_millis(3_600_000);
        assert!(policy.should_compact(&record(11, now), now));
        assert!(policy.should_compact(&record(6, Timestamp::EPOCH), now));
        assert!(!policy.should_compact(&record(6, now), now));
    }
}
