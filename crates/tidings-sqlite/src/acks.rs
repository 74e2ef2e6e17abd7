//! Acknowledgements coalesced into one statement per writer batch.
//!
//! An ack is a one-row `DELETE` (or `UPDATE`, when acked messages are retained). Run one job
//! each, a consumer acking hundreds of messages a second pays a savepoint and a round trip to
//! the connection's thread per message. Instead, acks queue here: the first of a run submits
//! one writer job, which takes every ack queued by the time the writer reaches it and settles
//! them with a single statement; its submitter hands each waiting ack its outcome once the
//! batch has committed, so an ack still returns only when it is on disk.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::store::now_ms;
use crate::writer::Writer;

/// One ack waiting for its statement.
struct Pending {
    id: i64,
    token: i64,
    /// Whether the row was still leased by `token` (and is now settled).
    done: oneshot::Sender<Result<bool>>,
}

/// The acks of one store waiting for their statement.
#[derive(Default)]
pub(crate) struct Acks {
    pending: Mutex<Vec<Pending>>,
}

impl std::fmt::Debug for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waiting = self.pending.lock().map_or(0, |p| p.len());
        f.debug_struct("Acks").field("waiting", &waiting).finish()
    }
}

impl Acks {
    /// Settles the row `id` leased by `token` as acked, deleting it or, with `retain`, keeping
    /// it marked. Returns whether the lease still held; errors when the batch did not commit.
    pub(crate) async fn ack(
        self: &Arc<Self>,
        writer: &Writer,
        retain: bool,
        id: i64,
        token: i64,
    ) -> Result<bool> {
        let (done, outcome) = oneshot::channel();
        let first = {
            let mut pending = self.pending.lock().expect("acks lock");
            pending.push(Pending { id, token, done });
            pending.len() == 1
        };
        if first {
            // On a task of its own, so that the acks riding along are answered even if this
            // one's caller stops waiting.
            tokio::spawn(self.clone().flush(writer.clone(), retain));
        }
        outcome.await.map_err(|_| Error::Closed)?
    }

    /// Submits one writer job settling every ack queued by the time it runs, and answers
    /// each of them once its batch has committed, or failed.
    async fn flush(self: Arc<Self>, writer: Writer, retain: bool) {
        // What the job takes stays reachable here (`None` until the job runs), so that
        // however the batch fails, every ack waiting learns why.
        let taken: Arc<Mutex<Option<Vec<Pending>>>> = Arc::default();
        let (acks, job_taken) = (self.clone(), taken.clone());
        let settled = writer
            .submit(move |batch| {
                Box::pin(async move {
                    let pairs = {
                        let mut pending = acks.pending.lock().expect("acks lock");
                        let pairs: Vec<[i64; 2]> =
                            pending.iter().map(|p| [p.id, p.token]).collect();
                        *job_taken.lock().expect("acks lock") = Some(std::mem::take(&mut *pending));
                        pairs
                    };
                    settle(&mut batch.conn, retain, &pairs).await
                })
            })
            .await;
        // Not taken: the batch failed before the job ran, and every ack queued so far is
        // still in `pending`. No other flush starts while `pending` is not empty, so taking
        // them here races with nothing.
        let taken = taken.lock().expect("acks lock").take();
        let taken =
            taken.unwrap_or_else(|| std::mem::take(&mut *self.pending.lock().expect("acks lock")));
        for p in taken {
            let _ = p.done.send(match &settled {
                Ok(acked) => Ok(acked.contains(&p.id)),
                Err(error) => Err(error.echo()),
            });
        }
    }
}

/// One statement for all of `pairs` ([id, lease token]); returns the ids whose lease still
/// held.
async fn settle(
    conn: &mut sqlx::SqliteConnection,
    retain: bool,
    pairs: &[[i64; 2]],
) -> Result<HashSet<i64>> {
    let pairs = serde_json::to_string(pairs).expect("integers serialize");
    // `?1` is a JSON array of [id, lease token] pairs: the rows still leased by those tokens.
    let ids: Vec<i64> = if retain {
        sqlx::query_scalar(
            "UPDATE tidings_messages SET acked_at = ?2, lease_token = NULL \
             WHERE id IN (SELECT m.id FROM json_each(?1) j JOIN tidings_messages m \
                 ON m.id = (j.value ->> 0) AND m.lease_token = (j.value ->> 1)) \
             RETURNING id",
        )
        .bind(pairs)
        .bind(now_ms())
        .fetch_all(conn)
        .await?
    } else {
        sqlx::query_scalar(
            "DELETE FROM tidings_messages \
             WHERE id IN (SELECT m.id FROM json_each(?1) j JOIN tidings_messages m \
                 ON m.id = (j.value ->> 0) AND m.lease_token = (j.value ->> 1)) \
             RETURNING id",
        )
        .bind(pairs)
        .fetch_all(conn)
        .await?
    };
    Ok(ids.into_iter().collect())
}
