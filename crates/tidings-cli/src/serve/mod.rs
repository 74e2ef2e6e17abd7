//! `tidings serve`: the bus as a service.
//!
//! Starts on the embedded SQLite store with no configuration, or on the transport a URL
//! names (`--url`, else `TIDINGS_URL`): `sqlite://PATH`, `postgres://`, `amqp://`/`amqps://`,
//! `nats://`/`tls://`, `redis://`/`rediss://`, `aws://` (with the `aws` feature). Serves the HTTP gateway ([`gateway`]) and the
//! dead-letter API ([`dead_letters`]), guarded by API tokens ([`auth`]), and runs the
//! webhook subscriptions of the configuration ([`webhook`]), until SIGTERM or SIGINT; then
//! it stops taking requests, lets the ones in flight finish (their publishes confirmed)
//! within the shutdown deadline, lets webhook deliveries in flight settle, closes the
//! transport and exits 0.

mod auth;
pub(crate) mod contracts;
mod dashboard;
mod dead_letters;
mod gateway;
mod stats;
mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

/// Where to serve, and on what. Each setting: the flag, else its environment variable,
/// else the configuration file ([`crate::config`]), else the default.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The configuration file (default: `tidings.toml` in the working directory, if any).
    #[arg(long, env = "TIDINGS_CONFIG")]
    config: Option<PathBuf>,
    /// The transport: `sqlite://PATH`, `postgres://...`, `amqp://...`, `nats://...`,
    /// `redis://...`, `aws://...` (with the `aws` feature). Default: the embedded store at
    /// `--store`.
    #[arg(long, env = "TIDINGS_URL")]
    url: Option<String>,
    /// The embedded store's file, when no URL is given (default `tidings.db`).
    #[arg(long, env = "TIDINGS_STORE")]
    store: Option<PathBuf>,
    /// The address to listen on (default `127.0.0.1:7878`; port 0: any free port, printed
    /// at start).
    #[arg(long, env = "TIDINGS_LISTEN")]
    listen: Option<SocketAddr>,
    /// The largest request body accepted, in bytes (default 1 MiB).
    #[arg(long, env = "TIDINGS_MAX_BODY")]
    max_body: Option<usize>,
    /// How long requests in flight may take to finish at shutdown (default 10 s).
    #[arg(long, env = "TIDINGS_SHUTDOWN_DEADLINE", value_parser = humantime::parse_duration)]
    shutdown_deadline: Option<Duration>,
    /// A schema directory (`<type>/v<version>.schema.json`, as `tidings::schema::Catalog`
    /// writes it): events of the types it describes are held to their schemas, at the
    /// gateway (`422` with the offending field) and before webhook deliveries (dead-lettered).
    #[arg(long, env = "TIDINGS_SCHEMAS")]
    schemas: Option<PathBuf>,
}

/// The settings in effect.
struct Settings {
    url: String,
    listen: SocketAddr,
    max_body: usize,
    shutdown_deadline: Duration,
    schemas: Option<PathBuf>,
    tokens: Vec<crate::config::TokenSection>,
    webhooks: Vec<crate::config::WebhookSection>,
}

impl ServeArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let file = crate::config::FileConfig::load(self.config.as_deref())?;
        let store = self
            .store
            .clone()
            .or(file.store)
            .unwrap_or_else(|| PathBuf::from("tidings.db"));
        Ok(Settings {
            url: self
                .url
                .clone()
                .or(file.url)
                .unwrap_or_else(|| format!("sqlite://{}", store.display())),
            listen: self
                .listen
                .or(file.serve.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7878))),
            max_body: self.max_body.or(file.serve.max_body).unwrap_or(1024 * 1024),
            shutdown_deadline: self
                .shutdown_deadline
                .or(file.serve.shutdown_deadline)
                .unwrap_or(Duration::from_secs(10)),
            schemas: self.schemas.clone().or(file.serve.schemas),
            tokens: file.serve.tokens,
            webhooks: file.serve.webhooks,
        })
    }
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Runs the service until a signal stops it.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let args = args.settings()?;
    // Everything the configuration names is checked before anything starts.
    let tokens = auth::Tokens::from_config(&args.tokens)?;
    let contracts = match &args.schemas {
        Some(dir) => Some(Arc::new(
            contracts::Contracts::load(dir)
                .with_context(|| format!("schemas `{}`", dir.display()))?,
        )),
        None => None,
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("tidings/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the webhooks' HTTP client")?;
    let webhooks = args
        .webhooks
        .iter()
        .map(|section| webhook::Plan::from_config(section, client.clone(), contracts.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let url = args.url.clone();
    let transport = crate::transport::open(&url).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let stats = stats::Stats::new();
    let bus = tidings::Bus::builder_shared(transport.clone())
        .without_inbox()
        .observer((tidings::metrics::Metrics::new(), stats.clone()))
        .build()?;
    let mut running = Vec::with_capacity(webhooks.len());
    for plan in &webhooks {
        running.push(plan.start(&bus).await?);
    }
    let infos = webhooks.iter().map(webhook::Plan::info).collect();
    let open = tokens.is_open();
    let token_count = tokens.len();
    let app = gateway::router(
        gateway::Gateway::new(
            transport.clone(),
            bus.clone(),
            metrics,
            tokens,
            infos,
            stats,
            contracts.clone(),
        ),
        args.max_body,
    );
    println!(
        "tidings serve: {} transport at {}",
        transport.name(),
        tidings::broker_url::BrokerUrl::new(&url).redacted()
    );
    println!("  dashboard: http://{addr}/");
    println!("  gateway:  http://{addr}/v1/events");
    println!("  health:   http://{addr}/healthz, http://{addr}/readyz");
    println!("  metrics:  http://{addr}/metrics");
    println!("  dead letters: http://{addr}/v1/subscriptions");
    for plan in &webhooks {
        println!("  webhook:  {} -> {}", plan.name(), plan.url());
    }
    if let (Some(contracts), Some(dir)) = (&contracts, &args.schemas) {
        println!(
            "  schemas:  {} event type(s) held to the schemas in {}",
            contracts.types(),
            dir.display()
        );
    }
    if open {
        println!(
            "  API tokens: none configured; anyone who can reach {addr} may publish and \
             replay (add [[serve.tokens]] to the configuration)"
        );
    } else {
        println!("  API tokens: {token_count} configured");
    }
    println!("  listening on http://{addr}");
    // The tests (and process managers) read the lines above as they come.
    use std::io::Write as _;
    std::io::stdout().flush()?;

    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    shutdown_signal().await;
    println!("tidings serve: stopping; finishing requests in flight");
    let _ = stopping.send(());
    match tokio::time::timeout(args.shutdown_deadline, server).await {
        Ok(served) => served??,
        Err(_) => eprintln!(
            "tidings serve: requests still in flight after {:?}; closing anyway",
            args.shutdown_deadline
        ),
    }
    // Webhook deliveries in flight finish (or come back later) before the transport closes.
    bus.shutdown().await?;
    drop(running);
    transport.close().await?;
    println!("tidings serve: stopped");
    Ok(())
}
