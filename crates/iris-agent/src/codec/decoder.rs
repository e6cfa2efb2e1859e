//! Decoding lines into events, and the async [`Decoder`] over the child's stdout.

use std::sync::Arc;

use iris_core::{Coded, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::event::{DecodedEvent, Event};
use super::framer::{DEFAULT_MAX_LINE, FrameError, LineFramer};

/// How many bytes of a bad line an error or a log message quotes.
pub const LINE_PREFIX_CHARS: usize = 200;

/// The size of the chunks [`Decoder`] reads.
pub const READ_CHUNK: usize = 64 * 1024;

/// Why the agent's output could not be decoded. Every variant means the process misbehaved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A line exceeded the configured limit. Fatal: the decoder returns it on every later call.
    #[error(
        "the agent printed a line longer than {limit} bytes ({len_so_far} bytes so far without a newline); the process is treated as faulty"
    )]
    LineTooLong {
        /// The configured maximum line length, in bytes.
        limit: usize,
        /// How many bytes of the line had arrived when the limit was found exceeded.
        len_so_far: usize,
    },
    /// A line that starts with `{` is not valid JSON (or not UTF-8). The line is consumed;
    /// decoding can go on with the next one.
    #[error("the agent printed a malformed JSON line ({error}): {line_prefix}")]
    Malformed {
        /// The start of the line (at most [`LINE_PREFIX_CHARS`] characters, invalid UTF-8
        /// replaced).
        line_prefix: String,
        /// What the JSON parser reported.
        error: String,
    },
    /// Reading the agent's stdout failed.
    #[error("cannot read the agent's output: {0}")]
    Io(#[from] std::io::Error),
}

impl From<FrameError> for CodecError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::LineTooLong { limit, len_so_far } => {
                CodecError::LineTooLong { limit, len_so_far }
            }
        }
    }
}

impl Coded for CodecError {
    fn code(&self) -> ErrorCode {
        match self {
            CodecError::LineTooLong { .. } | CodecError::Malformed { .. } | CodecError::Io(_) => {
                ErrorCode::ProcessError
            }
        }
    }
}

/// Counts of what decoding passed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Events returned, `Unknown` ones included.
    pub events: u64,
    /// Empty or whitespace-only lines skipped.
    pub skipped_blank: u64,
    /// Lines skipped because they do not start with `{` (debug output such as `[SandboxDebug]`).
    pub skipped_non_json: u64,
    /// Events of a known `type` whose fields did not fit the typed shape, returned as
    /// [`Event::Unknown`].
    pub undecodable_known: u64,
    /// Lines that start with `{` but are not valid JSON (each one also returned as an error).
    pub malformed: u64,
    /// Bytes of an unfinished last line dropped at end of output (0 if the output ended cleanly).
    pub truncated_tail_bytes: u64,
}

/// Decodes one framed line (without its newline).
///
/// Returns `Ok(None)` for a line that is skipped (blank, or not starting with `{`), counting it
/// in `stats`. Never panics, whatever the bytes.
pub fn decode_line(
    line: &[u8],
    stats: &mut DecodeStats,
) -> Result<Option<DecodedEvent>, CodecError> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        stats.skipped_blank += 1;
        return Ok(None);
    }
    if trimmed[0] != b'{' {
        stats.skipped_non_json += 1;
        tracing::debug!(
            line = %line_prefix(trimmed),
            "skipping a non-JSON line of agent output"
        );
        return Ok(None);
    }
    let malformed = |stats: &mut DecodeStats, error: String| {
        stats.malformed += 1;
        CodecError::Malformed {
            line_prefix: line_prefix(trimmed),
            error,
        }
    };
    let text = match std::str::from_utf8(trimmed) {
        Ok(text) => text,
        Err(error) => return Err(malformed(stats, format!("invalid UTF-8: {error}"))),
    };
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => return Err(malformed(stats, error.to_string())),
    };
    let (event, misfit) = Event::try_from_value(value);
    if let Some(error) = misfit {
        stats.undecodable_known += 1;
        tracing::debug!(
            kind = event.kind().unwrap_or_default(),
            %error,
            line = %line_prefix(trimmed),
            "an agent event of a known type has an unexpected shape; passing it on as unknown"
        );
    }
    stats.events += 1;
    Ok(Some(DecodedEvent {
        event,
        raw: Arc::from(text),
    }))
}

