//! The load pipeline: parse the TOML, interpolate strings, deserialize with coercion (unknown keys
//! rejected), then resolve paths and validate team names.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::budget::{self, Budgets};
use crate::config::cluster::{ClusterConfig, ClusterTls, NodeConfig, NodeName};
use crate::config::error::ConfigError;
use crate::config::interpolate::{self, Env, InterpolationError};
use crate::config::key_path::{self, Segment};
use crate::config::model::{
    AgentConfig, AgentOverride, DatabaseLocation, GrantPermission, McpConfig, RemoteConfig,
    Settings, TeamConfig,
};
use crate::config::{Config, coerce};
use crate::redact::{clip, clip_to, quoted};
use crate::team::TeamName;

/// The whole file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    agent: AgentConfig,
    #[serde(default)]
    teams: BTreeMap<String, RawTeam>,
    #[serde(default)]
    cluster: Option<RawCluster>,
    #[serde(default)]
    budgets: Option<RawBudgets>,
}

/// `[budgets]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    day: Option<String>,
    session: Option<RawCap>,
    node_daily: Option<RawCap>,
    #[serde(default)]
    teams: BTreeMap<String, RawTeamCaps>,
}

/// A cap as written: `{ usd = 5.0, tokens = 1000000 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    #[serde(default, deserialize_with = "coerce::opt_money")]
    usd: Option<f64>,
    #[serde(default, deserialize_with = "coerce::opt_positive_u64")]
    tokens: Option<u64>,
}

/// `[budgets.teams.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeamCaps {
    as_sender: Option<RawCap>,
    as_receiver: Option<RawCap>,
}

/// `[cluster]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(deserialize_with = "coerce::non_empty")]
    cookie: String,
    #[serde(default)]
    nodes: BTreeMap<String, RawNode>,
    tls: Option<RawClusterTls>,
}

/// `[cluster.tls]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterTls {
    #[serde(deserialize_with = "coerce::non_empty")]
    cert: String,
    #[serde(deserialize_with = "coerce::non_empty")]
    key: String,
    #[serde(deserialize_with = "coerce::non_empty")]
    ca: String,
}

/// `[cluster.nodes.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(deserialize_with = "coerce::non_empty")]
    address: String,
}

/// `[database]` as written.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDatabase {
    #[serde(deserialize_with = "coerce::opt_non_empty")]
    path: Option<String>,
    #[serde(deserialize_with = "coerce::boolean")]
    in_memory: bool,
}

/// `[teams.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    #[serde(deserialize_with = "coerce::non_empty")]
    path: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    agent: AgentOverride,
    #[serde(default, deserialize_with = "coerce::opt_duration")]
    idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "coerce::opt_duration")]
    session_init_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "coerce::opt_duration")]
    tool_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "coerce::opt_override_duration_or_off")]
    turn_timeout: Option<Option<Duration>>,
    #[serde(default)]
    remote: Option<RawRemote>,
    #[serde(default)]
    grant_permission: GrantPermission,
    #[serde(default)]
    allowed_tools: Vec<String>,
    #[serde(default)]
    disallowed_tools: Vec<String>,
    #[serde(default, deserialize_with = "coerce::opt_string_empty_is_none")]
    append_system_prompt: Option<String>,
    #[serde(default)]
    mcp_config: Option<toml::Value>,
    #[serde(default, deserialize_with = "coerce::opt_string_empty_is_none")]
    node: Option<String>,
}

/// `[teams.NAME.remote]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    #[serde(deserialize_with = "coerce::non_empty")]
    destination: String,
    #[serde(default, deserialize_with = "coerce::opt_port")]
    port: Option<u16>,
    #[serde(default, deserialize_with = "coerce::opt_non_empty")]
    identity: Option<String>,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    extra_args: Vec<String>,
}

