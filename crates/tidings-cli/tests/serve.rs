//! `tidings serve`: the HTTP gateway publishes to the transport (the machine's Redis here,
//! so that the test can subscribe beside it), answers errors as JSON, and stops on SIGTERM
//! without losing an event it accepted.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::redis::{RedisConfig, RedisTransport};
use tidings::trace::TraceParent;
use tidings::transport::{DeliveryStream, Subscriber};
use tidings_testkit::process::{self, Guarded};
use tidings_testkit::{Namespace, conformance::spec, recv, within};

mod common;
use common::{Served, http, redis_url};

/// A subscription on the machine's Redis, or `None` (outside CI) when Redis is down.
async fn subscribe(ns: &Namespace, patterns: &[&str]) -> Option<DeliveryStream> {
    let transport = match RedisTransport::connect(RedisConfig::new(redis_url())).await {
        Ok(transport) => transport,
        Err(error) => {
            tidings_testkit::service::unavailable("Redis", &error);
            return None;
        }
    };
    Some(
        transport
            .subscribe(&spec(ns, "gateway", patterns).with_prefetch(256))
            .await
            .expect("subscribe"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_in_either_content_mode_or_in_a_batch_reach_the_subscription() {
    let ns = Namespace::new();
    let Some(mut stream) = subscribe(&ns, &["order.#"]).await else {
        return;
    };
    let served = Served::start(&[]);
    let http = http();

    let structured = Envelope::new("checkout-py", ns.topic("order.created"))
        .with_subject("order_1")
        .with_tenant("acme")
        .with_json_data(&serde_json::json!({ "total": 12.5 }))
        .unwrap();
    let body = tidings::codec::Codec::encode(&tidings::codec::StructuredJson, &structured).unwrap();
    // The caller's trace: the event continues it.
    let request_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let answer = http
        .post(served.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .header("traceparent", request_trace)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 202);
    let got = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("structured");
    let mut arrived = (**got.envelope().unwrap()).clone();
    let trace = TraceParent::parse(arrived.extensions.traceparent.as_deref().unwrap_or(""))
        .expect("a valid traceparent");
    assert_eq!(
        trace.to_string(),
        request_trace,
        "the request's span is the parent"
    );
    arrived.extensions.traceparent = None;
    assert_eq!(arrived, structured, "otherwise the event as posted");
    got.ack().await.unwrap();

    // Binary mode, a header value percent-encoded as the HTTP binding asks.
    let answer = http
        .post(served.url("/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "evt-2")
        .header("ce-source", "billing-py")
        .header("ce-type", ns.topic("order.paid"))
        .header("ce-subject", "order%201")
        .header("content-type", "application/json")
        .body(r#"{"amount":12.5}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 202);
    let got = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("binary");
    let envelope = got.envelope().unwrap();
    assert_eq!(envelope.id, "evt-2");
    assert!(
        envelope
            .extensions
            .traceparent
            .as_deref()
            .and_then(TraceParent::parse)
            .is_some(),
        "an event published without a trace starts one"
    );
    assert_eq!(envelope.subject.as_deref(), Some("order 1"));
    assert_eq!(
        envelope.data_as::<serde_json::Value>().unwrap()["amount"],
        12.5
    );
    got.ack().await.unwrap();

    let batch: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::json!({
                "specversion": "1.0", "id": format!("b{i}"), "source": "py",
                "type": ns.topic("order.shipped"),
            })
        })
        .collect();
    let answer = served
        .post_batch(&http, &serde_json::Value::from(batch))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 202);
    let accepted: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(accepted["accepted"], 3);
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let got = recv(&mut stream, Duration::from_secs(10))
            .await
            .expect("batch");
        ids.insert(got.envelope().unwrap().id.clone());
        got.ack().await.unwrap();
    }
    assert_eq!(
        ids,
        BTreeSet::from(["b0".to_owned(), "b1".to_owned(), "b2".to_owned()])
    );
    assert_eq!(served.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_it_cannot_take_get_a_json_reason() {
    let ns = Namespace::new();
    if subscribe(&ns, &["#"]).await.is_none() {
        return;
    }
    let served = Served::start(&["--max-body", "1024"]);
    let http = http();
    let cases: [(&str, Option<&str>, String, u16, &str); 4] = [
        (
            "/v1/events",
            Some("text/plain"),
            "hi".to_owned(),
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/events",
            Some("application/cloudevents+json"),
            r#"{"id":"1","source":"s","type":"t"}"#.to_owned(),
            400,
            "invalid_event",
        ),
        (
            "/v1/events",
            Some("application/cloudevents+json"),
            format!(
                r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","data":"{}"}}"#,
                "x".repeat(2000)
            ),
            413,
            "too_large",
        ),
        (
            "/v1/events:batch",
            Some("application/cloudevents-batch+json"),
            r#"[{"specversion":"1.0","id":"1","source":"s","type":"t"}, {"id":"2"}]"#.to_owned(),
            400,
            "invalid_event",
        ),
    ];
    for (path, content_type, body, status, code) in cases {
        let mut request = http.post(served.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = request.send().await.expect("post");
        assert_eq!(answer.status().as_u16(), status, "{path}");
        let error: serde_json::Value = answer.json().await.expect("a JSON error");
        assert_eq!(error["error"], code, "{error}");
        assert!(
            !error["reason"].as_str().unwrap_or_default().is_empty(),
            "{error}"
        );
    }
    let health = http.get(served.url("/healthz")).send().await.expect("get");
    assert_eq!(health.status(), 200);
}

/// SIGTERM in the middle of a burst from 8 clients: the server stops taking requests,
/// finishes those in flight and exits 0; every event it answered 202 is on the
/// subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_no_accepted_event() {
    let ns = Namespace::new();
    let Some(mut stream) = subscribe(&ns, &["order.#"]).await else {
        return;
    };
    let served = Served::start(&[]);
    let url = served.url("/v1/events");
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (url, accepted, ns) = (url.clone(), accepted.clone(), ns.clone());
        clients.push(tokio::spawn(async move {
            let http = http();
            for seq in 0.. {
                let id = format!("c{client}-{seq}");
                let body = serde_json::json!({
                    "specversion": "1.0", "id": id, "source": "burst",
                    "type": ns.topic("order.created"),
                });
                match http
                    .post(&url)
                    .header("content-type", "application/cloudevents+json")
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(answer) if answer.status() == 202 => accepted.lock().unwrap().push(id),
                    // Refused while stopping, or the connection closed: not accepted.
                    _ => return,
                }
            }
        }));
    }
    let burst = async {
        while accepted.lock().unwrap().len() < 300 {
            assert!(
                !clients.iter().all(|client| client.is_finished()),
                "every client stopped after {} accepted events",
                accepted.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    within(Duration::from_secs(60), "300 accepted events", burst).await;
    let code = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "a clean exit");
    for client in clients {
        let _ = within(Duration::from_secs(30), "a client", client).await;
    }
    let accepted: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let mut arrived = BTreeSet::new();
    while arrived.len() < accepted.len() {
        let Some(got) = recv(&mut stream, Duration::from_secs(10)).await else {
            break;
        };
        arrived.insert(got.envelope().unwrap().id.clone());
        got.ack().await.unwrap();
    }
    let missing: Vec<_> = accepted.difference(&arrived).collect();
    eprintln!(
        "SIGTERM during a burst: {} accepted, {} arrived, {} missing",
        accepted.len(),
        arrived.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "accepted but lost: {missing:?}");
}

/// The OpenAPI document the gateway serves is valid OpenAPI 3.1 (checked by
/// `openapi-spec-validator` from CI's Python when there is one), every operation in it is
/// routed, and its request examples are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_describes_the_routes() {
    let ns = Namespace::new();
    if subscribe(&ns, &["#"]).await.is_none() {
        return;
    }
    let served = Served::start(&[]);
    let http = http();
    let answer = http
        .get(served.url("/v1/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");

    match std::env::var("TIDINGS_PYTHON") {
        Ok(python) => {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("openapi.json");
            std::fs::write(&file, &text).unwrap();
            let out = process::output(
                Command::new(python)
                    .args(["-m", "openapi_spec_validator"])
                    .arg(&file),
                Duration::from_secs(60),
            );
            assert!(
                out.status.success(),
                "openapi-spec-validator: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => tidings_testkit::service::unavailable(
            "a Python with openapi-spec-validator (TIDINGS_PYTHON)",
            &"TIDINGS_PYTHON is not set",
        ),
    }

    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (template, item) in paths {
        // A subscription that exists nowhere, and a dead letter that does not: the answers
        // are still documented ones (an empty page, `404`).
        let path = template
            .replace("{name}", &ns.subscription("openapi"))
            .replace("{id}", "no-such-letter");
        let path = &path;
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let documented: BTreeSet<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|code| code.parse().unwrap())
                .collect();
            let answer = match method.as_str() {
                "get" => http.get(served.url(path)).send().await.unwrap(),
                "delete" => http.delete(served.url(path)).send().await.unwrap(),
                "post" if operation.get("requestBody").is_none() => {
                    http.post(served.url(path)).send().await.unwrap()
                }
                "post" => {
                    let content = operation["requestBody"]["content"].as_object().unwrap();
                    let (content_type, media) = content
                        .iter()
                        .find(|(_, media)| media.get("example").is_some())
                        .expect("a request example");
                    http.post(served.url(path))
                        .header("content-type", content_type)
                        .body(media["example"].to_string())
                        .send()
                        .await
                        .unwrap()
                }
                other => panic!("an operation the test does not know: {other}"),
            };
            let status = answer.status().as_u16();
            assert!(
                documented.contains(&status),
                "{method} {path} answered {status}, documented {documented:?}"
            );
            let missing_letter = template.contains("{id}");
            assert!(
                status < 300 || (missing_letter && status == 404),
                "{method} {path}: its example was not accepted: {}",
                answer.text().await.unwrap_or_default()
            );
        }
    }
    assert_eq!(operations, 13);
}

/// `/readyz` follows the transport: ready while its Redis answers, 503 with the reason
/// while it is down, ready again when it is back. The Redis is the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_transports_connection() {
    let port = process::free_port().to_string();
    let start_redis = || {
        Guarded::try_spawn(
            Command::new("redis-server")
                .args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let mut redis = match start_redis() {
        Ok(child) => child,
        Err(error) => {
            return tidings_testkit::service::unavailable("redis-server (the binary)", &error);
        }
    };
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while RedisTransport::connect(RedisConfig::new(&url))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = Served::start_at(&url, &[]);
    let http = http();
    let ready = || async {
        let answer = http.get(served.url("/readyz")).send().await.expect("get");
        let status = answer.status().as_u16();
        (
            status,
            answer.json::<serde_json::Value>().await.expect("json"),
        )
    };
    let (status, body) = ready().await;
    assert_eq!(
        (status, body["transport"].as_str()),
        (200, Some("redis")),
        "{body}"
    );

    redis.kill();
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "not_ready");

    let _redis = start_redis().expect("restart redis-server");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = ready().await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(served);
}

/// `/metrics` counts what the gateway published and what it turned away, in the
/// Prometheus text format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_published_and_rejected_requests() {
    let ns = Namespace::new();
    if subscribe(&ns, &["#"]).await.is_none() {
        return;
    }
    let served = Served::start(&[]);
    let http = http();
    for i in 0..3 {
        let body = serde_json::json!({
            "specversion": "1.0", "id": format!("m{i}"), "source": "py",
            "type": ns.topic("order.created"),
        });
        let answer = served.post_event(&http, &body).send().await.unwrap();
        assert_eq!(answer.status(), 202);
    }
    let refused = http
        .post(served.url("/v1/events"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 415);
    let text = served.get_text(&http, "/metrics").await;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(value("tidings_published_total"), Some(3.0), "{text}");
    assert_eq!(
        value("tidings_gateway_rejected_total{error=\"unsupported_media_type\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE tidings_published_total counter"),
        "{text}"
    );
}

/// Settings come from the configuration file when no flag or variable gives them; a key
/// the file may not have is one clear line and exit code 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_file_sets_what_flags_do_not() {
    let ns = Namespace::new();
    if subscribe(&ns, &["#"]).await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidings.toml");
    std::fs::write(
        &file,
        format!(
            "url = \"{}\"\n[serve]\nlisten = \"127.0.0.1:0\"\nmax_body = 200\nshutdown_deadline = \"2s\"\n",
            redis_url()
        ),
    )
    .unwrap();
    let served = Served::start_with(&["--config", file.to_str().unwrap()]);
    let http = http();
    let ready = served.get_json(&http, "/readyz").await;
    assert_eq!(ready["transport"], "redis", "the file's url: {ready}");
    let big = serde_json::json!({
        "specversion": "1.0", "id": "x", "source": "s", "type": ns.topic("a.b"),
        "data": "x".repeat(300),
    });
    let answer = served.post_event(&http, &big).send().await.unwrap();
    assert_eq!(answer.status(), 413, "the file's max_body");
    assert_eq!(served.terminate(), Some(0));

    std::fs::write(&file, "[serve]\nlisten_on = \"127.0.0.1:0\"\n").unwrap();
    let out = process::output(
        Command::new(env!("CARGO_BIN_EXE_tidings")).args([
            "serve",
            "--config",
            file.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("listen_on"), "{stderr}");
}

/// A webhook whose endpoint is down: its events wait, and `/v1/stats` and `/metrics` show
/// the backlog (the embedded store counts every unacked event and knows the oldest's age).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_webhook_shows_its_backlog_on_stats_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tidings.db");
    common::stuck_webhook_shows_its_backlog(&format!("store = \"{}\"", store.display()), true)
        .await;
}

/// The same on `postgres://`: `tidings serve` publishes into the PostgreSQL queue, the webhook
/// subscription consumes and retries from it, and its backlog is counted there. The queue's
/// tables go into a schema of the test's own, chosen by the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_queues_webhook_deliveries_and_counts_their_backlog() {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut admin = match <sqlx::PgConnection as sqlx::Connection>::connect(&base).await {
        Ok(conn) => conn,
        Err(error) => return tidings_testkit::service::unavailable("PostgreSQL", &error),
    };
    let schema = format!("tidings_serve_{:08x}", fastrand::u32(..));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{base}?options=-csearch_path%3D{schema}");
    common::stuck_webhook_shows_its_backlog(&format!("url = \"{url}\""), true).await;
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {schema}.tidings_messages WHERE subscription = 'stuck'"
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(rows, 3, "the events wait in the schema the URL chose");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}
