use std::os::unix::fs::PermissionsExt;

use iris_core::config::Config;
use iris_core::{SessionId, TeamName};

use super::*;
use std::path::PathBuf;

/// A stand-in for `ssh`: skips the options up to `--`, then the destination, and runs the
/// remote command string through `sh -c` here, as the remote shell would.
const FAKE_SSH: &str = r#"#!/bin/sh
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift 2
exec sh -c "$1"
"#;

#[tokio::test]
async fn a_remote_transcript_is_removed_through_ssh_and_a_missing_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("remote project");
    let claude = dir.path().join("claude home");
    std::fs::create_dir_all(&project).unwrap();
    let fake_ssh = dir.path().join("ssh");
    std::fs::write(&fake_ssh, FAKE_SSH).unwrap();
    std::fs::set_permissions(&fake_ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let toml = format!(
        "[agent]\nenv = {{ CLAUDE_CONFIG_DIR = {:?} }}\n[teams.far]\npath = {:?}\nremote = {{ destination = \"me@host\" }}\n",
        claude.display().to_string(),
        project.display().to_string(),
    );
    let config = Config::from_toml_str(&toml, dir.path(), "test.toml", &|_| None).unwrap();
    let far = TeamName::new("far").unwrap();
    let (team, agent) = (config.team(&far).unwrap(), config.agent_for(&far).unwrap());
    let id = SessionId::new_v4();
    let file = claude
        .join("projects")
        .join(iris_core::transcript::sanitize_project_path(
            &project.to_string_lossy(),
        ))
        .join(format!("{id}.jsonl"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{}\n").unwrap();

    let run = |launch: &iris_agent::command::Launch, shown: String| {
        // The same argv, with our stand-in in place of the real ssh.
        let mut command = tokio::process::Command::new(&fake_ssh);
        command.args(launch.args());
        run_remote_removal(command, shown)
    };
    let (launch, shown) = remote_removal(&far, team, &agent, &id).unwrap();
    assert!(shown.starts_with("me@host:"), "{shown}");
    assert_eq!(
        run(&launch, shown.clone()).await,
        TranscriptRemoval::Removed(vec![PathBuf::from(&shown)])
    );
    assert!(!file.exists());
    assert_eq!(run(&launch, shown).await, TranscriptRemoval::NotFound);
}
