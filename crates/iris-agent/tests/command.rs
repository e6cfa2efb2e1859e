//! End-to-end checks of the launch builder, without ssh: the remote command string and the display
//! form are run through a real `sh -c` with the agent replaced by a recorder script, which writes
//! the argv, working directory and environment it received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use iris_agent::command::{Conversation, Launch, LaunchOptions, build_launch};
use iris_agent::quote::quote;
use iris_core::config::{AgentConfig, GrantPermission, RemoteConfig, TeamConfig};
use iris_core::{SessionId, TeamName};
use proptest::prelude::*;

const SID: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";

/// Strings a shell would love to interpret.
const NASTY: [&str; 12] = [
    "it's",
    "\"double\"",
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "&& touch pwned",
    "line one\nline two\n",
    "-x",
    " leading and trailing ",
    "$HOME ${HOME} $$ * ? ~",
    "back\\slash",
    "",
];

/// A temporary directory holding the recorder script and a project directory with a hostile
/// name.
struct Sandbox {
    root: tempfile::TempDir,
    recorder: PathBuf,
    project: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin dir 'q' $(touch pwned)");
        fs::create_dir(&bin).unwrap();
        let recorder = bin.join("rec;`touch pwned`");
        fs::write(
            &recorder,
            "#!/bin/sh\n\
             for a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$OUT\"\n\
             printf '%s\\0' \"$PWD\" \"${CLAUDECODE-<unset>}\" \"${CLAUDE_CODE_ENTRYPOINT-<unset>}\" \"${IRIS_TEST_VAR-<unset>}\" > \"$OUT.env\"\n",
        )
        .unwrap();
        fs::set_permissions(&recorder, fs::Permissions::from_mode(0o755)).unwrap();
        let project = root
            .path()
            .join("we'ird \"dir\" $(touch pwned) `touch pwned`; && -x\nline");
        fs::create_dir(&project).unwrap();
        Sandbox {
            root,
            recorder,
            project,
        }
    }

    fn out(&self) -> PathBuf {
        self.root.path().join("out")
    }

    /// Runs `script` with `sh -c` from the sandbox root, with `CLAUDECODE` set in its
    /// environment, and returns (argv, [pwd, CLAUDECODE, CLAUDE_CODE_ENTRYPOINT, IRIS_TEST_VAR])
    /// as the recorder saw them.
    fn run_sh(&self, script: &str) -> (Vec<String>, Vec<String>) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.root.path())
            .env("OUT", self.out())
            .env("CLAUDECODE", "1")
            .env("HOME", self.root.path())
            .status()
            .unwrap();
        assert!(status.success(), "sh -c {script:?} failed: {status}");
        self.recorded()
    }

    fn recorded(&self) -> (Vec<String>, Vec<String>) {
        let args = split_nul(&fs::read(self.out()).unwrap());
        let env = split_nul(&fs::read(self.root.path().join("out.env")).unwrap());
        (args, env)
    }

    /// Fails if any file named like `pwned` was created anywhere in the sandbox.
    fn assert_nothing_ran(&self) {
        fn walk(dir: &Path) {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name();
                assert_ne!(name, "pwned", "an injected command ran in {dir:?}");
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path());
                }
            }
        }
        walk(self.root.path());
    }
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut parts: Vec<String> = text.split('\0').map(str::to_owned).collect();
    assert_eq!(parts.pop().as_deref(), Some(""), "output ends with NUL");
    parts
}

fn name() -> TeamName {
    TeamName::new("backend").unwrap()
}

fn nasty_strings() -> Vec<String> {
    NASTY.iter().map(|&s| s.to_owned()).collect()
}

/// A team and agent full of hostile values, local or remote.
fn hostile(sandbox: &Sandbox, remote: bool) -> (TeamConfig, AgentConfig, LaunchOptions) {
    let mut team = TeamConfig::new(&sandbox.project);
    team.grant_permission = GrantPermission::Forward;
    team.allowed_tools = vec!["Bash(npm run test:*)".to_owned(), "Read".to_owned()];
    team.append_system_prompt = Some(NASTY.concat());
    if remote {
        team.remote = Some(RemoteConfig {
            destination: "me@host".to_owned(),
            port: Some(2222),
            identity: None,
            options: vec!["ProxyJump=bastion".to_owned()],
            extra_args: Vec::new(),
        });
    }
    let agent = AgentConfig {
        command: sandbox.recorder.to_str().unwrap().to_owned(),
        args: nasty_strings(),
        env: BTreeMap::from([("IRIS_TEST_VAR".to_owned(), NASTY.join("|"))]),
    };
    let options = LaunchOptions {
        mcp_config: Some("{\"mcpServers\": {\"x's\": {}}}".to_owned()),
        extra_args: nasty_strings(),
        ..LaunchOptions::default()
    };
    (team, agent, options)
}

