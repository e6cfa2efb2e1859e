//! Where the CLI keeps transcripts (`<config>/projects/<sanitized cwd>/<id>.jsonl`) and the
//! append-only writer for them.
//!
//! The naming matches `iris_core::transcript`, but is written again on purpose: fake-claude stands
//! in for the real CLI, so sharing iris's code would hide a bug in it instead of catching it. The path is
//! NFC-normalized, every character outside `[A-Za-z0-9]` becomes `-`, and names over 200
//! characters are cut and suffixed with `-` and the SDK's base-36 `simpleHash` of the path.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

/// Sanitized names longer than this are cut and given a hash suffix.
pub const MAX_SANITIZED_LEN: usize = 200;

/// The configuration directory: `$CLAUDE_CONFIG_DIR` (NFC-normalized) if set and non-empty,
/// otherwise `$HOME/.claude`.
pub fn config_dir_from(
    claude_config_dir: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(dir) = claude_config_dir.filter(|d| !d.is_empty()) {
        return Some(match dir.to_str() {
            Some(s) => PathBuf::from(s.nfc().collect::<String>()),
            None => PathBuf::from(dir),
        });
    }
    home.filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".claude"))
}

/// The directory name the CLI gives the project at the canonical path `path`.
pub fn sanitize_project_path(path: &str) -> String {
    let normalized: String = path.nfc().collect();
    let mut sanitized: String = normalized
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // Every character is ASCII now, so the byte length is the character count.
    if sanitized.len() > MAX_SANITIZED_LEN {
        sanitized.truncate(MAX_SANITIZED_LEN);
        sanitized.push('-');
        sanitized.push_str(&hash36(&normalized));
    }
    sanitized
}

/// The SDK's `simpleHash`: `h = (h << 5) - h + unit` over the UTF-16 code units in wrapping
/// 32-bit arithmetic, then the absolute value in lowercase base 36.
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

/// Whether `id` can name a transcript file (no separators or dots that could leave the
/// project directory).
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `<config>/projects/<sanitized project>/<id>.jsonl`.
pub fn transcript_path(config_dir: &Path, project: &Path, id: &str) -> PathBuf {
    config_dir
        .join("projects")
        .join(sanitize_project_path(&project.to_string_lossy()))
        .join(format!("{id}.jsonl"))
}

/// Where the transcripts of one project live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    /// `$CLAUDE_CONFIG_DIR`, else `$HOME/.claude`.
    pub config_dir: PathBuf,
    /// The canonical working directory.
    pub project: PathBuf,
}

impl Locator {
    /// The transcript of conversation `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        transcript_path(&self.config_dir, &self.project, id)
    }

    /// `<config>/projects/<sanitized project>`.
    pub fn project_dir(&self) -> PathBuf {
        self.config_dir
            .join("projects")
            .join(sanitize_project_path(&self.project.to_string_lossy()))
    }

    /// The transcript of `id` if it exists and is not empty (the real CLI treats an empty one
    /// as missing).
    pub fn existing(&self, id: &str) -> Option<PathBuf> {
        let path = self.path(id);
        let usable =
            is_safe_id(id) && fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0);
        usable.then_some(path)
    }
}

/// The bytes of conversation text (user and assistant messages) in a transcript, to size its
/// context; unreadable lines count nothing.
pub fn context_bytes(path: &Path) -> usize {
    let Ok(text) = fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| {
            matches!(
                v.get("type").and_then(|t| t.as_str()),
                Some("user" | "assistant")
            )
        })
        .map(|v| content_bytes(v.get("message").and_then(|m| m.get("content"))))
        .sum()
}

/// The user turns of the conversation in a transcript, as the recordings' mock model counted
/// them ("turns seen"): user messages with real text (not tool results, interrupt notices or
/// command output), from the last compaction on (whose summary counts as one), without prompts
/// whose API call failed.
pub fn turns_seen(path: &Path) -> usize {
    let Ok(text) = fs::read_to_string(path) else {
        return 0;
    };
    let mut turns = 0usize;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let flag = |key: &str| v.get(key).and_then(serde_json::Value::as_bool) == Some(true);
        match v.get("type").and_then(|t| t.as_str()) {
            Some("system")
                if v.get("subtype").and_then(|s| s.as_str()) == Some("compact_boundary") =>
            {
                turns = 0;
            }
            Some("assistant") if flag("isApiErrorMessage") => turns = turns.saturating_sub(1),
            Some("user") if !flag("isReplay") => {
                let content = v.get("message").and_then(|m| m.get("content"));
                let real = |t: &str| !t.starts_with("[Request interrupted by user");
                let has_text = match content {
                    Some(serde_json::Value::String(s)) => real(s),
                    Some(serde_json::Value::Array(blocks)) => blocks.iter().any(|b| {
                        b.get("type").and_then(|t| t.as_str()) == Some("text")
                            && b.get("text").and_then(|t| t.as_str()).is_some_and(real)
                    }),
                    _ => false,
                };
                turns += usize::from(has_text);
            }
            _ => {}
        }
    }
    turns
}

fn content_bytes(content: Option<&serde_json::Value>) -> usize {
    match content {
        Some(serde_json::Value::String(s)) => s.len(),
        Some(serde_json::Value::Array(blocks)) => blocks
            .iter()
            .map(|b| {
                ["text", "content"]
                    .iter()
                    .filter_map(|k| b.get(*k).and_then(|t| t.as_str()))
                    .map(str::len)
                    .sum::<usize>()
            })
            .sum(),
        _ => 0,
    }
}

