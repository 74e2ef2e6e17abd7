//! Event contracts end to end: schemas described by `#[derive(DomainEvent)]`, written by
//! `tidings::schema::Catalog`, then
//!
//! - `tidings schema check` against a snapshot: exit 1 on a retyped field, 0 when the
//!   version was bumped or nothing changed;
//! - `tidings schema export`: an AsyncAPI 3.0 document that validates against the
//!   specification's own JSON Schema (npm `@asyncapi/specs`, `TIDINGS_ASYNCAPI_SCHEMA`, which
//!   CI fetches);
//! - `tidings serve --schemas`: the gateway answers 422 with the JSON pointer of the
//!   offending field, and a webhook dead-letters an invalid event that did not come through
//!   the gateway, never delivering it (endpoint: `tests/webhook_receiver.py`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Receiver, Served, http, text, tidings, webhook_config};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings::schema::Catalog;
use tidings::{Bus, DomainEvent};

/// The first contract of `order.placed`.
mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "order.placed", version = 1)]
    pub(crate) struct OrderPlaced {
        pub(crate) order_id: String,
        /// In euros.
        pub(crate) total: f64,
    }
}

/// Version 1 with `total` retyped, and nothing bumped: breaking.
mod v1_retyped {
    use super::*;

    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "order.placed", version = 1)]
    pub(crate) struct OrderPlaced {
        pub(crate) order_id: String,
        pub(crate) total: String,
    }
}

/// Version 2: cents instead of euros, and the items; announced by the bump and upcast.
mod v2 {
    use super::*;

    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "order.placed", version = 2, upcasters(super::euros_to_cents))]
    pub(crate) struct OrderPlaced {
        pub(crate) order_id: String,
        pub(crate) total_cents: u64,
        pub(crate) items: Vec<Item>,
    }

    #[derive(Serialize, Deserialize, tidings::schemars::JsonSchema)]
    #[schemars(crate = "tidings::schemars")]
    pub(crate) struct Item {
        pub(crate) sku: String,
        #[schemars(range(min = 1))]
        pub(crate) quantity: u32,
    }

    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "payment.failed", version = 1)]
    pub(crate) struct PaymentFailed {
        pub(crate) order_id: String,
        pub(crate) reason: String,
    }
}

fn euros_to_cents(mut data: Value) -> Result<Value, tidings::UpcastError> {
    let euros = data["total"]
        .as_f64()
        .ok_or_else(|| tidings::UpcastError::new("no numeric `total`"))?;
    data["total_cents"] = json!((euros * 100.0).round() as u64);
    data["items"] = json!([]);
    Ok(data)
}

