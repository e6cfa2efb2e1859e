//! The mock over plain HTTP (no CLI needed): routes, the SSE wire format, scripts, recording, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anthropic_mock::{MockApi, MockOptions, Outcome, Script};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

fn url(mock: &MockApi) -> String {
    format!("{}/v1/messages?beta=true", mock.base_url())
}

fn user_text(text: &str) -> Value {
    json!({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nAs you answer, usetool is not a keyword here.\n</system-reminder>\n"},
        {"type": "text", "text": text},
    ]})
}

fn request(messages: Vec<Value>, stream: bool) -> Value {
    json!({"model": "claude-opus-4-8", "max_tokens": 64000, "stream": stream, "messages": messages,
           "tools": [{"name": "Bash", "input_schema": {"type": "object"}}]})
}

/// Parses an SSE body into (event, data) pairs, checking the framing on the way.
fn parse_sse(body: &str) -> Vec<(String, Value)> {
    assert!(
        body.ends_with("\n\n"),
        "the stream must end with a blank line: {body:?}"
    );
    body.trim_end()
        .split("\n\n")
        .map(|frame| {
            let mut lines = frame.lines();
            let event = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .expect("each frame starts with `event: `");
            let data = lines
                .next()
                .unwrap()
                .strip_prefix("data: ")
                .expect("then `data: `");
            assert!(lines.next().is_none(), "one data line per frame: {frame:?}");
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], event, "event name and data type agree");
            (event.to_owned(), data)
        })
        .collect()
}

async fn post(mock: &MockApi, body: &Value) -> reqwest::Response {
    client().post(url(mock)).json(body).send().await.unwrap()
}

#[tokio::test]
async fn head_probe_and_unknown_routes() {
    let mock = MockApi::start().await.unwrap();
    assert!(mock.addr().ip().is_loopback());
    let c = client();
    assert_eq!(c.head(mock.base_url()).send().await.unwrap().status(), 200);
    let r = c
        .get(format!("{}/v1/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");
    assert_eq!(c.get(mock.base_url()).send().await.unwrap().status(), 404);
    let counters = mock.counters();
    assert_eq!(
        (
            counters.requests,
            counters.head,
            counters.not_found,
            counters.messages
        ),
        (3, 1, 2, 0)
    );
    let recorded = mock.requests();
    assert_eq!(recorded[1].path, "/v1/models");
    assert_eq!(recorded[1].method, "GET");
}

#[tokio::test]
async fn echo_streams_the_anthropic_wire_format() {
    let mock = MockApi::start().await.unwrap();
    let messages = vec![
        user_text("hi"),
        json!({"role": "system", "content": "Available agent types: slow usetool"}),
        json!({"role": "assistant", "content": [{"type": "text", "text": "echo: hi (turns seen: 1)"}]}),
        user_text("again"),
    ];
    let r = post(&mock, &request(messages, true)).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-opus-4-8");
    assert_eq!(start["role"], "assistant");
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["usage"]["input_tokens"], 200);
    assert_eq!(
        events[3].1["delta"],
        json!({"type": "text_delta", "text": "echo: again (turns seen: 2)"})
    );
    assert_eq!(events[5].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[5].1["usage"]["output_tokens"], 5);

    let rec = mock
        .wait_for("the stream to complete", WAIT, |r| {
            r[0].outcome == Outcome::Completed
        })
        .await
        .unwrap();
    let rec = &rec[0];
    assert_eq!(
        (rec.path.as_str(), rec.query.as_deref()),
        ("/v1/messages", Some("beta=true"))
    );
    assert_eq!(rec.model.as_deref(), Some("claude-opus-4-8"));
    assert!(rec.stream);
    assert_eq!(rec.max_tokens, Some(64000));
    assert_eq!(rec.tools, ["Bash"]);
    assert_eq!(rec.last_user_text.as_deref(), Some("again"));
    assert_eq!(rec.turns_seen, 2);
    assert_eq!(rec.script, Some(Script::Echo));
    assert_eq!(
        rec.reply_text.as_deref(),
        Some("echo: again (turns seen: 2)")
    );
}

#[tokio::test]
async fn non_streaming_requests_get_one_message() {
    let mock = MockApi::start().await.unwrap();
    let r = post(
        &mock,
        &request(vec![user_text("blocks one | two|three")], false),
    )
    .await;
    assert_eq!(r.status(), 200);
    let msg: Value = r.json().await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["stop_reason"], "end_turn");
    let texts: Vec<&str> = msg["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(
        msg["usage"],
        json!({"input_tokens": 100, "output_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
    assert_eq!(mock.requests()[0].outcome, Outcome::Replied);
}

#[tokio::test]
async fn tool_use_then_tool_result() {
    let mock = MockApi::start().await.unwrap();
    let first = vec![user_text("please usetool ls -la")];
    let events = parse_sse(
        &post(&mock, &request(first.clone(), true))
            .await
            .text()
            .await
            .unwrap(),
    );
    let block = &events[2].1["content_block"];
    assert_eq!(
        (block["type"].as_str(), block["name"].as_str()),
        (Some("tool_use"), Some("Bash"))
    );
    let id = block["id"].as_str().unwrap().to_owned();
    let json: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect::<Vec<_>>()
        .concat();
    let input: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        input,
        json!({"command": "ls -la", "description": "mock: run ls -la"})
    );
    let stop = events.iter().find(|(e, _)| e == "message_delta").unwrap();
    assert_eq!(stop.1["delta"]["stop_reason"], "tool_use");

    let mut second = first;
    second.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": input}]}));
    second.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "total 0", "is_error": false}]}));
    let msg: Value = post(&mock, &request(second, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        msg["content"][0]["text"],
        "after tool: total 0 (turns seen: 1)"
    );
    let recorded = mock.message_requests();
    assert_eq!(
        recorded[0].script,
        Some(Script::UseTool {
            command: "ls -la".into()
        })
    );
    assert_eq!(recorded[1].script, Some(Script::AfterTool));
    assert_eq!(recorded[1].tool_result.as_deref(), Some("total 0"));
    assert_eq!(recorded[1].last_user_text, None);
}

