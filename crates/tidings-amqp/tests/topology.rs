//! Topology as code against the machine's broker: plan, apply, idempotence, conflicts, and a
//! service that consumes what the file declared.

mod common;

use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings_amqp::topology::{Change, Declaration};
use tidings_amqp::{AmqpTransport, Topology};
use tidings_testkit::{Namespace, recv};

fn file(ns: &Namespace, ttl_ms: u64) -> Topology {
    Topology::from_toml(&format!(
        r#"
        [[subscription]]
        name = "{notification}"
        patterns = ["{ns}.order.*", "{ns}.payment.*"]

        [[subscription]]
        name = "{search}"
        patterns = ["{ns}.product.#"]
        dead_letter_ttl = "24h"

        [[exchange]]
        name = "tidings.test.analytics"
        kind = "fanout"

        [[queue]]
        name = "{ns}.order.processing"
        arguments = {{ "x-message-ttl" = {ttl_ms}, "x-expires" = 120000 }}

        [[binding]]
        queue = "{ns}.order.processing"
        exchange = "tidings.events"
        key = "{ns}.order.created"
        "#,
        ns = ns.as_str(),
        notification = ns.subscription("notification"),
        search = ns.subscription("search"),
    ))
    .expect("topology parses")
}

fn change_of<'a>(plan: &'a tidings_amqp::Plan, queue: &str) -> &'a Change {
    &plan
        .steps
        .iter()
        .find(|s| matches!(&s.declaration, Declaration::Queue { name, .. } if name == queue))
        .unwrap_or_else(|| panic!("queue `{queue}` in the plan:\n{plan}"))
        .change
}

#[tokio::test]
async fn plan_shows_what_apply_creates_and_a_second_apply_changes_nothing() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let topology = file(&ns, 86_400_000);
    let notification = ns.subscription("notification");

    let before = transport.plan(&topology).await.expect("plan");
    assert_eq!(
        *change_of(&before, &notification),
        Change::Create,
        "{before}"
    );
    assert_eq!(
        *change_of(&before, &format!("{notification}.dlq")),
        Change::Create
    );
    assert!(
        transport.plan(&topology).await.expect("plan again") == before,
        "planning changes nothing on the broker"
    );

    let applied = transport.apply(&topology).await.expect("apply");
    assert_eq!(applied.conflicts().count(), 0, "{applied}");
    let after = transport.plan(&topology).await.expect("plan after apply");
    assert!(
        after.is_unchanged(),
        "a second apply would change nothing:\n{after}"
    );
    let again = transport.apply(&topology).await.expect("apply again");
    assert!(again.is_unchanged(), "{again}");
}

#[tokio::test]
async fn a_conflicting_declaration_is_reported_with_the_brokers_reason() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    transport
        .apply(&file(&ns, 60_000))
        .await
        .expect("first apply");

    let changed = file(&ns, 120_000);
    let plan = transport.plan(&changed).await.expect("plan");
    let processing = format!("{}.order.processing", ns.as_str());
    let Change::Conflict(reason) = change_of(&plan, &processing) else {
        panic!("a different TTL conflicts:\n{plan}");
    };
    assert!(reason.contains("x-message-ttl"), "{reason}");
    assert!(plan.to_string().contains("1 conflicts"), "{plan}");

    let applied = transport
        .apply(&changed)
        .await
        .expect("apply reports the conflict, it does not fail");
    assert_eq!(applied.conflicts().count(), 1, "{applied}");
    assert!(
        matches!(
            change_of(&applied, &ns.subscription("search")),
            Change::Unchanged
        ),
        "{applied}"
    );
}

#[tokio::test]
async fn a_service_consumes_what_the_file_declared_without_conflict() {
    let Some(admin) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let topology = file(&ns, 60_000);
    admin.apply(&topology).await.expect("apply");

    let service = AmqpTransport::connect(topology.configure(common::config()))
        .await
        .expect("connect");
    let mut stream = service
        .subscribe(&SubscriptionSpec::new(
            ns.subscription("notification"),
            [
                Pattern::parse(&ns.topic("order.*")).expect("pattern"),
                Pattern::parse(&ns.topic("payment.*")).expect("pattern"),
            ],
        ))
        .await
        .expect("the runtime declares the same queue the file did");
    let sent = Envelope::new(ns.as_str(), ns.topic("payment.completed"));
    service.publish(&sent).await.expect("publish");
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(d.envelope().expect("decodable").id, sent.id);
    d.ack().await.expect("ack");
}

#[test]
fn a_malformed_file_names_the_line_and_key() {
    let error =
        Topology::from_toml("[[subscription]]\nname = \"crm\"\npaterns = [\"customer.*\"]\n")
            .expect_err("misspelt key");
    let text = error.to_string();
    assert!(
        text.contains("paterns") && text.contains("line 3"),
        "{text}"
    );
    let too_long = "a.".repeat(200);
    let error = Topology::from_toml(&format!(
        "[[subscription]]\nname = \"crm\"\npatterns = [\"{too_long}\"]\n"
    ))
    .expect("parses")
    .declarations(&tidings_amqp::AmqpConfig::default())
    .expect_err("bad pattern");
    assert!(error.to_string().contains("crm"), "{error}");
}
