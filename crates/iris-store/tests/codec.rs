//! The record and turn encodings: round trips, and decoding what version 1 wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::pair;
use iris_core::{
    AgentProcessMark, ErrorCode, ProcessState, RequestId, SessionId, SessionRecord, SessionStatus,
    Timestamp, TurnFailure, TurnId, TurnRecord, TurnStatus, UsageTotals,
};
use iris_store::codec::{
    DecodeError, RECORD_VERSION, TURN_VERSION, decode_record, decode_turn, encode_record,
    encode_turn,
};
use proptest::prelude::*;

/// `fixtures/record_v1.bin` holds exactly this record, as written by encoding version 1.
fn fixture_record() -> SessionRecord {
    let mut r = SessionRecord::new(
        pair("frontend", "backend-api"),
        SessionId::parse("f47ac10b-58cc-4372-a567-0e02b2c3d479").unwrap(),
        Timestamp::from_millis(1_764_046_586_123),
    );
    r.id = 42;
    r.last_used_at = Timestamp::from_millis(1_764_046_999_000);
    r.message_count = 17;
    r.status = SessionStatus::CompactPending;
    r.process_state = ProcessState::Processing;
    r.current_turn = Some(TurnId::from(
        uuid::Uuid::parse_str("019abcde-0123-7456-89ab-cdef01234567").unwrap(),
    ));
    r.last_response_at = Some(Timestamp::from_millis(1_764_046_998_500));
    r.launch_command = Some("claude '--resume=f47ac10b-58cc-4372-a567-0e02b2c3d479'".into());
    r.team_config_snapshot = Some("{\n  \"path\": \"/srv/backend\"\n}".into());
    r.agent_session_id = Some("0b7e2a52-5f59-4c4e-9a8e-1c2d3e4f5a6b".into());
    r.agent_process = Some(AgentProcessMark {
        pid: 31337,
        pgid: 31337,
        start_ticks: Some(123_456_789),
    });
    r.usage = UsageTotals {
        cost_usd: 0.125,
        input_tokens: 1_000,
        output_tokens: 2_000,
        cache_creation_input_tokens: 300,
        cache_read_input_tokens: 4_000,
    };
    r.failed_turns = 2;
    r.interrupted_turns = 1;
    r
}

const FIXTURE: &[u8] = include_bytes!("fixtures/record_v1.bin");

#[test]
fn decodes_a_record_written_by_version_1() {
    assert_eq!(FIXTURE[0], 1);
    assert_eq!(decode_record(FIXTURE).unwrap(), fixture_record());
}

#[test]
fn version_1_encoding_is_unchanged() {
    // If this fails, the record's wire format changed: add a new encoding version and keep a
    // decoder for version 1 instead of editing the fixture.
    assert_eq!(RECORD_VERSION, 1);
    assert_eq!(encode_record(&fixture_record()).unwrap(), FIXTURE);
}

#[test]
fn unknown_versions_and_garbage_are_typed_errors() {
    let mut future = FIXTURE.to_vec();
    future[0] = 9;
    assert_eq!(
        decode_record(&future),
        Err(DecodeError::UnknownVersion {
            found: 9,
            supported: 1
        })
    );
    assert_eq!(decode_record(&[]), Err(DecodeError::Empty));
    assert!(matches!(
        decode_record(&FIXTURE[..FIXTURE.len() / 2]),
        Err(DecodeError::Malformed(_))
    ));
}

/// `fixtures/turn_v1.bin` holds exactly this turn, as written by turn encoding version 1.
fn fixture_turn() -> TurnRecord {
    let mut t = TurnRecord::queued(
        SessionId::parse("f47ac10b-58cc-4372-a567-0e02b2c3d479").unwrap(),
        7,
        TurnId::from(uuid::Uuid::parse_str("019abcde-0123-7456-89ab-cdef01234567").unwrap()),
        common::team("frontend"),
        "Résumé the failing test, please: ✓ or ✗?",
        12,
        Timestamp::from_millis(1_764_046_586_123),
    );
    t.status = TurnStatus::Failed;
    t.started_at = Some(Timestamp::from_millis(1_764_046_586_200));
    t.finished_at = Some(Timestamp::from_millis(1_764_046_590_000));
    t.set_text("partial answer — cut", 17);
    t.subtype = Some("error_during_execution".into());
    t.is_error = true;
    t.usage = UsageTotals {
        cost_usd: 0.0625,
        input_tokens: 120,
        output_tokens: 45,
        cache_creation_input_tokens: 6,
        cache_read_input_tokens: 7_000,
    };
    t.duration_ms = Some(3_800);
    t.num_turns = Some(3);
    t.error = Some(TurnFailure::new(
        ErrorCode::Timeout,
        "the agent sent nothing for 120s",
    ));
    t
}

const TURN_FIXTURE: &[u8] = include_bytes!("fixtures/turn_v1.bin");

#[test]
fn decodes_a_turn_written_by_version_1() {
    assert_eq!(TURN_FIXTURE[0], 1);
    let turn = fixture_turn();
    assert!(turn.message_truncated && turn.text_truncated);
    assert_eq!(decode_turn(TURN_FIXTURE).unwrap(), turn);
}

