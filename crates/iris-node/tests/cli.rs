//! The `iris` binary as users run it: real processes, embedded mode, a temporary configuration
//! whose teams are temporary directories and whose agent is fake-claude. Every command is run at
//! least once, and every kind of bad input is checked for its exit code and for a message that
//! says what to fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const IRIS: &str = env!("CARGO_BIN_EXE_iris");

/// A temporary world: a config, three team directories, a HOME and a Claude config dir, all
/// under one temporary directory, so nothing leaks into the user's own.
struct World {
    root: tempfile::TempDir,
    config: PathBuf,
}

impl World {
    /// Teams alpha, beta and gamma, with the fake-claude agent.
    fn new() -> World {
        World::with_agent(&agent_command())
    }

    fn with_agent(command: &str) -> World {
        let root = tempfile::tempdir().unwrap();
        for dir in [
            "home",
            "claude",
            "teams/alpha",
            "teams/beta",
            "teams/gamma",
            "work",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let config = root.path().join("iris.toml");
        let text = format!(
            r#"
[settings]
spawn_timeout = "10s"
response_timeout = "10s"

[agent]
command = {command:?}

[teams.alpha]
path = "teams/alpha"
description = "Team alpha"

[teams.beta]
path = "teams/beta"
description = "Team beta"

[teams.gamma]
path = "teams/gamma"
description = "Team gamma"
"#
        );
        std::fs::write(&config, text).unwrap();
        World { root, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `iris ARGS…` with this world's config, HOME and Claude config dir, run from `work/`.
    fn iris(&self, args: &[&str]) -> Run {
        let mut command = self.command(IRIS);
        command.arg("--config").arg(&self.config).args(args);
        Run::of(command.output().unwrap(), args)
    }

    /// `iris ARGS…` without `--config`, so discovery decides.
    fn iris_discovering(&self, args: &[&str]) -> Run {
        let mut command = self.command(IRIS);
        command.args(args);
        Run::of(command.output().unwrap(), args)
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.path("work"))
            .env("HOME", self.path("home"))
            .env("CLAUDE_CONFIG_DIR", self.path("claude"))
            .env_remove("IRIS_CONFIG")
            .env_remove("IRIS_HOME")
            .env_remove("RUST_LOG")
            // The shipped example's variables must not leak in from the test's environment.
            .env_remove("IRIS_DB_PATH")
            .env_remove("IRIS_DB_IN_MEMORY");
        command
    }

    /// Runs `iris --json ARGS…`, expects success, and returns the JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.iris(&all);
        run.expect_exit(0);
        run.json()
    }
}

/// The fake-claude executable built next to `iris` if there is one, else the name alone (which
/// `iris` plays itself when it finds no such executable).
fn agent_command() -> String {
    let beside = Path::new(IRIS).with_file_name("fake-claude");
    if beside.is_file() {
        beside.display().to_string()
    } else {
        "fake-claude".to_owned()
    }
}

/// One finished `iris` process.
struct Run {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(output: Output, args: &[&str]) -> Run {
        Run {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn expect_exit(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "iris {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "iris {}: not one JSON document ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }

    /// Asserts stderr holds every needle (the human error message).
    fn says(&self, needles: &[&str]) -> &Run {
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "iris {}: {needle:?} not in stderr:\n{}",
                self.args,
                self.stderr
            );
        }
        self
    }

