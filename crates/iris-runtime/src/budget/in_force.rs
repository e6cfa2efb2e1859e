//! The caps in force: the configuration's `[budgets]`, with the caps set at run time (`iris
//! budget set`) over them. Those are kept in the store, so a raised cap survives a restart,
//! and applied at once: the next tell is checked against it, and a live agent whose spending
//! limit no longer matches is launched again before its next turn.

use std::collections::BTreeSet;

use iris_core::config::Config;
use iris_core::config::budget::{Budgets, Cap, CapKey, DEFAULT_TEAM};
use iris_store::Store;

use crate::error::RuntimeError;

/// The caps in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct InForce {
    /// The configuration's caps, with the run-time ones over them.
    pub budgets: Budgets,
    /// The caps set at run time.
    pub set_at_run_time: BTreeSet<CapKey>,
}

impl InForce {
    /// The configuration's caps with those the store keeps over them. A kept cap that no
    /// longer fits the configuration (its team is gone) is skipped and logged.
    pub fn load(config: &Config, store: &Store) -> Result<InForce, RuntimeError> {
        let mut in_force = InForce {
            budgets: config.budgets().clone(),
            set_at_run_time: BTreeSet::new(),
        };
        for (key, cap) in store.budget_caps()? {
            match checked(config, &key, &cap) {
                Ok(setting) => {
                    tracing::info!(cap = %setting, limit = %cap, "a budget cap set at run time applies over the configuration's (`iris budget reset {setting}` goes back to it)");
                    in_force.apply(setting, cap);
                }
                Err(error) => tracing::warn!(%error, "a budget cap set at run time is ignored"),
            }
        }
        Ok(in_force)
    }

    fn apply(&mut self, setting: CapKey, cap: Cap) {
        self.budgets = std::mem::take(&mut self.budgets).with_cap(&setting, cap);
        self.set_at_run_time.insert(setting);
    }

    /// Where the cap `setting` names comes from, for a person.
    pub fn set_by(&self, setting: &CapKey) -> String {
        if self.set_at_run_time.contains(setting) {
            format!("iris budget set {setting}")
        } else {
            setting.config_key()
        }
    }
}

/// Checks a cap to set at run time: its key names a cap of a configured team (or `default`),
/// and it sets a valid limit.
pub(crate) fn checked(config: &Config, key: &str, cap: &Cap) -> Result<CapKey, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidBudgetCap {
        key: key.to_owned(),
        reason,
    };
    let setting = CapKey::parse(key).map_err(invalid)?;
    if let Some(team) = setting.team()
        && team != DEFAULT_TEAM
        && !config.teams().keys().any(|t| t.as_str() == team)
    {
        return Err(invalid(format!(
            "names team {team}, which is not configured; use a team of [teams], or default"
        )));
    }
    cap.check().map_err(invalid)?;
    Ok(setting)
}
