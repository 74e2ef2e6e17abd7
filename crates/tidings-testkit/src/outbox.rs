//! The rules every transactional outbox (and its inbox) must follow, one `async fn` each,
//! expanded into tests by [`outbox_suite!`](crate::outbox_suite).
//!
//! Relays publish to an in-memory transport: what is under test is the outbox table, its
//! claims and leases, and the inbox, on the real database.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tidings::envelope::Envelope;
use tidings::inbox::Inbox;
use tidings::memory::MemoryTransport;
use tidings::outbox::{OutboxStore, Relay};
use tidings::transport::{Publisher, TransportError};
use tidings::{Bus, Observer, Settlement};

use crate::conformance::{QUIET, WAIT, seq_of};
use crate::{Namespace, Probe};

/// What a database's test provides to the outbox rules.
#[async_trait]
pub trait OutboxHarness: Send + Sync + 'static {
    /// An outbox store on the database. Each call may open a new pool, the way a second
    /// relay process would.
    async fn store(&self) -> Arc<dyn OutboxStore>;

    /// Stages `envelopes` in one application transaction, then commits it or rolls it back.
    async fn stage(&self, envelopes: &[Envelope], commit: bool);

    /// The database's inbox.
    async fn inbox(&self) -> Arc<dyn Inbox>;

    /// Handles `envelope` the way a handler joining its own transaction would: in one
    /// transaction, records it in the inbox for `subscription` and, if it was new, writes one
    /// row of the application's; then commits or rolls back. Returns whether it was new.
    async fn handle_in_transaction(
        &self,
        subscription: &str,
        envelope: &Envelope,
        commit: bool,
    ) -> bool;

    /// Rows written by [`handle_in_transaction`](Self::handle_in_transaction) and committed.
    async fn handled_rows(&self) -> u64;
}

fn event(ns: &Namespace, subject: usize, seq: u64) -> Envelope {
    Envelope::new(ns.as_str(), ns.topic("order.updated"))
        .with_subject(format!("order-{subject}"))
        .with_json_data(&serde_json::json!({ "seq": seq, "subject": subject }))
        .expect("json")
}

/// Counts what it forwards, so a test can tell which relay published what.
struct Counting {
    inner: MemoryTransport,
    published: AtomicUsize,
}

