//! The dashboard in a real browser: headless Chromium, driven through chromedriver (WebDriver)
//! by fantoccini, against a real `iris node` whose agent is fake-claude.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver` packages (`.ci/run`
//! installs them). Where they are missing the test says so and passes, unless
//! `IRIS_REQUIRE_BROWSER=1` (CI) makes that a failure. `IRIS_CHROMIUM` and `IRIS_CHROMEDRIVER`
//! name other binaries.
//!
//! The screenshots it takes are written to `$CARGO_TARGET_TMPDIR/dashboard/` (under
//! `target/tmp/`): `streaming.png` while a turn streams, `cancelled.png` after it was cancelled
//! from the page, and `narrow.png` in a 480 px window. Between the two windows the node restarts,
//! and the page reconnects on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{Scratch, run};
use tokio::process::{Child, Command};

/// How long the page may take to show something.
const SHOW: Duration = Duration::from_secs(30);

/// A binary named by `var`, else the first of `names` on `PATH`.
fn find_binary(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// chromedriver, in a process group of its own: dropping it kills the group, so the browser it
/// started goes too, even when the test fails half-way.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(chromedriver: &PathBuf) -> Driver {
        let port = support::free_ports(1)[0];
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let deadline = Instant::now() + SHOW;
        loop {
            let ready = support::http().get(&status).send().await;
            if let Ok(response) = ready
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, url }
    }

    /// A headless Chromium session.
    async fn browser(&self, chromium: &PathBuf, width: u32, height: u32) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // The whole group: chromedriver and the browsers it started.
            let group = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The text of the element `css`, or `None` while it is not there.
async fn text_of(client: &Client, css: &str) -> Option<String> {
    let element = client.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

/// Waits until the text of `css` satisfies `check`, and returns it.
async fn until_text(
    client: &Client,
    css: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + SHOW;
    loop {
        let text = text_of(client, css).await;
        if let Some(text) = &text
            && check(text)
        {
            return text.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {what}: {css} reads {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes a screenshot into the screenshots directory and checks it is not blank: a page that
/// rendered has many colours, a blank one a handful.
async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &png).unwrap();
    let colours = distinct_colours(&png);
    assert!(
        colours >= 16,
        "{} looks blank: {colours} distinct colours",
        path.display()
    );
    path
}

fn distinct_colours(png: &[u8]) -> usize {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    pixels[..frame.buffer_size()]
        .chunks(channels)
        .map(|p| p[..3.min(channels)].to_vec())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_streaming_turn_and_cancels_it_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (
        find_binary(
            "IRIS_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ),
        find_binary("IRIS_CHROMEDRIVER", &["chromedriver"]),
    ) else {
        assert!(
            std::env::var_os("IRIS_REQUIRE_BROWSER").is_none(),
            "IRIS_REQUIRE_BROWSER is set but chromium or chromedriver is missing; install Debian's chromium and chromium-driver"
        );
        eprintln!(
            "skipped: chromium and chromedriver are not installed (apt install chromium chromium-driver)"
        );
        return;
    };
    let scratch = Scratch::new(&["alpha", "beta"]);
    scratch.write_config(&format!(
        "[database]\npath = {:?}\n\n[agent]\ncommand = \"fake-claude\"\n\n\
         [teams.alpha]\npath = {:?}\n\n[teams.beta]\npath = {:?}\n",
        scratch.db(),
        scratch.root().join("alpha"),
        scratch.root().join("beta"),
    ));
    let node = scratch.start_node(scratch.command()).await;
    let out = run(scratch.command(), &["dashboard"]).await;
    assert_eq!(out.code, Some(0), "{out:#?}");
    let url = out.json["url"].as_str().unwrap().to_owned();
    assert!(url.contains("/#token="), "{url}");

    let driver = Driver::start(&chromedriver).await;
    let client = driver.browser(&chromium, 1280, 900).await;
    client.goto(&url).await.unwrap();
    until_text(&client, "#conn", "the live stream", |t| t == "live").await;
    // The token left the address bar (it stays in the tab's session storage).
    let shown = client.current_url().await.unwrap();
    assert_eq!(shown.fragment(), None, "{shown}");
    let cell = r#"td[data-pair="alpha->beta"]"#;
    let before = text_of(&client, &format!("{cell} .status")).await;
    assert!(before.as_deref().is_none_or(str::is_empty), "{before:?}");

    // A long streaming turn: the pair appears, and its text streams into the page.
    let told = run(
        scratch.command(),
        &["tell", "alpha", "beta", "!stream 300 50", "--async"],
    )
    .await;
    assert_eq!(told.code, Some(0), "{told:#?}");
    until_text(
        &client,
        &format!("{cell} .status"),
        "the pair's session",
        |t| t.contains("active"),
    )
    .await;
    until_text(
        &client,
        r#"#pair[data-pair="alpha->beta"] #pair-title"#,
        "the pair selected",
        |t| !t.is_empty(),
    )
    .await;
    until_text(&client, "#turn-text", "the streamed text", |t| {
        t.contains("chunk 1") && t.contains("chunk 3")
    })
    .await;
    until_text(&client, "#turn-state", "the turn running", |t| {
        t == "running"
    })
    .await;
    screenshot(&client, "streaming.png").await;

    // Cancel from the page, confirmed in its dialog: the turn ends as cancelled.
    client
        .find(Locator::Css("#btn-cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let confirm = client
        .wait()
        .for_element(Locator::Css("#confirm-ok"))
        .await
        .unwrap();
    confirm.click().await.unwrap();
    until_text(&client, "#turn-state", "the turn cancelled", |t| {
        t == "cancelled"
    })
    .await;
    screenshot(&client, "cancelled.png").await;
    let report = run(scratch.command(), &["report", "alpha", "beta"]).await;
    assert_eq!(report.json[0]["status"], "cancelled", "{report:#?}");

    // The node restarts (on its previous port, with its token): the page notices, reconnects
    // on its own, and shows the pair again from the new node.
    node.stop().await;
    until_text(&client, "#conn", "the lost connection", |t| t != "live").await;
    let node = scratch.start_node(scratch.command()).await;
    until_text(&client, "#conn", "the stream again", |t| t == "live").await;
    until_text(
        &client,
        &format!("{cell} .status"),
        "the pair after the restart",
        |t| t.contains("active"),
    )
    .await;
    let form_shown = client
        .find(Locator::Css("#token-form"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap();
    assert!(!form_shown, "the page asked for a token after the restart");
    client.close().await.unwrap();

    // Readable in a narrow window too.
    let narrow = driver.browser(&chromium, 480, 900).await;
    narrow.goto(&url).await.unwrap();
    until_text(&narrow, "#conn", "the live stream", |t| t == "live").await;
    until_text(&narrow, &format!("{cell} .status"), "the pair", |t| {
        t.contains("active")
    })
    .await;
    screenshot(&narrow, "narrow.png").await;
    narrow.close().await.unwrap();
    node.stop().await;
}
