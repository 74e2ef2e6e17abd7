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
            // What the job takes stays reachable here, so that if its batch does not commit,
            // every ack that rode along learns why, not only this one.
            let taken: Arc<Mutex<Vec<Pending>>> = Arc::default();
            let (acks, job_taken) = (self.clone(), taken.clone());
            let settled = writer
                .submit(move |batch| {
                    Box::pin(async move {
                        let pairs = {
                            let mut pending = acks.pending.lock().expect("acks lock");
                            let pairs: Vec<[i64; 2]> =
                                pending.iter().map(|p| [p.id, p.token]).collect();
                            *job_taken.lock().expect("acks lock") = std::mem::take(&mut *pending);
                            pairs
                        };
                        settle(&mut batch.conn, retain, &pairs).await
                    })
                })
                .await;
            let taken = std::mem::take(&mut *taken.lock().expect("acks lock"));
            match &settled {
                Ok(acked) => {
                    for p in taken {
                        let _ = p.done.send(Ok(acked.contains(&p.id)));
                    }
                }
                Err(error) => {
                    for p in taken {
                        let _ = p.done.send(Err(error.echo()));
                    }
                }
            }
        }
        outcome.await.map_err(|_| Error::Closed)?
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