/// The largest configuration file iris reads: a real one is a few kilobytes.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// Reads and loads the file at `path`.
pub(crate) fn load_file(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
    let path = std::path::absolute(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = read_bounded(&path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    load_str(&text, dir, &path.display().to_string(), env)
}

/// Reads the configuration file at `path`, refusing anything but a regular file of at most
/// [`MAX_CONFIG_LEN`] bytes. It is opened non-blocking, so a FIFO cannot hang the open, and
/// checked on the open descriptor (no window for a swap between check and read); the read
/// itself is capped, since some files (in `/proc`) report no size.
fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let io_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.to_owned(),
            }
        } else {
            ConfigError::Io {
                path: path.to_owned(),
                source,
            }
        }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(ConfigError::NotAFile {
            path: path.to_owned(),
            kind: file_kind(&metadata),
        });
    }
    let too_large = || ConfigError::TooLarge {
        path: path.to_owned(),
        limit: MAX_CONFIG_LEN,
    };
    if metadata.len() > MAX_CONFIG_LEN {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| ConfigError::Io {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })
}

/// What a file that is not a regular file is, for error messages: "a directory", "a FIFO
/// (named pipe)", "a character device", ….
pub fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Loads configuration text whose relative paths are relative to `config_dir`.
pub(crate) fn load_str(
    text: &str,
    config_dir: &Path,
    file: &str,
    env: Env<'_>,
) -> Result<Config, ConfigError> {
    let config_dir = std::path::absolute(config_dir)
        .map_err(|source| ConfigError::Io {
            path: config_dir.to_owned(),
            source,
        })?
        .components()
        .collect::<PathBuf>();
    let mut table = text
        .parse::<toml::Table>()
        .map_err(|e| syntax_error(text, file, &e))?;
    let from_env =
        interpolate::interpolate_table(&mut table, env).map_err(|located| match located.error {
            InterpolationError::MissingVar { var } => ConfigError::MissingVar {
                file: file.to_owned(),
                key_path: clip(&located.key_path).into_owned(),
                var: clip(&var).into_owned(),
            },
            problem => ConfigError::Interpolation {
                file: file.to_owned(),
                key_path: clip(&located.key_path).into_owned(),
                problem,
            },
        })?;
    check_team_names(&table, file)?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(table).map_err(|e| serde_error(file, &e))?;
    let mut config = Resolver {
        file,
        dir: &config_dir,
    }
    .resolve(raw, config_dir.clone())?;
    config.from_env = crate::config::shown::Provenance(from_env);
    Ok(config)
}

/// A [`ConfigError::Syntax`] with a 1-based line and column.
fn syntax_error(text: &str, file: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    ConfigError::Syntax {
        file: file.to_owned(),
        line,
        column,
        message: error.message().trim().replace('\n', "; "),
    }
}

/// Rejects a `[teams.NAME]` whose NAME is not a [`TeamName`], before anything inside it is read.
fn check_team_names(table: &toml::Table, file: &str) -> Result<(), ConfigError> {
    let Some(toml::Value::Table(teams)) = table.get("teams") else {
        return Ok(());
    };
    for name in teams.keys() {
        team_name(name, file)?;
    }
    Ok(())
}

fn team_name(name: &str, file: &str) -> Result<TeamName, ConfigError> {
    TeamName::new(name).map_err(|source| ConfigError::InvalidTeamName {
        file: file.to_owned(),
        key_path: clip(&key_path::render(&[
            Segment::Key("teams".to_owned()),
            Segment::Key(name.to_owned()),
        ]))
        .into_owned(),
        name: name.to_owned(),
        source,
    })
}

