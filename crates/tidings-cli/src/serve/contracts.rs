//! The contracts `tidings serve` holds events to: the JSON Schemas of a schema directory
//! (`[serve] schemas`, `--schemas`), laid out as `tidings::schema::Catalog::write` writes it
//! (`<type>/v<version>.schema.json`).
//!
//! An event of a type the directory describes must be of a version it has, and its data
//! must validate against that version's schema. The gateway answers `422` with the JSON
//! pointer of the offending field; a webhook subscription dead-letters such an event (from
//! a producer that did not go through the gateway) instead of delivering it. Types the
//! directory does not describe pass unchecked.
//!
//! Validation is the `jsonschema` crate's, compiled once per schema at start.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;
use tidings::dead_letter::ReasonKind;
use tidings::envelope::{Data, Envelope};
use tidings::schema::{Catalog, major_version};

/// Compiled schemas, by type and version.
pub(crate) struct Contracts {
    validators: HashMap<(String, u32), jsonschema::Validator>,
    /// The newest version of each type.
    latest: HashMap<String, u32>,
}

/// Why an event breaks its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A version the directory has no schema of (or a `dataversion` that names none).
    UnsupportedVersion(String),
    /// Data that does not validate.
    Schema {
        /// The JSON pointer of the offending value (`/items/0/sku`; empty for the data
        /// itself).
        pointer: String,
        /// What is wrong there.
        message: String,
    },
}

impl Violation {
    /// The dead letter's reason kind for it.
    pub(crate) fn reason_kind(&self) -> ReasonKind {
        match self {
            Self::UnsupportedVersion(_) => ReasonKind::UnsupportedVersion,
            Self::Schema { .. } => ReasonKind::SchemaViolation,
        }
    }

    /// The offending value's JSON pointer, for a schema violation.
    pub(crate) fn pointer(&self) -> Option<&str> {
        match self {
            Self::UnsupportedVersion(_) => None,
            Self::Schema { pointer, .. } => Some(pointer),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion(reason) => f.write_str(reason),
            Self::Schema { pointer, message } if pointer.is_empty() => {
                write!(f, "the data breaks its schema: {message}")
            }
            Self::Schema { pointer, message } => {
                write!(f, "the data breaks its schema at `{pointer}`: {message}")
            }
        }
    }
}

impl std::error::Error for Violation {}

impl Contracts {
    /// Reads and compiles every schema of `dir`.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Self> {
        let catalog = Catalog::read(dir).context("reading the schemas")?;
        let mut validators = HashMap::new();
        let mut latest = HashMap::new();
        for event in catalog.events() {
            let validator = jsonschema::validator_for(&event.schema).map_err(|error| {
                anyhow::anyhow!(
                    "{}: not a usable JSON Schema: {error}",
                    dir.join(event.file()).display()
                )
            })?;
            validators.insert((event.name.clone(), event.version), validator);
            let newest = latest.entry(event.name.clone()).or_insert(event.version);
            *newest = (*newest).max(event.version);
        }
        Ok(Self { validators, latest })
    }

    /// How many types it describes.
    pub(crate) fn types(&self) -> usize {
        self.latest.len()
    }

    /// Whether `envelope` keeps its contract: `Ok` for a type the directory does not
    /// describe. An event without a `dataversion` is taken to be of the newest version.
    pub(crate) fn check(&self, envelope: &Envelope) -> Result<(), Violation> {
        let Some(&newest) = self.latest.get(&envelope.ty) else {
            return Ok(());
        };
        let ty = &envelope.ty;
        let version = match envelope.extensions.dataversion.as_deref() {
            None => newest,
            Some(text) => major_version(text).ok_or_else(|| {
                Violation::UnsupportedVersion(format!(
                    "`dataversion` `{text}` of {ty} names no version (expected 2, v2 or 2.1)"
                ))
            })?,
        };
        let Some(validator) = self.validators.get(&(ty.clone(), version)) else {
            return Err(Violation::UnsupportedVersion(if version > newest {
                format!("{ty} version {version} is newer than its schemas (up to {newest})")
            } else {
                format!("{ty} has no schema of version {version}")
            }));
        };
        let data = match &envelope.data {
            Some(Data::Json(raw)) => {
                serde_json::from_str(raw.get()).map_err(|error| Violation::Schema {
                    pointer: String::new(),
                    message: format!("not JSON: {error}"),
                })?
            }
            Some(Data::Binary(_)) => {
                return Err(Violation::Schema {
                    pointer: String::new(),
                    message: "the data is binary; its schema describes JSON".to_owned(),
                });
            }
            None => Value::Null,
        };
        let mut errors = validator.iter_errors(&data);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let more = errors.count();
        let mut message = first.to_string();
        if more > 0 {
            message.push_str(&format!(" (and {more} more)"));
        }
        Err(Violation::Schema {
            pointer: first.instance_path().to_string(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tidings::schema::EventSchema;

    use super::*;

    fn contracts() -> (Contracts, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tidings-contracts-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let order = |required: &[&str]| {
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                },
                "required": required,
                "$defs": {"Item": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
                    "required": ["sku", "quantity"],
                }},
            })
        };
        Catalog::new("shop")
            .with(EventSchema::new("order.placed", 1, order(&["order_id"])))
            .with(EventSchema::new(
                "order.placed",
                2,
                order(&["order_id", "items"]),
            ))
            .write(&dir)
            .unwrap();
        (Contracts::load(&dir).unwrap(), dir)
    }

    fn placed(version: Option<&str>, data: Value) -> Envelope {
        let envelope = Envelope::new("py", "order.placed")
            .with_json_data(&data)
            .unwrap();
        match version {
            Some(version) => envelope.with_data_version(version),
            None => envelope,
        }
    }

    #[test]
    fn a_violation_names_the_json_pointer_of_the_offending_value() {
        let (contracts, dir) = contracts();
        let bad = placed(
            Some("2"),
            json!({"order_id": "o-1", "items": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 0}]}),
        );
        let violation = contracts.check(&bad).unwrap_err();
        assert_eq!(
            violation.pointer(),
            Some("/items/1/quantity"),
            "{violation}"
        );
        assert_eq!(violation.reason_kind(), ReasonKind::SchemaViolation);
        assert!(violation.to_string().contains("minimum"), "{violation}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn each_version_is_held_to_its_own_schema() {
        let (contracts, dir) = contracts();
        let v1 = json!({"order_id": "o-1"});
        assert_eq!(contracts.check(&placed(Some("1.0"), v1.clone())), Ok(()));
        let missing_items = contracts.check(&placed(None, v1)).unwrap_err();
        assert!(
            missing_items.to_string().contains("items"),
            "no dataversion: the newest version, which requires `items`: {missing_items}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unknown_version_is_unsupported_and_an_unknown_type_passes() {
        let (contracts, dir) = contracts();
        let newer = contracts.check(&placed(Some("3"), json!({}))).unwrap_err();
        assert_eq!(newer.reason_kind(), ReasonKind::UnsupportedVersion);
        assert_eq!(
            newer.to_string(),
            "order.placed version 3 is newer than its schemas (up to 2)"
        );
        let garbled = contracts
            .check(&placed(Some("two"), json!({})))
            .unwrap_err();
        assert!(garbled.to_string().contains("`two`"), "{garbled}");
        let other = Envelope::new("py", "payment.failed")
            .with_json_data(&json!(42))
            .unwrap();
        assert_eq!(contracts.check(&other), Ok(()));
        assert_eq!(contracts.types(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
