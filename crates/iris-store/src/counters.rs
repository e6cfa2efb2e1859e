//! Counters maintained on every write, so `stats` never scans.

use iris_core::{ProcessState, SessionRecord, SessionStats, SessionStatus};
use serde::{Deserialize, Serialize};

const STATUSES: usize = SessionStatus::ALL.len();
const PROCESS_STATES: usize = ProcessState::ALL.len();

/// Aggregates over every stored record, plus the next record number. Persisted in the same
/// transaction as the records they count.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub next_id: u64,
    pub total: u64,
    pub total_messages: u64,
    pub by_status: [u64; STATUSES],
    pub by_process_state: [u64; PROCESS_STATES],
}

impl Counters {
    /// Counts `record` in.
    pub fn add(&mut self, record: &SessionRecord) {
        self.total += 1;
        self.total_messages = self.total_messages.saturating_add(record.message_count);
        self.by_status[record.status.index()] += 1;
        self.by_process_state[record.process_state.index()] += 1;
    }

    /// Counts `record` out.
    pub fn remove(&mut self, record: &SessionRecord) {
        self.total = self.total.saturating_sub(1);
        self.total_messages = self.total_messages.saturating_sub(record.message_count);
        let status = &mut self.by_status[record.status.index()];
        *status = status.saturating_sub(1);
        let process = &mut self.by_process_state[record.process_state.index()];
        *process = process.saturating_sub(1);
    }

    /// Replaces `old` by `new` in the counts.
    pub fn replace(&mut self, old: &SessionRecord, new: &SessionRecord) {
        self.remove(old);
        self.add(new);
    }

    /// Takes the next record number (numbers start at 1).
    pub fn take_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The public statistics.
    pub fn stats(&self) -> SessionStats {
        let by_status = SessionStatus::ALL
            .iter()
            .map(|s| (*s, self.by_status[s.index()]))
            .collect();
        let by_process_state = ProcessState::ALL
            .iter()
            .map(|p| (*p, self.by_process_state[p.index()]))
            .collect();
        SessionStats {
            total: self.total,
            active: self.by_status[SessionStatus::Active.index()],
            archived: self.by_status[SessionStatus::Archived.index()],
            total_messages: self.total_messages,
            by_status,
            by_process_state,
        }
    }
}
