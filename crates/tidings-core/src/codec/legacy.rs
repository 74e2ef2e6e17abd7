use std::collections::HashMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Codec, DecodeError, EncodeError, format_time, parse_time};
use crate::envelope::{Data, Envelope, ExtensionValue, Extensions, is_valid_extension_name};

/// The flat envelope existing producers send:
/// `id, type, source, timestamp, tenant_id, correlation_id, data, metadata{version, user_id}`.
///
/// Mapping to CloudEvents: `timestamp` ↔ `time`, `tenant_id` ↔ `tenantid`,
/// `correlation_id` ↔ `correlationid`, `metadata.version` ↔ `dataversion`,
/// `metadata.user_id` ↔ `userid`, `metadata.causation_id` ↔ `causationid`,
/// `metadata.subject|dataschema|datacontenttype` ↔ the attributes of those names, any other
/// `metadata` entry whose name is a valid extension name and whose value is a scalar ↔ the
/// extension of that name, and what remains of `metadata` ↔ the `legacymetadata` extension (its
/// JSON text). Every envelope with a JSON body survives a round trip through this format, or
/// is refused with [`EncodeError::Unrepresentable`], never changed on the way: one with an
/// extension named `version` (the format's name for `dataversion`), or with a
/// `legacymetadata` extension other than the decoder writes there (a JSON object's text as
/// serde_json writes it, none of whose entries would come back as an attribute).
#[derive(Clone, Copy, Debug, Default)]
pub struct Legacy;

/// Extension holding the `metadata` entries that have no CloudEvents counterpart.
pub const LEGACY_METADATA: &str = "legacymetadata";

const RENAMED: [(&str, &str); 3] = [
    ("version", "dataversion"),
    ("user_id", "userid"),
    ("causation_id", "causationid"),
];

impl Codec for Legacy {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>, EncodeError> {
        let mut out = Map::new();
        out.insert("id".into(), envelope.id.clone().into());
        out.insert("type".into(), envelope.ty.clone().into());
        out.insert("source".into(), envelope.source.clone().into());
        if let Some(time) = &envelope.time {
            out.insert("timestamp".into(), format_time(time).into());
        }
        let ext = &envelope.extensions;
        if let Some(tenant) = &ext.tenantid {
            out.insert("tenant_id".into(), tenant.clone().into());
        }
        if let Some(correlation) = &ext.correlationid {
            out.insert("correlation_id".into(), correlation.clone().into());
        }
        // Written verbatim after the other members: parsed into a `Value` and written again,
        // its keys would be reordered and a number could come back as another number.
        let data = match &envelope.data {
            // Checked again for serde_json to write it as it is; the legacy format is for
            // feeding services that cannot read CloudEvents, not the hot path.
            Some(Data::Json(json)) => Some(serde_json::from_str::<&RawValue>(json.get())?),
            Some(Data::Binary(_)) => {
                return Err(EncodeError::Unrepresentable {
                    format: "legacy",
                    what: "binary data".into(),
                });
            }
            None => None,
        };

