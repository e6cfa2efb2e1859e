//! Why a configuration could not be loaded. Every message names the file and the key or
//! variable involved, and says what to do.

use std::io;
use std::path::PathBuf;

use crate::config::interpolate::InterpolationError;
use crate::error::{Coded, ErrorCode};
use crate::team::TeamNameError;

/// A configuration file could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file does not exist.
    #[error(
        "configuration file {} does not exist; create it (the iris repository ships a commented example, config/iris.toml) or give the path of an existing file",
        path.display()
    )]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The configuration file (or its directory) could not be read.
    #[error(
        "cannot read configuration {}: {source}; check that it is a readable file",
        path.display()
    )]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The configuration path is not a regular file (a directory, a FIFO, a device).
    #[error(
        "cannot read configuration {}: it is {kind}, not a regular file; give the path of a configuration file",
        path.display()
    )]
    NotAFile {
        /// The path that was tried.
        path: PathBuf,
        /// What it is instead: "a directory", "a FIFO (named pipe)", "a character device", ….
        kind: &'static str,
    },
    /// The configuration file is larger than iris reads.
    #[error(
        "cannot read configuration {}: it is larger than {limit} bytes, far beyond any real configuration; check that the path names the configuration file",
        path.display()
    )]
    TooLarge {
        /// The path that was tried.
        path: PathBuf,
        /// The most bytes iris reads.
        limit: u64,
    },
    /// The file is not valid TOML.
    #[error(
        "{file}:{line}:{column}: invalid TOML: {message}; fix the syntax at line {line}, column {column}"
    )]
    Syntax {
        /// The file (or source name).
        file: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error, in characters.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A key that iris does not know, usually a misspelling.
    #[error(
        "{file}: unknown key `{key_path}`{}; remove it or correct its spelling",
        expected_suffix(expected)
    )]
    UnknownKey {
        /// The file (or source name).
        file: String,
        /// The full path of the unknown key, e.g. `teams.alpha.agent.comand`.
        key_path: String,
        /// The keys allowed there, e.g. "one of `command`, `args`, `env`", when known.
        expected: Option<String>,
    },
    /// A value has the wrong type, is out of range, or a required key is missing.
    #[error("{file}: invalid `{key_path}`: {message}")]
    Invalid {
        /// The file (or source name).
        file: String,
        /// The key whose value is wrong, e.g. `settings.max_processes`.
        key_path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A `${VAR}` reference names an unset variable and has no default.
    #[error(
        "{file}: `{key_path}` uses the environment variable `{var}`, which is not set; set it or write ${{{var}:-default}}"
    )]
    MissingVar {
        /// The file (or source name).
        file: String,
        /// The key whose value holds the reference.
        key_path: String,
        /// The variable's name.
        var: String,
    },
    /// A `${…}` reference is malformed.
    #[error("{file}: `{key_path}`: {problem}")]
    Interpolation {
        /// The file (or source name).
        file: String,
        /// The key whose value holds the reference.
        key_path: String,
        /// What is wrong.
        #[source]
        problem: InterpolationError,
    },
    /// A `[teams.NAME]` table whose NAME is not a valid team name.
    #[error("{file}: `{key_path}`: {source}; rename the table")]
    InvalidTeamName {
        /// The file (or source name).
        file: String,
        /// The team's key path, e.g. `teams."my team"`.
        key_path: String,
        /// The rejected name.
        name: String,
        /// The rule it breaks.
        #[source]
        source: TeamNameError,
    },
    /// The configuration could not be written out as TOML.
    #[error(
        "cannot write the configuration as TOML: {message}; paths must be valid UTF-8 to be shown"
    )]
    Serialize {
        /// The serializer's description.
        message: String,
    },
}

fn expected_suffix(expected: &Option<String>) -> String {
    match expected {
        Some(expected) => format!(" (expected {expected})"),
        None => String::new(),
    }
}

impl Coded for ConfigError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ConfigError
    }
}
