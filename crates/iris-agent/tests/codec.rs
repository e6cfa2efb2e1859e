//! The stream-json codec against the event shapes of the protocol reference
//! (`shared/reference/claude-cli-protocol.md` §1.3 and §1.4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use iris_agent::codec::{
    CodecError, ContentBlock, ControlRequestBody, ControlResponseSubtype, DecodeStats, Decoder,
    Event, HostRequest, LineFramer, PermissionDecision, SystemEvent, Usage, control_request,
    control_response_error, control_response_success, decode_line, permission_response,
    user_message,
};
use iris_core::{Coded, ErrorCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const INIT: &str = r#"{"type":"system","subtype":"init","uuid":"6f1c1c43-0d6f-4f7e-9d7a-0b9a3c1e2f10","session_id":"0b0c3f5e-7a44-4a39-9a53-1d2f9f6c1b2a","apiKeySource":"none","cwd":"/home/u/proj","tools":["Task","Bash","Read","mcp__iris__send"],"mcp_servers":[{"name":"iris","status":"connected"}],"model":"claude-sonnet-4-5","permissionMode":"default","slash_commands":["compact","clear"],"output_style":"default","agents":["general-purpose"],"claude_code_version":"2.1.120"}"#;

const ASSISTANT: &str = r#"{"type":"assistant","uuid":"a1","session_id":"s1","parent_tool_use_id":null,"message":{"id":"msg_01","model":"claude-sonnet-4-5","role":"assistant","stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":20,"cache_creation_input_tokens":null,"cache_read_input_tokens":30,"service_tier":"standard"},"content":[{"type":"thinking","thinking":"Let me look.","signature":"sig=="},{"type":"text","text":"First, "},{"type":"tool_use","id":"toolu_01","name":"Bash","input":{"command":"ls -la"}},{"type":"text","text":"then done."},{"type":"redacted_thinking","data":"xyz"}]}}"#;

const USER: &str = r#"{"type":"user","uuid":"u1","session_id":"s1","parent_tool_use_id":null,"message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"total 0","is_error":false}]},"tool_use_result":{"stdout":"total 0"},"origin":{"kind":"human"}}"#;

const STREAM_EVENT: &str = r#"{"type":"stream_event","uuid":"e1","session_id":"s1","parent_tool_use_id":"toolu_09","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}}"#;

const RESULT: &str = r#"{"type":"result","subtype":"success","uuid":"r1","session_id":"s1","is_error":false,"duration_ms":1234,"duration_api_ms":800,"num_turns":6,"result":"final text","total_cost_usd":0.003,"stop_reason":"end_turn","terminal_reason":"completed","usage":{"input_tokens":100,"output_tokens":50,"cache_creation_input_tokens":7,"cache_read_input_tokens":900,"server_tool_use":{"web_search_requests":0}},"modelUsage":{"claude-sonnet-4-5":{"inputTokens":100,"outputTokens":50,"cacheReadInputTokens":900,"cacheCreationInputTokens":7,"webSearchRequests":0,"costUSD":0.003}},"permission_denials":[{"tool_name":"Bash","tool_use_id":"toolu_02","tool_input":{"command":"rm -rf /"}}],"errors":[],"api_error_status":null}"#;

const CAN_USE_TOOL: &str = r#"{"type":"control_request","request_id":"ctl_1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"git push"},"permission_suggestions":[{"type":"addRules","rules":[{"toolName":"Bash"}]}],"tool_use_id":"toolu_03","blocked_path":null}}"#;

const HOOK_CALLBACK: &str = r#"{"type":"control_request","request_id":"ctl_2","request":{"subtype":"hook_callback","callback_id":"hook_0","input":{}}}"#;

const CONTROL_SUCCESS: &str = r#"{"type":"control_response","response":{"subtype":"success","request_id":"req_1_0a1b2c3d","response":{"commands":[],"models":[]}}}"#;

const CONTROL_ERROR: &str = r#"{"type":"control_response","response":{"subtype":"error","request_id":"req_2_0a1b2c3d","error":"unknown request"}}"#;

const CANCEL: &str = r#"{"type":"control_cancel_request","request_id":"ctl_1"}"#;

const COMPACT: &str = r#"{"type":"system","subtype":"compact_boundary","session_id":"s1","uuid":"c1","compact_metadata":{"trigger":"auto","pre_tokens":150000}}"#;

const RESET: &str = r#"{"type":"system","subtype":"conversation_reset","session_id":"s1","new_conversation_id":"s2"}"#;

const RATE_LIMIT: &str =
    r#"{"type":"rate_limit_event","session_id":"s1","rate_limit_info":{"status":"allowed"}}"#;

fn decode(line: &str) -> Event {
    let mut stats = DecodeStats::default();
    let decoded = decode_line(line.as_bytes(), &mut stats)
        .expect("decodes")
        .expect("an event");
    assert_eq!(&*decoded.raw, line);
    assert_eq!(stats.undecodable_known, 0, "{line}");
    decoded.event
}

/// Serializes a typed event and decodes it again: the result must be equal.
fn assert_round_trips(event: &Event) {
    let json = serde_json::to_string(event).unwrap();
    let again = decode(&json);
    assert_eq!(&again, event, "{json}");
    let value: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(&Event::from_value(value), event);
}

#[test]
fn init_event() {
    let event = decode(INIT);
    let Event::System(SystemEvent::Init(init)) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(init.session_id, "0b0c3f5e-7a44-4a39-9a53-1d2f9f6c1b2a");
    assert_eq!(init.cwd.as_deref(), Some("/home/u/proj"));
    assert_eq!(init.tools, ["Task", "Bash", "Read", "mcp__iris__send"]);
    assert_eq!(init.mcp_servers.len(), 1);
    assert_eq!(init.mcp_servers[0].name, "iris");
    assert_eq!(init.mcp_servers[0].status, "connected");
    assert_eq!(init.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(init.permission_mode.as_deref(), Some("default"));
    assert_eq!(init.api_key_source.as_deref(), Some("none"));
    assert_eq!(init.claude_code_version.as_deref(), Some("2.1.120"));
    assert_eq!(
        event.session_id(),
        Some("0b0c3f5e-7a44-4a39-9a53-1d2f9f6c1b2a")
    );
    assert_eq!(event.kind(), Some("system"));
    assert_round_trips(&event);
}

#[test]
fn minimal_init_event() {
    let event = decode(r#"{"type":"system","subtype":"init","session_id":"s"}"#);
    let Event::System(SystemEvent::Init(init)) = &event else {
        panic!("{event:?}")
    };
    assert!(init.tools.is_empty() && init.cwd.is_none());
    assert_round_trips(&event);
}

#[test]
fn other_system_events() {
    let event = decode(COMPACT);
    let Event::System(SystemEvent::Other(other)) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(other.subtype, "compact_boundary");
    assert_eq!(other.session_id.as_deref(), Some("s1"));
    assert_eq!(
        other.fields.get("compact_metadata"),
        Some(&json!({"trigger":"auto","pre_tokens":150000}))
    );
    assert!(!other.fields.contains_key("type"));
    assert!(!other.fields.contains_key("subtype"));
    assert_eq!(event.session_id(), Some("s1"));
    assert_round_trips(&event);

    for subtype in ["api_retry", "task_started", "hook_response", "mirror_error"] {
        let line = format!(r#"{{"type":"system","subtype":"{subtype}","attempt":2}}"#);
        let event = decode(&line);
        let Event::System(system) = &event else {
            panic!("{event:?}")
        };
        assert_eq!(system.subtype(), subtype);
        assert_eq!(event.session_id(), None);
        assert_round_trips(&event);
    }
}

#[test]
fn conversation_reset() {
    let event = decode(RESET);
    let Event::System(SystemEvent::ConversationReset(reset)) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(reset.new_conversation_id, "s2");
    assert_eq!(event.session_id(), Some("s1"));
    assert_round_trips(&event);
}

#[test]
fn assistant_event() {
    let event = decode(ASSISTANT);
    let Event::Assistant(assistant) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(assistant.session_id.as_deref(), Some("s1"));
    assert_eq!(assistant.parent_tool_use_id, None);
    let message = &assistant.message;
    assert_eq!(message.id.as_deref(), Some("msg_01"));
    assert_eq!(message.model, "claude-sonnet-4-5");
    assert_eq!(message.role, "assistant");
    assert_eq!(message.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(
        message.usage,
        Some(Usage {
            input_tokens: 10,
            output_tokens: 20,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 30,
        })
    );
    assert_eq!(message.content.len(), 5);
    assert_eq!(
        message.content[0],
        ContentBlock::Thinking {
            thinking: "Let me look.".into(),
            signature: Some("sig==".into())
        }
    );
    assert_eq!(
        message.content[2],
        ContentBlock::ToolUse {
            id: "toolu_01".into(),
            name: "Bash".into(),
            input: json!({"command": "ls -la"})
        }
    );
    assert_eq!(
        message.content[4],
        ContentBlock::Other(json!({"type":"redacted_thinking","data":"xyz"}))
    );
    // All text blocks, not just the first.
    assert_eq!(assistant.text(), "First, then done.");
    assert_round_trips(&event);
}

#[test]
fn odd_content_blocks_are_other_without_failing_the_event() {
    let line = r#"{"type":"assistant","session_id":"s","message":{"model":"m","content":[{"type":"text","text":5},{"type":"tool_use","id":"t"},{"type":"thinking","thinking":"x","signature":7},"bare string",{"type":"text","text":"ok"}]}}"#;
    let event = decode(line);
    let Event::Assistant(assistant) = &event else {
        panic!("{event:?}")
    };
    let content = &assistant.message.content;
    assert_eq!(
        content[0],
        ContentBlock::Other(json!({"type":"text","text":5}))
    );
    assert_eq!(
        content[1],
        ContentBlock::Other(json!({"type":"tool_use","id":"t"}))
    );
    assert_eq!(
        content[2],
        ContentBlock::Other(json!({"type":"thinking","thinking":"x","signature":7}))
    );
    assert_eq!(content[3], ContentBlock::Other(json!("bare string")));
    assert_eq!(assistant.text(), "ok");
    assert_eq!(assistant.message.role, "assistant");
    assert_eq!(assistant.message.usage, None);
    assert_round_trips(&event);
}

#[test]
fn user_event() {
    let event = decode(USER);
    let Event::User(user) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(user.session_id.as_deref(), Some("s1"));
    assert_eq!(user.uuid.as_deref(), Some("u1"));
    assert_eq!(user.message["content"][0]["tool_use_id"], "toolu_01");
    assert_round_trips(&event);
}

#[test]
fn stream_event() {
    let event = decode(STREAM_EVENT);
    let Event::StreamEvent(stream) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(stream.parent_tool_use_id.as_deref(), Some("toolu_09"));
    assert_eq!(stream.event["delta"]["text"], "Hel");
    assert_eq!(event.session_id(), Some("s1"));
    assert_round_trips(&event);
}

#[test]
fn result_event_with_extra_fields() {
    let event = decode(RESULT);
    let Event::Result(result) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(result.subtype, "success");
    assert!(!result.is_error);
    assert!(!result.is_failure());
    assert_eq!(result.result.as_deref(), Some("final text"));
    assert_eq!(result.session_id, "s1");
    assert_eq!(result.total_cost_usd, Some(0.003));
    assert_eq!(
        result.usage,
        Some(Usage {
            input_tokens: 100,
            output_tokens: 50,
            cache_creation_input_tokens: 7,
            cache_read_input_tokens: 900,
        })
    );
    assert_eq!(
        (result.duration_ms, result.duration_api_ms, result.num_turns),
        (1234, 800, 6)
    );
    assert_eq!(result.api_error_status, None);
    assert_eq!(result.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(result.terminal_reason.as_deref(), Some("completed"));
    assert_eq!(event.session_id(), Some("s1"));
    assert_round_trips(&event);
}

#[test]
fn result_failure_detection() {
    let api_error = decode(
        r#"{"type":"result","subtype":"success","session_id":"s","is_error":true,"result":"API Error: 529 overloaded","api_error_status":529}"#,
    );
    let Event::Result(result) = &api_error else {
        panic!("{api_error:?}")
    };
    assert!(result.is_failure());
    assert_eq!(result.api_error_status, Some(529));

    let max_turns = decode(
        r#"{"type":"result","subtype":"error_max_turns","session_id":"s","is_error":false,"num_turns":3,"terminal_reason":"max_turns"}"#,
    );
    let Event::Result(result) = &max_turns else {
        panic!("{max_turns:?}")
    };
    assert!(result.is_failure());
    assert_eq!(result.result, None);
    assert_round_trips(&max_turns);
}

#[test]
fn can_use_tool_request() {
    let event = decode(CAN_USE_TOOL);
    let Event::ControlRequest(request) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(request.request_id, "ctl_1");
    assert_eq!(request.request.subtype(), "can_use_tool");
    let ControlRequestBody::CanUseTool {
        tool_name,
        input,
        permission_suggestions,
        tool_use_id,
    } = &request.request
    else {
        panic!("{request:?}")
    };
    assert_eq!(tool_name, "Bash");
    assert_eq!(input, &json!({"command": "git push"}));
    assert!(permission_suggestions.as_ref().is_some_and(Value::is_array));
    assert_eq!(tool_use_id.as_deref(), Some("toolu_03"));
    assert_eq!(event.session_id(), None);
    assert_round_trips(&event);
}

#[test]
fn other_control_requests_keep_their_body() {
    let event = decode(HOOK_CALLBACK);
    let Event::ControlRequest(request) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(
        request.request,
        ControlRequestBody::Other {
            subtype: "hook_callback".into(),
            raw: json!({"subtype":"hook_callback","callback_id":"hook_0","input":{}}),
        }
    );
    assert_round_trips(&event);

    // A can_use_tool without a tool name still reaches the host, which can answer it.
    let odd = decode(
        r#"{"type":"control_request","request_id":"x","request":{"subtype":"can_use_tool","input":{}}}"#,
    );
    let Event::ControlRequest(request) = &odd else {
        panic!("{odd:?}")
    };
    assert!(
        matches!(&request.request, ControlRequestBody::Other { subtype, .. } if subtype == "can_use_tool")
    );
    assert_eq!(request.request_id, "x");
    assert_round_trips(&odd);
}

#[test]
fn control_responses_and_cancel() {
    let event = decode(CONTROL_SUCCESS);
    let Event::ControlResponse(response) = &event else {
        panic!("{event:?}")
    };
    assert!(response.is_success());
    assert_eq!(response.request_id, "req_1_0a1b2c3d");
    assert_eq!(response.response, Some(json!({"commands":[],"models":[]})));
    assert_eq!(response.error, None);
    assert_round_trips(&event);

    let event = decode(CONTROL_ERROR);
    let Event::ControlResponse(response) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(response.subtype, ControlResponseSubtype::Error);
    assert_eq!(response.error.as_deref(), Some("unknown request"));
    assert_round_trips(&event);

    let event = decode(CANCEL);
    assert_eq!(
        event,
        Event::ControlCancelRequest {
            request_id: "ctl_1".into()
        }
    );
    assert_round_trips(&event);
}

#[test]
fn unknown_types_pass_through() {
    for line in [
        RATE_LIMIT,
        r#"{"no_type":true}"#,
        r#"{"type":42}"#,
        r#"{"type":"future_thing","data":[1,2,3]}"#,
        "{}",
    ] {
        let event = decode(line);
        let expected: Value = serde_json::from_str(line).unwrap();
        assert_eq!(event, Event::Unknown(expected), "{line}");
        assert_round_trips(&event);
    }
    let event = decode(RATE_LIMIT);
    assert_eq!(event.kind(), Some("rate_limit_event"));
    assert_eq!(event.session_id(), Some("s1"));
}

#[test]
fn known_types_of_odd_shape_are_unknown_not_errors() {
    let odd = [
        r#"{"type":"assistant","session_id":"s9","message":{"model":"m","content":"just a string"}}"#,
        r#"{"type":"assistant","message":{"content":[]}}"#,
        r#"{"type":"result","subtype":"success","is_error":"nope","session_id":"s"}"#,
        r#"{"type":"result","subtype":"success"}"#,
        r#"{"type":"system","subtype":"init"}"#,
        r#"{"type":"system","subtype":"conversation_reset","session_id":"s1"}"#,
        r#"{"type":"system"}"#,
        r#"{"type":"user"}"#,
        r#"{"type":"stream_event","session_id":"s"}"#,
        r#"{"type":"control_request","request":{"subtype":"can_use_tool"}}"#,
        r#"{"type":"control_request","request_id":"x","request":[]}"#,
        r#"{"type":"control_response","response":{"subtype":"maybe","request_id":"x"}}"#,
        r#"{"type":"control_cancel_request"}"#,
    ];
    let mut stats = DecodeStats::default();
    for line in odd {
        let decoded = decode_line(line.as_bytes(), &mut stats)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .unwrap();
        let expected: Value = serde_json::from_str(line).unwrap();
        assert_eq!(decoded.event, Event::Unknown(expected), "{line}");
    }
    assert_eq!(stats.undecodable_known, odd.len() as u64);
    assert_eq!(stats.events, odd.len() as u64);
    // The session id is still found on an event whose shape changed.
    let event = decode_line(odd[0].as_bytes(), &mut stats)
        .unwrap()
        .unwrap()
        .event;
    assert_eq!(event.session_id(), Some("s9"));
}

#[test]
fn malformed_json_line_is_an_error_with_its_prefix() {
    let mut stats = DecodeStats::default();
    let line = format!(r#"{{"type":"assistant","message":{} "#, "x".repeat(1000));
    let err = decode_line(line.as_bytes(), &mut stats).unwrap_err();
    let CodecError::Malformed { line_prefix, error } = &err else {
        panic!("{err:?}")
    };
    assert!(line_prefix.starts_with(r#"{"type":"assistant","message":xxx"#));
    assert_eq!(line_prefix.chars().count(), 201);
    assert!(!error.is_empty());
    assert_eq!(err.code(), ErrorCode::ProcessError);
    assert_eq!(stats.malformed, 1);

    for bad in [r#"{"a":1"#, "{not json}", r#"{"a":1} trailing"#, "{"] {
        assert!(matches!(
            decode_line(bad.as_bytes(), &mut stats),
            Err(CodecError::Malformed { .. })
        ));
    }
}

#[tokio::test]
async fn decoder_skips_counts_and_decodes() {
    let stream = format!(
        "\n[SandboxDebug] sandbox ready\r\n{INIT}\r\n   \n{ASSISTANT}\n{RATE_LIMIT}\nplain text\n{RESULT}\n"
    );
    let mut decoder = Decoder::new(stream.as_bytes());
    let mut kinds = Vec::new();
    while let Some(decoded) = decoder.next().await.unwrap() {
        kinds.push(decoded.event.kind().unwrap_or_default().to_owned());
    }
    assert_eq!(kinds, ["system", "assistant", "rate_limit_event", "result"]);
    assert!(decoder.is_eof());
    assert!(decoder.next().await.unwrap().is_none());
    assert_eq!(
        decoder.stats(),
        DecodeStats {
            events: 4,
            skipped_blank: 2,
            skipped_non_json: 2,
            ..DecodeStats::default()
        }
    );
}

#[tokio::test]
async fn decoder_reassembles_events_written_in_pieces() {
    let (mut writer, reader) = tokio::io::duplex(7);
    let stream = format!("{INIT}\n{ASSISTANT}\n{RESULT}\n{{\"type\":\"result\",\"sub");
    let writing = tokio::spawn(async move {
        for piece in stream.as_bytes().chunks(13) {
            writer.write_all(piece).await.unwrap();
        }
        // Dropping the writer is EOF.
    });
    let mut decoder = Decoder::new(reader);
    let mut events = Vec::new();
    while let Some(decoded) = decoder.next().await.unwrap() {
        events.push(decoded);
    }
    writing.await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(&*events[0].raw, INIT);
    assert_eq!(&*events[1].raw, ASSISTANT);
    assert_eq!(&*events[2].raw, RESULT);
    assert!(matches!(events[2].event, Event::Result(_)));
    // The unfinished last line was dropped and counted.
    assert_eq!(decoder.stats().truncated_tail_bytes, 21);
}

#[tokio::test]
async fn decoder_reports_malformed_lines_and_goes_on() {
    let stream = format!("{{\"type\":\"assistant\",\n{RESULT}\n");
    let mut decoder = Decoder::new(stream.as_bytes());
    let err = decoder.next().await.unwrap_err();
    assert!(
        matches!(err, CodecError::Malformed { ref line_prefix, .. } if line_prefix == "{\"type\":\"assistant\",")
    );
    let next = decoder.next().await.unwrap().unwrap();
    assert!(matches!(next.event, Event::Result(_)));
    assert_eq!(decoder.stats().malformed, 1);
}

#[tokio::test]
async fn decoder_line_too_long_is_final() {
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let writing = tokio::spawn(async move {
        writer
            .write_all(format!("{CANCEL}\n").as_bytes())
            .await
            .unwrap();
        // An endless line: the decoder must give up without buffering all of it.
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            if writer.write_all(&junk).await.is_err() {
                return;
            }
        }
    });
    let mut decoder = Decoder::with_max_line(reader, 100_000);
    assert!(matches!(
        decoder.next().await.unwrap().unwrap().event,
        Event::ControlCancelRequest { .. }
    ));
    let err = decoder.next().await.unwrap_err();
    let CodecError::LineTooLong { limit, len_so_far } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, 100_000);
    assert!(len_so_far > limit && len_so_far <= limit + 64 * 1024);
    assert_eq!(err.code(), ErrorCode::ProcessError);
    assert!(matches!(
        decoder.next().await,
        Err(CodecError::LineTooLong { .. })
    ));
    drop(decoder);
    writing.await.unwrap();
}

#[test]
fn encoded_messages_fit_the_decoded_shapes() {
    // The host's control responses have the same shape as the CLI's.
    let line = control_response_success("req_1_ab", json!({"ok": true}));
    let Event::ControlResponse(response) = decode(line.trim_end()) else {
        panic!("{line}")
    };
    assert!(response.is_success());
    assert_eq!(response.request_id, "req_1_ab");
    assert_eq!(response.response, Some(json!({"ok": true})));

    let line = control_response_error("req_2_ab", "nope");
    let Event::ControlResponse(response) = decode(line.trim_end()) else {
        panic!("{line}")
    };
    assert_eq!(response.subtype, ControlResponseSubtype::Error);
    assert_eq!(response.error.as_deref(), Some("nope"));

    let decision = PermissionDecision::Deny {
        message: "no".into(),
        interrupt: false,
    };
    let Event::ControlResponse(response) =
        decode(permission_response("ctl_1", &decision).trim_end())
    else {
        panic!()
    };
    assert_eq!(response.response, Some(decision.to_value()));

    let line = control_request("req_3_ab", &HostRequest::Interrupt);
    let Event::ControlRequest(request) = decode(line.trim_end()) else {
        panic!("{line}")
    };
    assert_eq!(request.request_id, "req_3_ab");
    assert_eq!(request.request.subtype(), "interrupt");

    let line = user_message("hello");
    let Event::User(user) = decode(line.trim_end()) else {
        panic!("{line}")
    };
    assert_eq!(user.message["content"][0]["text"], "hello");
}

fn user_text(line: &str) -> String {
    let Event::User(user) = Event::from_value(serde_json::from_str(line).unwrap()) else {
        panic!("{line}")
    };
    assert_eq!(user.message["role"], "user");
    assert_eq!(user.message["content"][0]["type"], "text");
    user.message["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

proptest! {
    #[test]
    fn user_message_preserves_any_text(text in any::<String>()) {
        let line = user_message(&text);
        prop_assert!(line.ends_with('\n'));
        // Exactly one line: newlines in the text are escaped.
        prop_assert_eq!(line.bytes().filter(|&b| b == b'\n').count(), 1);
        prop_assert_eq!(user_text(&line), text.clone());
        // Through the framer and decoder too.
        let mut framer = LineFramer::new();
        framer.push(line.as_bytes());
        let framed = framer.next_line().unwrap().unwrap().to_vec();
        let mut stats = DecodeStats::default();
        let decoded = decode_line(&framed, &mut stats).unwrap().unwrap();
        prop_assert_eq!(user_text(&decoded.raw), text);
    }

    #[test]
    fn control_messages_preserve_any_text(id in any::<String>(), message in any::<String>(), mode in any::<String>()) {
        let line = control_response_error(&id, &message);
        let Event::ControlResponse(response) = Event::from_value(serde_json::from_str(&line).unwrap()) else {
            panic!("{line}")
        };
        prop_assert_eq!(&response.request_id, &id);
        prop_assert_eq!(response.error.as_deref(), Some(message.as_str()));

        let line = control_request(&id, &HostRequest::SetPermissionMode { mode: mode.clone() });
        let value: Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(&value["request_id"], &json!(id));
        prop_assert_eq!(&value["request"]["mode"], &json!(mode));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..64,
        limit in 0usize..256,
    ) {
        let mut framer = LineFramer::with_max_line(limit);
        let mut stats = DecodeStats::default();
        for piece in data.chunks(chunk) {
            framer.push(piece);
            while let Some(line) = framer.next_line() {
                match line {
                    Ok(line) => {
                        let _ = decode_line(line, &mut stats);
                    }
                    Err(_) => break,
                }
            }
        }
        let _ = framer.finish();
    }

    #[test]
    fn json_ish_lines_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                Just(INIT.to_owned()), Just(ASSISTANT.to_owned()), Just(RESULT.to_owned()),
                Just(CAN_USE_TOOL.to_owned()), Just(CONTROL_SUCCESS.to_owned()),
                "\\{[\"a-z:,\\[\\]{}0-9 ]{0,40}",
            ],
            0..10,
        ),
        cut in any::<prop::sample::Index>(),
    ) {
        // Truncate or mangle the realistic lines at a random point.
        let mut stats = DecodeStats::default();
        for line in &lines {
            let end = cut.index(line.len() + 1);
            let end = (0..=end).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
            let _ = decode_line(&line.as_bytes()[..end], &mut stats);
            let _ = decode_line(line.as_bytes(), &mut stats);
        }
    }
}

#[test]
fn typed_json_values_survive_random_mutation() {
    // Every realistic line with one field replaced by each JSON kind: never an error.
    let kinds = [
        json!(null),
        json!(1),
        json!(-1.5),
        json!("s"),
        json!([]),
        json!({}),
    ];
    for line in [
        INIT,
        ASSISTANT,
        USER,
        STREAM_EVENT,
        RESULT,
        CAN_USE_TOOL,
        HOOK_CALLBACK,
        CONTROL_SUCCESS,
        CONTROL_ERROR,
        CANCEL,
        COMPACT,
        RESET,
    ] {
        let value: Value = serde_json::from_str(line).unwrap();
        let Value::Object(map) = &value else { panic!() };
        for key in map.keys() {
            for kind in &kinds {
                let mut mutated = map.clone();
                mutated.insert(key.clone(), kind.clone());
                let text = Value::Object(mutated).to_string();
                let mut stats = DecodeStats::default();
                let decoded = decode_line(text.as_bytes(), &mut stats).unwrap().unwrap();
                // Whatever it decoded to, it serializes and decodes back to itself.
                let again = serde_json::to_string(&decoded.event).unwrap();
                let mut stats = DecodeStats::default();
                let redecoded = decode_line(again.as_bytes(), &mut stats).unwrap().unwrap();
                assert_eq!(redecoded.event, decoded.event, "{text}");
            }
        }
    }
}

#[test]
fn floats_round_trip_exactly() {
    // Found by the fuzzer: serde_json's default float parser is off by one ulp here, so the
    // crate enables `float_roundtrip`.
    for line in [
        r#"{"type":"result","subtype":"success","session_id":"s","total_cost_usd":99999999.9993177430}"#,
        r#"{"[?":99999999.9993177430}"#,
    ] {
        assert_round_trips(&decode(line));
    }
}

#[test]
fn a_result_with_odd_cost_or_usage_is_still_a_result() {
    // A bad number must never turn the end of a turn into an unknown event (the turn would then
    // wait for its stall timeout); the cost and usage are dropped instead.
    for (cost, usage) in [
        (json!("abc"), json!({"input_tokens": "many"})),
        (json!(null), json!("none")),
        (json!({"usd": 1}), json!(null)),
    ] {
        let line = json!({"type": "result", "subtype": "success", "session_id": "s",
            "total_cost_usd": cost, "usage": usage, "errors": ["e", 7]})
        .to_string();
        match decode(&line) {
            Event::Result(result) => {
                assert_eq!(result.total_cost_usd, None, "{line}");
                assert_eq!(result.usage, None, "{line}");
                assert_eq!(result.errors, ["e"], "{line}");
            }
            other => panic!("{line} decoded as {other:?}"),
        }
    }
}
