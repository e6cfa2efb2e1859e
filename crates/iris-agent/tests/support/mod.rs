//! Test support: finding (building, if needed) the fake-claude binary, and a scratch team.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use iris_core::SessionId;
use tokio::process::Command;

/// The fake-claude binary of this workspace, built on first use if `cargo test -p iris-agent`
/// ran without it.
pub fn fake_claude() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Test binaries live in target/<profile>/deps; workspace binaries in target/<profile>.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let path = profile_dir.join("fake-claude");
        if !path.exists() {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "-p", "fake-claude", "--bin", "fake-claude"])
                .status()
                .unwrap();
            assert!(status.success(), "building fake-claude failed");
        }
        assert!(path.exists(), "fake-claude not found at {}", path.display());
        path
    })
}

/// A project directory and a private Claude config dir for one test.
pub struct Team {
    pub project: tempfile::TempDir,
    pub config: tempfile::TempDir,
}

impl Team {
    pub fn new() -> Team {
        Team {
            project: tempfile::tempdir().unwrap(),
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// fake-claude started on a new conversation `id`, with extra environment.
    pub fn command(&self, id: &SessionId, env: &[(&str, &str)]) -> Command {
        self.command_with(&format!("--session-id={id}"), env)
    }

    /// fake-claude resuming conversation `id`.
    pub fn resume(&self, id: &SessionId) -> Command {
        self.command_with(&format!("--resume={id}"), &[])
    }

    fn command_with(&self, conversation: &str, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(fake_claude());
        c.args(iris_agent::command::STREAM_JSON_ARGS)
            .args([conversation, "--permission-prompt-tool=stdio"])
            .current_dir(self.project.path())
            .env("CLAUDE_CONFIG_DIR", self.config.path())
            .env_remove("CLAUDECODE")
            .env_remove("FAKE_CLAUDE_FAIL_START")
            .env_remove("FAKE_CLAUDE_START_DELAY_MS");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// The transcript fake-claude writes for `id`.
    pub fn transcript(&self, id: &SessionId) -> Option<PathBuf> {
        let canonical = self.project.path().canonicalize().unwrap();
        iris_core::transcript::TranscriptLocator::new(self.config.path())
            .find_transcript(&canonical, id)
    }
}

/// Waits (bounded) until no live process is left in group `pgid`.
pub async fn group_empties(pgid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let members =
            tokio::task::spawn_blocking(move || iris_agent::procfs::live_group_members(pgid))
                .await
                .unwrap();
        if members.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("still alive in group {pgid}: {members:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
