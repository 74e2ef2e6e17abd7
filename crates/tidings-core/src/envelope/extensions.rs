use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// CloudEvents extension attributes: the ones tidings knows, plus any others, kept as-is.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Extensions {
    /// Tenant the event belongs to.
    pub tenantid: Option<String>,
    /// Id shared by every event of one business flow.
    pub correlationid: Option<String>,
    /// Id of the event that caused this one.
    pub causationid: Option<String>,
    /// W3C trace context `traceparent`.
    pub traceparent: Option<String>,
    /// W3C trace context `tracestate`.
    pub tracestate: Option<String>,
    /// Schema version of `data`, e.g. `1`.
    pub dataversion: Option<String>,
    /// What kind of event this is.
    pub category: Option<Category>,
    /// Key that orders events relative to each other (the aggregate id by default).
    pub partitionkey: Option<String>,
    /// Every other extension, by name.
    pub other: BTreeMap<String, ExtensionValue>,
}

impl Extensions {
    /// Every extension as `(name, value)`, known ones first, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ExtensionRef<'_>)> {
        let known = [
            ("tenantid", self.tenantid.as_deref()),
            ("correlationid", self.correlationid.as_deref()),
            ("causationid", self.causationid.as_deref()),
            ("traceparent", self.traceparent.as_deref()),
            ("tracestate", self.tracestate.as_deref()),
            ("dataversion", self.dataversion.as_deref()),
            ("category", self.category.map(Category::as_str)),
            ("partitionkey", self.partitionkey.as_deref()),
        ];
        known
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, ExtensionRef::String(v))))
            .chain(self.other.iter().map(|(k, v)| (k.as_str(), v.as_ref())))
    }

    /// Sets an extension by name, routing known names to their fields.
    ///
    /// Fails when the name is not a valid CloudEvents attribute name or is the name of a
    /// context attribute (`type`, `id`, …, which an extension would shadow: an envelope
    /// carrying both could not be encoded), when a known extension gets a non-string value,
    /// or when `category` is not one of [`Category`]'s values.
    pub fn set(&mut self, name: &str, value: ExtensionValue) -> Result<(), ExtensionError> {
        // The known extensions first: their names are valid and no context attribute's, so
        // only the others are checked (for every event decoded, a known one skips both).
        let slot = match name {
            "tenantid" => &mut self.tenantid,
            "correlationid" => &mut self.correlationid,
            "causationid" => &mut self.causationid,
            "traceparent" => &mut self.traceparent,
            "tracestate" => &mut self.tracestate,
            "dataversion" => &mut self.dataversion,
            "partitionkey" => &mut self.partitionkey,
            "category" => {
                let ExtensionValue::String(s) = value else {
                    return Err(ExtensionError::NotAString(name.to_owned()));
                };
                self.category = Some(s.parse()?);
                return Ok(());
            }
            _ => {
                if !is_valid_extension_name(name) {
                    return Err(ExtensionError::InvalidName(name.to_owned()));
                }
                if CONTEXT_ATTRIBUTES.contains(&name) {
                    return Err(ExtensionError::ContextAttribute(name.to_owned()));
                }
                self.other.insert(name.to_owned(), value);
                return Ok(());
            }
        };
        match value {
            ExtensionValue::String(s) => {
                *slot = Some(s);
                Ok(())
            }
            _ => Err(ExtensionError::NotAString(name.to_owned())),
        }
    }
}

/// The context attributes CloudEvents 1.0 defines (`data_base64` aside, which no valid
/// extension name can spell), and `data`: names no extension may take.
const CONTEXT_ATTRIBUTES: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "dataschema",
    "subject",
    "data",
];

/// CloudEvents attribute names: lower-case ASCII letters and digits, at most 20 of them.
pub fn is_valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why an extension could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// Not `[a-z0-9]{1,20}`.
    #[error("`{0}` is not a valid extension name (lower-case letters and digits, 1 to 20)")]
    InvalidName(String),
    /// The name of a context attribute such as `type`.
    #[error("`{0}` is a CloudEvents context attribute, not an extension")]
    ContextAttribute(String),
    /// A known extension that must be a string.
    #[error("extension `{0}` must be a string")]
    NotAString(String),
    /// An unknown category.
    #[error("unknown category `{0}` (expected domain, integration, system, user or notification)")]
    UnknownCategory(String),
}

/// The value of an extension attribute: CloudEvents allows strings, booleans and integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtensionValue {
    /// A string (also URIs, timestamps and binary, which CloudEvents encodes as strings).
    String(String),
    /// A boolean.
    Bool(bool),
    /// A 32-bit signed integer in CloudEvents terms; stored wider, validated on decode.
    Integer(i64),
}

impl ExtensionValue {
    fn as_ref(&self) -> ExtensionRef<'_> {
        match self {
            ExtensionValue::String(s) => ExtensionRef::String(s),
            ExtensionValue::Bool(b) => ExtensionRef::Bool(*b),
            ExtensionValue::Integer(i) => ExtensionRef::Integer(*i),
        }
    }
}

