//! `tidings dlq`: list, show, replay (one, all) and purge the dead letters of a
//! subscription on the embedded store, which the test fills beside the command.

mod common;

use std::process::Output;
use std::time::Duration;

use common::tidings;

use tidings::dead_letter::{DeadLetter, Original, Reason, ReasonKind};
use tidings::envelope::Envelope;
use tidings::sqlite::{SqliteConfig, SqliteTransport};
use tidings::transport::{DeadLetters, Publisher, Subscriber};
use tidings_testkit::{Namespace, conformance::spec, recv};

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteTransport::open(SqliteConfig::new(&path))
        .await
        .unwrap();
    let ns = Namespace::new();
    let sub = spec(&ns, "billing", &["order.*"]);
    let mut stream = store.subscribe(&sub).await.unwrap();
    for i in 0..5 {
        let event = Envelope::new("oms", ns.topic("order.created"))
            .with_id(format!("evt-{i}"))
            .with_json_data(&serde_json::json!({ "i": i }))
            .unwrap();
        store.publish(&event).await.unwrap();
        let delivery = recv(&mut stream, Duration::from_secs(5)).await.unwrap();
        let envelope = (**delivery.envelope().unwrap()).clone();
        let letter = DeadLetter::new(
            &sub.name,
            Original::Envelope(Box::new(envelope)),
            Reason::new(ReasonKind::Rejected, format!("card {i} declined")),
        );
        delivery.dead_letter(letter).await.unwrap();
    }
    let db = path.to_str().unwrap();
    let name = sub.name.as_str();

    let list = stdout(&tidings(&["dlq", "list", name, "--store", db]));
    assert!(list.starts_with("5 dead letter(s)"), "{list}");
    assert_eq!(list.lines().count(), 6, "{list}");
    assert!(
        list.contains("rejected") && list.contains("card 0 declined"),
        "{list}"
    );

    let json = stdout(&tidings(&[
        "dlq", "list", name, "--store", db, "--json", "--limit", "2",
    ]));
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(json.lines().count(), 2);
    assert_eq!(first["event"]["id"], "evt-0", "oldest first");
    let id = first["id"].as_str().unwrap().to_owned();

    let shown = stdout(&tidings(&["dlq", "show", name, &id, "--store", db]));
    assert!(
        shown.contains("card 0 declined") && shown.contains("evt-0"),
        "{shown}"
    );

    let replayed = stdout(&tidings(&["dlq", "replay", name, &id, "--store", db]));
    assert!(replayed.contains("replayed 1"), "{replayed}");
    let back = recv(&mut stream, Duration::from_secs(5))
        .await
        .expect("replayed");
    assert_eq!(back.envelope().unwrap().id, "evt-0");
    back.ack().await.unwrap();
    assert_eq!(store.count(name).await.unwrap(), 4);

    let all = stdout(&tidings(&[
        "dlq", "replay", name, "--all", "--rate", "100", "--store", db,
    ]));
    assert!(all.contains("replayed 4"), "{all}");
    for _ in 0..4 {
        recv(&mut stream, Duration::from_secs(5))
            .await
            .expect("replayed")
            .ack()
            .await
            .unwrap();
    }
    assert_eq!(store.count(name).await.unwrap(), 0);

    store
        .publish(&Envelope::new("oms", ns.topic("order.created")))
        .await
        .unwrap();
    let doomed = recv(&mut stream, Duration::from_secs(5)).await.unwrap();
    let letter = DeadLetter::new(
        name,
        Original::Envelope(Box::new((**doomed.envelope().unwrap()).clone())),
        Reason::new(ReasonKind::Rejected, "no"),
    );
    doomed.dead_letter(letter).await.unwrap();
    let refused = tidings(&["dlq", "purge", name, "--store", db]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let purged = stdout(&tidings(&["dlq", "purge", name, "--yes", "--store", db]));
    assert!(purged.contains("purged 1"), "{purged}");
    assert_eq!(store.count(name).await.unwrap(), 0);

    let missing = tidings(&["dlq", "show", name, "nope", "--store", db]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter `nope`"));
}
