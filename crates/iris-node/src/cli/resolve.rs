//! Resolving each team's agent command: an absolute path, the config dir, PATH, next to the
//! current executable, then the built-in demo agent.
//!
//! The runtime spawns agents by argv, so a command that names no file on disk would only fail
//! when a session first starts, deep inside a tell. Resolving every local team's command when the
//! configuration is loaded turns that into a configuration error up front, naming the team, the
//! command, every place looked, and the fix. Remote (ssh) teams are left alone: their command is
//! on the remote host.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use iris_core::config::Config;
use iris_core::{Coded, ErrorCode};

use iris_api::ApiError;

/// The name of the demo agent that the `iris` binary itself can play (`iris fake-claude …`).
pub const BUILTIN_DEMO_AGENT: &str = "fake-claude";

/// `teams.NAME` as the configuration spells it (`teams."b.c"` for a dotted name).
fn team_table(team: &str) -> String {
    match iris_core::TeamName::new(team) {
        Ok(name) => iris_core::config::team_table(&name),
        Err(_) => format!("teams.{}", iris_core::redact::quoted(team)),
    }
}

/// A local team's agent command that names no executable file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "team {team}: the agent command {command:?} was not found (looked {looked}); install it, or set `command` in [agent] (or [{}.agent]) to the absolute path of the agent executable",
    team_table(team)
)]
pub struct UnresolvedCommand {
    /// The team.
    pub team: String,
    /// The command as configured.
    pub command: String,
    /// Where it was looked for, in order, for the message.
    pub looked: String,
}

impl Coded for UnresolvedCommand {
    fn code(&self) -> ErrorCode {
        ErrorCode::ConfigError
    }
}

impl From<UnresolvedCommand> for ApiError {
    fn from(error: UnresolvedCommand) -> ApiError {
        ApiError::coded(&error)
    }
}

/// Where commands are looked for. [`Lookup::from_process`] takes them from this process; tests
/// build one by hand.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The configuration file's directory (relative commands are relative to it).
    pub config_dir: PathBuf,
    /// The `PATH` variable.
    pub path: Option<OsString>,
    /// The running executable (its directory is searched last; it is the built-in demo agent).
    pub current_exe: Option<PathBuf>,
}

/// What a command resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// An executable file.
    File(PathBuf),
    /// The demo agent built into the executable at this path: run it with `fake-claude` first.
    BuiltinDemo(PathBuf),
}

impl Lookup {
    /// Looks in `config_dir`, this process's `PATH` and next to this executable.
    pub fn from_process(config_dir: &Path) -> Lookup {
        Lookup {
            config_dir: config_dir.to_owned(),
            path: std::env::var_os("PATH"),
            current_exe: std::env::current_exe().ok(),
        }
    }

    /// Finds `command`: an absolute path as it is; otherwise relative to the config dir, then
    /// (for a bare name) on `PATH` and next to the current executable; then, for
    /// [`BUILTIN_DEMO_AGENT`], the demo agent built into the current executable. On failure,
    /// returns a description of where it looked.
    pub fn find(&self, command: &str) -> Result<Resolved, String> {
        let written = Path::new(command);
        if written.is_absolute() {
            return if is_executable(written) {
                Ok(Resolved::File(written.to_owned()))
            } else {
                Err(format!("at {}", written.display()))
            };
        }
        let mut looked = Vec::new();
        let in_config_dir = self.config_dir.join(written);
        if is_executable(&in_config_dir) {
            return Ok(Resolved::File(in_config_dir));
        }
        looked.push(format!("in the config dir {}", self.config_dir.display()));
        // A name with a `/` is a path, never searched for (as execvp does).
        let bare = written.components().count() == 1;
        if bare {
            if let Some(found) = self.on_path(written) {
                return Ok(Resolved::File(found));
            }
            looked.push("on PATH".to_owned());
            if let Some(dir) = self.exe_dir() {
                let beside = dir.join(written);
                if is_executable(&beside) {
                    return Ok(Resolved::File(beside));
                }
                looked.push(format!("next to iris in {}", dir.display()));
            }
        }
        if command == BUILTIN_DEMO_AGENT
            && let Some(exe) = &self.current_exe
        {
            return Ok(Resolved::BuiltinDemo(exe.clone()));
        }
        Err(looked.join(", "))
    }

