//! The one connection a transport keeps to the broker, re-established after it breaks.
//!
//! lapin 4 can recover a connection by itself, replaying channels and consumers, but delivery
//! tags restart on the recovered channels, which coalesced acks (`multiple`) must never mix up,
//! and its recovery is young. tidings therefore recovers at its own level: a broken connection
//! is replaced, and each publisher and consumer opens fresh channels on the new one, declares
//! what it needs and carries on; deliveries of the old channels are redelivered by the broker.

use std::sync::Arc;
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::AmqpConfig;
use crate::error::{Error, Result};

/// Hands out a live connection, connecting (with backoff) when there is none.
pub(crate) struct Connector {
    config: Arc<AmqpConfig>,
    /// The broker URL with its password redacted, for messages.
    url: String,
    current: Mutex<Option<Arc<Connection>>>,
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
    pub(crate) async fn connect_now(&self) -> Result<Arc<Connection>> {
        let mut slot = self.current.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(self.open().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A live connection. Reconnects with backoff while the broker is unreachable, for at
    /// most `patience` (`None`: until the transport is closed). Errors that retrying cannot
    /// fix (credentials, TLS) are returned at once.
    pub(crate) async fn connection(&self, patience: Option<Duration>) -> Result<Arc<Connection>> {
        let attempt = async {
            let mut slot = self.current.lock().await;
            let mut failures = 0u32;
            let mut rng = fastrand::Rng::new();
            loop {
                if let Some(conn) = slot.as_ref().filter(|c| c.status().connected()) {
                    return Ok(conn.clone());
                }
                if self.closed.is_cancelled() {
                    return Err(Error::Closed);
                }
                if slot.take().is_some() {
                    tracing::warn!(broker = %self.url, "connection to RabbitMQ lost; reconnecting");
                }
                match self.open().await {
                    Ok(conn) => {
                        if failures > 0 {
                            tracing::info!(broker = %self.url, failures, "reconnected to RabbitMQ");
                        }
                        let conn = Arc::new(conn);
                        *slot = Some(conn.clone());
                        return Ok(conn);
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

    /// Closes the connection and stops every reconnection.
    pub(crate) async fn close(&self) {
        self.closed.cancel();
        if let Some(conn) = self.current.lock().await.take() {
            // Already broken connections refuse to close; nothing is left to do for them.
            let _ = conn.close(200, "tidings transport closed".into()).await;
        }
    }

    async fn open(&self) -> Result<Connection> {
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
