//! A bounded ring buffer for the tail of a child's stderr.
//!
//! The tail ends up in error messages, logs and the turn ledger, so it is read through the same
//! redaction as everything else iris shows ([`iris_core::redact::redact_text`]: URL passwords,
//! tokens, secret-looking assignments), plus the exact values of the secrets the agent was
//! given ([`StderrTail::hide`]), which an agent may print in any form.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// How much stderr is kept by default: enough for a stack trace or an error banner.
pub const DEFAULT_STDERR_TAIL: usize = 8 * 1024;

/// The last bytes a child wrote to stderr. Cheap to clone; all clones share the buffer.
#[derive(Debug, Clone)]
pub struct StderrTail {
    inner: Arc<Mutex<VecDeque<u8>>>,
    capacity: usize,
    /// Exact values never to show (the agent's environment values).
    hidden: Arc<Mutex<Vec<String>>>,
}

/// Values shorter than this are not hidden by value: masking `1` or `on` in every stderr line
/// would hide everything and protect nothing.
const MIN_HIDDEN_LEN: usize = 6;

impl StderrTail {
    /// An empty tail that keeps at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        StderrTail {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(64 * 1024)))),
            capacity,
            hidden: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Hides every occurrence of each of `values` (at least a few characters long) from
    /// [`StderrTail::text`]: the environment values the agent was started with.
    pub fn hide(&self, values: impl IntoIterator<Item = String>) {
        let mut hidden = self.hidden.lock().unwrap_or_else(|p| p.into_inner());
        hidden.extend(
            values
                .into_iter()
                .filter(|v| v.chars().count() >= MIN_HIDDEN_LEN),
        );
        // Longest first, so a value that contains another is hidden whole.
        hidden.sort_by_key(|v| std::cmp::Reverse(v.len()));
        hidden.dedup();
    }

    /// `text` with the hidden values and anything that looks like a secret redacted.
    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let hidden = self.hidden.lock().unwrap_or_else(|p| p.into_inner());
        for value in hidden.iter() {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), iris_core::redact::REDACTED);
            }
        }
        iris_core::redact::redact_text(&text).into_owned()
    }

    /// Appends `bytes`, dropping the oldest bytes beyond the capacity.
    pub fn push(&self, bytes: &[u8]) {
        let keep = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let mut buf = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let overflow = (buf.len() + keep.len()).saturating_sub(self.capacity);
        let drop = overflow.min(buf.len());
        buf.drain(..drop);
        buf.extend(keep);
    }

    /// The kept bytes as text (invalid UTF-8 replaced), trimmed of trailing whitespace, with
    /// secrets redacted.
    pub fn text(&self) -> String {
        let bytes = {
            let buf = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let (a, b) = buf.as_slices();
            let mut bytes = Vec::with_capacity(buf.len());
            bytes.extend_from_slice(a);
            bytes.extend_from_slice(b);
            bytes
        };
        self.redact(String::from_utf8_lossy(&bytes).trim_end())
    }

    /// Copies `reader` into the tail until EOF or a read error. Also logs each chunk at debug
    /// level, so a child's complaints reach the logs with the session's context.
    pub async fn drain<R: AsyncRead + Unpin>(self, mut reader: R) {
        let mut chunk = vec![0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tracing::debug!(stderr = %self.redact(String::from_utf8_lossy(&chunk[..n]).trim_end()), "agent stderr");
                    self.push(&chunk[..n]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_bytes() {
        let tail = StderrTail::new(8);
        tail.push(b"hello ");
        tail.push(b"world");
        assert_eq!(tail.text(), "lo world");
        tail.push(b"0123456789abcdef");
        assert_eq!(tail.text(), "89abcdef");
    }

    #[test]
    fn secrets_never_leave_the_tail() {
        let tail = StderrTail::new(4096);
        tail.hide(["s3cr3t-value".to_owned(), "on".to_owned()]);
        tail.push(b"FATAL: could not connect to postgres://app:PASSWORD@db:5432/app\n");
        tail.push(b"the key is s3cr3t-value, turn it on\n");
        let text = tail.text();
        assert!(!text.contains("PASSWORD"), "{text}");
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(
            text.contains("postgres://app:<redacted>@db:5432/app"),
            "{text}"
        );
        assert!(
            text.contains("turn it on"),
            "short values are not hidden: {text}"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let tail = StderrTail::new(16);
        tail.push(&[b'o', b'k', 0xff, b'\n']);
        assert_eq!(tail.text(), "ok\u{fffd}");
    }
}
