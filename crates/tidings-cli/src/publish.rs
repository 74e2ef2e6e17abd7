//! `tidings publish`: one event from the command line.
//!
//! ```sh
//! echo '{"order_id":"o_1","total":12.5}' | tidings publish --type order.created --data - \
//!     --subject o_1 --tenant acme --url redis://127.0.0.1:6379
//! ```

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tidings::envelope::{Data, Envelope};

/// The event, and where it goes.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The event's type, which is its topic: `order.created`.
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    ty: String,
    /// The data: a file, or `-` for standard input. JSON, unless `--content-type` names
    /// another type (then sent as bytes).
    #[arg(long, short)]
    data: Option<PathBuf>,
    /// The data's media type (default `application/json`).
    #[arg(long)]
    content_type: Option<String>,
    /// The event's source.
    #[arg(long, default_value = "tidings-cli")]
    source: String,
    /// The event's subject (the aggregate it is about).
    #[arg(long)]
    subject: Option<String>,
    /// The tenant (`tenantid`).
    #[arg(long)]
    tenant: Option<String>,
    /// The correlation id (`correlationid`); default: the event's id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// The event's id (default: a new UUIDv7).
    #[arg(long)]
    id: Option<String>,
    /// The transport: `sqlite://PATH`, `postgres://...`, `amqp://...`, `nats://...`,
    /// `redis://...`, `aws://...` (with the `aws` feature). Default: `TIDINGS_URL`, else the
    /// embedded store at `--store`.
    #[arg(long)]
    url: Option<String>,
    /// The embedded store's file, when no URL is given.
    #[arg(long, default_value = "tidings.db", env = "TIDINGS_STORE")]
    store: PathBuf,
    /// Print the published event (CloudEvents JSON) instead of a summary.
    #[arg(long)]
    json: bool,
}

impl PublishArgs {
    fn read_data(&self) -> anyhow::Result<Option<Data>> {
        let Some(path) = &self.data else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the data from standard input")?;
        } else {
            bytes = std::fs::read(path)
                .with_context(|| format!("reading the data from {}", path.display()))?;
        }
        let json = self
            .content_type
            .as_deref()
            .is_none_or(|t| t.contains("json"));
        if !json {
            return Ok(Some(Data::Binary(bytes.into())));
        }
        let text = String::from_utf8(bytes).context("the data is not UTF-8 JSON")?;
        let data = Data::json_text(text.trim().to_owned()).with_context(
            || "the data is not JSON (give --content-type for data of another type)",
        )?;
        Ok(Some(data))
    }

    fn envelope(&self) -> anyhow::Result<Envelope> {
        let mut envelope = Envelope::new(&self.source, &self.ty);
        if let Some(id) = &self.id {
            envelope = envelope.with_id(id);
        }
        if let Some(subject) = &self.subject {
            envelope = envelope.with_subject(subject);
        }
        if let Some(tenant) = &self.tenant {
            envelope = envelope.with_tenant(tenant);
        }
        if let Some(correlation) = &self.correlation_id {
            envelope = envelope.with_correlation_id(correlation);
        }
        if let Some(data) = self.read_data()? {
            envelope = envelope.with_data(data);
            envelope.datacontenttype = Some(
                self.content_type
                    .clone()
                    .unwrap_or_else(|| "application/json".to_owned()),
            );
        }
        Ok(envelope)
    }
}

/// Publishes the event; returns once the transport confirmed it.
pub(crate) async fn run(args: PublishArgs) -> anyhow::Result<()> {
    tidings::topic::Pattern::parse(&args.ty)
        .with_context(|| format!("`{}` is not a valid event type", args.ty))?;
    let envelope = args.envelope()?;
    let url = args
        .url
        .clone()
        .or_else(|| std::env::var("TIDINGS_URL").ok())
        .unwrap_or_else(|| format!("sqlite://{}", args.store.display()));
    let transport = crate::transport::open(&url).await?;
    transport
        .publish(&envelope)
        .await
        .with_context(|| format!("publishing `{}`", envelope.ty))?;
    transport.close().await?;
    if args.json {
        let body = tidings::codec::Codec::encode(&tidings::codec::StructuredJson, &envelope)?;
        println!("{}", String::from_utf8_lossy(&body));
    } else {
        println!(
            "published {} ({}) to {}",
            envelope.id,
            envelope.ty,
            tidings::broker_url::BrokerUrl::new(&url).redacted()
        );
    }
    Ok(())
}
