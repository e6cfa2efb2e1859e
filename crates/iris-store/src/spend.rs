//! Durable spend counters, for budgets: what each scope spent on each budget day, in dollars
//! and in counted tokens ([`iris_core::config::budget::counted_tokens`]).
//!
//! A finished turn's usage is added to its session (over its life), its sender and its receiver
//! (that day) and the node (that day) inside the same commit as the turn's final row, and only
//! when the stored row was not final already: a rewrite of a finished turn cannot count twice,
//! and a restart forgets nothing.

use std::fmt;
use std::str::FromStr;

use iris_core::config::budget::{Cap, counted_tokens};
use iris_core::{SessionId, TeamName, UsageTotals};
use serde::{Deserialize, Serialize};

/// The "day" of the scopes that count over a whole life (a session's).
pub const WHOLE_LIFE: u32 = u32::MAX;

/// What a scope spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// US dollars, as the agent reported them.
    pub usd: f64,
    /// Counted tokens: input, output and cache creation.
    pub tokens: u64,
}

impl Spend {
    /// `usage` as a spend.
    pub fn of(usage: &UsageTotals) -> Spend {
        Spend {
            usd: usage.cost_usd,
            tokens: counted_tokens(usage),
        }
    }

    /// The sum of two spends.
    pub fn plus(self, more: Spend) -> Spend {
        Spend {
            usd: self.usd + more.usd,
            tokens: self.tokens.saturating_add(more.tokens),
        }
    }

    /// Whether nothing was spent.
    pub fn is_zero(&self) -> bool {
        self.usd == 0.0 && self.tokens == 0
    }
}

/// A budget cap as the `budget_caps` table keeps it: every field written (postcard is not
/// self-describing, so the configuration's form, which leaves out an unset limit, would not
/// read back).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StoredCap {
    usd: Option<f64>,
    tokens: Option<u64>,
}

impl From<Cap> for StoredCap {
    fn from(cap: Cap) -> StoredCap {
        StoredCap {
            usd: cap.usd,
            tokens: cap.tokens,
        }
    }
}

impl From<StoredCap> for Cap {
    fn from(cap: StoredCap) -> Cap {
        Cap {
            usd: cap.usd,
            tokens: cap.tokens,
        }
    }
}

/// Whose spend a counter holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpendScope {
    /// One session, over its life.
    Session(SessionId),
    /// A team's tells, whoever answered them.
    Sender(TeamName),
    /// A team's agent, whoever it answered.
    Receiver(TeamName),
    /// Every agent of the node.
    Node,
}

impl fmt::Display for SpendScope {
    /// The scope as its key in the store: `session:<id>`, `sender:<team>`, `receiver:<team>`,
    /// `node`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpendScope::Session(id) => write!(f, "session:{id}"),
            SpendScope::Sender(team) => write!(f, "sender:{team}"),
            SpendScope::Receiver(team) => write!(f, "receiver:{team}"),
            SpendScope::Node => f.write_str("node"),
        }
    }
}

impl FromStr for SpendScope {
    type Err = String;

    fn from_str(text: &str) -> Result<SpendScope, String> {
        let team = |name: &str| TeamName::new(name).map_err(|e| e.to_string());
        match text.split_once(':') {
            None if text == "node" => Ok(SpendScope::Node),
            Some(("session", id)) => SessionId::parse(id)
                .map(SpendScope::Session)
                .map_err(|e| e.to_string()),
            Some(("sender", name)) => team(name).map(SpendScope::Sender),
            Some(("receiver", name)) => team(name).map(SpendScope::Receiver),
            _ => Err(format!("{text:?} is not a spend scope")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_from_their_keys() {
        let team = |n| TeamName::new(n).unwrap_or_else(|e| panic!("{e}"));
        for scope in [
            SpendScope::Session(SessionId::new_v4()),
            SpendScope::Sender(team("alpha")),
            SpendScope::Receiver(team("b.c")),
            SpendScope::Node,
        ] {
            assert_eq!(scope.to_string().parse::<SpendScope>(), Ok(scope));
        }
        assert!("team:alpha".parse::<SpendScope>().is_err());
    }
}
