use std::fs;

use super::*;

fn err(path: &Path, home: Option<&Path>) -> ProjectPathError {
    match validate_project_path_with_home(path, home) {
        Ok(ok) => panic!("{path:?} should be rejected, got {ok:?}"),
        Err(e) => e,
    }
}

fn assert_system(path: &str, expected_location: &str) {
    let e = err(Path::new(path), None);
    match &e {
        ProjectPathError::SystemLocation { location, .. } => {
            assert_eq!(location, Path::new(expected_location), "{path}: {e}");
        }
        other => panic!("{path} should be a system location, got {other:?}"),
    }
    assert!(e.to_string().contains(path), "{e}");
    assert_eq!(e.code(), ErrorCode::ValidationError);
}

#[test]
fn a_temp_dir_passes_and_comes_back_canonical() {
    let dir = tempfile::tempdir().unwrap();
    let got = validate_project_path_with_home(dir.path(), None).unwrap();
    assert_eq!(got, fs::canonicalize(dir.path()).unwrap());
}

#[test]
fn the_plain_function_uses_the_environment_and_accepts_a_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let got = validate_project_path(dir.path()).unwrap();
    assert_eq!(got, fs::canonicalize(dir.path()).unwrap());
}

#[test]
fn dot_dot_inside_an_acceptable_path_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let got = validate_project_path_with_home(&dir.path().join("sub/.."), None).unwrap();
    assert_eq!(got, fs::canonicalize(dir.path()).unwrap());
}

#[cfg(unix)]
#[test]
fn a_symlink_to_a_temp_dir_passes_and_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real");
    fs::create_dir(&target).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let got = validate_project_path_with_home(&link, None).unwrap();
    assert_eq!(got, fs::canonicalize(&target).unwrap());
    assert_ne!(got, link);
}

#[test]
fn empty_is_rejected() {
    let e = err(Path::new(""), None);
    assert!(matches!(e, ProjectPathError::Empty), "{e}");
    assert_eq!(e.code(), ErrorCode::ValidationError);
}

#[test]
fn relative_paths_are_rejected_even_when_they_exist() {
    for rel in ["relative/path", ".", "./current", "../parent", "src"] {
        let e = err(Path::new(rel), None);
        assert!(
            matches!(e, ProjectPathError::NotAbsolute { .. }),
            "{rel}: {e}"
        );
        assert!(e.to_string().contains(rel), "{e}");
    }
}

#[test]
fn a_missing_path_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist-12345");
    let e = err(&missing, None);
    assert!(matches!(e, ProjectPathError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("does-not-exist-12345"), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_dangling_symlink_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    assert!(matches!(
        err(&link, None),
        ProjectPathError::NotFound { .. }
    ));
}

#[test]
fn a_file_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    fs::write(&file, "x").unwrap();
    let e = err(&file, None);
    assert!(matches!(e, ProjectPathError::NotADirectory { .. }), "{e}");
    assert!(e.to_string().contains("file.txt"), "{e}");
}

#[cfg(unix)]
#[test]
fn system_locations_are_rejected_by_prefix() {
    assert_system("/etc", "/etc");
    assert_system("/etc/ssl", "/etc");
    assert_system("/usr/bin", "/usr");
    assert_system("/proc/self", "/proc");
    assert_system("/", "/");
}

#[cfg(unix)]
#[test]
fn dot_dot_into_a_system_location_is_rejected() {
    // The original accepted this: an absolute path normalizes its `..` away before the checks.
    assert_system("/tmp/../etc", "/etc");
    let e = err(Path::new("/tmp/../etc"), None);
    let ProjectPathError::SystemLocation { canonical, .. } = e else {
        panic!("expected a system location");
    };
    assert!(canonical.ends_with("etc"));
}

#[cfg(unix)]
#[test]
fn a_symlink_into_a_system_location_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("innocent");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let e = err(&link, None);
    assert!(matches!(e, ProjectPathError::SystemLocation { .. }), "{e}");
    assert!(e.to_string().contains("innocent"), "{e}");
}

