use bytes::Bytes;
use serde_json::value::RawValue;

/// The body of an event.
///
/// JSON bodies are kept as the exact text they arrived in, so an envelope passes through
/// tidings without its body being parsed or re-serialized.
#[derive(Clone, Debug)]
pub enum Data {
    /// A JSON value (`data` in the structured format).
    Json(Box<RawValue>),
    /// Opaque bytes (`data_base64` in the structured format).
    Binary(Bytes),
}

impl Data {
    /// Serializes `value` as a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Data::Json)
    }

    /// A JSON body from text that must be valid JSON.
    pub fn json_text(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.into()).map(Data::Json)
    }

    /// The body as bytes: the JSON text, or the binary payload.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Json(raw) => raw.get().as_bytes(),
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

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Data::Json(a), Data::Json(b)) => a.get() == b.get(),
            (Data::Binary(a), Data::Binary(b)) => a == b,
            _ => false,
        }
    }
}