/// Turns a deserialization error into an [`ConfigError::UnknownKey`] or [`ConfigError::Invalid`].
fn serde_error(file: &str, error: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let mut segments = key_path::from_serde(error.path());
    let message = error.inner().message();
    if let Some((key, tail)) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    {
        if segments.last() != Some(&Segment::Key(key.to_owned())) {
            segments.push(Segment::Key(key.to_owned()));
        }
        let expected = tail
            .strip_prefix(", expected ")
            .map(str::to_owned)
            .or_else(|| {
                tail.contains("there are no fields")
                    .then(|| "no keys here".to_owned())
            });
        return ConfigError::UnknownKey {
            file: file.to_owned(),
            key_path: clip(&render_or_top(&segments)).into_owned(),
            expected,
        };
    }
    if let Some((key, _)) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
    {
        segments.push(Segment::Key(key.to_owned()));
        return ConfigError::Invalid {
            file: file.to_owned(),
            key_path: render_or_top(&segments),
            message: "this key is required but missing; add it".to_owned(),
        };
    }
    // serde names the Rust type a table deserializes into; the user wrote a TOML table.
    let message = match message.find("expected struct ") {
        Some(at) => format!("{}expected a table", &message[..at]),
        None => message.to_owned(),
    };
    ConfigError::Invalid {
        file: file.to_owned(),
        key_path: clip(&render_or_top(&segments)).into_owned(),
        // The message may quote the bad value (serde's own messages do, unclipped).
        message: clip_to(&message, 2 * crate::redact::ECHO_LIMIT).into_owned(),
    }
}

fn render_or_top(segments: &[Segment]) -> String {
    if segments.is_empty() {
        "(top level)".to_owned()
    } else {
        key_path::render(segments)
    }
}

/// Resolves paths and builds the typed configuration.
struct Resolver<'a> {
    file: &'a str,
    dir: &'a Path,
}

