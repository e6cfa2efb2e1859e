//! Keeping secrets and oversized values out of what iris shows and stores.
//!
//! **Secrets.** What iris records about an agent's launch (the session's `launch_command` and
//! `team_config_snapshot`), what it prints, and what it puts in error messages (an agent's
//! stderr tail) may carry credentials written into the configuration: an `env` value such as
//! `DATABASE_URL=postgres://app:PASSWORD@db/app`, an API key in an argument, a token in an MCP
//! server's URL. Redaction is by *value shape* as well as by name:
//!
//! - environment values are never shown: [`redact_env_value`] hides every value but the few
//!   iris sets itself;
//! - a URL keeps its scheme, host and path, but loses its password (`postgres://app:<redacted>@db`)
//!   and the value of every query parameter whose name looks secret (`?token=<redacted>`);
//! - `Authorization`-style `Bearer …`/`Basic …` credentials lose the credential;
//! - `NAME=value`, `NAME: value` and `"NAME": "value"` lose the value when NAME looks secret
//!   ([`is_secret_name`]: contains `KEY`, `TOKEN`, `SECRET`, `PASSWORD`, `PASSWD`, `CREDENTIAL`,
//!   `AUTH`, `COOKIE` or `PRIVATE`, in any case);
//! - JSON (an inline MCP configuration) is walked: every `env` and `headers` object loses its
//!   values, and every string goes through the rules above ([`redact_json`]).
//!
//! Redaction is idempotent: redacting redacted text changes nothing.
//!
//! **Echoes.** An error message that repeats a bad value shows at most [`ECHO_LIMIT`]
//! characters of it ([`clip`]), so a 1 MB team name does not become a 1 MB error.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What stands in for a hidden value.
pub const REDACTED: &str = "<redacted>";

/// The most characters of a bad value an error message repeats.
pub const ECHO_LIMIT: usize = 200;

/// The parts of a variable or parameter name that mark its value as a secret.
const SECRET_WORDS: [&str; 9] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "PRIVATE",
];

/// Environment values iris sets itself, which are safe to show.
const KNOWN_SAFE_ENV: [(&str, &str); 1] = [("CLAUDE_CODE_ENTRYPOINT", "iris")];

/// Whether a variable, key or parameter named `name` holds a secret, judged by its name.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| upper.contains(word))
}

/// What is shown and stored for the value of the environment variable `name`: nothing of it
/// ([`REDACTED`]), unless it is one of the values iris sets itself. Names are shown; values may
/// be credentials whatever the name (`DATABASE_URL`), and a launch line is pasted into tickets.
pub fn redact_env_value<'a>(name: &str, value: &'a str) -> &'a str {
    if KNOWN_SAFE_ENV.contains(&(name, value)) {
        value
    } else {
        REDACTED
    }
}

/// A URL's userinfo (`user:password@`). The scheme must be followed by `//`.
static URL_USERINFO: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s?#@'\x22<>]+)@").ok());

/// A URL query parameter whose name looks secret.
static SECRET_QUERY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)([?&;][a-z0-9_.\-]*(?:token|key|password|passwd|pwd|secret|signature|sig|auth|credential|session)[a-z0-9_.\-]*=)([^&\s#'\x22<>]+)",
    )
    .ok()
});

/// `Bearer <credential>` / `Basic <credential>`.
static AUTH_SCHEME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=\-]{6,})").ok());

/// `NAME=value`, `NAME: value`, `"NAME": "value"`, `--name=value`.
static ASSIGNMENT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:^|[^A-Za-z0-9_])["']?[A-Za-z0-9_.\-]*(?:key|token|secret|password|passwd|credential|auth|cookie|private)[A-Za-z0-9_.\-]*["']?[ \t]*[=:][ \t]*)("[^"\n]*"|'[^'\n]*'|[^\s&,;'"}\]]+)"#,
    )
    .ok()
});

/// `text` with the secrets it seems to carry replaced by [`REDACTED`]: URL passwords and secret
/// query parameters, `Bearer`/`Basic` credentials, and the values of secret-looking
/// assignments (see the module documentation). Text without any comes back borrowed.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for step in [redact_urls, redact_auth_schemes, redact_assignments] {
        if let Cow::Owned(changed) = step(&out) {
            out = Cow::Owned(changed);
        }
    }
    out
}

