//! Where the pinned Claude Code CLI is, and whether the real-CLI suite must run.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::panic::Location;
use std::path::{Path, PathBuf};

/// The pin file's text: the repository's `claude-cli.version`, read at compile time (a change rebuilds the crate).
const PIN_FILE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../claude-cli.version"
));

/// Names an executable to use instead of the installed pinned CLI.
pub const BIN_ENV: &str = "IRIS_CLAUDE_BIN";
/// Overrides the cache directory the installer uses (default `$HOME/.cache/iris/claude-code`).
pub const CACHE_ENV: &str = "IRIS_CLAUDE_CACHE";
/// When set to `1` (CI sets it), a missing CLI fails the real-CLI tests instead of skipping them.
pub const REQUIRE_ENV: &str = "IRIS_REQUIRE_REAL_CLAUDE";
/// The installer, relative to the workspace root.
pub const INSTALLER: &str = "scripts/install-claude.sh";

/// The Claude Code CLI version the project is pinned to (the repository's `claude-cli.version`, e.g. `2.1.197`).
pub fn pinned_version() -> &'static str {
    PIN_FILE.trim()
}

/// Where `scripts/install-claude.sh` puts the pinned CLI's executable:
/// `${IRIS_CLAUDE_CACHE:-$HOME/.cache/iris/claude-code}/<version>/bin/claude`. `None` when neither variable is set.
pub fn installed_path() -> Option<PathBuf> {
    let cache = match std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?)
            .join(".cache/iris/claude-code"),
    };
    Some(cache.join(pinned_version()).join("bin").join("claude"))
}

/// The pinned Claude Code CLI could not be found. Displays as one line that says how to install it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotInstalled {
    /// `IRIS_CLAUDE_BIN` is set but does not name an executable file.
    #[error(
        "the Claude Code CLI named by {BIN_ENV}={} is not an executable file: point {BIN_ENV} at the CLI {version} or unset it and run {INSTALLER}",
        path.display()
    )]
    BinEnv {
        /// The value of `IRIS_CLAUDE_BIN`.
        path: PathBuf,
        /// The pinned version.
        version: &'static str,
    },
    /// Nothing executable at the installer's cache path.
    #[error(
        "the Claude Code CLI {version} is not installed (no executable at {}): run {INSTALLER}, or set {BIN_ENV} to its executable",
        path.display()
    )]
    NotInCache {
        /// Where the installer would have put it.
        path: PathBuf,
        /// The pinned version.
        version: &'static str,
    },
    /// Neither `IRIS_CLAUDE_BIN`, `IRIS_CLAUDE_CACHE` nor `HOME` is set.
    #[error(
        "the Claude Code CLI {version} cannot be located: neither {BIN_ENV}, {CACHE_ENV} nor HOME is set; run {INSTALLER} with HOME or {CACHE_ENV} set, or set {BIN_ENV}"
    )]
    NoLocation {
        /// The pinned version.
        version: &'static str,
    },
}

fn is_executable_file(path: &Path) -> bool {
    // `metadata` follows symbolic links: the installer's `bin/claude` is one.
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the pinned Claude Code CLI: `$IRIS_CLAUDE_BIN` if set, else the installer's cache path
/// ([`installed_path`]). Checks that it is an executable file; does not run it (the conformance tests check the
/// version the CLI reports in its `system/init` event).
pub fn real_claude() -> Result<PathBuf, NotInstalled> {
    let version = pinned_version();
    if let Some(bin) = std::env::var_os(BIN_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(bin);
        return if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(NotInstalled::BinEnv { path, version })
        };
    }
    let path = installed_path().ok_or(NotInstalled::NoLocation { version })?;
    if is_executable_file(&path) {
        Ok(path)
    } else {
        Err(NotInstalled::NotInCache { path, version })
    }
}

/// Whether the real-CLI suite is required: `IRIS_REQUIRE_REAL_CLAUDE` is set to anything but empty, `0`, `false`
/// or `no` (CI sets `1`).
pub fn real_claude_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no"
        )
    })
}

/// What a real-CLI test calls first: `Some(path)` of the pinned CLI; when it is not installed, `None` after printing
/// one line to stderr (the test should return early, i.e. skip); and when [`real_claude_required`], a panic with that
/// line instead.
#[track_caller]
pub fn real_claude_or_skip() -> Option<PathBuf> {
    let caller = Location::caller();
    decide(real_claude(), real_claude_required(), caller)
}

#[track_caller]
fn decide(
    found: Result<PathBuf, NotInstalled>,
    required: bool,
    caller: &Location<'_>,
) -> Option<PathBuf> {
    match found {
        Ok(path) => Some(path),
        Err(err) if required => panic!(
            "{}",
            Skip {
                err: &err,
                caller,
                required
            }
        ),
        Err(err) => {
            eprintln!(
                "{}",
                Skip {
                    err: &err,
                    caller,
                    required
                }
            );
            None
        }
    }
}

struct Skip<'a> {
    err: &'a NotInstalled,
    caller: &'a Location<'a>,
    required: bool,
}

impl fmt::Display for Skip<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.required {
            write!(
                f,
                "real-CLI test at {} cannot run ({REQUIRE_ENV} is set): {}",
                self.caller, self.err
            )
        } else {
            write!(f, "real-CLI test at {} skipped: {}", self.caller, self.err)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_pin_is_a_version() {
        let v = pinned_version();
        let parts: Vec<&str> = v.split('.').collect();
        assert_eq!(parts.len(), 3, "{v:?}");
        assert!(
            parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            "{v:?}"
        );
    }

    #[test]
    fn not_installed_is_one_line_that_names_the_installer() {
        let errs = [
            NotInstalled::BinEnv {
                path: "/nope/claude".into(),
                version: "2.1.197",
            },
            NotInstalled::NotInCache {
                path: "/x/2.1.197/bin/claude".into(),
                version: "2.1.197",
            },
            NotInstalled::NoLocation { version: "2.1.197" },
        ];
        for err in errs {
            let line = Skip {
                err: &err,
                caller: Location::caller(),
                required: false,
            }
            .to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains("scripts/install-claude.sh"), "{line}");
            assert!(line.contains("2.1.197"), "{line}");
            assert!(line.contains("skipped"), "{line}");
        }
    }

    #[test]
    fn decide_skips_or_panics() {
        let err = || Err(NotInstalled::NoLocation { version: "2.1.197" });
        assert_eq!(
            decide(Ok("/bin/sh".into()), true, Location::caller()),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(decide(err(), false, Location::caller()), None);
        let panic =
            std::panic::catch_unwind(|| decide(err(), true, Location::caller())).unwrap_err();
        let msg = panic.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains(REQUIRE_ENV) && msg.contains(INSTALLER),
            "{msg}"
        );
    }

    #[test]
    fn executables_are_recognized() {
        assert!(is_executable_file(Path::new("/bin/sh")));
        let plain = tempfile::NamedTempFile::new().unwrap();
        assert!(!is_executable_file(plain.path()));
        assert!(!is_executable_file(Path::new("/")));
        assert!(!is_executable_file(Path::new("/definitely/not/here")));
    }
}
