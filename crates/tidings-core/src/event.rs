//! Typed domain events, their schemas and their versions.

use crate::envelope::{Category, Data, DataError, Envelope};

/// Turns the data of one version of an event into the next version's: an entry of
/// [`DomainEvent::UPCASTERS`].
pub type Upcaster = fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>;

/// An upcaster could not convert the data it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UpcastError(String);

impl UpcastError {
    /// Why the data could not be converted.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// A typed domain event: a serde struct with a name (its CloudEvents `type` and topic) and a
/// schema version.
///
/// Usually implemented with `#[derive(DomainEvent)]` (re-exported by the `tidings` crate); by
/// hand it reads:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tidings_core::DomainEvent;
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderCreated {
///     order_id: String,
///     total: f64,
/// }
///
/// impl DomainEvent for OrderCreated {
///     const NAME: &'static str = "order.created";
///     const VERSION: u32 = 1;
///     fn subject(&self) -> Option<String> {
///         Some(self.order_id.clone())
///     }
/// }
///
/// let event = OrderCreated { order_id: "o-1".into(), total: 10.0 };
/// assert_eq!(event.subject().as_deref(), Some("o-1"));
/// ```
pub trait DomainEvent:
    serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// The event type, also the topic it is published under, e.g. `order.created`.
    const NAME: &'static str;
    /// The schema version of the payload, written to the `dataversion` extension.
    const VERSION: u32;
    /// What kind of event this is, written to the `category` extension.
    const CATEGORY: Option<Category> = None;

    /// The aggregate this event is about, written to `subject` (and used as partition key).
    fn subject(&self) -> Option<String> {
        None
    }

    /// The JSON Schema (draft 2020-12) of its data as serde writes it, or `None` when the
    /// type does not describe one.
    ///
    /// `#[derive(DomainEvent)]` implements it with [schemars](crate::schemars): the serde
    /// attributes (`rename`, `rename_all`, `default`, `skip`, `tag`...) and doc comments are
    /// reflected, and the field types must implement `schemars::JsonSchema` (every std type,
    /// `chrono` and `uuid` types do; `#[schemars(with = "T")]` describes another one). By
    /// hand, a type that derives `schemars::JsonSchema` returns
    /// `Some(schemars::schema_for!(Self))`.
    fn data_schema() -> Option<schemars::Schema> {
        None
    }

    /// The upcasters from its earlier versions, oldest first: `UPCASTERS[0]` turns version
    /// 1 into 2, `UPCASTERS[1]` 2 into 3, and so on up to [`VERSION`](Self::VERSION). Empty
    /// (the default) when no earlier version can be read. With the derive:
    /// `#[event(version = 3, upcasters(v1_to_v2, v2_to_v3))]`.
    const UPCASTERS: &'static [Upcaster] = &[];
}

/// Why an event's data could not be read as the type a consumer knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// `dataversion` is not a version number.
    #[error("`dataversion` `{0}` is not a version number")]
    Malformed(String),
    /// Written by a newer version than the consumer knows: it cannot be read without losing
    /// what the newer version added.
    #[error("{name} version {version} is newer than this consumer reads (up to {known})")]
    Newer {
        /// The event type.
        name: &'static str,
        /// The version on the wire.
        version: u32,
        /// The newest version the consumer reads.
        known: u32,
    },
    /// Written by an older version that no upcaster converts.
    #[error(
        "{name} version {version} is older than this consumer reads ({known}) and no upcaster \
         converts it"
    )]
    NoUpcaster {
        /// The event type.
        name: &'static str,
        /// The version on the wire.
        version: u32,
        /// The version the consumer reads.
        known: u32,
    },
    /// An upcaster failed.
    #[error("upcasting {name} from version {from}: {error}")]
    Upcast {
        /// The event type.
        name: &'static str,
        /// The version the failed upcaster converts from.
        from: u32,
        /// What it said.
        error: UpcastError,
    },
    /// The data, upcast or not, does not fit the type.
    #[error(transparent)]
    Data(#[from] DataError),
}

impl VersionError {
    /// Whether the event's version is one the consumer cannot read (rather than data that
    /// does not fit its schema).
    pub fn is_unsupported_version(&self) -> bool {
        matches!(
            self,
            VersionError::Malformed(_)
                | VersionError::Newer { .. }
                | VersionError::NoUpcaster { .. }
        )
    }
}

/// The major number of a `dataversion`: `2`, `v2`, `2.0` and `2.1` are all version 2 (what
/// producers outside tidings write, such as the legacy envelope's `metadata.version: "1.0"`).
/// `None` for anything else, and for 0.
pub fn major_version(text: &str) -> Option<u32> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let (major, rest) = text.split_once('.').unwrap_or((text, "0"));
    let minor_ok = rest.split('.').all(|part| part.parse::<u32>().is_ok());
    major.parse::<u32>().ok().filter(|v| *v > 0 && minor_ok)
}

