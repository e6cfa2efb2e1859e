//! `GET /api/v1/events` of a real node, read as server-sent events over loopback: the order of
//! each pair's events, resuming from an event id, filters, and what needs the token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Scratch, run};

/// One server-sent event: its id (if any), its name and its data.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// A client's open event stream.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(base: &str, token: &str, query: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = support::http()
            .get(format!("{base}/api/v1/events{query}"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(600));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), waiting at most [`support::STEP`].
    async fn next(&mut self) -> Sse {
        let deadline = Instant::now() + support::STEP;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: None,
                    event: String::new(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        sse.id = Some(id.to_owned());
                    } else if let Some(event) = line.strip_prefix("event: ") {
                        sse.event = event.to_owned();
                    } else if let Some(more) = line.strip_prefix("data: ") {
                        data.push_str(more);
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                sse.data = serde_json::from_str(&data).unwrap();
                return sse;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events up to and including the first `until` accepts.
    async fn until(&mut self, until: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let done = until(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

fn pair_of(event: &Sse) -> Option<String> {
    Some(format!(
        "{}->{}",
        event.data["from"].as_str()?,
        event.data["to"].as_str()?
    ))
}

fn completed_for(pair: &'static str) -> impl Fn(&Sse) -> bool {
    move |e| e.event == "turn_completed" && pair_of(e).as_deref() == Some(pair)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_in_order_per_pair_resume_from_an_id_and_filter() {
    let scratch = Scratch::new(&["alpha", "beta", "gamma"]);
    scratch.write_config(&format!(
        "[database]\npath = {:?}\n\n[agent]\ncommand = \"fake-claude\"\n\n\
         [teams.alpha]\npath = {:?}\n[teams.beta]\npath = {:?}\n[teams.gamma]\npath = {:?}\n",
        scratch.db(),
        scratch.root().join("alpha"),
        scratch.root().join("beta"),
        scratch.root().join("gamma"),
    ));
    let node = scratch.start_node(scratch.command()).await;
    let endpoint = scratch.endpoint();
    let base = format!("http://{}", endpoint.addr);
    let token = endpoint.token.clone();

    // Without the token: nothing.
    let refused = support::http()
        .get(format!("{base}/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let mut all = Stream::open(&base, &token, "", None).await;
    let mut gamma_pair = Stream::open(&base, &token, "?pair=alpha->gamma", None).await;
    let mut beta_team = Stream::open(&base, &token, "?team=beta", None).await;
    for stream in [&mut all, &mut gamma_pair, &mut beta_team] {
        let hello = stream.next().await;
        assert_eq!(hello.event, "hello");
        assert_eq!(hello.data["last_seq"], 0);
    }

    for (to, message) in [("beta", "!stream 5 20"), ("gamma", "hello")] {
        let told = run(scratch.command(), &["tell", "alpha", to, message]).await;
        assert_eq!(told.code, Some(0), "{told:#?}");
    }
    let seen = all.until(completed_for("alpha->gamma")).await;

    // Numbered 1, 2, 3, … with ids RUN-SEQ, and each pair's turn in its order.
    let run_id = seen[0].data["run"].as_str().unwrap().to_owned();
    for (n, event) in seen.iter().enumerate() {
        assert_eq!(event.data["seq"], n as u64 + 1, "{event:?}");
        assert_eq!(
            event.id.as_deref(),
            Some(format!("{run_id}-{}", n + 1).as_str())
        );
        assert_eq!(event.data["kind"], event.event.as_str());
    }
    for pair in ["alpha->beta", "alpha->gamma"] {
        let kinds: Vec<&str> = seen
            .iter()
            .filter(|e| pair_of(e).as_deref() == Some(pair))
            .map(|e| e.event.as_str())
            .filter(|k| !matches!(*k, "session" | "process_started"))
            .collect();
        let texts = kinds.iter().filter(|k| **k == "text").count();
        assert!(texts >= 1, "{pair}: {kinds:?}");
        let mut expected = vec!["session_created", "turn_queued", "turn_started"];
        expected.extend(std::iter::repeat_n("text", texts));
        expected.push("turn_completed");
        assert_eq!(kinds, expected, "{pair}");
    }
    let streamed: String = seen
        .iter()
        .filter(|e| e.event == "text" && pair_of(e).as_deref() == Some("alpha->beta"))
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, "chunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5");
    let done = seen
        .iter()
        .find(|e| completed_for("alpha->beta")(e))
        .unwrap();
    assert!(done.data["cost_usd"].as_f64().unwrap() > 0.0, "{done:?}");

    // Filters: one pair, or one team's pairs.
    let only_gamma = gamma_pair.until(completed_for("alpha->gamma")).await;
    assert!(
        only_gamma
            .iter()
            .all(|e| pair_of(e).as_deref() == Some("alpha->gamma"))
    );
    let with_beta = beta_team.until(completed_for("alpha->beta")).await;
    assert!(
        with_beta
            .iter()
            .all(|e| pair_of(e).as_deref() == Some("alpha->beta"))
    );
    assert_eq!(
        with_beta.len(),
        seen.iter()
            .filter(|e| pair_of(e).as_deref() == Some("alpha->beta"))
            .count()
    );

    // Resume after the fourth event: the same events from the fifth on, then live ones.
    let mut resumed = Stream::open(&base, &token, "", seen[3].id.as_deref()).await;
    assert_eq!(resumed.next().await.event, "hello");
    let again = resumed.until(completed_for("alpha->gamma")).await;
    let ids = |events: &[Sse]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&seen[4..]));
    let told = run(scratch.command(), &["tell", "beta", "gamma", "live"]).await;
    assert_eq!(told.code, Some(0), "{told:#?}");
    let live = resumed.until(completed_for("beta->gamma")).await;
    assert_eq!(live[0].data["seq"], seen.len() as u64 + 1);

    // An id of another run (the node restarted since): reset, then the live stream.
    let mut stale = Stream::open(&base, &token, "", Some("0123456789ab-7")).await;
    assert_eq!(stale.next().await.event, "hello");
    let reset = stale.next().await;
    assert_eq!(reset.event, "reset");
    assert!(
        reset.data["reason"].as_str().unwrap().contains("restarted"),
        "{reset:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_is_served_without_the_token_and_nothing_else_is() {
    let scratch = Scratch::new(&["alpha"]);
    scratch.write_config(&format!(
        "[database]\npath = {:?}\n\n[agent]\ncommand = \"fake-claude\"\n\n[teams.alpha]\npath = {:?}\n",
        scratch.db(),
        scratch.root().join("alpha"),
    ));
    let node = scratch.start_node(scratch.command()).await;
    let base = format!("http://{}", scratch.endpoint().addr);
    for (path, content_type) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ] {
        let response = support::http()
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'self'"), "{policy}");
        let body = response.text().await.unwrap();
        assert!(!body.contains(&scratch.endpoint().token), "{path}");
    }
    for path in [
        "/api/v1/events",
        "/healthz",
        "/dashboard.json",
        "/index.html",
    ] {
        let response = support::http()
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    let out = run(scratch.command(), &["dashboard"]).await;
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert_eq!(
        out.json["url"].as_str().unwrap(),
        format!("{base}/#token={}", scratch.endpoint().token)
    );
    node.stop().await;
    let out = run(scratch.command(), &["dashboard"]).await;
    assert_eq!(out.error_code(), "NODE_UNAVAILABLE", "{out:#?}");
    assert!(out.error_message().contains("iris node"), "{out:#?}");
}
