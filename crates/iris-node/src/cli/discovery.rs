//! Finding the configuration file, and `iris config init`'s starter file.
//!
//! Discovery takes the first of: `--config`, `$IRIS_CONFIG`, `./config/iris.toml` if it exists,
//! `$IRIS_HOME/config.toml` (`IRIS_HOME` defaults to `~/.iris`). A path given explicitly (the
//! first two) is used even if it does not exist, so a typo is reported rather than silently
//! replaced by another file.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use iris_core::ErrorCode;
use iris_core::config::Config;

use iris_api::ApiError;

/// The configuration file looked for in the current directory.
pub const LOCAL_CONFIG: &str = "config/iris.toml";

/// A commented starter configuration, written by `iris config init`. It loads as it is (no
/// teams yet), and its comments show how to add teams and switch agents.
pub const STARTER_CONFIG: &str = r#"# iris configuration, written by `iris config init`.
#
# Add your teams below, then run `iris config check` to see what iris makes of this file.
# Every key is optional unless marked REQUIRED. Unknown keys are errors, so a misspelling never
# goes unnoticed. Any string value may use ${VAR} or ${VAR:-default} from the environment.
# Relative paths are relative to this file's directory.
#
# The full reference, with every key explained, is config/iris.toml in the iris repository.

[settings]
# How long an agent may take to start and answer its first message.
# spawn_timeout = "20s"
# How long a turn may go without any sign of progress (output, an open tool call, CPU use)
# before its agent is killed as stalled.
# response_timeout = "120s"
# How long an open tool call counts as progress.
# tool_timeout = "30m"
# The longest a turn may take in all ("off": no cap).
# turn_timeout = "off"
# How long an idle agent process is kept before it is stopped.
# idle_timeout = "1h"
# The most agent processes alive at once.
# max_processes = 10

[database]
# The session database, relative to this file's directory.
path = "data/iris.redb"

# The agent every team runs, unless a team overrides it in [teams.NAME.agent].
[agent]
# The Claude Code CLI: a path, or a name looked up next to this file, on PATH, then next to the
# iris executable. To try iris without calling any model, use the built-in demo agent instead:
#   command = "fake-claude"
command = "claude"
# Arguments placed before the ones iris adds.
args = []

# One [teams.NAME] table per project directory. NAME may hold letters, digits, '_', '-', '@'
# and '.'. Uncomment and adapt:
#
# [teams.frontend]
# path = "/home/me/src/frontend"     # REQUIRED: the project directory
# description = "The web UI"
#
# [teams.backend]
# path = "/home/me/src/backend"
# description = "The API server"
# allowed_tools = ["Read", "Grep", "Glob"]
"#;

/// Where discovery looks, captured from the process (or built by hand in tests).
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// `--config`.
    pub explicit: Option<PathBuf>,
    /// `$IRIS_CONFIG`.
    pub env_config: Option<PathBuf>,
    /// The current directory.
    pub cwd: Option<PathBuf>,
    /// `$IRIS_HOME`, else `~/.iris`; `None` when neither is known.
    pub iris_home: Option<PathBuf>,
}

impl Places {
    /// This process's `--config` (given), environment and current directory.
    pub fn from_process(explicit: Option<&Path>) -> Places {
        Places {
            explicit: explicit.map(Path::to_owned),
            env_config: non_empty(std::env::var_os("IRIS_CONFIG")).map(PathBuf::from),
            cwd: std::env::current_dir().ok(),
            iris_home: iris_home(std::env::var_os("IRIS_HOME"), std::env::var_os("HOME")),
        }
    }

    /// The configuration file to load: the first place that applies (see the module docs).
    pub fn find(&self) -> Result<PathBuf, ApiError> {
        if let Some(path) = &self.explicit {
            return self.existing(path, "--config");
        }
        if let Some(path) = &self.env_config {
            return self.existing(path, "$IRIS_CONFIG");
        }
        let local = self.cwd.as_ref().map(|cwd| cwd.join(LOCAL_CONFIG));
        if let Some(local) = local.as_ref().filter(|p| p.is_file()) {
            return Ok(local.clone());
        }
        let home = self.home_config();
        if let Some(home) = home.as_ref().filter(|p| p.is_file()) {
            return Ok(home.clone());
        }
        Err(self.none_found(local.as_deref(), home.as_deref()))
    }

    /// Where `iris config init` writes by default: `$IRIS_HOME/config.toml`.
    pub fn home_config(&self) -> Option<PathBuf> {
        self.iris_home.as_ref().map(|home| home.join("config.toml"))
    }

