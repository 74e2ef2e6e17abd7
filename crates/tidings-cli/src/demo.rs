//! `tidings demo`: the e-commerce flow of our users' catalog, narrated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tidings::dead_letter::Page;
use tidings::envelope::Envelope;
use tidings::memory::MemoryTransport;
use tidings::retry::RetryPolicy;
use tidings::sqlite::{SqliteConfig, SqliteTransport};
use tidings::transport::{DeadLetters, Transport};
use tidings::{Bus, DomainEvent, Event, HandlerError, Observer, Settlement};

/// The demo's subscriptions, for the store report.
const SUBSCRIPTIONS: [&str; 4] = ["notification", "mailer", "analytics", "ledger"];

/// Options of `tidings demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 3)]
    orders: u32,
    /// The embedded store's file; events and dead letters survive restarts in it.
    #[arg(long, env = "TIDINGS_STORE", default_value = SqliteConfig::DEFAULT_PATH)]
    store: std::path::PathBuf,
    /// Run on the in-memory transport instead (nothing is kept).
    #[arg(long, conflicts_with = "store")]
    memory: bool,
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.created", version = 1, category = "domain")]
struct OrderCreated {
    #[event(subject)]
    order_id: String,
    customer_id: String,
    total: f64,
    currency: String,
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "payment.initiated", version = 1, category = "domain")]
struct PaymentInitiated {
    #[event(subject)]
    payment_id: String,
    order_id: String,
    amount: f64,
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "notification.email", version = 1, category = "notification")]
struct SendEmail {
    template: String,
    recipient: String,
}

/// Prints every settlement, so the demo shows what the bus decided.
struct Narrator;

impl Observer for Narrator {
    fn on_settled(
        &self,
        subscription: &str,
        envelope: Option<&Envelope>,
        settlement: &Settlement,
        elapsed: Duration,
    ) {
        let ty = envelope.map_or("<undecodable>", |e| e.ty.as_str());
        match settlement {
            Settlement::Ack => println!("  ✓ {subscription:<13} handled {ty} in {elapsed:.1?}"),
            Settlement::Retry { after, error } => {
                println!("  ↻ {subscription:<13} {ty} failed ({error}); redelivery in {after:.0?}");
            }
            Settlement::DeadLetter(letter) => println!(
                "  ✗ {subscription:<13} {ty} dead-lettered after {} attempt(s): {}",
                letter.attempts, letter.reason
            ),
            _ => {}
        }
    }
}

