//! A JSON value reduced to what an attribute may be, read without failing on the wrong type,
//! so that the codec can say which attribute is wrong instead of where the parser stopped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::DecodeError;
use crate::envelope::ExtensionValue;

///
/// Strings are borrowed from the input where they are written without escapes: an attribute
/// that is parsed (`time`) or compared (`specversion`) is never copied.
#[derive(Debug)]
pub(crate) enum Scalar<'de> {
    Null,
    String(Cow<'de, str>),
    Bool(bool),
    Integer(i64),
    Float,
    Structured,
}

impl From<ExtensionValue> for Scalar<'_> {
    fn from(value: ExtensionValue) -> Self {
        match value {
            ExtensionValue::String(s) => Scalar::String(Cow::Owned(s)),
            ExtensionValue::Bool(b) => Scalar::Bool(b),
            ExtensionValue::Integer(i) => Scalar::Integer(i),
        }
    }
}

impl<'de> Scalar<'de> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::String(_) => "a string",
            Scalar::Bool(_) => "a boolean",
            Scalar::Integer(_) => "an integer",
            Scalar::Float => "a number with a fraction",
            Scalar::Structured => "an object or array",
        }
    }

    /// A string attribute, still borrowed from the input where it was; `null` reads as
    /// absent, as CloudEvents says.
    pub(crate) fn into_str(self, name: &str) -> Result<Option<Cow<'de, str>>, DecodeError> {
        match self {
            Scalar::Null => Ok(None),
            Scalar::String(s) => Ok(Some(s)),
            other => Err(DecodeError::invalid(
                name,
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }

    /// An extension value: string, boolean or 32-bit integer.
    pub(crate) fn into_extension(self, name: &str) -> Result<Option<ExtensionValue>, DecodeError> {
        match self {
            Scalar::Null => Ok(None),
            Scalar::String(s) => Ok(Some(ExtensionValue::String(s.into_owned()))),
            Scalar::Bool(b) => Ok(Some(ExtensionValue::Bool(b))),
            Scalar::Integer(i) if i32::try_from(i).is_ok() => Ok(Some(ExtensionValue::Integer(i))),
            Scalar::Integer(i) => Err(DecodeError::invalid(
                name,
                format!("integer {i} is outside the 32-bit range CloudEvents allows"),
            )),
            other => Err(DecodeError::invalid(
                name,
                format!(
                    "extension values are strings, booleans or integers, found {}",
                    other.kind()
                ),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Integer(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(i64::try_from(v).map_or(Scalar::Float, Scalar::Integer))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Float)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::String(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Structured)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Structured)
    }
}
