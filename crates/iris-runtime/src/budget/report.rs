//! `iris budget`: spend against every cap that is set.

use iris_core::Timestamp;
use iris_core::config::budget::{Budgets, Cap, CapKey};
use iris_store::spend::{Spend, SpendScope, WHOLE_LIFE};
use serde::{Deserialize, Serialize};

use super::in_force::InForce;
use super::{Covered, Gate, Level, covering, share};
use crate::error::RuntimeError;

/// Spend against every cap, as `iris budget` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetReport {
    /// Today's budget day, as a date (`YYYY-MM-DD`) at the configured offset.
    pub day: String,
    /// When days start: `UTC` or an offset such as `+02:00`.
    pub day_offset: String,
    /// When today's budget day ends and daily caps reset.
    pub resets_at: Timestamp,
    /// Every cap that is set, with what was spent against it.
    pub scopes: Vec<ScopeBudget>,
}

/// One cap and its spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeBudget {
    /// `node`, `sender`, `receiver` or `session`.
    pub scope: String,
    /// `node`, a team, or a session id.
    pub key: String,
    /// A session's pair (`alpha->beta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<String>,
    /// The cap.
    pub cap: Cap,
    /// What was spent against it (today, or over the session's life).
    pub spent: Spend,
    /// How full it is (the larger of dollars and tokens), in percent.
    pub percent: f64,
    /// `ok`, `warning` (80 % or more) or `exceeded`.
    pub state: Level,
    /// When it resets (`None`: a session's cap, over its life).
    pub resets_at: Option<Timestamp>,
    /// Where it is set (the configuration key).
    pub set_by: String,
}

/// Every cap that is set, with its spend: the node's, each configured team's as sender and as
/// receiver (today), and each session's that has spent anything (over its life).
pub(crate) fn report(gate: &Gate<'_>) -> Result<BudgetReport, RuntimeError> {
    let in_force = gate.state.in_force();
    let budgets = &in_force.budgets;
    let now = gate.clock.now();
    let day = budgets.day_of(now);
    let resets_at = budgets.day_end(day);
    let mut covers = Vec::new();
    for team in gate.config.teams().keys() {
        // Sender and receiver of a pair with itself: every team's caps, once each.
        let mut own = covering(budgets, None, team, team, now);
        own.retain(|c| !matches!(c.scope, SpendScope::Node));
        covers.extend(own);
    }
    if let Some(cap) = budgets.node_daily {
        covers.insert(
            0,
            Covered {
                cap,
                scope: SpendScope::Node,
                day,
                what: String::new(),
                setting: CapKey::NodeDaily,
                resets: Some(resets_at),
            },
        );
    }
    let mut scopes = Vec::new();
    for cover in covers {
        let spent = gate.store.spend(&cover.scope, cover.day)?;
        scopes.push(scope_budget(&in_force, cover, spent, None));
    }
    if let Some(cap) = budgets.session {
        for (scope, spent) in gate.store.spend_on(WHOLE_LIFE)? {
            let SpendScope::Session(id) = scope else {
                continue;
            };
            let pair = gate
                .store
                .get_by_session_id(&id)?
                .map(|r| format!("{}->{}", r.from_team, r.to_team));
            let cover = Covered {
                cap,
                scope,
                day: WHOLE_LIFE,
                what: String::new(),
                setting: CapKey::Session,
                resets: None,
            };
            scopes.push(scope_budget(&in_force, cover, spent, pair));
        }
    }
    Ok(BudgetReport {
        day: Budgets::date_of(day),
        day_offset: budgets.day_text(),
        resets_at,
        scopes,
    })
}

fn scope_budget(
    in_force: &InForce,
    cover: Covered,
    spent: Spend,
    pair: Option<String>,
) -> ScopeBudget {
    let scope = cover.scope.to_string();
    let (kind, key) = scope
        .split_once(':')
        .unwrap_or((scope.as_str(), scope.as_str()));
    ScopeBudget {
        scope: kind.to_owned(),
        key: key.to_owned(),
        pair,
        percent: (share(&cover.cap, &spent) * 1000.0).round() / 10.0,
        state: Level::of(&cover.cap, &spent),
        cap: cover.cap,
        spent,
        resets_at: cover.resets,
        set_by: in_force.set_by(&cover.setting),
    }
}
