//! Listing filters and aggregate statistics over session records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::SessionRecord;
use crate::status::{ProcessState, SessionStatus};
use crate::team::TeamName;
use crate::time::Timestamp;

/// Which records a listing returns. Every field that is set must match.
///
/// Listings are ordered newest `last_used_at` first, ties broken by record id (ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    /// Only sessions sent from this team.
    pub from: Option<TeamName>,
    /// Only sessions answered by this team.
    pub to: Option<TeamName>,
    /// Only sessions in this status.
    pub status: Option<SessionStatus>,
    /// Only sessions created strictly after this instant.
    pub created_after: Option<Timestamp>,
    /// Only sessions last used strictly after this instant.
    pub used_after: Option<Timestamp>,
    /// At most this many records. `None` and `Some(0)` both mean no limit, as in the original.
    pub limit: Option<usize>,
}

impl SessionFilter {
    /// A filter that matches everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Restricts to sessions from `team`.
    pub fn from_team(mut self, team: TeamName) -> Self {
        self.from = Some(team);
        self
    }

    /// Restricts to sessions to `team`.
    pub fn to_team(mut self, team: TeamName) -> Self {
        self.to = Some(team);
        self
    }

    /// Restricts to sessions in `status`.
    pub fn with_status(mut self, status: SessionStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Restricts to sessions created after `at`.
    pub fn created_after(mut self, at: Timestamp) -> Self {
        self.created_after = Some(at);
        self
    }

    /// Restricts to sessions used after `at`.
    pub fn used_after(mut self, at: Timestamp) -> Self {
        self.used_after = Some(at);
        self
    }

    /// Returns at most `limit` records (0 means no limit).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The effective limit: `None` when unlimited.
    pub fn effective_limit(&self) -> Option<usize> {
        self.limit.filter(|n| *n > 0)
    }

    /// Whether `record` passes every condition (the limit aside).
    pub fn matches(&self, record: &SessionRecord) -> bool {
        self.from.as_ref().is_none_or(|t| *t == record.from_team)
            && self.to.as_ref().is_none_or(|t| *t == record.to_team)
            && self.status.is_none_or(|s| s == record.status)
            && self.created_after.is_none_or(|t| record.created_at > t)
            && self.used_after.is_none_or(|t| record.last_used_at > t)
    }

    /// Sorts `records` into listing order and applies the limit.
    pub fn order_and_limit(&self, records: &mut Vec<SessionRecord>) {
        records.sort_by(|a, b| b.last_used_at.cmp(&a.last_used_at).then(a.id.cmp(&b.id)));
        if let Some(limit) = self.effective_limit() {
            records.truncate(limit);
        }
    }
}

/// Aggregate statistics over every stored session.
///
/// The first four fields are the original's; the two maps hold a count for every status and
/// every process state, zeros included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Number of records.
    pub total: u64,
    /// Records with status `active`.
    pub active: u64,
    /// Records with status `archived`.
    pub archived: u64,
    /// Sum of `message_count` over every record.
    pub total_messages: u64,
    /// Records per status.
    pub by_status: BTreeMap<SessionStatus, u64>,
    /// Records per process state.
    pub by_process_state: BTreeMap<ProcessState, u64>,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            total: 0,
            active: 0,
            archived: 0,
            total_messages: 0,
            by_status: SessionStatus::ALL.iter().map(|s| (*s, 0)).collect(),
            by_process_state: ProcessState::ALL.iter().map(|p| (*p, 0)).collect(),
        }
    }
}

impl SessionStats {
    /// Computes statistics by scanning `records`. The store keeps counters instead; this is the
    /// reference they are tested against.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a SessionRecord>) -> Self {
        let mut stats = SessionStats::default();
        for r in records {
            stats.total += 1;
            stats.total_messages = stats.total_messages.saturating_add(r.message_count);
            *stats.by_status.entry(r.status).or_default() += 1;
            *stats.by_process_state.entry(r.process_state).or_default() += 1;
        }
        stats.active = stats.by_status[&SessionStatus::Active];
        stats.archived = stats.by_status[&SessionStatus::Archived];
        stats
    }
}
