//! A bounded ring buffer for the tail of a child's stderr.

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
}

impl StderrTail {
    /// An empty tail that keeps at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        StderrTail {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(64 * 1024)))),
            capacity,
        }
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

    /// The kept bytes as text (invalid UTF-8 replaced), trimmed of trailing whitespace.
    pub fn text(&self) -> String {
        let buf = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = buf.as_slices();
        let mut bytes = Vec::with_capacity(buf.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }

    /// Copies `reader` into the tail until EOF or a read error. Also logs each chunk at debug
    /// level, so a child's complaints reach the logs with the session's context.
    pub async fn drain<R: AsyncRead + Unpin>(self, mut reader: R) {
        let mut chunk = vec![0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tracing::debug!(stderr = %String::from_utf8_lossy(&chunk[..n]).trim_end(), "agent stderr");
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
    fn invalid_utf8_is_replaced_not_fatal() {
        let tail = StderrTail::new(16);
        tail.push(&[b'o', b'k', 0xff, b'\n']);
        assert_eq!(tail.text(), "ok\u{fffd}");
    }
}
