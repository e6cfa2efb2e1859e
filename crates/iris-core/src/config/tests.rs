use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::error::{Coded, ErrorCode};
use crate::{CompactionPolicy, TeamName};

const DIR: &str = "/srv/iris/config";
const FILE: &str = "test.toml";

fn no_env(_: &str) -> Option<String> {
    None
}

/// An environment holding exactly `pairs`.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn load(text: &str) -> Config {
    load_env(text, &no_env)
}

fn load_env(text: &str, env: Env<'_>) -> Config {
    Config::from_toml_str(text, Path::new(DIR), FILE, env)
        .unwrap_or_else(|e| panic!("should load: {e}\n---\n{text}"))
}

fn err(text: &str) -> ConfigError {
    err_env(text, &no_env)
}

fn err_env(text: &str, env: Env<'_>) -> ConfigError {
    match Config::from_toml_str(text, Path::new(DIR), FILE, env) {
        Ok(config) => panic!("should fail, got {config:?}\n---\n{text}"),
        Err(e) => e,
    }
}

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

/// Asserts `e` is `Invalid` at `key` and returns its message.
fn invalid_at(e: &ConfigError, key: &str) -> String {
    match e {
        ConfigError::Invalid { file, key_path, .. } => {
            assert_eq!(file, FILE);
            assert_eq!(key_path, key, "{e}");
        }
        other => panic!("expected Invalid at {key}, got {other:?}"),
    }
    let shown = e.to_string();
    assert!(shown.contains(FILE) && shown.contains(key), "{shown}");
    shown
}

fn unknown_at(text: &str, key: &str) -> String {
    let e = err(text);
    match &e {
        ConfigError::UnknownKey { file, key_path, .. } => {
            assert_eq!(file, FILE);
            assert_eq!(key_path, key, "{e}");
        }
        other => panic!("expected UnknownKey at {key}, got {other:?}"),
    }
    let shown = e.to_string();
    assert!(shown.contains(key) && shown.contains("spelling"), "{shown}");
    shown
}

// ---------------------------------------------------------------------------------------------
// Defaults

#[test]
fn an_empty_file_is_a_valid_config_with_the_originals_defaults() {
    let config = load("");
    let s = config.settings();
    assert_eq!(s.spawn_timeout, Duration::from_secs(20));
    assert_eq!(s.response_timeout, Duration::from_secs(120));
    assert_eq!(s.tool_timeout, Duration::from_secs(30 * 60));
    assert_eq!(s.turn_timeout, None, "no cap on a turn's total time");
    assert_eq!(s.idle_timeout, Duration::from_secs(3600));
    assert_eq!(s.session_init_timeout, Duration::from_secs(30));
    assert_eq!(s.health_check_interval, Duration::from_secs(30));
    assert_eq!(s.passivate_after, Duration::from_secs(300));
    assert_eq!(s.max_processes.get(), 10);
    assert_eq!(s.queue_depth.get(), 64);
    assert_eq!(s.turn_retention.get(), 200);
    assert_eq!(s.turn_text_limit.get(), 16_384);
    assert_eq!(s.crash_limit.get(), 3);
    assert_eq!(s.crash_window, Duration::from_secs(60));
    assert_eq!(s.session_init, SessionInit::Eager);
    assert_eq!(s.compaction, CompactionPolicy::default());
    assert_eq!(*s, Settings::default());
    assert_eq!(config.agent(), &AgentConfig::default());
    assert_eq!(config.agent().command, "claude");
    assert!(config.agent().args.is_empty() && config.agent().env.is_empty());
    assert!(config.teams().is_empty());
    assert_eq!(
        config.database(),
        &DatabaseLocation::File(PathBuf::from("/srv/iris/config/data/iris.redb"))
    );
    assert_eq!(config.config_dir(), Path::new(DIR));
    assert_eq!(config.source(), FILE);
}

#[test]
fn a_team_gets_the_originals_defaults() {
    let config = load("[teams.alpha]\npath = \"/p/alpha\"\n");
    let alpha = config.team(&team("alpha")).unwrap();
    assert_eq!(alpha.grant_permission, GrantPermission::Ask);
    assert_eq!(alpha.description, "");
    assert!(!alpha.is_remote());
    assert!(alpha.allowed_tools.is_empty() && alpha.disallowed_tools.is_empty());
    assert_eq!(alpha.append_system_prompt, None);
    assert_eq!(alpha.node, None);
    assert_eq!(
        config.agent_for(&team("alpha")),
        Some(AgentConfig::default())
    );
    assert_eq!(
        config.idle_timeout_for(&team("alpha")),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        config.session_init_timeout_for(&team("alpha")),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        config.tool_timeout_for(&team("alpha")),
        Some(Duration::from_secs(30 * 60))
    );
    assert_eq!(config.turn_timeout_for(&team("alpha")), Some(None));
    assert_eq!(config.team(&team("nope")), None);
    assert_eq!(config.tool_timeout_for(&team("nope")), None);
    assert_eq!(config.turn_timeout_for(&team("nope")), None);
    assert_eq!(config.agent_for(&team("nope")), None);
    assert_eq!(config.idle_timeout_for(&team("nope")), None);
}

#[test]
fn every_setting_can_be_set() {
    let config = load(
        r#"
        [settings]
        spawn_timeout = "5s"
        response_timeout = "2m"
        tool_timeout = "2h"
        turn_timeout = "${TURN_TIMEOUT:-3h}"
        idle_timeout = "90m"
        session_init_timeout = "45s"
        health_check_interval = "1m 30s"
        passivate_after = "10m"
        max_processes = 3
        queue_depth = 4
        turn_retention = 50
        turn_text_limit = "${TEXT_LIMIT:-1024}"
        crash_limit = 5
        crash_window = "2m"
        session_init = "lazy"

        [settings.compaction]
        max_messages = 50
        aged_messages = "${AGED:-7}"
        max_age = "2days"
        "#,
    );
    let s = config.settings();
    assert_eq!(s.spawn_timeout, Duration::from_secs(5));
    assert_eq!(s.response_timeout, Duration::from_secs(120));
    assert_eq!(s.tool_timeout, Duration::from_secs(2 * 3600));
    assert_eq!(s.turn_timeout, Some(Duration::from_secs(3 * 3600)));
    assert_eq!(s.idle_timeout, Duration::from_secs(90 * 60));
    assert_eq!(s.session_init_timeout, Duration::from_secs(45));
    assert_eq!(s.health_check_interval, Duration::from_secs(90));
    assert_eq!(s.passivate_after, Duration::from_secs(600));
    assert_eq!(s.max_processes.get(), 3);
    assert_eq!(s.queue_depth.get(), 4);
    assert_eq!(s.turn_retention.get(), 50);
    assert_eq!(s.turn_text_limit.get(), 1024);
    assert_eq!(s.crash_limit.get(), 5);
    assert_eq!(s.crash_window, Duration::from_secs(120));
    assert_eq!(s.session_init, SessionInit::Lazy);
    assert_eq!(
        s.compaction,
        CompactionPolicy {
            max_messages: 50,
            aged_messages: 7,
            max_age: Duration::from_secs(2 * 24 * 3600),
        }
    );
}

