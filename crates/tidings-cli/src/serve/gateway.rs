//! The HTTP gateway: services in any language publish CloudEvents over HTTP.
//!
//! - `POST /v1/events`: one event in the CloudEvents HTTP binding, structured
//!   (`Content-Type: application/cloudevents+json`) or binary (attributes in `ce-` headers,
//!   percent-encoded; the data as the body, its type in `Content-Type`).
//! - `POST /v1/events:batch`: `application/cloudevents-batch+json`, a JSON array of events,
//!   published as one batch.
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: the transport can take work (connected to its broker, its store
//!   answering); `503` with the reason when not.
//! - `GET /metrics`: Prometheus text: what the bus records ([`tidings::metrics`]),
//!   `tidings_gateway_rejected_total{error}`, and per webhook subscription
//!   `tidings_queue_depth` and `tidings_queue_oldest_age_seconds` where the transport can
//!   tell ([`Transport::backlog`]).
//! - `GET /v1/openapi.json`: the OpenAPI 3.1 document of these routes (`openapi.json`).
//! - The dead-letter API of [`super::dead_letters`]; the dashboard at `/` and its numbers,
//!   `GET /v1/stats` ([`super::dashboard`]).
//!
//! With API tokens configured ([`super::auth`]), publishing and the dead-letter API need
//! `Authorization: Bearer <token>` (`401 unauthorized` without a valid one, `403 forbidden`
//! for a topic or tenant the token may not use); health, readiness, metrics and the OpenAPI
//! document stay open, for probes and scrapers.
//!
//! A publish is answered `202 Accepted` only once the transport has confirmed it (the
//! broker's confirm, the store's commit). Errors are JSON, `{"error": CODE, "reason": TEXT}`:
//! `400 invalid_event`, `413 too_large`, `415 unsupported_media_type`, `422 refused`,
//! `503 unavailable` (the transport cannot take it now: try again).
//!
//! With a schema directory (`[serve] schemas`, [`super::contracts`]), an event of a type it
//! describes is published only if its data validates against the schema of its version:
//! else `422 schema_violation`, with `path`, the JSON pointer of the offending value
//! (`/items/1/quantity`), or `422 unsupported_version`. In a batch, one such event refuses
//! the batch, and the reason names it (`event 3`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;
use serde_json::value::RawValue;
use tidings::codec::{BinaryMode, Codec, STRUCTURED_CONTENT_TYPE, StructuredJson};
use tidings::envelope::{Envelope, ExtensionValue};
use tidings::transport::{Transport, TransportError};

use tidings::dead_letter::ReasonKind;

use super::auth::{Caller, Tokens};
use super::contracts::Contracts;
use super::stats::Stats;
use super::{dashboard, dead_letters};

/// The media type of a batch.
const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// What the handlers share.
pub(crate) struct Gateway {
    transport: Arc<dyn Transport>,
    /// Publishes (and observes what it publishes).
    bus: tidings::Bus,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    tokens: Tokens,
    webhooks: Vec<WebhookInfo>,
    stats: Stats,
    /// The schemas published events are held to, when `[serve] schemas` is set.
    contracts: Option<Arc<Contracts>>,
}

/// A webhook subscription this server runs, as the API shows it.
#[derive(Debug, Clone)]
pub(crate) struct WebhookInfo {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) patterns: Vec<String>,
}

impl Gateway {
    pub(crate) fn new(
        transport: Arc<dyn Transport>,
        bus: tidings::Bus,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
        tokens: Tokens,
        webhooks: Vec<WebhookInfo>,
        stats: Stats,
        contracts: Option<Arc<Contracts>>,
    ) -> Self {
        Self {
            transport,
            bus,
            metrics,
            tokens,
            webhooks,
            stats,
            contracts,
        }
    }

