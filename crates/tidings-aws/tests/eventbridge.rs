//! EventBridge: events put on a bus reach a tidings subscription through a rule whose target
//! is the subscription's queue; on a moto server.

mod common;

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber};
use tidings_aws::{AwsTransport, Fanout};
use tidings_testkit::conformance::spec;
use tidings_testkit::{Namespace, recv, recv_none};

async fn bus_transport(source: Option<&str>) -> Option<AwsTransport> {
    let mut config = common::config()?.fanout(Fanout::EventBridge);
    if let Some(source) = source {
        config = config.source(source);
    }
    Some(common::connect(config).await)
}

#[tokio::test]
async fn a_subscription_is_a_rule_on_the_bus_with_its_queue_as_target() {
    let Some(transport) = bus_transport(None).await else {
        return;
    };
    let ns = Namespace::new();
    let spec = spec(&ns, "billing", &["order.*", "refund.issued"]);
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    let bus = format!("{}-bus", common::run());
    let rules = transport
        .eventbridge()
        .list_rules()
        .event_bus_name(&bus)
        .send()
        .await
        .expect("rules");
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.name().is_some_and(|n| n.ends_with("billing")))
        .expect("a rule for the subscription");
    let pattern: serde_json::Value =
        serde_json::from_str(rule.event_pattern().expect("a pattern")).expect("json");
    assert_eq!(
        pattern,
        serde_json::json!({
            "detail-type": [{ "prefix": ns.topic("order.") }, ns.topic("refund.issued")]
        })
    );
    let targets = transport
        .eventbridge()
        .list_targets_by_rule()
        .rule(rule.name().unwrap())
        .event_bus_name(&bus)
        .send()
        .await
        .expect("targets");
    assert!(targets.targets()[0].arn().contains(":sqs:"));

    let placed = Envelope::new("oms", ns.topic("order.placed"))
        .with_json_data(&serde_json::json!({ "total": 12.5 }))
        .unwrap();
    transport.publish(&placed).await.expect("put");
    transport
        .publish(&Envelope::new("oms", ns.topic("refund.denied")))
        .await
        .expect("put");
    let got = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(got.topic(), placed.ty);
    assert_eq!(
        **got.envelope().expect("the detail is the CloudEvent"),
        placed
    );
    got.ack().await.expect("ack");
    recv_none(&mut stream, Duration::from_secs(2)).await;
}

/// A service that is not tidings (our FastAPI users' publishers) puts a CloudEvent on the
/// bus itself: the subscription reads it like any other event.
#[tokio::test]
async fn an_event_put_by_another_producer_is_consumed() {
    let Some(transport) = bus_transport(Some("custom.service")).await else {
        return;
    };
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "crm", &["company.#"]))
        .await
        .expect("subscribe");
    let detail = serde_json::json!({
        "specversion": "1.0",
        "id": "evt-42",
        "source": "testclean.api",
        "type": ns.topic("company.created"),
        "datacontenttype": "application/json",
        "data": { "company_name": "Acme" },
    });
    let out = transport
        .eventbridge()
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name(format!("{}-bus", common::run()))
                .source("testclean.api")
                .detail_type(ns.topic("company.created"))
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .expect("put by hand");
    assert_eq!(out.failed_entry_count(), 0);
    let got = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    let envelope = got.envelope().expect("decodable");
    assert_eq!(envelope.id, "evt-42");
    assert_eq!(
        envelope.data_as::<serde_json::Value>().unwrap()["company_name"],
        "Acme"
    );
    got.ack().await.unwrap();
}

#[tokio::test]
async fn bytes_that_are_not_json_are_refused_by_the_bus() {
    let Some(transport) = bus_transport(None).await else {
        return;
    };
    let refused = transport.publish_bytes("order.created", b"\x00raw").await;
    assert!(
        matches!(refused, Err(tidings::transport::TransportError::Refused(ref m)) if m.contains("JSON")),
        "{refused:?}"
    );
}

/// With `AwsConfig::source`, every entry is put with that source (rules of other teams
/// often match on it); without, with the event's own.
#[tokio::test]
async fn the_entries_source_is_configurable() {
    let Some(transport) = bus_transport(Some("billing.service")).await else {
        return;
    };
    let ns = Namespace::new();
    let bus = format!("{}-bus", common::run());
    // Another team's rule and queue, made by hand, matching on the source.
    let queue = transport
        .sqs()
        .create_queue()
        .queue_name(format!("{}-by-source", ns.as_str()))
        .send()
        .await
        .expect("queue");
    let queue_url = queue.queue_url().unwrap();
    let queue_arn = transport
        .sqs()
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let rule = format!("{}-by-source", ns.as_str());
    transport
        .eventbridge()
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(
            serde_json::json!({ "source": ["billing.service"], "detail-type": [ns.topic("invoice.sent")] })
                .to_string(),
        )
        .send()
        .await
        .expect("rule");
    transport
        .eventbridge()
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("target");

    let sent = Envelope::new("invoicing", ns.topic("invoice.sent"));
    transport.publish(&sent).await.expect("put");
    let received = transport
        .sqs()
        .receive_message()
        .queue_url(queue_url)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("receive");
    let message = received
        .messages()
        .first()
        .expect("the rule matched the source");
    let event: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
    assert_eq!(event["source"], "billing.service");
    assert_eq!(event["detail-type"], ns.topic("invoice.sent"));
    assert_eq!(
        event["detail"]["source"], "invoicing",
        "the CloudEvent keeps its own"
    );
}
