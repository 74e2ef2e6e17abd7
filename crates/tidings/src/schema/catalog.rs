//! A set of event types with their schemas, from a bus or a directory, and back to one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Report, asyncapi, compat};
use crate::Bus;

/// The file every schema directory holds beside the schemas.
const ASYNCAPI_FILE: &str = "asyncapi.json";
/// A schema file's name ends so: `v2.schema.json`.
const SCHEMA_SUFFIX: &str = ".schema.json";

/// One version of an event type: its name, version and the JSON Schema of its data, and
/// whether the service sends or receives it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventSchema {
    /// The type's name: the CloudEvents `type` and topic.
    pub name: String,
    /// The version of its data (`dataversion`).
    pub version: u32,
    /// The JSON Schema of its data; `{}` (anything) for a type that describes none.
    pub schema: Value,
    /// Whether the service publishes it.
    pub sent: bool,
    /// Whether the service handles it.
    pub received: bool,
}

impl EventSchema {
    /// Version `version` of `name`, whose data `schema` describes; neither sent nor received.
    pub fn new(name: impl Into<String>, version: u32, schema: Value) -> Self {
        Self {
            name: name.into(),
            version,
            schema,
            sent: false,
            received: false,
        }
    }

    /// Marks it as published by the service.
    #[must_use]
    pub fn sent(mut self, sent: bool) -> Self {
        self.sent = sent;
        self
    }

    /// Marks it as handled by the service.
    #[must_use]
    pub fn received(mut self, received: bool) -> Self {
        self.received = received;
        self
    }

    /// Its file in a schema directory: `<name>/v<version>.schema.json`.
    pub fn file(&self) -> PathBuf {
        Path::new(&self.name).join(format!("v{}{SCHEMA_SUFFIX}", self.version))
    }
}

/// Event types with their versions and schemas: what a service sends and receives.
///
/// Built from a bus ([`Catalog::of`]) or read from a directory ([`Catalog::read`]); written
/// with [`Catalog::write`], compared with [`Catalog::compare_with`], described for other
/// teams by [`Catalog::asyncapi`]. See [the module](crate::schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    service: String,
    api_version: String,
    /// Sorted by name, then version; one entry per name and version.
    events: Vec<EventSchema>,
}

impl Catalog {
    /// An empty catalog of `service` (the AsyncAPI document's title).
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            api_version: "1.0.0".to_owned(),
            events: Vec::new(),
        }
    }

    /// The types `bus` knows so far ([`Bus::event_types`]): those it published, those its
    /// subscriptions handle, and those [registered](Bus::register) ahead of use. The
    /// service is the bus's source.
    pub fn of(bus: &Bus) -> Self {
        bus.event_types()
            .into_iter()
            .fold(Self::new(bus.source()), |catalog, ty| {
                let schema = ty
                    .schema
                    .map_or_else(|| Value::Object(Default::default()), |s| s.to_value());
                catalog.with(
                    EventSchema::new(ty.name, ty.version, schema)
                        .sent(ty.published)
                        .received(ty.consumed),
                )
            })
    }

    /// Adds `event`, replacing the entry of the same name and version.
    #[must_use]
    pub fn with(mut self, event: EventSchema) -> Self {
        match self
            .events
            .binary_search_by(|e| (e.name.as_str(), e.version).cmp(&(&event.name, event.version)))
        {
            Ok(at) => self.events[at] = event,
            Err(at) => self.events.insert(at, event),
        }
        self
    }

    /// Sets the version of the API the AsyncAPI document describes (default `1.0.0`).
    #[must_use]
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// The service it describes.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Its event types, sorted by name and version.
    pub fn events(&self) -> &[EventSchema] {
        &self.events
    }

    /// Version `version` of `name`.
    pub fn get(&self, name: &str, version: u32) -> Option<&EventSchema> {
        self.events
            .binary_search_by(|e| (e.name.as_str(), e.version).cmp(&(name, version)))
            .ok()
            .map(|at| &self.events[at])
    }

    /// The newest version of `name`.
    pub fn latest(&self, name: &str) -> Option<&EventSchema> {
        self.events.iter().rev().find(|e| e.name == name)
    }

    /// The catalog's AsyncAPI 3.0 document: a channel per event type (its topic), a `send`
    /// operation for each type the service publishes and a `receive` one for each it
    /// handles, a message per version with its payload schema and the CloudEvents
    /// attributes as headers.
    pub fn asyncapi(&self) -> Value {
        asyncapi::document(self, &self.api_version)
    }

    /// What changed from `snapshot` (the committed contract) to this catalog, and whether
    /// any of it breaks a producer or consumer written against the snapshot. See
    /// [`ChangeKind`](super::ChangeKind) for the rules.
    pub fn compare_with(&self, snapshot: &Catalog) -> Report {
        compat::compare(snapshot, self)
    }

    /// Reads the schemas of a directory laid out by [`Catalog::write`]:
    /// `<name>/v<version>.schema.json`; other files are ignored. The service is the
    /// directory's name; no type is marked sent or received.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self, SchemaError> {
        let dir = dir.as_ref();
        let service = dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut catalog = Self::new(service);
        for entry in read_dir(dir)? {
            let type_dir = entry.path();
            if !type_dir.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            for file in read_dir(&type_dir)? {
                let path = file.path();
                let file_name = file.file_name().to_string_lossy().into_owned();
                let Some(stem) = file_name.strip_suffix(SCHEMA_SUFFIX) else {
                    continue;
                };
                let version = stem
                    .strip_prefix('v')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| SchemaError::FileName(path.clone()))?;
                let text = std::fs::read(&path).map_err(|source| SchemaError::Io {
                    path: path.clone(),
                    source,
                })?;
                let schema = serde_json::from_slice(&text).map_err(|source| SchemaError::Json {
                    path: path.clone(),
                    source,
                })?;
                catalog = catalog.with(EventSchema::new(name.clone(), version, schema));
            }
        }
        Ok(catalog)
    }

    /// Writes each schema to `<dir>/<name>/v<version>.schema.json` and the AsyncAPI document
    /// to `<dir>/asyncapi.json`, creating what is missing. Files of other types and versions
    /// already there stay: a directory keeps every version ever written, as consumers of old
    /// versions still need them.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<(), SchemaError> {
        let dir = dir.as_ref();
        for event in &self.events {
            if !is_path_component(&event.name) {
                return Err(SchemaError::Name(event.name.clone()));
            }
            write_json(&dir.join(event.file()), &event.schema)?;
        }
        write_json(&dir.join(ASYNCAPI_FILE), &self.asyncapi())
    }
}

