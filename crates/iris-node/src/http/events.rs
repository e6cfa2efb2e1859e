//! `GET /api/v1/events`: the runtime's event stream ([`iris_runtime::events`]) as server-sent
//! events, for dashboards and integrations.
//!
//! - Each event is `id: <run>-<seq>`, `event: <kind>`, `data: <one JSON object>` whose fields are
//!   `seq`, `run`, `at`, `kind`, `from` and `to` for a pair's event, and the kind's own. A comment
//!   line (`:`) keeps an idle connection open every [`KEEP_ALIVE`].
//! - The first event of every connection is `hello` (no id): the node's name (in a cluster), its
//!   run and the number of the last event so far.
//! - **Resume.** A client that sends `Last-Event-ID` gets the events after that one that the
//!   node still keeps (the last [`iris_runtime::events::WINDOW`]), then the live ones. If they
//!   are no longer all kept, or the id is of an earlier run of the node (it restarted), it gets
//!   a `reset` event instead: it reloads what it shows, then follows the live stream. A client
//!   that falls behind the live stream is caught up from the kept events the same way.
//! - **Filters.** `?pair=alpha->beta` keeps that pair's events, `?team=alpha` those of every
//!   pair alpha is part of. Events about no pair (a team's or the node's budget) always pass.
//!
//! The token is required like everywhere else (a header, never the query string), so a browser
//! reads this with `fetch`, not `EventSource`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use iris_core::{Pair, TeamName};
use iris_runtime::events::{Event, EventBus, Resume};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::server::{ServerState, error_response};
use iris_api::ApiError;
use iris_api::error::ApiCode;

/// How often an idle stream gets a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query of `GET /api/v1/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this pair's events: `alpha->beta`.
    pair: Option<String>,
    /// Only the events of pairs this team is part of.
    team: Option<String>,
}

/// Which events a client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pair: Option<Pair>,
    team: Option<TeamName>,
}

impl Filter {
    /// Reads the query's filters; a bad value is a usage error naming it.
    pub fn from_query(query: EventsQuery) -> Result<Filter, ApiError> {
        let usage = |what: String| ApiError::new(ApiCode::Usage, what);
        let team = |name: &str, what: &str| {
            TeamName::new(name)
                .map_err(|e| usage(format!("{what} {name:?} is not a team name: {e}")))
        };
        let pair = match query.pair.as_deref() {
            None => None,
            Some(text) => {
                let (from, to) = text.split_once("->").ok_or_else(|| {
                    usage(format!(
                        "pair {text:?} is not a pair; write it as FROM->TO, e.g. ?pair=alpha->beta"
                    ))
                })?;
                Some(Pair::new(team(from, "pair")?, team(to, "pair")?))
            }
        };
        let team = query.team.as_deref().map(|t| team(t, "team")).transpose()?;
        Ok(Filter { pair, team })
    }

    /// Whether a client with this filter gets `event`.
    pub fn accepts(&self, event: &Event) -> bool {
        let Some(pair) = &event.pair else {
            return true;
        };
        self.pair.as_ref().is_none_or(|want| want == pair)
            && self
                .team
                .as_ref()
                .is_none_or(|team| *team == pair.from || *team == pair.to)
    }
}

