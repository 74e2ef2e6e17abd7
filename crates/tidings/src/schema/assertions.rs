//! Which of a schema's assertions deserializing already makes.
//!
//! A typed handler holds an event's data to its type's JSON Schema so that what serde alone
//! lets through (a range, a length, a pattern) is dead-lettered too. Most event types'
//! schemas say nothing serde does not check by itself: field types, required fields, the
//! variants of an enum, the width of an integer. For those, validating means parsing the data
//! into a `serde_json::Value` and walking it, only to learn what deserializing into the type
//! learns anyway; on the consume path that was the better half of a handling's work. So
//! a route validates only when [`beyond_serde`] finds an assertion serde does not make.
//!
//! The rule is read off the schema schemars derives from the same serde attributes, and errs
//! towards validating: every keyword it does not know is taken to assert something.
//!
//! | keyword | taken as checked by serde when |
//! |---|---|
//! | `type`, `properties`, `items`, `prefixItems`, `additionalProperties`, `$ref`, `allOf`, `anyOf`, `oneOf` | always (their subschemas are looked at in turn) |
//! | `required` | the field is described and cannot be `null` (a required field that may be `null` is an `Option`, which serde reads as `None` when it is missing) |
//! | `minimum`, `maximum` | they are the bounds of the integer `format` beside them (`uint8`: 0 and 255) |
//! | `minItems`, `maxItems` | they are the length of a tuple's `prefixItems` |
//! | `enum`, `const` | on an enum type (a `$defs` entry or the root) or one of its variants, not on a field of a struct |
//! | `format`, `title`, `description`, `default`, `examples`... | always: annotations, which the validator does not assert |
//!
//! What it cannot see, because the schema does not say it: a field whose `Deserialize` is
//! laxer than its schema (a `#[schemars(with = "String")]` on a type that also reads numbers,
//! a hand-written `JsonSchema`), and `#[schemars(required)]` on an `Option` field, which
//! schemars writes as a plain required field. Such data is read as serde reads it, as it
//! would be without the `validate` feature; a check that matters belongs in a `range`,
//! `length` or `regex`, which are seen.

use std::collections::HashSet;

use serde_json::Value;

/// The JSON pointer of the first keyword of `schema` that asserts more than deserializing
/// into the type it describes checks, or `None` when deserializing checks all of it.
pub(crate) fn beyond_serde(schema: &Value) -> Option<String> {
    Walk {
        root: schema,
        followed: HashSet::new(),
    }
    .node(schema, String::new(), Place::Type)
}

/// Where a subschema sits, for the keywords that mean something else in different places.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The schema of a type of its own: the root, or a `$defs` entry a `$ref` points at.
    Type,
    /// One alternative of an `anyOf`/`oneOf`: the variant of an enum.
    Variant,
    /// A field of a variant: where internally tagged enums write their tag's `const`.
    VariantField,
    /// Anywhere else: a field of a struct, an array's items, a map's values.
    Field,
}

impl Place {
    /// Whether an `enum` or `const` here is an enum's own (serde rejects any other value)
    /// rather than one added to a field (`#[schemars(extend("enum" = ...))]`), which serde
    /// knows nothing of.
    fn names_variants(self) -> bool {
        self != Place::Field
    }
}

struct Walk<'a> {
    root: &'a Value,
    /// `$ref`s already walked: recursive types refer to themselves.
    followed: HashSet<&'a str>,
}

