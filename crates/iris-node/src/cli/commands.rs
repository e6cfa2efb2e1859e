//! Running one parsed command line: load the configuration, pick the backend, make the
//! request, print the reply; plus the commands that are not runtime requests (`config`,
//! `version`) and the client-side `wake-all` with per-team progress.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use iris_core::TeamName;
use iris_core::config::Config;
use tokio::task::JoinSet;

use iris_api::error::{INTERNAL_ERROR, INTERRUPTED};
use iris_api::{
    ApiError, RawRequest, RawSessionTarget, Reply, Request, TellReply, TellStatus, WakeAllEntry,
};

use crate::backend::Backend;
use crate::cli::args::{
    BudgetCommand, Cli, ClusterCommand, Command, ConfigCommand, SessionsCommand,
};
use crate::cli::discovery::{self, Places};
use crate::cli::output::Output;
use crate::cli::resolve;

/// How many wakes `wake-all` runs at once (as the runtime's own `wake_all` does).
const WAKE_ALL_PARALLEL: usize = 4;
/// How long an embedded runtime that is still shared at exit gets to stop its agents.
const FALLBACK_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Prints `error` and returns its exit code.
pub fn fail(output: &Output, error: &ApiError) -> ExitCode {
    output.error(error);
    ExitCode::from(error.exit_code())
}

