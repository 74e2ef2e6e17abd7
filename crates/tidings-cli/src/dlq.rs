//! `tidings dlq list|show|replay|purge`: a subscription's dead letters, on any transport.
//!
//! Replaying many (`--all`) first takes the list of what is there, then replays it one
//! letter at a time at `--rate` per second with a progress bar. Each replayed letter
//! leaves the dead letters, so an interrupted replay is resumed by running it again.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tidings::dead_letter::{DeadLetter, Original, Page, ReplayTarget};
use tidings::transport::Transport;

/// What to do with the dead letters.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Lists a subscription's dead letters, oldest first.
    List {
        #[command(flatten)]
        target: Target,
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// How many to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one dead letter: why it failed, and the event.
    Show {
        #[command(flatten)]
        target: Target,
        /// The dead letter's id.
        id: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sends dead letters back to the subscription (or to a topic).
    Replay {
        #[command(flatten)]
        target: Target,
        /// The dead letters' ids.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every dead letter of the subscription.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Publish them under this topic instead of back to the subscription.
        #[arg(long)]
        to_topic: Option<String>,
        /// Most letters replayed per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
    },
    /// Deletes every dead letter of a subscription.
    Purge {
        #[command(flatten)]
        target: Target,
        /// Confirms: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// The subscription, and the transport it lives on.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The subscription.
    subscription: String,
    /// The transport: `sqlite://PATH`, `postgres://...`, `amqp://...`, `nats://...`,
    /// `redis://...`, `aws://...` (with the `aws` feature). Default: `TIDINGS_URL`, else the
    /// embedded store at `--store`.
    #[arg(long)]
    url: Option<String>,
    /// The embedded store's file, when no URL is given.
    #[arg(long, default_value = "tidings.db", env = "TIDINGS_STORE")]
    store: PathBuf,
}

impl Target {
    async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn Transport>> {
        let url = self
            .url
            .clone()
            .or_else(|| std::env::var("TIDINGS_URL").ok())
            .unwrap_or_else(|| format!("sqlite://{}", self.store.display()));
        crate::transport::open(&url).await
    }
}

/// A dead letter as JSON.
pub(crate) fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    let original = match &letter.original {
        Original::Envelope(envelope) => {
            let body = tidings::codec::Codec::encode(&tidings::codec::StructuredJson, envelope)
                .unwrap_or_default();
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
        }
        Original::Undecodable { body, content_type } => serde_json::json!({
            "undecodable": String::from_utf8_lossy(body),
            "content_type": content_type,
        }),
    };
    serde_json::json!({
        "id": letter.id,
        "subscription": letter.subscription,
        "handler": letter.handler,
        "reason": letter.reason.kind.as_str(),
        "error": letter.reason.message,
        "attempts": letter.attempts,
        "first_failure_at": letter.first_failure_at.to_rfc3339(),
        "last_failure_at": letter.last_failure_at.to_rfc3339(),
        "event": original,
    })
}

/// The event type of a letter, or what stands in for it.
fn type_of(letter: &DeadLetter) -> &str {
    letter.envelope().map_or("(undecodable)", |e| e.ty.as_str())
}

/// At most `n` characters of `text`, on one line.
fn short(text: &str, n: usize) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() <= n {
        line
    } else {
        format!("{}…", line.chars().take(n - 1).collect::<String>())
    }
}

/// Runs `command`.
pub(crate) async fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List {
            target,
            limit,
            offset,
            json,
        } => {
            let transport = target.open().await?;
            let name = &target.subscription;
            let total = transport.count(name).await?;
            let letters = transport.list(name, Page { offset, limit }).await?;
            if json {
                for letter in &letters {
                    println!("{}", letter_json(letter));
                }
                return Ok(());
            }
            println!("{total} dead letter(s) of `{name}`");
            for letter in &letters {
                println!(
                    "{}  {}  {:<18} {:>3}×  {}  {}",
                    letter.id,
                    letter.last_failure_at.format("%Y-%m-%d %H:%M:%S"),
                    letter.reason.kind.as_str(),
                    letter.attempts,
                    type_of(letter),
                    short(&letter.reason.message, 60),
                );
            }
        }
        DlqCommand::Show { target, id, json } => {
            let transport = target.open().await?;
            let letter = transport
                .get(&target.subscription, &id)
                .await?
                .with_context(|| format!("no dead letter `{id}` in `{}`", target.subscription))?;
            let value = letter_json(&letter);
            if json {
                println!("{value}");
            } else {
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
        }
        DlqCommand::Replay {
            target,
            ids,
            all,
            to_topic,
            rate,
        } => replay(&target, ids, all, to_topic, rate).await?,
        DlqCommand::Purge { target, yes } => {
            anyhow::ensure!(
                yes,
                "purging deletes every dead letter of `{}` for good: add --yes",
                target.subscription
            );
            let transport = target.open().await?;
            let purged = transport.purge(&target.subscription).await?;
            println!(
                "purged {purged} dead letter(s) of `{}`",
                target.subscription
            );
        }
    }
    Ok(())
}

async fn replay(
    target: &Target,
    mut ids: Vec<String>,
    all: bool,
    to_topic: Option<String>,
    rate: u32,
) -> anyhow::Result<()> {
    let transport = target.open().await?;
    let name = &target.subscription;
    if all {
        // What is there now: letters dead-lettered again while replaying are not chased.
        let mut offset = 0;
        loop {
            let page = transport.list(name, Page { offset, limit: 500 }).await?;
            if page.is_empty() {
                break;
            }
            offset += page.len();
            ids.extend(page.into_iter().map(|l| l.id));
        }
    }
    let bar = indicatif::ProgressBar::new(ids.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "replaying {bar:40} {pos}/{len} ({per_sec}, {eta} left)",
        )
        .expect("a valid template"),
    );
    let mut pace = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut replayed = 0;
    for id in &ids {
        pace.tick().await;
        let target = match &to_topic {
            Some(topic) => ReplayTarget::Topic(topic.clone()),
            None => ReplayTarget::Subscription,
        };
        transport.replay(name, id, target).await.with_context(|| {
            format!(
                "replaying `{id}` ({replayed} of {} done; run again to resume)",
                ids.len()
            )
        })?;
        replayed += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let to = to_topic.map_or_else(|| format!("`{name}`"), |t| format!("topic `{t}`"));
    println!("replayed {replayed} dead letter(s) to {to}");
    Ok(())
}
