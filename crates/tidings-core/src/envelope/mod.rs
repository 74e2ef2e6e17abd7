//! The CloudEvents 1.0 envelope every event travels in.
//!
//! One envelope for every transport: the required attributes (`id`, `source`, `type`,
//! `specversion`), the optional ones (`time`, `datacontenttype`, `dataschema`, `subject`), the
//! extensions tidings relies on ([`Extensions`]) and the event body ([`Data`]).
//!
//! ```
//! use tidings_core::envelope::{Category, Envelope};
//!
//! let envelope = Envelope::new("oms-service", "order.created")
//!     .with_subject("order_xyz")
//!     .with_json_data(&serde_json::json!({ "order_id": "order_xyz", "total": 1000.0 }))
//!     .unwrap();
//! assert_eq!(envelope.ty, "order.created");
//! assert!(envelope.time.is_some());
//! assert_eq!(envelope.extensions.category, None::<Category>);
//! ```

mod data;
mod extensions;

pub use data::{Data, Json};
pub use extensions::{
    Category, ExtensionError, ExtensionRef, ExtensionValue, Extensions, is_valid_extension_name,
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The only CloudEvents version tidings reads and writes.
pub const SPEC_VERSION: &str = "1.0";

/// A CloudEvents 1.0 event: attributes plus an optional body.
///
/// `source` + `id` identify an event; that pair is what de-duplication keys on.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Envelope {
    /// Unique within `source`; a UUIDv7 when tidings creates the event.
    pub id: String,
    /// The context that produced the event, a URI-reference such as `oms-service`.
    pub source: String,
    /// The event type, also its topic (routing key), e.g. `order.created`.
    pub ty: String,
    /// When the occurrence happened, in UTC.
    pub time: Option<DateTime<Utc>>,
    /// Media type of `data`, `application/json` for domain events.
    pub datacontenttype: Option<String>,
    /// URI of the schema `data` adheres to.
    pub dataschema: Option<String>,
    /// The subject of the event in the context of the source: the aggregate id.
    pub subject: Option<String>,
    /// Extension attributes.
    pub extensions: Extensions,
    /// The event body.
    pub data: Option<Data>,
}

impl Envelope {
    /// A new envelope with a fresh UUIDv7 `id` and `time` set to now.
    pub fn new(source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7().to_string(),
            source: source.into(),
            ty: ty.into(),
            time: Some(Utc::now()),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            extensions: Extensions::default(),
            data: None,
        }
    }

    /// The topic (routing key) this envelope is published under: its type.
    pub fn topic(&self) -> &str {
        &self.ty
    }

    /// Replaces the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the subject (aggregate id).
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets `data` to the JSON serialization of `value` and `datacontenttype` to
    /// `application/json`.
    pub fn with_json_data<T: serde::Serialize + ?Sized>(
        mut self,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        self.data = Some(Data::json(value)?);
        self.datacontenttype = Some("application/json".to_owned());
        Ok(self)
    }

    /// Sets the body as given.
    pub fn with_data(mut self, data: Data) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets the tenant extension.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.extensions.tenantid = Some(tenant.into());
        self
    }

    /// Sets the correlation extension.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.extensions.correlationid = Some(id.into());
        self
    }

    /// Sets the causation extension.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.extensions.causationid = Some(id.into());
        self
    }

    /// Sets the schema version of `data`.
    pub fn with_data_version(mut self, version: impl Into<String>) -> Self {
        self.extensions.dataversion = Some(version.into());
        self
    }

    /// Deserializes the JSON body into `T`; a missing body reads as JSON `null`.
    ///
    /// Errors name the path of the offending field.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, DataError> {
        let text = match &self.data {
            Some(Data::Json(raw)) => raw.get(),
            Some(Data::Binary(_)) => return Err(DataError::NotJson),
            None => "null",
        };
        // serde_json alone first: tracking the path of every field costs as much as the
        // parse, and is only needed to say where it failed, so it runs only then.
        serde_json::from_str(text).or_else(|_| {
            DataError::located(|| {
                serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
            })
        })
    }

    /// The correlation id, falling back to this event's own id: the first event of a flow
    /// correlates with itself.
    pub fn correlation_id(&self) -> &str {
        self.extensions.correlationid.as_deref().unwrap_or(&self.id)
    }
}

/// The body could not be read as the requested type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The body is binary, not JSON.
    #[error("event data is binary, not JSON")]
    NotJson,
    /// The JSON body does not fit the type.
    #[error("event data does not match the schema at `{path}`: {message}")]
    Invalid {
        /// Dotted path of the offending field (`.` for the root).
        path: String,
        /// What was wrong.
        message: String,
    },
}

impl DataError {
    /// After a deserialization without path tracking failed: runs it again, `tracked`, with
    /// the tracking on, for the path of the offending field. Tracking every field costs
    /// about as much as the parse, so the fast path leaves it off and pays for it only when
    /// the data does not fit.
    ///
    /// Should the tracked run succeed (a `Deserialize` that reads a value moved out of a
    /// `Value` but not a borrowed one, say), its result stands.
    pub(crate) fn located<T, E: std::fmt::Display>(
        tracked: impl FnOnce() -> Result<T, serde_path_to_error::Error<E>>,
    ) -> Result<T, Self> {
        tracked().map_err(|e| DataError::Invalid {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    }
}
