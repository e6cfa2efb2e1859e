//! Budgets at the door: a tell is refused with `BUDGET_EXCEEDED` once any cap that covers it
//! (its session, its sender, its receiver, the node) is reached. The spend is read from the
//! store, where each finished turn's booking adds it in the same commit, so the check is exact
//! and survives restarts.

use iris_core::config::budget::{Budgets, Cap};
use iris_core::{TeamName, Timestamp};
use iris_store::Store;
use iris_store::spend::{Spend, SpendScope, WHOLE_LIFE};

use super::SessionState;
use crate::error::RuntimeError;
use crate::shared::Shared;

/// A reached cap: which, how much was spent, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// What the cap covers, said for a person ("team alpha as sender, per day").
    pub what: String,
    /// Where to raise it (the configuration key).
    pub key: String,
    /// The cap.
    pub cap: Cap,
    /// What was spent.
    pub spent: Spend,
    /// When it resets (`None`: a session's cap, over its life).
    pub resets: Option<Timestamp>,
}

impl SessionState {
    /// Refuses a tell from `from` when a cap over this session, `from`, this session's
    /// receiving team or the node is reached.
    pub(super) fn check_budgets(&self, from: &TeamName) -> Result<(), RuntimeError> {
        check(&self.shared, Some(self.id), from, &self.pair.to)
    }
}

/// Refuses a tell `from`→`to` when a cap that covers it is reached: `session`'s too when the
/// session exists. Before a session is created, the runtime checks the others, so a refused
/// first tell does not create (and start) a session for nothing.
pub(crate) fn check(
    shared: &Shared,
    session: Option<iris_core::SessionId>,
    from: &TeamName,
    to: &TeamName,
) -> Result<(), RuntimeError> {
    let budgets = shared.config.budgets();
    if !budgets.any() {
        return Ok(());
    }
    // A short read of at most four counters, like `next_seq`'s.
    match reached(&shared.store, budgets, session, from, to, Timestamp::now())? {
        Some(exceeded) => Err(RuntimeError::BudgetExceeded(Box::new(exceeded))),
        None => Ok(()),
    }
}

/// The first cap reached among those that cover a tell `from`→`to` in `session` at `now`.
fn reached(
    store: &Store,
    budgets: &Budgets,
    session: Option<iris_core::SessionId>,
    from: &TeamName,
    to: &TeamName,
    now: Timestamp,
) -> Result<Option<Exceeded>, RuntimeError> {
    let day = budgets.day_of(now);
    let resets = Some(budgets.day_end(day));
    let mut scopes = Vec::with_capacity(4);
    if let (Some(cap), Some(id)) = (budgets.session, session) {
        scopes.push((
            Some(cap),
            SpendScope::Session(id),
            WHOLE_LIFE,
            "this session, over its life".to_owned(),
            "[budgets] session".to_owned(),
            None,
        ));
    }
    scopes.extend([
        (
            budgets.team(from).as_sender,
            SpendScope::Sender(from.clone()),
            day,
            format!("team {from} as sender, per day"),
            format!("{} as_sender", team_key(budgets, from)),
            resets,
        ),
        (
            budgets.team(to).as_receiver,
            SpendScope::Receiver(to.clone()),
            day,
            format!("team {to} as receiver, per day"),
            format!("{} as_receiver", team_key(budgets, to)),
            resets,
        ),
        (
            budgets.node_daily,
            SpendScope::Node,
            day,
            "this node, per day".to_owned(),
            "[budgets] node_daily".to_owned(),
            resets,
        ),
    ]);
    for (cap, scope, on, what, key, resets) in scopes {
        let Some(cap) = cap else {
            continue;
        };
        let spent = store.spend(&scope, on)?;
        if is_reached(&cap, &spent) {
            return Ok(Some(Exceeded {
                what,
                key,
                cap,
                spent,
                resets,
            }));
        }
    }
    Ok(None)
}

/// Whether `spent` reached `cap` in dollars or in tokens.
pub fn is_reached(cap: &Cap, spent: &Spend) -> bool {
    cap.usd.is_some_and(|usd| spent.usd >= usd) || cap.tokens.is_some_and(|t| spent.tokens >= t)
}

/// The table that sets a team's caps: its own, or the default one.
fn team_key(budgets: &Budgets, team: &TeamName) -> String {
    if budgets.teams.contains_key(team.as_str()) {
        format!("[budgets.teams.{team}]")
    } else {
        "[budgets.teams.default]".to_owned()
    }
}

impl std::fmt::Display for Exceeded {
    /// "the budget of team alpha as sender, per day, is spent: $10.02 and 12000 tokens of a cap
    /// of $10.00; it resets at …; raise … to go on".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut cap = Vec::new();
        if let Some(usd) = self.cap.usd {
            cap.push(format!("${usd:.2}"));
        }
        if let Some(tokens) = self.cap.tokens {
            cap.push(format!("{tokens} tokens"));
        }
        write!(
            f,
            "the budget of {} is spent: ${:.4} and {} tokens, against a cap of {}; ",
            self.what,
            self.spent.usd,
            self.spent.tokens,
            cap.join(" or ")
        )?;
        match self.resets {
            Some(at) => write!(f, "it resets at {at}, or raise {} to go on now", self.key),
            None => write!(f, "raise {} to go on, or start a new session", self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_is_reached_by_dollars_or_by_tokens() {
        let cap = Cap {
            usd: Some(1.0),
            tokens: Some(100),
        };
        let spent = |usd, tokens| Spend { usd, tokens };
        assert!(!is_reached(&cap, &spent(0.99, 99)));
        assert!(is_reached(&cap, &spent(1.0, 0)));
        assert!(is_reached(&cap, &spent(0.0, 100)));
        let dollars_only = Cap {
            usd: Some(1.0),
            tokens: None,
        };
        assert!(!is_reached(&dollars_only, &spent(0.5, u64::MAX)));
    }
}
