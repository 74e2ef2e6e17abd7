//! Routing at publish time: the subscriptions' bindings, kept in Redis, matched here.

use std::collections::HashMap;
use std::sync::Arc;

use tidings_core::topic::{Matcher, Pattern};
use tidings_core::transport::TransportError;
use tokio::sync::RwLock;

use crate::config::Trim;
use crate::error::Error;
use crate::{Inner, scripts};

/// One event to add, as stream fields.
pub(crate) struct Entry {
    pub(crate) topic: String,
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
}

/// The bindings as last read, with the version they were read at.
#[derive(Default)]
pub(crate) struct Routes {
    cached: RwLock<Option<Arc<Table>>>,
}

struct Table {
    /// The bindings' version token (`0` when there are none).
    version: String,
    matcher: Matcher<Arc<str>>,
}

/// Events added per script call, so that one call never holds Redis for long.
const CHUNK: usize = 500;
/// Attempts when the bindings keep changing under the publisher.
const ATTEMPTS: usize = 10;

impl Inner {
    /// Adds `patterns` to `subscription`'s bindings (they accumulate, as on a broker).
    pub(crate) async fn bind(&self, subscription: &str, patterns: &[Pattern]) -> Result<(), Error> {
        let mut invocation = scripts::BIND.key(self.keys.bindings());
        invocation
            .key(self.keys.version())
            .arg(uuid::Uuid::now_v7().to_string())
            .arg(subscription);
        for pattern in patterns {
            invocation.arg(pattern.as_str());
        }
        let mut conn = self.conn.clone();
        let _: String = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(&e, "binding a subscription"))?;
        *self.routes.cached.write().await = None;
        Ok(())
    }

    /// Removes `subscription`: its binding, stream, waiting retries and dead letters.
    pub(crate) async fn unbind(&self, subscription: &str) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let _: i64 = scripts::UNBIND
            .key(self.keys.bindings())
            .key(self.keys.version())
            .key(self.keys.stream(subscription))
            .key(self.keys.delayed(subscription))
            .key(self.keys.dead_letters(subscription))
            .arg(uuid::Uuid::now_v7().to_string())
            .arg(subscription)
            .arg(self.keys.retries(subscription))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(&e, "removing a subscription"))?;
        *self.routes.cached.write().await = None;
        Ok(())
    }

    async fn table(&self) -> Result<Arc<Table>, Error> {
        if let Some(table) = self.routes.cached.read().await.clone() {
            return Ok(table);
        }
        let mut conn = self.conn.clone();
        let (bindings, version): (HashMap<String, String>, Option<String>) = redis::pipe()
            .atomic()
            .hgetall(self.keys.bindings())
            .get(self.keys.version())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(&e, "reading the bindings"))?;
        let mut matcher = Matcher::new();
        for (subscription, patterns) in bindings {
            let subscription: Arc<str> = subscription.into();
            let patterns: Vec<String> = serde_json::from_str(&patterns).unwrap_or_default();
            for pattern in patterns {
                if let Ok(pattern) = Pattern::parse(&pattern) {
                    matcher.insert(pattern, subscription.clone());
                }
            }
        }
        let table = Arc::new(Table {
            version: version.unwrap_or_else(|| "0".to_owned()),
            matcher,
        });
        *self.routes.cached.write().await = Some(table.clone());
        Ok(table)
    }

    /// Adds each entry to the streams of the subscriptions whose patterns match its topic.
    pub(crate) async fn route(&self, entries: Vec<Entry>) -> Result<(), TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        for chunk in entries.chunks(CHUNK) {
            self.route_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn route_chunk(&self, entries: &[Entry]) -> Result<(), TransportError> {
        for _ in 0..ATTEMPTS {
            let table = self.table().await?;
            let mut streams: Vec<Arc<str>> = Vec::new();
            let mut invocation = scripts::PUBLISH.key(self.keys.version());
            invocation.arg(&table.version);
            match self.config.trim {
                None => invocation.arg("").arg(""),
                Some(Trim::MaxLen(n)) => invocation.arg("MAXLEN").arg(n),
                Some(Trim::MaxAge(age)) => {
                    let since = chrono::Utc::now().timestamp_millis()
                        - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                    invocation.arg("MINID").arg(format!("{}-0", since.max(0)))
                }
            };
            for entry in entries {
                let mut targets: Vec<usize> = Vec::new();
                for (_, subscription) in table.matcher.matches(&entry.topic) {
                    let index = match streams.iter().position(|s| s == subscription) {
                        Some(i) => i,
                        None => {
                            streams.push(subscription.clone());
                            streams.len() - 1
                        }
                    };
                    if !targets.contains(&index) {
                        targets.push(index);
                    }
                }
                if targets.is_empty() && self.config.require_route {
                    return Err(TransportError::Unroutable {
                        topic: entry.topic.clone(),
                    });
                }
                invocation.arg(targets.len());
                for index in targets {
                    // KEYS[1] is the version; streams follow, 1-based in Lua.
                    invocation.arg(index + 2);
                }
                invocation
                    .arg(&entry.topic)
                    .arg(&entry.content_type)
                    .arg(&entry.body[..]);
            }
            for subscription in &streams {
                invocation.key(self.keys.stream(subscription));
            }
            let mut conn = self.conn.clone();
            let added: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| TransportError::from(self.error(&e, "publishing")))?;
            if added >= 0 {
                return Ok(());
            }
            // The bindings changed since they were read: read them again.
            *self.routes.cached.write().await = None;
        }
        Err(TransportError::Refused(
            "the bindings kept changing while publishing; try again".to_owned(),
        ))
    }
}
