//! The typed configuration: settings, database, agent command and teams.
//!
//! Every value here has been interpolated, coerced and validated by the loader, and every path is
//! absolute. [`Settings`], [`AgentConfig`] and [`AgentOverride`] deserialize directly (with the
//! same coercions as the loader); the types that hold paths are built by the loader only.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::compaction::CompactionPolicy;
use crate::config::coerce;
use crate::config::containment::ContainmentSetting;

/// `[settings]`: timeouts and limits of the runtime. Defaults are the original's where it had the
/// setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How long an agent process may take to start and answer its first message. Default 20s.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub spawn_timeout: Duration,
    /// How long a turn may go without any sign of progress before the agent is killed as
    /// stalled. A turn is making progress while the agent prints events, while one of its tool
    /// calls is open (within `tool_timeout`), or while its processes use CPU. Default 120s.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub response_timeout: Duration,
    /// How long an open tool call (a `tool_use` without its `tool_result`) counts as progress,
    /// from when the call opened: a tool that runs longer must show output or CPU use to keep
    /// its turn alive. Per-team override: `[teams.NAME] tool_timeout`. Default 30m.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub tool_timeout: Duration,
    /// The longest a turn may take in all, whatever its progress; `None` (written `"off"`, the
    /// default) sets no such cap. Per-team override: `[teams.NAME] turn_timeout`.
    #[serde(
        deserialize_with = "coerce::opt_duration_or_off",
        serialize_with = "serialize_limit"
    )]
    pub turn_timeout: Option<Duration>,
    /// How long an idle agent process is kept before it is stopped. Default 1h.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub idle_timeout: Duration,
    /// How long the agent may take to start a new conversation (spawn and handshake with
    /// `--session-id`); resuming one is bounded by `spawn_timeout`. Default 30s.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub session_init_timeout: Duration,
    /// How often live agent processes are checked. Default 30s.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub health_check_interval: Duration,
    /// How long an idle session actor stays in memory before it is passivated. Default 5m.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub passivate_after: Duration,
    /// The most agent processes alive at once. Default 10.
    #[serde(deserialize_with = "coerce::positive")]
    pub max_processes: NonZeroUsize,
    /// The most turns waiting in one session's queue. A tell that finds it full waits for room
    /// within its own wait limit; only a caller that asked not to wait is refused (`QUEUE_FULL`).
    /// Default 64.
    #[serde(deserialize_with = "coerce::positive")]
    pub queue_depth: NonZeroUsize,
    /// How many turns the ledger keeps per session; older ones are pruned. Default 200.
    #[serde(deserialize_with = "coerce::positive")]
    pub turn_retention: NonZeroUsize,
    /// The most bytes of a message and of a result text kept in the turn ledger; longer text is
    /// cut on a character boundary and flagged as truncated. Default 16384.
    #[serde(deserialize_with = "coerce::positive")]
    pub turn_text_limit: NonZeroUsize,
    /// A session whose agent crashes more than `crash_limit` times within `crash_window` goes to
    /// status `error`. Default 3.
    #[serde(deserialize_with = "coerce::positive")]
    pub crash_limit: NonZeroUsize,
    /// The window over which agent crashes are counted against `crash_limit`. Default 60s.
    #[serde(
        deserialize_with = "coerce::duration",
        serialize_with = "humantime_serde::serialize"
    )]
    pub crash_window: Duration,
    /// When a new conversation's transcript is created. Default [`SessionInit::Eager`].
    pub session_init: SessionInit,
    /// `[settings.compaction]`: when a conversation should be compacted.
    #[serde(deserialize_with = "compaction")]
    pub compaction: CompactionPolicy,
    /// How each agent and everything it starts is held: `auto` (the default: a cgroup v2 per
    /// agent where the hierarchy is writable, else a subreaper), `cgroup`, `subreaper` or
    /// `process-group`.
    pub containment: ContainmentSetting,
}

impl Settings {
    /// The default `max_processes`.
    pub const DEFAULT_MAX_PROCESSES: NonZeroUsize = non_zero(10);
    /// The default `queue_depth`: room for a burst from many callers at once (tells that find
    /// the queue full wait for room anyway; see [`Settings::queue_depth`]).
    pub const DEFAULT_QUEUE_DEPTH: NonZeroUsize = non_zero(64);
    /// The default `turn_retention`.
    pub const DEFAULT_TURN_RETENTION: NonZeroUsize = non_zero(200);
    /// The default `turn_text_limit`, in bytes.
    pub const DEFAULT_TURN_TEXT_LIMIT: NonZeroUsize = non_zero(16 * 1024);
    /// The default `crash_limit`.
    pub const DEFAULT_CRASH_LIMIT: NonZeroUsize = non_zero(3);
    /// The default `crash_window`.
    pub const DEFAULT_CRASH_WINDOW: Duration = Duration::from_secs(60);
    /// The default `tool_timeout`.
    pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            spawn_timeout: Duration::from_secs(20),
            response_timeout: Duration::from_secs(120),
            tool_timeout: Self::DEFAULT_TOOL_TIMEOUT,
            turn_timeout: None,
            idle_timeout: Duration::from_secs(60 * 60),
            session_init_timeout: Duration::from_secs(30),
            health_check_interval: Duration::from_secs(30),
            passivate_after: Duration::from_secs(5 * 60),
            max_processes: Self::DEFAULT_MAX_PROCESSES,
            queue_depth: Self::DEFAULT_QUEUE_DEPTH,
            turn_retention: Self::DEFAULT_TURN_RETENTION,
            turn_text_limit: Self::DEFAULT_TURN_TEXT_LIMIT,
            crash_limit: Self::DEFAULT_CRASH_LIMIT,
            crash_window: Self::DEFAULT_CRASH_WINDOW,
            session_init: SessionInit::default(),
            compaction: CompactionPolicy::default(),
            containment: ContainmentSetting::default(),
        }
    }
}