/// `fixtures/turn_v2.bin` holds the version-1 fixture's turn with `history_lost` set, as
/// written by turn encoding version 2.
fn fixture_turn_v2() -> TurnRecord {
    TurnRecord {
        history_lost: true,
        ..fixture_turn()
    }
}

const TURN_V2_FIXTURE: &[u8] = include_bytes!("fixtures/turn_v2.bin");

#[test]
fn decodes_a_turn_written_by_version_2() {
    assert_eq!(TURN_V2_FIXTURE[0], 2);
    assert_eq!(decode_turn(TURN_V2_FIXTURE).unwrap(), fixture_turn_v2());
}

#[test]
fn a_version_1_turn_reads_as_history_kept() {
    assert!(!decode_turn(TURN_FIXTURE).unwrap().history_lost);
}

/// `fixtures/turn_v3.bin` holds the version-2 fixture's turn with a request id, as written by
/// turn encoding version 3.
fn fixture_turn_v3() -> TurnRecord {
    TurnRecord {
        request_id: Some(RequestId::from(
            uuid::Uuid::parse_str("019abcde-4567-7890-8abc-def012345678").unwrap(),
        )),
        ..fixture_turn_v2()
    }
}

const TURN_V3_FIXTURE: &[u8] = include_bytes!("fixtures/turn_v3.bin");

#[test]
fn a_turn_before_version_3_reads_without_a_request_id() {
    assert_eq!(decode_turn(TURN_FIXTURE).unwrap().request_id, None);
    assert_eq!(decode_turn(TURN_V2_FIXTURE).unwrap().request_id, None);
}

#[test]
fn decodes_a_turn_written_by_version_3() {
    assert_eq!(TURN_V3_FIXTURE[0], 3);
    assert_eq!(decode_turn(TURN_V3_FIXTURE).unwrap(), fixture_turn_v3());
}

/// `fixtures/turn_v4.bin` holds the version-3 fixture's turn with its budget warning set, as
/// written by turn encoding version 4.
fn fixture_turn_v4() -> TurnRecord {
    TurnRecord {
        budget_warning: true,
        ..fixture_turn_v3()
    }
}

const TURN_V4_FIXTURE: &[u8] = include_bytes!("fixtures/turn_v4.bin");

#[test]
fn a_turn_before_version_4_reads_without_a_budget_warning() {
    for old in [TURN_FIXTURE, TURN_V2_FIXTURE, TURN_V3_FIXTURE] {
        assert!(!decode_turn(old).unwrap().budget_warning);
    }
}

#[test]
fn turn_version_4_encoding_is_unchanged() {
    // If this fails, the turn's wire format changed: add a new turn encoding version and keep a
    // decoder for the older ones instead of editing the fixtures.
    assert_eq!(TURN_VERSION, 4);
    assert_eq!(TURN_V4_FIXTURE[0], 4);
    assert_eq!(encode_turn(&fixture_turn_v4()).unwrap(), TURN_V4_FIXTURE);
    assert_eq!(decode_turn(TURN_V4_FIXTURE).unwrap(), fixture_turn_v4());
    // Each version is the one before with one field appended (a 0 byte at its default).
    for (older, fixture, missing) in [
        (fixture_turn_v3(), TURN_V3_FIXTURE, 1),
        (fixture_turn_v2(), TURN_V2_FIXTURE, 2),
        (fixture_turn(), TURN_FIXTURE, 3),
    ] {
        let mut as_v4 = vec![4];
        as_v4.extend_from_slice(&fixture[1..]);
        as_v4.extend(std::iter::repeat_n(0, missing));
        assert_eq!(encode_turn(&older).unwrap(), as_v4);
    }
}

#[test]
fn unknown_turn_versions_are_typed_errors() {
    let mut future = TURN_FIXTURE.to_vec();
    future[0] = 9;
    assert_eq!(
        decode_turn(&future),
        Err(DecodeError::UnknownVersion {
            found: 9,
            supported: 4
        })
    );
    assert_eq!(decode_turn(&[]), Err(DecodeError::Empty));
    assert!(matches!(
        decode_turn(&TURN_FIXTURE[..TURN_FIXTURE.len() / 2]),
        Err(DecodeError::Malformed(_))
    ));
}

