//! The routing table: which subscriptions are bound to a topic, read from `tidings_bindings`.
//!
//! The table lives in the database, so that every process publishing into the file routes the
//! same way. The writer keeps it compiled into a [`Matcher`] and reloads it when
//! `bindings_version` changed, checking that once per batch.

use std::sync::Arc;

use sqlx::SqliteConnection;
use tidings_core::topic::{Matcher, Pattern};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// The version loaded, `None` before the first load.
    version: Option<i64>,
    /// Whether the version was checked in the current batch.
    checked: bool,
    matcher: Matcher<Arc<str>>,
}

impl Routes {
    pub(crate) fn begin_batch(&mut self) {
        self.checked = false;
    }

    pub(crate) fn invalidate(&mut self) {
        self.version = None;
        self.checked = false;
    }

    pub(crate) async fn refresh(&mut self, conn: &mut SqliteConnection) -> Result<()> {
        if self.checked && self.version.is_some() {
            return Ok(());
        }
        let version: i64 =
            sqlx::query_scalar("SELECT value FROM tidings_meta WHERE key = 'bindings_version'")
                .fetch_one(&mut *conn)
                .await?;
        if self.version != Some(version) {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT subscription, pattern FROM tidings_bindings")
                    .fetch_all(&mut *conn)
                    .await?;
            let mut matcher = Matcher::new();
            for (subscription, pattern) in rows {
                let pattern = Pattern::parse(&pattern).map_err(|e| {
                    Error::Malformed(format!("binding `{pattern}` of `{subscription}`: {e}"))
                })?;
                matcher.insert(pattern, Arc::from(subscription));
            }
            self.matcher = matcher;
            self.version = Some(version);
        }
        self.checked = true;
        Ok(())
    }

    /// The subscriptions bound to `topic`, each once.
    pub(crate) fn matching(&self, topic: &str) -> Vec<Arc<str>> {
        self.matcher.values_matching(topic)
    }
}
