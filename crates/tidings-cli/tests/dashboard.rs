//! The dashboard, in headless Chromium (Debian's `chromium` and `chromium-driver`, which
//! `.ci/run` installs; `TIDINGS_CHROMEDRIVER` names another driver): the page loads, its
//! numbers follow what is published, and a dead letter is replayed by a click.
//!
//! The server runs on the embedded store with a webhook subscription to the Python receiver
//! of the webhook tests, which refuses the first delivery of the event to replay (a dead
//! letter) and takes the second.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Receiver, Served, http, webhook_config};
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use tidings_testkit::process::{Guarded, free_port, wait_for_port};

/// A chromedriver of its own, on a free port, with a headless Chromium session.
struct Browser {
    client: fantoccini::Client,
    _driver: Guarded,
}

impl Browser {
    async fn start(driver: &str) -> Self {
        let port = free_port();
        let driver = Guarded::spawn(
            Command::new(driver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(20), "chromedriver").await;
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1100"],
        });
        if let Ok(binary) = std::env::var("TIDINGS_CHROMIUM") {
            options["binary"] = json!(binary);
        } else if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let client = tidings_testkit::within(
            Duration::from_secs(60),
            "a Chromium session",
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("a Chromium session");
        Self {
            client,
            _driver: driver,
        }
    }

    /// The text of `selector`, once it exists.
    async fn text(&self, selector: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("`{selector}` on the page: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// Waits until the text of `selector` satisfies `wanted`; returns it.
    async fn text_until(
        &self,
        selector: &str,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.text(selector).await;
            if wanted(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{selector}` still shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn count(text: &str) -> u64 {
    text.replace(',', "").trim().parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_numbers_and_replays_a_dead_letter_by_click() {
    let driver = std::env::var("TIDINGS_CHROMEDRIVER")
        .unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
    if !std::path::Path::new(&driver).exists() {
        return tidings_testkit::service::unavailable(
            "chromedriver (Debian: chromium chromium-driver)",
            &format!("{driver} does not exist"),
        );
    }
    let Ok(python) = std::env::var("TIDINGS_PYTHON") else {
        return tidings_testkit::service::unavailable(
            "a Python with standardwebhooks (TIDINGS_PYTHON)",
            &"TIDINGS_PYTHON is not set",
        );
    };
    // In the form the Standard Webhooks libraries make: `whsec_` and base64.
    let secret = "whsec_ZGFzaGJvYXJkLXRlc3Qtc2VjcmV0";
    let mut receiver = Receiver::start(&python, secret);
    let dir = tempfile::tempdir().expect("dir");
    let config = webhook_config(
        dir.path(),
        receiver.port,
        secret,
        "",
        "max_attempts = 2\nbackoff = \"50ms\"",
    );
    let served = Served::start_with(&["--config", config.to_str().expect("utf-8")]);
    let browser = Browser::start(&driver).await;
    browser
        .client
        .goto(&served.url("/"))
        .await
        .expect("load the page");
    browser
        .text_until("#ready", "the transport's readiness", |t| t == "ready")
        .await;
    let before = count(&browser.text("#published").await);

    let http = http();
    let publish = |event: Value| served.post_event(&http, &event).send();
    for i in 0..5 {
        let answer = publish(json!({
            "specversion": "1.0", "id": format!("fine-{i}"), "source": "checkout",
            "type": "order.created", "data": { "answers": [200] },
        }))
        .await
        .expect("post");
        assert_eq!(answer.status(), 202);
    }
    browser
        .text_until("#published", "the published count after 5 events", |t| {
            count(t) >= before + 5
        })
        .await;
    browser
        .text_until("#acked", "the handled count after 5 events", |t| {
            count(t) >= 5
        })
        .await;

    // Refused once (400: a dead letter at once), taken when replayed.
    let answer = publish(json!({
        "specversion": "1.0", "id": "to-replay", "source": "checkout",
        "type": "order.paid", "tenantid": "acme", "data": { "answers": [400, 200] },
    }))
    .await
    .expect("post");
    assert_eq!(answer.status(), 202);
    receiver.wait_until(Duration::from_secs(20), "the refused delivery", |seen| {
        seen.iter().any(|r| r["id"] == "to-replay")
    });
    let row = r#"#dlq-rows tr[data-event-id="to-replay"]"#;
    let replay = browser
        .client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!("{row} button.replay")))
        .await
        .expect("the dead letter's row, with its Replay button");
    let shown = browser.text(row).await;
    assert!(
        shown.contains("order.paid") && shown.contains("acme"),
        "{shown}"
    );
    assert!(shown.contains("400"), "the error is shown: {shown}");
    browser
        .client
        .find(Locator::Css(row))
        .await
        .expect("row")
        .click()
        .await
        .expect("inspect it");
    let detail = browser.text("#dlq-detail pre").await;
    assert!(
        detail.contains("400"),
        "the details show the error: {detail}"
    );

    let screenshot = browser.client.screenshot().await.expect("screenshot");
    let shot = std::env::temp_dir().join("tidings-dashboard.png");
    std::fs::write(&shot, screenshot).expect("write the screenshot");
    eprintln!("dashboard screenshot: {}", shot.display());

    replay.click().await.expect("click Replay");
    receiver.wait_until(Duration::from_secs(20), "the replayed delivery", |seen| {
        seen.iter()
            .any(|r| r["id"] == "to-replay" && r["attempt"] == 2 && r["status"] == 200)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser
        .client
        .find_all(Locator::Css(row))
        .await
        .expect("rows")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the replayed letter left the list"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser
        .text_until("#dead-letters", "no dead letter left", |t| count(t) == 0)
        .await;
    browser.client.close().await.expect("close the browser");
    assert_eq!(served.terminate(), Some(0));
}
