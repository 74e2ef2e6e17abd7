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
use tidings::{Bus, DomainEvent, Event, HandlerError, Observer, Settlement};

/// Options of `tidings demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 3)]
    orders: u32,
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

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    println!("tidings demo: in-memory transport (no broker needed)\n");
    let bus = Bus::builder(MemoryTransport::new())
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
    bus.publish(&PaymentInitiated {
        payment_id: "pay_1".into(),
        order_id: "order_1".into(),
        amount: 500.0,
    })
    .await?;
    let dlq = bus.dead_letters();
    let letter = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(letter) = dlq.list("ledger", Page::first(1)).await?.pop() {
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
    println!("  done");
    Ok(())
}

fn short(id: Option<&str>) -> &str {
    id.map_or("-", |id| &id[id.len().saturating_sub(8)..])
}