/// What the store holds for the demo's subscriptions: waiting messages and dead letters.
async fn report(store: &SqliteTransport) -> anyhow::Result<()> {
    let mut empty = true;
    for name in SUBSCRIPTIONS {
        let (waiting, dead) = (store.depth(name).await?, store.count(name).await?);
        if waiting + dead > 0 {
            println!("  {name:<13} {waiting} waiting, {dead} dead-lettered");
            empty = false;
        }
    }
    if empty {
        println!("  nothing waiting, no dead letters");
    }
    Ok(())
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (transport, store): (Arc<dyn Transport>, _) = if args.memory {
        println!("tidings demo: in-memory transport (nothing is kept)\n");
        (Arc::new(MemoryTransport::new()), None)
    } else {
        let store = SqliteTransport::open(SqliteConfig::new(&args.store))
            .await
            .with_context(|| format!("opening the store at {}", args.store.display()))?;
        println!(
            "tidings demo: embedded SQLite store at {} (no broker needed)",
            args.store.display()
        );
        println!("  kept from earlier runs:");
        report(&store).await?;
        println!();
        (Arc::new(store.clone()), Some(store))
    };
    let bus = Bus::builder_shared(transport)
        .source("oms-service")
        .observer(Narrator)
        .retry(
            RetryPolicy::exponential(Duration::from_millis(100))
                .with_max_attempts(3)
                .with_max_delay(Duration::from_millis(400)),
        )
        .build()?;

    // notification: emails for new orders, and publishes SendEmail (caused by the order).
    let publisher = bus.clone();
    bus.subscribe::<OrderCreated, _>("notification", move |e: Event<OrderCreated>| {
        let bus = publisher.clone();
        async move {
            bus.publish(&SendEmail {
                template: "order_confirmation".into(),
                recipient: e.customer_id.clone(),
            })
            .await
            .map_err(HandlerError::retry)?;
            Ok(())
        }
    })
    .await?;

    let (sent_tx, mut sent) = tokio::sync::mpsc::unbounded_channel();
    bus.subscribe::<SendEmail, _>("mailer", move |e: Event<SendEmail>| {
        let sent_tx = sent_tx.clone();
        async move {
            let env = e.envelope();
            println!(
                "    mailer: {} to {} (causation {}, correlation {})",
                e.template,
                e.recipient,
                short(env.extensions.causationid.as_deref()),
                short(env.extensions.correlationid.as_deref()),
            );
            let _ = sent_tx.send(());
            Ok(())
        }
    })
    .await?;

    // analytics: every event, by pattern.
    bus.subscribe_pattern("analytics", "#", |_: Arc<Envelope>| async { Ok(()) })
        .await?;

    // ledger: the payment gateway is down until we "fix" it.
    let gateway_up = Arc::new(AtomicBool::new(false));
    let (ledger_tx, mut ledger) = tokio::sync::mpsc::unbounded_channel();
    let up = gateway_up.clone();
    bus.subscribe::<PaymentInitiated, _>("ledger", move |e: Event<PaymentInitiated>| {
        let (up, ledger_tx) = (up.clone(), ledger_tx.clone());
        async move {
            if !up.load(Ordering::SeqCst) {
                return Err(HandlerError::retry("payment gateway unreachable"));
            }
            println!("    ledger: recorded {} of {:.2}", e.payment_id, e.amount);
            let _ = ledger_tx.send(());
            Ok(())
        }
    })
    .await?;

    println!("1. placing {} orders", args.orders);
    for i in 1..=args.orders {
        bus.publish(&OrderCreated {
            order_id: format!("order_{i}"),
            customer_id: format!("cust_{i}"),
            total: 500.0 * f64::from(i),
            currency: "UAH".into(),
        })
        .await?;
    }
    for _ in 0..args.orders {
        sent.recv().await.context("mailer stopped")?;
    }

    println!("\n2. a payment while the gateway is down");
    let payment = bus.envelope(&PaymentInitiated {
        payment_id: "pay_1".into(),
        order_id: "order_1".into(),
        amount: 500.0,
    })?;
    let payment_id = payment.id.clone();
    bus.publish_envelope(payment).await?;
    let dlq = bus.dead_letters();
    let letter = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let letters = dlq.list("ledger", Page::first(1000)).await?;
            if let Some(letter) = letters
                .into_iter()
                .find(|l| l.envelope().is_some_and(|e| e.id == payment_id))
            {
                return Ok::<_, tidings::Error>(letter);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .context("the payment was not dead-lettered in time")??;

    println!("\n3. the dead-letter queue of `ledger`");
    println!("  id:            {}", letter.id);
    println!(
        "  event:         {} {}",
        letter.envelope().map_or("?", |e| e.ty.as_str()),
        letter.envelope().map_or("?", |e| e.id.as_str())
    );
    println!("  reason:        {}", letter.reason);
    println!("  attempts:      {}", letter.attempts);
    println!("  first failure: {}", letter.first_failure_at);
    println!("  last failure:  {}", letter.last_failure_at);

    println!("\n4. gateway fixed; replaying the dead letter");
    gateway_up.store(true, Ordering::SeqCst);
    dlq.replay("ledger", &letter.id).await?;
    ledger.recv().await.context("ledger stopped")?;
    println!(
        "  dead letters left in ledger: {}",
        dlq.count("ledger").await?
    );

    println!("\n5. graceful shutdown");
    bus.shutdown().await?;
    if let Some(store) = store {
        println!("  kept in {} for the next run:", args.store.display());
        report(&store).await?;
    }
    println!("  done");
    Ok(())
}

fn short(id: Option<&str>) -> &str {
    id.map_or("-", |id| &id[id.len().saturating_sub(8)..])
}