fn launch(team: &TeamConfig, agent: &AgentConfig, options: &LaunchOptions) -> Launch {
    build_launch(
        &name(),
        team,
        agent,
        &Conversation::Resume(SID.to_owned()),
        options,
    )
    .unwrap()
}

/// The argv the agent should receive: the local launch's, which is built without any shell.
fn expected_agent_args(sandbox: &Sandbox) -> Vec<String> {
    let (team, agent, options) = hostile(sandbox, false);
    launch(&team, &agent, &options).args().to_vec()
}

fn expected_env(sandbox: &Sandbox) -> Vec<String> {
    vec![
        sandbox.project.to_str().unwrap().to_owned(),
        "<unset>".to_owned(),
        "iris".to_owned(),
        NASTY.join("|"),
    ]
}

#[test]
fn the_remote_command_delivers_every_argument_literally() {
    let sandbox = Sandbox::new();
    let (team, agent, options) = hostile(&sandbox, true);
    let launch = launch(&team, &agent, &options);
    assert_eq!(launch.program(), "ssh");
    let args = launch.args();
    let n = args.len();
    assert_eq!(&args[n - 3..n - 1], ["--", "me@host"]);
    let remote_command = launch.remote_command().unwrap();
    assert_eq!(remote_command, args[n - 1]);

    let (argv, env) = sandbox.run_sh(remote_command);
    let expected = expected_agent_args(&sandbox);
    assert_eq!(argv, expected);
    // Spot-check that the hostile values really are in there, one argument each.
    for nasty in NASTY {
        assert!(argv.iter().any(|a| a == nasty), "{nasty:?} missing");
    }
    assert!(argv.contains(&format!("--append-system-prompt={}", NASTY.concat())));
    assert!(argv.contains(&format!("--resume={SID}")));
    assert_eq!(env, expected_env(&sandbox));
    sandbox.assert_nothing_ran();
}

#[test]
fn a_remote_program_under_home_is_found_through_the_tilde() {
    let sandbox = Sandbox::new();
    let (team, mut agent, options) = hostile(&sandbox, true);
    let relative = sandbox.recorder.strip_prefix(sandbox.root.path()).unwrap();
    agent.command = format!("~/{}", relative.to_str().unwrap());
    let launch = launch(&team, &agent, &options);
    let (argv, env) = sandbox.run_sh(launch.remote_command().unwrap());
    assert_eq!(argv, expected_agent_args(&sandbox));
    assert_eq!(env, expected_env(&sandbox));
    sandbox.assert_nothing_ran();
}

/// What the display form sets: the environment's names, each value hidden.
fn displayed_env(sandbox: &Sandbox) -> Vec<String> {
    let mut env = expected_env(sandbox);
    if let Some(value) = env.last_mut() {
        *value = iris_core::redact::REDACTED.to_owned();
    }
    env
}

#[test]
fn the_local_display_form_runs_the_same_launch() {
    let sandbox = Sandbox::new();
    let (team, agent, options) = hostile(&sandbox, false);
    let launch = launch(&team, &agent, &options);
    let (argv, env) = sandbox.run_sh(&launch.display());
    assert_eq!(argv, launch.args());
    // The same launch, but for the environment's values, which are never shown.
    assert_eq!(env, displayed_env(&sandbox));
    sandbox.assert_nothing_ran();
}

#[test]
fn the_remote_display_form_passes_the_same_ssh_argv() {
    let sandbox = Sandbox::new();
    let (team, agent, options) = hostile(&sandbox, true);
    let launch = launch(&team, &agent, &options);
    let display = launch.display();
    let prefix = "env -u CLAUDECODE ssh ";
    assert!(display.starts_with(prefix), "{display}");
    // Stand the recorder in for ssh.
    let script = format!(
        "env -u CLAUDECODE {} {}",
        quote(sandbox.recorder.to_str().unwrap()),
        &display[prefix.len()..]
    );
    let (argv, _) = sandbox.run_sh(&script);
    // The same ssh argv, but for the environment's values inside the remote command, which are
    // never shown.
    let mut expected = launch.args().to_vec();
    if let Some(remote_command) = expected.last_mut() {
        *remote_command = remote_command.replace(
            &quote(&format!("IRIS_TEST_VAR={}", NASTY.join("|"))),
            &quote(&format!("IRIS_TEST_VAR={}", iris_core::redact::REDACTED)),
        );
    }
    assert_ne!(expected, launch.args(), "the value was there to hide");
    assert_eq!(argv, expected);
    sandbox.assert_nothing_ran();
}

