//! Transcripts: where the agent CLI keeps its conversations.
//!
//! The CLI writes each conversation to `<config>/projects/<sanitized>/<session-id>.jsonl`, where
//! `<config>` is `$CLAUDE_CONFIG_DIR` or `~/.claude` and `<sanitized>` is the project directory
//! with every character outside `[A-Za-z0-9]` replaced by `-` ([`sanitize_project_path`]).
//!
//! The original replaced only `/`, so it looked in the wrong directory for any project path
//! containing `.`, `_`, a space or a non-ASCII character. The encoding is lossy (`/a b` and `/a-b`
//! share a directory): never decode a directory name back into a path, always go from the
//! configured project path to the directory.
//!
//! Every function here takes the project path as the agent sees it, which must already be
//! canonical (symlinks resolved): the CLI canonicalizes its working directory before sanitizing
//! it. Callers canonicalize (for a local team, [`crate::project_path::validate_project_path`]
//! returns the canonical path); this module never touches the path itself, because a remote
//! team's path need not exist on this machine.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

use crate::error::{Coded, ErrorCode};
use crate::session_id::SessionId;

/// The longest sanitized directory name kept whole, in characters. Longer names are cut to this
/// length and given a hash suffix.
pub const MAX_SANITIZED_LEN: usize = 200;

/// The extension of transcript files.
pub const TRANSCRIPT_EXTENSION: &str = "jsonl";

/// Why the agent's configuration directory could not be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    /// Neither `$CLAUDE_CONFIG_DIR` nor `$HOME` is set.
    #[error(
        "cannot locate the agent's transcripts: neither CLAUDE_CONFIG_DIR nor HOME is set; set CLAUDE_CONFIG_DIR to the agent's configuration directory (usually ~/.claude)"
    )]
    NoConfigDir,
}

impl Coded for TranscriptError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ConfigError
    }
}

/// Finds transcripts under one agent configuration directory (the directory holding `projects/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TranscriptLocator {
    config_dir: PathBuf,
}

impl TranscriptLocator {
    /// A locator for the configuration directory `config_dir` (e.g. `~/.claude`), taken as is.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        TranscriptLocator {
            config_dir: config_dir.into(),
        }
    }

    /// A locator for the directory the CLI would use in this environment: `$CLAUDE_CONFIG_DIR`
    /// (NFC-normalized) if set and non-empty, otherwise `$HOME/.claude`.
    pub fn from_env() -> Result<Self, TranscriptError> {
        Self::from_vars(
            std::env::var_os("CLAUDE_CONFIG_DIR").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
    }

    /// The same choice as [`TranscriptLocator::from_env`], from explicit values of
    /// `CLAUDE_CONFIG_DIR` and `HOME` (empty values count as unset).
    pub fn from_vars(
        claude_config_dir: Option<&OsStr>,
        home: Option<&OsStr>,
    ) -> Result<Self, TranscriptError> {
        if let Some(dir) = claude_config_dir.filter(|d| !d.is_empty()) {
            // A name that is not Unicode cannot be normalized; the CLI would take it as is.
            let dir = match dir.to_str() {
                Some(s) => PathBuf::from(s.nfc().collect::<String>()),
                None => PathBuf::from(dir),
            };
            return Ok(Self::new(dir));
        }
        match home.filter(|h| !h.is_empty()) {
            Some(home) => Ok(Self::new(Path::new(home).join(".claude"))),
            None => Err(TranscriptError::NoConfigDir),
        }
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// `<config>/projects`: one subdirectory per project.
    pub fn projects_dir(&self) -> PathBuf {
        self.config_dir.join("projects")
    }

    /// `<config>/projects/<sanitized>`: the directory the SDK's naming gives the project at the
    /// canonical path `project_path`. For paths whose sanitized name is longer than
    /// [`MAX_SANITIZED_LEN`] the CLI's hash suffix may differ; see
    /// [`TranscriptLocator::find_transcript`].
    pub fn project_dir(&self, project_path: impl AsRef<Path>) -> PathBuf {
        self.projects_dir()
            .join(sanitize_project_path(&path_text(project_path.as_ref())))
    }

    /// `<config>/projects/<sanitized>/<session-id>.jsonl`: the exact location of a transcript.
    pub fn transcript_path(&self, project_path: impl AsRef<Path>, id: &SessionId) -> PathBuf {
        self.project_dir(project_path)
            .join(transcript_file_name(id))
    }

    /// Where the transcript of session `id` actually is, if it exists.
    ///
    /// Tries the exact location first. For a long path (a sanitized name over
    /// [`MAX_SANITIZED_LEN`] characters) it then scans the projects directory for directories
    /// named `<first 200 characters>-<any suffix>` that hold the file, because the CLI's hash
    /// suffix can differ from the SDK's. Session ids are unique, so a hit there is this session.
    pub fn find_transcript(
        &self,
        project_path: impl AsRef<Path>,
        id: &SessionId,
    ) -> Option<PathBuf> {
        let sanitized = sanitize_project_path(&path_text(project_path.as_ref()));
        let projects = self.projects_dir();
        let file_name = transcript_file_name(id);
        let exact = projects.join(&sanitized).join(&file_name);
        if exact.is_file() {
            return Some(exact);
        }
        let prefix = long_name_prefix(&sanitized)?;
        let mut candidates: Vec<PathBuf> = fs::read_dir(&projects)
            .ok()?
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| name.starts_with(&prefix))
            })
            .map(|entry| entry.path().join(&file_name))
            .collect();
        candidates.sort();
        candidates.into_iter().find(|candidate| candidate.is_file())
    }

    /// Whether the transcript of session `id` exists (see
    /// [`TranscriptLocator::find_transcript`]).
    pub fn transcript_exists(&self, project_path: impl AsRef<Path>, id: &SessionId) -> bool {
        self.find_transcript(project_path, id).is_some()
    }

    /// The ids of the transcripts in the project's exact directory
    /// ([`TranscriptLocator::project_dir`]): the names of its `*.jsonl` files without the
    /// extension, sorted. Other files are ignored; a missing or unreadable directory gives an
    /// empty list.
    ///
    /// The names are returned as found, not parsed as [`SessionId`]s. Long paths are not
    /// prefix-scanned here: directories sharing a 200-character prefix may belong to different
    /// projects, so only a lookup by session id ([`TranscriptLocator::find_transcript`]) can
    /// safely fall back to them.
    pub fn list_sessions(&self, project_path: impl AsRef<Path>) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.project_dir(project_path)) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension() == Some(OsStr::new(TRANSCRIPT_EXTENSION)))
            .filter(|path| path.is_file())
            .filter_map(|path| path.file_stem()?.to_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }
}

