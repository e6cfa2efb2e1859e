//! Line framing of the agent's stdout: chunks of any size in, complete lines out.

use std::fmt;

/// The default longest line, in bytes, that [`LineFramer`] accepts: 64 MiB.
///
/// The CLI prints one JSON object per line, and a single `assistant` or `user` event can carry a
/// large tool input or tool result, so the limit is generous; it exists so that a faulty process
/// cannot make the supervisor buffer without bound.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024 * 1024;

/// A framing failure. It is fatal: the framer is poisoned and the process is treated as faulty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A line grew past the configured limit before its newline arrived.
    #[error(
        "the agent printed a line longer than {limit} bytes ({len_so_far} bytes so far without a newline); the process is treated as faulty"
    )]
    LineTooLong {
        /// The configured maximum line length, in bytes.
        limit: usize,
        /// How many bytes of the line had arrived when the limit was found exceeded.
        len_so_far: usize,
    },
}

/// Bytes left after the last newline when the stream ended: a line cut short, usually because
/// the process was killed mid-write. Not an error; it is reported so it can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedTail {
    /// How many bytes the unfinished line had.
    pub len: usize,
}

impl fmt::Display for TruncatedTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the output ended with {} bytes of an unfinished line",
            self.len
        )
    }
}

/// Reassembles newline-terminated lines from byte chunks of arbitrary size.
///
/// Feed it with [`push`](Self::push) and drain it with [`next_line`](Self::next_line) until
/// that returns `None`; at end of input call [`finish`](Self::finish). A trailing `\r` is
/// stripped from every line.
///
/// A line longer than the limit is detected as soon as more than `limit` bytes of it have been
/// pushed, not when its newline arrives, and its bytes are not kept, so memory stays bounded by
/// the limit plus the size of one pushed chunk. The error comes out of `next_line` after every
/// complete line that preceded the long one; from then on the framer is poisoned: it drops
/// whatever is pushed and `next_line` returns the same error on every call.
///
/// Work is linear in the input: the search for a newline resumes where the previous one
/// stopped, so a long line arriving in many small chunks is scanned once.
#[derive(Debug, Clone)]
pub struct LineFramer {
    /// Buffered bytes; `buf[start..]` is not yet consumed.
    buf: Vec<u8>,
    /// The first unconsumed byte.
    start: usize,
    /// `buf[start..scan]` is known to contain no newline.
    scan: usize,
    /// Length of the trailing bytes of `buf` after its last newline (the line being received).
    partial_len: usize,
    /// The line being received has exceeded the limit; its bytes were dropped.
    overflow: Option<usize>,
    /// Set once the overflow error has been returned.
    poisoned: Option<FrameError>,
    max_line: usize,
}