/// Runs one command line to its end; the error, if any, is still to be printed.
pub async fn run(cli: Cli, output: Output) -> Result<ExitCode, ApiError> {
    let config_path = cli.global.config.as_deref();
    match cli.command {
        Command::Version => {
            version(&output);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Init { path, force }) => {
            let places = Places::from_process(config_path);
            let written = discovery::init(&places, path.as_deref(), force)?;
            if output.is_json() {
                output.json_value(&serde_json::json!({ "path": written }));
            } else {
                output.text(&format!(
                    "Wrote a starter configuration to {}\nNext: add your teams to it (see its [teams.NAME] example), then run `iris config check`.\n",
                    written.display()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { show_values }) => {
            config_check(config_path, show_values, &output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cluster(ClusterCommand::Status) => {
            let config = discovery::load(config_path)?;
            let status = cluster_status(&config).await?;
            output.cluster_status(&status);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboard { open } => {
            let config = discovery::load(config_path)?;
            let url = dashboard_url(&config).await?;
            if output.is_json() {
                output.json_value(&serde_json::json!({ "url": url }));
            } else {
                output.text(&format!("{url}\n"));
            }
            if open {
                open_in_browser(&url).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Node { listen, node } => {
            let config = load_node_config(config_path, node.as_deref())?;
            crate::node::run(config, listen, output.is_json()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mcp { from } => {
            let config = load_config(config_path)?;
            let backend = Arc::new(Backend::connect(&config).await?);
            let served = crate::mcp::serve_stdio(backend.clone(), from).await;
            close(backend).await;
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WakeAll { from } => {
            let config = load_config(config_path)?;
            let from = TeamName::new(from).map_err(|e| ApiError::coded(&e))?;
            let backend = Arc::new(Backend::connect(&config).await?);
            let woken = interruptible(wake_all(&backend, from, &output)).await;
            close(backend).await;
            let Some(entries) = woken else {
                return Ok(interrupted(&output));
            };
            let entries = entries?;
            output.reply(&Reply::WokeAll(entries.clone()), None);
            Ok(entries
                .iter()
                .find_map(|entry| entry.error.as_ref())
                .map_or(ExitCode::SUCCESS, |error| {
                    ExitCode::from(error.code.exit_code())
                }))
        }
        command => {
            let (raw, headline) = request_of(command)?;
            let config = load_config(config_path)?;
            let request = Request::try_from(raw)?;
            let backend = Arc::new(Backend::connect(&config).await?);
            let spinner = match &request {
                Request::Tell { from, to, .. } => {
                    Some(output.spinner(format!("{to} is answering {from}…")))
                }
                _ => None,
            };
            let reply = interruptible(backend.execute(request))
                .await
                .map(|reply| reply.map(|reply| backend.for_this_command(reply)));
            drop(spinner);
            // Print before closing: stopping the agents can take a moment, the answer need not
            // wait for it.
            let code = match reply {
                Some(Ok(reply)) => print_reply(&output, &reply, headline.as_deref()),
                Some(Err(error)) => fail(&output, &error),
                None => interrupted(&output),
            };
            close(backend).await;
            Ok(code)
        }
    }
}

/// Prints a reply; a failed tell is printed as its reply under `--json` and as an error
/// otherwise, and exits with its error's code either way.
fn print_reply(output: &Output, reply: &Reply, headline: Option<&str>) -> ExitCode {
    let failure = match reply {
        Reply::Tell(tell) => failed_tell(tell),
        _ => None,
    };
    match failure {
        Some(error) if !output.is_json() => fail(output, &error),
        Some(error) => {
            output.reply(reply, headline);
            ExitCode::from(error.exit_code())
        }
        None => {
            output.reply(reply, headline);
            ExitCode::SUCCESS
        }
    }
}

fn failed_tell(tell: &TellReply) -> Option<ApiError> {
    if tell.status != TellStatus::Failed {
        return None;
    }
    Some(match &tell.error {
        Some(body) => ApiError::new(
            body.code,
            format!(
                "the turn {} → {} failed: {}",
                tell.from, tell.to, body.message
            ),
        ),
        None => ApiError::new(INTERNAL_ERROR, "the turn failed without a reason"),
    })
}

/// The request a command makes, and the sentence to print above its reply.
///
/// Its values are still text: [`RawRequest::try_from`] validates them once the configuration is
/// loaded, as every front end does.
fn request_of(command: Command) -> Result<(RawRequest, Option<String>), ApiError> {
    let arrow = |from: &str, to: &str| format!("{from} → {to}");
    Ok(match command {
        Command::Tell {
            from,
            to,
            message,
            timeout,
            no_wait,
            request_id,
        } => (
            RawRequest::Tell {
                from,
                to,
                message,
                timeout,
                no_wait,
                request_id,
            },
            None,
        ),
        Command::Sessions(sessions) => match sessions {
            SessionsCommand::List {
                from,
                to,
                status,
                limit,
            } => (
                RawRequest::SessionsList {
                    from,
                    to,
                    status,
                    limit,
                },
                None,
            ),
            SessionsCommand::Show { id_or_from, to } => {
                let target = match to {
                    Some(to) => RawSessionTarget::Pair {
                        from: id_or_from,
                        to,
                    },
                    None => RawSessionTarget::Id {
                        session_id: id_or_from,
                    },
                };
                (RawRequest::SessionsShow { target }, None)
            }
            SessionsCommand::Delete {
                session_id,
                transcript,
            } => (
                RawRequest::SessionsDelete {
                    session_id,
                    transcript,
                },
                None,
            ),
            SessionsCommand::Compact { session_id } => {
                let headline = format!("Compacted session {session_id}");
                (RawRequest::SessionsCompact { session_id }, Some(headline))
            }
            SessionsCommand::Reboot { from, to } => {
                let headline = format!("{}: rebooted with a new session", arrow(&from, &to));
                (RawRequest::SessionsReboot { from, to }, Some(headline))
            }
        },
        Command::Report { from, to, limit } => (
            RawRequest::Report {
                from,
                to,
                limit: Some(limit),
            },
            None,
        ),
        Command::Wake { from, to } => {
            let headline = format!("{}: awake", arrow(&from, &to));
            (RawRequest::Wake { from, to }, Some(headline))
        }
        Command::Sleep { from, to, force } => (RawRequest::Sleep { from, to, force }, None),
        Command::Cancel {
            from,
            to,
            drop_queue,
        } => (
            RawRequest::Cancel {
                from,
                to,
                drop_queue,
            },
            None,
        ),
        Command::Status { from, to } => (RawRequest::Status { from, to }, None),
        Command::Teams { from } => (RawRequest::Teams { from }, None),
        Command::Stats => (RawRequest::Stats, None),
        Command::Budget { action } => (
            match action.unwrap_or(BudgetCommand::Show) {
                BudgetCommand::Show => RawRequest::Budget,
                BudgetCommand::Set { key, usd, tokens } => {
                    RawRequest::BudgetSet { key, usd, tokens }
                }
                BudgetCommand::Reset { key } => RawRequest::BudgetReset { key },
            },
            None,
        ),
        Command::Version
        | Command::Config(_)
        | Command::Cluster(_)
        | Command::Dashboard { .. }
        | Command::Node { .. }
        | Command::Mcp { .. }
        | Command::WakeAll { .. } => {
            return Err(ApiError::new(
                INTERNAL_ERROR,
                "this command is not a runtime request (a bug in iris)",
            ));
        }
    })
}

fn version(output: &Output) {
    let version = env!("CARGO_PKG_VERSION");
    if output.is_json() {
        output.json_value(&serde_json::json!({ "name": "iris", "version": version }));
    } else {
        output.text(&format!("iris {version}\n"));
    }
}

/// The configuration, found, loaded, and with every local team's agent command resolved.
fn load_config(explicit: Option<&Path>) -> Result<Config, ApiError> {
    let mut config = discovery::load(explicit)?;
    resolve::resolve_agents(&mut config)?;
    Ok(config)
}

/// The configuration as node `node` of its cluster serves it (`${IRIS_NODE}` reads the name):
/// a configuration with a `[cluster]` needs the name of one of its nodes, and one without
/// refuses a name rather than ignore it.
fn load_node_config(explicit: Option<&Path>, node: Option<&str>) -> Result<Config, ApiError> {
    let config = discovery::load_as_node(explicit, node)?;
    let mut config = match (config.cluster(), node) {
        (None, None) => config,
        (Some(cluster), Some(name)) => match cluster.node(name) {
            Some((name, _)) => {
                let name = name.clone();
                config.serving_as(name)
            }
            None => return Err(unknown_node(&config, name)),
        },
        (Some(_), None) => return Err(unknown_node(&config, "")),
        (None, Some(name)) => {
            return Err(ApiError::new(
                iris_core::ErrorCode::ConfigError,
                format!(
                    "`--node {name}` (or $IRIS_NODE) names a cluster node, but {} has no [cluster] section; add one, or start the node without a name",
                    config.source()
                ),
            ));
        }
    };
    resolve::resolve_agents(&mut config)?;
    Ok(config)
}

/// `iris cluster status`: asked of the node running on the configuration's database.
async fn cluster_status(config: &Config) -> Result<crate::cluster::ClusterStatus, ApiError> {
    if config.cluster().is_none() {
        return Err(ApiError::new(
            iris_core::ErrorCode::ConfigError,
            format!(
                "{} has no [cluster] section: this iris runs alone",
                config.source()
            ),
        ));
    }
    let (found, db_path) = running_node(
        config,
        "start one with `iris node --node NAME` (with $IRIS_NODE set, `${IRIS_NODE}` in the configuration picks that node's database)",
    )
    .await?;
    let client =
        crate::http::client::Client::new(found, Some(crate::http::endpoint::path_for(&db_path)))?;
    client.cluster_status().await
}

/// The node that runs on the configuration's database (its endpoint, and the database), or
/// `NODE_UNAVAILABLE` ending with `start`, the way to start one.
async fn running_node(
    config: &Config,
    start: &str,
) -> Result<(crate::http::endpoint::Endpoint, std::path::PathBuf), ApiError> {
    let Some(db_path) = config.database().path() else {
        return Err(ApiError::new(
            iris_core::ErrorCode::ConfigError,
            "the database is in memory: no other process can reach its node; set [database] path",
        ));
    };
    match crate::http::endpoint::read_live(db_path).await? {
        Some(found) => Ok((found, db_path.to_path_buf())),
        None => Err(ApiError::new(
            iris_api::ApiCode::NodeUnavailable,
            format!("no iris node runs on {}; {start}", db_path.display()),
        )),
    }
}

/// The URL of the dashboard of the node that runs on the configuration's database, with the
/// node's token in the fragment.
async fn dashboard_url(config: &Config) -> Result<String, ApiError> {
    let (found, _) = running_node(
        config,
        "start one with `iris node`, then run `iris dashboard` again",
    )
    .await?;
    // A node listening on every address is reached, from here, on loopback.
    let host = match found.addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(format!(
        "http://{host}:{}/#token={}",
        found.addr.port(),
        found.token
    ))
}

/// Opens `url` with the desktop's opener (argv, no shell).
async fn open_in_browser(url: &str) -> Result<(), ApiError> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let status = tokio::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    // An opener that does not return in time is left to the desktop (it may be the browser
    // itself): it is not iris's to kill.
    match tokio::time::timeout(Duration::from_secs(10), status).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(ApiError::new(
            INTERNAL_ERROR,
            format!("{opener} could not open the dashboard ({status}); open the URL above by hand"),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            INTERNAL_ERROR,
            format!("cannot run {opener} ({e}); open the URL above by hand"),
        )),
        Err(_) => Err(ApiError::new(
            INTERNAL_ERROR,
            format!("{opener} did not return within 10 s; open the URL above by hand"),
        )),
    }
}

/// `name` is not a node of the configuration's cluster (or no name was given).
fn unknown_node(config: &Config, name: &str) -> ApiError {
    let known: Vec<&str> = config
        .cluster()
        .map(|c| c.nodes.keys().map(|n| n.as_str()).collect())
        .unwrap_or_default();
    let what = if name.is_empty() {
        "no node name was given".to_owned()
    } else {
        format!("it has no node {name:?}")
    };
    ApiError::new(
        iris_core::ErrorCode::ConfigError,
        format!(
            "{} has a [cluster], but {what}: start the node with `--node NAME` (or $IRIS_NODE) naming one of {}",
            config.source(),
            known.join(", ")
        ),
    )
}

/// `iris config check`: everything a start would check (syntax, keys, agent commands, team
/// directories), reporting every team problem at once; then the effective configuration.
fn config_check(
    explicit: Option<&Path>,
    show_values: bool,
    output: &Output,
) -> Result<(), ApiError> {
    let config = load_config(explicit)?;
    let problems = iris_runtime::startup::team_problems(&config);
    if !problems.is_empty() {
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(ApiError::new(
            iris_core::ErrorCode::ConfigError,
            format!("{}: {}", config.source(), messages.join("; ")),
        ));
    }
    if output.is_json() {
        let value = config
            .to_json_shown(show_values)
            .map_err(|e| ApiError::new(INTERNAL_ERROR, format!("cannot show the config: {e}")))?;
        output.json_value(&value);
        return Ok(());
    }
    let text = config
        .to_toml_string_shown(show_values)
        .map_err(|e| ApiError::new(iris_core::ErrorCode::ConfigError, e.to_string()))?;
    output.text(&format!("{}\n", text.trim_end()));
    if !show_values {
        output.note(
            "values from the environment, agents' env values and secrets are hidden; --show-values shows them",
        );
    }
    let teams: Vec<&str> = config.team_names().map(TeamName::as_str).collect();
    output.note(&format!(
        "ok: {} is valid ({} team(s): {})",
        config.source(),
        teams.len(),
        teams.join(", ")
    ));
    Ok(())
}

/// Runs `work` until it ends, or `None` when Ctrl-C comes first; then the caller closes the
/// backend, which stops an embedded runtime's agents gracefully (they run in process groups of
/// their own, so the terminal's SIGINT did not reach them).
async fn interruptible<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        _ = tokio::signal::ctrl_c() => None,
    }
}

/// Reports an interrupted command; its exit code is the shell's for SIGINT.
fn interrupted(output: &Output) -> ExitCode {
    output.error(&ApiError::new(
        INTERRUPTED,
        "interrupted; stopping the agents this command started (a turn already sent goes on only if a node runs it)",
    ));
    ExitCode::from(INTERRUPTED.exit_code())
}

/// `wake-all`, client side: one `wake` per other team, a few at a time, through the backend, so
/// it reports progress per team whether the runtime is embedded or a node.
async fn wake_all(
    backend: &Arc<Backend>,
    from: TeamName,
    output: &Output,
) -> Result<Vec<WakeAllEntry>, ApiError> {
    let teams = other_teams(backend, &from).await?;
    let progress = output.progress(teams.len() as u64);
    let mut entries: Vec<Option<WakeAllEntry>> = vec![None; teams.len()];
    let mut running = JoinSet::new();
    let mut next = 0;
    let mut in_flight: Vec<TeamName> = Vec::new();
    while next < teams.len() || !running.is_empty() {
        while next < teams.len() && running.len() < WAKE_ALL_PARALLEL {
            let (backend, from, to, index) =
                (backend.clone(), from.clone(), teams[next].clone(), next);
            in_flight.push(to.clone());
            running.spawn(async move {
                let result = backend
                    .execute(Request::Wake {
                        from,
                        to: to.clone(),
                    })
                    .await;
                (index, to, result)
            });
            next += 1;
        }
        let waking: Vec<&str> = in_flight.iter().map(TeamName::as_str).collect();
        progress.set_message(format!("waking {}", waking.join(", ")));
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (index, to, result) = joined
            .map_err(|e| ApiError::new(INTERNAL_ERROR, format!("a wake task failed: {e}")))?;
        in_flight.retain(|team| *team != to);
        let entry = wake_entry(to, result);
        progress.println(&match &entry.error {
            None => format!("✓ {} awake", entry.to),
            Some(error) => format!("✗ {}: {}", entry.to, error.message),
        });
        progress.inc();
        entries[index] = Some(entry);
    }
    Ok(entries.into_iter().flatten().collect())
}

/// Every team but `from`, as the backend's configuration has them; `from` must be one.
async fn other_teams(backend: &Backend, from: &TeamName) -> Result<Vec<TeamName>, ApiError> {
    let Reply::Teams(rows) = backend.execute(Request::Teams { from: None }).await? else {
        return Err(ApiError::new(
            INTERNAL_ERROR,
            "the backend answered a teams request with something else",
        ));
    };
    if !rows.iter().any(|row| row.name == *from) {
        return Err(ApiError::new(
            iris_core::ErrorCode::TeamNotFound,
            format!(
                "unknown team {from}: add [{}] to the configuration, or check the spelling",
                iris_core::config::team_table(from)
            ),
        ));
    }
    Ok(rows
        .into_iter()
        .map(|row| row.name)
        .filter(|name| name != from)
        .collect())
}

fn wake_entry(to: TeamName, result: Result<Reply, ApiError>) -> WakeAllEntry {
    match result {
        Ok(Reply::Session(session)) => WakeAllEntry {
            to,
            session: Some(session),
            error: None,
        },
        Ok(_) => WakeAllEntry {
            to,
            session: None,
            error: Some(ApiError::new(INTERNAL_ERROR, "unexpected reply to wake").error),
        },
        Err(error) => WakeAllEntry {
            to,
            session: None,
            error: Some(error.error),
        },
    }
}

/// Ends the backend: an embedded runtime stops its agents gracefully.
async fn close(backend: Arc<Backend>) {
    match Arc::try_unwrap(backend) {
        Ok(backend) => backend.close().await,
        Err(shared) => {
            // Something still holds the backend (a task that outlived its command); stop the
            // embedded runtime anyway, so no agent outlives the command.
            tracing::warn!("the backend is still in use at exit; stopping it anyway");
            if let Backend::Embedded(service) = &*shared {
                service.runtime().shutdown(FALLBACK_SHUTDOWN_GRACE).await;
            }
        }
    }
}
