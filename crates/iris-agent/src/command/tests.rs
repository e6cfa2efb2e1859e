use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use iris_core::config::{AgentConfig, GrantPermission, McpConfig, RemoteConfig, TeamConfig};
use iris_core::{Coded, ErrorCode, SessionId, TeamName};

use super::*;

const SID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn name() -> TeamName {
    TeamName::new("frontend").unwrap()
}

fn sid() -> SessionId {
    SessionId::parse(SID).unwrap()
}

fn team() -> TeamConfig {
    TeamConfig::new("/work/frontend")
}

fn remote_team() -> TeamConfig {
    let mut team = TeamConfig::new("/srv/my project");
    team.remote = Some(RemoteConfig {
        destination: "me@build-box".to_owned(),
        port: None,
        identity: None,
        options: Vec::new(),
        extra_args: Vec::new(),
    });
    team
}

fn build(team: &TeamConfig, conversation: &Conversation) -> Result<Launch, CommandError> {
    build_launch(
        &name(),
        team,
        &AgentConfig::default(),
        conversation,
        &LaunchOptions::default(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

const STREAM: [&str; 6] = [
    "--print",
    "--output-format",
    "stream-json",
    "--verbose",
    "--input-format",
    "stream-json",
];

/// The default team's launch with `agent`, which must succeed.
fn launch(agent: &AgentConfig) -> Launch {
    build_launch(
        &name(),
        &team(),
        agent,
        &Conversation::New(sid()),
        &LaunchOptions::default(),
    )
    .unwrap()
}

/// The default team's launch with `agent`, which must be refused.
fn refused(agent: &AgentConfig) -> CommandError {
    build_launch(
        &name(),
        &team(),
        agent,
        &Conversation::New(sid()),
        &LaunchOptions::default(),
    )
    .unwrap_err()
}

fn expected_args(rest: &[&str]) -> Vec<String> {
    let mut args = strings(&STREAM);
    args.push(PARTIAL_MESSAGES_ARG.to_owned());
    args.extend(strings(rest));
    args
}

#[test]
fn local_new_conversation() {
    let launch = build(&team(), &Conversation::New(sid())).unwrap();
    assert_eq!(launch.program(), "claude");
    assert_eq!(
        launch.args(),
        expected_args(&[
            &format!("--session-id={SID}"),
            "--permission-prompt-tool=stdio"
        ])
    );
    assert_eq!(launch.cwd(), Some(Path::new("/work/frontend")));
    assert_eq!(launch.env_remove(), ["CLAUDECODE"]);
    assert_eq!(
        launch.env_set(),
        &BTreeMap::from([("CLAUDE_CODE_ENTRYPOINT".to_owned(), "iris".to_owned())])
    );
    assert!(!launch.is_remote());
    assert_eq!(launch.remote_command(), None);
}

#[test]
fn local_resume() {
    let launch = build(&team(), &Conversation::Resume("forked-id-1".to_owned())).unwrap();
    assert_eq!(
        launch.args(),
        expected_args(&["--resume=forked-id-1", "--permission-prompt-tool=stdio"])
    );
}

#[test]
fn permission_flag_follows_grant_permission() {
    for (grant, flag) in [
        (GrantPermission::Yes, true),
        (GrantPermission::Ask, true),
        (GrantPermission::Forward, true),
        (GrantPermission::No, false),
    ] {
        let mut team = team();
        team.grant_permission = grant;
        let launch = build(&team, &Conversation::New(sid())).unwrap();
        let mut rest = vec![format!("--session-id={SID}")];
        if flag {
            rest.push("--permission-prompt-tool=stdio".to_owned());
        }
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        assert_eq!(launch.args(), expected_args(&rest), "{grant:?}");
    }
}

#[test]
fn every_optional_flag_in_order() {
    let mut team = team();
    team.grant_permission = GrantPermission::No;
    team.allowed_tools = strings(&["Read", "Bash(git:*)", "Bash(npm run test:*)"]);
    team.disallowed_tools = strings(&["WebFetch", "mcp__srv__tool"]);
    team.append_system_prompt = Some("You are the frontend team.\nBe brief.".to_owned());
    team.mcp_config = Some(McpConfig::File(PathBuf::from("/work/frontend/mcp.json")));
    let agent = AgentConfig {
        command: "/opt/claude/bin/claude".to_owned(),
        args: strings(&["--model", "sonnet"]),
        env: BTreeMap::from([
            ("ANTHROPIC_LOG".to_owned(), "debug".to_owned()),
            ("CLAUDE_CODE_ENTRYPOINT".to_owned(), "mine".to_owned()),
        ]),
    };
    let options = LaunchOptions {
        mcp_config: Some("/tmp/iris-mcp.json".to_owned()),
        max_budget_usd: Some(1.25),
        extra_args: strings(&["--max-turns", "5"]),
    };
    let launch = build_launch(&name(), &team, &agent, &Conversation::New(sid()), &options).unwrap();
    assert_eq!(launch.program(), "/opt/claude/bin/claude");
    let mut expected = strings(&["--model", "sonnet"]);
    expected.extend(strings(&STREAM));
    expected.extend(strings(&[
        PARTIAL_MESSAGES_ARG,
        &format!("--session-id={SID}"),
        "--allowedTools=Read,Bash(git:*),Bash(npm run test:*)",
        "--disallowedTools=WebFetch,mcp__srv__tool",
        "--append-system-prompt=You are the frontend team.\nBe brief.",
        "--mcp-config=/work/frontend/mcp.json",
        "--mcp-config=/tmp/iris-mcp.json",
        "--max-budget-usd=1.250000",
        "--max-turns",
        "5",
    ]));
    assert_eq!(launch.args(), expected);
    assert_eq!(
        launch.env_set(),
        &BTreeMap::from([
            ("ANTHROPIC_LOG".to_owned(), "debug".to_owned()),
            ("CLAUDE_CODE_ENTRYPOINT".to_owned(), "iris".to_owned()),
        ])
    );
}

#[test]
fn to_command_carries_argv_cwd_and_env() {
    let mut agent = AgentConfig::default();
    agent.env.insert("FOO".to_owned(), "bar baz".to_owned());
    let launch = launch(&agent);
    let command = launch.to_command();
    let std = command.as_std();
    assert_eq!(std.get_program(), "claude");
    let args: Vec<_> = std.get_args().map(|a| a.to_str().unwrap()).collect();
    assert_eq!(args, launch.args());
    assert_eq!(std.get_current_dir(), Some(Path::new("/work/frontend")));
    let envs: BTreeMap<_, _> = std
        .get_envs()
        .map(|(k, v)| (k.to_str().unwrap(), v.map(|v| v.to_str().unwrap())))
        .collect();
    assert_eq!(
        envs,
        BTreeMap::from([
            ("CLAUDECODE", None),
            ("CLAUDE_CODE_ENTRYPOINT", Some("iris")),
            ("FOO", Some("bar baz")),
        ])
    );
}

#[test]
fn display_is_the_copy_paste_form() {
    let mut team = team();
    team.append_system_prompt = Some("it's \"quoted\"".to_owned());
    let launch = build(&team, &Conversation::New(sid())).unwrap();
    assert_eq!(
        launch.display(),
        format!(
            "cd /work/frontend && env -u CLAUDECODE CLAUDE_CODE_ENTRYPOINT=iris claude --print --output-format stream-json --verbose --input-format stream-json --include-partial-messages --session-id={SID} --permission-prompt-tool=stdio '--append-system-prompt=it'\\''s \"quoted\"'"
        )
    );
}

#[test]
fn remote_argv() {
    let mut team = remote_team();
    team.grant_permission = GrantPermission::No;
    if let Some(remote) = &mut team.remote {
        remote.port = Some(2222);
        remote.identity = Some(PathBuf::from("/home/me/.ssh/id_iris"));
        remote.options = strings(&["ProxyJump=bastion", "ConnectTimeout=10"]);
        remote.extra_args = strings(&["-C"]);
    }
    let mut agent = AgentConfig {
        command: "/usr/local/bin/claude".to_owned(),
        ..AgentConfig::default()
    };
    agent.env.insert("K".to_owned(), "v w".to_owned());
    let launch = build_launch(
        &name(),
        &team,
        &agent,
        &Conversation::New(sid()),
        &LaunchOptions::default(),
    )
    .unwrap();
    assert_eq!(launch.program(), "ssh");
    assert!(launch.is_remote());
    assert_eq!(launch.cwd(), None);
    assert_eq!(launch.env_remove(), ["CLAUDECODE"]);
    assert!(launch.env_set().is_empty());
    let remote_command = format!(
        "cd '/srv/my project' && exec env -u CLAUDECODE 'CLAUDE_CODE_ENTRYPOINT=iris' 'K=v w' '/usr/local/bin/claude' '--print' '--output-format' 'stream-json' '--verbose' '--input-format' 'stream-json' '--include-partial-messages' '--session-id={SID}'"
    );
    assert_eq!(
        launch.args(),
        strings(&[
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=30",
            "-o",
            "ServerAliveCountMax=3",
            "-p",
            "2222",
            "-i",
            "/home/me/.ssh/id_iris",
            "-o",
            "ProxyJump=bastion",
            "-o",
            "ConnectTimeout=10",
            "-C",
            "--",
            "me@build-box",
            &remote_command,
        ])
    );
    assert_eq!(launch.remote_command(), Some(remote_command.as_str()));
    // Shown without the environment's values: the remote command carries them inside.
    let shown_command = remote_command.replace("'K=v w'", "'K=<redacted>'");
    assert_eq!(
        launch.display(),
        format!(
            "env -u CLAUDECODE ssh -T -o BatchMode=yes -o ServerAliveInterval=30 -o ServerAliveCountMax=3 -p 2222 -i /home/me/.ssh/id_iris -o ProxyJump=bastion -o ConnectTimeout=10 -C -- me@build-box {}",
            crate::quote::quote(&shown_command)
        )
    );
}

#[test]
fn remote_program_under_home_keeps_its_tilde_bare() {
    let agent = AgentConfig {
        command: "~/.local/bin/my claude".to_owned(),
        ..AgentConfig::default()
    };
    let launch = build_launch(
        &name(),
        &remote_team(),
        &agent,
        &Conversation::Resume(SID.to_owned()),
        &LaunchOptions::default(),
    )
    .unwrap();
    let command = launch.remote_command().unwrap();
    assert!(
        command.contains(" ~/'.local/bin/my claude' '--print' "),
        "{command}"
    );
}

#[test]
fn reserved_flags_are_refused_in_both_lists() {
    for flag in [
        "--print",
        "-p",
        "--output-format",
        "--output-format=json",
        "--input-format=text",
        "--session-id",
        &format!("--session-id={SID}"),
        "--resume",
        "--resume=abc",
        "-r",
        "-rabc",
        "--continue",
        "-c",
        "-pc",
        "--permission-prompt-tool=mcp__x__y",
    ] {
        let agent = AgentConfig {
            args: vec![flag.to_owned()],
            ..AgentConfig::default()
        };
        let e = refused(&agent);
        assert!(
            matches!(&e, CommandError::ReservedFlag { flag: f, list: ArgList::AgentArgs, .. } if f == flag),
            "{flag}: {e}"
        );
        assert_eq!(e.code(), ErrorCode::ConfigError);
        let message = e.to_string();
        assert!(
            message.contains("frontend") && message.contains(flag),
            "{message}"
        );
        assert!(message.contains("iris sets"), "{message}");

        let options = LaunchOptions {
            extra_args: vec!["--model=x".to_owned(), flag.to_owned()],
            ..LaunchOptions::default()
        };
        let e = build_launch(
            &name(),
            &team(),
            &AgentConfig::default(),
            &Conversation::New(sid()),
            &options,
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                CommandError::ReservedFlag {
                    list: ArgList::ExtraArgs,
                    ..
                }
            ),
            "{flag}: {e}"
        );
        assert_eq!(e.code(), ErrorCode::ValidationError);
    }
}

#[test]
fn harmless_flags_pass() {
    let options = LaunchOptions {
        extra_args: strings(&[
            "--model=opus",
            "--max-turns",
            "3",
            "--verbose",
            "--fork-session",
            "-d",
            "--printer",
            "plain word",
        ]),
        ..LaunchOptions::default()
    };
    assert!(
        build_launch(
            &name(),
            &team(),
            &AgentConfig::default(),
            &Conversation::New(sid()),
            &options
        )
        .is_ok()
    );
}

#[test]
fn a_bare_double_dash_is_refused() {
    let agent = AgentConfig {
        args: strings(&["--"]),
        ..AgentConfig::default()
    };
    let e = refused(&agent);
    assert!(matches!(e, CommandError::ArgumentTerminator { .. }), "{e}");
}

#[test]
fn bad_tool_rules_are_refused() {
    for (rule, list) in [
        ("Bash,Read", "allowed_tools"),
        ("-x", "allowed_tools"),
        ("a b", "disallowed_tools"),
        ("Bash(unclosed", "disallowed_tools"),
    ] {
        let mut team = team();
        if list == "allowed_tools" {
            team.allowed_tools = strings(&["Read", rule]);
        } else {
            team.disallowed_tools = strings(&["Read", rule]);
        }
        let e = build(&team, &Conversation::New(sid())).unwrap_err();
        assert!(
            matches!(&e, CommandError::InvalidToolRule { rule: r, list: l, .. } if r == rule && *l == list),
            "{rule}: {e}"
        );
        assert_eq!(e.code(), ErrorCode::ConfigError);
        let message = e.to_string();
        assert!(
            message.contains("frontend") && message.contains(list),
            "{message}"
        );
    }
}

#[test]
fn bad_resume_ids_are_refused() {
    for id in [
        "",
        "-x",
        "--dangerously-skip-permissions",
        "a b",
        "a\nb",
        "../x",
    ] {
        let e = build(&team(), &Conversation::Resume(id.to_owned())).unwrap_err();
        assert!(matches!(e, CommandError::InvalidResumeId { .. }), "{id:?}");
        assert_eq!(e.code(), ErrorCode::ValidationError);
    }
}

#[test]
fn bad_agent_commands_and_env_are_refused() {
    for command in ["-x", "a=b", "~/bin/claude", "a\0b"] {
        let agent = AgentConfig {
            command: command.to_owned(),
            ..AgentConfig::default()
        };
        let e = refused(&agent);
        assert!(
            matches!(e, CommandError::InvalidAgentCommand { .. }),
            "{command:?}: {e}"
        );
    }
    for env_name in ["", "A=B", "-u"] {
        let mut agent = AgentConfig::default();
        agent.env.insert(env_name.to_owned(), "x".to_owned());
        let e = refused(&agent);
        assert!(
            matches!(e, CommandError::InvalidEnvName { .. }),
            "{env_name:?}: {e}"
        );
    }
    let mut team = team();
    team.append_system_prompt = Some("a\0b".to_owned());
    let e = build(&team, &Conversation::New(sid())).unwrap_err();
    assert!(matches!(e, CommandError::NulByte { .. }), "{e}");
}

#[test]
fn bad_remote_settings_are_refused() {
    type Change = fn(&mut TeamConfig);
    let cases: [(&str, Change); 6] = [
        ("destination", |t| {
            if let Some(r) = &mut t.remote {
                r.destination = "-oProxyCommand=touch pwned".to_owned();
            }
        }),
        ("destination", |t| {
            if let Some(r) = &mut t.remote {
                r.destination = "host other".to_owned();
            }
        }),
        ("option", |t| {
            if let Some(r) = &mut t.remote {
                r.options = strings(&["-F/dev/null"]);
            }
        }),
        ("path", |t| t.path = PathBuf::from("relative/dir")),
        ("port", |t| {
            if let Some(r) = &mut t.remote {
                r.port = Some(0);
            }
        }),
        ("terminator", |t| {
            if let Some(r) = &mut t.remote {
                r.extra_args = strings(&["--"]);
            }
        }),
    ];
    for (what, change) in cases {
        let mut team = remote_team();
        change(&mut team);
        let e = build(&team, &Conversation::New(sid())).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigError, "{what}: {e}");
        assert!(e.to_string().contains("frontend"), "{e}");
    }
}

#[test]
fn snapshot_is_the_effective_team_config() {
    let mut team = team();
    team.description = "The web UI".to_owned();
    team.agent.args = Some(strings(&["--model", "opus"]));
    let base = AgentConfig::default();
    let agent = team.effective_agent(&base);
    let snapshot = team_config_snapshot(&name(), &team, &agent);
    let value: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(value["name"], "frontend");
    assert_eq!(value["path"], "/work/frontend");
    assert_eq!(value["description"], "The web UI");
    assert_eq!(value["grant_permission"], "ask");
    assert_eq!(
        value["agent"],
        serde_json::json!({"command": "claude", "args": ["--model", "opus"], "env": {}})
    );
    assert!(snapshot.contains('\n'), "pretty: {snapshot}");
}

#[test]
fn debug_forms_hide_credentials_but_the_launch_keeps_them() {
    let mut agent = AgentConfig::default();
    agent
        .env
        .insert("ANTHROPIC_API_KEY".into(), "sk-secret-value".into());
    agent.env.insert("LOG_LEVEL".into(), "debug".into());
    let name = TeamName::new("alpha").unwrap();
    let team = TeamConfig::new(PathBuf::from("/work/alpha"));
    let launch = build_launch(
        &name,
        &team,
        &agent,
        &Conversation::New(SessionId::new_v4()),
        &LaunchOptions::default(),
    )
    .unwrap();
    assert_eq!(
        launch
            .env_set()
            .get("ANTHROPIC_API_KEY")
            .map(String::as_str),
        Some("sk-secret-value")
    );
    for shown in [launch.display(), team_config_snapshot(&name, &team, &agent)] {
        assert!(!shown.contains("sk-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        // Names are shown, values never: a value is a secret whatever its variable's name.
        assert!(shown.contains("LOG_LEVEL"), "{shown}");
        assert!(!shown.contains("debug"), "{shown}");
    }
}

#[test]
fn secrets_in_urls_arguments_and_mcp_configs_are_never_shown() {
    let secret = "PASSWORD-7f3a";
    let mut agent = AgentConfig::default();
    agent.env.insert(
        "DATABASE_URL".into(),
        format!("postgres://app:{secret}@db.internal:5432/app"),
    );
    agent.args = vec![format!("--proxy=https://user:{secret}@proxy.example")];
    let name = TeamName::new("alpha").unwrap();
    let mut team = TeamConfig::new(PathBuf::from("/work/alpha"));
    team.mcp_config = Some(McpConfig::Inline(format!(
        r#"{{"mcpServers":{{"db":{{"command":"db-mcp","env":{{"DB_PASSWORD":"{secret}"}},"args":["--url","https://h.example/?token={secret}"]}}}}}}"#
    )));
    let launch = build_launch(
        &name,
        &team,
        &agent,
        &Conversation::New(SessionId::new_v4()),
        &LaunchOptions::default(),
    )
    .unwrap();
    // The agent gets everything …
    assert!(launch.args().iter().any(|a| a.contains(secret)));
    // … what is shown and stored gets none of it.
    let display = launch.display();
    let snapshot = team_config_snapshot(&name, &team, &agent);
    for shown in [&display, &snapshot] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("DATABASE_URL"), "{shown}");
    }
    assert!(
        display.contains("https://user:<redacted>@proxy.example"),
        "{display}"
    );
    assert!(display.contains("db-mcp"), "{display}");

    // A remote launch carries the environment inside its remote command: hidden there too.
    let mut remote = remote_team();
    remote.mcp_config = team.mcp_config.clone();
    let launch = build_launch(
        &name,
        &remote,
        &agent,
        &Conversation::New(SessionId::new_v4()),
        &LaunchOptions::default(),
    )
    .unwrap();
    assert!(launch.remote_command().is_some_and(|c| c.contains(secret)));
    assert!(!launch.display().contains(secret), "{}", launch.display());
}

#[test]
fn an_inline_mcp_config_is_passed_as_one_argument() {
    let mut team = team();
    let json = r#"{"mcpServers":{"iris":{"command":"iris","args":["mcp","--from","alpha"]}}}"#;
    team.mcp_config = Some(McpConfig::Inline(json.to_owned()));
    let launch = build(&team, &Conversation::New(sid())).unwrap();
    assert!(
        launch.args().contains(&format!("--mcp-config={json}")),
        "{:?}",
        launch.args()
    );
}

#[test]
fn a_spending_limit_is_passed_rounded_down_to_the_micro_dollar_and_never_as_zero() {
    let limit = |usd: f64| {
        let options = LaunchOptions {
            max_budget_usd: Some(usd),
            ..LaunchOptions::default()
        };
        let launch = build_launch(
            &name(),
            &team(),
            &AgentConfig::default(),
            &Conversation::New(sid()),
            &options,
        )
        .unwrap();
        launch
            .args()
            .iter()
            .find_map(|a| a.strip_prefix("--max-budget-usd=").map(str::to_owned))
    };
    assert_eq!(limit(2.5).as_deref(), Some("2.500000"));
    assert_eq!(limit(0.123_456_9).as_deref(), Some("0.123456"));
    for nothing_left in [0.0, -1.0, f64::NAN] {
        assert_eq!(limit(nothing_left).as_deref(), Some("0.000001"));
    }
    let none = build(&team(), &Conversation::New(sid())).unwrap();
    assert!(
        !none
            .args()
            .iter()
            .any(|a| a.starts_with("--max-budget-usd"))
    );
}
