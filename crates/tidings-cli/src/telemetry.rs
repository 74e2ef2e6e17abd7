//! Where the command's diagnostics go: logs to stderr, and with the `otel` feature, spans to
//! an OpenTelemetry collector over OTLP.
//!
//! Logs follow `RUST_LOG` (default: errors only; `RUST_LOG=tidings=debug` shows every
//! handling). Spans are exported when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector: OTLP over HTTP with protobuf,
//! the service named by `OTEL_SERVICE_NAME` (default `tidings`). They are tidings' own,
//! `tidings.publish` and `tidings.handle`, at info level whatever `RUST_LOG` says, with the
//! events' `traceparent` as their parents ([`tidings::trace`]).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// The installed telemetry; flushes what is left to export when dropped.
#[must_use = "dropping it flushes and stops the span export"]
pub(crate) struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

fn collector() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// Installs the logging (and, when configured, the span export) for this process.
pub(crate) fn init() -> anyhow::Result<Telemetry> {
    // The client libraries' own errors (a channel closed by a refused declaration, which
    // tidings handles) stay out of the default output.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error,lapin=off")),
        );
    let registry = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otel")]
    if collector().is_some() {
        use anyhow::Context as _;
        use opentelemetry::trace::TracerProvider as _;

        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("setting up the OTLP span exporter")?;
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "tidings".to_owned());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        let spans = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tidings"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("tidings", tracing::Level::INFO),
            );
        registry.with(spans).init();
        return Ok(Telemetry {
            provider: Some(provider),
        });
    }
    registry.init();
    #[cfg(not(feature = "otel"))]
    if let Some(endpoint) = collector() {
        eprintln!(
            "warning: OTEL_EXPORTER_OTLP_ENDPOINT is {endpoint}, but this tidings was built \
             without the `otel` feature: no spans are exported (cargo build -p tidings-cli \
             --features otel)"
        );
    }
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        provider: None,
    })
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {error}");
        }
    }
}
