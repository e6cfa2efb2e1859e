use std::ffi::OsStr;

use proptest::prelude::*;

use super::*;

const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn id() -> SessionId {
    SessionId::parse(ID).unwrap()
}

fn locator() -> (tempfile::TempDir, TranscriptLocator) {
    let dir = tempfile::tempdir().unwrap();
    let locator = TranscriptLocator::new(dir.path().join(".claude"));
    (dir, locator)
}

fn write(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "{}\n").unwrap();
}

#[test]
fn sanitizes_every_non_alphanumeric_without_collapsing_runs() {
    for (input, expected) in [
        ("/Users/me/.agents", "-Users-me--agents"),
        ("/home/u/my_repo", "-home-u-my-repo"),
        ("/home/u/my_app.v2", "-home-u-my-app-v2"),
        ("/home/u/my repo", "-home-u-my-repo"),
        ("C:\\Users\\me", "C--Users-me"),
    ] {
        assert_eq!(sanitize_project_path(input), expected, "{input}");
    }
}

#[test]
fn the_originals_escaping_cases_still_hold() {
    for (input, expected) in [
        ("/Users/jenova/projects/foo", "-Users-jenova-projects-foo"),
        ("/tmp", "-tmp"),
        ("/home", "-home"),
        ("/opt", "-opt"),
        ("/my-project/sub-folder", "-my-project-sub-folder"),
        ("/Users/Jenova/Projects", "-Users-Jenova-Projects"),
        ("/x/", "-x-"),
        ("/tmp/test-project", "-tmp-test-project"),
        ("/Users/test-project/my-app", "-Users-test-project-my-app"),
    ] {
        assert_eq!(sanitize_project_path(input), expected, "{input}");
    }
}

#[test]
fn non_ascii_is_replaced_per_scalar() {
    assert_eq!(sanitize_project_path("/café"), "-caf-");
    // One scalar, even though it is two UTF-16 units.
    assert_eq!(sanitize_project_path("/a😀b"), "-a-b");
    assert_eq!(sanitize_project_path("/日本"), "---");
}

#[test]
fn decomposed_and_precomposed_forms_sanitize_identically() {
    let decomposed = "/home/e\u{301}t\u{e9}";
    let precomposed = "/home/\u{e9}t\u{e9}";
    assert_eq!(
        sanitize_project_path(decomposed),
        sanitize_project_path(precomposed)
    );
    assert_eq!(sanitize_project_path(decomposed), "-home--t-");
    // Long forms too: the hash is taken over the normalized path.
    let tail = "x".repeat(250);
    assert_eq!(
        sanitize_project_path(&format!("{decomposed}/{tail}")),
        sanitize_project_path(&format!("{precomposed}/{tail}"))
    );
}

#[test]
fn the_hash_matches_the_sdks_simple_hash() {
    // Values computed with the SDK's JavaScript `simpleHash`.
    assert_eq!(hash36(""), "0");
    assert_eq!(hash36("a"), "2p");
    assert_eq!(hash36("/tmp"), "wh3c");
    assert_eq!(hash36("/Users/me/.agents"), "440cud");
    assert_eq!(hash36(&format!("/{}", "a".repeat(299))), "lvx5pu");
    assert_eq!(
        hash36(&format!("/h/\u{e9}\u{1f600}/{}", "x".repeat(250))),
        "r2ntzt"
    );
}

#[test]
fn base36_covers_the_extremes() {
    assert_eq!(to_base36(0), "0");
    assert_eq!(to_base36(35), "z");
    assert_eq!(to_base36(36), "10");
    // |i32::MIN| = 2^31, which an i32 `abs` would overflow on.
    assert_eq!(to_base36(i32::MIN.unsigned_abs()), "zik0zk");
    assert_eq!(to_base36(u32::MAX), "1z141z3");
}

