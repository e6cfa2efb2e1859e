//! Team names: the validated identity of a project directory in the configuration.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Coded, ErrorCode};

/// The longest team name accepted, in characters.
pub const MAX_TEAM_NAME_LEN: usize = 100;

/// Substrings the original rejected as dangerous. Kept so the same names fail with the same
/// reason, even though the character allow-list alone would reject most of them.
const DANGEROUS: [&str; 8] = ["../", "..\\", "\0", "|", "&", ";", "$", "`"];

/// Why a string is not a valid [`TeamName`]. Every message shows the offending name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeamNameError {
    /// The name is empty.
    #[error("team name cannot be empty: give each team a name such as `frontend` or `backend-api`")]
    Empty,
    /// The name is longer than [`MAX_TEAM_NAME_LEN`] characters.
    #[error(
        "team name {} is {len} characters long; the maximum is {MAX_TEAM_NAME_LEN}",
        crate::redact::quoted(name)
    )]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length in characters.
        len: usize,
    },
    /// The name contains a shell metacharacter or a path climb.
    #[error(
        "team name {} contains the dangerous sequence {found:?}; use only letters, digits, '_', '-', '@' and '.'",
        crate::redact::quoted(name)
    )]
    Dangerous {
        /// The rejected name.
        name: String,
        /// The dangerous substring found.
        found: &'static str,
    },
    /// The name contains a character outside `[A-Za-z0-9_\-@.]`.
    #[error(
        "team name {} contains the invalid character {ch:?}; use only letters, digits, '_', '-', '@' and '.'",
        crate::redact::quoted(name)
    )]
    InvalidCharacter {
        /// The rejected name.
        name: String,
        /// The first invalid character.
        ch: char,
    },
    /// The name is `.` or `..`, which would alias a directory.
    #[error(
        "team name {} is reserved because it names a directory; pick a descriptive name",
        crate::redact::quoted(name)
    )]
    DotName {
        /// The rejected name.
        name: String,
    },
    /// The name starts with `-` (it could pass for a flag) or `.` (a hidden file).
    #[error(
        "team name {} must not begin with {ch:?}; start it with a letter, digit, '_' or '@'",
        crate::redact::quoted(name)
    )]
    BadFirstCharacter {
        /// The rejected name.
        name: String,
        /// The offending first character.
        ch: char,
    },
}

impl Coded for TeamNameError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ValidationError
    }
}

/// A validated team name.
///
/// The rules are the original's (non-empty, at most 100 characters, only `[A-Za-z0-9_\-@.]`, none
/// of its dangerous substrings), plus the gaps it left open: `.` and `..` are rejected, and so is
/// a name that begins with `-` or `.`.
///
/// The name is shared (`Arc<str>`): a pair is cloned into several maps per live session, and a
/// clone should cost a counter increment rather than an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TeamName(Arc<str>);

impl TeamName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, TeamNameError> {
        let name = name.into();
        validate(&name)?;
        Ok(TeamName(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unwraps the inner string.
    pub fn into_string(self) -> String {
        self.0.as_ref().to_owned()
    }
}

fn validate(name: &str) -> Result<(), TeamNameError> {
    if name.is_empty() {
        return Err(TeamNameError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_TEAM_NAME_LEN {
        return Err(TeamNameError::TooLong {
            name: name.to_owned(),
            len,
        });
    }
    if let Some(found) = DANGEROUS.iter().find(|d| name.contains(*d)) {
        return Err(TeamNameError::Dangerous {
            name: name.to_owned(),
            found,
        });
    }
    if let Some(ch) = name.chars().find(|c| !is_allowed(*c)) {
        return Err(TeamNameError::InvalidCharacter {
            name: name.to_owned(),
            ch,
        });
    }
    if name == "." || name == ".." {
        return Err(TeamNameError::DotName {
            name: name.to_owned(),
        });
    }
    match name.chars().next() {
        Some(ch @ ('-' | '.')) => Err(TeamNameError::BadFirstCharacter {
            name: name.to_owned(),
            ch,
        }),
        _ => Ok(()),
    }
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@' | '.')
}

impl fmt::Display for TeamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TeamName {
    type Err = TeamNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TeamName::new(s)
    }
}

impl TryFrom<String> for TeamName {
    type Error = TeamNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        TeamName::new(s)
    }
}

impl TryFrom<&str> for TeamName {
    type Error = TeamNameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        TeamName::new(s)
    }
}

impl AsRef<str> for TeamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TeamName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for TeamName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TeamName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        TeamName::new(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
