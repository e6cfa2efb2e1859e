//! State shared by the stdin reader thread and the turn runner.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, mpsc};

use serde_json::Value;

use crate::protocol::Out;

/// Turns accepted from stdin and not yet ended, and whether the host asked to interrupt.
#[derive(Debug, Default)]
struct Turns {
    /// User messages queued or running (a turn counts until its `result` is written).
    pending: usize,
    /// Set by an `interrupt` while `pending > 0`; cleared when a turn ends.
    interrupt: bool,
}

/// Shared between the stdin thread and the turn runner.
#[derive(Debug, Default)]
pub struct Shared {
    pub out: Out,
    turns: Mutex<Turns>,
    permissions: Mutex<HashMap<String, mpsc::Sender<Value>>>,
    permission_mode: Mutex<Option<String>>,
    wedged: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A user message was queued.
    pub fn submit(&self) {
        lock(&self.turns).pending += 1;
    }

    /// Asks the current turn (or, if none runs, the next queued one) to stop, and calls `reply`
    /// (which writes the `control_response`) while the turn cannot see the request yet: the
    /// real CLI answers an interrupt before it prints anything of the interrupted turn's end.
    /// Returns whether there was a turn to stop.
    pub fn request_interrupt(&self, reply: impl FnOnce()) -> bool {
        let mut turns = lock(&self.turns);
        reply();
        if turns.pending > 0 {
            turns.interrupt = true;
            true
        } else {
            false
        }
    }

    /// The permission mode set by the host (`set_permission_mode`), if it set one.
    pub fn permission_mode(&self) -> Option<String> {
        lock(&self.permission_mode).clone()
    }

    /// Records the host's `set_permission_mode`.
    pub fn set_permission_mode(&self, mode: &str) {
        *lock(&self.permission_mode) = Some(mode.to_owned());
    }

    /// Whether the running turn should stop.
    pub fn interrupted(&self) -> bool {
        lock(&self.turns).interrupt
    }

    /// Ends the running turn: `emit` writes its `result` while no interrupt can slip in, then
    /// the turn stops counting and any interrupt aimed at it is spent.
    pub fn finish_turn(&self, emit: impl FnOnce()) {
        let mut turns = lock(&self.turns);
        emit();
        turns.pending = turns.pending.saturating_sub(1);
        turns.interrupt = false;
    }

    /// Registers our own control request `request_id`; its answer arrives on the receiver.
    pub fn register_permission(&self, request_id: &str) -> mpsc::Receiver<Value> {
        let (tx, rx) = mpsc::channel();
        lock(&self.permissions).insert(request_id.to_owned(), tx);
        rx
    }

    /// Forgets a pending request of ours (answered, cancelled or timed out).
    pub fn unregister_permission(&self, request_id: &str) {
        lock(&self.permissions).remove(request_id);
    }

    /// Delivers the host's `control_response` body to the request it answers. Returns false if
    /// no request of ours has that id.
    pub fn answer(&self, request_id: &str, response: Value) -> bool {
        match lock(&self.permissions).remove(request_id) {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// From now on nothing is answered (`!wedge`).
    pub fn wedge(&self) {
        self.wedged.store(true, Ordering::SeqCst);
    }

    pub fn is_wedged(&self) -> bool {
        self.wedged.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_only_count_while_a_turn_is_pending() {
        let s = Shared::default();
        assert!(!s.request_interrupt(|| {}));
        assert!(!s.interrupted());
        s.submit();
        let mut replied = false;
        assert!(s.request_interrupt(|| replied = true));
        assert!(replied);
        assert!(s.interrupted());
        s.finish_turn(|| {});
        assert!(!s.interrupted());
        assert!(!s.request_interrupt(|| {}));
    }

    #[test]
    fn answers_reach_their_request() {
        let s = Shared::default();
        let rx = s.register_permission("perm_1");
        assert!(!s.answer("perm_2", Value::Null));
        assert!(s.answer("perm_1", Value::Bool(true)));
        assert_eq!(rx.try_recv().ok(), Some(Value::Bool(true)));
        assert!(!s.answer("perm_1", Value::Null));
    }
}
