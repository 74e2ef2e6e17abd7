//! Webhook subscriptions and API tokens of `tidings serve`, on the embedded store, against an
//! endpoint written in Python with the `standardwebhooks` library
//! (`tests/webhook_receiver.py`, run by CI's Python: `TIDINGS_PYTHON`).
//!
//! The receiver answers each event as its data asks, so one run covers every rule: a 2xx
//! acks, 5xx and 429 retry (429 after its `Retry-After`), another 4xx dead-letters at once,
//! running out of attempts dead-letters, at most `concurrency` requests are in flight, and
//! every request carries a signature and timestamp the library accepts. Then the tokens: a
//! tenant's token stamps its tenant, cannot publish as another tenant or outside its topics,
//! sees only its tenant's dead letters, cannot purge; replay over the API delivers again.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use common::{Receiver, Served, http};
use serde_json::{Value, json};

fn attempts(seen: &[Value], id: &str) -> usize {
    seen.iter().filter(|r| r["id"] == id).count()
}

/// An event of `ty` whose data tells the receiver how to answer.
fn event(id: &str, ty: &str, answers: &[u16], sleep_ms: u64) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "checkout-py", "type": ty,
        "datacontenttype": "application/json",
        "data": { "answers": answers, "sleep_ms": sleep_ms },
    })
}