fn arb_turn() -> impl Strategy<Value = TurnRecord> {
    (
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            any::<u128>(),
            ".{0,40}",
            0usize..64,
            0..TurnStatus::ALL.len(),
            any::<u64>(),
        ),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(".{0,40}"),
            proptest::option::of("[a-z_]{0,20}"),
            any::<bool>(),
            (0.0f64..1e6, any::<[u64; 4]>()),
            proptest::option::of(any::<(u64, u32)>()),
            proptest::option::of((0..ErrorCode::ALL.len(), ".{0,40}")),
        ),
    )
        .prop_map(
            |(
                (session, seq, turn_id, message, limit, status, queued),
                (started, text, subtype, is_error, (cost, tokens), stats, error),
            )| {
                let session =
                    SessionId::from_uuid(uuid::Builder::from_random_bytes(session).into_uuid())
                        .unwrap();
                let mut t = TurnRecord::queued(
                    session,
                    seq,
                    TurnId::from(uuid::Uuid::from_u128(turn_id)),
                    common::team("alpha"),
                    &message,
                    limit,
                    Timestamp::from_millis(queued),
                );
                t.status = TurnStatus::ALL[status];
                t.started_at = started.map(Timestamp::from_millis);
                t.finished_at = started.map(|s| Timestamp::from_millis(s / 2));
                if let Some(text) = text {
                    t.set_text(&text, limit);
                }
                t.subtype = subtype;
                t.is_error = is_error;
                t.usage = UsageTotals {
                    cost_usd: cost,
                    input_tokens: tokens[0],
                    output_tokens: tokens[1],
                    cache_creation_input_tokens: tokens[2],
                    cache_read_input_tokens: tokens[3],
                };
                t.duration_ms = stats.map(|(d, _)| d);
                t.num_turns = stats.map(|(_, n)| n);
                t.error =
                    error.map(|(code, message)| TurnFailure::new(ErrorCode::ALL[code], message));
                // Derived rather than drawn: the tuple strategy is at its arity limit.
                t.history_lost = is_error && seq % 2 == 0;
                t.request_id =
                    (seq % 3 == 0).then(|| RequestId::from(uuid::Uuid::from_u128(turn_id ^ 1)));
                t.budget_warning = queued % 5 == 0;
                t
            },
        )
}

fn arb_record() -> impl Strategy<Value = SessionRecord> {
    (
        (
            "[a-z][a-z0-9_@.-]{0,20}",
            "[a-z][a-z0-9_@.-]{0,20}",
            any::<[u8; 16]>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            0..SessionStatus::ALL.len(),
            0..ProcessState::ALL.len(),
        ),
        (
            proptest::option::of(any::<u128>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(".{0,40}"),
            proptest::option::of(".{0,40}"),
            proptest::option::of(any::<(u32, u32, Option<u64>)>()),
            (0.0f64..1e6, any::<[u64; 4]>()),
            any::<(u64, u64)>(),
        ),
    )
        .prop_map(
            |(
                (from, to, id, row, created, count, status, process),
                (turn, response, cmd, snap, mark, (cost, tokens), (failed, interrupted)),
            )| {
                let id =
                    SessionId::from_uuid(uuid::Builder::from_random_bytes(id).into_uuid()).unwrap();
                let mut r =
                    SessionRecord::new(pair(&from, &to), id, Timestamp::from_millis(created));
                r.id = row;
                r.message_count = count;
                r.status = SessionStatus::ALL[status];
                r.process_state = ProcessState::ALL[process];
                r.current_turn = turn.map(|t| TurnId::from(uuid::Uuid::from_u128(t)));
                r.last_response_at = response.map(Timestamp::from_millis);
                r.launch_command = cmd;
                r.team_config_snapshot = snap;
                r.agent_process = mark.map(|(pid, pgid, start_ticks)| AgentProcessMark {
                    pid,
                    pgid,
                    start_ticks,
                });
                r.usage = UsageTotals {
                    cost_usd: cost,
                    input_tokens: tokens[0],
                    output_tokens: tokens[1],
                    cache_creation_input_tokens: tokens[2],
                    cache_read_input_tokens: tokens[3],
                };
                r.failed_turns = failed;
                r.interrupted_turns = interrupted;
                r
            },
        )
}

proptest! {
    #[test]
    fn records_round_trip(record in arb_record()) {
        let bytes = encode_record(&record).unwrap();
        prop_assert_eq!(decode_record(&bytes).unwrap(), record);
    }

    #[test]
    fn turns_round_trip(turn in arb_turn()) {
        let bytes = encode_turn(&turn).unwrap();
        prop_assert_eq!(decode_turn(&bytes).unwrap(), turn);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_record(&bytes);
        let _ = decode_turn(&bytes);
    }
}

/// Writes the record fixture. Run once, by hand, when a new encoding version is introduced:
/// `IRIS_WRITE_FIXTURE=1 cargo test -p iris-store --test codec write_fixture -- --ignored`.
#[test]
#[ignore = "writes the fixture file; run by hand only"]
fn write_fixture() {
    if std::env::var_os("IRIS_WRITE_FIXTURE").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/record_v1.bin");
        std::fs::write(path, encode_record(&fixture_record()).unwrap()).unwrap();
    }
}

/// Writes the current turn fixture. Run once, by hand, when a new turn encoding version is
/// introduced (after pointing it at the new version's file):
/// `IRIS_WRITE_TURN_FIXTURE=1 cargo test -p iris-store --test codec write_turn_fixture -- --ignored`.
#[test]
#[ignore = "writes the fixture file; run by hand only"]
fn write_turn_fixture() {
    if std::env::var_os("IRIS_WRITE_TURN_FIXTURE").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/turn_v2.bin");
        std::fs::write(path, encode_turn(&fixture_turn_v2()).unwrap()).unwrap();
    }
}
