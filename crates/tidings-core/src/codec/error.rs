/// Why bytes could not be decoded into an envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or not a JSON object.
    #[error("malformed event JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A required attribute is absent.
    #[error("missing required attribute `{0}`")]
    MissingAttribute(&'static str),
    /// An attribute is present with a value it may not have.
    #[error("attribute `{name}` is invalid: {reason}")]
    InvalidAttribute {
        /// The attribute.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `specversion` is not `1.0`.
    #[error("unsupported specversion `{0}` (tidings reads CloudEvents 1.0)")]
    UnsupportedSpecVersion(String),
    /// An attribute appears twice.
    #[error("attribute `{0}` appears more than once")]
    DuplicateAttribute(String),
    /// Both `data` and `data_base64`.
    #[error("both `data` and `data_base64` are present")]
    ConflictingData,
    /// Larger than the configured limit.
    #[error("event of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl DecodeError {
    pub(crate) fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        DecodeError::InvalidAttribute {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// The attribute at fault, if the error is about one.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            DecodeError::MissingAttribute(name) => Some(name),
            DecodeError::InvalidAttribute { name, .. } | DecodeError::DuplicateAttribute(name) => {
                Some(name)
            }
            DecodeError::UnsupportedSpecVersion(_) => Some("specversion"),
            DecodeError::ConflictingData => Some("data"),
            _ => None,
        }
    }
}

/// Why an envelope could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// JSON serialization failed.
    #[error("could not serialize event: {0}")]
    Json(#[from] serde_json::Error),
    /// The target format cannot carry part of this envelope.
    #[error("the {format} format cannot carry {what}")]
    Unrepresentable {
        /// The target format.
        format: &'static str,
        /// What it cannot carry.
        what: String,
    },
}