impl Default for LineFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineFramer {
    /// A framer with the [`DEFAULT_MAX_LINE`] limit.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A framer that rejects lines longer than `max_line` bytes (not counting the newline).
    pub fn with_max_line(max_line: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            start: 0,
            scan: 0,
            partial_len: 0,
            overflow: None,
            poisoned: None,
            max_line,
        }
    }

    /// The configured maximum line length, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The error that poisoned this framer, if one did.
    pub fn poisoned(&self) -> Option<&FrameError> {
        self.poisoned.as_ref()
    }

    /// How many bytes are buffered and not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends a chunk of input. Lines completed by it become available from
    /// [`next_line`](Self::next_line).
    pub fn push(&mut self, chunk: &[u8]) {
        if self.poisoned.is_some() || self.overflow.is_some() {
            // The stream is already faulty; nothing after the over-long line is trusted.
            return;
        }
        self.compact();
        let (complete, partial) = match memrchr_newline(chunk) {
            Some(i) => chunk.split_at(i + 1),
            None => (&chunk[..0], chunk),
        };
        let new_partial_len = if complete.is_empty() {
            self.partial_len + partial.len()
        } else {
            partial.len()
        };
        if new_partial_len > self.max_line {
            if complete.is_empty() {
                // The whole buffered tail belongs to the over-long line: drop it.
                self.buf.truncate(self.buf.len() - self.partial_len);
                self.scan = self.scan.min(self.buf.len());
            } else {
                self.buf.extend_from_slice(complete);
            }
            self.partial_len = 0;
            self.overflow = Some(new_partial_len);
        } else {
            self.buf.extend_from_slice(chunk);
            self.partial_len = new_partial_len;
        }
    }

    /// The next complete line, without its `\n` and without a trailing `\r`.
    ///
    /// `None` means more input is needed. `Some(Err(_))` means a line exceeded the limit; the
    /// framer is then poisoned and returns the same error on every later call.
    pub fn next_line(&mut self) -> Option<Result<&[u8], FrameError>> {
        if let Some(error) = &self.poisoned {
            return Some(Err(error.clone()));
        }
        let found = memchr_newline(&self.buf[self.scan..]).map(|i| self.scan + i);
        match found {
            Some(end) => {
                let begin = self.start;
                self.start = end + 1;
                self.scan = self.start;
                if end - begin > self.max_line {
                    // A complete line that arrived in one chunk can still be too long.
                    return Some(Err(self.poison(end - begin)));
                }
                let mut line = &self.buf[begin..end];
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                Some(Ok(line))
            }
            None => {
                self.scan = self.buf.len();
                let len_so_far = self.overflow?;
                Some(Err(self.poison(len_so_far)))
            }
        }
    }

    /// Ends the input: reports and discards an unfinished last line, if there is one.
    ///
    /// Complete lines still buffered stay available from [`next_line`](Self::next_line); call
    /// this after draining them. Nothing is reported for a poisoned framer, whose error says
    /// more.
    pub fn finish(&mut self) -> Option<TruncatedTail> {
        if self.poisoned.is_some() || self.overflow.is_some() || self.partial_len == 0 {
            return None;
        }
        let len = self.partial_len;
        self.buf.truncate(self.buf.len() - len);
        self.scan = self.scan.min(self.buf.len());
        self.partial_len = 0;
        Some(TruncatedTail { len })
    }

    fn poison(&mut self, len_so_far: usize) -> FrameError {
        let error = FrameError::LineTooLong {
            limit: self.max_line,
            len_so_far,
        };
        self.poisoned = Some(error.clone());
        self.overflow = None;
        self.buf = Vec::new();
        self.start = 0;
        self.scan = 0;
        self.partial_len = 0;
        error
    }

    /// Drops consumed bytes once they make up at least half of the buffer, so each byte is
    /// moved a bounded number of times however the caller interleaves pushes and reads.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
        } else if self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
        } else {
            return;
        }
        self.scan -= self.start;
        self.start = 0;
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn memrchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(framer: &mut LineFramer) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        while let Some(line) = framer.next_line() {
            lines.push(line.unwrap().to_vec());
        }
        lines
    }

    #[test]
    fn reassembles_lines_split_across_chunks() {
        let mut framer = LineFramer::new();
        framer.push(b"{\"a\":");
        assert!(framer.next_line().is_none());
        framer.push(b"1}\n{\"b\"");
        assert_eq!(drain(&mut framer), vec![b"{\"a\":1}".to_vec()]);
        framer.push(b":2}\nx\n\n");
        assert_eq!(
            drain(&mut framer),
            vec![b"{\"b\":2}".to_vec(), b"x".to_vec(), b"".to_vec()]
        );
        assert_eq!(framer.finish(), None);
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn strips_one_trailing_carriage_return() {
        let mut framer = LineFramer::new();
        framer.push(b"a\r\nb\r\r\n\r\nc\rd\n");
        assert_eq!(
            drain(&mut framer),
            vec![
                b"a".to_vec(),
                b"b\r".to_vec(),
                b"".to_vec(),
                b"c\rd".to_vec()
            ]
        );
    }

    #[test]
    fn carriage_return_split_from_its_newline() {
        let mut framer = LineFramer::new();
        framer.push(b"abc\r");
        assert!(framer.next_line().is_none());
        framer.push(b"\n");
        assert_eq!(drain(&mut framer), vec![b"abc".to_vec()]);
    }

    #[test]
    fn finish_reports_an_unfinished_tail() {
        let mut framer = LineFramer::new();
        framer.push(b"done\n{\"type\":\"res");
        assert_eq!(drain(&mut framer), vec![b"done".to_vec()]);
        assert_eq!(framer.finish(), Some(TruncatedTail { len: 12 }));
        assert_eq!(framer.finish(), None);
        assert!(framer.next_line().is_none());
    }

    #[test]
    fn finish_keeps_complete_lines_available() {
        let mut framer = LineFramer::new();
        framer.push(b"one\ntwo\nthr");
        assert_eq!(framer.finish(), Some(TruncatedTail { len: 3 }));
        assert_eq!(drain(&mut framer), vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut framer = LineFramer::with_max_line(4);
        framer.push(b"abcd");
        assert!(framer.next_line().is_none());
        framer.push(b"\nab\r\n");
        assert_eq!(drain(&mut framer), vec![b"abcd".to_vec(), b"ab".to_vec()]);
    }

    #[test]
    fn over_long_line_is_detected_before_its_newline_without_buffering_it() {
        let mut framer = LineFramer::with_max_line(100);
        framer.push(b"first\n");
        let chunk = [b'x'; 30];
        for _ in 0..3 {
            framer.push(&chunk);
        }
        // 90 bytes so far: still fine. Complete lines come out first.
        assert_eq!(drain(&mut framer), vec![b"first".to_vec()]);
        framer.push(&chunk);
        // 120 > 100: the bytes of the long line are gone already.
        assert!(framer.buffered() <= 100);
        let err = framer.next_line().unwrap().unwrap_err();
        assert_eq!(
            err,
            FrameError::LineTooLong {
                limit: 100,
                len_so_far: 120
            }
        );
        // Poisoned: input is dropped and the error repeats.
        for _ in 0..1000 {
            framer.push(&chunk);
            framer.push(b"\nok\n");
        }
        assert_eq!(framer.buffered(), 0);
        assert_eq!(framer.next_line().unwrap().unwrap_err(), err);
        assert_eq!(framer.poisoned(), Some(&err));
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn lines_before_an_over_long_line_in_the_same_chunk_come_out_first() {
        let mut framer = LineFramer::with_max_line(5);
        framer.push(b"ab\ncd\nefghijkl");
        assert_eq!(framer.next_line().unwrap().unwrap(), b"ab");
        assert_eq!(framer.next_line().unwrap().unwrap(), b"cd");
        assert_eq!(
            framer.next_line().unwrap().unwrap_err(),
            FrameError::LineTooLong {
                limit: 5,
                len_so_far: 8
            }
        );
    }

    #[test]
    fn over_long_complete_line_in_one_chunk_is_an_error() {
        let mut framer = LineFramer::with_max_line(5);
        framer.push(b"ok\n0123456789\nafter\n");
        assert_eq!(framer.next_line().unwrap().unwrap(), b"ok");
        assert_eq!(
            framer.next_line().unwrap().unwrap_err(),
            FrameError::LineTooLong {
                limit: 5,
                len_so_far: 10
            }
        );
        assert!(framer.next_line().unwrap().is_err());
    }

    #[test]
    fn long_line_in_tiny_chunks_is_linear() {
        // 4 MiB in 1-byte pushes would take ages if each push rescanned the line.
        let mut framer = LineFramer::new();
        let len = 4 * 1024 * 1024;
        for _ in 0..len {
            framer.push(b"y");
            assert!(framer.next_line().is_none());
        }
        framer.push(b"\n");
        let line = framer.next_line().unwrap().unwrap();
        assert_eq!(line.len(), len);
    }

    #[test]
    fn buffer_is_compacted_when_lines_are_read_one_per_push() {
        let mut framer = LineFramer::new();
        let mut expected = (0..20_000).map(|i| format!("line {i}"));
        for i in 0..10_000 {
            framer.push(format!("line {}\nline {}\n", 2 * i, 2 * i + 1).as_bytes());
            let line = framer.next_line().unwrap().unwrap().to_vec();
            assert_eq!(Some(line), expected.next().map(String::into_bytes));
            // At most as many consumed bytes as pending ones are kept (plus one push).
            assert!(framer.buf.len() <= 2 * framer.buffered() + 32);
        }
        // Half the lines are still pending, in order.
        let rest = drain(&mut framer);
        assert_eq!(rest.len(), 10_000);
        assert!(rest.into_iter().eq(expected.map(String::into_bytes)));
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_lines(
            lines in proptest::collection::vec("[^\n\r]{0,40}", 0..20),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            crlf in any::<bool>(),
        ) {
            let ending = if crlf { "\r\n" } else { "\n" };
            let stream: String = lines.iter().map(|l| format!("{l}{ending}")).collect();
            let bytes = stream.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let mut framer = LineFramer::new();
            let mut got = Vec::new();
            for pair in points.windows(2) {
                framer.push(&bytes[pair[0]..pair[1]]);
                while let Some(line) = framer.next_line() {
                    got.push(String::from_utf8(line.unwrap().to_vec()).unwrap());
                }
            }
            prop_assert_eq!(framer.finish(), None);
            prop_assert_eq!(got, lines);
        }

        #[test]
        fn never_buffers_much_past_the_limit(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a')], 0..400),
            chunk in 1usize..50,
            limit in 0usize..40,
        ) {
            let mut framer = LineFramer::with_max_line(limit);
            let mut expected = Vec::new();
            let mut too_long = false;
            for line in data.split(|&b| b == b'\n') {
                expected.push(line.len());
            }
            // The last piece is the unfinished tail, not a line.
            let tail = expected.pop().unwrap_or(0);
            let mut got = Vec::new();
            for piece in data.chunks(chunk) {
                framer.push(piece);
                prop_assert!(framer.buffered() <= limit + chunk);
                while let Some(line) = framer.next_line() {
                    match line {
                        Ok(line) => got.push(line.len()),
                        Err(FrameError::LineTooLong { limit: l, len_so_far }) => {
                            prop_assert_eq!(l, limit);
                            prop_assert!(len_so_far > limit);
                            too_long = true;
                            break;
                        }
                    }
                }
                if too_long {
                    break;
                }
            }
            if !too_long && tail > limit {
                // The tail exceeded the limit: reported on the next read.
                too_long = framer.next_line().is_some_and(|r| r.is_err());
            }
            let first_bad = expected.iter().position(|&len| len > limit);
            match first_bad {
                Some(i) => {
                    prop_assert!(too_long);
                    prop_assert_eq!(&got[..], &expected[..i]);
                }
                None => {
                    prop_assert_eq!(too_long, tail > limit);
                    prop_assert_eq!(&got[..], &expected[..]);
                }
            }
        }
    }
}