#[test]
fn tool_and_turn_timeouts_default_from_settings_and_teams_override_them() {
    let config = load(
        r#"
        [settings]
        tool_timeout = "45m"
        turn_timeout = "2h"

        [teams.alpha]
        path = "/p/alpha"

        [teams.beta]
        path = "/p/beta"
        tool_timeout = "4h"
        turn_timeout = "6h"

        [teams.gamma]
        path = "/p/gamma"
        turn_timeout = "off"
        "#,
    );
    let (alpha, beta, gamma) = (team("alpha"), team("beta"), team("gamma"));
    assert_eq!(
        config.tool_timeout_for(&alpha),
        Some(Duration::from_secs(45 * 60))
    );
    assert_eq!(
        config.turn_timeout_for(&alpha),
        Some(Some(Duration::from_secs(2 * 3600)))
    );
    assert_eq!(
        config.tool_timeout_for(&beta),
        Some(Duration::from_secs(4 * 3600))
    );
    assert_eq!(
        config.turn_timeout_for(&beta),
        Some(Some(Duration::from_secs(6 * 3600)))
    );
    assert_eq!(
        config.turn_timeout_for(&gamma),
        Some(None),
        "\"off\" removes the team's cap"
    );
    assert_eq!(
        config.tool_timeout_for(&gamma),
        Some(Duration::from_secs(45 * 60))
    );

    // An empty value (a variable set to nothing) switches the cap off too.
    let off = load_env(
        "[settings]\nturn_timeout = \"${TURN_TIMEOUT:-1h}\"\n",
        &env_of(&[("TURN_TIMEOUT", "")]),
    );
    assert_eq!(off.settings().turn_timeout, None);

    // Neither may be zero or a bare number; turn_timeout's error mentions "off".
    let shown = invalid_at(
        &err("[settings]\ntool_timeout = \"0s\"\n"),
        "settings.tool_timeout",
    );
    assert!(shown.contains("greater than zero"), "{shown}");
    let shown = invalid_at(
        &err("[settings]\nturn_timeout = \"never\"\n"),
        "settings.turn_timeout",
    );
    assert!(shown.contains("\"off\""), "{shown}");
    let shown = invalid_at(
        &err("[teams.alpha]\npath = \"/p\"\nturn_timeout = 3600\n"),
        "teams.alpha.turn_timeout",
    );
    assert!(shown.contains("3600ms"), "{shown}");
    invalid_at(
        &err("[teams.alpha]\npath = \"/p\"\ntool_timeout = \"0s\"\n"),
        "teams.alpha.tool_timeout",
    );
}

#[test]
fn a_partial_compaction_table_keeps_the_other_defaults() {
    let config = load("[settings.compaction]\nmax_messages = 9\n");
    let c = config.settings().compaction;
    assert_eq!(c.max_messages, 9);
    assert_eq!(c.aged_messages, CompactionPolicy::default().aged_messages);
    assert_eq!(c.max_age, CompactionPolicy::default().max_age);
}

// ---------------------------------------------------------------------------------------------
// Paths

#[test]
fn relative_team_and_database_paths_resolve_against_the_config_dir() {
    let config = load(
        r#"
        [database]
        path = "state/iris.redb"

        [teams.alpha]
        path = "../examples/teams/alpha"

        [teams.beta]
        path = "./beta"

        [teams.gamma]
        path = "/abs/gamma"
        "#,
    );
    assert_eq!(
        config.database(),
        &DatabaseLocation::File(PathBuf::from("/srv/iris/config/state/iris.redb"))
    );
    assert_eq!(
        config.database().path(),
        Some(Path::new("/srv/iris/config/state/iris.redb"))
    );
    let path = |name: &str| config.team(&team(name)).unwrap().path.clone();
    assert_eq!(
        path("alpha"),
        PathBuf::from("/srv/iris/config/../examples/teams/alpha")
    );
    assert_eq!(path("beta"), PathBuf::from("/srv/iris/config/beta"));
    assert_eq!(path("gamma"), PathBuf::from("/abs/gamma"));
    for t in config.teams().values() {
        assert!(t.path.is_absolute());
    }
}

#[test]
fn an_absolute_database_path_is_kept() {
    let config = load("[database]\npath = \"/var/lib/iris/db.redb\"\n");
    assert_eq!(
        config.database(),
        &DatabaseLocation::File(PathBuf::from("/var/lib/iris/db.redb"))
    );
}

#[test]
fn a_relative_config_dir_is_made_absolute() {
    let config = Config::from_toml_str("", Path::new("some/dir"), FILE, &no_env).unwrap();
    assert!(config.config_dir().is_absolute());
    assert!(config.config_dir().ends_with("some/dir"));
    assert!(config.database().path().unwrap().is_absolute());
}

#[test]
fn a_tilde_path_is_rejected_with_a_hint() {
    let e = err("[teams.alpha]\npath = \"~/proj\"\n");
    let shown = invalid_at(&e, "teams.alpha.path");
    assert!(shown.contains("${HOME}"), "{shown}");
}

#[test]
fn a_missing_team_path_is_an_error_naming_the_key() {
    let e = err("[teams.alpha]\ndescription = \"x\"\n");
    let shown = invalid_at(&e, "teams.alpha.path");
    assert!(shown.contains("required"), "{shown}");
}

#[test]
fn an_empty_team_path_is_rejected() {
    let e = err("[teams.alpha]\npath = \"${P:-}\"\n");
    invalid_at(&e, "teams.alpha.path");
}

#[test]
fn in_memory_database() {
    let config = load("[database]\nin_memory = true\n");
    assert_eq!(config.database(), &DatabaseLocation::InMemory);
    assert_eq!(config.database().path(), None);
    // in_memory wins over a path, so one template can switch between them with a variable.
    let text = "[database]\npath = \"${IRIS_DB_PATH:-data/x.redb}\"\nin_memory = \"${IRIS_DB_IN_MEMORY:-false}\"\n";
    assert_eq!(
        load(text).database(),
        &DatabaseLocation::File(PathBuf::from("/srv/iris/config/data/x.redb"))
    );
    let env = env_of(&[("IRIS_DB_IN_MEMORY", "true")]);
    assert_eq!(load_env(text, &env).database(), &DatabaseLocation::InMemory);
    let env = env_of(&[("IRIS_DB_IN_MEMORY", "maybe")]);
    let shown = invalid_at(&err_env(text, &env), "database.in_memory");
    assert!(shown.contains("\"maybe\"") && shown.contains("true or false"));
}

// ---------------------------------------------------------------------------------------------
// Interpolation and coercion

