//! The command line: every command, flag and help text (clap). Names and flags are a contract
//! scripts rely on; keep them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// iris: persistent conversations between coding-agent teams.
///
/// A team is a project directory with an agent CLI (Claude Code by default). When team FROM
/// talks to team TO, iris keeps one conversation for the pair FROM→TO and one supervised agent
/// process holding it. Every command runs the runtime in this process, unless an `iris node`
/// holds the database: then it asks that node.
#[derive(Debug, Parser)]
#[command(
    name = "iris",
    version,
    propagate_version = true,
    after_help = "Examples:\n  iris tell alpha beta \"What changed in the API?\"\n  iris sessions list --from alpha\n  iris node --listen 127.0.0.1:7419\n  claude mcp add iris -- iris mcp --from alpha\n\nConfiguration is found at --config, $IRIS_CONFIG, ./config/iris.toml, then $IRIS_HOME/config.toml\n(IRIS_HOME defaults to ~/.iris). `iris config init` writes a commented starter file.\n\nExit codes: 0 ok, 2 usage/config/validation, 3 not found, 4 busy, 5 agent failure or timeout,\n6 node unavailable, 1 anything else. With --json, errors print {\"error\":{\"code\",\"message\"}} on stdout."
)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The configuration file (else $IRIS_CONFIG, ./config/iris.toml, $IRIS_HOME/config.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON (one document on stdout; errors as {"error":{…}}).
    #[arg(long, global = true)]
    pub json: bool,
    /// Log level: error, warn, info, debug, trace, or a filter such as `iris_runtime=debug`
    /// (RUST_LOG is used when this is not given). Logs go to stderr.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a message from one team to another and print the reply.
    ///
    /// Waits for the whole reply unless --timeout or --async is given. With --timeout, prints
    /// what has streamed so far when the time is up (the turn goes on; `iris report` shows its
    /// end). With --async, prints the turn id at once.
    Tell {
        /// The sending team.
        from: String,
        /// The receiving team (its agent answers).
        to: String,
        /// The message.
        message: String,
        /// Stop waiting after this long, e.g. 30s, 2m (the turn keeps running).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "no_wait")]
        timeout: Option<Duration>,
        /// Return at once with the turn id.
        #[arg(long = "async")]
        no_wait: bool,
        /// Make the tell at most once: a retry with the same id (a UUID) gets the first
        /// attempt's turn and outcome instead of a second turn. Use it to retry a tell whose
        /// outcome is unknown (a node that stopped answering).
        #[arg(long, value_name = "UUID")]
        request_id: Option<String>,
    },
    /// List, show, delete, compact or reboot sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Show a pair's recent turns (newest first), from the turn ledger.
    Report {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
        /// How many turns.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Start the pair's agent now (creating its session if needed).
    Wake {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
    },
    /// Stop the pair's agent after its turn in flight (the session is kept).
    Sleep {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
        /// Interrupt the turn in flight instead of waiting for it.
        #[arg(long)]
        force: bool,
    },
    /// Interrupt the pair's turn in flight.
    Cancel {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
        /// Also cancel the turns waiting behind it.
        #[arg(long)]
        drop_queue: bool,
    },
    /// Wake the sessions from one team to every other team (4 at a time).
    WakeAll {
        /// The sending team.
        from: String,
    },
    /// Show what a pair's session is doing: awake or asleep, the turn in flight and what the
    /// agent does in it (streaming, running tool Bash for 3m12s, idle), turns queued.
    Status {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
    },
    /// List the configured teams, with the state of each pair from --from.
    Teams {
        /// Show the pair from this team to each team.
        #[arg(long, value_name = "TEAM")]
        from: Option<String>,
    },
    /// Totals: sessions by status and process state, live processes, turns.
    Stats,
    /// Spend against every budget cap ([budgets] in the configuration): per session, per team
    /// as sender and as receiver, and the node's daily total, with when each resets.
    ///
    /// A tell is refused with BUDGET_EXCEEDED (exit 4) once a cap that covers it is reached;
    /// at 80 % a warning is logged and the pair's turns are flagged. `iris budget set` raises
    /// (or lowers) a cap at run time, without a restart.
    Budget {
        /// What to do (default: show the budgets).
        #[command(subcommand)]
        action: Option<BudgetCommand>,
    },
    /// The cluster, as the running node of this database sees it.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print the URL of the running node's web dashboard (with `--open`, open it too).
    ///
    /// The dashboard shows the teams and their pairs, the turn in flight with its text as it
    /// streams, each pair's ledger, spend against budgets and the cluster's members, and can
    /// cancel, sleep and wake a pair. The URL carries the node's access token in its fragment
    /// (after `#`), which browsers never send to a server; treat it as the token itself.
    Dashboard {
        /// Open it in the desktop's browser (xdg-open, or open on macOS).
        #[arg(long)]
        open: bool,
    },
    /// Check or create the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a node in the foreground: HTTP control API, MCP at /mcp, /metrics, /healthz, the event
    /// stream at /api/v1/events and the dashboard at / (`iris dashboard` prints its URL).
    ///
    /// Stops gracefully on SIGINT or SIGTERM. While it runs, other iris commands on the same
    /// database talk to it (through the endpoint file it writes next to the database).
    Node {
        /// The address to listen on (loopback by default; every request needs the token).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Which node of the configuration's [cluster] this process is (required when the
        /// configuration has one). `${IRIS_NODE}` in the configuration reads it, so one file can
        /// give each node its own database: `path = "data/${IRIS_NODE}.redb"`.
        #[arg(long, value_name = "NAME", env = "IRIS_NODE")]
        node: Option<String>,
    },
    /// Serve MCP on stdin/stdout, for an agent CLI: `claude mcp add iris -- iris mcp --from TEAM`.
    Mcp {
        /// The team the tools speak for when a call gives no `fromTeam`.
        #[arg(long, value_name = "TEAM")]
        from: Option<String>,
    },
    /// Print the version.
    Version,
}

/// `iris sessions …`
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, most recently used first.
    List {
        /// Only sessions from this team.
        #[arg(long, value_name = "TEAM")]
        from: Option<String>,
        /// Only sessions to this team.
        #[arg(long, value_name = "TEAM")]
        to: Option<String>,
        /// Only sessions in this status: active, idle, compacting, archived, error, …
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Show one session: `show SESSION_ID` or `show FROM TO`.
    Show {
        /// A session id, or the sending team when TO is given.
        id_or_from: String,
        /// The receiving team.
        to: Option<String>,
    },
    /// Delete a session (its agent is stopped first).
    Delete {
        /// The session id.
        session_id: String,
        /// Also delete the agent's transcript of the conversation.
        #[arg(long)]
        transcript: bool,
    },
    /// Compact a session's conversation now.
    Compact {
        /// The session id.
        session_id: String,
    },
    /// Delete the pair's session and transcript, then start a new one.
    Reboot {
        /// The sending team.
        from: String,
        /// The receiving team.
        to: String,
    },
}

/// `iris budget …`
#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Show spend against every cap (the default).
    Show,
    /// Set a cap now, over the configuration's, on the running node (kept across restarts
    /// until `iris budget reset`).
    ///
    /// KEY is `session`, `node_daily`, `teams.NAME.as_sender` or `teams.NAME.as_receiver`
    /// (NAME a team, or `default`), as in [budgets]. Example: `iris budget set
    /// teams.beta.as_receiver --usd 30`.
    Set {
        /// Which cap.
        #[arg(value_name = "KEY")]
        key: String,
        /// At most this many US dollars.
        #[arg(long, value_name = "USD")]
        usd: Option<f64>,
        /// At most this many tokens (input, output and cache creation).
        #[arg(long, value_name = "N")]
        tokens: Option<u64>,
    },
    /// Remove a cap set with `iris budget set`: the configuration's applies again.
    Reset {
        /// Which cap.
        #[arg(value_name = "KEY")]
        key: String,
    },
}