impl<'a> Walk<'a> {
    fn node(&mut self, node: &'a Value, at: String, place: Place) -> Option<String> {
        let object = match node {
            Value::Bool(true) => return None,
            Value::Object(object) => object,
            _ => return Some(at),
        };
        let format = object.get("format").and_then(Value::as_str);
        for (keyword, value) in object {
            let here = format!("{at}/{}", escape(keyword));
            let beyond = match keyword.as_str() {
                "$schema" | "$id" | "$comment" | "$anchor" | "$defs" | "definitions" | "title"
                | "description" | "default" | "examples" | "deprecated" | "readOnly"
                | "writeOnly" | "format" | "contentEncoding" | "contentMediaType" | "type" => None,
                "$ref" => self.reference(value, here),
                "properties" => {
                    let fields = if place == Place::Variant {
                        Place::VariantField
                    } else {
                        Place::Field
                    };
                    self.each_value(value, &here, fields)
                }
                // `deny_unknown_fields`; a tuple's end.
                "additionalProperties" if value == &Value::Bool(false) => None,
                "items" if value == &Value::Bool(false) => {
                    (!object.contains_key("prefixItems")).then_some(here)
                }
                "additionalProperties" | "items" => self.node(value, here, Place::Field),
                "prefixItems" => self.each_item(value, &here, Place::Field),
                "allOf" => self.each_item(value, &here, place),
                "anyOf" | "oneOf" => self.each_item(value, &here, Place::Variant),
                "required" => self.required(object, value, here),
                "minItems" | "maxItems" => {
                    let len = object
                        .get("prefixItems")
                        .and_then(Value::as_array)
                        .map(Vec::len);
                    let fits = len.is_some() && value.as_u64().map(|n| n as usize) == len;
                    (!fits).then_some(here)
                }
                "minimum" => (!within_integer(format, value, Bound::Min)).then_some(here),
                "maximum" => (!within_integer(format, value, Bound::Max)).then_some(here),
                "enum" | "const" => (!place.names_variants()).then_some(here),
                _ => Some(here),
            };
            if beyond.is_some() {
                return beyond;
            }
        }
        None
    }

    fn reference(&mut self, reference: &'a Value, at: String) -> Option<String> {
        let Some(target) = reference
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .filter(|pointer| pointer.is_empty() || pointer.starts_with('/'))
        else {
            return Some(at);
        };
        let Some(node) = self.root.pointer(target) else {
            return Some(at);
        };
        if !self.followed.insert(target) {
            return None;
        }
        self.node(node, format!("#{target}"), Place::Type)
    }

    fn each_value(&mut self, map: &'a Value, at: &str, place: Place) -> Option<String> {
        let Some(map) = map.as_object() else {
            return Some(at.to_owned());
        };
        map.iter()
            .find_map(|(name, node)| self.node(node, format!("{at}/{}", escape(name)), place))
    }

    fn each_item(&mut self, list: &'a Value, at: &str, place: Place) -> Option<String> {
        let Some(list) = list.as_array() else {
            return Some(at.to_owned());
        };
        list.iter()
            .enumerate()
            .find_map(|(i, node)| self.node(node, format!("{at}/{i}"), place))
    }

    /// `required` asserts more than serde when it names a field that is not described (serde
    /// may not know it) or one that may be `null` (an `Option`, which serde reads as `None`
    /// when it is missing).
    fn required(
        &self,
        object: &'a serde_json::Map<String, Value>,
        names: &'a Value,
        at: String,
    ) -> Option<String> {
        let properties = object.get("properties").and_then(Value::as_object);
        let all_plain = names.as_array().is_some_and(|names| {
            names.iter().all(|name| {
                name.as_str()
                    .and_then(|name| properties?.get(name))
                    .is_some_and(|field| !self.admits_null(field))
            })
        });
        (!all_plain).then_some(at)
    }

    fn admits_null(&self, node: &Value) -> bool {
        let node = self.resolve(node);
        let null = |ty: &Value| ty.as_str() == Some("null");
        match node.get("type") {
            Some(Value::Array(types)) if types.iter().any(null) => return true,
            Some(ty) if null(ty) => return true,
            _ => {}
        }
        ["anyOf", "oneOf"].iter().any(|key| {
            node.get(*key)
                .and_then(Value::as_array)
                .is_some_and(|alternatives| alternatives.iter().any(|a| self.admits_null(a)))
        })
    }

    /// `node` with its local `$ref`s followed (a few, for a chain of aliases).
    fn resolve(&self, mut node: &'a Value) -> &'a Value {
        for _ in 0..8 {
            let Some(target) = node
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|pointer| self.root.pointer(pointer))
            else {
                break;
            };
            node = target;
        }
        node
    }
}

#[derive(Clone, Copy)]
enum Bound {
    Min,
    Max,
}

/// Whether `bound` lets through every value of the integer type `format` names (schemars
/// writes `"format": "uint8", "minimum": 0, "maximum": 255` for a `u8`), so that the
/// integer's own deserialization already holds the data to it.
fn within_integer(format: Option<&str>, bound: &Value, side: Bound) -> bool {
    let range: (f64, f64) = match format {
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64" | "int") => (i64::MIN as f64, i64::MAX as f64),
        Some("uint8") => (0.0, u8::MAX.into()),
        Some("uint16") => (0.0, u16::MAX.into()),
        Some("uint32") => (0.0, u32::MAX.into()),
        Some("uint64" | "uint") => (0.0, u64::MAX as f64),
        _ => return false,
    };
    let Some(bound) = bound.as_f64() else {
        return false;
    };
    match side {
        Bound::Min => bound <= range.0,
        Bound::Max => bound >= range.1,
    }
}

