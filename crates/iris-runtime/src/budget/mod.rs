//! Budgets: the caps that cover a turn, and what the runtime does with them.
//!
//! - **At the door** (`check`): a tell is refused with `BUDGET_EXCEEDED` once any cap that
//!   covers it (its session, its sender, its receiver, the node) is reached. A queued turn is
//!   checked again just before it starts, so the tells queued behind the turn that reached a cap
//!   fail the same way.
//! - **The turn in flight** (`remaining_usd`): an agent is launched with the smallest dollar
//!   amount left under its caps as `--max-budget-usd`, so one long turn cannot run far past them.
//! - **At 80 %** (`levels`): a booked turn that leaves a cap at 80 % or more is flagged, and
//!   the first such booking of a scope and day is logged, counted and published as an event.
//! - **The caps in force** (`in_force`): the configuration's, with those set at run time
//!   (`iris budget set`, kept in the store) over them; `iris budget` is [`BudgetReport`].
//!
//! The spend is read from the store, where each finished turn's booking adds it in the same
//! commit, so every check is exact and survives restarts. Which day a spend counts on is read
//! from the runtime's [`crate::Clock`], which tests move.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use iris_core::config::Config;
use iris_core::config::budget::{Budgets, Cap, CapKey, DEFAULT_TEAM, TeamCaps};
use iris_core::{SessionId, TeamName, Timestamp};
use iris_store::Store;
use iris_store::spend::{Spend, SpendScope, WHOLE_LIFE};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::{BudgetExceeded, RuntimeError};
use crate::events::{BudgetAlert, EventBus, EventKind};
use crate::metrics::Metrics;

pub(crate) mod in_force;
mod report;

use in_force::InForce;

pub(crate) use report::report;
pub use report::{BudgetReport, ScopeBudget};

/// The share of a cap at which a warning is given.
pub const WARNING_AT: f64 = 0.8;

/// The runtime's budget state: the caps in force and the alerts already given.
#[derive(Debug)]
pub(crate) struct BudgetState {
    in_force: ArcSwap<InForce>,
    /// The alerts given, as (day, scope, level): each is logged, counted and published once per
    /// scope and day in this run (and again after a cap changes).
    alerts: Mutex<HashSet<(u32, String, Level)>>,
    /// Held while a cap is set at run time, so two settings never interleave.
    pub setting: tokio::sync::Mutex<()>,
}

impl BudgetState {
    pub fn new(in_force: InForce) -> BudgetState {
        BudgetState {
            in_force: ArcSwap::from_pointee(in_force),
            alerts: Mutex::new(HashSet::new()),
            setting: tokio::sync::Mutex::new(()),
        }
    }

    /// The caps in force now.
    pub fn in_force(&self) -> Arc<InForce> {
        self.in_force.load_full()
    }

    /// Puts `in_force` in force, and forgets the alerts given: a changed cap warns anew.
    pub fn put(&self, in_force: InForce) {
        self.in_force.store(Arc::new(in_force));
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Whether this alert is the first of its scope, level and day.
    fn first(&self, alert: (u32, String, Level)) -> bool {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(alert)
    }
}

/// What budget checks read and write: the caps in force, the spend in the store, the day from
/// the clock, and where alerts go. Borrowed from the runtime's shared state for one check.
pub(crate) struct Gate<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub clock: &'a Clock,
    pub state: &'a BudgetState,
    pub metrics: &'a Metrics,
    pub events: &'a EventBus,
}

/// One cap that covers a turn, and where its spend is counted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Covered {
    pub cap: Cap,
    pub scope: SpendScope,
    /// The budget day its spend counts on ([`WHOLE_LIFE`] for a session's).
    pub day: u32,
    pub what: String,
    /// Which setting gives the cap.
    pub setting: CapKey,
    pub resets: Option<Timestamp>,
}

/// The caps that cover a turn `from`→`to` (in `session`, when it exists) at `now`.
pub(crate) fn covering(
    budgets: &Budgets,
    session: Option<SessionId>,
    from: &TeamName,
    to: &TeamName,
    now: Timestamp,
) -> Vec<Covered> {
    let day = budgets.day_of(now);
    let resets = Some(budgets.day_end(day));
    let session = budgets.session.zip(session).map(|(cap, id)| Covered {
        cap,
        scope: SpendScope::Session(id),
        day: WHOLE_LIFE,
        what: "this session, over its life".to_owned(),
        setting: CapKey::Session,
        resets: None,
    });
    let daily = [
        (
            budgets.team(from).as_sender,
            SpendScope::Sender(from.clone()),
            format!("team {from} as sender, per day"),
            CapKey::Sender(team_table(budgets, from, |t| t.as_sender)),
        ),
        (
            budgets.team(to).as_receiver,
            SpendScope::Receiver(to.clone()),
            format!("team {to} as receiver, per day"),
            CapKey::Receiver(team_table(budgets, to, |t| t.as_receiver)),
        ),
        (
            budgets.node_daily,
            SpendScope::Node,
            "this node, per day".to_owned(),
            CapKey::NodeDaily,
        ),
    ]
    .into_iter()
    .filter_map(|(cap, scope, what, setting)| {
        cap.map(|cap| Covered {
            cap,
            scope,
            day,
            what,
            setting,
            resets,
        })
    });
    session.into_iter().chain(daily).collect()
}