impl From<&str> for ExtensionValue {
    fn from(s: &str) -> Self {
        ExtensionValue::String(s.to_owned())
    }
}

impl From<String> for ExtensionValue {
    fn from(s: String) -> Self {
        ExtensionValue::String(s)
    }
}

impl From<ExtensionRef<'_>> for ExtensionValue {
    /// An owned copy, e.g. of an attribute [`BinaryMode::for_each_attribute`] hands out.
    ///
    /// [`BinaryMode::for_each_attribute`]: crate::codec::BinaryMode::for_each_attribute
    fn from(value: ExtensionRef<'_>) -> Self {
        match value {
            ExtensionRef::String(s) => ExtensionValue::String(s.to_owned()),
            ExtensionRef::Bool(b) => ExtensionValue::Bool(b),
            ExtensionRef::Integer(i) => ExtensionValue::Integer(i),
        }
    }
}

/// A borrowed [`ExtensionValue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtensionRef<'a> {
    /// A string.
    String(&'a str),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Integer(i64),
}

impl fmt::Display for ExtensionRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionRef::String(s) => f.write_str(s),
            ExtensionRef::Bool(b) => write!(f, "{b}"),
            ExtensionRef::Integer(i) => write!(f, "{i}"),
        }
    }
}

/// The `category` extension: what kind of event this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// A fact about the domain, e.g. `order.created`.
    Domain,
    /// An event meant for other bounded contexts.
    Integration,
    /// Infrastructure and lifecycle events.
    System,
    /// An action taken by a user.
    User,
    /// A request to notify someone.
    Notification,
}

impl Category {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Domain => "domain",
            Category::Integration => "integration",
            Category::System => "system",
            Category::User => "user",
            Category::Notification => "notification",
        }
    }
}

impl FromStr for Category {
    type Err = ExtensionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "domain" => Category::Domain,
            "integration" => Category::Integration,
            "system" => Category::System,
            "user" => Category::User,
            "notification" => Category::Notification,
            other => return Err(ExtensionError::UnknownCategory(other.to_owned())),
        })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_names_are_lowercase_alphanumeric_up_to_twenty() {
        assert!(is_valid_extension_name("tenantid"));
        assert!(is_valid_extension_name("a1"));
        assert!(is_valid_extension_name("abcdefghijklmnopqrst"));
        assert!(!is_valid_extension_name("abcdefghijklmnopqrstu"));
        assert!(!is_valid_extension_name("tenant_id"));
        assert!(!is_valid_extension_name("TenantId"));
        assert!(!is_valid_extension_name(""));
    }

    #[test]
    fn known_extensions_land_in_their_fields() {
        let mut ext = Extensions::default();
        ext.set("tenantid", "t1".into()).unwrap();
        ext.set("category", "integration".into()).unwrap();
        ext.set("priority", ExtensionValue::Integer(3)).unwrap();
        assert_eq!(ext.tenantid.as_deref(), Some("t1"));
        assert_eq!(ext.category, Some(Category::Integration));
        assert_eq!(ext.other["priority"], ExtensionValue::Integer(3));
        assert_eq!(
            ext.set("tenantid", ExtensionValue::Bool(true)),
            Err(ExtensionError::NotAString("tenantid".into()))
        );
        assert!(ext.set("category", "misc".into()).is_err());
        for attribute in [
            "type",
            "id",
            "source",
            "specversion",
            "time",
            "subject",
            "data",
        ] {
            assert_eq!(
                ext.set(attribute, "x".into()),
                Err(ExtensionError::ContextAttribute(attribute.into()))
            );
        }
        let names: Vec<_> = ext.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["tenantid", "category", "priority"]);
    }

    #[test]
    fn set_checks_the_names_it_does_not_know_and_needs_not_check_those_it_does() {
        let mut ext = Extensions::default();
        for name in ["", "Tenant", "tenant_id", "abcdefghijklmnopqrstu"] {
            assert_eq!(
                ext.set(name, "x".into()),
                Err(ExtensionError::InvalidName(name.into()))
            );
        }
        assert!(ext.iter().next().is_none(), "nothing invalid was set");
        // `set` takes the known names before any check: each must be one the check passes,
        // and go to its own field. The names are the ones `iter` gives of every field set (a
        // field added to `Extensions` must be added here, or this does not compile).
        let every = Extensions {
            tenantid: Some("t".into()),
            correlationid: Some("c".into()),
            causationid: Some("c".into()),
            traceparent: Some("t".into()),
            tracestate: Some("t".into()),
            dataversion: Some("1".into()),
            category: Some(Category::Integration),
            partitionkey: Some("p".into()),
            other: BTreeMap::new(),
        };
        for (known, value) in every.iter() {
            assert!(is_valid_extension_name(known), "{known}");
            assert!(!CONTEXT_ATTRIBUTES.contains(&known), "{known}");
            let ExtensionRef::String(value) = value else {
                panic!("{known} is a string")
            };
            ext.set(known, value.into()).expect(known);
        }
        assert_eq!(ext, every, "each known name went to its own field");
    }
}
