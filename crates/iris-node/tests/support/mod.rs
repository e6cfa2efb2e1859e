//! What the process-level tests of the `iris` binary share: a scratch installation (a temp dir
//! with a configuration file, a database path, a home and a Claude config dir), running `iris`
//! commands in it as separate processes with a clean environment, and starting `iris node` there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use iris_node::http::endpoint::{self, Endpoint};
use iris_node::node::Started;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// No command or wait of a test may hang: each gets this long.
pub const STEP: Duration = Duration::from_secs(60);

/// The `iris` binary under test.
pub const IRIS: &str = env!("CARGO_BIN_EXE_iris");

/// A scratch installation in a temp dir: `iris.toml`, `data/iris.redb`, `home/.claude`, and
/// the team directories a test asks for.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A scratch dir with `dirs` (and `home/.claude`) created in it.
    pub fn new(dirs: &[&str]) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        for sub in dirs.iter().chain(&["home/.claude"]) {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Scratch { dir }
    }

    /// The scratch dir.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.root().join("iris.toml")
    }

    /// Writes the configuration file.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config(), toml).unwrap();
    }

    /// The database the configuration names (`[database] path`).
    pub fn db(&self) -> PathBuf {
        self.root().join("data").join("iris.redb")
    }

    /// The endpoint file a node writes next to the database.
    pub fn endpoint_file(&self) -> PathBuf {
        endpoint::path_for(&self.db())
    }

    /// The endpoint file's content.
    pub fn endpoint(&self) -> Endpoint {
        serde_json::from_slice(&std::fs::read(self.endpoint_file()).unwrap()).unwrap()
    }

    /// `program` (`iris`, or a wrapper that runs it) set up to run in this installation: its
    /// configuration, home and Claude config dir, and nothing of the caller's iris environment.
    pub fn prepare(&self, program: &mut Command) {
        program
            .env("HOME", self.root().join("home"))
            .env("CLAUDE_CONFIG_DIR", self.root().join("home/.claude"))
            .env_remove("IRIS_CONFIG")
            .env_remove("IRIS_HOME")
            .env_remove("RUST_LOG")
            .env_remove(iris_node::http::client::IDLE_TIMEOUT_VAR)
            .stdin(Stdio::null())
            .kill_on_drop(true);
    }

    /// `iris --config <this installation's>`, ready for its arguments.
    pub fn command(&self) -> Command {
        let mut command = Command::new(IRIS);
        self.prepare(&mut command);
        command.arg("--config").arg(self.config());
        command
    }

    /// Starts `iris node` on loopback from `command` (as [`Scratch::command`] makes it, or a
    /// wrapper of it), logging to a file of its own in the scratch dir, and waits for its
    /// start-up line (whose endpoint file the caller checks: a cluster node has its own).
    pub async fn start_node(&self, mut command: Command) -> Node {
        let log = std::fs::File::create(self.root().join(format!(
            "node-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )))
        .unwrap();
        command
            .args([
                "--json",
                "--log-level",
                "info",
                "node",
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("the node printed its address in time")
            .unwrap()
            .expect("the node printed a line");
        let started: Started = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the start-up line {line:?} is not JSON: {e}"));
        assert_eq!(started.pid, child.id().unwrap());
        Node { child, started }
    }
}

/// Runs `command` with `--json ARGS…` to its end.
pub async fn run(mut command: Command, args: &[&str]) -> Out {
    command.arg("--json").args(args);
    let output = tokio::time::timeout(STEP, command.output())
        .await
        .unwrap_or_else(|_| panic!("iris {args:?} took longer than {STEP:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    Out {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: output.status.code(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What a command did. Every field shows in a failed assertion's `{:#?}`.
#[derive(Debug)]
pub struct Out {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The error's code, when the command failed with one.
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// The error's message, when the command failed with one.
    pub fn error_message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }
}

/// A running `iris node`.
pub struct Node {
    pub child: Child,
    pub started: Started,
}

impl Node {
    /// Its process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.started.pid).unwrap()
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits (bounded) for it to exit.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the node did not exit within {limit:?}"))
            .unwrap()
    }

    /// SIGTERM, and a clean exit within [`STEP`].
    pub async fn stop(mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait(STEP).await;
        assert!(status.success(), "{status:?}");
    }
}

/// `n` free loopback ports (bound then released; the nodes bind them a moment later).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// An HTTP client for the node's routes (no proxy, bounded by [`STEP`]).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP)
        .build()
        .unwrap()
}

/// The `/metrics` text of the node at `url`, read with `token`.
pub async fn scrape_metrics(url: &str, token: &str) -> String {
    http()
        .get(format!("{url}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `condition` holds, polling; fails after [`STEP`].
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
