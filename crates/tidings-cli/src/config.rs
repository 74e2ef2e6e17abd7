//! The configuration file, `tidings.toml`: what the command-line flags and the environment
//! do not set.
//!
//! Precedence, highest first: a flag, its environment variable (`TIDINGS_URL`,
//! `TIDINGS_STORE`, `TIDINGS_LISTEN`, `TIDINGS_MAX_BODY`, `TIDINGS_SHUTDOWN_DEADLINE`,
//! `TIDINGS_SCHEMAS`), the
//! file, the default. The file is `--config PATH`, else `TIDINGS_CONFIG`, else
//! `tidings.toml` in the working directory when there is one.
//!
//! ```toml
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # else the embedded store
//! store = "var/tidings.db"
//!
//! [serve]
//! listen = "0.0.0.0:7878"
//! max_body = 1048576
//! shutdown_deadline = "10s"
//! schemas = "schemas"              # hold events to <type>/v<version>.schema.json
//!
//! # API tokens. With none, the gateway is open to anyone who can reach it.
//! [[serve.tokens]]
//! name = "checkout"                 # named in logs and metrics; the token never is
//! token_env = "CHECKOUT_TOKEN"      # or `token = "..."` in the file itself
//! tenant = "acme"                   # "*": every tenant (operators)
//! publish = ["order.#"]             # topics it may publish
//! subscribe = ["order.#"]           # topics whose dead letters it may see and replay
//!
//! # A subscription that delivers to an HTTP endpoint.
//! [[serve.webhooks]]
//! name = "notification"
//! patterns = ["order.*"]
//! url = "https://notify.internal/events"
//! secret_env = "NOTIFY_WEBHOOK_SECRET"   # or `secret = "whsec_..."`
//! tenant = "acme"                        # only this tenant's events (default: all)
//! concurrency = 8
//! timeout = "10s"
//! max_attempts = 5
//! backoff = "1s"
//! ```
//!
//! Secrets (`token`, `secret`) can sit in the file or, better, in the environment variable
//! the `_env` key names; they never appear in logs or in `Debug` output.
//!
//! An `amqp://` URL is also tuned by the variables RabbitMQ users already set:
//! `RABBITMQ_PREFETCH` (unacked deliveries per consumer) and `RABBITMQ_DLQ_TTL` (dead letters
//! expire after this many milliseconds); a malformed one stops the command with its name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

/// The file's name in the working directory, read when present.
const DEFAULT_FILE: &str = "tidings.toml";

/// What the file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// The transport's URL.
    pub(crate) url: Option<String>,
    /// The embedded store's file.
    pub(crate) store: Option<PathBuf>,
    /// `tidings serve`.
    #[serde(default)]
    pub(crate) serve: ServeSection,
}

/// `[serve]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeSection {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) max_body: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub(crate) shutdown_deadline: Option<Duration>,
    /// A schema directory events are held to.
    pub(crate) schemas: Option<PathBuf>,
    /// `[[serve.tokens]]`.
    #[serde(default)]
    pub(crate) tokens: Vec<TokenSection>,
    /// `[[serve.webhooks]]`.
    #[serde(default)]
    pub(crate) webhooks: Vec<WebhookSection>,
}

/// `[[serve.tokens]]`: one API token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenSection {
    pub(crate) name: String,
    token: Option<Secret>,
    token_env: Option<String>,
    pub(crate) tenant: String,
    #[serde(default)]
    pub(crate) publish: Vec<String>,
    #[serde(default)]
    pub(crate) subscribe: Vec<String>,
}

impl TokenSection {
    /// The token, from the file or from the variable `token_env` names.
    pub(crate) fn token(&self) -> anyhow::Result<Secret> {
        secret(
            &format!("token `{}`", self.name),
            ("token", self.token.as_ref()),
            ("token_env", self.token_env.as_deref()),
        )
    }
}

/// `[[serve.webhooks]]`: a subscription that delivers to an HTTP endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSection {
    pub(crate) name: String,
    pub(crate) patterns: Vec<String>,
    pub(crate) url: String,
    secret: Option<Secret>,
    secret_env: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) concurrency: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub(crate) backoff: Option<Duration>,
}

impl WebhookSection {
    /// The signing secret, from the file or from the variable `secret_env` names.
    pub(crate) fn secret(&self) -> anyhow::Result<Secret> {
        secret(
            &format!("webhook `{}`", self.name),
            ("secret", self.secret.as_ref()),
            ("secret_env", self.secret_env.as_deref()),
        )
    }
}

fn secret(
    what: &str,
    (key, value): (&str, Option<&Secret>),
    (env_key, env): (&str, Option<&str>),
) -> anyhow::Result<Secret> {
    match (value, env) {
        (Some(value), None) if !value.expose().is_empty() => Ok(value.clone()),
        (None, Some(name)) => match std::env::var(name) {
            Ok(value) if !value.is_empty() => Ok(Secret(value)),
            _ => anyhow::bail!("{what}: the environment variable {name} ({env_key}) is not set"),
        },
        (Some(_), Some(_)) => anyhow::bail!("{what}: set `{key}` or `{env_key}`, not both"),
        _ => anyhow::bail!("{what}: `{key}` (or `{env_key}`) is missing or empty"),
    }
}

/// A secret value: a token or a signing key. `Debug` shows `"***"`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom))
        .transpose()
}

impl FileConfig {
    /// The file `path` names, or the default one when it exists; empty without a file.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(path) => path.to_owned(),
            None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
            None => return Ok(Self::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        // One line: where, and what is wrong (TOML's own message draws the source).
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "the configuration {}{}: {}",
                path.display(),
                line.map(|l| format!(", line {l}")).unwrap_or_default(),
                e.message().trim()
            )
        })
    }
}