/// `iris cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Each node: its state (up, suspected, down, config mismatch), address, last heartbeat,
    /// round-trip time and the teams it hosts. Asks the node running on this database (start
    /// one with `iris node --node NAME`; `$IRIS_NODE` picks the node's database).
    Status,
}

/// `iris config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective configuration.
    ///
    /// Checks what a start would: the TOML syntax, every key, each team's agent command (found
    /// as an absolute path, next to the config file, on PATH, or next to iris) and each team's
    /// directory. Prints the configuration as iris will use it: defaults filled in, paths and
    /// agent commands resolved (TOML, or JSON with --json). Values taken from the environment
    /// (`${VAR}`) are shown as written, agents' `env` values and secrets in URLs are hidden,
    /// unless --show-values.
    Check {
        /// Show every value as iris will use it, environment values and secrets included (the
        /// output then loads back as a configuration file).
        #[arg(long)]
        show_values: bool,
    },
    /// Write a commented starter configuration.
    Init {
        /// Where to write it (default: the --config path if given, else $IRIS_HOME/config.toml;
        /// IRIS_HOME defaults to ~/.iris).
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// Parses a duration such as `30s`, `2m`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| {
        format!("{e}: write a number with a unit, such as 500ms, 30s, 2m or 1h 30m")
    })?;
    if duration.is_zero() {
        return Err("the duration must be greater than zero, such as 30s".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_need_a_unit_and_a_length() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("30").unwrap_err().contains("unit"));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