/// Writes the schemas of the types `register` registers to `dir`, as a service would.
fn write_schemas(dir: &Path, register: impl FnOnce(&Bus) -> tidings::Result<()>) {
    let bus = Bus::builder(tidings::memory::MemoryTransport::new())
        .source("checkout")
        .build()
        .expect("bus");
    register(&bus).expect("register");
    Catalog::of(&bus).write(dir).expect("write the schemas");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn schema_check_fails_on_a_retyped_field_and_passes_a_bumped_version() {
    let dir = tempfile::tempdir().expect("dir");
    let snapshot = dir.path().join("snapshot");
    write_schemas(&snapshot, |bus| bus.register::<v1::OrderPlaced>());
    assert!(
        snapshot.join("order.placed/v1.schema.json").is_file(),
        "the layout"
    );

    let same = dir.path().join("same");
    write_schemas(&same, |bus| bus.register::<v1::OrderPlaced>());
    let run = tidings(&["schema", "check", "--against", path(&snapshot), path(&same)]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(text(&run).contains("compatible"), "{}", text(&run));

    let retyped = dir.path().join("retyped");
    write_schemas(&retyped, |bus| bus.register::<v1_retyped::OrderPlaced>());
    let run = tidings(&[
        "schema",
        "check",
        "--against",
        path(&snapshot),
        path(&retyped),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run)
            .contains("breaking: order.placed v1 `total`: type changed from number to string"),
        "{}",
        text(&run)
    );

    let bumped = dir.path().join("bumped");
    write_schemas(&bumped, |bus| bus.register::<v2::OrderPlaced>());
    let run = tidings(&[
        "schema",
        "check",
        "--against",
        path(&snapshot),
        path(&bumped),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let out = text(&run);
    assert!(
        out.contains("ok: order.placed v2: version bumped from 1")
            && out.contains("ok: order.placed v2 `total`: required field removed"),
        "the bump announces the changes: {out}"
    );

    let missing = tidings(&[
        "schema",
        "check",
        "--against",
        "/nonexistent/snapshot",
        path(&same),
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("/nonexistent/snapshot"),
        "{}",
        text(&missing)
    );
}

/// The AsyncAPI 3.0 JSON Schema, from `@asyncapi/specs`; `None` (a skip, a failure under CI)
/// without it.
fn asyncapi_schema() -> Option<Value> {
    let path = match std::env::var("TIDINGS_ASYNCAPI_SCHEMA") {
        Ok(path) => path,
        Err(error) => {
            tidings_testkit::service::unavailable(
                "the AsyncAPI 3.0 JSON Schema from npm @asyncapi/specs (TIDINGS_ASYNCAPI_SCHEMA)",
                &error,
            );
            return None;
        }
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Some(serde_json::from_str(&text).expect("the specification's schema is JSON"))
}

#[test]
fn schema_export_writes_an_asyncapi_3_document_the_specification_accepts() {
    let Some(specification) = asyncapi_schema() else {
        return;
    };
    let validator = jsonschema::validator_for(&specification).expect("the AsyncAPI schema");
    let dir = tempfile::tempdir().expect("dir");
    let schemas = dir.path().join("schemas");
    write_schemas(&schemas, |bus| bus.register::<v1::OrderPlaced>());
    write_schemas(&schemas, |bus| {
        bus.register::<v2::OrderPlaced>()?;
        bus.register::<v2::PaymentFailed>()
    });
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[serve]
schemas = "{schemas}"

[[serve.tokens]]
name = "checkout"
token = "t-1"
tenant = "acme"
publish = ["order.#"]

[[serve.webhooks]]
name = "payments"
patterns = ["payment.*"]
url = "http://127.0.0.1:9/hook"
secret = "s"
"#,
            schemas = schemas.display()
        ),
    )
    .expect("config");
    let out = dir.path().join("out");
    let run = tidings(&[
        "schema",
        "export",
        "--config",
        path(&config),
        "--out",
        path(&out),
        "--title",
        "checkout gateway",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(
        text(&run).contains("3 schema(s) of 2 event type(s)"),
        "{}",
        text(&run)
    );
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("asyncapi.json")).expect("asyncapi.json"),
    )
    .expect("JSON");
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "AsyncAPI 3.0 says: {errors:#?}");

    assert_eq!(document["info"]["title"], "checkout gateway");
    let operations = document["operations"].as_object().expect("operations");
    let mut names: Vec<&str> = operations.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["receive.payment.failed", "send.order.placed"],
        "the token publishes order.#, the webhook receives payment.*"
    );
    assert_eq!(
        document["channels"]["order.placed"]["messages"]
            .as_object()
            .map(|m| m.len()),
        Some(2),
        "both versions"
    );
    let item = &document["components"]["schemas"]["Item"];
    assert_eq!(item["properties"]["quantity"]["minimum"], 1, "{item}");
    assert_eq!(
        document["components"]["schemas"]["order.placed.v2"]["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/Item"
    );
    assert!(
        out.join("payment.failed/v1.schema.json").is_file(),
        "the schemas beside it"
    );

    // The validator does judge: an operation with an action AsyncAPI does not have fails.
    let mut broken = document.clone();
    broken["operations"]["send.order.placed"]["action"] = json!("publish");
    assert!(
        validator.iter_errors(&broken).next().is_some(),
        "AsyncAPI 2's `publish` is not a 3.0 action"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_holds_events_to_their_schemas_at_the_gateway_and_before_webhooks() {
    let Ok(python) = std::env::var("TIDINGS_PYTHON") else {
        return tidings_testkit::service::unavailable(
            "a Python with standardwebhooks (TIDINGS_PYTHON)",
            &"TIDINGS_PYTHON is not set",
        );
    };
    let secret = "whsec_c2NoZW1hLXRlc3Qtc2VjcmV0";
    let mut receiver = Receiver::start(&python, secret);
    let dir = tempfile::tempdir().expect("dir");
    let schemas = dir.path().join("schemas");
    write_schemas(&schemas, |bus| bus.register::<v1::OrderPlaced>());
    write_schemas(&schemas, |bus| bus.register::<v2::OrderPlaced>());
    let config = webhook_config(
        dir.path(),
        receiver.port,
        secret,
        &format!("schemas = \"{}\"", schemas.display()),
        "max_attempts = 2\nbackoff = \"100ms\"",
    );
    let store = dir.path().join("tidings.db");
    let served = Served::start_with(&["--config", path(&config)]);
    let http = http();
    let order = |id: &str, version: &str, data: Value| {
        let mut event = json!({
            "specversion": "1.0", "id": id, "source": "checkout-py", "type": "order.placed",
            "datacontenttype": "application/json", "data": data,
        });
        if !version.is_empty() {
            event["dataversion"] = json!(version);
        }
        event
    };
    let items = |quantities: &[i64]| -> Value {
        quantities
            .iter()
            .enumerate()
            .map(|(i, q)| json!({"sku": format!("sku-{i}"), "quantity": q}))
            .collect()
    };

    // Valid events of both versions are published (the receiver answers 200 by default).
    for event in [
        order(
            "good-v2",
            "2",
            json!({"order_id": "o-1", "total_cents": 1250, "items": items(&[1, 2])}),
        ),
        order("good-v1", "1", json!({"order_id": "o-2", "total": 3.5})),
    ] {
        let answer = served.post_event(&http, &event).send().await.expect("post");
        assert_eq!(answer.status(), 202, "{event}");
    }
    // The field at fault, as a JSON pointer.
    let answer = served
        .post_event(
            &http,
            &order(
                "bad-quantity",
                "2",
                json!({"order_id": "o-3", "total_cents": 1, "items": items(&[1, 0])}),
            ),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"], "schema_violation", "{body}");
    assert_eq!(body["path"], "/items/1/quantity", "{body}");
    // A version the schemas do not have.
    let answer = served
        .post_event(&http, &order("v3", "3", json!({"order_id": "o-4"})))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"], "unsupported_version", "{body}");
    assert!(body.get("path").is_none(), "{body}");
    // One bad event refuses its batch, and is named.
    let batch = json!([
        order(
            "batch-ok",
            "2",
            json!({"order_id": "o-5", "total_cents": 1, "items": []})
        ),
        order("batch-bad", "2", json!({"order_id": "o-6", "items": []})),
    ]);
    let answer = served.post_batch(&http, &batch).send().await.expect("post");
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.expect("json");
    assert!(
        body["reason"].as_str().unwrap().contains("event 1"),
        "{body}"
    );

    // An invalid event straight into the store, past the gateway: dead-lettered with the
    // pointer, never delivered.
    let data = dir.path().join("bad.json");
    std::fs::write(
        &data,
        json!({"order_id": "o-7", "total_cents": 5, "items": [{"sku": 7, "quantity": 1}]})
            .to_string(),
    )
    .expect("data");
    let run = tidings(&[
        "publish",
        "--type",
        "order.placed",
        "--id",
        "bypassed",
        "--data",
        path(&data),
        "--url",
        &format!("sqlite://{}", store.display()),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));

    receiver.wait_until(Duration::from_secs(20), "the two valid events", |seen| {
        ["good-v2", "good-v1"]
            .iter()
            .all(|id| seen.iter().any(|r| r["id"] == *id))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let letter = loop {
        let listed = served
            .get_json(&http, "/v1/subscriptions/notify/dead-letters")
            .await;
        if let Some(letter) = listed["dead_letters"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["event"]["id"] == "bypassed"))
        {
            break letter.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bypassing event dead-lettered: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letter["reason"], "schema_violation", "{letter}");
    assert_eq!(letter["attempts"], 1, "never retried: {letter}");
    assert!(
        letter["error"].as_str().unwrap().contains("/items/0/sku"),
        "{letter}"
    );
    for refused in ["bad-quantity", "v3", "batch-ok", "batch-bad", "bypassed"] {
        assert!(
            receiver.of(refused).is_empty(),
            "{refused} never reached the endpoint"
        );
    }
    assert_eq!(served.terminate(), Some(0));
}