/// A limit that may be switched off: a duration, or `"off"`.
fn serialize_limit<S: Serializer>(limit: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match limit {
        Some(limit) => humantime_serde::serialize(limit, s),
        None => s.serialize_str("off"),
    }
}

/// A team's override of a limit that may be switched off: absent (skipped), a duration, or
/// `"off"`.
fn serialize_limit_override<S: Serializer>(
    limit: &Option<Option<Duration>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match limit {
        Some(limit) => serialize_limit(limit, s),
        None => s.serialize_none(),
    }
}

const fn non_zero(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => NonZeroUsize::MIN,
    }
}

/// `[settings.compaction]` as written, with coercion; becomes a [`CompactionPolicy`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompaction {
    #[serde(default, deserialize_with = "opt_whole")]
    max_messages: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole")]
    aged_messages: Option<u64>,
    #[serde(default, deserialize_with = "coerce::opt_duration")]
    max_age: Option<Duration>,
}

fn opt_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    coerce::whole(d).map(Some)
}

fn compaction<'de, D: Deserializer<'de>>(d: D) -> Result<CompactionPolicy, D::Error> {
    let raw = RawCompaction::deserialize(d)?;
    let default = CompactionPolicy::default();
    Ok(CompactionPolicy {
        max_messages: raw.max_messages.unwrap_or(default.max_messages),
        aged_messages: raw.aged_messages.unwrap_or(default.aged_messages),
        max_age: raw.max_age.unwrap_or(default.max_age),
    })
}

/// When the transcript of a new conversation is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionInit {
    /// When the conversation is created (the original's behaviour).
    #[default]
    Eager,
    /// When its first message is sent.
    Lazy,
}

/// A team's MCP servers, as the agent's `--mcp-config` takes them. Serializes as that value (a
/// path or the JSON text), which loads back to the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpConfig {
    /// A JSON file (`{"mcpServers": {…}}`). A local team's relative path is resolved against
    /// the configuration file's directory; a remote team's must be absolute (on its host).
    File(PathBuf),
    /// The JSON itself, written inline (as a JSON string or a TOML table), checked to be an
    /// object with an `mcpServers` object.
    Inline(String),
}

impl McpConfig {
    /// The value of `--mcp-config`: the path, or the JSON text.
    pub fn as_arg(&self) -> std::borrow::Cow<'_, str> {
        match self {
            McpConfig::File(path) => path.to_string_lossy(),
            McpConfig::Inline(json) => std::borrow::Cow::Borrowed(json),
        }
    }
}

impl Serialize for McpConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_arg())
    }
}

/// How the agent handles a tool-permission request for a team.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantPermission {
    /// Grant every request.
    Yes,
    /// Deny every request.
    No,
    /// Ask the operator (the default, as in the original's configuration loader).
    #[default]
    Ask,
    /// Forward the request to the team that sent the message.
    Forward,
}

/// Where the session database lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DatabaseLocation {
    /// A redb file at this absolute path.
    File(PathBuf),
    /// In memory only: everything is lost when iris stops.
    InMemory,
}

impl DatabaseLocation {
    /// The default database path, relative to the configuration file's directory.
    pub const DEFAULT_PATH: &'static str = "data/iris.redb";

    /// The file path, if the database is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DatabaseLocation::File(path) => Some(path),
            DatabaseLocation::InMemory => None,
        }
    }
}

/// Serialized the way it is written: `{ path = "…" }` or `{ in_memory = true }`.
impl Serialize for DatabaseLocation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("DatabaseLocation", 1)?;
        match self {
            DatabaseLocation::File(path) => s.serialize_field("path", path)?,
            DatabaseLocation::InMemory => s.serialize_field("in_memory", &true)?,
        }
        s.end()
    }
}

/// `[agent]`: the agent command every team runs, unless the team overrides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The executable, looked up on `PATH` if it has no `/`. Default `claude`.
    #[serde(deserialize_with = "coerce::non_empty")]
    pub command: String,
    /// Arguments placed before the ones iris adds. Default none.
    pub args: Vec<String>,
    /// Extra environment variables for the agent process.
    #[serde(deserialize_with = "coerce::env_map")]
    pub env: BTreeMap<String, String>,
}