    /// Holds `envelope` to its schema: `422 schema_violation` with the offending value's
    /// JSON pointer as `path`, or `422 unsupported_version`.
    fn check(&self, envelope: &Envelope) -> Result<(), ApiError> {
        let Some(contracts) = &self.contracts else {
            return Ok(());
        };
        contracts.check(envelope).map_err(|violation| {
            let code = match violation.reason_kind() {
                ReasonKind::UnsupportedVersion => "unsupported_version",
                _ => "schema_violation",
            };
            let error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                violation.to_string(),
            );
            match violation.pointer() {
                Some(pointer) => error.at(pointer),
                None => error,
            }
        })
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    pub(crate) fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub(crate) fn webhooks(&self) -> &[WebhookInfo] {
        &self.webhooks
    }
}

/// The gateway's routes, taking bodies of at most `max_body` bytes.
pub(crate) fn router(gateway: Gateway, max_body: usize) -> Router {
    Router::new()
        .route("/v1/events", post(publish))
        .route("/v1/events:batch", post(publish_batch))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/openapi.json", get(openapi))
        .route("/", get(dashboard::page))
        .route("/v1/stats", get(dashboard::stats))
        .route("/v1/subscriptions", get(dead_letters::subscriptions))
        .route(
            "/v1/subscriptions/{name}/dead-letters",
            get(dead_letters::list).delete(dead_letters::purge),
        )
        .route(
            "/v1/subscriptions/{name}/dead-letters:replay",
            post(dead_letters::replay_many),
        )
        .route(
            "/v1/subscriptions/{name}/dead-letters/{id}",
            get(dead_letters::show),
        )
        .route(
            "/v1/subscriptions/{name}/dead-letters/{id}/replay",
            post(dead_letters::replay_one),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(gateway))
}

/// An error answered as JSON.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    reason: String,
    /// The JSON pointer of the offending value in the event's data, for a schema violation.
    path: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            path: None,
        }
    }

    /// Names the offending value's JSON pointer (the body's `path`).
    fn at(mut self, pointer: &str) -> Self {
        self.path = Some(pointer.to_owned());
        self
    }

    fn invalid(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_event", reason)
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    /// Adds a sentence to the reason.
    pub(crate) fn with_detail(mut self, detail: impl AsRef<str>) -> Self {
        self.reason = format!("{}; {}", self.reason, detail.as_ref());
        self
    }

    /// The error's code (`invalid_event`, `forbidden`, ...).
    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("tidings_gateway_rejected_total", "error" => self.code).increment(1);
        let mut body = json!({ "error": self.code, "reason": self.reason });
        if let Some(path) = self.path {
            body["path"] = path.into();
        }
        let body = Json(body);
        (self.status, body).into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "invalid_body"
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<tidings::Error> for ApiError {
    fn from(error: tidings::Error) -> Self {
        match error {
            tidings::Error::Transport(e) => e.into(),
            tidings::Error::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                error.to_string(),
            ),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<TransportError> for ApiError {
    fn from(error: TransportError) -> Self {
        let reason = error.to_string();
        match error {
            e if e.is_transient() => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason)
            }
            TransportError::Closed => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason)
            }
            TransportError::TooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", reason)
            }
            TransportError::Encode(_) => Self::invalid(reason),
            TransportError::Refused(_) | TransportError::Unroutable { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", reason)
            }
            TransportError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", reason),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason),
        }
    }
}

/// The media type of a request, without parameters, lowercase.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The event of a binary-mode request: `ce-` headers, content type, body.
fn binary(headers: &HeaderMap, body: &[u8]) -> Result<Envelope, ApiError> {
    let mut attributes = Vec::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = percent_encoding::percent_decode(value.as_bytes())
            .decode_utf8()
            .map_err(|_| ApiError::invalid(format!("header `{name}` is not UTF-8")))?;
        attributes.push((attribute, ExtensionValue::String(value.into_owned())));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    BinaryMode::decode(attributes, content_type, body).map_err(|e| ApiError::invalid(e.to_string()))
}

