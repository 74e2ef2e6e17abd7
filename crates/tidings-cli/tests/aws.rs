//! The CLI on `--url aws://`: `topology`, `serve`, `publish`, `tail` and `dlq` against the
//! moto server of `AWS_ENDPOINT_URL` (`.ci/run` starts one and sets the AWS variables) when
//! built with `--features aws`; a clear refusal without.

mod common;

use common::{text, tidings};

#[cfg(not(feature = "aws"))]
#[test]
fn without_the_aws_feature_an_aws_url_is_refused_with_the_way_to_get_it() {
    for args in [
        &["topology", "plan", "--url", "aws://", "--file", "/dev/null"][..],
        &["publish", "-t", "order.created", "--url", "aws://"],
        &["dlq", "list", "notification", "--url", "aws://"],
    ] {
        let out = tidings(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("--features aws"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// The local moto server the AWS variables name, or `None` when they are not set (outside
/// CI; under CI a failure).
#[cfg(feature = "aws")]
fn moto() -> Option<String> {
    let credentials = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .all(|name| std::env::var_os(name).is_some());
    let (Ok(endpoint), true) = (std::env::var("AWS_ENDPOINT_URL"), credentials) else {
        tidings_testkit::service::unavailable(
            "a moto server",
            &"set AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (.ci/run does)",
        );
        return None;
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "only a local moto server: {endpoint}"
    );
    Some(endpoint)
}

/// An `aws://` URL of the test's own: its topic and queue prefix, on moto.
#[cfg(feature = "aws")]
fn aws_url(endpoint: &str, ns: &tidings_testkit::Namespace) -> String {
    format!(
        "aws://sns/{ns}-events?endpoint={endpoint}&region=us-east-1&queue_prefix={ns}-&wait=1s",
        ns = ns.as_str()
    )
}

#[cfg(feature = "aws")]
#[test]
fn applying_on_aws_creates_then_changes_nothing() {
    let Some(endpoint) = moto() else { return };
    let ns = tidings_testkit::Namespace::new();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("aws.toml");
    std::fs::write(
        &path,
        format!(
            r##"
            topic = "{ns}-events"
            queue_prefix = "{ns}-"

            [[subscription]]
            name = "notification"
            patterns = ["order.*", "payment.*"]

            [[subscription]]
            name = "analytics"
            patterns = ["#"]
            "##,
            ns = ns.as_str()
        ),
    )
    .expect("write");
    let file = path.display().to_string();
    let url = format!("aws://?endpoint={endpoint}&region=us-east-1");

    let plan = tidings(&["topology", "plan", "--url", &url, "--file", &file]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(text(&plan).contains("9 to create"), "{}", text(&plan));
    let apply = tidings(&["topology", "apply", "--url", &url, "--file", &file]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(text(&apply).contains("applied to AWS"), "{}", text(&apply));
    let again = tidings(&["topology", "apply", "--url", &url, "--file", &file]);
    assert!(
        text(&again).contains("0 to create, 0 to update, 9 unchanged"),
        "{}",
        text(&again)
    );
}

/// `tidings tail` and `tidings publish` on AWS: the tail subscribes (a queue subscribed to
/// the topic), prints what `publish` sent, stops after `--count` with 0 and removes its
/// queues and the topic's subscription.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_what_publish_sends_on_aws_and_removes_its_queues() {
    let Some(endpoint) = moto() else { return };
    let ns = tidings_testkit::Namespace::new();
    let url = aws_url(&endpoint, &ns);
    let mut tail = common::Tail::start(&["order.*", "--count", "2", "--url", &url]);
    let transport = tidings::aws::AwsTransport::connect(
        tidings::aws::AwsConfig::from_url(&url).expect("the URL"),
    )
    .await
    .expect("moto");
    assert!(
        transport
            .queue_urls(&tail.subscription)
            .await
            .expect("lookup")
            .is_some(),
        "the tail's queues exist while it runs"
    );
    for (ty, id) in [
        ("payment.failed", "aws-0"),
        ("order.created", "aws-1"),
        ("order.paid", "aws-2"),
    ] {
        let out = tidings(&[
            "publish", "-t", ty, "--id", id, "--tenant", "acme", "--url", &url,
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let status = tail
        .child
        .wait(std::time::Duration::from_secs(60), "tidings tail --count 2");
    assert_eq!(status.code(), Some(0));
    let mut printed = Vec::new();
    while let Some(line) = tail.stdout.next_within(std::time::Duration::from_secs(1)) {
        printed.push(line);
    }
    let printed = printed.join("\n");
    for expected in ["order.created  id=aws-1", "order.paid  id=aws-2"] {
        assert!(printed.contains(expected), "`{expected}` in:\n{printed}");
    }
    assert!(!printed.contains("aws-0"), "not the payment: {printed}");
    assert_eq!(
        transport
            .queue_urls(&tail.subscription)
            .await
            .expect("lookup"),
        None,
        "the tail removed its queues"
    );
    let topic = transport.topic_arn().expect("SNS").to_owned();
    let links = transport
        .sns()
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .send()
        .await
        .expect("the topic's subscriptions");
    assert!(
        links.subscriptions().is_empty(),
        "the tail unsubscribed: {:?}",
        links.subscriptions()
    );
}

/// `tidings dlq` on AWS: a dead letter in a subscription's dead-letter queue is listed,
/// shown, replayed to its queue and, once it fails again, purged.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_lists_replays_and_purges_on_aws() {
    use tidings::transport::{DeadLetters as _, Publisher as _, Subscriber as _};

    let Some(endpoint) = moto() else { return };
    let ns = tidings_testkit::Namespace::new();
    let url = aws_url(&endpoint, &ns);
    let transport = tidings::aws::AwsTransport::connect(
        tidings::aws::AwsConfig::from_url(&url).expect("the URL"),
    )
    .await
    .expect("moto");
    let spec = tidings_testkit::conformance::spec(&ns, "billing", &["invoice.*"]);
    let name = spec.name.clone();
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    let event =
        tidings::envelope::Envelope::new("billing", ns.topic("invoice.sent")).with_id("inv-1");
    transport.publish(&event).await.expect("publish");
    let limit = std::time::Duration::from_secs(20);
    let delivery = tidings_testkit::recv(&mut stream, limit)
        .await
        .expect("delivered");
    reject(delivery, &name).await;

    let list = tidings(&["dlq", "list", &name, "--url", &url]);
    assert!(list.status.success(), "{}", text(&list));
    assert!(
        text(&list).starts_with("1 dead letter(s)"),
        "{}",
        text(&list)
    );
    assert!(
        text(&list).contains("invoice without lines"),
        "{}",
        text(&list)
    );
    let json = tidings(&["dlq", "list", &name, "--url", &url, "--json"]);
    let letter: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON line");
    let id = letter["id"].as_str().expect("id").to_owned();
    let shown = tidings(&["dlq", "show", &name, &id, "--url", &url]);
    assert!(text(&shown).contains("inv-1"), "{}", text(&shown));

    let replayed = tidings(&["dlq", "replay", &name, &id, "--url", &url]);
    assert!(
        text(&replayed).contains("replayed 1"),
        "{}",
        text(&replayed)
    );
    let back = tidings_testkit::recv(&mut stream, limit)
        .await
        .expect("replayed");
    assert_eq!(back.envelope().expect("event").id, "inv-1");
    reject(back, &name).await;

    let purged = tidings(&["dlq", "purge", &name, "--yes", "--url", &url]);
    assert!(text(&purged).contains("purged 1"), "{}", text(&purged));
    assert_eq!(transport.count(&name).await.expect("count"), 0);
}

/// Sends `delivery` to its subscription's dead letters, as a handler that rejects it would.
#[cfg(feature = "aws")]
async fn reject(delivery: Box<dyn tidings::transport::Delivery>, subscription: &str) {
    use tidings::dead_letter::{DeadLetter, Original, Reason, ReasonKind};

    let original = Original::Envelope(Box::new((**delivery.envelope().expect("event")).clone()));
    delivery
        .dead_letter(DeadLetter::new(
            subscription,
            original,
            Reason::new(ReasonKind::Rejected, "invoice without lines"),
        ))
        .await
        .expect("dead-letter");
}

/// `tidings serve` on AWS: webhook deliveries come from the subscription's SQS queue, a
/// failed one waits there for its retry (a visibility change), and the backlog counts the
/// three that wait. SQS tells no ages, so there is none.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_aws_retries_webhook_deliveries_from_the_queue_and_counts_them() {
    let Some(endpoint) = moto() else { return };
    let ns = tidings_testkit::Namespace::new();
    common::stuck_webhook_shows_its_backlog(
        &format!("url = \"{}\"", aws_url(&endpoint, &ns)),
        false,
    )
    .await;
}