/// Refuses a tell `from`→`to` when a cap that covers it is reached: `session`'s too when the
/// session exists. Before a session is created, the runtime checks the others, so a refused
/// first tell does not create (and start) a session for nothing.
pub(crate) fn check(
    gate: &Gate<'_>,
    session: Option<SessionId>,
    from: &TeamName,
    to: &TeamName,
) -> Result<(), RuntimeError> {
    let in_force = gate.state.in_force();
    if !in_force.budgets.any() {
        return Ok(());
    }
    // A short read of at most four counters, like `next_seq`'s.
    let covered = covering(&in_force.budgets, session, from, to, gate.clock.now());
    match first_reached(gate.store, covered)? {
        Some(exceeded) => {
            gate.metrics.budget_refusals.inc();
            Err(RuntimeError::BudgetExceeded(Box::new(exceeded)))
        }
        None => Ok(()),
    }
}

fn first_reached(
    store: &Store,
    covered: Vec<Covered>,
) -> Result<Option<BudgetExceeded>, RuntimeError> {
    for cover in covered {
        let spent = store.spend(&cover.scope, cover.day)?;
        if is_reached(&cover.cap, &spent) {
            return Ok(Some(BudgetExceeded {
                what: cover.what,
                setting: cover.setting,
                cap: cover.cap,
                spent,
                resets: cover.resets,
            }));
        }
    }
    Ok(None)
}

/// The fewest dollars left under the dollar caps that cover a turn `from`→`to` in `session`
/// (`None`: no dollar cap covers it). A counter that cannot be read is left out, and logged: the
/// door check refuses the tell on the same fault.
pub(crate) fn remaining_usd(
    gate: &Gate<'_>,
    session: SessionId,
    from: &TeamName,
    to: &TeamName,
) -> Option<f64> {
    covering(&gate.state.in_force().budgets, Some(session), from, to, gate.clock.now())
        .into_iter()
        .filter_map(|cover| {
            let usd = cover.cap.usd?;
            match gate.store.spend(&cover.scope, cover.day) {
                Ok(spent) => Some((usd - spent.usd).max(0.0)),
                Err(error) => {
                    tracing::warn!(scope = %cover.scope, %error, "could not read a spend counter; the agent's spending limit leaves it out");
                    None
                }
            }
        })
        .reduce(f64::min)
}

/// A live agent's spending limit (`--max-budget-usd`, `None` when it was given none) and what
/// its turns have cost since it was launched: the CLI counts from its own start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Spending {
    pub limit: Option<f64>,
    pub spent: f64,
}

/// How far the dollars left under the caps may drift from what a live agent may still spend
/// before it is launched again: below this share of it, the agent could overspend…
const LIMIT_TOO_HIGH: f64 = 0.9;
/// …and above this share, it would stop well short of what the caps now allow.
const LIMIT_TOO_LOW: f64 = 1.25;

/// Whether an agent launched with `spending` should be launched again now that `remaining`
/// dollars are left under its caps (`None`: no dollar cap covers it). Only its own turns lower
/// what it may still spend; other pairs' turns under a shared cap (its sender's, the node's), a
/// new budget day or a changed cap move `remaining` away from it.
pub(crate) fn limit_is_stale(spending: Spending, remaining: Option<f64>) -> bool {
    match (spending.limit, remaining) {
        (None, None) => false,
        (Some(limit), Some(remaining)) => {
            let left = (limit - spending.spent).max(0.0);
            remaining < left * LIMIT_TOO_HIGH || remaining > left * LIMIT_TOO_LOW + 1e-6
        }
        _ => true,
    }
}

/// How full a cap is: the larger of its dollar and token shares (1.0 = reached).
pub fn share(cap: &Cap, spent: &Spend) -> f64 {
    let usd = cap.usd.map_or(0.0, |usd| spent.usd / usd);
    let tokens = cap
        .tokens
        .map_or(0.0, |tokens| spent.tokens as f64 / tokens as f64);
    usd.max(tokens)
}