#[async_trait]
impl Publisher for Counting {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        self.inner.publish_batch(envelopes).await?;
        self.published.fetch_add(envelopes.len(), Ordering::Relaxed);
        Ok(())
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

/// Publishes, then never returns: a relay that dies after the broker confirmed and before it
/// marked the rows sent.
struct DiesAfterPublish {
    inner: MemoryTransport,
    published: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Publisher for DiesAfterPublish {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        self.inner.publish_batch(envelopes).await?;
        self.published.notify_one();
        std::future::pending().await
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

/// Records every seq the subscription's handler saw, in order.
async fn consume(bus: &Bus, ns: &Namespace, name: &str) -> Arc<Probe<(String, u64)>> {
    let probe = Probe::new();
    let seen = probe.clone();
    bus.subscribe_pattern(
        ns.subscription(name),
        &ns.topic("order.*"),
        move |e: Arc<Envelope>| {
            let seen = seen.clone();
            async move {
                seen.push((e.subject.clone().unwrap_or_default(), seq_of(&e)));
                Ok(())
            }
        },
    )
    .await
    .expect("subscribe");
    probe
}

/// Events staged in a transaction that rolls back are never published; those of a committed
/// one are.
pub async fn rolled_back_transaction_publishes_nothing(harness: &impl OutboxHarness) {
    let ns = Namespace::new();
    let transport = MemoryTransport::new();
    let bus = Bus::builder(transport.clone()).build().expect("bus");
    let seen = consume(&bus, &ns, "billing").await;

    harness
        .stage(&[event(&ns, 1, 1), event(&ns, 1, 2)], false)
        .await;
    harness.stage(&[event(&ns, 2, 3)], true).await;
    let relay = Relay::new(harness.store().await, Arc::new(transport.clone()));
    let mut published = 0;
    while let n @ 1.. = relay.run_once().await.expect("relay round") {
        published += n;
    }
    assert_eq!(published, 1, "only the committed event is published");
    seen.wait_for(1, WAIT).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(seen.items(), [("order-2".to_owned(), 3)]);
    bus.shutdown().await.expect("shutdown");
}

struct Settled(Arc<Probe<&'static str>>);

impl Observer for Settled {
    fn on_settled(
        &self,
        _subscription: &str,
        _envelope: Option<&Envelope>,
        settlement: &Settlement,
        _elapsed: Duration,
    ) {
        self.0.push(settlement.label());
    }
}

/// A relay that dies between the broker's confirm and marking its rows sent leaves them
/// leased; once the lease runs out another relay publishes them again, and the inbox makes
/// the handler run once per event.
pub async fn relay_killed_after_publish_gives_a_duplicate_the_inbox_removes(
    harness: &impl OutboxHarness,
) {
    let ns = Namespace::new();
    let transport = MemoryTransport::new();
    let settled = Probe::new();
    let bus = Bus::builder(transport.clone())
        .inbox(harness.inbox().await)
        .observer(Settled(settled.clone()))
        .build()
        .expect("bus");
    let seen = consume(&bus, &ns, "shipping").await;
    let n = 20;
    let staged: Vec<Envelope> = (0..n)
        .map(|seq| event(&ns, seq as usize % 3, seq))
        .collect();
    harness.stage(&staged, true).await;

    let published = Arc::new(tokio::sync::Notify::new());
    let doomed = Relay::new(
        harness.store().await,
        Arc::new(DiesAfterPublish {
            inner: transport.clone(),
            published: published.clone(),
        }),
    )
    .lease(Duration::from_millis(500))
    .spawn();
    tokio::time::timeout(WAIT, published.notified())
        .await
        .expect("the doomed relay published");
    doomed.abort();
    seen.wait_for(n as usize, WAIT).await;

    let survivor = Relay::new(harness.store().await, Arc::new(transport.clone()))
        .poll_interval(Duration::from_millis(50))
        .lease(Duration::from_millis(500))
        .spawn();
    settled.wait_for(2 * n as usize, WAIT).await;
    tokio::time::sleep(QUIET).await;
    survivor.stop().await;

    let acks = settled.items().iter().filter(|l| **l == "ack").count();
    assert_eq!(acks, 2 * n as usize, "every event was delivered twice");
    let mut handled: Vec<u64> = seen.items().into_iter().map(|(_, seq)| seq).collect();
    handled.sort_unstable();
    assert_eq!(handled, (0..n).collect::<Vec<_>>(), "each handled once");
    assert_eq!(harness.store().await.pending().await.expect("pending"), 0);
    bus.shutdown().await.expect("shutdown");
}

/// Ten thousand events staged over many subjects, drained by two relays at once: every event
/// arrives exactly once, each subject's in staging order, and the relays' counts add up to
/// the total (neither published what the other did).
///
/// How the work splits is not asserted: a relay that found work claims again at once, while
/// the other polls, and a claim takes every free subject's run, so on a quick store one relay
/// may rightly do all of it (CI once saw 10,000 and 0 on SQLite).
pub async fn two_relays_deliver_everything_once_in_subject_order(harness: &impl OutboxHarness) {
    let ns = Namespace::new();
    let transport = MemoryTransport::new();
    let bus = Bus::builder(transport.clone())
        .without_inbox()
        .concurrency(1)
        .build()
        .expect("bus");
    let seen = consume(&bus, &ns, "ledger").await;
    let (total, subjects, per_tx) = (10_000u64, 40usize, 500u64);

    let relays: Vec<_> = (0..2)
        .map(|_| {
            Arc::new(Counting {
                inner: transport.clone(),
                published: AtomicUsize::new(0),
            })
        })
        .collect();
    let mut handles = Vec::new();
    for counting in &relays {
        handles.push(
            Relay::new(harness.store().await, counting.clone())
                .batch_size(100)
                .poll_interval(Duration::from_millis(20))
                .spawn(),
        );
    }
    for start in (0..total).step_by(per_tx as usize) {
        let batch: Vec<Envelope> = (start..start + per_tx)
            .map(|seq| event(&ns, fastrand::usize(..subjects), seq))
            .collect();
        harness.stage(&batch, true).await;
    }
    let got = seen
        .wait_for(total as usize, Duration::from_secs(120))
        .await;
    tokio::time::sleep(QUIET).await;
    for handle in handles {
        handle.stop().await;
    }
    let got = if seen.len() > got.len() {
        seen.items()
    } else {
        got
    };

    assert_eq!(got.len(), total as usize, "no event published twice");
    let unique: HashSet<u64> = got.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(unique.len(), total as usize, "every event arrived");
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (subject, seq) in &got {
        if let Some(previous) = last.insert(subject, *seq) {
            assert!(previous < *seq, "{subject}: {seq} arrived after {previous}");
        }
    }
    let counts: Vec<usize> = relays
        .iter()
        .map(|r| r.published.load(Ordering::Relaxed))
        .collect();
    eprintln!("two relays: {counts:?} published");
    assert_eq!(
        counts.iter().sum::<usize>(),
        total as usize,
        "the relays together published each event once: {counts:?}"
    );
    bus.shutdown().await.expect("shutdown");
}

/// A handler that records the event in the inbox inside its own transaction commits its work
/// and the de-duplication together: a rolled-back attempt leaves no inbox row (the retry
/// handles the event), a committed one makes every later duplicate a no-op.
pub async fn inbox_row_commits_with_the_handlers_transaction(harness: &impl OutboxHarness) {
    let ns = Namespace::new();
    let name = ns.subscription("billing");
    let event = event(&ns, 1, 1);
    assert!(
        harness.handle_in_transaction(&name, &event, false).await,
        "first attempt sees a new event"
    );
    assert_eq!(
        harness.handled_rows().await,
        0,
        "the failed attempt left nothing"
    );
    assert!(
        harness.handle_in_transaction(&name, &event, true).await,
        "the retry sees the event as new: the rolled-back inbox row is gone"
    );
    for _ in 0..3 {
        assert!(
            !harness.handle_in_transaction(&name, &event, true).await,
            "a duplicate after the commit is recognised"
        );
    }
    assert_eq!(harness.handled_rows().await, 1, "handled exactly once");
    let other = ns.subscription("shipping");
    assert!(
        harness.handle_in_transaction(&other, &event, true).await,
        "another subscription handles the same event on its own"
    );
    let inbox = harness.inbox().await;
    let key = tidings::inbox::InboxKey::new(&name, &event.source, &event.id);
    assert!(
        inbox.contains(key).await.expect("inbox"),
        "the bus's inbox sees the row"
    );
}

/// Expands to one test per outbox rule. The expression is a future of
/// `Option<impl OutboxHarness>`: `None` when the database is unreachable (see
/// [`service::unavailable`](crate::service::unavailable)).
#[macro_export]
macro_rules! outbox_suite {
    ($harness:expr) => {
        $crate::outbox_suite!(@cases $harness;
            rolled_back_transaction_publishes_nothing,
            relay_killed_after_publish_gives_a_duplicate_the_inbox_removes,
            two_relays_deliver_everything_once_in_subject_order,
            inbox_row_commits_with_the_handlers_transaction,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                crate = "tidings_testkit::__private::tokio",
                flavor = "multi_thread",
                worker_threads = 2
            )]
            async fn $case() {
                let what = concat!("the outbox case `", stringify!($case), "`");
                $crate::within($crate::conformance::CASE_LIMIT, what, async {
                    let Some(harness) = $harness.await else { return };
                    $crate::outbox::$case(&harness).await;
                })
                .await;
            }
        )*
    };
}
