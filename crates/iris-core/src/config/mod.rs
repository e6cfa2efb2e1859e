//! The TOML configuration file.
//!
//! ```toml
//! [settings]
//! max_processes = "${IRIS_MAX_PROCESSES:-10}"   # interpolated, then coerced to a number
//! idle_timeout = "1h"
//!
//! [agent]
//! command = "claude"
//!
//! [teams.frontend]
//! path = "../frontend"                          # relative to this file's directory
//! description = "The web UI"
//! ```
//!
//! Loading runs these steps, and stops at the first error (every [`ConfigError`] names the file,
//! the key or variable involved, and what to do):
//!
//! 1. parse the TOML (errors give line and column);
//! 2. expand `${VAR}`, `${VAR:-default}` and `$$` in every string value ([`mod@interpolate`]);
//! 3. check that every `[teams.NAME]` is a valid [`TeamName`];
//! 4. deserialize, rejecting unknown keys and coercing strings into numbers, booleans and
//!    durations where a typed value is expected;
//! 5. resolve relative paths against the configuration file's directory.
//!
//! Paths are not checked for existence here; runtime validation ([`crate::project_path`]) does
//! that. The shipped, commented example is `config/iris.toml` in the repository.

pub mod budget;
pub mod cluster;
mod coerce;
mod containment;
mod error;
pub mod interpolate;
mod key_path;
mod load;
mod model;
mod shown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use containment::ContainmentSetting;
pub use error::ConfigError;
pub use interpolate::{Env, InterpolationError, interpolate};
pub use load::{MAX_CONFIG_LEN, file_kind as describe_file_kind};
pub use model::{
    AgentConfig, AgentOverride, DatabaseLocation, GrantPermission, McpConfig, RemoteConfig,
    SessionInit, Settings, TeamConfig,
};

use crate::team::TeamName;

/// A loaded, validated configuration.
///
/// Serializes to the file format (with every default filled in and every path absolute), so
/// [`Config::to_toml_string`] shows the effective configuration and loads back to the same value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    settings: Settings,
    database: DatabaseLocation,
    agent: AgentConfig,
    teams: BTreeMap<TeamName, TeamConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<cluster::ClusterConfig>,
    /// `[budgets]` (no cap when absent).
    #[serde(skip_serializing_if = "budget_is_unset")]
    budgets: budget::Budgets,
    /// The node this process serves as (`iris node --node NAME`); not part of the file.
    #[serde(skip)]
    this_node: Option<cluster::NodeName>,
    #[serde(skip)]
    config_dir: PathBuf,
    #[serde(skip)]
    source: String,
    /// Which values came from the environment, for showing the configuration without them.
    #[serde(skip)]
    from_env: shown::Provenance,
}

/// Whether `[budgets]` is absent: no cap and days at midnight UTC.
fn budget_is_unset(budgets: &budget::Budgets) -> bool {
    *budgets == budget::Budgets::default()
}

