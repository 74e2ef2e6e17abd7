//! The one connection a transport keeps to the broker, re-established after it breaks.
//!
//! lapin 4 can recover a connection by itself, replaying channels and consumers, but delivery
//! tags restart on the recovered channels, which coalesced acks (`multiple`) must never mix up,
//! and its recovery is young. tidings therefore recovers at its own level: a broken connection
//! is replaced, and each publisher and consumer opens fresh channels on the new one, declares
//! what it needs and carries on; deliveries of the old channels are redelivered by the broker.
//!
//! A connection the broker closed is not always noticed by lapin: its status can stay
//! `Connected` while nothing on it answers any more (amqp-rs/lapin#409, "basic_publish hangs
//! upon server shutdown or connection closed by server"). So tidings does not trust the status
//! alone. Each connection is handed out as a [`Link`] carrying a token that is cancelled when
//! lapin reports an error on it, or when a user of it waited longer than its timeout for an
//! answer ([`Connector::discard`]). A cancelled link is replaced at the next call, and the
//! consumers on it move to the new connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::AmqpConfig;
use crate::error::{Error, Result};

/// Hands out a live connection, connecting (with backoff) when there is none.
pub(crate) struct Connector {
    config: Arc<AmqpConfig>,
    /// The broker URL with its password redacted, for messages.
    url: String,
    current: Mutex<Option<Link>>,
    last_error: std::sync::Mutex<Option<String>>,
    pub(crate) closed: CancellationToken,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub(crate) fn new(config: Arc<AmqpConfig>) -> Self {
        Self {
            url: config.url.redacted(),
            config,
            current: Mutex::new(None),
            last_error: std::sync::Mutex::new(None),
            closed: CancellationToken::new(),
        }
    }

    /// The broker, password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Classifies a client error for `operation`.
    pub(crate) fn error(&self, error: &lapin::Error, operation: &str) -> Error {
        Error::from_lapin(error, &self.url, operation)
    }

