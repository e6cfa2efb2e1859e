//! Arbitrary bytes through the stream-json line framer and decoder: nothing may panic, the
//! framer must stay within its memory bound, and the async `Decoder` must agree with the
//! framer + `decode_line` pipeline.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use iris_agent::codec::{CodecError, DecodeStats, Decoder, LineFramer, decode_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the chunk size and the line limit, so both short chunks and
    // over-long lines are exercised.
    let (chunk, limit, input) = match data {
        [a, b, rest @ ..] => (usize::from(*a) % 97 + 1, usize::from(*b) * 16, rest),
        _ => (1, 64, data),
    };

    // The synchronous pipeline, chunk by chunk.
    let mut framer = LineFramer::with_max_line(limit);
    let mut stats = DecodeStats::default();
    let mut sync_events = Vec::new();
    let mut sync_too_long = false;
    'outer: for piece in input.chunks(chunk) {
        framer.push(piece);
        assert!(
            framer.buffered() <= limit + chunk,
            "framer buffered past its bound"
        );
        while let Some(line) = framer.next_line() {
            match line {
                Ok(line) => {
                    assert!(line.len() <= limit);
                    if let Ok(Some(event)) = decode_line(line, &mut stats) {
                        sync_events.push(event);
                    }
                }
                Err(_) => {
                    sync_too_long = true;
                    break 'outer;
                }
            }
        }
    }
    if !sync_too_long {
        let _ = framer.finish();
    }

    // The async decoder over the same bytes, in its own chunk size. A `&[u8]` reader is always
    // ready, so polling once with a no-op waker completes every call without a runtime.
    let mut decoder = Decoder::with_max_line(input, limit);
    let mut async_events = Vec::new();
    let mut async_too_long = false;
    loop {
        let mut next = pin!(decoder.next());
        let Poll::Ready(result) = next.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        else {
            panic!("a decoder over a byte slice must never be pending");
        };
        match result {
            Ok(Some(event)) => async_events.push(event),
            Ok(None) => break,
            Err(CodecError::Malformed { .. }) => {}
            Err(CodecError::LineTooLong { .. }) => {
                async_too_long = true;
                break;
            }
            Err(error) => panic!("unexpected error from a byte slice: {error}"),
        }
    }
    // However the input is chunked, the same lines come out before the first over-long one.
    assert_eq!(sync_too_long, async_too_long);
    assert_eq!(sync_events, async_events);

    // Every event serializes, and decodes back to itself.
    for decoded in &async_events {
        let Ok(json) = serde_json::to_string(&decoded.event) else {
            panic!("an event failed to serialize: {}", decoded.raw);
        };
        let mut stats = DecodeStats::default();
        let again = decode_line(json.as_bytes(), &mut stats);
        assert!(
            matches!(again, Ok(Some(ref d)) if d.event == decoded.event),
            "{} did not round-trip through {json}",
            decoded.raw
        );
    }
});