#[tokio::test]
async fn to_command_spawns_with_the_argv_cwd_and_env() {
    let sandbox = Sandbox::new();
    let (team, agent, options) = hostile(&sandbox, false);
    let launch = launch(&team, &agent, &options);
    let mut command = launch.to_command();
    command.env("OUT", sandbox.out());
    let status = command.status().await.unwrap();
    assert!(status.success());
    let (argv, env) = sandbox.recorded();
    assert_eq!(argv, launch.args());
    assert_eq!(env, expected_env(&sandbox));
    sandbox.assert_nothing_ran();
}

/// ssh itself parses the argv as intended: `ssh -G` prints the configuration it would use and
/// exits without connecting. Skipped where there is no ssh.
#[test]
fn ssh_reads_the_destination_and_options_as_intended() {
    let Ok(version) = Command::new("ssh").arg("-V").output() else {
        eprintln!("no ssh on PATH; skipped");
        return;
    };
    if !version.status.success() {
        return;
    }
    let sandbox = Sandbox::new();
    let (mut team, agent, options) = hostile(&sandbox, true);
    // ssh drops an identity file that does not exist.
    fs::write(sandbox.root.path().join("id_test"), "").unwrap();
    if let Some(remote) = &mut team.remote {
        remote.identity = Some(sandbox.root.path().join("id_test"));
        remote.extra_args = vec!["-C".to_owned()];
    }
    let launch = launch(&team, &agent, &options);
    let output = Command::new("ssh")
        .args(["-G", "-F", "/dev/null"])
        .args(launch.args())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let config = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = config.lines().collect();
    for line in [
        "hostname host",
        "port 2222",
        "user me",
        "batchmode yes",
        "serveraliveinterval 30",
        "serveralivecountmax 3",
        "proxyjump bastion",
        "compression yes",
    ] {
        assert!(lines.contains(&line), "{line:?} not in:\n{config}");
    }
    let identity = format!(
        "identityfile {}",
        sandbox.root.path().join("id_test").display()
    );
    assert!(lines.contains(&identity.as_str()), "{identity}");
}

fn arbitrary_text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => any::<char>(),
        1 => prop::sample::select(vec!['\'', '"', '\\', '$', '`', '(', ')', ';', '&', '|', '\n', ' ', '*', '~', '-']),
    ];
    prop::collection::vec(ch, 0..16)
        .prop_map(|chars| chars.into_iter().filter(|&c| c != '\0').collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Arbitrary prompts, arguments and environment values reach the agent unchanged through the
    /// remote command.
    #[test]
    fn arbitrary_values_survive_the_remote_command(
        prompt in arbitrary_text(),
        arg in arbitrary_text(),
        value in arbitrary_text(),
    ) {
        let sandbox = Sandbox::new();
        let mut team = TeamConfig::new(&sandbox.project);
        team.append_system_prompt = Some(prompt);
        let agent = AgentConfig {
            command: sandbox.recorder.to_str().unwrap().to_owned(),
            args: Vec::new(),
            env: BTreeMap::from([("IRIS_TEST_VAR".to_owned(), value.clone())]),
        };
        let options = LaunchOptions { extra_args: vec![arg], ..LaunchOptions::default() };
        let conversation = Conversation::New(SessionId::new_v4());
        let Ok(local) = build_launch(&name(), &team, &agent, &conversation, &options) else {
            // A reserved flag or a bare `--`, refused by design.
            return Ok(());
        };
        team.remote = Some(RemoteConfig {
            destination: "h".to_owned(),
            port: None,
            identity: None,
            options: Vec::new(),
            extra_args: Vec::new(),
        });
        let remote = build_launch(&name(), &team, &agent, &conversation, &options).unwrap();
        let (argv, env) = sandbox.run_sh(remote.remote_command().unwrap());
        prop_assert_eq!(argv, local.args());
        prop_assert_eq!(&env[3], &value);
        sandbox.assert_nothing_ran();
    }
}
