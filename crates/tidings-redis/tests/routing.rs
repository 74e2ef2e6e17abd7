//! Routing with stale tables: a publisher keeps the bindings it last read and learns they
//! changed from the version its publishing transaction reads. Each test opens two transports
//! on the same prefix: one publishes from a table the other then makes stale.

mod common;

use std::time::Duration;

use futures::StreamExt;
use tidings::envelope::Envelope;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec, Transport};
use tidings_redis::RedisTransport;

async fn transport() -> RedisTransport {
    RedisTransport::connect(common::config())
        .await
        .unwrap_or_else(|e| panic!("these tests need Redis at {}: {e}", common::url()))
}

fn spec(name: &str, pattern: &str) -> SubscriptionSpec {
    SubscriptionSpec::new(name, [Pattern::parse(pattern).unwrap()])
}

fn event(topic: &str, id: &str) -> Envelope {
    Envelope::new("routing-test", topic).with_id(id)
}

/// The key of `subscription`'s stream (as `keys.rs` writes it).
fn stream_key(subscription: &str) -> String {
    format!("{{{}}}:stream:{subscription}", common::prefix())
}

/// A plain connection to the server under test, to look at keys behind the transport.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(common::url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn exists(key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut raw().await)
        .await
        .unwrap()
        == 1
}

#[tokio::test]
async fn a_publisher_whose_routes_are_stale_still_reaches_a_subscription_bound_since() {
    let publisher = transport().await;
    let other = transport().await;
    // Reads the bindings: none for this topic yet, so the event goes nowhere.
    publisher
        .publish(&event("routing.late.created", "before"))
        .await
        .unwrap();
    let mut deliveries = other
        .subscribe(&spec("routing-late", "routing.late.*"))
        .await
        .unwrap();
    publisher
        .publish(&event("routing.late.created", "after"))
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("the event published after the binding arrives")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.envelope().unwrap().id, "after");
    delivery.ack().await.unwrap();
    other.remove_subscription("routing-late").await.unwrap();
}

#[tokio::test]
async fn a_publisher_whose_routes_are_stale_does_not_bring_back_a_removed_subscription() {
    let publisher = transport().await;
    let other = transport().await;
    drop(
        other
            .subscribe(&spec("routing-gone", "routing.gone.*"))
            .await,
    );
    publisher
        .publish(&event("routing.gone.created", "while-bound"))
        .await
        .unwrap();
    assert_eq!(publisher.depth("routing-gone").await.unwrap(), 1);
    other.remove_subscription("routing-gone").await.unwrap();
    assert!(!exists(&stream_key("routing-gone")).await);

    publisher
        .publish(&event("routing.gone.created", "after-removal"))
        .await
        .unwrap();
    assert!(
        !exists(&stream_key("routing-gone")).await,
        "the removed subscription's stream stays removed"
    );
}

#[tokio::test]
async fn an_event_added_on_a_stale_route_is_taken_back_where_it_no_longer_belongs() {
    let publisher = transport().await;
    let other = transport().await;
    drop(
        other
            .subscribe(&spec("routing-moved", "routing.moved.a"))
            .await,
    );
    publisher
        .publish(&event("routing.moved.a", "first"))
        .await
        .unwrap();
    assert_eq!(publisher.depth("routing-moved").await.unwrap(), 1);
    // Removed and declared again under another pattern: the stream exists again, but
    // `routing.moved.a` is no longer bound to it. The publisher's table still says it is.
    other.remove_subscription("routing-moved").await.unwrap();
    drop(
        other
            .subscribe(&spec("routing-moved", "routing.moved.b"))
            .await,
    );

    publisher
        .publish(&event("routing.moved.a", "second"))
        .await
        .unwrap();
    assert_eq!(
        publisher.depth("routing-moved").await.unwrap(),
        0,
        "added on the stale route, then deleted once the transaction showed the routes stale"
    );
    other.remove_subscription("routing-moved").await.unwrap();
}

#[tokio::test]
async fn a_bound_subscription_whose_stream_is_missing_gets_it_back_with_the_event() {
    let transport = transport().await;
    drop(
        transport
            .subscribe(&spec("routing-lost", "routing.lost.*"))
            .await,
    );
    redis::cmd("DEL")
        .arg(stream_key("routing-lost"))
        .query_async::<i64>(&mut raw().await)
        .await
        .unwrap();

    transport
        .publish(&event("routing.lost.created", "kept"))
        .await
        .unwrap();
    assert_eq!(transport.depth("routing-lost").await.unwrap(), 1);
    transport.remove_subscription("routing-lost").await.unwrap();
}