    fn on_path(&self, name: &Path) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        std::env::split_paths(path)
            // An empty entry means the current directory to a shell; iris does not search it.
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    }

    fn exe_dir(&self) -> Option<&Path> {
        self.current_exe.as_deref().and_then(Path::parent)
    }
}

/// Resolves the agent command of every local team of `config` in place (see the module docs).
pub fn resolve_agents(config: &mut Config) -> Result<(), UnresolvedCommand> {
    let lookup = Lookup::from_process(config.config_dir());
    resolve_agents_with(config, &lookup)
}

/// [`resolve_agents`] with an explicit [`Lookup`].
pub fn resolve_agents_with(config: &mut Config, lookup: &Lookup) -> Result<(), UnresolvedCommand> {
    // A team another cluster node hosts is run there, with that machine's commands.
    let elsewhere: Vec<_> = config
        .team_names()
        .filter(|team| !config.hosts(team))
        .cloned()
        .collect();
    config.rewrite_agent_commands(|team, team_config, agent| {
        if team_config.is_remote() || elsewhere.contains(team) {
            return Ok(None);
        }
        match lookup.find(&agent.command) {
            Ok(Resolved::File(path)) => Ok(Some((
                path.to_string_lossy().into_owned(),
                agent.args.clone(),
            ))),
            Ok(Resolved::BuiltinDemo(exe)) => {
                let mut args = vec![BUILTIN_DEMO_AGENT.to_owned()];
                args.extend(agent.args.iter().cloned());
                Ok(Some((exe.to_string_lossy().into_owned(), args)))
            }
            Err(looked) => Err(UnresolvedCommand {
                team: team.to_string(),
                command: agent.command.clone(),
                looked,
            }),
        }
    })
}

