//! `tidings serve` built with `--features otel` exports its spans over OTLP/HTTP to a
//! collector (`tests/otlp_receiver.py`, decoding with `opentelemetry-proto`), and the spans
//! of one event form one trace with the HTTP request that published it: the publishing and
//! the webhook's handling are children of the caller's span, and the event the endpoint
//! receives names the trace.

#![cfg(feature = "otel")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Receiver, Served, http, webhook_config};
use serde_json::{Value, json};
use tidings_testkit::process::{Guarded, Lines};

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spans_of_an_event_join_the_callers_trace() {
    let Ok(python) = std::env::var("TIDINGS_PYTHON") else {
        return tidings_testkit::service::unavailable(
            "a Python with opentelemetry-proto (TIDINGS_PYTHON)",
            &"TIDINGS_PYTHON is not set",
        );
    };
    let mut collector = Guarded::spawn(
        Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/otlp_receiver.py"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let spans = Lines::read(collector.0.stdout.take().expect("stdout"));
    let first = spans.find(Duration::from_secs(30), "the collector's port", |_| true);
    let port = serde_json::from_str::<Value>(&first).unwrap()["port"]
        .as_u64()
        .unwrap();

    let secret = "whsec_b3RlbC10ZXN0LXNlY3JldA";
    let mut endpoint = Receiver::start(&python, secret);
    let dir = tempfile::tempdir().expect("dir");
    let config = webhook_config(dir.path(), endpoint.port, secret, "", "");
    let served = Served::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_SERVICE_NAME", "tidings-otlp-test"),
        ],
    );
    let event = json!({
        "specversion": "1.0", "id": "traced-1", "source": "checkout",
        "type": "order.created", "data": { "answers": [200] },
    });
    let answer = served
        .post_event(&http(), &event)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 202);
    endpoint.wait_until(Duration::from_secs(20), "the delivery", |seen| {
        seen.iter().any(|r| r["id"] == "traced-1")
    });
    let delivered = &endpoint.of("traced-1")[0]["event"];
    let traceparent = delivered["traceparent"].as_str().expect("a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{CALLER_TRACE}-")),
        "the event names the caller's trace: {traceparent}"
    );
    // The batch exporter sends what is left at shutdown.
    assert_eq!(served.terminate(), Some(0));

    let mut got: Vec<Value> = Vec::new();
    let has = |got: &[Value], name: &str| got.iter().any(|s| s["name"] == name);
    while !(has(&got, "tidings.publish") && has(&got, "tidings.handle")) {
        let line = tokio::task::block_in_place(|| spans.next_within(Duration::from_secs(20)))
            .unwrap_or_else(|| panic!("the collector got no publish and handle spans: {got:#?}"));
        got.push(serde_json::from_str(&line).unwrap());
    }
    for name in ["tidings.publish", "tidings.handle"] {
        let span = got.iter().find(|s| s["name"] == name).unwrap();
        assert_eq!(
            span["trace_id"], CALLER_TRACE,
            "{name} is in the caller's trace"
        );
        assert_eq!(span["service"], "tidings-otlp-test", "{name}");
    }
    let handle = got.iter().find(|s| s["name"] == "tidings.handle").unwrap();
    assert_eq!(
        handle["parent_span_id"], CALLER_SPAN,
        "handled as a child of the caller"
    );
    assert_eq!(handle["attributes"]["subscription"], "notify");
}
