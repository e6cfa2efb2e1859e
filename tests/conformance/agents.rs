//! The two agents the conformance scenarios run against, and how each is told to do a scripted
//! thing. The real Claude Code CLI (the pinned version, offline against the loopback mock of the
//! Anthropic API) takes the mock's keywords; fake-claude takes its `!directives`. Everything a
//! scenario asserts is the same for both. Shared by the `Runtime`-level suite (`tests/
//! conformance.rs`) and the `iris` binary's (`crates/iris-node/tests/conformance.rs`).

use std::path::{Path, PathBuf};

use anthropic_mock::MockApi;

/// Which agent a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The pinned Claude Code CLI against the mock API.
    Real,
    /// fake-claude.
    Fake,
}

/// One agent, ready to be configured as a team's `[agent]`.
pub struct Agent {
    pub dialect: Dialect,
    pub command: PathBuf,
    /// Held for the agent's lifetime: the real CLI's only network peer.
    pub mock: Option<MockApi>,
}

impl Agent {
    /// fake-claude (the executable `fake`), and the real CLI when it is installed (required in
    /// CI: see `anthropic_mock::real_claude_or_skip`). `IRIS_CONFORMANCE_AGENT=real` or `=fake`
    /// runs one of them alone, for a local run.
    pub async fn all(fake: &Path) -> Vec<Agent> {
        let only = std::env::var("IRIS_CONFORMANCE_AGENT").unwrap_or_default();
        let mut agents = Vec::new();
        if only != "real" {
            agents.push(Agent {
                dialect: Dialect::Fake,
                command: fake.to_path_buf(),
                mock: None,
            });
        }
        if only == "fake" {
            return agents;
        }
        if let Some(claude) = anthropic_mock::real_claude_or_skip() {
            agents.push(Agent {
                dialect: Dialect::Real,
                command: claude,
                mock: Some(MockApi::start().await.unwrap()),
            });
        }
        agents
    }

    /// The agent's environment, as TOML inline-table entries for `[agent] env`: where its
    /// transcripts go (`home` as `HOME` when `home_only`, else `config_dir` as
    /// `CLAUDE_CONFIG_DIR`) and, for the real CLI, the mock.
    pub fn env_toml(&self, config_dir: &Path, home_only: bool) -> String {
        let mut env: Vec<(String, String)> = match &self.mock {
            Some(mock) => mock
                .claude_env(config_dir)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_string_lossy().into_owned()))
                .collect(),
            None => vec![(
                "CLAUDE_CONFIG_DIR".to_owned(),
                config_dir.display().to_string(),
            )],
        };
        if self.dialect == Dialect::Real {
            // API errors end the turn at once instead of after ten retries with backoff.
            env.push(("CLAUDE_CODE_MAX_RETRIES".to_owned(), "0".to_owned()));
        } else {
            // fake-claude echoes like the mock: "echo: <text> (turns seen: N)".
            env.push(("FAKE_CLAUDE_TURNS_SEEN".to_owned(), "1".to_owned()));
        }
        if home_only {
            env.retain(|(k, _)| k != "CLAUDE_CONFIG_DIR");
            env.push(("HOME".to_owned(), config_dir.display().to_string()));
        }
        let entries: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        format!("{{ {} }}", entries.join(", "))
    }

    /// What the agent answers a plain message with, as the `turns`-th user turn of its
    /// conversation.
    pub fn echo(&self, text: &str, turns: usize) -> String {
        format!("echo: {text} (turns seen: {turns})")
    }

    /// A message whose answer streams slowly (tens of pieces, 100 ms apart).
    pub fn slow(&self) -> String {
        match self.dialect {
            Dialect::Real => "slow 60 100".to_owned(),
            Dialect::Fake => "!stream 60 100".to_owned(),
        }
    }

    /// A message that makes the model run a Bash command that creates `marker` (a file name in
    /// the team's directory).
    pub fn tool(&self, marker: &str) -> String {
        match self.dialect {
            Dialect::Real => format!("usetool touch {marker}"),
            Dialect::Fake => format!("!tool 10 {marker}"),
        }
    }

    /// A message whose model call fails with HTTP `status`.
    pub fn api_error(&self, status: u16) -> String {
        match self.dialect {
            Dialect::Real => format!("api-error {status}"),
            Dialect::Fake => format!("!error {status}"),
        }
    }

    /// A message that makes the model call MCP tool `tool` (`mcp__<server>__<tool>`) with
    /// `input` (a JSON object).
    pub fn mcp(&self, tool: &str, input: &str) -> String {
        match self.dialect {
            Dialect::Real => format!("usemcp {tool} {input}"),
            Dialect::Fake => format!("!mcp {tool} {input}"),
        }
    }

    /// A message answered with several text blocks; the turn's text is the last one.
    pub fn blocks(&self, blocks: &[&str]) -> String {
        match self.dialect {
            Dialect::Real => format!("blocks {}", blocks.join("|")),
            Dialect::Fake => format!("!blocks {}", blocks.join("|")),
        }
    }

    /// What one echo turn costs in US dollars, from each agent's published pricing: the mock's
    /// usage (100 input tokens per user turn seen, one output token per word) priced by the
    /// CLI at $5/$25 per million; fake-claude's one token per four bytes of the message and of
    /// the answer, at the same prices.
    pub fn echo_cost(&self, text: &str, turns: usize) -> f64 {
        let answer = self.echo(text, turns);
        let (input, output) = match self.dialect {
            Dialect::Real => (100 * turns as u64, answer.split_whitespace().count() as u64),
            Dialect::Fake => (
                (text.len() as u64).div_ceil(4),
                (answer.len() as u64).div_ceil(4),
            ),
        };
        (input * 5 + output * 25) as f64 / 1e6
    }

    /// A message that makes the model run a Bash command for `secs` seconds, in a session of
    /// its own, that then creates `marker` (an absolute path in the team's directory).
    pub fn long_tool(&self, secs: u64, marker: &Path) -> String {
        match self.dialect {
            Dialect::Real => format!("usetool sleep {secs}; touch {}", marker.display()),
            Dialect::Fake => format!("!tool {} {}", secs * 1000, file_name(marker)),
        }
    }

    /// A message that makes the model start such a command in the background (`setsid cmd &`)
    /// and end its turn, leaving the command running.
    pub fn background_tool(&self, secs: u64, marker: &Path) -> String {
        match self.dialect {
            Dialect::Real => format!(
                "usetool (setsid sh -c 'sleep {secs}; touch {}' >/dev/null 2>&1 &)",
                marker.display()
            ),
            Dialect::Fake => format!("!daemon {} {}", secs * 1000, file_name(marker)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self.dialect {
            Dialect::Real => "the real Claude Code CLI",
            Dialect::Fake => "fake-claude",
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The live processes whose command line names `marker`: a tool started by
/// [`Agent::long_tool`] or [`Agent::background_tool`] (and the shell running it).
pub fn processes_naming(marker: &Path) -> Vec<u32> {
    let needle = marker.display().to_string();
    iris_agent::procfs::all_stats()
        .into_iter()
        .filter(|s| s.is_alive() && s.pid != std::process::id())
        .filter(|s| {
            iris_agent::procfs::cmdline(s.pid)
                .is_some_and(|args| args.iter().any(|a| a.contains(&needle)))
        })
        .map(|s| s.pid)
        .collect()
}