#[test]
fn long_paths_are_cut_and_suffixed_with_the_hash() {
    let path = format!("/{}", "a".repeat(299));
    assert_eq!(path.chars().count(), 300);
    let name = sanitize_project_path(&path);
    let expected = format!("-{}-lvx5pu", "a".repeat(199));
    assert_eq!(name, expected);
    let (prefix, suffix) = name.split_at(MAX_SANITIZED_LEN);
    assert_eq!(prefix, &sanitize_project_path(&path)[..200]);
    assert!(suffix.starts_with('-'));
    assert!(
        suffix[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    );
    assert_eq!(sanitize_project_path(&path), name, "deterministic");
}

#[test]
fn long_paths_sharing_a_prefix_get_different_names() {
    let base = format!("/{}", "p".repeat(250));
    let a = sanitize_project_path(&format!("{base}/one"));
    let b = sanitize_project_path(&format!("{base}/two"));
    assert_eq!(a[..200], b[..200]);
    assert_ne!(a, b);
}

#[test]
fn exactly_the_limit_is_kept_whole() {
    let path = format!("/{}", "a".repeat(199));
    assert_eq!(sanitize_project_path(&path).len(), 200);
    assert_eq!(
        sanitize_project_path(&path),
        format!("-{}", "a".repeat(199))
    );
    let path = format!("/{}", "a".repeat(200));
    assert!(sanitize_project_path(&path).len() > 201);
}

#[test]
fn locations_are_under_the_projects_directory() {
    let locator = TranscriptLocator::new("/home/u/.claude");
    assert_eq!(locator.config_dir(), Path::new("/home/u/.claude"));
    assert_eq!(
        locator.projects_dir(),
        Path::new("/home/u/.claude/projects")
    );
    assert!(locator.projects_dir().ends_with(".claude/projects"));
    assert_eq!(
        locator.project_dir("/Users/jenova/projects/foo"),
        Path::new("/home/u/.claude/projects/-Users-jenova-projects-foo")
    );
    let path = locator.transcript_path(Path::new("/home/u/my_app.v2"), &id());
    assert!(
        path.ends_with(format!("-home-u-my-app-v2/{ID}.jsonl")),
        "{path:?}"
    );
    assert_eq!(
        path,
        Path::new("/home/u/.claude/projects/-home-u-my-app-v2").join(format!("{ID}.jsonl"))
    );
    let other = locator.transcript_path("/home/u/my_app.v2", &SessionId::new_v4());
    assert_ne!(path, other);
}

#[test]
fn the_config_dir_comes_from_claude_config_dir_then_home() {
    let from_var =
        TranscriptLocator::from_vars(Some(OsStr::new("/cfg")), Some(OsStr::new("/home/u")))
            .unwrap();
    assert_eq!(from_var.config_dir(), Path::new("/cfg"));

    let from_home = TranscriptLocator::from_vars(None, Some(OsStr::new("/home/u"))).unwrap();
    assert_eq!(from_home.config_dir(), Path::new("/home/u/.claude"));

    let empty_var =
        TranscriptLocator::from_vars(Some(OsStr::new("")), Some(OsStr::new("/home/u"))).unwrap();
    assert_eq!(empty_var.config_dir(), Path::new("/home/u/.claude"));

    let e = TranscriptLocator::from_vars(None, None).unwrap_err();
    assert_eq!(e, TranscriptError::NoConfigDir);
    assert_eq!(e.code(), ErrorCode::ConfigError);
    assert!(e.to_string().contains("CLAUDE_CONFIG_DIR"));
    assert!(TranscriptLocator::from_vars(Some(OsStr::new("")), Some(OsStr::new(""))).is_err());
}

#[test]
fn claude_config_dir_is_nfc_normalized() {
    let locator =
        TranscriptLocator::from_vars(Some(OsStr::new("/home/Jose\u{301}/.claude")), None).unwrap();
    assert_eq!(locator.config_dir(), Path::new("/home/Jos\u{e9}/.claude"));
}

#[test]
fn from_env_agrees_with_from_vars() {
    let expected = TranscriptLocator::from_vars(
        std::env::var_os("CLAUDE_CONFIG_DIR").as_deref(),
        std::env::var_os("HOME").as_deref(),
    );
    assert_eq!(TranscriptLocator::from_env(), expected);
}

#[test]
fn exists_is_false_then_true_after_writing() {
    let (_dir, locator) = locator();
    let project = "/home/u/my_repo";
    assert!(!locator.transcript_exists(project, &id()));
    assert_eq!(locator.find_transcript(project, &id()), None);
    let path = locator.transcript_path(project, &id());
    write(&path);
    assert!(locator.transcript_exists(project, &id()));
    assert_eq!(locator.find_transcript(project, &id()), Some(path));
    assert!(!locator.transcript_exists(project, &SessionId::new_v4()));
}

#[test]
fn the_slash_only_escaping_of_the_original_is_not_used() {
    let (_dir, locator) = locator();
    let project = "/home/u/my_repo";
    // Where the original looked: only `/` replaced.
    write(
        &locator
            .projects_dir()
            .join("-home-u-my_repo")
            .join(format!("{ID}.jsonl")),
    );
    assert!(!locator.transcript_exists(project, &id()));
}

#[test]
fn list_sessions_returns_the_jsonl_stems_only() {
    let (_dir, locator) = locator();
    let project = Path::new("/tmp/test-project");
    assert!(locator.list_sessions(project).is_empty(), "missing dir");
    let dir = locator.project_dir(project);
    fs::create_dir_all(&dir).unwrap();
    assert!(locator.list_sessions(project).is_empty(), "empty dir");

    let ids = [
        SessionId::new_v4(),
        SessionId::new_v4(),
        SessionId::new_v4(),
    ];
    for id in &ids {
        write(&dir.join(format!("{id}.jsonl")));
    }
    write(&dir.join("notes.txt"));
    write(&dir.join("README.md"));
    write(&dir.join("jsonl"));
    fs::create_dir(dir.join("not-a-file.jsonl")).unwrap();

    let mut expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(locator.list_sessions(project), expected);
}

#[test]
fn find_transcript_falls_back_to_a_prefix_scan_for_long_paths() {
    let (_dir, locator) = locator();
    let project = format!("/home/u/{}", "deep/".repeat(60));
    let sanitized = sanitize_project_path(&project);
    assert!(sanitized.len() > MAX_SANITIZED_LEN);

    // The CLI named the directory with a different hash.
    let cli_dir = locator
        .projects_dir()
        .join(format!("{}-someotherhash", &sanitized[..200]));
    assert_ne!(cli_dir, locator.project_dir(&project));
    // A sibling with the same prefix that does not hold this session.
    fs::create_dir_all(
        locator
            .projects_dir()
            .join(format!("{}-aaaa", &sanitized[..200])),
    )
    .unwrap();
    assert_eq!(locator.find_transcript(&project, &id()), None);

    let file = cli_dir.join(format!("{ID}.jsonl"));
    write(&file);
    assert_eq!(locator.find_transcript(&project, &id()), Some(file));
    assert!(locator.transcript_exists(&project, &id()));

    // The exact directory wins when both exist.
    let exact = locator.transcript_path(&project, &id());
    write(&exact);
    assert_eq!(locator.find_transcript(&project, &id()), Some(exact));
}

#[test]
fn short_paths_are_never_prefix_scanned() {
    let (_dir, locator) = locator();
    let project = "/home/u/app";
    write(
        &locator
            .projects_dir()
            .join("-home-u-app-abc123")
            .join(format!("{ID}.jsonl")),
    );
    assert_eq!(locator.find_transcript(project, &id()), None);
}

proptest! {
    #[test]
    fn sanitize_never_panics_and_emits_only_the_safe_alphabet(s in any::<String>()) {
        let out = sanitize_project_path(&s);
        prop_assert!(out.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn short_inputs_keep_one_character_per_scalar(s in "\\PC{0,200}") {
        let scalars = s.nfc().count();
        prop_assume!(scalars <= MAX_SANITIZED_LEN);
        prop_assert_eq!(sanitize_project_path(&s).chars().count(), scalars);
    }

    #[test]
    fn long_inputs_are_prefix_dash_base36(s in "\\PC{201,400}") {
        let scalars = s.nfc().count();
        prop_assume!(scalars > MAX_SANITIZED_LEN);
        let out = sanitize_project_path(&s);
        prop_assert_eq!(out.as_bytes()[MAX_SANITIZED_LEN], b'-');
        let suffix = &out[MAX_SANITIZED_LEN + 1..];
        prop_assert!(!suffix.is_empty() && suffix.len() <= 7);
        prop_assert!(suffix.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        prop_assert_eq!(sanitize_project_path(&s), out.clone());
    }
}