/// URL passwords and secret query parameters only: for values that must stay usable as a
/// location, such as a path or a URL shown in a table.
pub fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") && !text.contains('?') {
        return Cow::Borrowed(text);
    }
    let (Some(userinfo), Some(query)) = (URL_USERINFO.as_ref(), SECRET_QUERY.as_ref()) else {
        // A pattern that does not compile is a bug caught by the tests; fail closed.
        return Cow::Owned(REDACTED.to_owned());
    };
    let step = userinfo.replace_all(text, |caps: &Captures<'_>| {
        let scheme = caps.get(1).map_or("", |m| m.as_str());
        let info = caps.get(2).map_or("", |m| m.as_str());
        format!("{scheme}{}@", redact_userinfo(info))
    });
    let changed = match query.replace_all(&step, |caps: &Captures<'_>| redacted_value(caps)) {
        Cow::Owned(changed) => Some(changed),
        Cow::Borrowed(_) => None,
    };
    match changed {
        Some(changed) => into_cow(text, Cow::Owned(changed)),
        None => into_cow(text, step),
    }
}

/// The userinfo of a URL with its password hidden. A user name alone is kept when it looks
/// like a name; a long opaque one (a token used as the user, as some git hosts take) is hidden.
fn redact_userinfo(info: &str) -> Cow<'_, str> {
    match info.split_once(':') {
        Some((_, REDACTED)) => Cow::Borrowed(info),
        Some((user, _)) => Cow::Owned(format!("{user}:{REDACTED}")),
        None if info == REDACTED => Cow::Borrowed(info),
        None if info.len() <= 32
            && info
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '%')) =>
        {
            Cow::Borrowed(info)
        }
        None => Cow::Borrowed(REDACTED),
    }
}

fn redact_auth_schemes(text: &str) -> Cow<'_, str> {
    let Some(pattern) = AUTH_SCHEME.as_ref() else {
        return Cow::Owned(REDACTED.to_owned());
    };
    let step = pattern.replace_all(text, |caps: &Captures<'_>| {
        let scheme = caps.get(1).map_or("", |m| m.as_str());
        let space = caps.get(2).map_or(" ", |m| m.as_str());
        format!("{scheme}{space}{REDACTED}")
    });
    into_cow(text, step)
}

fn redact_assignments(text: &str) -> Cow<'_, str> {
    let Some(pattern) = ASSIGNMENT.as_ref() else {
        return Cow::Owned(REDACTED.to_owned());
    };
    let step = pattern.replace_all(text, |caps: &Captures<'_>| {
        let value = caps.get(2).map_or("", |m| m.as_str());
        // `Authorization: Bearer …`: the scheme is no secret, its credential was handled.
        if value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("basic") {
            caps.get(0)
                .map_or_else(String::new, |m| m.as_str().to_owned())
        } else {
            redacted_value(caps)
        }
    });
    into_cow(text, step)
}

/// Group 1 kept, group 2 (the value) replaced, its quotes kept.
fn redacted_value(caps: &Captures<'_>) -> String {
    let head = caps.get(1).map_or("", |m| m.as_str());
    let value = caps.get(2).map_or("", |m| m.as_str());
    let quote = value
        .chars()
        .next()
        .filter(|c| (*c == '"' || *c == '\'') && value.len() >= 2 && value.ends_with(*c));
    match quote {
        Some(q) => format!("{head}{q}{REDACTED}{q}"),
        None if value == REDACTED => format!("{head}{value}"),
        None => format!("{head}{REDACTED}"),
    }
}

/// A replacement result as a `Cow` of the original text: borrowed when nothing changed.
fn into_cow<'a>(original: &'a str, step: Cow<'_, str>) -> Cow<'a, str> {
    match step {
        Cow::Borrowed(_) => Cow::Borrowed(original),
        Cow::Owned(changed) if changed == original => Cow::Borrowed(original),
        Cow::Owned(changed) => Cow::Owned(changed),
    }
}