impl AgentConfig {
    /// The default agent command.
    pub const DEFAULT_COMMAND: &'static str = "claude";
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            command: Self::DEFAULT_COMMAND.to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
        }
    }
}

/// `[teams.NAME.agent]`: a team's changes to [`AgentConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentOverride {
    /// Replaces the command when set.
    #[serde(
        deserialize_with = "coerce::opt_non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<String>,
    /// Replaces the arguments when set (an empty list clears them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Merged over the base environment; the team's value wins.
    #[serde(
        deserialize_with = "coerce::env_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
}

impl AgentOverride {
    /// Whether this override changes nothing.
    pub fn is_empty(&self) -> bool {
        self.command.is_none() && self.args.is_none() && self.env.is_empty()
    }

    /// `base` with this override applied: the command and the arguments are replaced if given,
    /// the environment is merged with this override's values winning.
    pub fn apply(&self, base: &AgentConfig) -> AgentConfig {
        let mut env = base.env.clone();
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        AgentConfig {
            command: self.command.clone().unwrap_or_else(|| base.command.clone()),
            args: self.args.clone().unwrap_or_else(|| base.args.clone()),
            env,
        }
    }
}

/// `[teams.NAME.remote]`: run the team's agent on another machine over ssh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteConfig {
    /// The ssh destination, such as `user@host` or a `Host` alias from `~/.ssh/config`.
    pub destination: String,
    /// The ssh port (`-p`); ssh's default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The private key (`-i`), an absolute local path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// `-o` options, such as `ProxyJump=bastion`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Further ssh arguments, placed before the destination.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
}

/// `[teams.NAME]`: one project directory and how its agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamConfig {
    /// The project directory, absolute. For a local team a relative path in the file is resolved
    /// against the configuration file's directory; a remote team's path is on the remote host and
    /// must be written absolute. Existence is checked at run time, not here.
    pub path: PathBuf,
    /// What the team works on. Default empty.
    pub description: String,
    /// Changes to the `[agent]` command for this team.
    #[serde(skip_serializing_if = "AgentOverride::is_empty")]
    pub agent: AgentOverride,
    /// Overrides `settings.idle_timeout`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    /// Overrides `settings.session_init_timeout`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_init_timeout: Option<Duration>,
    /// Overrides `settings.tool_timeout`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub tool_timeout: Option<Duration>,
    /// Overrides `settings.turn_timeout`: `Some(None)` (written `"off"`) removes the cap for
    /// this team, `Some(Some(d))` sets its own.
    #[serde(
        serialize_with = "serialize_limit_override",
        skip_serializing_if = "Option::is_none"
    )]
    pub turn_timeout: Option<Option<Duration>>,
    /// How tool-permission requests are handled. Default [`GrantPermission::Ask`].
    pub grant_permission: GrantPermission,
    /// Tools the agent may use without asking.
    pub allowed_tools: Vec<String>,
    /// Tools the agent may not use.
    pub disallowed_tools: Vec<String>,
    /// Text appended to the agent's system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub append_system_prompt: Option<String>,
    /// MCP servers for the agent, passed as `--mcp-config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_config: Option<McpConfig>,
    /// The cluster node that hosts this team's directory (`[cluster.nodes]`); `None` for a team
    /// served by whichever node loads the configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<crate::config::cluster::NodeName>,
    /// Set when the agent runs on another machine over ssh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteConfig>,
}

impl TeamConfig {
    /// A local team at `path` (which should be absolute) with every other setting at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TeamConfig {
            path: path.into(),
            description: String::new(),
            agent: AgentOverride::default(),
            idle_timeout: None,
            session_init_timeout: None,
            tool_timeout: None,
            turn_timeout: None,
            grant_permission: GrantPermission::default(),
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            append_system_prompt: None,
            mcp_config: None,
            node: None,
            remote: None,
        }
    }

    /// Whether the team's agent runs on another machine.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The agent command for this team: `base` (the `[agent]` section) with the team's override.
    pub fn effective_agent(&self, base: &AgentConfig) -> AgentConfig {
        self.agent.apply(base)
    }

    /// The team's idle timeout, or the global one.
    pub fn effective_idle_timeout(&self, settings: &Settings) -> Duration {
        self.idle_timeout.unwrap_or(settings.idle_timeout)
    }

    /// The team's session-initialisation timeout, or the global one.
    pub fn effective_session_init_timeout(&self, settings: &Settings) -> Duration {
        self.session_init_timeout
            .unwrap_or(settings.session_init_timeout)
    }

    /// The team's tool timeout, or the global one.
    pub fn effective_tool_timeout(&self, settings: &Settings) -> Duration {
        self.tool_timeout.unwrap_or(settings.tool_timeout)
    }

    /// The team's cap on a turn's total time (its own, or the global one); `None`: no cap.
    pub fn effective_turn_timeout(&self, settings: &Settings) -> Option<Duration> {
        self.turn_timeout.unwrap_or(settings.turn_timeout)
    }
}
