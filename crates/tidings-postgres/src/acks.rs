//! Acknowledgements coalesced into one statement per round trip.
//!
//! An ack is a one-row `DELETE`; run one statement each, a consumer acking thousands of
//! messages a second pays a round trip and a commit per message. Instead, acks queue here,
//! and one task at a time deletes everything queued with a single statement, answering each
//! ack once that statement has committed; acks that arrive meanwhile wait for the next one.
//! An idle queue acks a lone message at once, with no added delay.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::oneshot;

/// One ack waiting for its statement.
struct Pending {
    id: i64,
    token: i64,
    /// Whether the row was still leased by `token` (and is now deleted), or why the
    /// statement failed.
    done: oneshot::Sender<Result<bool, String>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// A task is deleting, and will take what is pending next.
    flushing: bool,
}

/// The acks of one transport waiting for their statement.
#[derive(Default)]
pub(crate) struct Acks {
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waiting = self.queue.lock().map_or(0, |q| q.pending.len());
        f.debug_struct("Acks").field("waiting", &waiting).finish()
    }
}

impl Acks {
    /// Deletes the row `id` leased by `token`; returns whether the lease still held.
    pub(crate) async fn ack(
        self: &Arc<Self>,
        pool: &PgPool,
        id: i64,
        token: i64,
    ) -> sqlx::Result<u64> {
        let (done, outcome) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().expect("acks lock");
            queue.pending.push(Pending { id, token, done });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if lead {
            // A task of its own, so that a cancelled ack cannot strand the others.
            tokio::spawn(self.clone().flush(pool.clone()));
        }
        match outcome.await {
            Ok(Ok(held)) => Ok(u64::from(held)),
            Ok(Err(message)) => Err(sqlx::Error::Protocol(message)),
            Err(_) => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Deletes what is pending, again and again, until nothing is.
    async fn flush(self: Arc<Self>, pool: PgPool) {
        loop {
            let taken = {
                let mut queue = self.queue.lock().expect("acks lock");
                if queue.pending.is_empty() {
                    queue.flushing = false;
                    return;
                }
                std::mem::take(&mut queue.pending)
            };
            let ids: Vec<i64> = taken.iter().map(|p| p.id).collect();
            let tokens: Vec<i64> = taken.iter().map(|p| p.token).collect();
            let deleted: sqlx::Result<Vec<i64>> = sqlx::query_scalar(
                "DELETE FROM tidings_messages m \
                 USING unnest($1::bigint[], $2::bigint[]) AS a(id, token) \
                 WHERE m.id = a.id AND m.lease_token = a.token \
                 RETURNING m.id",
            )
            .bind(&ids)
            .bind(&tokens)
            .fetch_all(&pool)
            .await;
            match deleted {
                Ok(deleted) => {
                    let deleted: HashSet<i64> = deleted.into_iter().collect();
                    for p in taken {
                        let _ = p.done.send(Ok(deleted.contains(&p.id)));
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    for p in taken {
                        let _ = p.done.send(Err(message.clone()));
                    }
                }
            }
        }
    }
}
