//! The configuration file, `tidings.toml`: what the command-line flags and the environment
//! do not set.
//!
//! Precedence, highest first: a flag, its environment variable (`TIDINGS_URL`,
//! `TIDINGS_STORE`, `TIDINGS_LISTEN`, `TIDINGS_MAX_BODY`, `TIDINGS_SHUTDOWN_DEADLINE`), the
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
//! ```

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