#[test]
fn credential_directories_in_home_are_rejected() {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    fs::create_dir_all(ssh.join("keys")).unwrap();
    fs::create_dir(home.path().join(".gnupg")).unwrap();

    for (path, location) in [
        (ssh.clone(), ssh.clone()),
        (ssh.join("keys"), ssh.clone()),
        (home.path().join(".gnupg"), home.path().join(".gnupg")),
    ] {
        let e = err(&path, Some(home.path()));
        match &e {
            ProjectPathError::SystemLocation { location: got, .. } => {
                assert_eq!(got, &location, "{e}");
            }
            other => panic!("{path:?} should be rejected, got {other:?}"),
        }
    }
    // Without a home the same directories are ordinary.
    assert!(validate_project_path_with_home(&ssh, None).is_ok());
    // The home itself and its other directories are fine.
    assert!(validate_project_path_with_home(home.path(), Some(home.path())).is_ok());
    let project = home.path().join("projects/app");
    fs::create_dir_all(&project).unwrap();
    assert!(validate_project_path_with_home(&project, Some(home.path())).is_ok());
}

#[cfg(unix)]
#[test]
fn a_symlinked_home_still_protects_its_credentials() {
    let root = tempfile::tempdir().unwrap();
    let real_home = root.path().join("real-home");
    fs::create_dir_all(real_home.join(".ssh")).unwrap();
    let link_home = root.path().join("home-link");
    std::os::unix::fs::symlink(&real_home, &link_home).unwrap();
    // Given through the symlinked home, the canonical path is under the real one.
    let e = err(&link_home.join(".ssh"), Some(&link_home));
    assert!(matches!(e, ProjectPathError::SystemLocation { .. }), "{e}");
}

#[test]
fn names_that_only_look_like_system_directories_are_accepted() {
    // The original's substring test rejected these.
    let dir = tempfile::tempdir().unwrap();
    for name in ["etc", "windows", "system", "usr/bin", ".ssh-notes", "sshx"] {
        let path = dir.path().join(name);
        fs::create_dir_all(&path).unwrap();
        let got =
            validate_project_path_with_home(&path, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, fs::canonicalize(&path).unwrap());
    }
    // A `.ssh` that is not in the home directory is not a credential directory.
    let home = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join(".ssh");
    fs::create_dir(&elsewhere).unwrap();
    assert!(validate_project_path_with_home(&elsewhere, Some(home.path())).is_ok());
}

#[cfg(unix)]
#[test]
fn an_unreadable_directory_is_rejected_where_permissions_apply() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    // Root (and some sandboxes) can read anything: only assert when the OS actually refuses.
    let refused = fs::read_dir(&locked).is_err();
    let result = validate_project_path_with_home(&locked, None);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    if refused {
        let e = result.unwrap_err();
        assert!(matches!(e, ProjectPathError::NotReadable { .. }), "{e}");
        assert!(e.to_string().contains("locked"), "{e}");
    } else {
        assert!(result.is_ok());
    }
}

#[test]
fn every_error_is_a_validation_error() {
    let errors = [
        ProjectPathError::Empty,
        ProjectPathError::NotAbsolute { path: "a".into() },
        ProjectPathError::NotFound { path: "/a".into() },
        ProjectPathError::Io {
            path: "/a".into(),
            source: io::Error::other("x"),
        },
        ProjectPathError::NotADirectory { path: "/a".into() },
        ProjectPathError::NotReadable {
            path: "/a".into(),
            source: io::Error::other("x"),
        },
        ProjectPathError::SystemLocation {
            path: "/a".into(),
            canonical: "/etc".into(),
            location: "/etc".into(),
        },
    ];
    for e in errors {
        assert_eq!(e.code(), ErrorCode::ValidationError);
    }
}
