//! Shared support for the root's cross-crate tests: the fake-claude binary and scratch teams.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use iris::core::config::Config;

pub mod tmpfs;

/// The workspace's fake-claude binary (built by `cargo test --workspace`; built here if missing).
pub fn fake_claude() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("fake-claude", "fake-claude"))
}

/// The workspace's anthropic-mock binary (its `--mcp-stdio` mode is a small MCP server).
pub fn anthropic_mock() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("anthropic-mock", "anthropic-mock"))
}

/// A binary of this workspace, next to the test executable's directory; built if missing (a
/// test run of one package builds only that package's binaries).
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(bin);
    if !path.exists() {
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", package, "--bin", bin])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building {bin} failed");
    }
    path
}

/// A scratch world: team directories, a Claude config dir and a database location.
pub struct World {
    pub root: tempfile::TempDir,
    pub claude_home: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        World {
            root: tempfile::tempdir().unwrap(),
            claude_home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.path().join("data/iris.redb")
    }

    /// A config with `teams` (directories created), fake-claude as the agent, and `extra`
    /// appended to `[settings]`.
    pub fn config(&self, teams: &[&str], command: &Path, settings: &str) -> Config {
        let mut toml = format!(
            "[settings]\n{settings}\n[agent]\ncommand = {:?}\nenv = {{ CLAUDE_CONFIG_DIR = {:?} }}\n",
            command.display().to_string(),
            self.claude_home.path().display().to_string()
        );
        for team in teams {
            std::fs::create_dir_all(self.root.path().join("teams").join(team)).unwrap();
            writeln!(
                toml,
                "[teams.{team}]\npath = \"teams/{team}\"\ngrant_permission = \"yes\""
            )
            .unwrap();
        }
        Config::from_toml_str(&toml, self.root.path(), "test.toml", &|_| None).unwrap()
    }
}

impl World {
    /// Like [`World::config`], but each team is `(name, extra)`: `extra` is TOML appended to
    /// its `[teams.<name>]` table (for example `idle_timeout = "300ms"`; empty for none).
    pub fn config_with_teams(
        &self,
        teams: &[(&str, &str)],
        command: &Path,
        settings: &str,
    ) -> Config {
        config_in(
            self.root.path(),
            self.claude_home.path(),
            teams,
            command,
            settings,
        )
    }
}

/// The config [`World::config_with_teams`] builds, for a world whose directories are owned
/// elsewhere (a child process gets the parent's `root` and `claude_home` paths). Team
/// directories are created under `root/teams`.
pub fn config_in(
    root: &Path,
    claude_home: &Path,
    teams: &[(&str, &str)],
    command: &Path,
    settings: &str,
) -> Config {
    let mut toml = format!(
        "[settings]\n{settings}\n[agent]\ncommand = {:?}\nenv = {{ CLAUDE_CONFIG_DIR = {:?} }}\n",
        command.display().to_string(),
        claude_home.display().to_string()
    );
    for (team, extra) in teams {
        std::fs::create_dir_all(root.join("teams").join(team)).unwrap();
        writeln!(
            toml,
            "[teams.{team}]\npath = \"teams/{team}\"\ngrant_permission = \"yes\"\n{extra}"
        )
        .unwrap();
    }
    Config::from_toml_str(&toml, root, "test.toml", &|_| None).unwrap()
}

/// A runtime with fake-claude as the agent of `teams`, `settings` appended to `[settings]`, on
/// the world's database.
pub async fn start(world: &World, teams: &[&str], settings: &str) -> iris::runtime::Runtime {
    start_with_clock(world, teams, settings, iris::runtime::Clock::system()).await
}

/// [`start`], with the budgets' wall clock read from `clock`.
pub async fn start_with_clock(
    world: &World,
    teams: &[&str],
    settings: &str,
    clock: iris::runtime::Clock,
) -> iris::runtime::Runtime {
    let config = world.config(teams, fake_claude(), settings);
    let store = iris::store::Store::open(world.db_path()).unwrap();
    iris::runtime::Runtime::start_with_clock(config, store, clock)
        .await
        .unwrap()
}

/// A `[budgets] day` offset at which it is about noon now, so no budget day ends within a test.
#[allow(dead_code)]
pub fn offset_putting_now_at_noon() -> String {
    let minute_of_day = (iris::core::Timestamp::now().as_millis() / 60_000 % 1_440) as i64;
    let offset = (720 - minute_of_day + 720).rem_euclid(1_440) - 720;
    let sign = if offset < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", offset.abs() / 60, offset.abs() % 60)
}