impl Resolver<'_> {
    fn resolve(&self, raw: RawConfig, config_dir: PathBuf) -> Result<Config, ConfigError> {
        let database = if raw.database.in_memory {
            DatabaseLocation::InMemory
        } else {
            let written = raw
                .database
                .path
                .as_deref()
                .unwrap_or(DatabaseLocation::DEFAULT_PATH);
            DatabaseLocation::File(self.local_path(written, &["database", "path"])?)
        };
        let cluster = raw.cluster.map(|c| self.cluster(c)).transpose()?;
        let mut teams = BTreeMap::new();
        for (name, team) in raw.teams {
            let team_config = self.team(&name, team, cluster.as_ref())?;
            teams.insert(team_name(&name, self.file)?, team_config);
        }
        let budgets = match raw.budgets {
            Some(budgets) => self.budgets(budgets, &teams)?,
            None => Budgets::default(),
        };
        Ok(Config {
            settings: raw.settings,
            database,
            agent: raw.agent,
            teams,
            cluster,
            budgets,
            this_node: None,
            config_dir,
            source: self.file.to_owned(),
            from_env: crate::config::shown::Provenance::default(),
        })
    }

    /// `[cluster]`: a cookie (not blank: `coerce::non_empty`), at least one node, each with a valid name and
    /// an IP address with a port.
    fn cluster(&self, raw: RawCluster) -> Result<ClusterConfig, ConfigError> {
        if raw.nodes.is_empty() {
            return Err(self.invalid(
                &["cluster", "nodes"],
                "names no node; add one [cluster.nodes.NAME] table with an `address` per node"
                    .to_owned(),
            ));
        }
        let mut nodes = BTreeMap::new();
        for (name, node) in raw.nodes {
            let at = ["cluster", "nodes", name.as_str()];
            let node_name = NodeName::new(&name).map_err(|e| self.invalid(&at, e.to_string()))?;
            let address = node.address.trim().parse().map_err(|_| {
                self.invalid(
                    &["cluster", "nodes", name.as_str(), "address"],
                    format!(
                        "{} is not an IP address and port; write one such as \"127.0.0.1:7501\" (where this node listens for the others)",
                        quoted(&node.address)
                    ),
                )
            })?;
            nodes.insert(node_name, NodeConfig { address });
        }
        let tls = match raw.tls {
            Some(tls) => Some(ClusterTls {
                cert: self.local_path(&tls.cert, &["cluster", "tls", "cert"])?,
                key: self.local_path(&tls.key, &["cluster", "tls", "key"])?,
                ca: self.local_path(&tls.ca, &["cluster", "tls", "ca"])?,
            }),
            None => None,
        };
        Ok(ClusterConfig {
            cookie: raw.cookie,
            nodes,
            tls,
        })
    }

    /// `[budgets]`: each cap with a limit, each team table a configured team (or `default`).
    fn budgets(
        &self,
        raw: RawBudgets,
        teams: &BTreeMap<TeamName, TeamConfig>,
    ) -> Result<Budgets, ConfigError> {
        let day_offset_minutes = match &raw.day {
            Some(day) => budget::parse_day_offset(day)
                .map_err(|message| self.invalid(&["budgets", "day"], message))?,
            None => 0,
        };
        let session = self.cap(raw.session, &["budgets", "session"])?;
        let node_daily = self.cap(raw.node_daily, &["budgets", "node_daily"])?;
        let mut team_caps = BTreeMap::new();
        for (name, caps) in raw.teams {
            let known = name == budget::DEFAULT_TEAM
                || TeamName::new(&name).is_ok_and(|team| teams.contains_key(&team));
            if !known {
                return Err(self.invalid(
                    &["budgets", "teams", name.as_str()],
                    format!(
                        "names team {}, which is not in [teams]; correct the name, add the team, or use [budgets.teams.default] for every team",
                        quoted(&name)
                    ),
                ));
            }
            let at = |key: &'static str| ["budgets", "teams", name.as_str(), key];
            let caps = budget::TeamCaps {
                as_sender: self.cap(caps.as_sender, &at("as_sender"))?,
                as_receiver: self.cap(caps.as_receiver, &at("as_receiver"))?,
            };
            team_caps.insert(name, caps);
        }
        Ok(Budgets {
            day_offset_minutes,
            session,
            node_daily,
            teams: team_caps,
        })
    }

    /// A cap, which must set `usd`, `tokens` or both.
    fn cap(&self, raw: Option<RawCap>, at: &[&str]) -> Result<Option<budget::Cap>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        if raw.usd.is_none() && raw.tokens.is_none() {
            return Err(self.invalid(
                at,
                "sets no limit; give `usd`, `tokens` or both, such as { usd = 5.0 }, or remove it"
                    .to_owned(),
            ));
        }
        Ok(Some(budget::Cap {
            usd: raw.usd,
            tokens: raw.tokens,
        }))
    }

    /// A team's `node`: one of `[cluster.nodes]`, and not beside `remote` (a team is reached
    /// either through the node that hosts it or over ssh).
    fn team_node(
        &self,
        name: &str,
        node: Option<String>,
        remote: bool,
        cluster: Option<&ClusterConfig>,
    ) -> Result<Option<NodeName>, ConfigError> {
        let Some(node) = node else {
            return Ok(None);
        };
        let at = ["teams", name, "node"];
        let Some(cluster) = cluster else {
            return Err(self.invalid(
                &at,
                format!(
                    "names node {} but the file has no [cluster] section; add [cluster] with a cookie and [cluster.nodes.{}], or remove `node`",
                    quoted(&node),
                    clip(&node)
                ),
            ));
        };
        let Some((node_name, _)) = cluster.node(&node) else {
            let known: Vec<&str> = cluster.nodes.keys().map(NodeName::as_str).collect();
            return Err(self.invalid(
                &at,
                format!(
                    "names node {}, which is not in [cluster.nodes] ({}); correct the name or add the node",
                    quoted(&node),
                    known.join(", ")
                ),
            ));
        };
        if remote {
            return Err(self.invalid(
                &at,
                "is set beside `remote`; a team is reached through the node that hosts it or over ssh, not both: remove one".to_owned(),
            ));
        }
        Ok(Some(node_name.clone()))
    }

    fn team(
        &self,
        name: &str,
        raw: RawTeam,
        cluster: Option<&ClusterConfig>,
    ) -> Result<TeamConfig, ConfigError> {
        let at = |key: &str| ["teams", name, key].map(str::to_owned);
        let node = self.team_node(name, raw.node, raw.remote.is_some(), cluster)?;
        let remote = match raw.remote {
            Some(remote) => Some(self.remote(name, remote)?),
            None => None,
        };
        let path = if remote.is_some() {
            self.remote_path(&raw.path, &at("path"))?
        } else {
            self.local_path(&raw.path, &at("path"))?
        };
        let mcp_config = match raw.mcp_config {
            Some(value) => Some(self.mcp_config(value, remote.is_some(), &at("mcp_config"))?),
            None => None,
        };
        Ok(TeamConfig {
            path,
            description: raw.description,
            agent: raw.agent,
            idle_timeout: raw.idle_timeout,
            session_init_timeout: raw.session_init_timeout,
            tool_timeout: raw.tool_timeout,
            turn_timeout: raw.turn_timeout,
            grant_permission: raw.grant_permission,
            allowed_tools: raw.allowed_tools,
            disallowed_tools: raw.disallowed_tools,
            append_system_prompt: raw.append_system_prompt,
            mcp_config,
            node,
            remote,
        })
    }

    /// `mcp_config`: a path, JSON text, or a TOML table (turned into JSON).
    fn mcp_config(
        &self,
        value: toml::Value,
        remote: bool,
        at: &[String],
    ) -> Result<McpConfig, ConfigError> {
        const FIX: &str = "write a path to a JSON file, JSON text such as '{\"mcpServers\": {\"name\": {\"command\": \"…\"}}}', or a table with an `mcpServers` table";
        let json = match value {
            toml::Value::String(text) if text.trim_start().starts_with('{') => {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| self.invalid(at, format!("is not valid JSON ({e}); {FIX}")))?
            }
            toml::Value::String(text) if text.trim().is_empty() => {
                return Err(self.invalid(at, format!("is empty; {FIX}")));
            }
            toml::Value::String(text) => {
                let path = if remote {
                    self.remote_path(&text, at)?
                } else {
                    self.local_path(&text, at)?
                };
                return Ok(McpConfig::File(path));
            }
            table @ toml::Value::Table(_) => serde_json::to_value(table)
                .map_err(|e| self.invalid(at, format!("cannot be turned into JSON ({e})")))?,
            other => {
                return Err(self.invalid(
                    at,
                    format!(
                        "is a {}, not a path, JSON text or a table; {FIX}",
                        other.type_str()
                    ),
                ));
            }
        };
        if !json
            .get("mcpServers")
            .is_some_and(serde_json::Value::is_object)
        {
            return Err(self.invalid(at, format!("has no `mcpServers` object; {FIX}")));
        }
        Ok(McpConfig::Inline(json.to_string()))
    }

    fn remote(&self, name: &str, raw: RawRemote) -> Result<RemoteConfig, ConfigError> {
        let at = |key: &str| ["teams", name, "remote", key].map(str::to_owned);
        let destination = raw.destination.trim();
        if destination.starts_with('-') || destination.contains(char::is_whitespace) {
            return Err(self.invalid(
                &at("destination"),
                format!(
                    "{} is not an ssh destination; write one host such as \"user@host\" (put ssh flags in `extra_args` or `options`)",
                    quoted(destination)
                ),
            ));
        }
        if let Some(bad) = raw
            .options
            .iter()
            .find(|o| o.trim().is_empty() || o.trim_start().starts_with('-'))
        {
            return Err(self.invalid(
                &at("options"),
                format!(
                    "{} is not an ssh option; write each as \"Name=value\", such as \"ProxyJump=bastion\" (iris adds the -o)",
                    quoted(bad)
                ),
            ));
        }
        let identity = match raw.identity {
            Some(identity) => Some(self.local_path(&identity, &at("identity"))?),
            None => None,
        };
        Ok(RemoteConfig {
            destination: destination.to_owned(),
            port: raw.port,
            identity,
            options: raw.options,
            extra_args: raw.extra_args,
        })
    }

    /// A local path: relative ones are resolved against the configuration file's directory.
    fn local_path<S: AsRef<str>>(&self, written: &str, at: &[S]) -> Result<PathBuf, ConfigError> {
        self.no_tilde(written, at)?;
        let path = Path::new(written);
        let joined = if path.is_absolute() {
            path.to_owned()
        } else {
            self.dir.join(path)
        };
        // Drops `.` components and doubled separators; `..` is kept, because resolving it
        // lexically would be wrong across symlinks.
        Ok(joined.components().collect())
    }

    /// A path on a remote host: it must be absolute, since it cannot be resolved here.
    fn remote_path<S: AsRef<str>>(&self, written: &str, at: &[S]) -> Result<PathBuf, ConfigError> {
        self.no_tilde(written, at)?;
        let path = Path::new(written);
        if !path.is_absolute() {
            return Err(self.invalid(
                at,
                format!(
                    "{} is relative, but a remote team's path is on the remote host and cannot be resolved here; write it absolute, such as \"/home/me/project\"",
                    quoted(written)
                ),
            ));
        }
        Ok(path.components().collect())
    }

    fn no_tilde<S: AsRef<str>>(&self, written: &str, at: &[S]) -> Result<(), ConfigError> {
        if written.starts_with('~') {
            return Err(self.invalid(
                at,
                format!(
                    "{} starts with `~`, which iris does not expand; write an absolute path, one relative to the configuration file's directory, or use \"${{HOME}}/…\"",
                    quoted(written)
                ),
            ));
        }
        Ok(())
    }

    fn invalid<S: AsRef<str>>(&self, at: &[S], message: String) -> ConfigError {
        let segments: Vec<Segment> = at
            .iter()
            .map(|s| Segment::Key(s.as_ref().to_owned()))
            .collect();
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key_path: key_path::render(&segments),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn team_tables_are_spelled_as_toml_spells_them() {
        let table = |name: &str| crate::config::team_table(&TeamName::new(name).unwrap());
        assert_eq!(table("alpha"), "teams.alpha");
        assert_eq!(table("b.c"), "teams.\"b.c\"");
        assert_eq!(table("me@host"), "teams.\"me@host\"");
        // What the hint says to add loads as that team.
        let text = format!("[{}]\npath = \"/p\"\n", table("b.c"));
        let config = Config::from_toml_str(&text, Path::new("/etc"), "t", &no_env).unwrap();
        assert!(config.team(&TeamName::new("b.c").unwrap()).is_some());
    }

    #[test]
    fn a_device_is_refused_without_reading_it() {
        // /dev/zero would give a gigabyte of NULs to a reader that does not check.
        let e = load_file(Path::new("/dev/zero"), &no_env).unwrap_err();
        assert!(
            matches!(&e, ConfigError::NotAFile { kind, .. } if kind.contains("character device")),
            "{e:?}"
        );
        assert!(e.to_string().contains("/dev/zero"), "{e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("iris.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Nobody ever writes to it: a blocking open would wait forever.
        let e = load_file(&fifo, &no_env).unwrap_err();
        assert!(
            matches!(&e, ConfigError::NotAFile { kind, .. } if kind.contains("FIFO")),
            "{e:?}"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("iris.toml");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_CONFIG_LEN + 1).unwrap();
        let e = load_file(&big, &no_env).unwrap_err();
        assert!(matches!(e, ConfigError::TooLarge { .. }), "{e:?}");
        assert!(e.to_string().contains("larger than"), "{e}");
        // At the limit is fine (as far as size goes).
        std::fs::write(&big, format!("# {}\n", "x".repeat(1000))).unwrap();
        load_file(&big, &no_env).unwrap();
    }
}