    fn existing(&self, path: &Path, from: &str) -> Result<PathBuf, ApiError> {
        let path = match (&self.cwd, path.is_absolute()) {
            (Some(cwd), false) => cwd.join(path),
            _ => path.to_owned(),
        };
        if path.exists() {
            return Ok(path);
        }
        Err(config_error(format!(
            "the configuration file {} (from {from}) does not exist; check the path, or create a starter file there with `iris config init --path {}`",
            path.display(),
            path.display()
        )))
    }

    fn none_found(&self, local: Option<&Path>, home: Option<&Path>) -> ApiError {
        let shown = |path: Option<&Path>| match path {
            Some(path) => format!("{} (absent)", path.display()),
            None => "(unknown)".to_owned(),
        };
        let init_target = match home {
            Some(home) => format!(" writes a commented starter file to {}", home.display()),
            None => " --path PATH writes a commented starter file".to_owned(),
        };
        config_error(format!(
            "no configuration file found. Looked at: --config (not given); $IRIS_CONFIG (not set); ./{LOCAL_CONFIG}: {}; $IRIS_HOME/config.toml: {}. Run `iris config init`, which{init_target}, or pass --config PATH",
            shown(local),
            shown(home),
        ))
    }
}

/// `$IRIS_HOME`, else `$HOME/.iris`. Empty variables count as unset.
pub fn iris_home(iris_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    non_empty(iris_home)
        .map(PathBuf::from)
        .or_else(|| non_empty(home).map(|home| PathBuf::from(home).join(".iris")))
}

fn non_empty(value: Option<OsString>) -> Option<OsString> {
    value.filter(|v| !v.is_empty())
}

/// Finds and loads the configuration. Errors are `CONFIG_ERROR` with iris-core's messages (a
/// syntax error gives line and column; an unknown key names its full path).
pub fn load(explicit: Option<&Path>) -> Result<Config, ApiError> {
    load_from(&Places::from_process(explicit))
}

/// [`load`] from explicit places.
pub fn load_from(places: &Places) -> Result<Config, ApiError> {
    let path = places.find()?;
    Config::load(&path).map_err(|e| ApiError::coded(&e))
}

/// [`load`] for `iris node --node NAME`: `${IRIS_NODE}` in the file reads `node` when it is
/// given (the flag wins over the environment, as clap read it), else the environment.
pub fn load_as_node(explicit: Option<&Path>, node: Option<&str>) -> Result<Config, ApiError> {
    let path = Places::from_process(explicit).find()?;
    let env = |var: &str| match (var, node) {
        ("IRIS_NODE", Some(node)) => Some(node.to_owned()),
        _ => std::env::var(var).ok(),
    };
    Config::load_with_env(&path, &env).map_err(|e| ApiError::coded(&e))
}

fn config_error(message: String) -> ApiError {
    ApiError::new(ErrorCode::ConfigError, message)
}

/// Writes [`STARTER_CONFIG`] to `path` (creating its directory), else to `--config`'s path,
/// else to `$IRIS_HOME/config.toml`, and returns where it wrote. An existing file is replaced
/// only with `force`.
pub fn init(places: &Places, path: Option<&Path>, force: bool) -> Result<PathBuf, ApiError> {
    let target = match path.or(places.explicit.as_deref()) {
        Some(path) => match (&places.cwd, path.is_absolute()) {
            (Some(cwd), false) => cwd.join(path),
            _ => path.to_owned(),
        },
        None => places.home_config().ok_or_else(|| {
            config_error(
                "cannot tell where to write: neither IRIS_HOME nor HOME is set; pass --path PATH"
                    .to_owned(),
            )
        })?,
    };
    write_starter(&target, force)?;
    Ok(target)
}