/// An append-only JSONL transcript, created on the first write.
#[derive(Debug)]
pub struct Transcript {
    path: PathBuf,
    file: Option<File>,
    /// For a forked session: the transcript whose lines the new one starts with.
    seed: Option<PathBuf>,
}

impl Transcript {
    pub fn new(path: PathBuf) -> Self {
        Transcript {
            path,
            file: None,
            seed: None,
        }
    }

    /// A transcript that, when created, starts with a copy of `seed`'s lines.
    pub fn forked_from(path: PathBuf, seed: PathBuf) -> Self {
        Transcript {
            path,
            file: None,
            seed: Some(seed),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one JSON line (written with a single `write` so a line is never split between
    /// writers).
    pub fn append(&mut self, record: &serde_json::Value) -> io::Result<()> {
        let line = crate::protocol::to_line(record).map_err(io::Error::other)?;
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                if let Some(dir) = self.path.parent() {
                    fs::create_dir_all(dir)?;
                }
                let mut file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                if let Some(seed) = self.seed.take() {
                    let mut earlier = fs::read(seed)?;
                    if !earlier.is_empty() && earlier.last() != Some(&b'\n') {
                        earlier.push(b'\n');
                    }
                    file.write_all(&earlier)?;
                }
                self.file.insert(file)
            }
        };
        file.write_all(&line)?;
        file.flush()
    }
}

/// The current UTC time as ISO 8601 with milliseconds, like the CLI's `timestamp` fields.
pub fn timestamp_now() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_timestamp(since_epoch.as_millis())
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn format_timestamp(millis: u128) -> String {
    let secs = millis / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            format_timestamp(1_767_225_599_999),
            "2025-12-31T23:59:59.999Z"
        );
    }

    use super::*;

    #[test]
    fn sanitizing_replaces_every_non_alphanumeric() {
        assert_eq!(
            sanitize_project_path("/Users/me/.agents"),
            "-Users-me--agents"
        );
        assert_eq!(sanitize_project_path("/home/u/my_repo"), "-home-u-my-repo");
        assert_eq!(sanitize_project_path("/a b"), "-a-b");
        assert_eq!(sanitize_project_path("/home/e\u{301}t\u{e9}"), "-home--t-");
    }

    #[test]
    fn the_hash_matches_the_sdks_simple_hash() {
        assert_eq!(hash36(""), "0");
        assert_eq!(hash36("a"), "2p");
        assert_eq!(hash36("/tmp"), "wh3c");
        assert_eq!(hash36("/Users/me/.agents"), "440cud");
        assert_eq!(hash36(&format!("/{}", "a".repeat(299))), "lvx5pu");
        assert_eq!(
            hash36(&format!("/h/\u{e9}\u{1f600}/{}", "x".repeat(250))),
            "r2ntzt"
        );
        assert_eq!(to_base36(i32::MIN.unsigned_abs()), "zik0zk");
        assert_eq!(to_base36(u32::MAX), "1z141z3");
    }

    #[test]
    fn long_paths_are_cut_and_suffixed() {
        let path = format!("/{}", "a".repeat(299));
        let name = sanitize_project_path(&path);
        assert_eq!(name, format!("-{}-lvx5pu", "a".repeat(199)));
        let exactly = format!("/{}", "a".repeat(199));
        assert_eq!(sanitize_project_path(&exactly).len(), 200);
    }

    #[test]
    fn config_dir_choice() {
        assert_eq!(
            config_dir_from(Some("/c".into()), Some("/h".into())),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            config_dir_from(Some("".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.claude"))
        );
        assert_eq!(config_dir_from(None, None), None);
    }

    #[test]
    fn context_counts_message_text() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("t.jsonl");
        fs::write(
            &path,
            concat!(
                r#"{"type":"user","message":{"role":"user","content":"hello"}}"#,
                "\n",
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"echo: hi"}]}}"#,
                "\n",
                r#"{"type":"result","result":"ignored"}"#,
                "\nnot json\n",
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(context_bytes(&path), 13);
        assert_eq!(context_bytes(&dir.path().join("missing")), 0);
    }

    #[test]
    fn turns_are_counted_like_the_mock_model() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("t.jsonl");
        let lines = [
            r#"{"type":"user","message":{"role":"user","content":"one"}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"echo: one"}]}}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"two"}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","content":"x"}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"text","text":"[Request interrupted by user]"}]}}"#,
            r#"{"type":"user","message":{"role":"user","content":"!error"}}"#,
            r#"{"type":"assistant","isApiErrorMessage":true,"message":{"content":[]}}"#,
        ];
        fs::write(&path, lines.join("\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(turns_seen(&path), 2);
        let compacted = [
            lines[0],
            r#"{"type":"system","subtype":"compact_boundary"}"#,
            r#"{"type":"user","isSynthetic":true,"message":{"content":"summary"}}"#,
            r#"{"type":"user","isReplay":true,"message":{"content":"<local-command-stdout>Compacted </local-command-stdout>"}}"#,
            lines[2],
        ];
        fs::write(&path, compacted.join("\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(turns_seen(&path), 2);
        assert_eq!(turns_seen(&dir.path().join("missing")), 0);
    }

    #[test]
    fn existing_transcripts_must_have_content() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let locator = Locator {
            config_dir: dir.path().to_owned(),
            project: PathBuf::from("/p"),
        };
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(locator.existing(id), None);
        let path = locator.path(id);
        fs::create_dir_all(locator.project_dir()).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(locator.existing(id), None);
        fs::write(&path, "{}\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(locator.existing(id), Some(path));
        assert_eq!(locator.existing("../x"), None);
    }

    #[test]
    fn safe_ids() {
        assert!(is_safe_id("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!is_safe_id("../x"));
        assert!(!is_safe_id(""));
    }
}