        let mut metadata = Map::new();
        for (name, value) in [
            ("subject", &envelope.subject),
            ("dataschema", &envelope.dataschema),
            ("datacontenttype", &envelope.datacontenttype),
        ] {
            if let Some(value) = value {
                metadata.insert(name.into(), value.clone().into());
            }
        }
        for (name, value) in ext.iter() {
            if matches!(name, "tenantid" | "correlationid" | LEGACY_METADATA) {
                continue;
            }
            if let Some((legacy, ce)) = RENAMED.iter().find(|(legacy, _)| *legacy == name) {
                // `metadata.version` is the data's version: an extension named `version`
                // would come back as `dataversion`, or overwrite it.
                return Err(EncodeError::Unrepresentable {
                    format: "legacy",
                    what: format!("an extension named `{legacy}`, which it reads as `{ce}`"),
                });
            }
            let key = RENAMED
                .iter()
                .find(|(_, ce)| *ce == name)
                .map_or(name, |(legacy, _)| legacy);
            let value = match value {
                crate::envelope::ExtensionRef::String(s) => Value::from(s),
                crate::envelope::ExtensionRef::Bool(b) => Value::from(b),
                crate::envelope::ExtensionRef::Integer(i) => Value::from(i),
            };
            metadata.insert(key.to_owned(), value);
        }
        if let Some(rest) = ext.other.get(LEGACY_METADATA) {
            // What the decoder kept of a `metadata` object; anything else in this extension
            // could not come back as it went, and is refused rather than dropped.
            let ExtensionValue::String(rest_text) = rest else {
                return Err(legacy_metadata_refused("is not a string"));
            };
            let Ok(Value::Object(rest)) = serde_json::from_str::<Value>(rest_text) else {
                return Err(legacy_metadata_refused("is not a JSON object's text"));
            };
            if rest.is_empty() {
                return Err(legacy_metadata_refused(
                    "is an empty object, which the legacy decoder never keeps",
                ));
            }
            // The decoder writes what it keeps as serde_json writes an object (keys sorted,
            // no spaces); other text of the same object would come back rewritten.
            if !serde_json::to_string(&rest).is_ok_and(|written| written == *rest_text) {
                return Err(legacy_metadata_refused(
                    "is not written as the legacy decoder writes it",
                ));
            }
            for (key, value) in rest {
                if metadata.contains_key(&key) || read_as_attribute(&key, &value) {
                    return Err(legacy_metadata_refused(&format!(
                        "holds `{key}`, which would come back as an attribute or extension"
                    )));
                }
                metadata.insert(key, value);
            }
        }
        if !metadata.is_empty() {
            out.insert("metadata".into(), Value::Object(metadata));
        }
        Ok(serde_json::to_vec(&Flat {
            members: &out,
            data,
        })?)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Envelope, DecodeError> {
        // Every member is read as text first, so that the data is kept as it was written;
        // the others are then parsed. A repeated member counts once, its last value, as when
        // the whole object is parsed at once.
        let members: HashMap<String, Box<RawValue>> =
            serde_json::from_slice(bytes).map_err(DecodeError::Json)?;
        let mut data = None;
        let mut map = Map::new();
        for (name, raw) in members {
            if name == "data" {
                data = Some(Data::Json(raw.into()));
            } else {
                let value = serde_json::from_str(raw.get()).map_err(DecodeError::Json)?;
                map.insert(name, value);
            }
        }
        let id = required_string(&mut map, "id")?;
        let ty = required_string(&mut map, "type")?;
        let source = required_string(&mut map, "source")?;
        let time = optional_string(&mut map, "timestamp")?
            .map(|t| parse_time("timestamp", &t))
            .transpose()?;
        let mut extensions = Extensions {
            tenantid: optional_string(&mut map, "tenant_id")?,
            correlationid: optional_string(&mut map, "correlation_id")?,
            ..Extensions::default()
        };
        let mut envelope = Envelope {
            id,
            source,
            ty,
            time,
            datacontenttype: None,
            dataschema: None,
            subject: None,
            extensions: Extensions::default(),
            data,
        };
        let mut rest = Map::new();
        match map.remove("metadata") {
            None | Some(Value::Null) => {}
            Some(Value::Object(metadata)) => {
                for (key, value) in metadata {
                    let target = match key.as_str() {
                        "subject" => Some(&mut envelope.subject),
                        "dataschema" => Some(&mut envelope.dataschema),
                        "datacontenttype" => Some(&mut envelope.datacontenttype),
                        _ => None,
                    };
                    if let (Some(target), Value::String(s)) = (target, &value) {
                        *target = Some(s.clone());
                        continue;
                    }
                    let read = extension_of(&key, &value)
                        .is_some_and(|(name, scalar)| extensions.set(name, scalar).is_ok());
                    if !read {
                        rest.insert(key, value);
                    }
                }
            }
            Some(_) => {
                return Err(DecodeError::invalid("metadata", "expected an object"));
            }
        }
        if !rest.is_empty() {
            extensions.other.insert(
                LEGACY_METADATA.into(),
                ExtensionValue::String(Value::Object(rest).to_string()),
            );
        }
        envelope.extensions = extensions;
        Ok(envelope)
    }
}

/// The extension a `metadata` entry is read as, before [`Extensions::set`] checks its
/// value: a scalar under a valid extension name (after [`RENAMED`]) other than
/// [`LEGACY_METADATA`].
fn extension_of<'a>(key: &'a str, value: &Value) -> Option<(&'a str, ExtensionValue)> {
    let name = RENAMED
        .iter()
        .find(|(legacy, _)| *legacy == key)
        .map_or(key, |(_, ce)| ce);
    let scalar = match value {
        Value::String(s) => ExtensionValue::String(s.clone()),
        Value::Bool(b) => ExtensionValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .filter(|i| i32::try_from(*i).is_ok())
            .map(ExtensionValue::Integer)?,
        _ => return None,
    };
    (is_valid_extension_name(name) && name != LEGACY_METADATA).then_some((name, scalar))
}

