use std::fmt;

use bytes::Bytes;
use serde_json::value::RawValue;

/// The body of an event.
///
/// JSON bodies are kept as the exact text they arrived in, so an envelope passes through
/// tidings without its body being parsed or re-serialized.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// A JSON value (`data` in the structured format).
    Json(Json),
    /// Opaque bytes (`data_base64` in the structured format).
    Binary(Bytes),
}

impl Data {
    /// Serializes `value` as a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Json::from_value(value).map(Data::Json)
    }

    /// A JSON body from text that must be valid JSON.
    pub fn json_text(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        Json::from_text(text).map(Data::Json)
    }

    /// The body as bytes: the JSON text, or the binary payload.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Json(json) => json.get().as_bytes(),
            Data::Binary(bytes) => bytes,
        }
    }

    /// Size of the body in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The text of one JSON value, known to be valid: the data of an event as it was written.
///
/// Like serde_json's [`RawValue`], it keeps the text untouched (member order, number
/// formatting, escapes). Unlike it, a decoder that has just read the value, whether into a
/// `RawValue` or straight into the handler's type, can keep its text without checking it a
/// second time.
///
/// ```
/// use tidings_core::envelope::Json;
///
/// let json = Json::from_text(" {\"total\": 1.50} ").unwrap();
/// assert_eq!(json.get(), "{\"total\": 1.50}");
/// assert!(Json::from_text("{\"total\":").is_err());
/// assert_eq!(Json::from_value(&[1, 2]).unwrap().get(), "[1,2]");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Box<str>);

impl Json {
    /// JSON text, checked to be one valid JSON value; whitespace around it is dropped.
    pub fn from_text(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        let text = text.into();
        let value: &RawValue = serde_json::from_str(&text)?;
        if value.get().len() < text.len() {
            return Ok(Self(value.get().into()));
        }
        Ok(Self(text.into_boxed_str()))
    }

    /// `value` serialized as JSON.
    pub fn from_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(|text| Self(text.into_boxed_str()))
    }

    /// Text a decoder has just read as one JSON value, without whitespace around it.
    pub(crate) fn read(text: &str) -> Self {
        Self(text.into())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Json")
            .field(&format_args!("{}", self.0))
            .finish()
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Box<RawValue>> for Json {
    fn from(value: Box<RawValue>) -> Self {
        Self(value.into())
    }
}

impl From<&RawValue> for Json {
    fn from(value: &RawValue) -> Self {
        Self(value.get().into())
    }
}
