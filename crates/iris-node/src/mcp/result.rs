//! Replies and errors as MCP tool results: structured JSON content, repeated as text.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Value};

use iris_api::error::INTERNAL_ERROR;
use iris_api::{ApiError, Reply, TellStatus};

/// A reply as a tool result. A tell whose turn failed is a tool error too: the agent that sent
/// it must notice, and the content still carries the turn id and the error's code and message.
pub(super) fn reply_result(reply: &Reply) -> CallToolResult {
    let failed = matches!(reply, Reply::Tell(tell) if tell.status == TellStatus::Failed);
    match reply_value(reply) {
        Ok(value) => json_result(value, failed),
        Err(error) => error_result(&error),
    }
}

/// An error as a tool error: `{"error":{"code":"…","message":"…"}}`.
pub(super) fn error_result(error: &ApiError) -> CallToolResult {
    let value = serde_json::to_value(error).unwrap_or_else(|_| {
        // An ApiError is two strings; this arm exists only so that no path can panic.
        let mut body = Map::new();
        body.insert("code".to_owned(), Value::from(error.code().as_str()));
        body.insert("message".to_owned(), Value::from(error.to_string()));
        let mut outer = Map::new();
        outer.insert("error".to_owned(), Value::Object(body));
        Value::Object(outer)
    });
    json_result(value, true)
}

/// The reply's data as JSON. Structured content should be an object (older clients and the
/// MCP spec before 2026 require one), so data that is a list is wrapped under the reply's kind:
/// `{"sessions":[…]}`, `{"turns":[…]}`, `{"teams":[…]}`, `{"woke_all":[…]}`.
pub(super) fn reply_value(reply: &Reply) -> Result<Value, ApiError> {
    let tagged = serde_json::to_value(reply).map_err(|e| {
        ApiError::new(
            INTERNAL_ERROR,
            format!("the reply could not be encoded as JSON: {e}"),
        )
    })?;
    let Value::Object(mut tagged) = tagged else {
        return Ok(tagged);
    };
    let kind = match tagged.remove("kind") {
        Some(Value::String(kind)) => kind,
        _ => "result".to_owned(),
    };
    match tagged.remove("data") {
        Some(data @ Value::Object(_)) => Ok(data),
        Some(other) => {
            let mut wrapped = Map::new();
            wrapped.insert(kind, other);
            Ok(Value::Object(wrapped))
        }
        None => Ok(Value::Object(tagged)),
    }
}

/// `value` as structured content, and as indented JSON text for clients that show text.
fn json_result(value: Value, is_error: bool) -> CallToolResult {
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    let mut result = if is_error {
        CallToolResult::structured_error(value)
    } else {
        CallToolResult::structured(value)
    };
    result.content = vec![ContentBlock::text(text)];
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use iris_api::{PairReply, TellReply};

    fn tell(status: TellStatus) -> Reply {
        Reply::Tell(TellReply {
            from: "alpha".parse().unwrap(),
            to: "beta".parse().unwrap(),
            session_id: None,
            turn_id: iris_core::TurnId::new(),
            status,
            response: "echo: hi".into(),
            cost_usd: None,
            usage: None,
            duration_ms: None,
            error: None,
        })
    }

    fn text_of(result: &CallToolResult) -> Option<&str> {
        result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.as_str())
    }

    #[test]
    fn an_object_reply_is_its_data() {
        let result = reply_result(&Reply::Slept(PairReply {
            from: "alpha".parse().unwrap(),
            to: "beta".parse().unwrap(),
        }));
        assert_eq!(result.is_error, Some(false));
        assert_eq!(
            result.structured_content,
            Some(json!({"from": "alpha", "to": "beta"}))
        );
        let text: Option<Value> = text_of(&result).and_then(|t| serde_json::from_str(t).ok());
        assert_eq!(text, result.structured_content);
    }

    #[test]
    fn a_list_reply_is_wrapped_under_its_kind() {
        let result = reply_result(&Reply::Sessions(Vec::new()));
        assert_eq!(result.structured_content, Some(json!({"sessions": []})));
        let result = reply_result(&Reply::Turns(Vec::new()));
        assert_eq!(result.structured_content, Some(json!({"turns": []})));
    }

    #[test]
    fn a_completed_tell_is_a_success_and_a_failed_one_a_tool_error() {
        let ok = reply_result(&tell(TellStatus::Completed));
        assert_eq!(ok.is_error, Some(false));
        assert_eq!(
            ok.structured_content.as_ref().map(|v| &v["response"]),
            Some(&json!("echo: hi"))
        );
        assert_eq!(reply_result(&tell(TellStatus::Failed)).is_error, Some(true));
        assert_eq!(
            reply_result(&tell(TellStatus::Accepted)).is_error,
            Some(false)
        );
    }

    #[test]
    fn an_error_carries_its_code_and_message() {
        let result = error_result(&ApiError::new(
            iris_core::ErrorCode::TeamNotFound,
            "no team gamma",
        ));
        assert_eq!(result.is_error, Some(true));
        assert_eq!(
            result.structured_content,
            Some(json!({"error": {"code": "TEAM_NOT_FOUND", "message": "no team gamma"}}))
        );
        assert!(text_of(&result).is_some_and(|t| t.contains("TEAM_NOT_FOUND")));
    }
}