    /// Asserts the `--json` error has `code` and a message holding every needle.
    fn json_error(&self, code: &str, needles: &[&str]) -> &Run {
        let doc = self.json();
        assert_eq!(doc["error"]["code"], code, "{doc}");
        let message = doc["error"]["message"].as_str().unwrap();
        for needle in needles {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Tells

#[test]
fn tell_prints_the_reply_text() {
    let world = World::new();
    let run = world.iris(&["tell", "alpha", "beta", "hello"]);
    run.expect_exit(0);
    assert_eq!(run.stdout, "echo: hello\n");
}

#[test]
fn tell_json_prints_one_object_with_every_field() {
    let world = World::new();
    let doc = world.json(&["tell", "alpha", "beta", "hello"]);
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["response"], "echo: hello");
    assert_eq!(doc["from"], "alpha");
    assert_eq!(doc["to"], "beta");
    for key in ["session_id", "turn_id", "cost_usd", "usage", "duration_ms"] {
        assert!(!doc[key].is_null(), "{key} in {doc}");
    }
    assert!(doc.get("error").is_none(), "{doc}");
    // The session it names is the pair's.
    let shown = world.json(&["sessions", "show", "alpha", "beta"]);
    assert_eq!(shown["session_id"], doc["session_id"]);
    assert_eq!(shown["message_count"], 1);
}

#[test]
fn tell_with_a_timeout_returns_the_text_so_far() {
    let world = World::new();
    let doc = world.json(&[
        "tell",
        "alpha",
        "beta",
        "!stream 4 300",
        "--timeout",
        "450ms",
    ]);
    assert_eq!(doc["status"], "caller_timeout", "{doc}");
    assert!(
        doc["response"].as_str().unwrap().starts_with("chunk 1"),
        "{doc}"
    );
    assert!(!doc["turn_id"].as_str().unwrap().is_empty());
}

#[test]
fn tell_async_prints_the_turn_id_and_the_ledger_knows_it() {
    let world = World::new();
    let run = world.iris(&["tell", "alpha", "beta", "later", "--async"]);
    run.expect_exit(0);
    let turn_id = run.stdout.trim().to_owned();
    assert_eq!(turn_id.len(), 36, "{}", run.stdout);
    assert!(
        run.stderr.contains("iris report alpha beta"),
        "{}",
        run.stderr
    );
    let turns = world.json(&["report", "alpha", "beta"]);
    assert!(
        turns
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["turn_id"] == turn_id.as_str()),
        "{turns}"
    );
}

#[test]
fn a_failed_turn_exits_with_its_class_and_says_why() {
    let world = World::new();
    world
        .iris(&["tell", "alpha", "beta", "!error"])
        .expect_exit(5)
        .says(&["error:", "alpha → beta failed"]);
    let run = world.iris(&["--json", "tell", "alpha", "beta", "!error"]);
    run.expect_exit(5);
    let doc = run.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["code"], "PROCESS_ERROR");
    assert!(!doc["error"]["message"].as_str().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[test]
fn sessions_list_show_compact_and_delete() {
    let world = World::new();
    world.iris(&["tell", "alpha", "beta", "one"]).expect_exit(0);
    world.iris(&["tell", "gamma", "beta", "two"]).expect_exit(0);

    // A human table, aligned, with relative times.
    let run = world.iris(&["sessions", "list"]);
    run.expect_exit(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("SESSION") && lines[0].contains("LAST USED"));
    assert!(run.stdout.contains("just now") || run.stdout.contains("s ago"));

    // JSON records with the store's fields and RFC 3339 times.
    let all = world.json(&["sessions", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let record = &all[0];
    for key in [
        "id",
        "from_team",
        "to_team",
        "session_id",
        "created_at",
        "last_used_at",
        "message_count",
        "status",
        "process_state",
    ] {
        assert!(record.get(key).is_some(), "{key} in {record}");
    }
    assert!(record["created_at"].as_str().unwrap().ends_with('Z'));

    let from_gamma = world.json(&["sessions", "list", "--from", "gamma"]);
    assert_eq!(from_gamma.as_array().unwrap().len(), 1);
    assert_eq!(from_gamma[0]["from_team"], "gamma");
    let to_beta = world.json(&[
        "sessions", "list", "--to", "beta", "--status", "active", "--limit", "1",
    ]);
    assert_eq!(to_beta.as_array().unwrap().len(), 1);

    // show, by id and by pair.
    let id = from_gamma[0]["session_id"].as_str().unwrap().to_owned();
    let by_id = world.json(&["sessions", "show", &id]);
    let by_pair = world.json(&["sessions", "show", "gamma", "beta"]);
    assert_eq!(by_id, by_pair);
    let human = world.iris(&["sessions", "show", &id]);
    human.expect_exit(0);
    assert!(human.stdout.contains("gamma → beta"), "{}", human.stdout);

    // compact resets the message count.
    let compacted = world.json(&["sessions", "compact", &id]);
    assert_eq!(compacted["message_count"], 0, "{compacted}");
    assert_eq!(compacted["status"], "active");

    // delete, with the transcript; then it is gone.
    let deleted = world.json(&["sessions", "delete", &id, "--transcript"]);
    assert_eq!(deleted["deleted"]["session_id"], id.as_str());
    assert!(
        ["removed", "not_found"].contains(&deleted["transcript"].as_str().unwrap()),
        "{deleted}"
    );
    world
        .iris(&["sessions", "show", &id])
        .expect_exit(3)
        .says(&["no session", &id]);
    world
        .iris(&["sessions", "delete", &id])
        .expect_exit(3)
        .says(&["iris sessions list"]);
    world
        .iris(&["--json", "sessions", "compact", &id])
        .expect_exit(3)
        .json_error("SESSION_NOT_FOUND", &[&id]);
}

#[test]
fn sessions_reboot_starts_a_new_session() {
    let world = World::new();
    world.iris(&["tell", "alpha", "beta", "one"]).expect_exit(0);
    let before = world.json(&["sessions", "show", "alpha", "beta"]);
    let rebooted = world.json(&["sessions", "reboot", "alpha", "beta"]);
    assert_ne!(rebooted["session_id"], before["session_id"]);
    assert_eq!(rebooted["message_count"], 0);
    let human = world.iris(&["sessions", "reboot", "alpha", "beta"]);
    human.expect_exit(0);
    assert!(human.stdout.contains("rebooted"), "{}", human.stdout);
}

#[test]
fn report_shows_recent_turns_newest_first() {
    let world = World::new();
    world
        .iris(&["tell", "alpha", "beta", "first"])
        .expect_exit(0);
    world
        .iris(&["tell", "alpha", "beta", "second"])
        .expect_exit(0);
    let turns = world.json(&["report", "alpha", "beta"]);
    let turns = turns.as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0]["message"], "second");
    assert_eq!(turns[0]["text"], "echo: second");
    assert_eq!(turns[0]["status"], "completed");
    assert!(turns[0]["queued_at"].as_str().unwrap().ends_with('Z'));
    let one = world.json(&["report", "alpha", "beta", "--limit", "1"]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    let human = world.iris(&["report", "alpha", "beta"]);
    human.expect_exit(0);
    assert!(human.stdout.starts_with("SEQ"), "{}", human.stdout);
    assert!(human.stdout.contains("echo: first"), "{}", human.stdout);
    // A pair that never talked has no report.
    world
        .iris(&["report", "beta", "alpha"])
        .expect_exit(3)
        .says(&["no session"]);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

#[test]
fn wake_sleep_and_cancel() {
    let world = World::new();
    let woken = world.json(&["wake", "alpha", "beta"]);
    assert_eq!(woken["from_team"], "alpha");
    assert_eq!(woken["to_team"], "beta");
    let human = world.iris(&["wake", "alpha", "beta"]);
    human.expect_exit(0);
    assert!(
        human.stdout.contains("alpha → beta: awake"),
        "{}",
        human.stdout
    );

    let slept = world.json(&["sleep", "alpha", "beta"]);
    assert_eq!(slept, serde_json::json!({"from": "alpha", "to": "beta"}));
    world
        .iris(&["sleep", "alpha", "beta", "--force"])
        .expect_exit(0);

    let cancelled = world.json(&["cancel", "alpha", "beta", "--drop-queue"]);
    assert_eq!(cancelled["interrupted"], false);
    assert_eq!(cancelled["dropped"], 0);
    let human = world.iris(&["cancel", "alpha", "beta"]);
    human.expect_exit(0);
    assert!(
        human.stdout.contains("no turn was in flight"),
        "{}",
        human.stdout
    );
}

#[test]
fn wake_all_wakes_every_other_team() {
    let world = World::new();
    let entries = world.json(&["wake-all", "alpha"]);
    let entries = entries.as_array().unwrap();
    let teams: Vec<&str> = entries.iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(teams, ["beta", "gamma"]);
    for entry in entries {
        assert!(entry["error"].is_null(), "{entry}");
        assert_eq!(entry["session"]["from_team"], "alpha");
    }
    let human = world.iris(&["wake-all", "alpha"]);
    human.expect_exit(0);
    assert!(human.stdout.contains("awake"), "{}", human.stdout);
    // Piped: no progress bar in the output.
    assert!(!human.stderr.contains("waking"), "{}", human.stderr);
    world
        .iris(&["wake-all", "nobody"])
        .expect_exit(3)
        .says(&["unknown team nobody"]);
}

#[test]
fn teams_and_stats() {
    let world = World::new();
    world.iris(&["tell", "alpha", "beta", "hi"]).expect_exit(0);
    let teams = world.json(&["teams"]);
    let names: Vec<&str> = teams
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    assert_eq!(teams[1]["description"], "Team beta");
    assert!(teams[1]["path"].as_str().unwrap().ends_with("teams/beta"));
    assert!(teams[1]["pair"].is_null());

    let from_alpha = world.json(&["teams", "--from", "alpha"]);
    assert!(from_alpha[0]["pair"].is_null(), "no pair to itself");
    assert_eq!(from_alpha[1]["pair"]["session"]["message_count"], 1);
    assert!(from_alpha[2]["pair"]["session"].is_null());
    let human = world.iris(&["teams", "--from", "alpha"]);
    human.expect_exit(0);
    assert!(human.stdout.starts_with("TEAM"), "{}", human.stdout);
    assert!(human.stdout.contains("no session"), "{}", human.stdout);

    let stats = world.json(&["stats"]);
    assert_eq!(stats["sessions"]["total"], 1);
    assert_eq!(stats["sessions"]["total_messages"], 1);
    assert!(stats["counters"].get("tells").is_some(), "{stats}");
    assert!(stats.get("live_processes").is_some());
    // No node runs: the runtime counters are this command's own, and say so.
    assert_eq!(stats["counters_of"], "this_command", "{stats}");
    let human = world.iris(&["stats"]);
    human.expect_exit(0);
    assert!(human.stdout.contains("no node runs"), "{}", human.stdout);
    assert!(
        !human.stdout.lines().any(|l| l.starts_with("tells")),
        "{}",
        human.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration and version

#[test]
fn config_check_prints_the_effective_config() {
    let world = World::new();
    let run = world.iris(&["config", "check"]);
    run.expect_exit(0);
    assert!(run.stdout.contains("[teams.alpha]"), "{}", run.stdout);
    assert!(
        run.stdout.contains("spawn_timeout = \"10s\""),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("is valid"), "{}", run.stderr);
    let doc = world.json(&["config", "check"]);
    assert_eq!(doc["settings"]["response_timeout"], "10s");
    assert!(
        doc["teams"]["beta"]["path"]
            .as_str()
            .unwrap()
            .ends_with("teams/beta")
    );

    // A team directory that does not exist is reported by name.
    std::fs::remove_dir(world.path("teams/gamma")).unwrap();
    world
        .iris(&["config", "check"])
        .expect_exit(2)
        .says(&["gamma"]);
}

#[test]
fn config_init_writes_a_starter_that_checks_and_refuses_to_overwrite() {
    let world = World::new();
    let target = world.path("fresh/iris.toml");
    let target_text = target.to_str().unwrap();
    let run = world.iris_discovering(&["config", "init", "--path", target_text]);
    run.expect_exit(0);
    assert!(run.stdout.contains(target_text), "{}", run.stdout);
    world
        .iris_discovering(&["--config", target_text, "config", "check"])
        .expect_exit(0);
    world
        .iris_discovering(&["config", "init", "--path", target_text])
        .expect_exit(2)
        .says(&["already exists", "--force"]);
    world
        .iris_discovering(&["config", "init", "--path", target_text, "--force"])
        .expect_exit(0);

    // Without --path it goes to $IRIS_HOME/config.toml, where discovery then finds it.
    let mut command = world.command(IRIS);
    command
        .env("IRIS_HOME", world.path("iris-home"))
        .args(["--json", "config", "init"]);
    let run = Run::of(command.output().unwrap(), &["config", "init"]);
    run.expect_exit(0);
    let written = world.path("iris-home/config.toml");
    assert_eq!(run.json()["path"], written.to_str().unwrap());
    let mut command = world.command(IRIS);
    command
        .env("IRIS_HOME", world.path("iris-home"))
        .args(["config", "check"]);
    let run = Run::of(command.output().unwrap(), &["config", "check"]);
    run.expect_exit(0);
    assert!(
        run.stderr.contains(written.to_str().unwrap()),
        "{}",
        run.stderr
    );
}

#[test]
fn discovery_uses_iris_config_and_the_local_config_dir() {
    let world = World::new();
    let mut command = world.command(IRIS);
    command.env("IRIS_CONFIG", &world.config).args(["teams"]);
    Run::of(command.output().unwrap(), &["teams"]).expect_exit(0);
    // ./config/iris.toml, relative to the current directory.
    std::fs::create_dir_all(world.path("work/config")).unwrap();
    let text = std::fs::read_to_string(&world.config)
        .unwrap()
        .replace("\"teams/", "\"../../teams/");
    std::fs::write(world.path("work/config/iris.toml"), text).unwrap();
    let run = world.iris_discovering(&["tell", "alpha", "beta", "local"]);
    run.expect_exit(0);
    assert_eq!(run.stdout, "echo: local\n");
    assert!(world.path("work/config/data/iris.redb").is_file());
}

#[test]
fn version_prints_the_version() {
    let world = World::new();
    let run = world.iris_discovering(&["version"]);
    run.expect_exit(0);
    assert_eq!(run.stdout, format!("iris {}\n", env!("CARGO_PKG_VERSION")));
    let doc = world.json(&["version"]);
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_built_in_demo_agent_needs_nothing_installed() {
    // A copy of iris alone in a directory, with nothing on PATH: `fake-claude` can only be
    // iris itself.
    let world = World::with_agent("fake-claude");
    let lonely = world.path("lonely/iris");
    std::fs::create_dir_all(lonely.parent().unwrap()).unwrap();
    if std::fs::hard_link(IRIS, &lonely).is_err() {
        std::fs::copy(IRIS, &lonely).unwrap();
    }
    let mut command = world.command(&lonely);
    command
        .env("PATH", "")
        .arg("--config")
        .arg(&world.config)
        .args(["tell", "alpha", "beta", "hello"]);
    let run = Run::of(command.output().unwrap(), &["tell (built-in agent)"]);
    run.expect_exit(0);
    assert_eq!(run.stdout, "echo: hello\n");
    let mut command = world.command(&lonely);
    command
        .env("PATH", "")
        .arg("--config")
        .arg(&world.config)
        .args(["config", "check"]);
    let run = Run::of(
        command.output().unwrap(),
        &["config check (built-in agent)"],
    );
    run.expect_exit(0);
    assert!(
        run.stdout.contains("args = [\"fake-claude\"]"),
        "{}",
        run.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit code and a message that says what to fix

#[test]
fn a_config_syntax_error_gives_line_and_column() {
    let world = World::new();
    std::fs::write(&world.config, "[settings]\nmax_processes = = 3\n").unwrap();
    world
        .iris(&["teams"])
        .expect_exit(2)
        .says(&["line 2, column", "iris.toml"]);
    world
        .iris(&["--json", "teams"])
        .expect_exit(2)
        .json_error("CONFIG_ERROR", &["line 2, column"]);
}

#[test]
fn an_unknown_key_is_named_by_its_path() {
    let world = World::new();
    let text = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &world.config,
        text.replace("description = \"Team beta\"", "descripton = \"x\""),
    )
    .unwrap();
    world
        .iris(&["stats"])
        .expect_exit(2)
        .says(&["teams.beta.descripton", "spelling"]);
}

#[test]
fn an_unknown_team_is_not_found() {
    let world = World::new();
    world
        .iris(&["tell", "alpha", "nobody", "hi"])
        .expect_exit(3)
        .says(&["unknown team nobody", "[teams.nobody]"]);
    world
        .iris(&["--json", "wake", "nobody", "beta"])
        .expect_exit(3)
        .json_error("TEAM_NOT_FOUND", &["nobody"]);
    world
        .iris(&["tell", "al pha", "beta", "hi"])
        .expect_exit(2)
        .says(&["invalid character"]);
}

#[test]
fn a_malformed_session_id_names_the_value_and_the_form() {
    let world = World::new();
    world
        .iris(&["sessions", "show", "not-a-uuid"])
        .expect_exit(2)
        .says(&["not-a-uuid", "UUID"]);
    world
        .iris(&["--json", "sessions", "delete", "1234"])
        .expect_exit(2)
        .json_error("VALIDATION_ERROR", &["1234", "UUID"]);
    world
        .iris(&["sessions", "list", "--status", "sleepy"])
        .expect_exit(2)
        .says(&["sleepy", "active"]);
}

#[test]
fn a_bad_duration_is_a_usage_error() {
    let world = World::new();
    world
        .iris(&["tell", "alpha", "beta", "hi", "--timeout", "30"])
        .expect_exit(2)
        .says(&["--timeout", "unit"]);
    world
        .iris(&["--json", "tell", "alpha", "beta", "hi", "--timeout", "soon"])
        .expect_exit(2)
        .json_error("USAGE_ERROR", &["soon"]);
}

#[test]
fn a_missing_agent_binary_names_the_team_and_the_fix() {
    let world = World::with_agent("no-such-agent-anywhere");
    world
        .iris(&["tell", "alpha", "beta", "hi"])
        .expect_exit(2)
        .says(&[
            "team alpha",
            "no-such-agent-anywhere",
            "PATH",
            "install it",
            "absolute path",
        ]);
    world
        .iris(&["--json", "config", "check"])
        .expect_exit(2)
        .json_error("CONFIG_ERROR", &["no-such-agent-anywhere"]);
}

#[test]
fn no_config_found_says_where_it_looked_and_how_to_create_one() {
    let world = World::new();
    world
        .iris_discovering(&["sessions", "list"])
        .expect_exit(2)
        .says(&[
            "no configuration file found",
            "config/iris.toml",
            "iris config init",
        ]);
    world
        .iris_discovering(&["--config", "missing.toml", "stats"])
        .expect_exit(2)
        .says(&["missing.toml", "does not exist"]);
}