#[test]
fn max_processes_from_a_variable_with_a_default() {
    let text = "[settings]\nmax_processes = \"${IRIS_MAX_PROCESSES:-10}\"\n";
    assert_eq!(load(text).settings().max_processes.get(), 10);
    let env = env_of(&[("IRIS_MAX_PROCESSES", "4")]);
    assert_eq!(load_env(text, &env).settings().max_processes.get(), 4);
    let env = env_of(&[("IRIS_MAX_PROCESSES", "ten")]);
    let shown = invalid_at(&err_env(text, &env), "settings.max_processes");
    assert!(shown.contains("\"ten\""), "{shown}");
}

#[test]
fn turn_and_crash_settings_from_variables() {
    let text = r#"
        [settings]
        turn_retention = "${IRIS_TURN_RETENTION:-200}"
        turn_text_limit = "${IRIS_TURN_TEXT_LIMIT:-16384}"
        crash_limit = "${IRIS_CRASH_LIMIT:-3}"
        crash_window = "${IRIS_CRASH_WINDOW:-60s}"
        "#;
    assert_eq!(*load(text).settings(), Settings::default());
    let env = env_of(&[
        ("IRIS_TURN_RETENTION", "7"),
        ("IRIS_TURN_TEXT_LIMIT", "64"),
        ("IRIS_CRASH_LIMIT", "1"),
        ("IRIS_CRASH_WINDOW", "5m"),
    ]);
    let config = load_env(text, &env);
    let s = config.settings();
    assert_eq!(s.turn_retention.get(), 7);
    assert_eq!(s.turn_text_limit.get(), 64);
    assert_eq!(s.crash_limit.get(), 1);
    assert_eq!(s.crash_window, Duration::from_secs(300));
    let env = env_of(&[("IRIS_CRASH_WINDOW", "60")]);
    let shown = invalid_at(&err_env(text, &env), "settings.crash_window");
    assert!(shown.contains("60s"), "{shown}");
    let env = env_of(&[("IRIS_TURN_TEXT_LIMIT", "16k")]);
    let shown = invalid_at(&err_env(text, &env), "settings.turn_text_limit");
    assert!(shown.contains("\"16k\""), "{shown}");
}

#[test]
fn a_set_but_empty_variable_wins_over_the_default() {
    let text = "[teams.alpha]\npath = \"/p\"\ndescription = \"${DESC:-fallback}\"\n";
    assert_eq!(
        load(text).team(&team("alpha")).unwrap().description,
        "fallback"
    );
    let env = env_of(&[("DESC", "")]);
    assert_eq!(
        load_env(text, &env)
            .team(&team("alpha"))
            .unwrap()
            .description,
        ""
    );
    // …even where the empty value is then invalid: the variable is not ignored.
    let text = "[settings]\nmax_processes = \"${N:-10}\"\n";
    let env = env_of(&[("N", "")]);
    invalid_at(&err_env(text, &env), "settings.max_processes");
}

#[test]
fn two_interpolations_in_one_string() {
    let env = env_of(&[("A", "one")]);
    assert_eq!(interpolate("${A:-x}/${B:-y}", &env).unwrap(), "one/y");
    assert_eq!(
        interpolate("${B:-x}-${A}-${C:-z}", &env).unwrap(),
        "x-one-z"
    );
    let text = "[teams.alpha]\npath = \"/${ROOT:-srv}/${TEAM:-alpha}\"\n";
    let env = env_of(&[("TEAM", "a2")]);
    assert_eq!(
        load_env(text, &env).team(&team("alpha")).unwrap().path,
        PathBuf::from("/srv/a2")
    );
}

#[test]
fn dollar_dollar_is_a_literal_dollar() {
    let env = env_of(&[("A", "v")]);
    assert_eq!(interpolate("cost $$5", &env).unwrap(), "cost $5");
    assert_eq!(interpolate("$$${A}", &env).unwrap(), "$v");
    assert_eq!(interpolate("$${A}", &env).unwrap(), "${A}");
    assert_eq!(interpolate("$$$$", &env).unwrap(), "$$");
    // A `$` not followed by `$` or `{` is kept.
    assert_eq!(interpolate("$HOME and $", &env).unwrap(), "$HOME and $");
    let config = load_env("[agent]\nargs = [\"--price=$$3\", \"${A}\"]\n", &env);
    assert_eq!(config.agent().args, vec!["--price=$3", "v"]);
}

#[test]
fn defaults_are_literal_and_may_hold_colons() {
    assert_eq!(
        interpolate("${URL:-http://localhost:1615}", &no_env).unwrap(),
        "http://localhost:1615"
    );
    assert_eq!(interpolate("${X:-}", &no_env).unwrap(), "");
    assert_eq!(interpolate("${X:-$$}", &no_env).unwrap(), "$$");
}

#[test]
fn a_missing_variable_names_the_variable_the_key_and_the_fix() {
    let e = err("[teams.alpha]\npath = \"${PROJECTS}/alpha\"\n");
    match &e {
        ConfigError::MissingVar {
            file,
            key_path,
            var,
        } => {
            assert_eq!(file, FILE);
            assert_eq!(key_path, "teams.alpha.path");
            assert_eq!(var, "PROJECTS");
        }
        other => panic!("expected MissingVar, got {other:?}"),
    }
    let shown = e.to_string();
    assert!(shown.contains(FILE), "{shown}");
    assert!(shown.contains("teams.alpha.path"), "{shown}");
    assert!(
        shown.contains("set it or write ${PROJECTS:-default}"),
        "{shown}"
    );

    let e = err("[settings]\nmax_processes = \"${IRIS_MAX}\"\n");
    assert!(
        matches!(&e, ConfigError::MissingVar { key_path, var, .. }
            if key_path == "settings.max_processes" && var == "IRIS_MAX"),
        "{e:?}"
    );
    let e = err("[agent]\nargs = [\"a\", \"${ARG}\"]\n");
    assert!(
        matches!(&e, ConfigError::MissingVar { key_path, .. } if key_path == "agent.args[1]"),
        "{e:?}"
    );
}

#[test]
fn malformed_references_are_errors_with_a_fix() {
    for (value, expected) in [
        ("${A", "never closed"),
        ("${A:-x", "never closed"),
        ("${}", "empty variable name"),
        ("${:-x}", "empty variable name"),
        ("${A:x}", "not followed by `-`"),
        ("${A:=x}", "not followed by `-`"),
    ] {
        let text = format!("[teams.alpha]\npath = \"/p\"\ndescription = \"{value}\"\n");
        let e = err(&text);
        assert!(
            matches!(&e, ConfigError::Interpolation { key_path, .. } if key_path == "teams.alpha.description"),
            "{value}: {e:?}"
        );
        let shown = e.to_string();
        assert!(shown.contains(expected), "{value}: {shown}");
        assert!(shown.contains(FILE), "{shown}");
    }
}

