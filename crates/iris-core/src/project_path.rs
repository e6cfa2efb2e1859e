//! Project paths: validating the directory a local team works in.
//!
//! The original checked a project path with substring tests on the unresolved string, which let
//! `/tmp/../etc` and `/etc` itself through and rejected innocent paths such as
//! `/home/me/windows/proj`. Here the path is canonicalized first (symlinks and `..` resolved), and
//! the canonical path is compared against the system locations component by component.
//!
//! Only local teams are validated this way: a remote team's path lives on another machine.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Coded, ErrorCode};

/// The system directories a project may not live in (nor be), checked as path prefixes.
pub const SYSTEM_LOCATIONS: [&str; 8] = [
    "/etc", "/usr", "/bin", "/sbin", "/boot", "/proc", "/sys", "/dev",
];

/// The directories under the user's home a project may not live in (nor be).
pub const HOME_SYSTEM_LOCATIONS: [&str; 2] = [".ssh", ".gnupg"];

/// Why a path is not an acceptable project directory. Every message names the path.
#[derive(Debug, thiserror::Error)]
pub enum ProjectPathError {
    /// The path is empty.
    #[error(
        "project path cannot be empty: set each local team's `path` to the absolute path of its project directory"
    )]
    Empty,
    /// The path is relative.
    #[error(
        "project path {path:?} is not absolute: give the absolute path of the project directory (relative paths in the configuration are resolved against the configuration file's directory before validation)"
    )]
    NotAbsolute {
        /// The rejected path.
        path: PathBuf,
    },
    /// Nothing exists at the path (or a symlink on the way dangles).
    #[error(
        "project path {path:?} does not exist: create the directory or correct the team's `path`"
    )]
    NotFound {
        /// The rejected path.
        path: PathBuf,
    },
    /// The path could not be resolved or inspected for another reason.
    #[error(
        "project path {path:?} could not be resolved: {source}; check that it and its parent directories are accessible"
    )]
    Io {
        /// The rejected path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path exists but is not a directory.
    #[error(
        "project path {path:?} is not a directory: point the team's `path` at the project directory, not a file inside it"
    )]
    NotADirectory {
        /// The rejected path.
        path: PathBuf,
    },
    /// The directory cannot be listed by this process.
    #[error(
        "project path {path:?} is not readable: {source}; grant the iris user read and execute permission on it"
    )]
    NotReadable {
        /// The rejected path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path resolves to, or into, a system location.
    #[error(
        "project path {path:?} resolves to {canonical:?}, which is inside the system location {location:?}: agents must not work in system or credential directories; use a dedicated project directory"
    )]
    SystemLocation {
        /// The rejected path, as given.
        path: PathBuf,
        /// The path after resolving symlinks and `..`.
        canonical: PathBuf,
        /// The system location it falls in (`/` when the path is the root itself).
        location: PathBuf,
    },
}

impl Coded for ProjectPathError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ValidationError
    }
}

/// Validates a local team's project directory and returns its canonical path, taking the home
/// directory for the `~/.ssh` and `~/.gnupg` rules from `$HOME`.
///
/// See [`validate_project_path_with_home`] for the rules.
pub fn validate_project_path(path: &Path) -> Result<PathBuf, ProjectPathError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    validate_project_path_with_home(path, home.as_deref())
}

/// Validates a local team's project directory and returns its canonical path.
///
/// The rules, in order:
/// 1. the path is not empty ([`ProjectPathError::Empty`]);
/// 2. it is absolute ([`ProjectPathError::NotAbsolute`]): configuration loading resolves relative
///    paths against the configuration file's directory, so a relative path here is a caller error;
/// 3. it canonicalizes, resolving symlinks and `..` ([`ProjectPathError::NotFound`], or
///    [`ProjectPathError::Io`] for other failures);
/// 4. it is a directory ([`ProjectPathError::NotADirectory`]);
/// 5. it can be listed ([`ProjectPathError::NotReadable`]);
/// 6. it is not `/`, and does not lie in (or equal) one of [`SYSTEM_LOCATIONS`] or, when `home` is
///    given, `home/.ssh` or `home/.gnupg` ([`ProjectPathError::SystemLocation`]). The test is a
///    component-wise prefix test on the canonical path, and each location is tried both as written
///    and canonicalized (so `/etc` also catches macOS's `/private/etc`).
pub fn validate_project_path_with_home(
    path: &Path,
    home: Option<&Path>,
) -> Result<PathBuf, ProjectPathError> {
    if path.as_os_str().is_empty() {
        return Err(ProjectPathError::Empty);
    }
    if !path.is_absolute() {
        return Err(ProjectPathError::NotAbsolute {
            path: path.to_path_buf(),
        });
    }
    let canonical = std::fs::canonicalize(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ProjectPathError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ProjectPathError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let metadata = std::fs::metadata(&canonical).map_err(|source| ProjectPathError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(ProjectPathError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    if let Err(source) = std::fs::read_dir(&canonical) {
        return Err(ProjectPathError::NotReadable {
            path: path.to_path_buf(),
            source,
        });
    }
    if let Some(location) = system_location_of(&canonical, home) {
        return Err(ProjectPathError::SystemLocation {
            path: path.to_path_buf(),
            canonical,
            location,
        });
    }
    Ok(canonical)
}

/// The system location `canonical` equals or lies inside, if any.
fn system_location_of(canonical: &Path, home: Option<&Path>) -> Option<PathBuf> {
    // `Path::parent` is `None` only for a root (or a bare prefix on Windows).
    if canonical.parent().is_none() {
        return Some(canonical.to_path_buf());
    }
    let fixed = SYSTEM_LOCATIONS.iter().map(PathBuf::from);
    let in_home = home.into_iter().flat_map(|home| {
        HOME_SYSTEM_LOCATIONS
            .iter()
            .map(move |entry| home.join(entry))
    });
    fixed.chain(in_home).find(|location| {
        canonical.starts_with(location)
            || std::fs::canonicalize(location).is_ok_and(|resolved| canonical.starts_with(resolved))
    })
}

#[cfg(test)]
mod tests;