/// The directory name the agent gives the project at `path`.
///
/// The path is NFC-normalized, then every Unicode scalar outside `[A-Za-z0-9]` becomes one `-`
/// (runs are not collapsed): `/Users/me/.agents` → `-Users-me--agents`. If the result is longer
/// than [`MAX_SANITIZED_LEN`] characters, it is cut to that length and followed by `-` and the
/// SDK's 32-bit hash of the (NFC-normalized) path in base 36.
///
/// `path` should be canonical; this function does not resolve it.
pub fn sanitize_project_path(path: &str) -> String {
    let normalized: String = path.nfc().collect();
    let mut sanitized: String = normalized
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // Every character is ASCII now, so byte length is character count.
    if sanitized.len() > MAX_SANITIZED_LEN {
        sanitized.truncate(MAX_SANITIZED_LEN);
        sanitized.push('-');
        sanitized.push_str(&hash36(&normalized));
    }
    sanitized
}

/// The SDK's `simpleHash`: over the UTF-16 code units of `s`, `h = (h << 5) - h + unit` in
/// wrapping 32-bit arithmetic, then the absolute value in lowercase base 36.
fn hash36(s: &str) -> String {
    let hash = s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_shl(5)
            .wrapping_sub(h)
            .wrapping_add(i32::from(unit))
    });
    to_base36(hash.unsigned_abs())
}

fn to_base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    out.into_iter().map(char::from).collect()
}

/// For a sanitized name that was cut and suffixed, the part every variant shares:
/// `<first 200 characters>-`. `None` for a name kept whole.
fn long_name_prefix(sanitized: &str) -> Option<String> {
    if sanitized.len() <= MAX_SANITIZED_LEN {
        return None;
    }
    let mut prefix = sanitized.get(..MAX_SANITIZED_LEN)?.to_owned();
    prefix.push('-');
    Some(prefix)
}

fn transcript_file_name(id: &SessionId) -> String {
    format!("{id}.{TRANSCRIPT_EXTENSION}")
}

/// The path as text. Bytes that are not UTF-8 become U+FFFD, which sanitizes to `-`.
fn path_text(path: &Path) -> std::borrow::Cow<'_, str> {
    path.to_string_lossy()
}

#[cfg(test)]
mod tests;
