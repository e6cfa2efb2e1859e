//! The gateway in process: the actor other nodes call, over a real runtime (fake-claude agents,
//! a redb store), called here directly instead of through ractor_cluster. A peer with another
//! placement is told why; a control request forwarded twice under one request id runs once; a
//! tell forwarded twice under one request id makes one turn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use iris_api::{Reply, Request, Service};
use iris_core::config::Config;
use iris_core::config::cluster::NodeName;
use iris_core::{RequestId, TeamName};
use iris_node::cluster::gateway::{Forwarded, ForwardedOutcome, Gateway, GatewayArgs, GatewayMsg};
use iris_runtime::{Runtime, Wait};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};

const LIMIT: Option<Duration> = Some(Duration::from_secs(60));

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

/// Node n1 of a two-node cluster hosting alpha and beta, its runtime and its gateway.
struct World {
    _dir: tempfile::TempDir,
    config: Config,
    runtime: Runtime,
    gateway: ActorRef<GatewayMsg>,
}

fn config_text(dir: &std::path::Path, extra: &str) -> String {
    let root = dir.display();
    format!(
        r#"
[agent]
command = "{iris}"
args = ["fake-claude"]
env = {{ CLAUDE_CONFIG_DIR = "{root}/claude" }}

[cluster]
cookie = "test"
[cluster.nodes.n1]
address = "127.0.0.1:1"
[cluster.nodes.n2]
address = "127.0.0.1:2"

[teams.alpha]
path = "{root}/alpha"
node = "n1"
[teams.beta]
path = "{root}/beta"
node = "n1"
{extra}
"#,
        iris = env!("CARGO_BIN_EXE_iris"),
    )
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["alpha", "beta", "claude"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let config = Config::from_toml_str(
            &config_text(dir.path(), ""),
            dir.path(),
            "test.toml",
            &|_| None,
        )
        .unwrap()
        .serving_as(NodeName::new("n1").unwrap());
        let store = iris_store::Store::open(dir.path().join("n1.redb")).unwrap();
        let runtime = Runtime::start(config.clone(), store).await.unwrap();
        let (gateway, _) = Actor::spawn(
            None,
            Gateway,
            GatewayArgs {
                name: "n1".into(),
                placement: config.placement().unwrap(),
                service: Service::new(runtime.clone()),
            },
        )
        .await
        .unwrap();
        World {
            _dir: dir,
            config,
            runtime,
            gateway,
        }
    }

    /// What the gateway answers to `forwarded`, as a peer reads it.
    async fn forward(&self, forwarded: &Forwarded) -> ForwardedOutcome {
        let bytes = serde_json::to_vec(forwarded).unwrap();
        let answer = self
            .gateway
            .call(|reply| GatewayMsg::Forward(bytes, reply), LIMIT)
            .await
            .unwrap();
        let CallResult::Success(bytes) = answer else {
            panic!("the gateway did not answer: {answer:?}");
        };
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn stop(self) {
        self.gateway.stop_and_wait(None, LIMIT).await.unwrap();
        self.runtime.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_another_placement_is_told_both_digests_and_the_first_difference() {
    let world = World::start().await;
    let hello = |placement: String| {
        world
            .gateway
            .call(|reply| GatewayMsg::Hello(placement, reply), LIMIT)
    };
    let ours = serde_json::to_string(&world.config.placement().unwrap()).unwrap();
    assert_eq!(
        hello(ours).await.unwrap(),
        CallResult::Success(String::new())
    );
    let dir = tempfile::tempdir().unwrap();
    let theirs = Config::from_toml_str(
        &config_text(dir.path(), "[teams.gamma]\npath = \"/g\"\nnode = \"n2\"\n"),
        dir.path(),
        "test.toml",
        &|_| None,
    )
    .unwrap()
    .placement()
    .unwrap();
    let CallResult::Success(why) = hello(serde_json::to_string(&theirs).unwrap())
        .await
        .unwrap()
    else {
        panic!("no answer");
    };
    let digest = world.config.placement().unwrap().digest();
    assert!(
        why.contains(&digest) && why.contains(&theirs.digest()),
        "{why}"
    );
    assert!(why.contains("gamma"), "{why}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_forwarded_twice_under_one_id_runs_once() {
    let world = World::start().await;
    let (alpha, beta) = (team("alpha"), team("beta"));
    // A reboot makes a new session each time it runs: the duplicate gets the first one's.
    let reboot = Forwarded {
        request_id: RequestId::new(),
        request: Request::SessionsReboot {
            from: alpha.clone(),
            to: beta.clone(),
        },
    };
    let first = world.forward(&reboot).await.unwrap();
    let again = world.forward(&reboot).await.unwrap();
    assert_eq!(first, again);
    let Reply::Session(rebooted) = first else {
        panic!("{first:?}");
    };
    let current = world.runtime.get_session(&alpha, &beta).unwrap().unwrap();
    assert_eq!(current.session_id, rebooted.session_id);

    // A tell forwarded twice under one id (the caller's retry after an unknown outcome): one
    // turn, the same answer.
    let tell = Forwarded::of(Request::Tell {
        from: alpha.clone(),
        to: beta.clone(),
        message: "only once".into(),
        wait: Wait::Complete,
        request_id: None,
    });
    let first = world.forward(&tell).await.unwrap();
    let again = world.forward(&tell).await.unwrap();
    let (Reply::Tell(first), Reply::Tell(again)) = (first, again) else {
        panic!("not tells");
    };
    assert_eq!(first.turn_id, again.turn_id);
    assert_eq!(again.response, "echo: only once");
    let ledger = world.runtime.report(&alpha, &beta, 10).unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:#?}");
    assert_eq!(ledger[0].request_id, Some(tell.request_id));
    world.stop().await;
}