/// The event's data as a `T`, upcast from the version it was written in (the major number
/// of its `dataversion`: `2`, `v2` and `2.1` are version 2; an event without one is taken
/// to be of `T`'s version).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use serde_json::{Value, json};
/// use tidings_core::DomainEvent;
/// use tidings_core::envelope::Envelope;
/// use tidings_core::event::{UpcastError, Upcaster, VersionError, decode};
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderPlaced {
///     order_id: String,
///     total_cents: u64,
/// }
///
/// /// Version 1 had `total` in euros.
/// fn v1_to_v2(mut data: Value) -> Result<Value, UpcastError> {
///     let euros = data["total"].as_f64().ok_or_else(|| UpcastError::new("no `total`"))?;
///     data["total_cents"] = json!((euros * 100.0).round() as u64);
///     Ok(data)
/// }
///
/// impl DomainEvent for OrderPlaced {
///     const NAME: &'static str = "order.placed";
///     const VERSION: u32 = 2;
///     const UPCASTERS: &'static [Upcaster] = &[v1_to_v2];
/// }
///
/// let v1 = Envelope::new("shop", "order.placed")
///     .with_json_data(&json!({"order_id": "o-1", "total": 12.5}))?
///     .with_data_version("1");
/// assert_eq!(decode::<OrderPlaced>(&v1)?.total_cents, 1250);
///
/// let v3 = v1.clone().with_data_version("3");
/// assert!(matches!(decode::<OrderPlaced>(&v3), Err(VersionError::Newer { version: 3, .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode<T: DomainEvent>(envelope: &Envelope) -> Result<T, VersionError> {
    if version_of::<T>(envelope)? == T::VERSION {
        return Ok(envelope.data_as::<T>()?);
    }
    from_value(upcast::<T>(envelope)?)
}

/// The event's data as JSON of `T`'s version: upcast step by step from the version it was
/// written in, as [`decode`] does before deserializing. For a check of the data (against
/// `T`'s JSON Schema, say) between upcasting and [`from_value`].
pub fn upcast<T: DomainEvent>(envelope: &Envelope) -> Result<serde_json::Value, VersionError> {
    let version = version_of::<T>(envelope)?;
    let mut data = match &envelope.data {
        Some(Data::Json(raw)) => {
            serde_json::from_str(raw.get()).map_err(|e| DataError::Invalid {
                path: ".".to_owned(),
                message: e.to_string(),
            })?
        }
        Some(Data::Binary(_)) => return Err(DataError::NotJson.into()),
        None => serde_json::Value::Null,
    };
    if version == T::VERSION {
        return Ok(data);
    }
    // `UPCASTERS[i]` converts version `i + 1`: the chain from `version` starts at
    // `version - 1` and must reach `T::VERSION` (`version_of` checked it is all there).
    let first = (version - 1) as usize;
    let needed = (T::VERSION - 1) as usize;
    for (index, upcast) in T::UPCASTERS[first..needed].iter().enumerate() {
        data = upcast(data).map_err(|error| VersionError::Upcast {
            name: T::NAME,
            from: version + index as u32,
            error,
        })?;
    }
    Ok(data)
}

/// `data` (of `T`'s version) as a `T`; a field that does not fit is named by its path.
pub fn from_value<T: DomainEvent>(data: serde_json::Value) -> Result<T, VersionError> {
    // By reference, so that the data is still there to find the path in if it does not fit.
    T::deserialize(&data)
        .or_else(|_| DataError::located(|| serde_path_to_error::deserialize(data)))
        .map_err(VersionError::Data)
}

/// Whether `envelope`'s data is of `T`'s version, so that [`decode`] reads it as it is,
/// without upcasting: what a reader that took the data into a `T` before looking at the
/// envelope's `dataversion` checks before using it.
///
/// ```
/// use tidings_core::DomainEvent;
/// use tidings_core::envelope::Envelope;
/// use tidings_core::event::is_current;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderPlaced {}
///
/// impl DomainEvent for OrderPlaced {
///     const NAME: &'static str = "order.placed";
///     const VERSION: u32 = 2;
/// }
///
/// let envelope = Envelope::new("shop", "order.placed");
/// assert!(is_current::<OrderPlaced>(&envelope));
/// assert!(is_current::<OrderPlaced>(&envelope.clone().with_data_version("2.1")));
/// assert!(!is_current::<OrderPlaced>(&envelope.clone().with_data_version("1")));
/// assert!(!is_current::<OrderPlaced>(&envelope.with_data_version("three")));
/// ```
pub fn is_current<T: DomainEvent>(envelope: &Envelope) -> bool {
    matches!(version_of::<T>(envelope), Ok(version) if version == T::VERSION)
}

/// The version `envelope` was written in, if `T` reads it: not newer than `T`'s, and, when
/// older, with an upcaster from each version up.
fn version_of<T: DomainEvent>(envelope: &Envelope) -> Result<u32, VersionError> {
    let version = match envelope.extensions.dataversion.as_deref() {
        None => T::VERSION,
        Some(text) => {
            major_version(text).ok_or_else(|| VersionError::Malformed(text.to_owned()))?
        }
    };
    if version > T::VERSION {
        return Err(VersionError::Newer {
            name: T::NAME,
            version,
            known: T::VERSION,
        });
    }
    if version < T::VERSION && T::UPCASTERS.len() < (T::VERSION - 1) as usize {
        return Err(VersionError::NoUpcaster {
            name: T::NAME,
            version,
            known: T::VERSION,
        });
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::major_version;

    #[test]
    fn the_major_number_is_the_version() {
        for (text, version) in [
            ("2", Some(2)),
            ("v2", Some(2)),
            ("2.0", Some(2)),
            ("2.1.3", Some(2)),
            (" 1.0 ", Some(1)),
            ("0", None),
            ("two", None),
            ("2.x", None),
            ("", None),
        ] {
            assert_eq!(major_version(text), version, "{text:?}");
        }
    }
}