const ACME: &str = "acme-token-7f3a";
const GLOBEX: &str = "globex-token-91c2";
const OPS: &str = "ops-token-0d4e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_settle_by_the_answer_and_tokens_keep_tenants_apart() {
    let Ok(python) = std::env::var("TIDINGS_PYTHON") else {
        return tidings_testkit::service::unavailable(
            "a Python with standardwebhooks (TIDINGS_PYTHON)",
            &"TIDINGS_PYTHON is not set",
        );
    };
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(fastrand::u64(..).to_le_bytes())
    );
    let mut receiver = Receiver::start(&python, &secret);
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        format!(
            r##"
store = "{store}"

[serve]
listen = "127.0.0.1:0"

[[serve.tokens]]
name = "acme-checkout"
token = "{ACME}"
tenant = "acme"
publish = ["order.#"]
subscribe = ["order.#"]

[[serve.tokens]]
name = "globex-billing"
token = "{GLOBEX}"
tenant = "globex"
publish = ["order.#"]
subscribe = ["order.#"]

[[serve.tokens]]
name = "ops"
token_env = "TIDINGS_TEST_OPS_TOKEN"
tenant = "*"
subscribe = ["#"]

[[serve.webhooks]]
name = "notify"
patterns = ["order.*"]
url = "http://127.0.0.1:{port}/events"
secret = "{secret}"
concurrency = 2
max_attempts = 3
backoff = "100ms"
timeout = "5s"
"##,
            store = dir.path().join("tidings.db").display(),
            port = receiver.port,
        ),
    )
    .expect("config");
    let served = Served::start_with_env(
        &["--config", config.to_str().expect("utf-8")],
        &[("TIDINGS_TEST_OPS_TOKEN", OPS)],
    );
    let http = http();
    let publish =
        |token: &str, event: Value| served.post_event(&http, &event).bearer_auth(token).send();

    // Every way a delivery can be settled.
    let plans: [(&str, &[u16], u64); 5] = [
        ("ok", &[200], 0),
        ("flaky", &[503, 503, 204], 0),
        ("throttled", &[429, 200], 0),
        ("bad", &[400], 0),
        ("exhausted", &[500], 0),
    ];
    for (id, answers, sleep) in plans {
        let answer = publish(ACME, event(id, "order.created", answers, sleep))
            .await
            .expect("post");
        assert_eq!(answer.status(), 202, "{id}");
    }
    for i in 0..6 {
        let answer = publish(ACME, event(&format!("slow-{i}"), "order.paid", &[200], 300))
            .await
            .expect("post");
        assert_eq!(answer.status(), 202);
    }
    receiver.wait_until(Duration::from_secs(60), "every planned request", |seen| {
        attempts(seen, "ok") == 1
            && attempts(seen, "flaky") == 3
            && attempts(seen, "throttled") == 2
            && attempts(seen, "bad") == 1
            && attempts(seen, "exhausted") == 3
            && (0..6).all(|i| attempts(seen, &format!("slow-{i}")) == 1)
    });

    for request in &receiver.seen {
        assert_eq!(
            request["verified"], true,
            "the library accepted the signature and timestamp: {request}"
        );
        assert_eq!(request["content_type"], "application/cloudevents+json");
        assert_eq!(request["webhook_id"], request["id"]);
        assert_eq!(
            request["event"]["tenantid"], "acme",
            "the token's tenant was stamped on the event"
        );
    }
    let statuses = |id: &str| -> Vec<u64> {
        receiver
            .of(id)
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(statuses("flaky"), [503, 503, 204], "5xx retried until 2xx");
    assert_eq!(
        statuses("exhausted"),
        [500, 500, 500],
        "three attempts, no more"
    );
    let throttled = receiver.of("throttled");
    let waited = throttled[1]["at"].as_f64().unwrap() - throttled[0]["at"].as_f64().unwrap();
    assert!(
        waited >= 0.9,
        "429 waited for its Retry-After (1 s): {waited:.2} s"
    );
    let most_in_flight = receiver
        .seen
        .iter()
        .map(|r| r["concurrent"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        most_in_flight, 2,
        "the subscription's concurrency, reached, never passed"
    );

    // The dead letters: `bad` (400, at once) and `exhausted` (three 500s).
    let letters = |token: &'static str| {
        let request = http
            .get(served.url("/v1/subscriptions/notify/dead-letters"))
            .bearer_auth(token)
            .send();
        async move {
            let answer = request.await.expect("get");
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.expect("json")
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed = letters(ACME).await;
        if listed["dead_letters"].as_array().unwrap().len() == 2 {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "two dead letters: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_event: BTreeMap<String, Value> = listed["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["event"]["id"].as_str().unwrap().to_owned(), l.clone()))
        .collect();
    assert_eq!(by_event["bad"]["reason"], "rejected");
    assert!(
        by_event["bad"]["error"].as_str().unwrap().contains("400"),
        "{}",
        by_event["bad"]
    );
    assert_eq!(by_event["exhausted"]["reason"], "retries_exhausted");
    assert_eq!(by_event["exhausted"]["attempts"], 3);

    // Another tenant sees none of them, not even by id, and cannot publish as acme.
    assert_eq!(letters(GLOBEX).await["dead_letters"], json!([]));
    let bad_letter = by_event["bad"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/subscriptions/notify/dead-letters/{bad_letter}");
    let peek = http.get(served.url(&path)).bearer_auth(GLOBEX).send().await;
    assert_eq!(peek.expect("get").status(), 404);
    let mut as_acme = event("spoof", "order.created", &[200], 0);
    as_acme["tenantid"] = json!("acme");
    let spoof = publish(GLOBEX, as_acme).await.expect("post");
    assert_eq!(spoof.status(), 403);
    assert_eq!(spoof.json::<Value>().await.unwrap()["error"], "forbidden");
    let elsewhere = publish(ACME, event("inv", "invoice.sent", &[200], 0));
    assert_eq!(
        elsewhere.await.expect("post").status(),
        403,
        "outside its topics"
    );
    let anonymous = served
        .post_event(&http, &event("anon", "order.created", &[200], 0))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), 401);
    let wrong = publish("not-a-token", event("x", "order.created", &[200], 0));
    assert_eq!(wrong.await.expect("post").status(), 401);
    let purge = http
        .delete(served.url("/v1/subscriptions/notify/dead-letters"))
        .bearer_auth(ACME)
        .send()
        .await
        .expect("delete");
    assert_eq!(purge.status(), 403, "a tenant's token cannot purge");

    // Replayed over the API: delivered again (and refused again, so back in the queue).
    let replay = http
        .post(served.url(&format!("{path}/replay")))
        .bearer_auth(ACME)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 200);
    receiver.wait_until(Duration::from_secs(20), "the replayed delivery", |seen| {
        attempts(seen, "bad") == 2
    });
    assert!(
        receiver.of("spoof").is_empty() && receiver.of("inv").is_empty(),
        "refused publishes were not delivered"
    );

    // The operator's token (from its environment variable) sees both and purges.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ops = letters(OPS).await;
        if ops["total"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "back to two: {ops}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let purged = http
        .delete(served.url("/v1/subscriptions/notify/dead-letters"))
        .bearer_auth(OPS)
        .send()
        .await
        .expect("delete");
    assert_eq!(purged.status(), 200);
    assert_eq!(purged.json::<Value>().await.unwrap()["purged"], 2);
    assert_eq!(served.terminate(), Some(0));
}