impl Config {
    /// Reads and loads the configuration file at `path`, interpolating from the process
    /// environment. Relative paths inside are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &process_env)
    }

    /// [`Config::load`] with an explicit environment.
    pub fn load_with_env(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
        load::load_file(path, env)
    }

    /// Loads configuration text. Relative paths are resolved against `config_dir` (made absolute
    /// against the current directory if it is not), `source_name` is used in error messages, and
    /// `env` looks up `${VAR}` references.
    pub fn from_toml_str(
        text: &str,
        config_dir: &Path,
        source_name: &str,
        env: Env<'_>,
    ) -> Result<Config, ConfigError> {
        load::load_str(text, config_dir, source_name, env)
    }

    /// The effective configuration as TOML: defaults filled in, variables expanded, paths
    /// absolute, and every `$` in a value written `$$`. Loading it back (with the same
    /// configuration directory) gives an equal configuration.
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        let serialize_error = |e: toml::ser::Error| ConfigError::Serialize {
            message: e.to_string(),
        };
        let mut table = toml::Table::try_from(self).map_err(serialize_error)?;
        interpolate::escape_table(&mut table);
        toml::to_string(&table).map_err(serialize_error)
    }

    /// `[settings]`.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `[database]`, resolved.
    pub fn database(&self) -> &DatabaseLocation {
        &self.database
    }

    /// `[agent]`: the agent command before any team's override.
    pub fn agent(&self) -> &AgentConfig {
        &self.agent
    }

    /// Every team, by name.
    pub fn teams(&self) -> &BTreeMap<TeamName, TeamConfig> {
        &self.teams
    }

    /// The team's configuration, or `None` if no such team is configured.
    pub fn team(&self, name: &TeamName) -> Option<&TeamConfig> {
        self.teams.get(name)
    }

    /// The team names, sorted.
    pub fn team_names(&self) -> impl Iterator<Item = &TeamName> {
        self.teams.keys()
    }

    /// `[budgets]`: the spending caps (none when the file has no such section).
    pub fn budgets(&self) -> &budget::Budgets {
        &self.budgets
    }

    /// `[cluster]`, when the file has one.
    pub fn cluster(&self) -> Option<&cluster::ClusterConfig> {
        self.cluster.as_ref()
    }

    /// This configuration as node `name` of its cluster serves it: the node's own teams (and
    /// the teams placed on no node) are the ones it runs and checks.
    pub fn serving_as(mut self, name: cluster::NodeName) -> Config {
        self.this_node = Some(name);
        self
    }

    /// The node this process serves as, if it was given one ([`Config::serving_as`]).
    pub fn this_node(&self) -> Option<&cluster::NodeName> {
        self.this_node.as_ref()
    }

    /// Whether this process runs `team`'s agents: a team placed on no node is run by whoever
    /// loads the configuration; a placed one only by its node.
    pub fn hosts(&self, team: &TeamName) -> bool {
        match self.node_of(team) {
            None => true,
            Some(node) => self.this_node.as_ref() == Some(node),
        }
    }

    /// The node that hosts `team`, when it is placed on one (`teams.NAME.node`).
    pub fn node_of(&self, team: &TeamName) -> Option<&cluster::NodeName> {
        self.teams.get(team)?.node.as_ref()
    }

    /// The cluster's placement (its nodes and which teams they host), when there is a
    /// `[cluster]`.
    pub fn placement(&self) -> Option<cluster::Placement> {
        let cluster = self.cluster.as_ref()?;
        Some(cluster::Placement {
            nodes: cluster
                .nodes
                .iter()
                .map(|(name, node)| (name.clone(), node.address))
                .collect(),
            teams: self
                .teams
                .iter()
                .filter_map(|(team, config)| Some((team.clone(), config.node.clone()?)))
                .collect(),
        })
    }

    /// The agent command for `team`: `[agent]` with the team's override applied.
    pub fn agent_for(&self, team: &TeamName) -> Option<AgentConfig> {
        self.team(team).map(|t| t.effective_agent(&self.agent))
    }

    /// Rewrites the agent command of every team, for launchers that resolve commands before
    /// starting the runtime (the `iris` binary finds `fake-claude` or `claude` on disk and runs
    /// an absolute path).
    ///
    /// `rewrite` gets each team's name, configuration and effective agent (`[agent]` with the
    /// team's override), in name order, and returns the command and arguments to run instead,
    /// or `None` to leave the team as it is. A new command is stored as the team's override, so
    /// [`Config::agent_for`] and [`Config::to_toml_string`] show it; the environment is left
    /// alone. The first error stops the rewrite and is returned; teams rewritten before it keep
    /// their new command.
    pub fn rewrite_agent_commands<E>(
        &mut self,
        mut rewrite: impl FnMut(
            &TeamName,
            &TeamConfig,
            &AgentConfig,
        ) -> Result<Option<(String, Vec<String>)>, E>,
    ) -> Result<(), E> {
        for (name, team) in &mut self.teams {
            let agent = team.effective_agent(&self.agent);
            if let Some((command, args)) = rewrite(name, team, &agent)? {
                team.agent.command = Some(command);
                team.agent.args = Some(args);
            }
        }
        Ok(())
    }

    /// The idle timeout for `team`: its own, or `settings.idle_timeout`.
    pub fn idle_timeout_for(&self, team: &TeamName) -> Option<Duration> {
        self.team(team)
            .map(|t| t.effective_idle_timeout(&self.settings))
    }

    /// The session-initialisation timeout for `team`: its own, or
    /// `settings.session_init_timeout`.
    pub fn session_init_timeout_for(&self, team: &TeamName) -> Option<Duration> {
        self.team(team)
            .map(|t| t.effective_session_init_timeout(&self.settings))
    }

    /// The tool timeout for `team`: its own, or `settings.tool_timeout`.
    pub fn tool_timeout_for(&self, team: &TeamName) -> Option<Duration> {
        self.team(team)
            .map(|t| t.effective_tool_timeout(&self.settings))
    }

    /// The cap on a turn's total time for `team` (its own, or `settings.turn_timeout`): the
    /// outer `None` for an unknown team, the inner for no cap.
    pub fn turn_timeout_for(&self, team: &TeamName) -> Option<Option<Duration>> {
        self.team(team)
            .map(|t| t.effective_turn_timeout(&self.settings))
    }

    /// The absolute directory relative paths were resolved against (the file's directory).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Where the configuration came from: the file's path, or the name given to
    /// [`Config::from_toml_str`].
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The table header of team `name` as a configuration file spells it: `teams.alpha`, or
/// `teams."b.c"` for a name that is not a bare TOML key (so a hint such as "add
/// `[teams."b.c"]`" can be pasted as it is).
pub fn team_table(name: &TeamName) -> String {
    key_path::render(&[
        key_path::Segment::Key("teams".to_owned()),
        key_path::Segment::Key(name.as_str().to_owned()),
    ])
}

/// Looks a variable up in the process environment; a value that is not Unicode is converted
/// lossily rather than treated as unset. A name no environment can hold is unset.
fn process_env(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests;