/// The event of a request, in either content mode.
fn event(headers: &HeaderMap, body: &[u8]) -> Result<Envelope, ApiError> {
    match media_type(headers).as_deref() {
        Some(STRUCTURED_CONTENT_TYPE) => StructuredJson
            .decode(body)
            .map_err(|e| ApiError::invalid(e.to_string())),
        Some(BATCH_CONTENT_TYPE) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a batch goes to POST /v1/events:batch",
        )),
        _ if headers.contains_key("ce-specversion") => binary(headers, body),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "expected `{STRUCTURED_CONTENT_TYPE}` (structured mode) or `ce-` headers \
                 (binary mode), got {}",
                other.map_or("no content type".to_owned(), |t| format!("`{t}`"))
            ),
        )),
    }
}

/// An event that names no trace continues the request's (its W3C `traceparent` header): the
/// caller's span is the parent of the event's publishing and handling, one trace from the
/// HTTP call on.
fn continue_trace(headers: &HeaderMap, envelope: &mut Envelope) {
    if envelope.extensions.traceparent.is_some() {
        return;
    }
    let request = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(tidings::trace::TraceParent::parse);
    if let Some(parent) = request {
        envelope.extensions.traceparent = Some(parent.to_string());
    }
}

/// `POST /v1/events`.
async fn publish(
    State(gateway): State<Arc<Gateway>>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let mut envelope = event(&headers, &body?)?;
    caller.authorize_publish(&mut envelope)?;
    gateway.check(&envelope)?;
    continue_trace(&headers, &mut envelope);
    let (id, ty) = (envelope.id.clone(), envelope.ty.clone());
    gateway.bus.publish_envelope(envelope).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "type": ty }))))
}

/// `POST /v1/events:batch`.
async fn publish_batch(
    State(gateway): State<Arc<Gateway>>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body?;
    if media_type(&headers).as_deref() != Some(BATCH_CONTENT_TYPE) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("a batch is `{BATCH_CONTENT_TYPE}`: a JSON array of structured events"),
        ));
    }
    let items: Vec<&RawValue> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("not a JSON array of events: {e}")))?;
    // One event the caller may not publish refuses the whole batch: nothing is published.
    let envelopes = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut envelope = StructuredJson
                .decode(item.get().as_bytes())
                .map_err(|e| ApiError::invalid(format!("event {i}: {e}")))?;
            caller
                .authorize_publish(&mut envelope)
                .and_then(|()| gateway.check(&envelope))
                .map_err(|e| e.with_detail(format!("event {i}")))?;
            continue_trace(&headers, &mut envelope);
            Ok(envelope)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let ids: Vec<String> = envelopes.iter().map(|e| e.id.clone()).collect();
    gateway.bus.publish_envelopes(envelopes).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": ids.len(), "ids": ids })),
    ))
}

/// `GET /healthz`.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`.
async fn readyz(State(gateway): State<Arc<Gateway>>) -> Result<impl IntoResponse, ApiError> {
    let transport = &gateway.transport;
    transport.ready().await.map_err(|error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            error.to_string(),
        )
    })?;
    Ok(Json(
        json!({ "status": "ready", "transport": transport.name() }),
    ))
}

/// `GET /metrics`. The backlog gauges are read from the transport at each scrape.
async fn metrics_text(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    for webhook in gateway.webhooks() {
        let Ok(Some(backlog)) = gateway.transport.backlog(&webhook.name).await else {
            continue;
        };
        let labels = [("subscription", webhook.name.clone())];
        metrics::gauge!("tidings_queue_depth", &labels).set(backlog.depth as f64);
        if let Some(age) = backlog.oldest_age {
            metrics::gauge!("tidings_queue_oldest_age_seconds", &labels).set(age.as_secs_f64());
        } else if backlog.depth == 0 {
            metrics::gauge!("tidings_queue_oldest_age_seconds", &labels).set(0.0);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gateway.metrics.render(),
    )
}

/// The OpenAPI document, kept beside this file; a test checks it against the routes.
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json`.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