#[test]
fn keys_and_non_strings_are_not_interpolated() {
    let config = load("[agent.env]\n\"${KEY}\" = \"v\"\n\n[settings]\nmax_processes = 7\n");
    assert_eq!(
        config.agent().env.get("${KEY}").map(String::as_str),
        Some("v")
    );
    assert_eq!(config.settings().max_processes.get(), 7);
}

#[test]
fn interpolation_reaches_nested_tables_and_arrays() {
    let env = env_of(&[("HOST", "build@ci"), ("TOOL", "Bash")]);
    let config = load_env(
        r#"
        [teams.alpha]
        path = "/p"
        allowed_tools = ["Read", "${TOOL}"]
        [teams.alpha.remote]
        destination = "${HOST}"
        port = "${SSH_PORT:-2222}"
        "#,
        &env,
    );
    let alpha = config.team(&team("alpha")).unwrap();
    assert_eq!(alpha.allowed_tools, vec!["Read", "Bash"]);
    let remote = alpha.remote.as_ref().unwrap();
    assert_eq!(remote.destination, "build@ci");
    assert_eq!(remote.port, Some(2222));
}

#[test]
fn the_process_env_loader_uses_the_real_environment() {
    // PATH is set in any test environment; the loader must see it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iris.toml");
    std::fs::write(
        &file,
        "[teams.alpha]\npath = \"/p\"\ndescription = \"${PATH}\"\n",
    )
    .unwrap();
    let config = Config::load(&file).unwrap();
    assert!(!config.team(&team("alpha")).unwrap().description.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Rejections

#[test]
fn unknown_keys_are_named_by_their_full_path() {
    let shown = unknown_at("setings = 1\n", "setings");
    assert!(shown.contains("`settings`"), "{shown}");
    unknown_at("[settings]\nmax_process = 3\n", "settings.max_process");
    let shown = unknown_at("[settings]\nturn_retain = 3\n", "settings.turn_retain");
    assert!(shown.contains("`turn_retention`"), "{shown}");
    let shown = unknown_at(
        "[settings]\ncrash_windows = \"1m\"\n",
        "settings.crash_windows",
    );
    assert!(shown.contains("`crash_window`"), "{shown}");
    unknown_at(
        "[settings.compaction]\nmax_mesages = 3\n",
        "settings.compaction.max_mesages",
    );
    unknown_at("[database]\ninmemory = true\n", "database.inmemory");
    let shown = unknown_at(
        "[teams.alpha]\npath = \"/p\"\n[teams.alpha.agent]\ncomand = \"x\"\n",
        "teams.alpha.agent.comand",
    );
    assert!(shown.contains("`command`"), "{shown}");
    unknown_at(
        "[teams.alpha]\npath = \"/p\"\n[teams.alpha.remote]\ndestination = \"h\"\nhostt = \"x\"\n",
        "teams.alpha.remote.hostt",
    );
    unknown_at(
        "[teams.\"service.v2\"]\npath = \"/p\"\ncolour = \"#fff\"\n",
        "teams.\"service.v2\".colour",
    );
}

#[test]
fn a_syntax_error_gives_file_line_and_column() {
    let e = err("[settings]\nmax_processes = = 3\n");
    match &e {
        ConfigError::Syntax {
            file, line, column, ..
        } => {
            assert_eq!(file, FILE);
            assert_eq!(*line, 2);
            assert_eq!(*column, 17);
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
    let shown = e.to_string();
    assert!(shown.starts_with("test.toml:2:17:"), "{shown}");

    let e = err("[settings]\nspawn_timeout = \"5s\"\nspawn_timeout = \"6s\"\n");
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                line: 3,
                column: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn bad_durations_name_the_key_show_the_value_and_an_example() {
    let shown = invalid_at(
        &err("[settings]\nspawn_timeout = \"20 sekunden\"\n"),
        "settings.spawn_timeout",
    );
    assert!(shown.contains("\"20 sekunden\""), "{shown}");
    assert!(shown.contains("\"20s\""), "{shown}");

    // The original's milliseconds are not silently reinterpreted.
    let shown = invalid_at(
        &err("[settings]\nidle_timeout = 3600000\n"),
        "settings.idle_timeout",
    );
    assert!(shown.contains("3600000ms"), "{shown}");

    let shown = invalid_at(
        &err("[settings]\nresponse_timeout = \"0s\"\n"),
        "settings.response_timeout",
    );
    assert!(shown.contains("greater than zero"), "{shown}");

    invalid_at(
        &err("[teams.alpha]\npath = \"/p\"\nidle_timeout = \"soon\"\n"),
        "teams.alpha.idle_timeout",
    );
    invalid_at(
        &err("[settings.compaction]\nmax_age = \"a week\"\n"),
        "settings.compaction.max_age",
    );
}

#[test]
fn an_invalid_team_name_names_the_key_and_the_rule() {
    let e = err("[teams.\"bad name\"]\npath = \"/p\"\n");
    match &e {
        ConfigError::InvalidTeamName { key_path, name, .. } => {
            assert_eq!(key_path, "teams.\"bad name\"");
            assert_eq!(name, "bad name");
        }
        other => panic!("expected InvalidTeamName, got {other:?}"),
    }
    let shown = e.to_string();
    assert!(
        shown.contains(FILE) && shown.contains("teams.\"bad name\""),
        "{shown}"
    );
    assert!(shown.contains("invalid character"), "{shown}");

    let shown = err("[teams.-flag]\npath = \"/p\"\n").to_string();
    assert!(shown.contains("must not begin with"), "{shown}");
    // The name is checked before the table's contents.
    assert!(matches!(
        err("[teams.\"a;b\"]\nbogus = 1\n"),
        ConfigError::InvalidTeamName { .. }
    ));
}

#[test]
fn zero_processes_or_queue_depth_are_rejected() {
    let shown = invalid_at(
        &err("[settings]\nmax_processes = 0\n"),
        "settings.max_processes",
    );
    assert!(shown.contains("at least 1"), "{shown}");
    invalid_at(
        &err("[settings]\nmax_processes = \"${N:-0}\"\n"),
        "settings.max_processes",
    );
    // A negative number names the real lower bound, 1.
    for text in ["max_processes = -1", "max_processes = \"-1\""] {
        let shown = invalid_at(
            &err(&format!("[settings]\n{text}\n")),
            "settings.max_processes",
        );
        assert!(shown.contains("≥ 1"), "{shown}");
        assert!(!shown.contains("≥ 0"), "{shown}");
    }
    invalid_at(
        &err("[settings]\nqueue_depth = 0\n"),
        "settings.queue_depth",
    );
    for key in ["turn_retention", "turn_text_limit", "crash_limit"] {
        let shown = invalid_at(
            &err(&format!("[settings]\n{key} = 0\n")),
            &format!("settings.{key}"),
        );
        assert!(shown.contains("at least 1"), "{shown}");
    }
    let shown = invalid_at(
        &err("[settings]\ncrash_window = \"0s\"\n"),
        "settings.crash_window",
    );
    assert!(shown.contains("greater than zero"), "{shown}");
}

#[test]
fn wrong_types_and_enum_values_name_the_key() {
    invalid_at(
        &err("[settings]\nmax_processes = [1]\n"),
        "settings.max_processes",
    );
    let shown = invalid_at(
        &err("[settings]\nsession_init = \"sometimes\"\n"),
        "settings.session_init",
    );
    assert!(shown.contains("eager") && shown.contains("lazy"), "{shown}");
    let shown = invalid_at(
        &err("[teams.alpha]\npath = \"/p\"\ngrant_permission = \"maybe\"\n"),
        "teams.alpha.grant_permission",
    );
    assert!(shown.contains("forward"), "{shown}");
    invalid_at(&err("[agent]\ncommand = \"\"\n"), "agent.command");
    invalid_at(&err("[agent]\nargs = \"--x\"\n"), "agent.args");
    invalid_at(&err("[agent.env]\nDEBUG = 1\n"), "agent.env.DEBUG");
    invalid_at(&err("[agent.env]\n\"A=B\" = \"1\"\n"), "agent.env");
    let shown = invalid_at(&err("[teams]\nalpha = 3\n"), "teams.alpha");
    assert!(
        shown.contains("expected a table") && !shown.contains("Raw"),
        "{shown}"
    );
}

#[test]
fn grant_permission_values() {
    for (written, expected) in [
        ("yes", GrantPermission::Yes),
        ("no", GrantPermission::No),
        ("ask", GrantPermission::Ask),
        ("forward", GrantPermission::Forward),
    ] {
        let config = load(&format!(
            "[teams.alpha]\npath = \"/p\"\ngrant_permission = \"{written}\"\n"
        ));
        assert_eq!(
            config.team(&team("alpha")).unwrap().grant_permission,
            expected
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Teams

#[test]
fn per_team_overrides_and_agent_merge() {
    let config = load(
        r#"
        [cluster]
        cookie = "c"
        [cluster.nodes.node-1]
        address = "127.0.0.1:7501"

        [agent]
        command = "claude"
        args = ["--verbose"]
        env = { SHARED = "base", ONLY_BASE = "1" }

        [teams.alpha]
        path = "/p/alpha"
        description = "The alpha team"
        idle_timeout = "10m"
        session_init_timeout = "1m"
        allowed_tools = ["Read", "Grep"]
        disallowed_tools = ["Bash"]
        append_system_prompt = "Be brief."
        node = "node-1"
        grant_permission = "forward"

        [teams.alpha.agent]
        command = "/opt/claude/bin/claude"
        env = { SHARED = "alpha", ONLY_ALPHA = "2" }

        [teams.beta]
        path = "/p/beta"
        agent = { args = [] }

        [teams.gamma]
        path = "/p/gamma"
        agent = { args = ["--model", "x"] }
        append_system_prompt = ""
        "#,
    );
    let alpha_name = team("alpha");
    let alpha = config.team(&alpha_name).unwrap();
    assert_eq!(alpha.description, "The alpha team");
    assert_eq!(alpha.allowed_tools, vec!["Read", "Grep"]);
    assert_eq!(alpha.disallowed_tools, vec!["Bash"]);
    assert_eq!(alpha.append_system_prompt.as_deref(), Some("Be brief."));
    assert_eq!(alpha.node.as_ref().map(|n| n.as_str()), Some("node-1"));
    assert_eq!(alpha.grant_permission, GrantPermission::Forward);
    assert_eq!(
        config.idle_timeout_for(&alpha_name),
        Some(Duration::from_secs(600))
    );
    assert_eq!(
        config.session_init_timeout_for(&alpha_name),
        Some(Duration::from_secs(60))
    );

    let agent = config.agent_for(&alpha_name).unwrap();
    assert_eq!(agent.command, "/opt/claude/bin/claude");
    assert_eq!(agent.args, vec!["--verbose"], "args not given: inherited");
    let env: Vec<(&str, &str)> = agent
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        vec![("ONLY_ALPHA", "2"), ("ONLY_BASE", "1"), ("SHARED", "alpha")]
    );
    assert_eq!(alpha.effective_agent(config.agent()), agent);

    let beta = config.agent_for(&team("beta")).unwrap();
    assert_eq!(beta.command, "claude");
    assert!(beta.args.is_empty(), "an empty list replaces the base args");
    assert_eq!(beta.env, config.agent().env);
    assert_eq!(
        config.idle_timeout_for(&team("beta")),
        Some(Duration::from_secs(3600))
    );

    let gamma = config.team(&team("gamma")).unwrap();
    assert_eq!(
        config.agent_for(&team("gamma")).unwrap().args,
        vec!["--model", "x"]
    );
    assert_eq!(gamma.append_system_prompt, None, "empty means unset");

    let names: Vec<&str> = config.team_names().map(TeamName::as_str).collect();
    assert_eq!(names, vec!["alpha", "beta", "gamma"]);
}

#[test]
fn a_remote_table_parses() {
    let config = load(
        r#"
        [teams.far]
        path = "/home/me/project"
        [teams.far.remote]
        destination = "me@build-host"
        port = 2222
        identity = "keys/id_ed25519"
        options = ["ProxyJump=bastion", "ConnectTimeout=10"]
        extra_args = ["-C"]
        "#,
    );
    let far = config.team(&team("far")).unwrap();
    assert!(far.is_remote());
    assert_eq!(far.path, PathBuf::from("/home/me/project"));
    assert_eq!(
        far.remote,
        Some(RemoteConfig {
            destination: "me@build-host".to_owned(),
            port: Some(2222),
            identity: Some(PathBuf::from("/srv/iris/config/keys/id_ed25519")),
            options: vec![
                "ProxyJump=bastion".to_owned(),
                "ConnectTimeout=10".to_owned()
            ],
            extra_args: vec!["-C".to_owned()],
        })
    );

    let minimal = load("[teams.far]\npath = \"/p\"\nremote = { destination = \"host\" }\n");
    let remote = minimal.team(&team("far")).unwrap().remote.clone().unwrap();
    assert_eq!(remote.port, None);
    assert_eq!(remote.identity, None);
    assert!(remote.options.is_empty() && remote.extra_args.is_empty());
}

#[test]
fn remote_mistakes_are_rejected() {
    let base = "[teams.far]\npath = \"/p\"\n";
    let shown = invalid_at(
        &err("[teams.far]\npath = \"project\"\nremote = { destination = \"h\" }\n"),
        "teams.far.path",
    );
    assert!(shown.contains("remote host"), "{shown}");
    invalid_at(
        &err(&format!("{base}remote = {{ port = 22 }}\n")),
        "teams.far.remote.destination",
    );
    invalid_at(
        &err(&format!(
            "{base}remote = {{ destination = \"-oProxyCommand=evil\" }}\n"
        )),
        "teams.far.remote.destination",
    );
    invalid_at(
        &err(&format!("{base}remote = {{ destination = \"a b\" }}\n")),
        "teams.far.remote.destination",
    );
    for port in ["0", "70000", "\"ssh\""] {
        invalid_at(
            &err(&format!(
                "{base}remote = {{ destination = \"h\", port = {port} }}\n"
            )),
            "teams.far.remote.port",
        );
    }
    invalid_at(
        &err(&format!(
            "{base}remote = {{ destination = \"h\", options = [\"-o\"] }}\n"
        )),
        "teams.far.remote.options",
    );
}

// ---------------------------------------------------------------------------------------------
// Files

#[test]
fn load_resolves_against_the_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iris.toml");
    std::fs::write(&file, "[teams.alpha]\npath = \"alpha\"\n").unwrap();
    let config = Config::load_with_env(&file, &no_env).unwrap();
    assert_eq!(config.config_dir(), dir.path());
    assert_eq!(config.source(), file.display().to_string());
    assert_eq!(
        config.team(&team("alpha")).unwrap().path,
        dir.path().join("alpha")
    );
    assert_eq!(
        config.database(),
        &DatabaseLocation::File(dir.path().join("data/iris.redb"))
    );
}

#[test]
fn errors_from_a_file_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iris.toml");
    std::fs::write(&file, "[settings]\nmax_processes = 0\n").unwrap();
    let shown = Config::load_with_env(&file, &no_env)
        .unwrap_err()
        .to_string();
    assert!(shown.contains(&file.display().to_string()), "{shown}");
}

#[test]
fn a_missing_file_says_which_path_and_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nope.toml");
    let e = Config::load(&file).unwrap_err();
    assert!(
        matches!(&e, ConfigError::NotFound { path } if *path == file),
        "{e:?}"
    );
    let shown = e.to_string();
    assert!(shown.contains(&file.display().to_string()), "{shown}");
    assert!(shown.contains("create it"), "{shown}");
    // A directory is not a configuration file.
    let e = Config::load(dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::NotAFile { .. }), "{e:?}");
}

#[test]
fn the_shipped_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/iris.toml");
    let config = Config::load_with_env(&path, &no_env).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.team_names().map(TeamName::as_str).collect();
    assert_eq!(names, vec!["alpha", "beta", "gamma"]);
    for name in names {
        let t = team(name);
        assert_eq!(config.agent_for(&t).unwrap().command, "fake-claude");
        let path = &config.team(&t).unwrap().path;
        assert!(path.is_absolute());
        assert!(path.ends_with(format!("examples/teams/{name}")), "{path:?}");
        assert!(!config.team(&t).unwrap().is_remote());
    }
    assert_eq!(*config.settings(), Settings::default());
    assert!(config.config_dir().ends_with("config"));
    // It also loads with its variables set.
    let env = env_of(&[("IRIS_MAX_PROCESSES", "3"), ("IRIS_DB_IN_MEMORY", "true")]);
    let config = Config::load_with_env(&path, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.settings().max_processes,
        NonZeroUsize::new(3).unwrap()
    );
    assert_eq!(config.database(), &DatabaseLocation::InMemory);
}

#[test]
fn the_effective_config_round_trips_through_toml() {
    let config = load(
        r#"
        [settings]
        idle_timeout = "90m"
        session_init = "lazy"
        turn_retention = 12
        turn_text_limit = 100
        crash_limit = 2
        crash_window = "90s"
        [settings.compaction]
        max_age = "3days"
        [agent]
        args = ["--verbose"]
        env = { A = "1" }
        [teams.alpha]
        path = "alpha"
        description = "Alpha"
        idle_timeout = "5m"
        tool_timeout = "1h"
        turn_timeout = "off"
        agent = { command = "other", env = { B = "2" } }
        [teams."service.v2"]
        path = "/p/v2"
        grant_permission = "no"
        turn_timeout = "2h"
        remote = { destination = "h", port = 2200, options = ["ProxyJump=b"] }
        "#,
    );
    let text = config.to_toml_string().unwrap();
    let again = Config::from_toml_str(&text, Path::new(DIR), FILE, &no_env)
        .unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    assert_eq!(again, config, "{text}");
    assert!(text.contains("idle_timeout = \"1h 30m\""), "{text}");
    assert!(text.contains("crash_window = \"1m 30s\""), "{text}");
    assert!(text.contains("turn_retention = 12"), "{text}");
    assert!(text.contains("turn_timeout = \"off\""), "{text}");
    assert!(text.contains("turn_timeout = \"2h\""), "{text}");

    // Values holding `$` survive the trip: they are written escaped.
    let dollars =
        load("[teams.alpha]\npath = \"/p/$$${X:-x}\"\ndescription = \"costs $$5, see $${HOME}\"\n");
    assert_eq!(
        dollars.team(&team("alpha")).unwrap().description,
        "costs $5, see ${HOME}"
    );
    let text = dollars.to_toml_string().unwrap();
    assert_eq!(
        Config::from_toml_str(&text, Path::new(DIR), FILE, &no_env).unwrap(),
        dollars,
        "{text}"
    );

    let in_memory = load("[database]\nin_memory = true\n");
    let text = in_memory.to_toml_string().unwrap();
    assert!(text.contains("in_memory = true"), "{text}");
    assert_eq!(
        Config::from_toml_str(&text, Path::new(DIR), FILE, &no_env).unwrap(),
        in_memory
    );
}

#[test]
fn agent_commands_can_be_rewritten_per_team() {
    let mut config = load(
        r#"
        [agent]
        command = "fake-claude"
        args = ["--model", "m"]
        env = { A = "1" }
        [teams.alpha]
        path = "alpha"
        [teams.beta]
        path = "beta"
        agent = { command = "other", args = [], env = { B = "2" } }
        [teams.far]
        path = "/p/far"
        remote = { destination = "h" }
        "#,
    );
    let mut seen = Vec::new();
    config
        .rewrite_agent_commands(|name, team, agent| {
            seen.push((name.to_string(), agent.command.clone(), agent.args.clone()));
            if team.is_remote() {
                return Ok::<_, String>(None);
            }
            let mut args = vec!["sub".to_owned()];
            args.extend(agent.args.iter().cloned());
            Ok(Some((format!("/bin/{}", agent.command), args)))
        })
        .unwrap();
    // Every team is visited in name order with its effective agent.
    assert_eq!(
        seen,
        vec![
            (
                "alpha".into(),
                "fake-claude".into(),
                vec!["--model".into(), "m".into()]
            ),
            ("beta".into(), "other".into(), vec![]),
            (
                "far".into(),
                "fake-claude".into(),
                vec!["--model".into(), "m".into()]
            ),
        ]
    );
    let alpha = config.agent_for(&team("alpha")).unwrap();
    assert_eq!(alpha.command, "/bin/fake-claude");
    assert_eq!(alpha.args, ["sub", "--model", "m"]);
    assert_eq!(alpha.env.get("A").map(String::as_str), Some("1"));
    let beta = config.agent_for(&team("beta")).unwrap();
    assert_eq!(beta.command, "/bin/other");
    assert_eq!(beta.args, ["sub"]);
    assert_eq!(
        beta.env.get("B").map(String::as_str),
        Some("2"),
        "env is kept"
    );
    // A team the rewrite skipped is unchanged, and so is [agent].
    assert_eq!(
        config.agent_for(&team("far")).unwrap().command,
        "fake-claude"
    );
    assert_eq!(config.agent().command, "fake-claude");
    // The effective configuration shows (and reloads to) the rewritten commands.
    let text = config.to_toml_string().unwrap();
    assert!(text.contains("/bin/fake-claude"), "{text}");
    let again = Config::from_toml_str(&text, Path::new(DIR), FILE, &no_env).unwrap();
    assert_eq!(again, config);
}

#[test]
fn a_failed_rewrite_returns_its_error() {
    let mut config = load("[teams.alpha]\npath = \"a\"\n[teams.beta]\npath = \"b\"\n");
    let result = config.rewrite_agent_commands(|name, _, _| {
        if name.as_str() == "beta" {
            Err(format!("no agent for {name}"))
        } else {
            Ok(Some(("/x/alpha-agent".to_owned(), Vec::new())))
        }
    });
    assert_eq!(result, Err("no agent for beta".to_owned()));
    assert_eq!(
        config.agent_for(&team("alpha")).unwrap().command,
        "/x/alpha-agent"
    );
    assert_eq!(config.agent_for(&team("beta")).unwrap().command, "claude");
}

#[test]
fn every_error_has_the_config_error_code() {
    let errors = [
        err("x = = 1"),
        err("bogus = 1"),
        err("[settings]\nmax_processes = 0\n"),
        err("[settings]\nmax_processes = \"${X}\"\n"),
        err("[settings]\nmax_processes = \"${X\"\n"),
        err("[teams.\"a b\"]\npath = \"/p\"\n"),
        ConfigError::NotFound {
            path: PathBuf::from("/x"),
        },
    ];
    for e in errors {
        assert_eq!(e.code(), ErrorCode::ConfigError, "{e}");
    }
    assert_eq!(
        InterpolationError::EmptyName { offset: 0 }.code(),
        ErrorCode::ConfigError
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

fn some_env(name: &str) -> Option<String> {
    match name {
        "A" => Some("alpha".to_owned()),
        "E" => Some(String::new()),
        "D" => Some("$${B}".to_owned()),
        _ => None,
    }
}

proptest! {
    #[test]
    fn interpolation_never_panics(s in ".*") {
        let _ = interpolate(&s, &some_env);
    }

    #[test]
    fn interpolation_never_panics_on_reference_soup(s in "[AB:E$\\-{}x]{0,40}") {
        let _ = interpolate(&s, &some_env);
    }

    #[test]
    fn strings_without_dollar_are_unchanged(s in "[^$]*") {
        prop_assert_eq!(interpolate(&s, &some_env), Ok(s));
    }

    #[test]
    fn escaping_every_dollar_gives_the_string_back(s in ".*") {
        let escaped = s.replace('$', "$$");
        prop_assert_eq!(interpolate(&escaped, &some_env), Ok(s));
    }

    #[test]
    fn substituted_values_are_not_reinterpolated(v in ".*") {
        let env = |_: &str| Some(v.clone());
        prop_assert_eq!(interpolate("${X}", &env), Ok(v.clone()));
    }
}

#[test]
fn mcp_config_is_a_path_json_text_or_a_table() {
    let config = load(
        r#"
        [teams.file]
        path = "/p/file"
        mcp_config = "mcp/servers.json"
        [teams.json]
        path = "/p/json"
        mcp_config = '{"mcpServers": {"iris": {"command": "iris", "args": ["mcp"]}}}'
        [teams.table]
        path = "/p/table"
        [teams.table.mcp_config.mcpServers.iris]
        command = "iris"
        args = ["mcp"]
        [teams.none]
        path = "/p/none"
        "#,
    );
    let mcp = |name: &str| config.team(&team(name)).unwrap().mcp_config.clone();
    assert_eq!(
        mcp("file"),
        Some(McpConfig::File(PathBuf::from(DIR).join("mcp/servers.json")))
    );
    let inline = r#"{"mcpServers":{"iris":{"args":["mcp"],"command":"iris"}}}"#;
    assert_eq!(mcp("json"), Some(McpConfig::Inline(inline.to_owned())));
    assert_eq!(mcp("table"), Some(McpConfig::Inline(inline.to_owned())));
    assert_eq!(mcp("none"), None);
    // The effective configuration shows the value the agent gets, and loads back the same.
    let text = config.to_toml_string().unwrap();
    assert_eq!(load(&text), config);
}

#[test]
fn a_bad_mcp_config_names_the_key_and_the_fix() {
    for (value, says) in [
        (r#"'{"mcpServers": '"#, "not valid JSON"),
        (r#"'{"servers": {}}'"#, "no `mcpServers` object"),
        ("42", "not a path, JSON text or a table"),
        (r#""""#, "is empty"),
    ] {
        let e = err(&format!(
            "[teams.alpha]\npath = \"/p\"\nmcp_config = {value}\n"
        ));
        let shown = invalid_at(&e, "teams.alpha.mcp_config");
        assert!(shown.contains(says), "{value}: {shown}");
    }
    let remote = err(
        "[teams.far]\npath = \"/p\"\nmcp_config = \"relative.json\"\nremote = { destination = \"me@host\" }\n",
    );
    assert!(invalid_at(&remote, "teams.far.mcp_config").contains("relative"));
}

// ---------------------------------------------------------------------------------------------
// The cluster

const CLUSTER: &str = r#"
[cluster]
cookie = "${IRIS_CLUSTER_COOKIE}"

[cluster.nodes.n1]
address = "127.0.0.1:7501"

[cluster.nodes.n2]
address = "127.0.0.1:7502"
"#;

#[test]
fn a_cluster_places_teams_on_its_nodes_and_loads_back() {
    let text = format!(
        "{CLUSTER}\n[teams.alpha]\npath = \"/p/alpha\"\nnode = \"n1\"\n[teams.beta]\npath = \"/p/beta\"\nnode = \"n2\"\n[teams.gamma]\npath = \"/p/gamma\"\n"
    );
    let env = env_of(&[("IRIS_CLUSTER_COOKIE", "s3cret")]);
    let config = load_env(&text, &env);
    let cluster = config.cluster().unwrap();
    assert_eq!(cluster.cookie, "s3cret");
    assert_eq!(cluster.nodes.len(), 2);
    assert_eq!(config.node_of(&team("alpha")).unwrap().as_str(), "n1");
    assert_eq!(config.node_of(&team("gamma")), None);
    let placement = config.placement().unwrap();
    assert_eq!(
        placement.lines(),
        [
            "node n1 127.0.0.1:7501",
            "node n2 127.0.0.1:7502",
            "team alpha n1",
            "team beta n2",
        ]
    );
    // The cookie is a secret: shown redacted, kept when the values are asked for.
    let shown = config.to_toml_string_shown(false).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    let again = load(&config.to_toml_string().unwrap());
    assert_eq!(again.placement(), config.placement());
    assert_eq!(again.cluster().unwrap().cookie, "s3cret");
    // Without [cluster], nothing of it.
    assert_eq!(load("").placement(), None);
}

#[test]
fn a_misplaced_team_or_a_broken_cluster_is_refused_naming_the_key() {
    let env = env_of(&[("IRIS_CLUSTER_COOKIE", "s3cret")]);
    let with = |teams: &str| err_env(&format!("{CLUSTER}\n{teams}"), &env);

    let e = with("[teams.alpha]\npath = \"/p\"\nnode = \"n9\"");
    let shown = invalid_at(&e, "teams.alpha.node");
    assert!(shown.contains("n9") && shown.contains("n1, n2"), "{shown}");

    let e = with("[teams.alpha]\npath = \"/p\"\nnode = \"n1\"\nremote = { destination = \"h\" }");
    assert!(invalid_at(&e, "teams.alpha.node").contains("not both"));

    let e = err("[teams.alpha]\npath = \"/p\"\nnode = \"n1\"");
    assert!(invalid_at(&e, "teams.alpha.node").contains("no [cluster]"));

    let e = err("[cluster]\n[cluster.nodes.n1]\naddress = \"127.0.0.1:1\"");
    assert!(invalid_at(&e, "cluster.cookie").contains("required"));

    let e = err("[cluster]\ncookie = \" \"\n[cluster.nodes.n1]\naddress = \"127.0.0.1:1\"");
    assert!(invalid_at(&e, "cluster.cookie").contains("empty"));

    let e = err("[cluster]\ncookie = \"c\"");
    assert!(invalid_at(&e, "cluster.nodes").contains("names no node"));

    let e = err("[cluster]\ncookie = \"c\"\n[cluster.nodes.n1]\naddress = \"somewhere\"");
    assert!(invalid_at(&e, "cluster.nodes.n1.address").contains("127.0.0.1:7501"));

    let e = err("[cluster]\ncookie = \"c\"\n[cluster.nodes.\"n.1\"]\naddress = \"127.0.0.1:1\"");
    assert!(invalid_at(&e, "cluster.nodes.\"n.1\"").contains("not a valid node name"));

    unknown_at(
        "[cluster]\ncookie = \"c\"\nport = 1\n[cluster.nodes.n1]\naddress = \"127.0.0.1:1\"",
        "cluster.port",
    );
}

#[test]
fn cluster_tls_paths_resolve_against_the_config_dir_and_load_back() {
    let env = env_of(&[("IRIS_CLUSTER_COOKIE", "s3cret"), ("IRIS_NODE", "n1")]);
    let text = format!(
        "{CLUSTER}\n[cluster.tls]\ncert = \"tls/${{IRIS_NODE}}.pem\"\nkey = \"tls/${{IRIS_NODE}}.key\"\nca = \"/etc/iris/ca.pem\"\n"
    );
    let config = load_env(&text, &env);
    let tls = config.cluster().unwrap().tls.clone().unwrap();
    assert_eq!(tls.cert, Path::new(DIR).join("tls/n1.pem"));
    assert_eq!(tls.key, Path::new(DIR).join("tls/n1.key"));
    assert_eq!(tls.ca, Path::new("/etc/iris/ca.pem"));
    let again = load(&config.to_toml_string().unwrap());
    assert_eq!(again.cluster().unwrap().tls, Some(tls));
    // All three are needed.
    let missing = err_env(
        &format!("{CLUSTER}\n[cluster.tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n"),
        &env,
    );
    assert!(missing.to_string().contains("ca"), "{missing}");
}

const BUDGETS: &str = r#"
[teams.alpha]
path = "/p/alpha"
[teams.beta]
path = "/p/beta"

[budgets]
day = "+02:00"
session = { usd = 5 }
node_daily = { usd = "${NODE_BUDGET:-50.5}", tokens = 20000000 }
[budgets.teams.default]
as_sender = { usd = 10.0 }
[budgets.teams.alpha]
as_receiver = { tokens = "3000000" }
"#;

#[test]
fn budgets_load_with_their_caps_and_day_and_load_back() {
    use crate::config::budget::Cap;
    let config = load(BUDGETS);
    let budgets = config.budgets();
    assert_eq!(budgets.day_offset_minutes, 120);
    let usd = |usd| Cap {
        usd: Some(usd),
        tokens: None,
    };
    assert_eq!(budgets.session, Some(usd(5.0)));
    assert_eq!(
        budgets.node_daily,
        Some(Cap {
            usd: Some(50.5),
            tokens: Some(20_000_000)
        })
    );
    let alpha = budgets.team(&team("alpha"));
    assert_eq!(alpha.as_sender, Some(usd(10.0)));
    assert_eq!(alpha.as_receiver.and_then(|c| c.tokens), Some(3_000_000));
    assert_eq!(budgets.team(&team("beta")).as_receiver, None);
    let again = load(&config.to_toml_string().unwrap());
    assert_eq!(again.budgets(), budgets);
    // Without [budgets]: no cap, and nothing written back.
    assert!(!load("").budgets().any());
    assert!(!load("").to_toml_string().unwrap().contains("budgets"));
}

#[test]
fn a_budget_without_a_limit_or_for_an_unknown_team_is_refused_naming_the_key() {
    let teams = "[teams.alpha]\npath = \"/p/alpha\"\n";
    for (budgets, key, says) in [
        ("session = {}", "budgets.session", "sets no limit"),
        ("session = { usd = 0 }", "budgets.session.usd", "above 0"),
        ("session = { usd = -1.5 }", "budgets.session.usd", "above 0"),
        (
            "node_daily = { tokens = 0 }",
            "budgets.node_daily.tokens",
            "at least 1",
        ),
        ("day = \"CET\"", "budgets.day", "+02:00"),
        (
            "[budgets.teams.gamma]\nas_sender = { usd = 1 }",
            "budgets.teams.gamma",
            "not in [teams]",
        ),
        ("session = { dollars = 1 }", "budgets.session", "dollars"),
    ] {
        let e = err(&format!("{teams}[budgets]\n{budgets}\n"));
        let text = e.to_string();
        assert!(text.contains(key), "{budgets}: {text}");
        assert!(text.contains(says), "{budgets}: {text}");
    }
}
