//! The dead-letter API: what `tidings dlq` does, over HTTP, within the caller's tenant.
//!
//! - `GET /v1/subscriptions`: the subscriptions this server runs (its webhooks), with
//!   their dead-letter counts.
//! - `GET /v1/subscriptions/{name}/dead-letters`: dead letters oldest first, filtered by
//!   `type` (a topic pattern), `tenant`, `error` (a substring of the reason), `since` and
//!   `until` (RFC 3339, last failure), paged by `offset` and `limit`.
//! - `GET /v1/subscriptions/{name}/dead-letters/{id}`: one, with its event and error.
//! - `POST /v1/subscriptions/{name}/dead-letters/{id}/replay`: back to the subscription.
//! - `POST /v1/subscriptions/{name}/dead-letters:replay`: `{"ids": [...]}` or
//!   `{"all": true}` (with the list's filters), at most `rate` per second (default 50).
//! - `DELETE /v1/subscriptions/{name}/dead-letters`: purge; operator tokens only.
//!
//! A caller sees only the dead letters of its tenant whose topic it may subscribe to
//! ([`super::auth`]); another tenant's letter is answered `404`, as if it were not there.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use tidings::dead_letter::{DeadLetter, Page, ReplayTarget};
use tidings::topic::Pattern;

use super::auth::{Access, Caller};
use super::gateway::{ApiError, Gateway};

/// How many dead letters a listing reads from the transport at most, to filter them.
const SCAN_LIMIT: usize = 10_000;
/// The page size of those reads.
const SCAN_PAGE: usize = 500;

/// The filters of a listing (and of a replay of `all`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// A topic pattern the event's type must match.
    #[serde(rename = "type")]
    ty: Option<String>,
    tenant: Option<String>,
    /// A substring of the error.
    error: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// A filter, checked.
struct Checked<'a> {
    filter: &'a Filter,
    pattern: Option<Pattern>,
    access: &'a Access,
}

impl<'a> Checked<'a> {
    fn new(filter: &'a Filter, access: &'a Access) -> Result<Self, ApiError> {
        let pattern = filter
            .ty
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(Pattern::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("`type`: {e}")))?;
        Ok(Self {
            filter,
            pattern,
            access,
        })
    }

    fn keeps(&self, letter: &DeadLetter) -> bool {
        let envelope = letter.envelope();
        let topic = envelope.map_or("", |e| e.topic());
        let tenant = envelope.and_then(|e| e.extensions.tenantid.as_deref());
        // Undecodable letters have no tenant: only operators see them.
        let readable = match envelope {
            Some(_) => self.access.may_read(topic, tenant),
            None => self.access.is_operator(),
        };
        readable
            && self.pattern.as_ref().is_none_or(|p| p.matches(topic))
            && self
                .filter
                .tenant
                .as_deref()
                .filter(|t| !t.is_empty())
                .is_none_or(|t| tenant == Some(t))
            && self
                .filter
                .error
                .as_deref()
                .is_none_or(|e| letter.reason.message.contains(e))
            && self
                .filter
                .since
                .is_none_or(|since| letter.last_failure_at >= since)
            && self
                .filter
                .until
                .is_none_or(|until| letter.last_failure_at <= until)
    }
}

/// The letters of `subscription` that `checked` keeps, oldest first: `skip` of them skipped,
/// at most `take` returned; and how many were looked at.
async fn matching(
    gateway: &Gateway,
    subscription: &str,
    checked: &Checked<'_>,
    skip: usize,
    take: usize,
) -> Result<(Vec<DeadLetter>, usize), ApiError> {
    let transport = gateway.transport();
    let mut kept = Vec::new();
    let mut skipped = 0;
    let mut scanned = 0;
    while kept.len() < take && scanned < SCAN_LIMIT {
        let page = transport
            .list(
                subscription,
                Page {
                    offset: scanned,
                    limit: SCAN_PAGE,
                },
            )
            .await?;
        if page.is_empty() {
            break;
        }
        scanned += page.len();
        for letter in page {
            if !checked.keeps(&letter) {
                continue;
            }
            if skipped < skip {
                skipped += 1;
            } else if kept.len() < take {
                kept.push(letter);
            }
        }
    }
    Ok((kept, scanned))
}

/// `GET /v1/subscriptions`.
pub(crate) async fn subscriptions(
    State(gateway): State<Arc<Gateway>>,
    Caller(_access): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut list = Vec::new();
    for webhook in gateway.webhooks() {
        let dead_letters = gateway.transport().count(&webhook.name).await?;
        list.push(json!({
            "name": webhook.name,
            "kind": "webhook",
            "url": webhook.url,
            "patterns": webhook.patterns,
            "dead_letters": dead_letters,
        }));
    }
    Ok(Json(json!({ "subscriptions": list })))
}

