//! Test support for running the real Claude Code CLI offline: a loopback mock of the Anthropic Messages API with
//! scripted replies ([`MockApi`]), and the location of the pinned CLI ([`real_claude_or_skip`]).
//!
//! # The pinned CLI
//!
//! The repository's `claude-cli.version` pins the CLI version; `scripts/install-claude.sh` installs it with npm into
//! `${IRIS_CLAUDE_CACHE:-$HOME/.cache/iris/claude-code}/<version>/` and links the native executable at
//! `<that dir>/bin/claude`. [`real_claude`] finds it there, or takes `$IRIS_CLAUDE_BIN`. A real-CLI test starts with
//!
//! ```no_run
//! # async fn t() {
//! let Some(claude) = anthropic_mock::real_claude_or_skip() else { return };
//! # }
//! ```
//!
//! which skips (one line on stderr) when the CLI is not installed, unless `IRIS_REQUIRE_REAL_CLAUDE=1` (CI), where
//! it panics with that line.
//!
//! # Pointing the CLI at the mock
//!
//! Start the child with an empty environment plus `PATH` and `HOME` (or remove [`CLAUDE_ENV_TO_REMOVE`]), then add
//! [`MockApi::claude_env`]: `ANTHROPIC_BASE_URL`, a dummy `ANTHROPIC_API_KEY`,
//! `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, `DISABLE_TELEMETRY=1`, `DISABLE_AUTOUPDATER=1`,
//! `DISABLE_ERROR_REPORTING=1` and a scratch `CLAUDE_CONFIG_DIR` (an empty directory is enough: `--print` mode needs
//! no onboarding or key-approval file). With these, CLI 2.1.197 connects to nothing but the mock: a `HEAD /` at
//! start-up and one `POST /v1/messages?beta=true` (streamed) per model call. Without
//! `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` it also resolves outside hosts and sends the mock side requests (a
//! session title is generated with an extra `/v1/messages` call), which would disturb the scripts. Add
//! `CLAUDE_CODE_MAX_RETRIES=0` to make the API-error scripts end at once: the CLI otherwise retries 429 and 5xx up
//! to 10 times with exponential backoff (about 3 minutes in all), and 529 twice (about 2 s) before "Repeated 529 Overloaded
//! errors".
//!
//! # Scripts
//!
//! The mock reads the request's last user message that has real text (the CLI's `<system-reminder>` spans and
//! `[Request interrupted by user…]` markers removed; `system`-role messages ignored) and looks for a keyword: a
//! whole whitespace-separated token, tried in this order:
//!
//! | keyword | reply |
//! |---|---|
//! | `api-error <status>` | that HTTP status with Anthropic's error body `{"type":"error","error":{"type":…,"message":…}}` (`invalid_request_error` for 400, `rate_limit_error` for 429 with `retry-after: 1`, `overloaded_error` for 529, `api_error` for other 5xx); default 500 |
//! | `usetool [command]` | a `tool_use` block for `Bash` with input `{"command": <rest of the text>, "description": "mock: run <command>"}`, stop reason `tool_use` (default command `echo mock-tool-ran`; the CLI asks permission only for commands that are not read-only) |
//! | `usemcp [tool] [json]` | a `tool_use` block of that tool (default `mcp__iris__list_teams`) with the JSON object as input (default `{}`) |
//! | `blocks a\|b\|c` | one message with a text block per `\|`-separated part |
//! | `slow [chunks] [delay_ms]` | one text block streamed as `slow-1/N`, ` slow-2/N`, … (one word each) with the delay between deltas (defaults 20 and 100 ms, see [`MockOptions`]); the mock stops when the client goes away ([`Outcome::ClientGone`]) |
//! | anything else | `echo: <text> (turns seen: N)` |
//!
//! When the last user turn carries a `tool_result` instead of text, the reply continues the tool script:
//! `after tool: <result text> (turns seen: N)`, or `after mcp: <first 200 characters of the result>` when the tool's
//! name starts with `mcp__`.
//!
//! `N` ("turns seen") counts the user messages in the request that have real text: not tool results, not reminders.
//! After a resume it still counts the earlier turns, which proves the context survived.
//!
//! # Usage numbers
//!
//! `input_tokens` = 100 × turns seen (at least 100); `output_tokens` = one per whitespace-separated word of the
//! reply's text plus 10 per `tool_use` block; no cache tokens. CLI 2.1.197 asks for model `claude-opus-4-8` and
//! prices it at $5 per million input and $25 per million output tokens: the first echo turn of `hi`
//! (`echo: hi (turns seen: 1)`, 100 in, 5 out) costs $0.000625.
//!
//! # What CLI 2.1.197 makes of the API errors
//!
//! With `CLAUDE_CODE_MAX_RETRIES=0` each error ends the turn at once (about 0.1 s): a synthetic `assistant`
//! message (`model: "<synthetic>"`, an `error` field) and a `result` with `subtype: "success"`, `is_error: true`,
//! `api_error_status: <status>`, zero usage and cost, and `result` text
//!
//! | status | `error` | `result` |
//! |---|---|---|
//! | 400 | `unknown` | `API Error: 400 <message>` |
//! | 429 | `rate_limit` | `API Error: Request rejected (429) · <message>` |
//! | 529 | `server_error` | `API Error: 529 Overloaded. This is a server-side issue, usually temporary — …` |
//! | 500 | `server_error` | `API Error: 500 <message>. This is a server-side issue, usually temporary — …` |
//!
//! Retries show as `system/api_retry` events (`attempt`, `max_retries`, `retry_delay_ms`, `error_status`, `error`);
//! the first 429 retry waits the `retry-after` second. After 529s exhaust their retries the result says `API Error:
//! Repeated 529 Overloaded errors…` with `api_error_status: null`. The process survives an error and the failed
//! prompt is left out of the conversation; if the last result was an error, closing stdin exits 1 (else 0).
//!
//! # Recording
//!
//! Every request is recorded ([`MockApi::requests`], [`RecordedRequest`]) with its method, path, model, stream flag,
//! last user text, turns seen, chosen [`Script`], reply text and [`Outcome`]; [`MockApi::counters`] sums them and
//! [`MockApi::wait_for`] waits for a condition on them. Unknown routes get a 404 `not_found_error` and are recorded.
//! `ANTHROPIC_MOCK_DUMP_DIR=<dir>` writes every request (headers and body) there.
//!
//! # The binary
//!
//! `anthropic-mock [--port N] [--dump DIR]` runs the mock for manual runs and prints its URL.
//! `anthropic-mock --mcp-stdio` is instead a minimal MCP server on stdin/stdout with the tools `list_teams`
//! (answers `teams: alpha, beta`) and `echo` (answers its `text`): configured for the CLI as server `iris`
//! (`--mcp-config '{"mcpServers":{"iris":{"type":"stdio","command":"<path>","args":["--mcp-stdio"]}}}'`, the path
//! being `env!("CARGO_BIN_EXE_anthropic-mock")` in this crate's tests), `usemcp` then calls
//! `mcp__iris__list_teams` for real.
#![deny(missing_docs)]

mod locate;
mod script;
mod server;
mod wire;

pub use locate::{
    BIN_ENV, CACHE_ENV, INSTALLER, NotInstalled, REQUIRE_ENV, installed_path, pinned_version,
    real_claude, real_claude_or_skip, real_claude_required,
};
pub use script::{
    DEFAULT_MCP_TOOL, DEFAULT_TOOL_COMMAND, INPUT_TOKENS_PER_TURN, MCP_RESULT_QUOTE_CHARS,
    OUTPUT_TOKENS_PER_TOOL_USE, Script,
};
pub use server::{
    CLAUDE_ENV_TO_REMOVE, Counters, DUMMY_API_KEY, MockApi, MockError, MockOptions, Outcome,
    RecordedRequest,
};