/// The first [`LINE_PREFIX_CHARS`] characters of a line, lossily decoded.
fn line_prefix(line: &[u8]) -> String {
    // A character is at most 4 bytes; cut the bytes first so a huge line is not decoded whole.
    let cut = &line[..line.len().min(LINE_PREFIX_CHARS * 4)];
    let text = String::from_utf8_lossy(cut);
    match text.char_indices().nth(LINE_PREFIX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None if cut.len() < line.len() => format!("{text}…"),
        None => text.into_owned(),
    }
}

/// Reads stream-json events from an agent's stdout.
///
/// Lines are framed by a [`LineFramer`] (see there for the length limit), blank and non-JSON
/// lines are skipped and counted, and each JSON line is decoded into a [`DecodedEvent`].
///
/// [`next`](Self::next) is cancel safe: if its future is dropped before it completes, no bytes
/// or events are lost, so it can be used in `tokio::select!`.
#[derive(Debug)]
pub struct Decoder<R> {
    reader: R,
    framer: LineFramer,
    chunk: Box<[u8]>,
    stats: DecodeStats,
    eof: bool,
}

impl<R: AsyncRead + Unpin> Decoder<R> {
    /// A decoder with the [`DEFAULT_MAX_LINE`] limit.
    pub fn new(reader: R) -> Self {
        Self::with_max_line(reader, DEFAULT_MAX_LINE)
    }

    /// A decoder that rejects lines longer than `max_line` bytes.
    pub fn with_max_line(reader: R, max_line: usize) -> Self {
        Decoder {
            reader,
            framer: LineFramer::with_max_line(max_line),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            stats: DecodeStats::default(),
            eof: false,
        }
    }

    /// The next event, or `None` at end of output.
    ///
    /// A [`CodecError::Malformed`] line is consumed, so calling again goes on with the next
    /// line. [`CodecError::LineTooLong`] is final and is returned again on every later call.
    /// An unfinished last line at end of output is dropped, logged and counted in
    /// [`DecodeStats::truncated_tail_bytes`].
    pub async fn next(&mut self) -> Result<Option<DecodedEvent>, CodecError> {
        loop {
            while let Some(line) = self.framer.next_line() {
                if let Some(event) = decode_line(line?, &mut self.stats)? {
                    return Ok(Some(event));
                }
            }
            if self.eof {
                return Ok(None);
            }
            let read = self.reader.read(&mut self.chunk).await?;
            if read == 0 {
                self.eof = true;
                if let Some(tail) = self.framer.finish() {
                    self.stats.truncated_tail_bytes += tail.len as u64;
                    tracing::warn!(
                        bytes = tail.len,
                        "the agent's output ended in the middle of a line; dropping the unfinished line"
                    );
                }
            } else {
                self.framer.push(&self.chunk[..read]);
            }
        }
    }

    /// What has been skipped and decoded so far.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Whether end of output has been read.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// The underlying reader. Reading from it directly loses the framing.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_cut_at_200_characters() {
        let long = "é".repeat(500);
        let prefix = line_prefix(long.as_bytes());
        assert_eq!(prefix.chars().count(), LINE_PREFIX_CHARS + 1);
        assert!(prefix.ends_with('…'));
        assert_eq!(line_prefix(b"{\"a\""), "{\"a\"");
        assert_eq!(line_prefix(b"{\xff}"), "{\u{fffd}}");
        let exactly = "x".repeat(LINE_PREFIX_CHARS);
        assert_eq!(line_prefix(exactly.as_bytes()), exactly);
    }

    #[test]
    fn decode_line_counts_what_it_skips() {
        let mut stats = DecodeStats::default();
        assert!(decode_line(b"", &mut stats).unwrap().is_none());
        assert!(decode_line(b"  \t ", &mut stats).unwrap().is_none());
        assert!(
            decode_line(b"[SandboxDebug] starting", &mut stats)
                .unwrap()
                .is_none()
        );
        assert!(decode_line(b"[1,2]", &mut stats).unwrap().is_none());
        let event = decode_line(b"  {\"type\":\"rate_limit_event\"}  ", &mut stats)
            .unwrap()
            .unwrap();
        assert_eq!(&*event.raw, "{\"type\":\"rate_limit_event\"}");
        assert_eq!(
            stats,
            DecodeStats {
                events: 1,
                skipped_blank: 2,
                skipped_non_json: 2,
                ..DecodeStats::default()
            }
        );
    }

    #[test]
    fn invalid_utf8_in_a_json_line_is_malformed() {
        let mut stats = DecodeStats::default();
        let err = decode_line(b"{\"text\":\"\xff\"}", &mut stats).unwrap_err();
        assert!(matches!(err, CodecError::Malformed { .. }), "{err}");
        assert_eq!(err.code(), ErrorCode::ProcessError);
        assert_eq!(stats.malformed, 1);
    }
}
