//! The open turns of tells that came with a request id, so that a retry or a late duplicate
//! of the request joins its turn instead of queueing a second one.
//!
//! Only open turns are kept: a turn's outcome is published once its final ledger row is
//! durable, and from then on the ledger finds it by its request id (across restarts too). So
//! the table holds at most the queue and the turn in flight.

use std::collections::HashMap;
use std::sync::Arc;

use iris_core::RequestId;

use super::turn::TurnProgress;

/// Request id → the open turn it made.
#[derive(Debug, Default)]
pub(super) struct OpenRequests(HashMap<RequestId, Arc<TurnProgress>>);

impl OpenRequests {
    /// The turn `request_id` made, while this actor holds it.
    pub fn get(&self, request_id: &RequestId) -> Option<&Arc<TurnProgress>> {
        self.0.get(request_id)
    }

    /// Remembers the turn `request_id` made, and forgets the finished ones (the ledger has
    /// them).
    pub fn insert(&mut self, request_id: RequestId, progress: Arc<TurnProgress>) {
        self.0.retain(|_, turn| !turn.is_finished());
        self.0.insert(request_id, progress);
    }
}

#[cfg(test)]
mod tests {
    use iris_core::{SessionId, TurnId};

    use super::*;
    use crate::tell::{TellOutcome, TurnError};

    #[test]
    fn a_finished_turn_is_forgotten_when_the_next_request_comes() {
        let mut open = OpenRequests::default();
        let (first, _ticket) = TurnProgress::new(SessionId::new_v4(), TurnId::new());
        let first_id = RequestId::new();
        open.insert(first_id, first.clone());
        assert!(open.get(&first_id).is_some());
        first.finish(TellOutcome::Failed {
            turn_id: first.turn_id,
            error: TurnError::Cancelled,
        });
        // Still there (nothing pruned yet), so a duplicate meanwhile joins it.
        assert!(open.get(&first_id).is_some());
        let (second, _ticket) = TurnProgress::new(SessionId::new_v4(), TurnId::new());
        let second_id = RequestId::new();
        open.insert(second_id, second);
        assert!(open.get(&first_id).is_none());
        assert!(open.get(&second_id).is_some());
    }
}