/// Redacts a JSON value in place: every `env` and `headers` object loses its values, every key
/// that [`is_secret_name`] loses its (string or number) value, and every other string goes
/// through [`redact_text`]; a string that is itself a JSON object or array (an inline MCP
/// configuration inside an argument) is redacted as JSON and written back compactly.
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let hide_all = matches!(key.as_str(), "env" | "headers" | "environment");
                match item {
                    Value::Object(inner) if hide_all => {
                        for inner_value in inner.values_mut() {
                            if !inner_value.is_null() {
                                *inner_value = Value::String(REDACTED.to_owned());
                            }
                        }
                    }
                    Value::String(_) | Value::Number(_) if is_secret_name(key) => {
                        *item = Value::String(REDACTED.to_owned());
                    }
                    other => redact_json(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(text) => match redact_embedded_json(text) {
            Some(Cow::Owned(redacted)) => *text = redacted,
            Some(Cow::Borrowed(_)) => {}
            None => {
                if let Cow::Owned(redacted) = redact_text(text) {
                    *text = redacted;
                }
            }
        },
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A string that holds a JSON object or array, redacted as JSON (written back compactly, and
/// only if something was hidden: otherwise the text as it was); `None` if it holds no JSON.
fn redact_embedded_json(text: &str) -> Option<Cow<'_, str>> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') && !trimmed.starts_with('[') {
        return None;
    }
    let original: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut inner = original.clone();
    redact_json(&mut inner);
    if inner == original {
        return Some(Cow::Borrowed(text));
    }
    // Serializing a `Value` cannot fail; if it did, hide the whole text.
    Some(Cow::Owned(
        serde_json::to_string(&inner).unwrap_or_else(|_| REDACTED.to_owned()),
    ))
}

/// A command-line argument with its secrets hidden: an argument that is (or ends in, after
/// `--flag=`) JSON is redacted as JSON, anything else as text.
pub fn redact_arg(arg: &str) -> Cow<'_, str> {
    if let Some(json) = redact_embedded_json(arg) {
        return json;
    }
    if let Some((flag, value)) = arg.split_once('=')
        && flag.starts_with('-')
        && let Some(json) = redact_embedded_json(value)
    {
        return match json {
            Cow::Borrowed(_) => Cow::Borrowed(arg),
            Cow::Owned(json) => Cow::Owned(format!("{flag}={json}")),
        };
    }
    redact_text(arg)
}

/// At most [`ECHO_LIMIT`] characters of `value`; a longer one is cut (never inside a character)
/// and says how long it was.
pub fn clip(value: &str) -> Cow<'_, str> {
    clip_to(value, ECHO_LIMIT)
}

/// At most `limit` characters of `value`, as [`clip`].
pub fn clip_to(value: &str, limit: usize) -> Cow<'_, str> {
    match value.char_indices().nth(limit) {
        None => Cow::Borrowed(value),
        Some((end, _)) => Cow::Owned(format!(
            "{}… ({} characters in all)",
            &value[..end],
            value.chars().count()
        )),
    }
}

