//! `tidings tail 'order.#'`: the events published to matching topics, as they come.
//!
//! ```sh
//! tidings tail 'order.#' --url amqp://guest:guest@127.0.0.1:5672/%2f
//! tidings tail '#' --json | jq .type
//! ```
//!
//! It subscribes under a name of its own (`tail-<pid>-<random>`), so that it gets a copy of
//! each event without taking any from the services' subscriptions, acks what it prints, and
//! removes that subscription ([`Transport::remove_subscription`]) when it stops: on Ctrl-C,
//! SIGTERM, or after `--count` events. Events published before it started are not shown.
//!
//! A tail killed before it could remove its subscription (`kill -9`, a lost machine) leaves
//! it to the broker: on RabbitMQ and NATS the subscription is temporary and goes once
//! unread for `--expire-after` (default one minute). The other transports keep it, and its
//! events, until `remove_subscription` is called for its name.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt as _;
use tidings::codec::{Codec as _, StructuredJson};
use tidings::envelope::{Data, Envelope};
use tidings::topic::Pattern;
use tidings::transport::{SubscriptionSpec, Transport};

/// What to watch, and how to print it.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Topic patterns: `order.created`, `order.*`, `order.#`, or `#` for every event.
    #[arg(required = true, value_name = "PATTERN")]
    patterns: Vec<String>,
    /// One CloudEvent per line (structured JSON) instead of the readable form.
    #[arg(long)]
    json: bool,
    /// Stop after this many events.
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
    /// The transport: `sqlite://PATH`, `postgres://...`, `amqp://...`, `nats://...`,
    /// `redis://...`, `aws://...` (with the `aws` feature). Default: `TIDINGS_URL`, else the
    /// embedded store at `--store`.
    #[arg(long)]
    url: Option<String>,
    /// How long the subscription outlives a tail killed before it could remove it, where
    /// the broker can remove it by itself (RabbitMQ, NATS).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    expire_after: std::time::Duration,
    /// The embedded store's file, when no URL is given.
    #[arg(long, default_value = "tidings.db", env = "TIDINGS_STORE")]
    store: PathBuf,
}

/// Prints events until a signal or `--count`, then removes the temporary subscription.
pub(crate) async fn run(args: TailArgs) -> anyhow::Result<()> {
    let patterns = args
        .patterns
        .iter()
        .map(|p| Pattern::parse(p).with_context(|| format!("`{p}` is not a topic pattern")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let url = args
        .url
        .clone()
        .or_else(|| std::env::var("TIDINGS_URL").ok())
        .unwrap_or_else(|| format!("sqlite://{}", args.store.display()));
    let transport = crate::transport::open(&url).await?;
    let name = format!("tail-{}-{:04x}", std::process::id(), fastrand::u16(..));
    let spec = SubscriptionSpec::new(name.clone(), patterns)
        .with_prefetch(64)
        .expire_when_idle(args.expire_after);
    let stream = transport
        .subscribe(&spec)
        .await
        .with_context(|| format!("subscribing to {}", args.patterns.join(" ")))?;
    eprintln!(
        "tailing {} on {} as subscription {name} (Ctrl-C to stop)",
        args.patterns.join(" "),
        tidings::broker_url::BrokerUrl::new(&url).redacted(),
    );
    let printed = tokio::select! {
        printed = print_all(stream, &args) => printed,
        () = crate::serve::shutdown_signal() => Ok(()),
    };
    let removed = remove(&transport, &name).await;
    transport.close().await?;
    printed?;
    removed
}

/// Prints and acks deliveries until the stream ends or `--count` is reached.
async fn print_all(
    mut stream: tidings::transport::DeliveryStream,
    args: &TailArgs,
) -> anyhow::Result<()> {
    let mut seen = 0u64;
    while args.count.is_none_or(|count| seen < count) {
        let Some(delivery) = stream.next().await else {
            anyhow::bail!("the transport closed the subscription");
        };
        let delivery = delivery.context("receiving")?;
        let line = match delivery.envelope() {
            Ok(envelope) if args.json => json_line(envelope)?,
            Ok(envelope) => pretty(envelope, delivery.topic()),
            Err(undecodable) if args.json => serde_json::json!({
                "undecodable": undecodable.error.to_string(),
                "topic": delivery.topic(),
                "content_type": undecodable.content_type,
                "size": undecodable.body.len(),
            })
            .to_string(),
            Err(undecodable) => format!(
                "{}  {}  (undecodable, {} bytes: {})",
                chrono::Utc::now().format("%H:%M:%S%.3f"),
                delivery.topic(),
                undecodable.body.len(),
                undecodable.error
            ),
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`tidings tail '#' | head`) ends the tail, not with an error.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        delivery.ack().await.context("acking a printed event")?;
        seen += 1;
    }
    Ok(())
}

/// The event as one line of CloudEvents structured JSON.
fn json_line(envelope: &Envelope) -> anyhow::Result<String> {
    let bytes = StructuredJson.encode(envelope)?;
    String::from_utf8(bytes).context("the encoded event is not UTF-8")
}

/// The event for a person: time, type, identity and context on one line, its data below.
fn pretty(envelope: &Envelope, topic: &str) -> String {
    let time = envelope.time.unwrap_or_else(chrono::Utc::now);
    let mut line = format!("{}  {}", time.format("%H:%M:%S%.3f"), envelope.ty);
    if topic != envelope.ty {
        line.push_str(&format!(" (topic {topic})"));
    }
    line.push_str(&format!("  id={}  source={}", envelope.id, envelope.source));
    let extensions = &envelope.extensions;
    for (key, value) in [
        ("subject", envelope.subject.as_deref()),
        ("tenant", extensions.tenantid.as_deref()),
        ("correlation", extensions.correlationid.as_deref()),
    ] {
        if let Some(value) = value {
            line.push_str(&format!("  {key}={value}"));
        }
    }
    match &envelope.data {
        Some(Data::Json(json)) => {
            line.push_str("\n    ");
            line.push_str(json.get());
        }
        Some(Data::Binary(bytes)) => line.push_str(&format!(
            "\n    <{} bytes of {}>",
            bytes.len(),
            envelope.datacontenttype.as_deref().unwrap_or("binary data")
        )),
        None => {}
    }
    line
}

/// Removes the temporary subscription; says so when the transport cannot.
async fn remove(transport: &Arc<dyn Transport>, name: &str) -> anyhow::Result<()> {
    transport
        .remove_subscription(name)
        .await
        .with_context(|| format!("removing the temporary subscription {name}"))
}
