//! The configuration as `iris config check` shows it: values taken from the environment hidden
//! unless asked for.
//!
//! A configuration often takes its secrets from the environment (`DATABASE_URL =
//! "${DATABASE_URL}"`), and what `config check` prints ends up in terminals, CI logs and bug
//! reports. So by default ([`Config::to_toml_string_shown`] and [`Config::to_json_shown`] with
//! `show_values = false`):
//!
//! - a value written with a `${…}` reference is shown as `<hidden: ${DATABASE_URL}>`, the way it
//!   was written (when the value changed shape, such as an `mcp_config` table that became JSON
//!   text, the whole value is hidden);
//! - every agent `env` value is [`REDACTED`] (names are shown);
//! - the rest goes through [`crate::redact`]: URL passwords, tokens, secret-looking keys.
//!
//! With `show_values = true` the output is [`Config::to_toml_string`]'s (or the plain JSON), which
//! loads back to the same configuration.

use crate::config::key_path::{self, Segment};
use crate::config::{Config, ConfigError, interpolate};
use crate::redact::{self, REDACTED};

/// Where the configuration's values came from: the strings that took something from the
/// environment. Not part of the configuration's meaning, so it never makes two configurations
/// unequal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Provenance(pub(crate) Vec<interpolate::FromEnv>);

impl PartialEq for Provenance {
    fn eq(&self, _: &Provenance) -> bool {
        true
    }
}

impl Eq for Provenance {}

/// How a value taken from the environment is shown.
fn hidden(written: Option<&str>) -> String {
    match written {
        Some(written) => format!("<hidden: {}>", redact::clip(written)),
        None => "<hidden: taken from the environment>".to_owned(),
    }
}

impl Config {
    /// The keys whose values took something from the environment, as key paths
    /// (`teams.alpha.agent.env.DATABASE_URL`), each with the value as written (`${DATABASE_URL}`).
    pub fn from_env(&self) -> impl Iterator<Item = (String, &str)> {
        self.from_env
            .0
            .iter()
            .map(|item| (key_path::render(&item.path), item.written.as_str()))
    }

    /// The effective configuration as TOML, with values from the environment, agent `env`
    /// values and secrets hidden unless `show_values` (see the module documentation). Only the
    /// `show_values` form is guaranteed to load back.
    pub fn to_toml_string_shown(&self, show_values: bool) -> Result<String, ConfigError> {
        if show_values {
            return self.to_toml_string();
        }
        let serialize_error = |e: toml::ser::Error| ConfigError::Serialize {
            message: e.to_string(),
        };
        let mut table = toml::Table::try_from(self).map_err(serialize_error)?;
        // Redacted first, so the markers (which say where a value came from) stay.
        redact_toml_table(&mut table);
        for item in &self.from_env.0 {
            hide_toml(&mut table, &item.path, &item.written);
        }
        toml::to_string(&table).map_err(serialize_error)
    }

    /// The effective configuration as JSON, hidden as [`Config::to_toml_string_shown`] hides.
    pub fn to_json_shown(&self, show_values: bool) -> Result<serde_json::Value, ConfigError> {
        let mut value = serde_json::to_value(self).map_err(|e| ConfigError::Serialize {
            message: e.to_string(),
        })?;
        if show_values {
            return Ok(value);
        }
        redact::redact_json(&mut value);
        for item in &self.from_env.0 {
            hide_json(&mut value, &item.path, &item.written);
        }
        Ok(value)
    }
}