/// Whether the decoder reads `metadata` entry `key` as an attribute or an extension, not as
/// part of what it keeps in [`LEGACY_METADATA`]. `Extensions::set` answers from the name and
/// value alone, so an empty set of extensions tells what any would.
fn read_as_attribute(key: &str, value: &Value) -> bool {
    let attribute =
        matches!(key, "subject" | "dataschema" | "datacontenttype") && value.is_string();
    attribute
        || extension_of(key, value)
            .is_some_and(|(name, scalar)| Extensions::default().set(name, scalar).is_ok())
}

/// The legacy encoder's refusal of a [`LEGACY_METADATA`] extension it cannot write back.
fn legacy_metadata_refused(why: &str) -> EncodeError {
    EncodeError::Unrepresentable {
        format: "legacy",
        what: format!("a `{LEGACY_METADATA}` extension that {why}"),
    }
}

/// The flat envelope's members, with the data written as it is.
struct Flat<'a> {
    members: &'a Map<String, Value>,
    data: Option<&'a RawValue>,
}

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.members {
            map.serialize_entry(name, value)?;
        }
        if let Some(data) = self.data {
            map.serialize_entry("data", data)?;
        }
        map.end()
    }
}

fn required_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<String, DecodeError> {
    match optional_string(map, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(DecodeError::invalid(name, "must not be empty")),
        None => Err(DecodeError::MissingAttribute(name)),
    }
}

