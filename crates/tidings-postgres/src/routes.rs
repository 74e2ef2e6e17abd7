//! The routing table: which subscriptions are bound to a topic, read from `tidings_bindings`.
//!
//! The table lives in the database, so that every process publishing into it routes the same
//! way. Each transport keeps it compiled into a [`Matcher`] and reloads it when
//! `bindings_version` changed, which every publish checks in its own transaction.

use std::sync::Arc;

use sqlx::PgConnection;
use tidings_core::topic::{Matcher, Pattern};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// The version loaded, `None` before the first load.
    version: Option<i64>,
    matcher: Matcher<Arc<str>>,
}

impl Routes {
    /// The bindings' version as `conn` sees it: read before taking the table's lock, so
    /// that concurrent publishers do not take turns for the round trip.
    pub(crate) async fn version(conn: &mut PgConnection) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM tidings_queue_meta WHERE key = 'bindings_version'",
        )
        .fetch_one(&mut *conn)
        .await?)
    }

    /// Reloads the table if it is older than `version` (another transaction changed it).
    pub(crate) async fn refresh(&mut self, version: i64, conn: &mut PgConnection) -> Result<()> {
        if self.version >= Some(version) {
            return Ok(());
        }
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
        Ok(())
    }

    /// The subscriptions bound to `topic`, each once.
    pub(crate) fn matching(&self, topic: &str) -> Vec<Arc<str>> {
        self.matcher.values_matching(topic)
    }
}