/// Replaces the value at `path` (or, when the path goes deeper than the effective
/// configuration does, the deepest value on it) with the hidden marker.
fn hide_toml(table: &mut toml::Table, path: &[Segment], written: &str) {
    let Some((Segment::Key(first), rest)) = path.split_first() else {
        return;
    };
    let Some(mut node) = table.get_mut(first) else {
        return;
    };
    let mut exact = true;
    for segment in rest {
        let next = match (segment, &node) {
            (Segment::Key(key), toml::Value::Table(t)) if t.contains_key(key) => key.clone(),
            (Segment::Index(i), toml::Value::Array(a)) if *i < a.len() => i.to_string(),
            _ => {
                exact = false;
                break;
            }
        };
        node = match node {
            toml::Value::Table(t) => match t.get_mut(&next) {
                Some(child) => child,
                None => return,
            },
            toml::Value::Array(a) => match next.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
    *node = toml::Value::String(hidden(exact.then_some(written)));
}

/// [`hide_toml`] for JSON.
fn hide_json(value: &mut serde_json::Value, path: &[Segment], written: &str) {
    let mut node = value;
    let mut exact = true;
    for segment in path {
        let has = match (segment, &*node) {
            (Segment::Key(key), serde_json::Value::Object(map)) => map.contains_key(key),
            (Segment::Index(i), serde_json::Value::Array(items)) => *i < items.len(),
            _ => false,
        };
        if !has {
            exact = false;
            break;
        }
        node = match (segment, node) {
            (Segment::Key(key), serde_json::Value::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return,
            },
            (Segment::Index(i), serde_json::Value::Array(items)) => match items.get_mut(*i) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
    *node = serde_json::Value::String(hidden(exact.then_some(written)));
}

/// [`redact::redact_json`]'s rules on a TOML table: `env` tables lose their values, secret keys
/// their values, and every string its secrets. Hidden markers are left as they are.
fn redact_toml_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(inner) if key == "env" || key == "headers" => {
                for (_, inner_value) in inner.iter_mut() {
                    *inner_value = toml::Value::String(REDACTED.to_owned());
                }
            }
            toml::Value::String(text) if redact::is_secret_name(key) => {
                if !text.starts_with("<hidden: ") {
                    *text = REDACTED.to_owned();
                }
            }
            other => redact_toml_value(other),
        }
    }
}

fn redact_toml_value(value: &mut toml::Value) {
    match value {
        toml::Value::String(text) => {
            if text.starts_with("<hidden: ") {
                return;
            }
            let shown = redact::redact_arg(text);
            if shown != text.as_str() {
                *text = shown.into_owned();
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(redact_toml_value),
        toml::Value::Table(table) => redact_toml_table(table),
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use super::*;

    const SECRET: &str = "PASSWORD-91c2";

    fn env(name: &str) -> Option<String> {
        match name {
            "DATABASE_URL" => Some(format!("postgres://app:{SECRET}@db/app")),
            "PROCS" => Some("7".to_owned()),
            "HOME" => Some("/home/me".to_owned()),
            _ => None,
        }
    }

    fn config() -> Config {
        let text = r#"
[settings]
max_processes = "${PROCS}"

[agent]
command = "claude"
env = { DATABASE_URL = "${DATABASE_URL}", LITERAL = "plain-value", PRICE = "$$5" }

[teams.alpha]
path = "${HOME}/alpha"

[teams.alpha.mcp_config.mcpServers.db]
command = "db-mcp"
env = { URL = "${DATABASE_URL}" }
"#;
        Config::from_toml_str(text, Path::new("/etc/iris"), "test.toml", &env).unwrap()
    }

    #[test]
    fn values_from_the_environment_are_known_by_key() {
        let config = config();
        let keys: Vec<(String, String)> =
            config.from_env().map(|(k, w)| (k, w.to_owned())).collect();
        assert!(keys.contains(&(
            "agent.env.DATABASE_URL".to_owned(),
            "${DATABASE_URL}".to_owned()
        )));
        assert!(keys.contains(&("settings.max_processes".to_owned(), "${PROCS}".to_owned())));
        assert!(
            !keys.iter().any(|(k, _)| k == "agent.env.PRICE"),
            "$$ is no reference"
        );
        // Provenance never makes configurations unequal: the effective file loads back equal.
        let back = Config::from_toml_str(
            &config.to_toml_string().unwrap(),
            Path::new("/etc/iris"),
            "test.toml",
            &|_| None,
        )
        .unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn shown_configurations_hide_environment_values_unless_asked() {
        let config = config();
        let toml = config.to_toml_string_shown(false).unwrap();
        let json = config.to_json_shown(false).unwrap().to_string();
        for shown in [&toml, &json] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(!shown.contains("plain-value"), "env values: {shown}");
            assert!(shown.contains("DATABASE_URL"), "env names: {shown}");
            assert!(shown.contains("<hidden: ${PROCS}>"), "{shown}");
            assert!(shown.contains("<hidden: ${HOME}/alpha>"), "{shown}");
            // The MCP table became JSON text: hidden whole, since part of it came from the
            // environment.
            assert!(
                shown.contains("<hidden: taken from the environment>"),
                "{shown}"
            );
        }
        let full = config.to_toml_string_shown(true).unwrap();
        assert!(full.contains(SECRET), "{full}");
        assert!(full.contains("/home/me/alpha"), "{full}");
        let json = config.to_json_shown(true).unwrap();
        assert_eq!(json["settings"]["max_processes"], 7);
    }
}
