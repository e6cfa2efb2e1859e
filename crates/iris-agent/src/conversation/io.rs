//! The two tasks that own the agent's pipes.
//!
//! The writer owns stdin: it writes queued lines in order and closes stdin when every sender is
//! gone; so that stopping can close stdin, the reader and interrupters hold only weak senders.
//! The reader owns stdout: it decodes events, answers the agent's control requests itself
//! (permissions through the policy, anything else with an error, so nothing is left
//! unanswered), and forwards every event to the conversation.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use crate::codec::{
    CodecError, ControlRequestBody, DecodedEvent, Decoder, Event, PermissionDecision,
    control_response_error, permission_response,
};
use crate::conversation::permission::{Decision, PermissionPolicy, PermissionRequest};

/// What the reader tells the conversation.
#[derive(Debug)]
pub(crate) enum ReaderMsg {
    /// An event, in stdout order.
    Event(Box<DecodedEvent>),
    /// The agent broke the protocol; the reader has stopped.
    Failed(CodecError),
}

/// Writes each line to stdin, in order, until the channel closes or stdin breaks.
pub(crate) async fn write_loop(mut stdin: ChildStdin, mut lines: mpsc::UnboundedReceiver<String>) {
    while let Some(line) = lines.recv().await {
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        if let Err(error) = written.await {
            // The agent is gone or closed its stdin; the exit watcher reports why.
            tracing::debug!(%error, "agent stdin closed");
            return;
        }
    }
}

/// Decodes stdout until EOF or a protocol error.
pub(crate) async fn read_loop(
    stdout: ChildStdout,
    max_line: usize,
    events: mpsc::Sender<ReaderMsg>,
    writer: mpsc::WeakUnboundedSender<String>,
    policy: Arc<dyn PermissionPolicy>,
) {
    let mut decoder = Decoder::with_max_line(stdout, max_line);
    loop {
        match decoder.next().await {
            Ok(Some(decoded)) => {
                if let Event::ControlRequest(request) = &decoded.event {
                    answer(
                        request.request_id.clone(),
                        &request.request,
                        &writer,
                        &policy,
                    );
                }
                if events
                    .send(ReaderMsg::Event(Box::new(decoded)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                let _ = events.send(ReaderMsg::Failed(error)).await;
                return;
            }
        }
    }
}

/// Answers one control request from the agent, on a task of its own so that a slow approver
/// never stalls the stdout reader.
fn answer(
    request_id: String,
    body: &ControlRequestBody,
    writer: &mpsc::WeakUnboundedSender<String>,
    policy: &Arc<dyn PermissionPolicy>,
) {
    match body {
        ControlRequestBody::CanUseTool {
            tool_name, input, ..
        } => {
            let decision = policy.decide(PermissionRequest {
                tool_name: tool_name.clone(),
                input: input.clone(),
            });
            let writer = writer.clone();
            tokio::spawn(async move {
                let response = match decision.await {
                    Decision::Allow { updated_input } => {
                        PermissionDecision::Allow { updated_input }
                    }
                    Decision::Deny { message } => PermissionDecision::Deny {
                        message,
                        interrupt: false,
                    },
                };
                if let Some(writer) = writer.upgrade() {
                    let _ = writer.send(permission_response(&request_id, &response));
                }
            });
        }
        other => {
            let message = format!(
                "iris does not support control request {:?}",
                other.subtype()
            );
            if let Some(writer) = writer.upgrade() {
                let _ = writer.send(control_response_error(&request_id, &message));
            }
        }
    }
}