/// `GET /api/v1/events`.
pub async fn events(
    State(state): State<ServerState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let filter = match query
        .map_err(|e| {
            ApiError::new(
                ApiCode::Usage,
                format!("the query is not understood: {e}; use ?pair=FROM->TO or ?team=NAME"),
            )
        })
        .and_then(|Query(query)| Filter::from_query(query))
    {
        Ok(filter) => filter,
        Err(error) => return error_response(&error),
    };
    let bus = state.runtime.events();
    let node = state.runtime.config().this_node().map(ToString::to_string);
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let feed = Feed::open(bus, filter, node, last_event_id.as_deref());
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let next = feed.next().await?;
        Some((Ok::<_, Infallible>(next), feed))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// One client's position in the stream.
struct Feed {
    bus: Arc<EventBus>,
    filter: Filter,
    /// What to send before waiting for the live stream.
    ready: VecDeque<SseEvent>,
    live: broadcast::Receiver<Arc<Event>>,
    /// The last event taken (sent or filtered out).
    last: u64,
}

impl Feed {
    fn open(
        bus: Arc<EventBus>,
        filter: Filter,
        node: Option<String>,
        last_event_id: Option<&str>,
    ) -> Feed {
        let resume_after = last_event_id.map(|id| parse_event_id(id, bus.run()));
        let subscription = bus.subscribe(resume_after.clone().and_then(Result::ok));
        let hello = json!({
            "kind": "hello",
            "seq": subscription.last_seq,
            "run": bus.run(),
            "at": iris_core::Timestamp::now(),
            "node": node,
            "last_seq": subscription.last_seq,
        });
        let mut feed = Feed {
            filter,
            ready: VecDeque::from([sse("hello", None, &hello)]),
            live: subscription.live,
            last: subscription.last_seq,
            bus,
        };
        match (resume_after, subscription.resume) {
            (Some(Err(reason)), _) => feed.reset(&reason),
            (Some(Ok(after)), Resume::Gap) => feed.reset(&format!(
                "the events after {after} are no longer kept (the node keeps the last {}); reload, then follow the stream",
                iris_runtime::events::WINDOW
            )),
            (Some(Ok(after)), Resume::From(missed)) => {
                feed.last = after;
                for event in missed {
                    feed.take(&event);
                }
            }
            (None, _) => {}
        }
        feed
    }

    /// The next event to send; `None` once the runtime is gone.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(ready) = self.ready.pop_front() {
                return Some(ready);
            }
            match self.live.recv().await {
                Ok(event) => self.take(&event),
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Queues `event` if it is new and the client wants it.
    fn take(&mut self, event: &Event) {
        if event.seq <= self.last {
            return;
        }
        self.last = event.seq;
        if self.filter.accepts(event) {
            self.ready.push_back(render(event, self.bus.run()));
        }
    }

    /// The live stream ran ahead of this client: take what it missed from the kept events.
    fn catch_up(&mut self) {
        let subscription = self.bus.subscribe(Some(self.last));
        self.live = subscription.live;
        let now = subscription.last_seq;
        match subscription.resume {
            Resume::From(missed) => {
                for event in missed {
                    self.take(&event);
                }
            }
            Resume::Gap => {
                self.last = now;
                self.reset("this client fell behind the events the node keeps");
            }
        }
    }

    /// Tells the client to reload what it shows; the live stream follows from `self.last`.
    fn reset(&mut self, reason: &str) {
        let reset = json!({
            "kind": "reset",
            "seq": self.last,
            "run": self.bus.run(),
            "at": iris_core::Timestamp::now(),
            "reason": reason,
        });
        self.ready.push_back(sse("reset", None, &reset));
    }
}

/// Reads a `Last-Event-ID` (`<run>-<seq>`) of run `run`; else why it cannot be resumed.
fn parse_event_id(id: &str, run: &str) -> Result<u64, String> {
    let (of_run, seq) = id
        .rsplit_once('-')
        .ok_or_else(|| format!("Last-Event-ID {id:?} is not an iris event id (RUN-SEQ); reload"))?;
    if of_run != run {
        return Err(format!(
            "event {id} is from an earlier run of the node (it restarted): reload, then follow the stream"
        ));
    }
    seq.parse()
        .map_err(|_| format!("Last-Event-ID {id:?} is not an iris event id (RUN-SEQ); reload"))
}

fn render(event: &Event, run: &str) -> SseEvent {
    let mut data =
        serde_json::to_value(event).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    data["run"] = Value::from(run);
    let kind = data["kind"].as_str().unwrap_or("event").to_owned();
    sse(&kind, Some(format!("{run}-{}", event.seq)), &data)
}

fn sse(kind: &str, id: Option<String>, data: &Value) -> SseEvent {
    let event = SseEvent::default().event(kind).data(data.to_string());
    match id {
        Some(id) => event.id(id),
        None => event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(name: &str) -> TeamName {
        TeamName::new(name).unwrap()
    }

    fn event(pair: Option<(&str, &str)>) -> Event {
        Event {
            seq: 1,
            at: iris_core::Timestamp::now(),
            pair: pair.map(|(f, t)| Pair::new(team(f), team(t))),
            kind: iris_runtime::events::EventKind::TurnStarted {
                turn_id: iris_core::TurnId::new(),
            },
        }
    }

    #[test]
    fn filters_keep_a_pair_or_a_team_and_always_events_of_no_pair() {
        let by_pair = Filter::from_query(EventsQuery {
            pair: Some("alpha->beta".into()),
            team: None,
        })
        .unwrap();
        assert!(by_pair.accepts(&event(Some(("alpha", "beta")))));
        assert!(!by_pair.accepts(&event(Some(("beta", "alpha")))));
        assert!(by_pair.accepts(&event(None)));
        let by_team = Filter::from_query(EventsQuery {
            pair: None,
            team: Some("beta".into()),
        })
        .unwrap();
        assert!(by_team.accepts(&event(Some(("alpha", "beta")))));
        assert!(by_team.accepts(&event(Some(("beta", "gamma")))));
        assert!(!by_team.accepts(&event(Some(("alpha", "gamma")))));
        for bad in ["alpha", "alpha->", "->beta", "al pha->beta"] {
            let error = Filter::from_query(EventsQuery {
                pair: Some(bad.into()),
                team: None,
            })
            .unwrap_err();
            assert_eq!(error.code(), ApiCode::Usage, "{bad}");
        }
    }

    #[test]
    fn an_event_id_resumes_only_within_its_run() {
        assert_eq!(parse_event_id("abc123-42", "abc123"), Ok(42));
        assert!(
            parse_event_id("old999-42", "abc123")
                .unwrap_err()
                .contains("restarted")
        );
        assert!(parse_event_id("garbage", "abc123").is_err());
        assert!(parse_event_id("abc123-x", "abc123").is_err());
    }
}