/// Whether `spent` reached `cap` in dollars or in tokens.
pub fn is_reached(cap: &Cap, spent: &Spend) -> bool {
    cap.usd.is_some_and(|usd| spent.usd >= usd) || cap.tokens.is_some_and(|t| spent.tokens >= t)
}

/// How full a scope is, as warnings and events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Under 80 %.
    Ok,
    /// 80 % or more.
    Warning,
    /// Reached.
    Exceeded,
}

impl Level {
    /// The level of `spent` against `cap`.
    pub fn of(cap: &Cap, spent: &Spend) -> Level {
        if is_reached(cap, spent) {
            Level::Exceeded
        } else if share(cap, spent) >= WARNING_AT {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

/// A cap at 80 % or more after a booking.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alert {
    pub cover: Covered,
    pub spent: Spend,
    pub level: Level,
}

/// The caps that cover a turn and stand at 80 % or more once `cost` is added to what the store
/// holds (the turn's booking, about to commit).
pub(crate) fn levels(
    gate: &Gate<'_>,
    session: SessionId,
    from: &TeamName,
    to: &TeamName,
    cost: Spend,
) -> Vec<Alert> {
    covering(
        &gate.state.in_force().budgets,
        Some(session),
        from,
        to,
        gate.clock.now(),
    )
    .into_iter()
    .filter_map(|cover| {
        let spent = gate.store.spend(&cover.scope, cover.day).ok()?.plus(cost);
        let level = Level::of(&cover.cap, &spent);
        (level != Level::Ok).then_some(Alert {
            cover,
            spent,
            level,
        })
    })
    .collect()
}

/// Takes a finished turn's `cost` (its booking is about to commit) against the caps that cover
/// it: returns whether one of them stands at 80 % or more with it, the turn's flag. The first
/// time in this run that a scope reaches 80 % or its cap on a budget day, that is logged and
/// counted.
pub(crate) fn note_booking(
    gate: &Gate<'_>,
    session: SessionId,
    from: &TeamName,
    to: &TeamName,
    cost: Spend,
) -> bool {
    if !gate.state.in_force().budgets.any() {
        return false;
    }
    let alerts = levels(gate, session, from, to, cost);
    for alert in &alerts {
        let key = (alert.cover.day, alert.cover.scope.to_string(), alert.level);
        let first = gate.state.first(key);
        if first {
            give_alert(gate, alert);
            publish_alert(gate, alert, from, to);
        }
    }
    !alerts.is_empty()
}

/// Publishes an alert to the event stream: under the pair for a session's cap.
fn publish_alert(gate: &Gate<'_>, alert: &Alert, from: &TeamName, to: &TeamName) {
    let scope = alert.cover.scope.to_string();
    let (kind, key) = scope
        .split_once(':')
        .unwrap_or((scope.as_str(), scope.as_str()));
    let pair = matches!(alert.cover.scope, SpendScope::Session(_))
        .then(|| iris_core::Pair::new(from.clone(), to.clone()));
    let body = BudgetAlert {
        scope: kind.to_owned(),
        key: key.to_owned(),
        percent: (share(&alert.cover.cap, &alert.spent) * 1000.0).round() / 10.0,
        spent: alert.spent,
        cap: alert.cover.cap,
    };
    let event = match alert.level {
        Level::Exceeded => EventKind::BudgetExceeded(body),
        _ => EventKind::BudgetWarning(body),
    };
    gate.events.publish(pair.as_ref(), event);
}

fn give_alert(gate: &Gate<'_>, alert: &Alert) {
    let Alert {
        cover,
        spent,
        level,
    } = alert;
    let percent = (share(&cover.cap, spent) * 100.0).round();
    let cap = cover.cap.to_string();
    let resets = cover.resets.map_or_else(
        || "never (a session's cap is over its life)".to_owned(),
        |at| at.to_string(),
    );
    if *level == Level::Exceeded {
        gate.metrics.budget_exceeded.inc();
        tracing::warn!(scope = %cover.scope, spent_usd = spent.usd, spent_tokens = spent.tokens, %cap, %resets, "the budget of {} is spent ({percent} % of {cap}): new tells on it are refused until it resets, or until {} is raised (`iris budget set {}`)", cover.what, cover.setting.config_key(), cover.setting);
    } else {
        gate.metrics.budget_warnings.inc();
        tracing::warn!(scope = %cover.scope, spent_usd = spent.usd, spent_tokens = spent.tokens, %cap, %resets, "the budget of {} is at {percent} % of {cap}; tells on it are refused once it is spent (raise {} to allow more, or `iris budget set {}`)", cover.what, cover.setting.config_key(), cover.setting);
    }
}

/// The `[budgets.teams]` table that gives a team's cap: its own, or the default one.
fn team_table(
    budgets: &Budgets,
    team: &TeamName,
    cap: impl Fn(&TeamCaps) -> Option<Cap>,
) -> String {
    match budgets.teams.get(team.as_str()).and_then(&cap) {
        Some(_) => team.to_string(),
        None => DEFAULT_TEAM.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(usd: f64, tokens: u64) -> Spend {
        Spend { usd, tokens }
    }

    #[test]
    fn a_cap_is_reached_by_dollars_or_by_tokens() {
        let cap = Cap {
            usd: Some(1.0),
            tokens: Some(100),
        };
        assert!(!is_reached(&cap, &spent(0.99, 99)));
        assert!(is_reached(&cap, &spent(1.0, 0)));
        assert!(is_reached(&cap, &spent(0.0, 100)));
        let dollars_only = Cap {
            usd: Some(1.0),
            tokens: None,
        };
        assert!(!is_reached(&dollars_only, &spent(0.5, u64::MAX)));
    }

    #[test]
    fn an_agent_is_launched_again_only_when_its_limit_drifts_from_what_is_left() {
        let given = |limit: Option<f64>, spent: f64| Spending { limit, spent };
        // Only its own turns spent: what it may spend is what is left.
        assert!(!limit_is_stale(given(Some(5.0), 1.0), Some(4.0)));
        assert!(!limit_is_stale(given(None, 3.0), None));
        // Another pair spent under a shared cap: the agent could overspend.
        assert!(limit_is_stale(given(Some(5.0), 1.0), Some(3.0)));
        // A new day (or a raised cap): it would stop short.
        assert!(limit_is_stale(given(Some(5.0), 4.9), Some(10.0)));
        // A cap appeared or went away.
        assert!(limit_is_stale(given(None, 0.0), Some(10.0)));
        assert!(limit_is_stale(given(Some(5.0), 0.0), None));
        // Small drift (rounding, a compaction's cost) is not worth a relaunch.
        assert!(!limit_is_stale(given(Some(5.0), 1.0), Some(3.8)));
    }

    #[test]
    fn the_level_is_the_fuller_of_dollars_and_tokens() {
        let cap = Cap {
            usd: Some(10.0),
            tokens: Some(1000),
        };
        assert_eq!(Level::of(&cap, &spent(7.9, 790)), Level::Ok);
        assert_eq!(Level::of(&cap, &spent(8.0, 0)), Level::Warning);
        assert_eq!(Level::of(&cap, &spent(0.0, 800)), Level::Warning);
        assert_eq!(Level::of(&cap, &spent(0.0, 1000)), Level::Exceeded);
        assert_eq!(Level::of(&cap, &spent(10.0, 0)), Level::Exceeded);
    }

    #[test]
    fn a_turn_is_covered_by_its_session_sender_receiver_and_node_caps_that_are_set() {
        let cap = Cap {
            usd: Some(1.0),
            tokens: None,
        };
        let mut budgets = Budgets {
            node_daily: Some(cap),
            ..Budgets::default()
        };
        let (alpha, beta) = (
            TeamName::new("alpha").unwrap(),
            TeamName::new("beta").unwrap(),
        );
        let id = SessionId::new_v4();
        let now = Timestamp::from_millis(86_400_000 * 3 + 5);
        let scopes = |b: &Budgets, s| -> Vec<SpendScope> {
            covering(b, s, &alpha, &beta, now)
                .into_iter()
                .map(|c| c.scope)
                .collect()
        };
        assert_eq!(scopes(&budgets, Some(id)), vec![SpendScope::Node]);
        budgets.session = Some(cap);
        budgets.teams.insert(
            "default".into(),
            TeamCaps {
                as_sender: Some(cap),
                as_receiver: Some(cap),
            },
        );
        assert_eq!(
            scopes(&budgets, Some(id)),
            vec![
                SpendScope::Session(id),
                SpendScope::Sender(alpha.clone()),
                SpendScope::Receiver(beta.clone()),
                SpendScope::Node
            ]
        );
        // Before the session exists, its cap cannot be checked.
        assert_eq!(scopes(&budgets, None).len(), 3);
        let daily = covering(&budgets, Some(id), &alpha, &beta, now);
        assert_eq!(daily[0].day, WHOLE_LIFE);
        assert_eq!(daily[0].resets, None);
        assert_eq!(daily[1].day, 3);
        assert_eq!(
            daily[1].resets,
            Some(Timestamp::from_millis(86_400_000 * 4))
        );
    }
}