/// A JSON pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use schemars::JsonSchema;
    use serde::Deserialize;
    use serde_json::json;

    use super::beyond_serde;

    fn beyond<T: JsonSchema>() -> Option<String> {
        beyond_serde(schemars::schema_for!(T).as_value())
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Order {
        order_id: String,
        quantity: u32,
        small: u8,
        delta: i16,
        total: f64,
        note: Option<String>,
        lines: Vec<Line>,
        shipping: Option<Address>,
        plan: Plan,
        payment: Payment,
        labels: BTreeMap<String, u32>,
        pair: (String, u64),
        placed_at: chrono::DateTime<chrono::Utc>,
        extra: serde_json::Value,
        #[serde(default)]
        coupon: String,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Line {
        sku: String,
        price: f64,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Address {
        city: String,
    }

    /// Unit variants, one with a doc comment (schemars then writes `oneOf` of `const`s).
    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    enum Plan {
        /// The free one.
        Free,
        Pro,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Payment {
        Card {
            last4: String,
        },
        Transfer {
            iban: String,
            reference: Option<String>,
        },
    }

    #[test]
    fn a_schema_of_types_fields_enums_and_integer_widths_asserts_nothing_serde_does_not() {
        assert_eq!(beyond::<Order>(), None);
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Tree {
        name: String,
        children: Vec<Tree>,
    }

    #[test]
    fn a_recursive_type_is_walked_once() {
        assert_eq!(beyond::<Tree>(), None);
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Ranged {
        #[schemars(range(min = 1))]
        quantity: u32,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Lengthy {
        #[schemars(length(max = 8))]
        sku: String,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Patterned {
        #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
        currency: String,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct EnumOnAString {
        #[schemars(extend("enum" = ["EUR", "USD"]))]
        currency: String,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Set {
        tags: HashSet<String>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct NestedRange {
        lines: Vec<RangedLine>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct RangedLine {
        #[schemars(range(max = 99))]
        quantity: u8,
    }

    #[test]
    fn what_schemars_attributes_add_is_found_with_its_pointer() {
        assert_eq!(
            beyond::<Ranged>().as_deref(),
            Some("/properties/quantity/minimum")
        );
        assert_eq!(
            beyond::<Lengthy>().as_deref(),
            Some("/properties/sku/maxLength")
        );
        assert_eq!(
            beyond::<Patterned>().as_deref(),
            Some("/properties/currency/pattern")
        );
        assert_eq!(
            beyond::<EnumOnAString>().as_deref(),
            Some("/properties/currency/enum")
        );
        // serde reads a set with a repeated member; `uniqueItems` rejects it.
        assert_eq!(
            beyond::<Set>().as_deref(),
            Some("/properties/tags/uniqueItems")
        );
        assert_eq!(
            beyond::<NestedRange>().as_deref(),
            Some("#/$defs/RangedLine/properties/quantity/maximum")
        );
    }

    #[test]
    fn unknown_keywords_and_references_are_taken_to_assert() {
        for (schema, at) in [
            (json!({"type": "object", "if": {}}), "/if"),
            (json!({"not": {"type": "null"}}), "/not"),
            (json!({"$ref": "https://example.com/order.json"}), "/$ref"),
            (json!({"$ref": "#/$defs/Missing"}), "/$ref"),
            (json!({"type": "integer", "minimum": 1}), "/minimum"),
            (
                json!({"type": "number", "format": "double", "minimum": 0}),
                "/minimum",
            ),
            (json!({"items": false}), "/items"),
            (json!({"type": "array", "minItems": 1}), "/minItems"),
            (json!(false), ""),
        ] {
            assert_eq!(beyond_serde(&schema).as_deref(), Some(at), "{schema}");
        }
    }

    /// `format` is taken as an annotation because the validator the routes build does not
    /// assert it (draft 2020-12's default); were that to change, this fails first.
    #[test]
    fn the_routes_validator_does_not_assert_formats() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "string",
            "format": "email"
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&json!("not an address")));
    }
}