/// A name that is one path component: no separator, not `.` or `..`.
fn is_path_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.contains(':')
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, SchemaError> {
    let io = |source| SchemaError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    Ok(entries)
}

fn write_json(path: &Path, value: &Value) -> Result<(), SchemaError> {
    let io = |source| SchemaError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    text.push('\n');
    std::fs::write(path, text).map_err(io)
}

/// What can go wrong reading or writing a schema directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A schema file is not JSON.
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A `.schema.json` file whose name is not `v<version>.schema.json`.
    #[error("{}: expected a name like `v2.schema.json` (v, then the version from 1)", .0.display())]
    FileName(PathBuf),
    /// An event type whose name cannot be a directory's.
    #[error("event type `{0}` cannot name a directory (it holds a path separator or is `.`/`..`)")]
    Name(String),
}

impl fmt::Display for EventSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tidings-catalog-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_written_catalog_reads_back_with_its_schemas() {
        let dir = scratch("roundtrip");
        let catalog = Catalog::new("checkout")
            .with(EventSchema::new("order.placed", 2, json!({"type": "object"})).sent(true))
            .with(EventSchema::new(
                "order.placed",
                1,
                json!({"type": "array"}),
            ))
            .with(EventSchema::new("payment.failed", 1, json!({})).received(true));
        catalog.write(&dir).unwrap();
        assert!(dir.join("order.placed/v2.schema.json").is_file());
        assert!(dir.join("asyncapi.json").is_file());
        let read = Catalog::read(&dir).unwrap();
        let versions: Vec<String> = read.events().iter().map(ToString::to_string).collect();
        assert_eq!(
            versions,
            ["order.placed v1", "order.placed v2", "payment.failed v1"]
        );
        assert_eq!(
            read.latest("order.placed").unwrap().schema["type"],
            "object"
        );
        assert_eq!(read.get("order.placed", 1).unwrap().schema["type"], "array");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_name_that_would_leave_the_directory_is_refused() {
        let dir = scratch("escape");
        for name in ["../evil", "a/b", ".."] {
            let catalog = Catalog::new("x").with(EventSchema::new(name, 1, json!({})));
            assert!(
                matches!(catalog.write(&dir), Err(SchemaError::Name(n)) if n == name),
                "{name}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_misnamed_or_malformed_schema_file_is_an_error_naming_it() {
        let dir = scratch("malformed");
        std::fs::create_dir_all(dir.join("order.placed")).unwrap();
        std::fs::write(dir.join("order.placed/latest.schema.json"), "{}").unwrap();
        let error = Catalog::read(&dir).unwrap_err().to_string();
        assert!(error.contains("latest.schema.json"), "{error}");
        std::fs::remove_file(dir.join("order.placed/latest.schema.json")).unwrap();
        std::fs::write(dir.join("order.placed/v1.schema.json"), "{ not json").unwrap();
        let error = Catalog::read(&dir).unwrap_err().to_string();
        assert!(
            error.contains("v1.schema.json") && error.contains("not JSON"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
