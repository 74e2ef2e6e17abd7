//! Batched acknowledgements of one subscription stream.
//!
//! Each handled entry must be acked (`XACK`) and deleted (`XDEL`); one round trip each would
//! cap consumption at the network's round-trip rate. Acks are queued here instead, and one
//! task sends whatever has queued as one `MULTI` of `XACK key group id...` and
//! `XDEL key id...`, then answers every waiting caller.

use std::sync::Arc;

use tidings_core::transport::TransportError;
use tokio::sync::{mpsc, oneshot};

use crate::Inner;
use crate::keys::GROUP;

type Reply = oneshot::Sender<Result<(), String>>;

/// Most entries acked in one round.
const ROUND: usize = 1024;

/// The acknowledgements of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Acks {
    queue: mpsc::UnboundedSender<(String, Reply)>,
    url: String,
}

impl Acks {
    /// Acks for entries of the stream at `key`, sent by a task that lives as long as this
    /// does.
    pub(crate) fn new(inner: Arc<Inner>, key: String) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let url = inner.url.clone();
        tokio::spawn(flusher(inner, key, rx));
        Self { queue, url }
    }

    /// Acks and deletes entry `id`; returns once Redis has done it.
    pub(crate) async fn ack(&self, id: String) -> Result<(), TransportError> {
        let unreachable = |reason: String| {
            TransportError::from(crate::Error::Unreachable {
                url: self.url.clone(),
                reason: format!("acknowledging: {reason}"),
            })
        };
        let (reply, done) = oneshot::channel();
        self.queue
            .send((id, reply))
            .map_err(|_| unreachable("the stream is closed".to_owned()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(unreachable(reason)),
            Err(_) => Err(unreachable("the stream is closed".to_owned())),
        }
    }
}

async fn flusher(inner: Arc<Inner>, key: String, mut rx: mpsc::UnboundedReceiver<(String, Reply)>) {
    while let Some(first) = rx.recv().await {
        // Let the handlers that are ready settle first: one round then covers many.
        tokio::task::yield_now().await;
        let mut round = vec![first];
        while round.len() < ROUND {
            match rx.try_recv() {
                Ok(next) => round.push(next),
                Err(_) => break,
            }
        }
        let ids: Vec<&str> = round.iter().map(|(id, _)| id.as_str()).collect();
        let mut conn = inner.conn.clone();
        let result: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&key)
            .arg(GROUP)
            .arg(&ids)
            .ignore()
            .cmd("XDEL")
            .arg(&key)
            .arg(&ids)
            .ignore()
            .query_async(&mut conn)
            .await;
        let outcome = result.map_err(|e| inner.error(&e, "acking").to_string());
        for (_, reply) in round {
            let _ = reply.send(outcome.clone());
        }
    }
}