    /// Connects once, failing fast: for opening a transport, where a wrong URL, password or
    /// certificate should be reported at once rather than retried.
    pub(crate) async fn connect_now(&self) -> Result<Link> {
        let mut slot = self.current.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| link.usable()) {
            return Ok(link.clone());
        }
        let link = self.open().await?;
        *slot = Some(link.clone());
        Ok(link)
    }

    /// A live connection. Reconnects with backoff while the broker is unreachable, for at
    /// most `patience` (`None`: until the transport is closed). Errors that retrying cannot
    /// fix (credentials, TLS) are returned at once.
    pub(crate) async fn connection(&self, patience: Option<Duration>) -> Result<Link> {
        let attempt = async {
            let mut slot = self.current.lock().await;
            let mut failures = 0u32;
            let mut rng = fastrand::Rng::new();
            loop {
                if let Some(link) = slot.as_ref().filter(|link| link.usable()) {
                    return Ok(link.clone());
                }
                if self.closed.is_cancelled() {
                    return Err(Error::Closed);
                }
                if let Some(lost) = slot.take() {
                    lost.give_up();
                    tracing::warn!(broker = %self.url, "connection to RabbitMQ lost; reconnecting");
                }
                match self.open().await {
                    Ok(link) => {
                        if failures > 0 {
                            tracing::info!(broker = %self.url, failures, "reconnected to RabbitMQ");
                        }
                        *slot = Some(link.clone());
                        return Ok(link);
                    }
                    Err(error) if !error.is_transient() => return Err(error),
                    Err(error) => {
                        failures += 1;
                        tracing::debug!(broker = %self.url, %error, failures, "reconnect failed");
                        *self.last_error.lock().expect("not poisoned") = Some(error.to_string());
                        let pause = self.config.reconnect.jittered(failures, &mut rng);
                        tokio::select! {
                            () = self.closed.cancelled() => return Err(Error::Closed),
                            () = tokio::time::sleep(pause.max(Duration::from_millis(20))) => {}
                        }
                    }
                }
            }
        };
        match patience {
            None => attempt.await,
            Some(patience) => match tokio::time::timeout(patience, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Error::Unreachable {
                    url: self.url.clone(),
                    reason: self
                        .last_error
                        .lock()
                        .expect("not poisoned")
                        .clone()
                        .unwrap_or_else(|| format!("no connection within {patience:?}")),
                }),
            },
        }
    }

    /// Gives up on `link`, which stopped answering: the next
    /// [`connection`](Self::connection) call opens another, and its consumers move there.
    /// Closing it is attempted in the background, for a few seconds.
    pub(crate) fn discard(&self, link: &Link) {
        if link.gone.is_cancelled() {
            return;
        }
        if link.blocked.load(Ordering::Relaxed) {
            // Silent because RabbitMQ blocked publishing (a memory or disk alarm): a new
            // connection would be blocked as well.
            return;
        }
        tracing::warn!(broker = %self.url, "connection to RabbitMQ stopped answering; replacing it");
        link.give_up();
        let stale = link.conn.clone();
        tokio::spawn(async move {
            let closing = stale.close(320, "tidings: connection stopped answering".into());
            let _ = tokio::time::timeout(Duration::from_secs(5), closing).await;
        });
    }

    /// Closes the connection and stops every reconnection.
    pub(crate) async fn close(&self) {
        self.closed.cancel();
        if let Some(link) = self.current.lock().await.take() {
            link.give_up();
            // Already broken connections refuse to close, and a half-open one never answers;
            // nothing is left to do for either.
            let closing = link.conn.close(200, "tidings transport closed".into());
            let _ = tokio::time::timeout(self.config.connect_timeout, closing).await;
        }
    }

    /// A new connection, watched for the errors lapin reports on it.
    async fn open(&self) -> Result<Link> {
        let conn = self.connect().await?;
        let link = Link {
            conn: Arc::new(conn),
            gone: CancellationToken::new(),
            blocked: Arc::new(AtomicBool::new(false)),
        };
        let blocked = link.blocked.clone();
        let mut events = link.conn.events_listener();
        let gone = link.gone.clone();
        let closed = self.closed.clone();
        let url = self.url.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = gone.cancelled() => return,
                    () = closed.cancelled() => return,
                    event = events.next() => event,
                };
                match event {
                    Some(Event::Error(error)) => {
                        tracing::debug!(broker = %url, %error, "connection error");
                        gone.cancel();
                        return;
                    }
                    Some(Event::ConnectionBlocked(reason)) => {
                        blocked.store(true, Ordering::Relaxed);
                        tracing::warn!(broker = %url, %reason, "RabbitMQ blocked publishing on this connection");
                    }
                    Some(Event::ConnectionUnblocked) => {
                        blocked.store(false, Ordering::Relaxed);
                        tracing::info!(broker = %url, "RabbitMQ unblocked publishing");
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        });
        Ok(link)
    }

    async fn connect(&self) -> Result<Connection> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.clone().into());
        let uri = self.config.url.expose();
        let connecting = async {
            let connected = if self.config.url.scheme() == Some("amqps") {
                let tls = &self.config.tls;
                let identity = tls
                    .client_identity
                    .clone()
                    .map(|(pem, key)| OwnedIdentity::PKCS8 { pem, key });
                let runtime = lapin::runtime::default_runtime()
                    .map_err(|e| self.error(&e, "starting the client"))?;
                let config = OwnedTLSConfig {
                    identity,
                    cert_chain: tls.ca_pem.clone(),
                };
                Connection::connect_with_config(uri, properties, config, runtime).await
            } else {
                Connection::connect(uri, properties).await
            };
            connected.map_err(|e| self.error(&e, "connecting"))
        };
        tokio::time::timeout(self.config.connect_timeout, connecting)
            .await
            .map_err(|_| Error::Unreachable {
                url: self.url.clone(),
                reason: format!("no answer within {:?}", self.config.connect_timeout),
            })?
    }
}

/// A connection handed out, and whether tidings gave up on it.
#[derive(Clone)]
pub(crate) struct Link {
    conn: Arc<Connection>,
    /// Cancelled once the connection broke or stopped answering; its users move to the next.
    pub(crate) gone: CancellationToken,
    /// Whether RabbitMQ blocked publishing on it (`connection.blocked`).
    blocked: Arc<AtomicBool>,
}

impl Link {
    /// Whether the connection can still be used: lapin calls it connected, and nothing
    /// showed otherwise.
    pub(crate) fn usable(&self) -> bool {
        !self.gone.is_cancelled() && self.conn.status().connected()
    }

    fn give_up(&self) {
        self.gone.cancel();
    }
}

impl std::ops::Deref for Link {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}