/// `value` clipped ([`clip`]) and quoted as `{:?}` would quote it, for error messages.
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(ECHO_LIMIT) {
        None => format!("{value:?}"),
        Some((end, _)) => format!(
            "{:?}… ({} characters in all)",
            &value[..end],
            value.chars().count()
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert!(URL_USERINFO.is_some());
        assert!(SECRET_QUERY.is_some());
        assert!(AUTH_SCHEME.is_some());
        assert!(ASSIGNMENT.is_some());
    }

    #[test]
    fn url_passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_text("postgres://app:PASSWORD@db.internal:5432/app?sslmode=require"),
            "postgres://app:<redacted>@db.internal:5432/app?sslmode=require"
        );
        assert_eq!(
            redact_text("connect to mysql://root:s3cr%40t@10.0.0.1/db failed"),
            "connect to mysql://root:<redacted>@10.0.0.1/db failed"
        );
        assert_eq!(
            redact_text("https://ghp_0123456789abcdef0123456789abcdef0123@github.com/x.git"),
            "https://<redacted>@github.com/x.git"
        );
        assert_eq!(
            redact_text("ssh://git@example.com/repo"),
            "ssh://git@example.com/repo"
        );
        assert_eq!(
            redact_text("https://api.example.com/v1?user=me&access_token=abc123&page=2"),
            "https://api.example.com/v1?user=me&access_token=<redacted>&page=2"
        );
        assert_eq!(
            redact_text("https://x.example/?X-Amz-Signature=deadbeef&apiKey=k"),
            "https://x.example/?X-Amz-Signature=<redacted>&apiKey=<redacted>"
        );
        assert_eq!(
            redact_text("https://example.com/docs"),
            "https://example.com/docs"
        );
    }

    #[test]
    fn credentials_and_secret_assignments_are_hidden() {
        assert_eq!(
            redact_text("Authorization: Bearer abcdef123456"),
            "Authorization: Bearer <redacted>"
        );
        assert_eq!(
            redact_text("error: API_KEY=sk-live-123 is invalid"),
            "error: API_KEY=<redacted> is invalid"
        );
        assert_eq!(
            redact_text(r#"{"apiKey": "sk-1", "model": "m"}"#),
            r#"{"apiKey": "<redacted>", "model": "m"}"#
        );
        assert_eq!(
            redact_text("--github-token=ghp_x --verbose"),
            "--github-token=<redacted> --verbose"
        );
        assert_eq!(redact_text("password: hunter2"), "password: <redacted>");
        let plain = "Error: could not open /tmp/x: No such file or directory";
        assert!(matches!(redact_text(plain), Cow::Borrowed(_)));
    }

    #[test]
    fn redaction_is_idempotent() {
        for text in [
            "postgres://app:PASSWORD@db/app",
            "https://ghp_0123456789abcdef0123456789abcdef0123@github.com/x.git",
            "API_KEY=abc and Bearer 1234567890 and ?token=x",
            r#"{"password": "p"}"#,
        ] {
            let once = redact_text(text).into_owned();
            assert_eq!(redact_text(&once), once, "{text}");
        }
    }

    #[test]
    fn env_values_are_never_shown() {
        assert_eq!(
            redact_env_value("DATABASE_URL", "postgres://a:b@c/d"),
            REDACTED
        );
        assert_eq!(redact_env_value("RUST_LOG", "debug"), REDACTED);
        assert_eq!(redact_env_value("CLAUDE_CODE_ENTRYPOINT", "iris"), "iris");
        assert!(is_secret_name("github_token"));
        assert!(is_secret_name("AWS_SECRET_ACCESS_KEY"));
        assert!(!is_secret_name("PATH"));
    }

    #[test]
    fn json_env_and_headers_lose_their_values() {
        let mut value = serde_json::json!({
            "mcpServers": {
                "db": {
                    "command": "db-mcp",
                    "args": ["--url", "postgres://u:PASSWORD@h/d"],
                    "env": {"DATABASE_URL": "postgres://u:PASSWORD@h/d", "MODE": "ro"},
                    "headers": {"Authorization": "Bearer abcdefgh"},
                    "apiKey": "k-123"
                }
            }
        });
        redact_json(&mut value);
        let text = value.to_string();
        assert!(!text.contains("PASSWORD"), "{text}");
        assert!(!text.contains("abcdefgh"), "{text}");
        assert!(!text.contains("k-123"), "{text}");
        assert!(!text.contains("\"ro\""), "{text}");
        assert!(text.contains("db-mcp"), "{text}");
        assert!(text.contains("DATABASE_URL"), "names stay: {text}");

        let arg = r#"--mcp-config={"mcpServers":{"x":{"env":{"TOKEN":"t0k3n"}}}}"#;
        let shown = redact_arg(arg);
        assert!(!shown.contains("t0k3n"), "{shown}");
        assert!(shown.starts_with("--mcp-config={"), "{shown}");
        // JSON with nothing to hide is left exactly as written.
        let plain = r#"--mcp-config={"mcpServers": {"x's": {}}}"#;
        assert!(matches!(redact_arg(plain), Cow::Borrowed(_)));
    }

    #[test]
    fn errors_echo_at_most_a_clipped_bad_value() {
        let huge = "x".repeat(100_000);
        let team = crate::TeamName::new(&huge).unwrap_err().to_string();
        assert!(team.len() < ECHO_LIMIT + 200, "{} bytes", team.len());
        assert!(team.contains("100000 characters"), "{team}");
        let bad = format!("{huge}|");
        let team = crate::TeamName::new(&bad).unwrap_err().to_string();
        assert!(team.len() < ECHO_LIMIT + 200, "{} bytes", team.len());
        let id = crate::SessionId::parse(&huge).unwrap_err().to_string();
        assert!(id.len() < ECHO_LIMIT + 200, "{} bytes", id.len());
        let status = huge
            .parse::<crate::SessionStatus>()
            .unwrap_err()
            .to_string();
        assert!(status.len() < ECHO_LIMIT + 300, "{} bytes", status.len());
        for text in [
            format!("[settings]\nspawn_timeout = \"{huge}\"\n"),
            format!("[teams.\"{huge}\"]\npath = \"/x\"\n"),
        ] {
            let config = crate::config::Config::from_toml_str(
                &text,
                std::path::Path::new("/etc/iris"),
                "t.toml",
                &|_| None,
            )
            .unwrap_err()
            .to_string();
            assert!(
                config.len() < 3 * ECHO_LIMIT + 200,
                "{} bytes",
                config.len()
            );
        }
    }

    #[test]
    fn long_values_are_clipped_on_a_character_boundary() {
        let short = "alpha";
        assert_eq!(clip(short), "alpha");
        let long = "é".repeat(1000);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(ECHO_LIMIT)), "{clipped}");
        assert!(clipped.ends_with("(1000 characters in all)"), "{clipped}");
        assert!(clipped.chars().count() < ECHO_LIMIT + 40);
        let quoted_long = quoted(&"x".repeat(5000));
        assert!(quoted_long.len() < 260, "{quoted_long}");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }
}