/// Whether `path` is a regular file (after symlinks) that someone may execute.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use iris_core::TeamName;

    use super::*;

    fn executable(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    struct Fixture {
        _root: tempfile::TempDir,
        config_dir: PathBuf,
        path_dir: PathBuf,
        exe_dir: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let base = root.path().to_owned();
            let fixture = Fixture {
                config_dir: base.join("config"),
                path_dir: base.join("bin"),
                exe_dir: base.join("exe"),
                _root: root,
            };
            for dir in [&fixture.config_dir, &fixture.path_dir, &fixture.exe_dir] {
                std::fs::create_dir_all(dir).unwrap();
            }
            executable(&fixture.exe_dir.join("iris"));
            fixture
        }

        fn lookup(&self) -> Lookup {
            Lookup {
                config_dir: self.config_dir.clone(),
                path: Some(std::env::join_paths([&self.path_dir]).unwrap()),
                current_exe: Some(self.exe_dir.join("iris")),
            }
        }

        fn config(&self, agent: &str) -> Config {
            let text = format!(
                "[agent]\n{agent}\n[teams.alpha]\npath = \"alpha\"\n[teams.far]\npath = \"/p\"\nremote = {{ destination = \"h\" }}\n"
            );
            Config::from_toml_str(&text, &self.config_dir, "test.toml", &|_| None).unwrap()
        }
    }

    fn alpha() -> TeamName {
        TeamName::new("alpha").unwrap()
    }

    #[test]
    fn an_absolute_path_is_used_as_it_is() {
        let f = Fixture::new();
        let agent = f.path_dir.join("agent");
        executable(&agent);
        assert_eq!(
            f.lookup().find(agent.to_str().unwrap()),
            Ok(Resolved::File(agent.clone()))
        );
        // A missing absolute path is not searched for elsewhere.
        let missing = f.config_dir.join("nope");
        let looked = f.lookup().find(missing.to_str().unwrap()).unwrap_err();
        assert!(looked.contains(&missing.display().to_string()), "{looked}");
    }

    #[test]
    fn the_config_dir_comes_before_path_and_the_executables_dir() {
        let f = Fixture::new();
        for dir in [&f.config_dir, &f.path_dir, &f.exe_dir] {
            executable(&dir.join("agent"));
        }
        assert_eq!(
            f.lookup().find("agent"),
            Ok(Resolved::File(f.config_dir.join("agent")))
        );
        std::fs::remove_file(f.config_dir.join("agent")).unwrap();
        assert_eq!(
            f.lookup().find("agent"),
            Ok(Resolved::File(f.path_dir.join("agent")))
        );
        std::fs::remove_file(f.path_dir.join("agent")).unwrap();
        assert_eq!(
            f.lookup().find("agent"),
            Ok(Resolved::File(f.exe_dir.join("agent")))
        );
    }

    #[test]
    fn a_relative_path_is_relative_to_the_config_dir_only() {
        let f = Fixture::new();
        executable(&f.config_dir.join("bin/agent"));
        assert_eq!(
            f.lookup().find("bin/agent"),
            Ok(Resolved::File(f.config_dir.join("bin/agent")))
        );
        executable(&f.path_dir.join("tools/agent"));
        let looked = f.lookup().find("tools/agent").unwrap_err();
        assert!(!looked.contains("PATH"), "{looked}");
    }

    #[test]
    fn files_that_are_not_executable_do_not_count() {
        let f = Fixture::new();
        std::fs::write(f.config_dir.join("agent"), "data").unwrap();
        std::fs::create_dir(f.path_dir.join("agent")).unwrap();
        let looked = f.lookup().find("agent").unwrap_err();
        assert!(looked.contains("config dir"), "{looked}");
        assert!(looked.contains("PATH"), "{looked}");
        assert!(looked.contains("next to iris"), "{looked}");
    }

    #[test]
    fn fake_claude_falls_back_to_the_built_in_demo_agent() {
        let f = Fixture::new();
        assert_eq!(
            f.lookup().find("fake-claude"),
            Ok(Resolved::BuiltinDemo(f.exe_dir.join("iris")))
        );
        // A real fake-claude on disk wins.
        executable(&f.exe_dir.join("fake-claude"));
        assert_eq!(
            f.lookup().find("fake-claude"),
            Ok(Resolved::File(f.exe_dir.join("fake-claude")))
        );
        // Only that exact name gets the fallback.
        assert!(f.lookup().find("claude").is_err());
    }

    #[test]
    fn resolving_a_config_rewrites_local_teams_and_keeps_their_args() {
        let f = Fixture::new();
        let mut config = f.config("command = \"fake-claude\"\nargs = [\"--x\"]");
        resolve_agents_with(&mut config, &f.lookup()).unwrap();
        let agent = config.agent_for(&alpha()).unwrap();
        assert_eq!(agent.command, f.exe_dir.join("iris").to_str().unwrap());
        assert_eq!(agent.args, ["fake-claude", "--x"]);
        // The remote team is not resolved here.
        let far = config.agent_for(&TeamName::new("far").unwrap()).unwrap();
        assert_eq!(far.command, "fake-claude");

        executable(&f.path_dir.join("claude"));
        let mut config = f.config("command = \"claude\"\nargs = [\"--x\"]");
        resolve_agents_with(&mut config, &f.lookup()).unwrap();
        let agent = config.agent_for(&alpha()).unwrap();
        assert_eq!(agent.command, f.path_dir.join("claude").to_str().unwrap());
        assert_eq!(agent.args, ["--x"]);
    }

    #[test]
    fn a_missing_agent_names_the_team_the_command_where_and_the_fix() {
        let f = Fixture::new();
        let mut config = f.config("command = \"claude\"");
        let error = resolve_agents_with(&mut config, &f.lookup()).unwrap_err();
        assert_eq!(error.team, "alpha");
        let api: ApiError = error.into();
        assert_eq!(api.code().as_str(), "CONFIG_ERROR");
        let message = &api.error.message;
        for needle in [
            "team alpha",
            "\"claude\"",
            &f.config_dir.display().to_string(),
            "on PATH",
            &f.exe_dir.display().to_string(),
            "install it",
            "absolute path",
        ] {
            assert!(message.contains(needle), "{needle:?} in {message}");
        }
    }
}