/// `GET /v1/subscriptions/{name}/dead-letters`.
pub(crate) async fn list(
    State(gateway): State<Arc<Gateway>>,
    Caller(access): Caller,
    Path(subscription): Path<String>,
    Query(filter): Query<Filter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let checked = Checked::new(&filter, &access)?;
    let limit = filter.limit.unwrap_or(50).clamp(1, 500);
    let (letters, scanned) =
        matching(&gateway, &subscription, &checked, filter.offset, limit).await?;
    // Every dead letter of the subscription, before filters: for operators only, and only
    // counted for them.
    let total = if access.is_operator() {
        Some(gateway.transport().count(&subscription).await?)
    } else {
        None
    };
    Ok(Json(json!({
        "subscription": subscription,
        "dead_letters": letters.iter().map(crate::dlq::letter_json).collect::<Vec<_>>(),
        "offset": filter.offset,
        "scanned": scanned,
        "total": total,
    })))
}

/// One letter the caller may see, or `404`.
async fn readable(
    gateway: &Gateway,
    access: &Access,
    subscription: &str,
    id: &str,
) -> Result<DeadLetter, ApiError> {
    let filter = Filter::default();
    let checked = Checked::new(&filter, access)?;
    match gateway.transport().get(subscription, id).await? {
        Some(letter) if checked.keeps(&letter) => Ok(letter),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead letter `{id}` in `{subscription}`"),
        )),
    }
}

/// `GET /v1/subscriptions/{name}/dead-letters/{id}`.
pub(crate) async fn show(
    State(gateway): State<Arc<Gateway>>,
    Caller(access): Caller,
    Path((subscription, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let letter = readable(&gateway, &access, &subscription, &id).await?;
    Ok(Json(crate::dlq::letter_json(&letter)))
}

/// `POST /v1/subscriptions/{name}/dead-letters/{id}/replay`.
pub(crate) async fn replay_one(
    State(gateway): State<Arc<Gateway>>,
    Caller(access): Caller,
    Path((subscription, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    readable(&gateway, &access, &subscription, &id).await?;
    gateway
        .transport()
        .replay(&subscription, &id, ReplayTarget::Subscription)
        .await?;
    tracing::info!(token = %access.name, %subscription, %id, "dead letter replayed");
    Ok(Json(json!({ "replayed": 1 })))
}

/// The body of `POST .../dead-letters:replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayMany {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
    /// At most this many per second (default 50).
    rate: Option<u32>,
    /// With `all`: the listing's filters.
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `POST /v1/subscriptions/{name}/dead-letters:replay`.
pub(crate) async fn replay_many(
    State(gateway): State<Arc<Gateway>>,
    Caller(access): Caller,
    Path(subscription): Path<String>,
    Json(body): Json<ReplayMany>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ids = match (body.all, body.ids.is_empty()) {
        (true, true) => {
            let filter = Filter {
                ty: body.ty,
                tenant: body.tenant,
                error: body.error,
                ..Filter::default()
            };
            let checked = Checked::new(&filter, &access)?;
            let (letters, _) = matching(&gateway, &subscription, &checked, 0, SCAN_LIMIT).await?;
            letters.into_iter().map(|l| l.id).collect()
        }
        (false, false) => {
            for id in &body.ids {
                readable(&gateway, &access, &subscription, id).await?;
            }
            body.ids
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either `ids` or `all: true`, not both or neither",
            ));
        }
    };
    let rate = body.rate.unwrap_or(50).clamp(1, 10_000);
    let mut pace = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut replayed = 0u64;
    for id in &ids {
        pace.tick().await;
        match gateway
            .transport()
            .replay(&subscription, id, ReplayTarget::Subscription)
            .await
        {
            Ok(()) => replayed += 1,
            // Replayed meanwhile by someone else: nothing left to do for it.
            Err(tidings::transport::TransportError::NotFound(_)) => {}
            Err(error) => {
                return Err(ApiError::from(error).with_detail(format!(
                    "{replayed} of {} replayed before the failure; send the request again \
                     to resume",
                    ids.len()
                )));
            }
        }
    }
    tracing::info!(token = %access.name, %subscription, replayed, "dead letters replayed");
    Ok(Json(json!({ "replayed": replayed })))
}

/// `DELETE /v1/subscriptions/{name}/dead-letters`.
pub(crate) async fn purge(
    State(gateway): State<Arc<Gateway>>,
    Caller(access): Caller,
    Path(subscription): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !access.is_operator() {
        return Err(ApiError::forbidden(format!(
            "token `{}` may not purge: purging removes every tenant's dead letters, which only \
             an operator token (tenant \"*\") may do",
            access.name
        )));
    }
    let purged = gateway.transport().purge(&subscription).await?;
    tracing::warn!(token = %access.name, %subscription, purged, "dead letters purged");
    Ok(Json(json!({ "purged": purged })))
}
