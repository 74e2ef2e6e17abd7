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
//! | `enum`, `const` | they name the variants of an enum written as `oneOf` (schemars does so when a variant has a doc comment, or data), or an internally tagged enum's tag (`const`); a unit-only enum without doc comments is written as `{"type": "string", "enum": [...]}`, exactly as a newtype restricted with `extend("enum" = ...)`, so it is validated |
//! | `format`, `contentEncoding`, `contentMediaType` | the schema is of draft 2019-09 or later (schemars writes 2020-12), where they annotate and the validator does not assert them |
//! | `title`, `description`, `default`, `examples`... | always: annotations |
//!
//! What it cannot see, because the schema does not say it: a field whose `Deserialize` is
//! laxer than its schema (a `#[schemars(with = "String")]` on a type that also reads numbers,
//! a hand-written `JsonSchema`), and `#[schemars(required)]` on an `Option` field, which
//! schemars writes as a plain required field. Such data is read as serde reads it, as it
//! would be without the `validate` feature; a check that matters belongs in a `range`,
//! `length` or `regex`, which are seen. Nor does schemars write `#[serde(alias)]` or
//! `#[serde(other)]`: data that uses an alias, which the schema's `required` or
//! `additionalProperties: false` rejected, is now read as serde reads it.

use std::collections::HashSet;

use serde_json::Value;

/// The JSON pointer of the first keyword of `schema` that asserts more than deserializing
/// into the type it describes checks, or `None` when deserializing checks all of it.
pub(crate) fn beyond_serde(schema: &Value) -> Option<String> {
    // `format` and `content*` assert in drafts 4 to 7, and annotate from 2019-09 on (absent
    // `$schema`, the validator takes 2020-12).
    let dialect = schema.get("$schema").and_then(Value::as_str);
    Walk {
        root: schema,
        followed: HashSet::new(),
        formats_annotate: dialect.is_none_or(|d| d.contains("2020-12") || d.contains("2019-09")),
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
    /// Whether `keyword` (`enum` or `const`) here names an enum's variant or tag, which serde
    /// checks, rather than values added to a field or a newtype
    /// (`#[schemars(extend("enum" = ...))]`), which serde knows nothing of. A unit-only
    /// enum without doc comments is written as `{"type": "string", "enum": [...]}`, as such a
    /// newtype is: it is taken to assert, and validated.
    fn names_variants(self, keyword: &str) -> bool {
        match self {
            Place::Variant => true,
            Place::VariantField => keyword == "const",
            Place::Type | Place::Field => false,
        }
    }
}

struct Walk<'a> {
    root: &'a Value,
    /// `$ref`s already walked: recursive types refer to themselves.
    followed: HashSet<&'a str>,
    /// Whether `format`, `contentEncoding` and `contentMediaType` only annotate.
    formats_annotate: bool,
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
                | "writeOnly" | "type" => None,
                "format" | "contentEncoding" | "contentMediaType" => {
                    (!self.formats_annotate).then_some(here)
                }
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
                "enum" | "const" => (!place.names_variants(keyword)).then_some(here),
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
    let range: (i128, i128) = match format {
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64" | "int") => (i64::MIN.into(), i64::MAX.into()),
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64" | "uint") => (0, u64::MAX.into()),
        _ => return false,
    };
    // Exact for integers; a bound written as a float is compared as one.
    let exact = bound
        .as_i64()
        .map(i128::from)
        .or_else(|| bound.as_u64().map(i128::from));
    match (exact, side) {
        (Some(bound), Bound::Min) => bound <= range.0,
        (Some(bound), Bound::Max) => bound >= range.1,
        (None, Bound::Min) => bound.as_f64().is_some_and(|b| b <= range.0 as f64),
        (None, Bound::Max) => bound.as_f64().is_some_and(|b| b >= range.1 as f64),
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

    /// Without doc comments, schemars writes a unit-only enum the way it writes a newtype
    /// restricted with `extend("enum" = ...)`: both are validated.
    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    enum Undocumented {
        Free,
        Pro,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[schemars(extend("enum" = ["EUR", "USD"]))]
    struct Currency(String);

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Priced {
        plan: Undocumented,
        currency: Currency,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(tag = "kind")]
    enum Tagged {
        Card {
            #[schemars(extend("enum" = ["visa", "amex"]))]
            network: String,
        },
    }

    #[test]
    fn values_added_to_a_newtype_or_a_variants_field_assert_and_so_does_a_plain_unit_enum() {
        assert_eq!(
            beyond::<Currency>().as_deref(),
            Some("/enum"),
            "a newtype with extend(enum)"
        );
        assert_eq!(
            beyond::<Undocumented>().as_deref(),
            Some("/enum"),
            "a unit-only enum without doc comments looks the same"
        );
        assert!(beyond::<Priced>().is_some_and(|at| at.ends_with("/enum")));
        assert_eq!(
            beyond::<Tagged>().as_deref(),
            Some("/oneOf/0/properties/network/enum")
        );
    }

    #[test]
    fn formats_assert_in_drafts_before_2019_09() {
        let draft7 = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "string",
            "format": "email"
        });
        assert_eq!(beyond_serde(&draft7).as_deref(), Some("/format"));
        let current = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "string",
            "format": "email"
        });
        assert_eq!(beyond_serde(&current), None);
    }

    #[test]
    fn an_integer_bound_near_the_types_limit_is_compared_exactly() {
        let near = json!({"type": "integer", "format": "int64", "maximum": i64::MAX - 1});
        assert_eq!(beyond_serde(&near).as_deref(), Some("/maximum"));
        let at = json!({"type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX});
        assert_eq!(beyond_serde(&at), None);
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
