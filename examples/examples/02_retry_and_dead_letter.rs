//! A handler that fails transiently is retried with backoff, then dead-lettered; the dead
//! letter is inspected and replayed once the cause is fixed.
//!
//! `cargo run -p tidings-examples --example 02_retry_and_dead_letter`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::dead_letter::Page;
use tidings::memory::MemoryTransport;
use tidings::retry::RetryPolicy;
use tidings::{Bus, DomainEvent, Event, HandlerError};

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "payment.initiated", version = 1)]
struct PaymentInitiated {
    #[event(subject)]
    payment_id: String,
    amount: f64,
}

#[tokio::main]
async fn main() -> tidings::Result<()> {
    let bus = Bus::builder(MemoryTransport::new())
        .source("payment-service")
        .build()?;
    let gateway_up = Arc::new(AtomicBool::new(false));
    let (handled_tx, mut handled) = tokio::sync::mpsc::channel(8);

    let up = gateway_up.clone();
    bus.subscription("ledger")
        .on::<PaymentInitiated, _>(move |event: Event<PaymentInitiated>| {
            let (up, handled_tx) = (up.clone(), handled_tx.clone());
            async move {
                if !up.load(Ordering::SeqCst) {
                    println!("ledger: gateway down for {} (retrying)", event.payment_id);
                    return Err(HandlerError::retry("payment gateway unreachable"));
                }
                println!("ledger: recorded {} of {}", event.payment_id, event.amount);
                let _ = handled_tx.send(()).await;
                Ok(())
            }
        })
        .retry(
            RetryPolicy::exponential(Duration::from_millis(50))
                .with_max_attempts(3)
                .with_max_delay(Duration::from_millis(200)),
        )
        .start()
        .await?;

    bus.publish(&PaymentInitiated {
        payment_id: "pay_1".into(),
        amount: 500.0,
    })
    .await?;

    let dlq = bus.dead_letters();
    while dlq.count("ledger").await? == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let letter = dlq.list("ledger", Page::first(1)).await?.remove(0);
    println!(
        "dead letter {}: {} after {} attempts (first failure {}, last {})",
        letter.id, letter.reason, letter.attempts, letter.first_failure_at, letter.last_failure_at
    );

    gateway_up.store(true, Ordering::SeqCst);
    dlq.replay("ledger", &letter.id).await?;
    handled.recv().await;
    println!(
        "replayed; dead letters left: {}",
        dlq.count("ledger").await?
    );
    bus.shutdown().await
}