#[tokio::test]
async fn mcp_tool_use_then_result() {
    let mock = MockApi::start().await.unwrap();
    let first = vec![user_text("usemcp mcp__iris__echo {\"text\": \"x\"}")];
    let msg: Value = post(&mock, &request(first.clone(), false))
        .await
        .json()
        .await
        .unwrap();
    let block = &msg["content"][0];
    assert_eq!(block["name"], "mcp__iris__echo");
    assert_eq!(block["input"], json!({"text": "x"}));
    let mut second = first;
    second.push(json!({"role": "assistant", "content": [block]}));
    let long = "y".repeat(250);
    second.push(
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"],
        "content": [{"type": "text", "text": long}]}]}),
    );
    let msg: Value = post(&mock, &request(second, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        msg["content"][0]["text"],
        format!("after mcp: {}", "y".repeat(200))
    );
}

#[tokio::test]
async fn api_errors_use_anthropic_bodies() {
    let mock = MockApi::start().await.unwrap();
    for (status, kind) in [
        (400, "invalid_request_error"),
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (500, "api_error"),
    ] {
        let r = post(
            &mock,
            &request(vec![user_text(&format!("api-error {status}"))], true),
        )
        .await;
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(
            r.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
            (status == 429).then(|| "1".to_owned())
        );
        assert!(r.headers().contains_key("request-id"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], kind);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(mock.counters().api_errors, 4);
    let r = client()
        .post(url(&mock))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(mock.requests().last().unwrap().script, None);
}

#[tokio::test]
async fn slow_streams_stop_when_the_client_goes_away() {
    let mock = MockApi::start_with(MockOptions {
        slow_delay: Duration::from_millis(50),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut r = post(&mock, &request(vec![user_text("slow")], true)).await;
    let mut seen = String::new();
    while !seen.contains("slow-2/20") {
        let chunk = tokio::time::timeout(WAIT, r.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("the stream ended early");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.contains("\"text\":\"slow-1/20\""), "{seen}");
    assert!(
        !seen.contains("slow-20/20"),
        "the deltas must be spaced out: {seen}"
    );
    drop(r);
    let rec = mock
        .wait_for("the mock to notice the client went away", WAIT, |r| {
            matches!(r[0].outcome, Outcome::ClientGone { .. })
        })
        .await
        .unwrap();
    let Outcome::ClientGone {
        events_sent,
        events_total,
    } = rec[0].outcome
    else {
        unreachable!()
    };
    assert!(
        events_sent < events_total,
        "{events_sent} of {events_total}"
    );
    assert_eq!(
        rec[0].script,
        Some(Script::Slow {
            chunks: 20,
            delay_ms: 50
        })
    );
    let c = mock.counters();
    assert_eq!(
        (c.streams_started, c.streams_abandoned, c.streams_completed),
        (1, 1, 0)
    );

    // Numbers after the keyword override the defaults; a full slow stream completes.
    let body = post(&mock, &request(vec![user_text("slow 3 1")], true))
        .await
        .text()
        .await
        .unwrap();
    let text: String = parse_sse(&body)
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(text, "slow-1/3 slow-2/3 slow-3/3");
}

#[tokio::test]
async fn wait_for_times_out_with_a_description() {
    let mock = MockApi::start().await.unwrap();
    client().head(mock.base_url()).send().await.unwrap();
    let err = mock
        .wait_for("a messages request", Duration::from_millis(50), |r| {
            r.iter().any(|r| r.is_messages())
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("a messages request") && msg.contains("HEAD /"),
        "{msg}"
    );
}

#[tokio::test]
async fn dropping_the_mock_closes_its_port_and_connections() {
    let mock = MockApi::start_with(MockOptions {
        slow_delay: Duration::from_millis(200),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let addr = mock.addr();
    // A stream in flight when the mock goes away must end too.
    let mut r = post(&mock, &request(vec![user_text("slow")], true)).await;
    r.chunk().await.unwrap();
    drop(mock);
    let ended =
        tokio::time::timeout(WAIT, async { while let Ok(Some(_)) = r.chunk().await {} }).await;
    assert!(
        ended.is_ok(),
        "the in-flight stream did not end after the mock was dropped"
    );
    let refused = tokio::time::timeout(WAIT, async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the port still accepts connections after the mock was dropped"
    );
}

#[tokio::test]
async fn the_claude_env_points_at_the_mock() {
    let mock = MockApi::start().await.unwrap();
    let env = mock.claude_env("/tmp/cfg");
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
    };
    assert_eq!(get("ANTHROPIC_BASE_URL"), Some(mock.base_url()));
    assert_eq!(get("CLAUDE_CONFIG_DIR").as_deref(), Some("/tmp/cfg"));
    assert_eq!(
        get("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC").as_deref(),
        Some("1")
    );
    assert!(get("ANTHROPIC_API_KEY").is_some());
}
