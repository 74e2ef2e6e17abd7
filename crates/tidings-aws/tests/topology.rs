//! Topology files on AWS (moto): applying creates what is missing, applying again changes
//! nothing, a changed file updates exactly what changed; the plan changes nothing.

mod common;

use tidings_aws::{AwsTransport, Change, Resource, Topology};

fn file(fanout: &str, limit: u32, patterns: &str) -> Topology {
    let run = common::run();
    Topology::from_toml(&format!(
        r##"
        fanout = "{fanout}"
        topic = "{run}-topology"
        event_bus = "{run}-topology-bus"
        queue_prefix = "{run}-{fanout}-"
        delivery_limit = {limit}
        lease = "45s"

        [[subscription]]
        name = "notification"
        patterns = [{patterns}]

        [[subscription]]
        name = "analytics"
        patterns = ["#"]
        delivery_limit = 2
        "##
    ))
    .expect("topology")
}

fn changes(plan: &tidings_aws::Plan) -> Vec<(String, Change)> {
    plan.steps
        .iter()
        .map(|s| (s.resource.to_string(), s.change.clone()))
        .collect()
}

async fn apply_twice_then_change(fanout: &str) {
    let Some(config) = common::config() else {
        return;
    };
    let first = file(fanout, 5, r#""order.*", "payment.created""#);

    let planned = AwsTransport::plan(config.clone(), &first)
        .await
        .expect("plan");
    println!("{planned}");
    assert!(
        planned
            .steps
            .iter()
            .skip(1)
            .all(|s| s.change == Change::Create),
        "nothing exists yet:\n{planned}"
    );
    let again = AwsTransport::plan(config.clone(), &first)
        .await
        .expect("plan");
    assert_eq!(
        changes(&again),
        changes(&planned),
        "planning changed nothing"
    );

    let applied = AwsTransport::apply(config.clone(), &first)
        .await
        .expect("apply");
    assert_eq!(
        changes(&applied),
        changes(&planned),
        "apply did what the plan said"
    );
    let after = AwsTransport::plan(config.clone(), &first)
        .await
        .expect("plan");
    assert!(after.is_unchanged(), "applied:\n{after}");
    let reapplied = AwsTransport::apply(config.clone(), &first)
        .await
        .expect("apply");
    assert!(reapplied.is_unchanged(), "idempotent:\n{reapplied}");

    // Another pattern and limit for `notification`: its queue and its link change, nothing
    // else does.
    let second = file(fanout, 7, r#""order.*""#);
    let plan = AwsTransport::apply(config.clone(), &second)
        .await
        .expect("apply");
    println!("{plan}");
    let updated: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.change, Change::Update(_)))
        .map(|s| s.resource.to_string())
        .collect();
    let prefix = format!("{}-{fanout}-", common::run());
    let link = match fanout {
        "sns" => format!("topic subscription of {prefix}notification"),
        _ => format!("rule {prefix}notification"),
    };
    assert_eq!(
        updated,
        [format!("queue {prefix}notification"), link],
        "{plan}"
    );
    assert!(
        AwsTransport::plan(config, &second)
            .await
            .unwrap()
            .is_unchanged(),
        "and then nothing is left to change"
    );
    assert!(matches!(
        plan.steps[0].resource,
        Resource::Topic(_) | Resource::Bus(_)
    ));
}

#[tokio::test]
async fn an_sns_topology_applies_idempotently_and_updates_what_changed() {
    apply_twice_then_change("sns").await;
}

#[tokio::test]
async fn an_eventbridge_topology_applies_idempotently_and_updates_what_changed() {
    apply_twice_then_change("eventbridge").await;
}
