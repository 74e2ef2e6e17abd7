//! The dashboard at `/`: live numbers per subscription and a dead-letter browser, in one page
//! (`dashboard.html`, no build step and nothing fetched from elsewhere) over the same API a
//! script would use: `GET /v1/stats` and the [dead-letter API](super::dead_letters).
//!
//! With API tokens configured the page asks for one and keeps it for the browser tab
//! (`sessionStorage`); it shows what that token may see.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use serde_json::json;

use super::auth::Caller;
use super::gateway::{ApiError, Gateway};

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /`.
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /v1/stats`: the transport's readiness, what was published, and each subscription's
/// counts with the dead letters waiting.
pub(crate) async fn stats(
    State(gateway): State<Arc<Gateway>>,
    Caller(_access): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let transport = gateway.transport();
    let ready = transport.ready().await;
    let stats = gateway.stats();
    let mut subscriptions = Vec::new();
    for webhook in gateway.webhooks() {
        let counts = stats.of(&webhook.name);
        // A transport that cannot count now (broker away) shows no number rather than failing
        // the whole page.
        let dead_letters = transport.count(&webhook.name).await.ok();
        let backlog = transport.backlog(&webhook.name).await.ok().flatten();
        subscriptions.push(json!({
            "name": webhook.name,
            "kind": "webhook",
            "url": webhook.url,
            "patterns": webhook.patterns,
            "delivered": counts.delivered,
            "in_flight": counts.in_flight,
            "acked": counts.acked,
            "retried": counts.retried,
            "dead_lettered": counts.dead_lettered,
            "dead_letters": dead_letters,
            // Lag: what waits, and for how long (null when the transport cannot tell).
            "backlog": backlog.map(|b| json!({
                "depth": b.depth,
                "oldest_age_s": b.oldest_age.map(|age| age.as_secs_f64()),
            })),
            "last_failure": counts.last_failure,
        }));
    }
    Ok(Json(json!({
        "transport": transport.name(),
        "ready": ready.is_ok(),
        "ready_error": ready.err().map(|e| e.to_string()),
        "uptime_s": stats.uptime().as_secs(),
        "published": stats.published(),
        "subscriptions": subscriptions,
    })))
}
