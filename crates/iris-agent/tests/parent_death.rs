//! Multi-process: when the process that spawned an agent is killed with SIGKILL (no cleanup runs
//! at all), the kernel's parent-death signal still ends the agent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iris_agent::containment::Containment;
use iris_agent::procfs;

const CHILD_ENV: &str = "IRIS_PDEATHSIG_CHILD";

/// The "node": spawns an agent, prints its pid, then waits to be killed. Ignored so that it runs
/// only when the test below starts this binary with `CHILD_ENV` set.
#[test]
#[ignore = "runs only as the child of killing_the_parent_kills_the_agent"]
fn child_node() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut sleep = tokio::process::Command::new("sleep");
        sleep.arg("300");
        let agent =
            iris_agent::process::AgentProcess::spawn(sleep, 1024, &Containment::default()).unwrap();
        println!("agent {}", agent.pid());
        tokio::time::sleep(Duration::from_secs(300)).await;
        drop(agent);
    });
}

#[test]
fn killing_the_parent_kills_the_agent() {
    let mut node = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_node",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // libtest prints "test child_node ... " before the child's own output, on the same line.
    let stdout = node.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pid) = line
                .split("agent ")
                .nth(1)
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                let _ = tx.send(pid);
            }
        }
    });
    let pid = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(pid) => pid,
        Err(_) => {
            node.kill().unwrap();
            panic!("the child node never reported its agent");
        }
    };
    assert!(procfs::stat(pid).is_some_and(|s| s.is_alive()));

    node.kill().unwrap(); // SIGKILL: the node runs no cleanup.
    node.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(2);
    while procfs::stat(pid).is_some_and(|s| s.is_alive()) {
        assert!(
            Instant::now() < deadline,
            "agent {pid} outlived its killed parent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