fn optional_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(DecodeError::invalid(
            name,
            format!("expected a string, found {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::StructuredJson;
    use crate::envelope::Category;

    const FROM_THE_DOCS: &str = r#"{
      "id": "evt_123456789",
      "type": "order.created",
      "source": "oms-service",
      "timestamp": "2024-01-15T10:30:00Z",
      "tenant_id": "tenant_abc",
      "correlation_id": "req_xyz",
      "data": {"order_id": "order_xyz", "total": 1000.00, "currency": "UAH"},
      "metadata": {"version": "1.0", "user_id": "user_123"}
    }"#;

    #[test]
    fn legacy_envelope_maps_onto_cloudevents() {
        let env = Legacy.decode(FROM_THE_DOCS.as_bytes()).unwrap();
        assert_eq!(env.id, "evt_123456789");
        assert_eq!(env.ty, "order.created");
        assert_eq!(env.source, "oms-service");
        assert_eq!(
            env.time.map(|t| format_time(&t)).as_deref(),
            Some("2024-01-15T10:30:00Z")
        );
        assert_eq!(env.extensions.tenantid.as_deref(), Some("tenant_abc"));
        assert_eq!(env.extensions.correlationid.as_deref(), Some("req_xyz"));
        assert_eq!(env.extensions.dataversion.as_deref(), Some("1.0"));
        assert_eq!(
            env.extensions.other.get("userid"),
            Some(&ExtensionValue::String("user_123".into()))
        );
        let data: Value = env.data_as().unwrap();
        assert_eq!(data["order_id"], "order_xyz");
    }

    #[test]
    fn legacy_round_trip_keeps_the_flat_shape() {
        let env = Legacy.decode(FROM_THE_DOCS.as_bytes()).unwrap();
        let out: Value = serde_json::from_slice(&Legacy.encode(&env).unwrap()).unwrap();
        let original: Value = serde_json::from_str(FROM_THE_DOCS).unwrap();
        assert_eq!(out, original);
    }

    #[test]
    fn cloudevents_survive_a_trip_through_legacy() {
        let mut env = Envelope::new("svc", "order.paid")
            .with_subject("o1")
            .with_tenant("t")
            .with_causation_id("c")
            .with_data_version("2")
            .with_json_data(&serde_json::json!({"x": 1}))
            .unwrap();
        env.extensions.category = Some(Category::Integration);
        env.extensions.partitionkey = Some("o1".into());
        env.extensions
            .other
            .insert("retries".into(), ExtensionValue::Integer(2));
        let back = Legacy.decode(&Legacy.encode(&env).unwrap()).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn foreign_metadata_is_kept() {
        let text = r#"{"id":"1","type":"t","source":"s","metadata":{"trace":{"a":1},"Weird-Key":"v","version":"3"}}"#;
        let env = Legacy.decode(text.as_bytes()).unwrap();
        assert_eq!(env.extensions.dataversion.as_deref(), Some("3"));
        let out: Value = serde_json::from_slice(&Legacy.encode(&env).unwrap()).unwrap();
        assert_eq!(out["metadata"]["trace"]["a"], 1);
        assert_eq!(out["metadata"]["Weird-Key"], "v");
        // and through the structured format too
        let structured = StructuredJson.encode(&env).unwrap();
        assert_eq!(StructuredJson.decode(&structured).unwrap(), env);
    }

    /// Found by the `structured` fuzz target: an envelope whose `legacymetadata` was a plain
    /// string lost it, silently, on its way to the legacy format.
    #[test]
    fn a_legacymetadata_extension_it_cannot_write_back_is_refused_not_dropped() {
        let with = |value: ExtensionValue| {
            let mut env = Envelope::new("s", "t").with_subject("order_1");
            env.extensions.other.insert(LEGACY_METADATA.into(), value);
            Legacy.encode(&env)
        };
        for value in [
            ExtensionValue::String("plain text".into()),
            ExtensionValue::String("[1, 2]".into()),
            ExtensionValue::Bool(true),
            ExtensionValue::Integer(7),
            // read back as the subject, or as an extension, not as kept metadata
            ExtensionValue::String(r#"{"subject":"order_2"}"#.into()),
            ExtensionValue::String(r#"{"user_id":"u1"}"#.into()),
            // the same object as the decoder would write it, but not in its words
            ExtensionValue::String(r#"{"b":1,"a":2}"#.into()),
            ExtensionValue::String(r#"{"a": 2}"#.into()),
            ExtensionValue::String("{}".into()),
        ] {
            let refused = with(value.clone());
            assert!(
                matches!(&refused, Err(EncodeError::Unrepresentable { what, .. }) if what.contains(LEGACY_METADATA)),
                "{value:?}: {refused:?}"
            );
        }
        // What the decoder keeps there goes back as it came.
        let kept = ExtensionValue::String(r#"{"Weird-Key":"v","trace":{"a":1},"type":"x"}"#.into());
        let flat = with(kept.clone()).unwrap();
        let back = Legacy.decode(&flat).unwrap();
        assert_eq!(back.extensions.other.get(LEGACY_METADATA), Some(&kept));
        assert_eq!(back.subject.as_deref(), Some("order_1"));
    }

    /// Found by the `structured` fuzz target: an extension named `version` went out as
    /// `metadata.version` and came back as `dataversion`.
    #[test]
    fn an_extension_named_like_a_renamed_metadata_entry_is_refused() {
        let mut env = Envelope::new("s", "t").with_data_version("2");
        env.extensions
            .other
            .insert("version".into(), ExtensionValue::String("3".into()));
        let refused = Legacy.encode(&env);
        assert!(
            matches!(&refused, Err(EncodeError::Unrepresentable { what, .. }) if what.contains("`version`")),
            "{refused:?}"
        );
        env.extensions.other.clear();
        let back = Legacy.decode(&Legacy.encode(&env).unwrap()).unwrap();
        assert_eq!(back.extensions.dataversion.as_deref(), Some("2"));
    }

    /// Found by the `legacy` fuzz target: a `metadata.type` became an extension named
    /// `type`, and the structured encoding then wrote `type` twice.
    #[test]
    fn metadata_named_like_a_context_attribute_stays_metadata() {
        let text = r#"{"id":"1","type":"t","source":"s","metadata":{"type":"other","id":"2","subject":"x"}}"#;
        let env = Legacy.decode(text.as_bytes()).unwrap();
        assert_eq!(
            (env.ty.as_str(), env.id.as_str(), env.subject.as_deref()),
            ("t", "1", Some("x"))
        );
        let kept: Value = match env.extensions.other.get(LEGACY_METADATA) {
            Some(ExtensionValue::String(json)) => serde_json::from_str(json).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(kept, serde_json::json!({"type": "other", "id": "2"}));
        let structured = StructuredJson.encode(&env).unwrap();
        assert_eq!(StructuredJson.decode(&structured).unwrap(), env);
        let out: Value = serde_json::from_slice(&Legacy.encode(&env).unwrap()).unwrap();
        assert_eq!(out["metadata"]["type"], "other");
    }

    /// Found by the `legacy` fuzz target: the data went through a `Value`, which sorted its
    /// keys and read a long number as a float that printed back as another number.
    #[test]
    fn data_crosses_the_legacy_format_verbatim() {
        let data =
            r#"{"total":15555555555555555000000099662173420480393360.5,"b":1,"a":"caf\u00e9"}"#;
        let text = format!(r#"{{"id":"1","type":"t","source":"s","data":{data}}}"#);
        let env = Legacy.decode(text.as_bytes()).unwrap();
        assert_eq!(
            env.data.as_ref().map(|d| d.as_bytes()),
            Some(data.as_bytes())
        );
        let again = Legacy.decode(&Legacy.encode(&env).unwrap()).unwrap();
        assert_eq!(again, env);
    }

    /// Found by the `legacy` fuzz target: serde_json's default float parser read
    /// 12.116666666666664 one unit in the last place off, so foreign metadata changed on each
    /// hop; the workspace enables its `float_roundtrip`.
    #[test]
    fn numbers_in_foreign_metadata_survive_a_round_trip() {
        let text = r#"{"id":"1","type":"t","source":"s","metadata":{"vetal":12.116666666666664}}"#;
        let env = Legacy.decode(text.as_bytes()).unwrap();
        let out: Value = serde_json::from_slice(&Legacy.encode(&env).unwrap()).unwrap();
        assert_eq!(out["metadata"]["vetal"].to_string(), "12.116666666666664");
        assert_eq!(Legacy.decode(&Legacy.encode(&env).unwrap()).unwrap(), env);
    }

    #[test]
    fn legacy_errors_name_the_field() {
        for (text, field) in [
            (r#"{"type":"t","source":"s"}"#, "id"),
            (r#"{"id":"1","source":"s"}"#, "type"),
            (r#"{"id":"1","type":"t"}"#, "source"),
            (
                r#"{"id":"1","type":"t","source":"s","timestamp":"noon"}"#,
                "timestamp",
            ),
            (
                r#"{"id":"1","type":"t","source":"s","tenant_id":5}"#,
                "tenant_id",
            ),
            (
                r#"{"id":"1","type":"t","source":"s","metadata":[]}"#,
                "metadata",
            ),
        ] {
            let err = Legacy.decode(text.as_bytes()).unwrap_err();
            assert_eq!(err.attribute(), Some(field), "{text}: {err}");
        }
    }

    #[test]
    fn binary_data_cannot_be_legacy() {
        let env = Envelope::new("s", "t").with_data(Data::Binary(bytes::Bytes::from_static(b"x")));
        assert!(matches!(
            Legacy.encode(&env),
            Err(EncodeError::Unrepresentable { .. })
        ));
    }
}