fn write_starter(target: &Path, force: bool) -> Result<(), ApiError> {
    let io_error = |what: &str, e: std::io::Error| {
        config_error(format!(
            "cannot {what} {}: {e}; check the permissions, or pass --path to write elsewhere",
            target.display()
        ))
    };
    if target.is_dir() {
        return Err(config_error(format!(
            "{} is a directory; pass --path with a file name, such as {}",
            target.display(),
            target.join("config.toml").display()
        )));
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create the directory of", e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        // create_new, not a check then a write: two `init`s at once cannot both "win".
        options.create_new(true);
    }
    let mut file = options.open(target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ApiError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "{} already exists; pass --force to replace it, or --path to write elsewhere",
                    target.display()
                ),
            )
        } else {
            io_error("create", e)
        }
    })?;
    file.write_all(STARTER_CONFIG.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    struct Fixture {
        _root: tempfile::TempDir,
        cwd: PathBuf,
        home: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let cwd = root.path().join("work");
            let home = root.path().join("iris-home");
            std::fs::create_dir_all(&cwd).unwrap();
            Fixture {
                _root: root,
                cwd,
                home,
            }
        }

        fn places(&self) -> Places {
            Places {
                explicit: None,
                env_config: None,
                cwd: Some(self.cwd.clone()),
                iris_home: Some(self.home.clone()),
            }
        }

        fn file(&self, path: &Path) -> PathBuf {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
            path.to_owned()
        }
    }

    #[test]
    fn the_first_place_that_applies_wins() {
        let f = Fixture::new();
        let explicit = f.file(&f.cwd.join("mine.toml"));
        let from_env = f.file(&f.cwd.join("env.toml"));
        let local = f.file(&f.cwd.join(LOCAL_CONFIG));
        let home = f.file(&f.home.join("config.toml"));
        let mut places = f.places();
        places.explicit = Some("mine.toml".into());
        places.env_config = Some(from_env.clone());
        assert_eq!(places.find().unwrap(), explicit);
        places.explicit = None;
        assert_eq!(places.find().unwrap(), from_env);
        places.env_config = None;
        assert_eq!(places.find().unwrap(), local);
        std::fs::remove_file(&local).unwrap();
        assert_eq!(places.find().unwrap(), home);
    }

    #[test]
    fn an_explicit_path_that_does_not_exist_is_an_error_not_a_fallback() {
        let f = Fixture::new();
        f.file(&f.home.join("config.toml"));
        let mut places = f.places();
        places.env_config = Some(f.cwd.join("typo.toml"));
        let e = places.find().unwrap_err();
        assert_eq!(e.code().as_str(), "CONFIG_ERROR");
        assert!(e.error.message.contains("typo.toml"), "{e}");
        assert!(e.error.message.contains("$IRIS_CONFIG"), "{e}");
        assert!(e.error.message.contains("iris config init --path"), "{e}");
    }

    #[test]
    fn no_configuration_lists_the_places_looked_and_the_fix() {
        let f = Fixture::new();
        let e = f.places().find().unwrap_err();
        assert_eq!(e.code().as_str(), "CONFIG_ERROR");
        let message = &e.error.message;
        for needle in [
            "no configuration file found",
            "--config",
            "$IRIS_CONFIG",
            "config/iris.toml",
            &f.home.join("config.toml").display().to_string(),
            "iris config init",
        ] {
            assert!(message.contains(needle), "{needle:?} in {message}");
        }
    }

    #[test]
    fn iris_home_defaults_to_dot_iris_in_home() {
        assert_eq!(
            iris_home(Some("/x".into()), Some("/home/me".into())),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(
            iris_home(Some("".into()), Some("/home/me".into())),
            Some(PathBuf::from("/home/me/.iris"))
        );
        assert_eq!(iris_home(None, None), None);
    }

    #[test]
    fn the_starter_config_loads_cleanly() {
        let f = Fixture::new();
        let written = init(&f.places(), None, false).unwrap();
        assert_eq!(written, f.home.join("config.toml"));
        let config = Config::load_with_env(&written, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.teams().len(), 0);
        assert_eq!(config.agent().command, "claude");
        assert_eq!(
            config.database().path(),
            Some(f.home.join("data/iris.redb").as_path())
        );
        // Its commented team example loads too, once uncommented.
        let uncommented: String = STARTER_CONFIG
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[teams.")
                        || rest.starts_with("path =")
                        || rest.starts_with("description =")
                        || rest.starts_with("allowed_tools =") =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::from_toml_str(&uncommented, &f.home, "starter", &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(config.teams().len(), 2);
    }

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let f = Fixture::new();
        let target = f.cwd.join("nested/dir/iris.toml");
        assert_eq!(
            init(&f.places(), Some(Path::new("nested/dir/iris.toml")), false).unwrap(),
            target
        );
        std::fs::write(&target, "# mine\n").unwrap();
        let e = init(&f.places(), Some(&target), false).unwrap_err();
        assert_eq!(e.code().as_str(), "ALREADY_EXISTS");
        assert!(e.error.message.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "# mine\n");
        init(&f.places(), Some(&target), true).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), STARTER_CONFIG);
        // Without --path, --config names the file.
        let mut places = f.places();
        places.explicit = Some("from-flag.toml".into());
        assert_eq!(
            init(&places, None, false).unwrap(),
            f.cwd.join("from-flag.toml")
        );
        // A directory is not a file name.
        let e = init(&f.places(), Some(&f.cwd), true).unwrap_err();
        assert!(e.error.message.contains("directory"), "{e}");
    }
}
