//! A node whose database's filesystem fills up, as the issue found it: 99 `iris tell`s while a
//! 2 MiB tmpfs fills. Every tell that printed `completed` is in the ledger after the node is
//! restarted (acknowledged == present), every other one failed with `STORE_ERROR` naming the
//! full disk; `/healthz` answers 503 and `/metrics` `iris_store_healthy 0` during the fault;
//! once space is freed, the node takes tells again without a restart.
//!
//! Mounting the tmpfs needs root: without it the test says so and skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/tmpfs.rs"]
mod tmpfs;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use iris_core::{TurnId, TurnStatus};
use iris_node::http::endpoint::{self, Endpoint};
use iris_node::node::Started;
use iris_store::Store;
use serde_json::Value;
use tmpfs::{Tmpfs, fill_leaving};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const STEP: Duration = Duration::from_secs(60);
const IRIS: &str = env!("CARGO_BIN_EXE_iris");

/// Teams alpha and beta in a temp dir; the database on `db_dir`.
struct World {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl World {
    fn new(db_dir: &Path) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["alpha", "beta", "home/.claude"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let db = db_dir.join("iris.redb");
        let config = format!(
            r#"
[settings]
spawn_timeout = "20s"

[database]
path = "{db}"

[agent]
command = "fake-claude"

[teams.alpha]
path = "{root}/alpha"

[teams.beta]
path = "{root}/beta"
"#,
            db = db.display(),
            root = root.display(),
        );
        std::fs::write(root.join("iris.toml"), config).unwrap();
        World { dir, db }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(IRIS);
        command
            .arg("--config")
            .arg(self.dir.path().join("iris.toml"))
            .env("HOME", self.dir.path().join("home"))
            .env("CLAUDE_CONFIG_DIR", self.dir.path().join("home/.claude"))
            .env_remove("IRIS_CONFIG")
            .env_remove("IRIS_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `iris --json tell alpha beta MESSAGE`: its exit code and JSON.
    async fn tell(&self, message: &str) -> (Option<i32>, Value) {
        let mut command = self.command();
        command.args(["--json", "tell", "alpha", "beta", message]);
        let output = tokio::time::timeout(STEP, command.output())
            .await
            .expect("a tell took longer than a minute")
            .unwrap();
        let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        (output.status.code(), json)
    }

    async fn start_node(&self) -> (Child, Started) {
        let log = File::create(self.dir.path().join("node.log")).unwrap();
        let mut command = self.command();
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
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        (child, serde_json::from_str(&line).unwrap())
    }

    fn endpoint(&self) -> Endpoint {
        serde_json::from_slice(&std::fs::read(endpoint::path_for(&self.db)).unwrap()).unwrap()
    }
}

/// `GET path` on the node: status and body.
async fn get(endpoint: &Endpoint, path: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP)
        .build()
        .unwrap()
        .get(format!("{}{path}", endpoint.url()))
        .bearer_auth(&endpoint.token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn assert_disk_full(error: &Value) {
    assert_eq!(error["code"], "STORE_ERROR", "{error:#}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("filesystem is full"), "{message}");
    assert!(message.contains("free space"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_full_disk_acknowledges_only_what_it_stored_and_heals_without_a_restart() {
    let Some(tmpfs) = Tmpfs::mount("2m") else {
        return;
    };
    let world = World::new(tmpfs.path());
    let (mut node, started) = world.start_node().await;
    let endpoint = world.endpoint();
    let (status, _) = get(&endpoint, "/healthz").await;
    assert_eq!(status, 200);

    let mut acknowledged = BTreeSet::new();
    let mut failed = 0;
    let mut ballast = None;
    let mut session_id = None;
    for n in 1..=99 {
        if n == 31 {
            ballast = Some(fill_leaving(tmpfs.path(), 160 * 1024));
        }
        let (code, json) = world.tell(&format!("tell {n} {}", "x".repeat(2000))).await;
        if code == Some(0) {
            assert_eq!(json["status"], "completed", "{json:#}");
            let id: TurnId = serde_json::from_value(json["turn_id"].clone()).unwrap();
            acknowledged.insert(id);
            session_id = Some(json["session_id"].as_str().unwrap().to_owned());
        } else {
            // A turn that ran but could not be recorded (`status: failed`), or a tell refused
            // up front: either way the error is the store's.
            assert_disk_full(&json["error"]);
            failed += 1;
        }
    }
    eprintln!(
        "99 tells through the node on a filling 2 MiB disk: {} completed, {failed} failed with STORE_ERROR",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= 30);
    assert!(failed > 0, "the disk never filled up");

    // Health and metrics say so while it lasts.
    let (status, body) = get(&endpoint, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unhealthy", "{health:#}");
    assert_eq!(health["store"]["healthy"], false, "{health:#}");
    assert_eq!(health["store"]["fault"], "disk_full", "{health:#}");
    assert!(
        health["store"]["error"]
            .as_str()
            .unwrap()
            .contains("filesystem is full"),
        "{health:#}"
    );
    let (_, metrics) = get(&endpoint, "/metrics").await;
    assert!(metrics.contains("\niris_store_healthy 0\n"), "{metrics}");
    assert!(
        !metrics.contains("\niris_store_failed_commits_total 0\n"),
        "{metrics}"
    );

    // Space back: healthy again and taking tells, with the same node.
    std::fs::remove_file(ballast.unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&endpoint, "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in 101..=105 {
        let (code, json) = world.tell(&format!("after {n}")).await;
        assert_eq!(code, Some(0), "{json:#}");
        acknowledged.insert(serde_json::from_value(json["turn_id"].clone()).unwrap());
    }
    let (_, metrics) = get(&endpoint, "/metrics").await;
    assert!(metrics.contains("\niris_store_healthy 1\n"), "{metrics}");
    assert!(
        !metrics.contains("\niris_store_recoveries_total 0\n"),
        "{metrics}"
    );
    assert_eq!(started.pid, node.id().unwrap());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(started.pid).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = tokio::time::timeout(STEP, node.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");

    // The restart: exactly what was acknowledged is there.
    let store = Store::open(&world.db).unwrap();
    let session_id: iris_core::SessionId = session_id.unwrap().parse().unwrap();
    let present: BTreeSet<TurnId> = store
        .turns(session_id, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|t| t.status == TurnStatus::Completed)
        .map(|t| t.turn_id)
        .collect();
    eprintln!(
        "after the restart: {} acknowledged, {} present",
        acknowledged.len(),
        present.len()
    );
    assert_eq!(present, acknowledged);
    let record = store.get_by_session_id(&session_id).unwrap().unwrap();
    assert_eq!(record.message_count, acknowledged.len() as u64);
}
