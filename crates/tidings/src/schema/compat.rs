//! Whether a changed contract still fits the producers and consumers of the old one.
//!
//! Events outlive deployments: a consumer written against the snapshot reads what the new
//! producer sends, and the new consumer reads events the old producer already published. A
//! change is breaking when either of them fails, and the version was not bumped (a bump
//! announces it, and the derive's upcasters make the new consumer read the old versions).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::Catalog;

/// How deep the comparison follows nested objects and references (recursive types end).
const MAX_DEPTH: usize = 32;

/// What changed between a snapshot and a catalog ([`Catalog::compare_with`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    changes: Vec<Change>,
}

impl Report {
    /// Every change, breaking or not, in the order of the types' names.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The breaking changes.
    pub fn breaking(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.breaking)
    }

    /// Whether any change breaks a producer or consumer of the snapshot.
    pub fn is_breaking(&self) -> bool {
        self.breaking().next().is_some()
    }
}

impl fmt::Display for Report {
    /// One line per change, `breaking:` or `ok:` first; `no changes` when there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return f.write_str("no changes");
        }
        for (i, change) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let verdict = if change.breaking { "breaking" } else { "ok" };
            write!(f, "{verdict}: {change}")?;
        }
        Ok(())
    }
}

/// One difference between the snapshot and the catalog.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Change {
    /// The event type.
    pub event: String,
    /// Its version in the catalog.
    pub version: u32,
    /// The field, as serde names it on the wire (`customer.email`, `items[].sku`); empty
    /// for the data itself or the whole type.
    pub path: String,
    /// What changed.
    pub kind: ChangeKind,
    /// Whether it breaks a producer or consumer of the snapshot: the kind is a breaking one
    /// and the version was not bumped.
    pub breaking: bool,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.event, self.version)?;
        if !self.path.is_empty() {
            write!(f, " `{}`", self.path)?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The kinds of change, and which of them break.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A required field is gone: consumers of the snapshot read it. Breaking.
    RemovedRequired,
    /// A required field became optional: consumers of the snapshot still require it.
    /// Breaking.
    NoLongerRequired,
    /// A new required field: producers of the snapshot do not send it. Breaking.
    NewRequired,
    /// An optional field became required: producers of the snapshot may leave it out.
    /// Breaking.
    NowRequired,
    /// A field's type changed (`null` counts: making a field nullable retypes it). Breaking.
    Retyped {
        /// The snapshot's types.
        was: String,
        /// The catalog's types.
        now: String,
    },
    /// Values an enum accepted are gone: events already published hold them. Breaking.
    NarrowedEnum {
        /// The values (or variant names) no longer accepted.
        removed: Vec<String>,
    },
    /// An enum accepts new values. Not breaking for what was published, but a consumer of
    /// the snapshot dead-letters the new values until it is upgraded: upgrade consumers
    /// first.
    WidenedEnum {
        /// The new values (or variant names).
        added: Vec<String>,
    },
    /// A new optional field. Not breaking.
    AddedOptional,
    /// An optional field is gone. Not breaking.
    RemovedOptional,
    /// The version is higher than the snapshot's: the other changes of this type are
    /// announced and do not break. Not breaking.
    VersionBumped {
        /// The snapshot's version.
        from: u32,
    },
    /// The version is lower than the snapshot's: events of the newer version are out there.
    /// Breaking.
    VersionLowered {
        /// The snapshot's version.
        from: u32,
    },
    /// A type of the snapshot is no longer in the catalog. Not breaking by itself: its
    /// consumers only stop receiving it.
    RemovedType,
    /// A type the snapshot does not have. Not breaking.
    NewType,
}

impl ChangeKind {
    /// Whether this kind breaks when the version stays the same.
    fn breaks(&self) -> bool {
        matches!(
            self,
            Self::RemovedRequired
                | Self::NoLongerRequired
                | Self::NewRequired
                | Self::NowRequired
                | Self::Retyped { .. }
                | Self::NarrowedEnum { .. }
                | Self::VersionLowered { .. }
        )
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RemovedRequired => f.write_str("required field removed"),
            Self::NoLongerRequired => f.write_str("field no longer required"),
            Self::NewRequired => f.write_str("new required field"),
            Self::NowRequired => f.write_str("optional field now required"),
            Self::Retyped { was, now } => write!(f, "type changed from {was} to {now}"),
            Self::NarrowedEnum { removed } => {
                write!(f, "enum narrowed: {} removed", removed.join(", "))
            }
            Self::WidenedEnum { added } => write!(
                f,
                "enum widened: {} added (upgrade its consumers first)",
                added.join(", ")
            ),
            Self::AddedOptional => f.write_str("optional field added"),
            Self::RemovedOptional => f.write_str("optional field removed"),
            Self::VersionBumped { from } => write!(f, "version bumped from {from}"),
            Self::VersionLowered { from } => write!(f, "version lowered from {from}"),
            Self::RemovedType => f.write_str("type no longer described"),
            Self::NewType => f.write_str("new type"),
        }
    }
}

/// Compares the newest version of each type in `snapshot` with the newest in `current`.
pub(crate) fn compare(snapshot: &Catalog, current: &Catalog) -> Report {
    let names: BTreeSet<&str> = snapshot
        .events()
        .iter()
        .chain(current.events())
        .map(|e| e.name.as_str())
        .collect();
    let mut report = Report::default();
    for name in names {
        let mut push = |version: u32, path: String, kind: ChangeKind, bumped: bool| {
            report.changes.push(Change {
                event: name.to_owned(),
                version,
                path,
                breaking: kind.breaks() && !bumped,
                kind,
            });
        };
        match (snapshot.latest(name), current.latest(name)) {
            (Some(old), None) => push(old.version, String::new(), ChangeKind::RemovedType, false),
            (None, Some(new)) => push(new.version, String::new(), ChangeKind::NewType, false),
            (Some(old), Some(new)) => {
                if new.version < old.version {
                    let kind = ChangeKind::VersionLowered { from: old.version };
                    push(new.version, String::new(), kind, false);
                    continue;
                }
                let bumped = new.version > old.version;
                if bumped {
                    let kind = ChangeKind::VersionBumped { from: old.version };
                    push(new.version, String::new(), kind, false);
                }
                let mut diff = Diff {
                    old: &old.schema,
                    new: &new.schema,
                    changes: Vec::new(),
                };
                diff.node(&old.schema, &new.schema, String::new(), 0);
                for (path, kind) in diff.changes {
                    push(new.version, path, kind, bumped);
                }
            }
            (None, None) => unreachable!("a name comes from one of the catalogs"),
        }
    }
    report
}

/// The structural comparison of two schemas (each with its own root, for `$ref`s).
struct Diff<'a> {
    old: &'a Value,
    new: &'a Value,
    changes: Vec<(String, ChangeKind)>,
}

impl<'a> Diff<'a> {
    fn node(&mut self, old: &'a Value, new: &'a Value, path: String, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let (old, old_nullable) = Shape::of(self.old, old);
        let (new, new_nullable) = Shape::of(self.new, new);
        if old_nullable != new_nullable {
            // `T` became `Option<T>` or the other way: whatever `T` is (an enum too).
            let describe = |shape: Shape<'_>, nullable: bool| {
                let mut types = shape
                    .types()
                    .unwrap_or_else(|| BTreeSet::from(["value".to_owned()]));
                if nullable {
                    types.insert("null".to_owned());
                }
                types.into_iter().collect::<Vec<_>>().join(" or ")
            };
            let kind = ChangeKind::Retyped {
                was: describe(old, old_nullable),
                now: describe(new, new_nullable),
            };
            self.changes.push((path, kind));
            return;
        }
        if let (Some(was), Some(now)) = (old.values(self.old), new.values(self.new)) {
            let removed: Vec<String> = was.difference(&now).cloned().collect();
            let added: Vec<String> = now.difference(&was).cloned().collect();
            if !removed.is_empty() {
                self.changes
                    .push((path.clone(), ChangeKind::NarrowedEnum { removed }));
            }
            if !added.is_empty() {
                self.changes.push((path, ChangeKind::WidenedEnum { added }));
            }
            return;
        }
        if let (Some(was), Some(now)) = (old.types(), new.types())
            && was != now
        {
            let join = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(" or ");
            let kind = ChangeKind::Retyped {
                was: join(was),
                now: join(now),
            };
            self.changes.push((path, kind));
            return;
        }
        if let (Some(was), Some(now)) = (old.properties(), new.properties()) {
            let was_required = old.required();
            let now_required = new.required();
            for (field, old_field) in was {
                let field_path = join(&path, field);
                match now.get(field) {
                    None if was_required.contains(field.as_str()) => {
                        self.changes.push((field_path, ChangeKind::RemovedRequired));
                    }
                    None => self.changes.push((field_path, ChangeKind::RemovedOptional)),
                    Some(new_field) => {
                        let required = (
                            was_required.contains(field.as_str()),
                            now_required.contains(field.as_str()),
                        );
                        match required {
                            (true, false) => self
                                .changes
                                .push((field_path.clone(), ChangeKind::NoLongerRequired)),
                            (false, true) => self
                                .changes
                                .push((field_path.clone(), ChangeKind::NowRequired)),
                            _ => {}
                        }
                        self.node(old_field, new_field, field_path, depth + 1);
                    }
                }
            }
            for field in now.keys().filter(|field| !was.contains_key(*field)) {
                let kind = if now_required.contains(field.as_str()) {
                    ChangeKind::NewRequired
                } else {
                    ChangeKind::AddedOptional
                };
                self.changes.push((join(&path, field), kind));
            }
        }
        if let (Some(was), Some(now)) = (old.0.get("items"), new.0.get("items"))
            && was.is_object()
            && now.is_object()
        {
            self.node(was, now, format!("{path}[]"), depth + 1);
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// A schema node with its `$ref`s followed and an `Option`'s `null` alternative set aside.
#[derive(Clone, Copy)]
struct Shape<'a>(&'a Value);

impl<'a> Shape<'a> {
    /// `node` resolved against `root`, and whether it also allows `null` through an
    /// `anyOf`/`oneOf` with a `{"type": "null"}` alternative (how schemars writes `Option`).
    fn of(root: &'a Value, node: &'a Value) -> (Self, bool) {
        let node = resolve(root, node);
        for key in ["anyOf", "oneOf"] {
            if let Some(alternatives) = node.get(key).and_then(Value::as_array) {
                let (null, other): (Vec<&Value>, Vec<&Value>) = alternatives
                    .iter()
                    .map(|a| resolve(root, a))
                    .partition(|a| is_null_type(a));
                if !null.is_empty() && other.len() == 1 {
                    return (Self(other[0]), true);
                }
            }
        }
        (Self(node), false)
    }

    /// The JSON types it allows, when it says.
    fn types(self) -> Option<BTreeSet<String>> {
        match self.0.get("type")? {
            Value::String(one) => Some(BTreeSet::from([one.clone()])),
            Value::Array(many) => Some(
                many.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The values (JSON text) of an enum, or the variant names of a tagged enum, when every
    /// alternative names one: `enum`, `const`, or `oneOf`/`anyOf` of those, of objects with
    /// one required field (serde's external tagging) or with a `const` tag field.
    fn values(self, root: &'a Value) -> Option<BTreeSet<String>> {
        if let Some(values) = self.0.get("enum").and_then(Value::as_array) {
            return Some(values.iter().filter(|v| !v.is_null()).map(text).collect());
        }
        if let Some(value) = self.0.get("const") {
            return Some(BTreeSet::from([text(value)]));
        }
        let alternatives = ["oneOf", "anyOf"]
            .iter()
            .find_map(|key| self.0.get(*key).and_then(Value::as_array))?;
        let mut values = BTreeSet::new();
        for alternative in alternatives {
            let alternative = resolve(root, alternative);
            if is_null_type(alternative) {
                continue;
            }
            values.extend(
                Shape(alternative)
                    .values(root)
                    .or_else(|| variant(alternative))?,
            );
        }
        Some(values)
    }

    fn properties(self) -> Option<&'a serde_json::Map<String, Value>> {
        self.0.get("properties").and_then(Value::as_object)
    }

    fn required(self) -> BTreeSet<&'a str> {
        self.0
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// The variant an object alternative of a tagged enum stands for: its one required field
/// (external tagging), or the `const` of a required field (internal or adjacent tagging).
fn variant(alternative: &Value) -> Option<BTreeSet<String>> {
    let shape = Shape(alternative);
    let properties = shape.properties()?;
    let required = shape.required();
    let tag = required
        .iter()
        .find_map(|field| properties.get(*field)?.get("const").map(text));
    match (tag, required.len()) {
        (Some(tag), _) => Some(BTreeSet::from([tag])),
        (None, 1) => required
            .first()
            .map(|name| BTreeSet::from([(*name).to_owned()])),
        _ => None,
    }
}

/// Follows local `$ref`s (`#/$defs/Plan`) within `root`; an unresolvable one stays.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..MAX_DEPTH {
        let Some(target) = node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| root.pointer(pointer))
        else {
            break;
        };
        node = target;
    }
    node
}

fn is_null_type(node: &Value) -> bool {
    node.get("type").and_then(Value::as_str) == Some("null")
}

/// A value as the report shows it: strings bare, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::EventSchema;

    fn catalog(version: u32, schema: Value) -> Catalog {
        Catalog::new("svc").with(EventSchema::new("order.placed", version, schema))
    }

    fn order(properties: Value, required: &[&str]) -> Value {
        json!({"type": "object", "properties": properties, "required": required})
    }

    fn changes(old: &Catalog, new: &Catalog) -> Vec<(String, ChangeKind, bool)> {
        new.compare_with(old)
            .changes()
            .iter()
            .map(|c| (c.path.clone(), c.kind.clone(), c.breaking))
            .collect()
    }

    #[test]
    fn the_same_schema_has_no_changes() {
        let schema = order(json!({"id": {"type": "string"}}), &["id"]);
        let report = catalog(1, schema.clone()).compare_with(&catalog(1, schema));
        assert_eq!(report.to_string(), "no changes");
        assert!(!report.is_breaking());
    }

    #[test]
    fn removing_or_retyping_a_required_field_breaks() {
        let old = catalog(
            1,
            order(
                json!({"id": {"type": "string"}, "total": {"type": "integer"}, "note": {"type": "string"}}),
                &["id", "total"],
            ),
        );
        let new = catalog(
            1,
            order(
                json!({"total": {"type": "number"}, "note": {"type": "string"}}),
                &["total"],
            ),
        );
        assert_eq!(
            changes(&old, &new),
            [
                ("id".to_owned(), ChangeKind::RemovedRequired, true),
                (
                    "total".to_owned(),
                    ChangeKind::Retyped {
                        was: "integer".into(),
                        now: "number".into()
                    },
                    true
                ),
            ]
        );
        let report = new.compare_with(&old).to_string();
        assert!(
            report.contains("breaking: order.placed v1 `id`: required field removed"),
            "{report}"
        );
    }

    #[test]
    fn a_new_required_field_breaks_and_a_new_optional_one_does_not() {
        let old = catalog(1, order(json!({"id": {"type": "string"}}), &["id"]));
        let new = catalog(
            1,
            order(
                json!({"id": {"type": "string"}, "email": {"type": "string"}, "note": {"type": ["string", "null"]}}),
                &["id", "email"],
            ),
        );
        assert_eq!(
            changes(&old, &new),
            [
                ("email".to_owned(), ChangeKind::NewRequired, true),
                ("note".to_owned(), ChangeKind::AddedOptional, false),
            ]
        );
    }

    #[test]
    fn a_narrowed_enum_breaks_and_a_widened_one_is_a_warning() {
        let plan = |values: Value| {
            json!({
                "type": "object",
                "properties": {"plan": {"$ref": "#/$defs/Plan"}},
                "required": ["plan"],
                "$defs": {"Plan": {"type": "string", "enum": values}}
            })
        };
        let old = catalog(1, plan(json!(["free", "pro", "legacy"])));
        let new = catalog(1, plan(json!(["free", "pro", "team"])));
        assert_eq!(
            changes(&old, &new),
            [
                (
                    "plan".to_owned(),
                    ChangeKind::NarrowedEnum {
                        removed: vec!["legacy".into()]
                    },
                    true
                ),
                (
                    "plan".to_owned(),
                    ChangeKind::WidenedEnum {
                        added: vec!["team".into()]
                    },
                    false
                ),
            ]
        );
    }

    #[test]
    fn an_enum_made_nullable_is_retyped() {
        let with = |plan: Value| {
            json!({
                "type": "object",
                "properties": {"plan": plan},
                "$defs": {"Plan": {"type": "string", "enum": ["free", "pro"]}}
            })
        };
        let old = catalog(1, with(json!({"$ref": "#/$defs/Plan"})));
        let new = catalog(
            1,
            with(json!({"anyOf": [{"$ref": "#/$defs/Plan"}, {"type": "null"}]})),
        );
        assert_eq!(
            changes(&old, &new),
            [(
                "plan".to_owned(),
                ChangeKind::Retyped {
                    was: "string".into(),
                    now: "null or string".into()
                },
                true
            )]
        );
    }

    #[test]
    fn tagged_enum_variants_are_compared_by_name() {
        // serde's external tagging, as schemars writes it: a unit variant as a string
        // constant, a data variant as an object with one required field.
        let outcome = |variants: Value| json!({"oneOf": variants});
        let old = catalog(
            1,
            outcome(json!([
                {"type": "string", "const": "Pending"},
                {"type": "object", "properties": {"Paid": {"type": "object"}}, "required": ["Paid"]},
                {"type": "object", "properties": {"Failed": {"type": "string"}}, "required": ["Failed"]}
            ])),
        );
        let new = catalog(
            1,
            outcome(json!([
                {"type": "string", "const": "Pending"},
                {"type": "object", "properties": {"Paid": {"type": "object"}}, "required": ["Paid"]}
            ])),
        );
        assert_eq!(
            changes(&old, &new),
            [(
                String::new(),
                ChangeKind::NarrowedEnum {
                    removed: vec!["Failed".into()]
                },
                true
            )]
        );
    }

    #[test]
    fn nested_fields_and_array_items_are_compared_by_their_path() {
        let item = |sku: Value| {
            order(
                json!({"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}}),
                &["items"],
            )
            .as_object()
            .cloned()
            .map(|mut o| {
                o.insert(
                    "$defs".into(),
                    json!({"Item": order(json!({"sku": sku}), &["sku"])}),
                );
                Value::Object(o)
            })
            .unwrap()
        };
        let old = catalog(1, item(json!({"type": "string"})));
        let new = catalog(1, item(json!({"type": "integer"})));
        assert_eq!(
            changes(&old, &new),
            [(
                "items[].sku".to_owned(),
                ChangeKind::Retyped {
                    was: "string".into(),
                    now: "integer".into()
                },
                true
            )]
        );
    }

    #[test]
    fn an_option_made_required_is_a_new_requirement_and_a_retype() {
        // `Option<Address>`: schemars writes anyOf [$ref, null].
        let with = |address: Value, required: &[&str]| {
            let mut schema = order(json!({"address": address}), required);
            schema["$defs"] =
                json!({"Address": order(json!({"city": {"type": "string"}}), &["city"])});
            schema
        };
        let optional = catalog(
            1,
            with(
                json!({"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]}),
                &[],
            ),
        );
        let required = catalog(1, with(json!({"$ref": "#/$defs/Address"}), &["address"]));
        let retyped = |was: &str, now: &str| ChangeKind::Retyped {
            was: was.into(),
            now: now.into(),
        };
        assert_eq!(
            changes(&optional, &required),
            [
                ("address".to_owned(), ChangeKind::NowRequired, true),
                (
                    "address".to_owned(),
                    retyped("null or object", "object"),
                    true
                ),
            ]
        );
        assert_eq!(
            changes(&required, &optional),
            [
                ("address".to_owned(), ChangeKind::NoLongerRequired, true),
                (
                    "address".to_owned(),
                    retyped("object", "null or object"),
                    true
                ),
            ]
        );
    }

    #[test]
    fn a_bumped_version_announces_its_breaking_changes_and_a_lowered_one_breaks() {
        let old = catalog(1, order(json!({"total": {"type": "number"}}), &["total"]));
        let new = catalog(
            2,
            order(
                json!({"total_cents": {"type": "integer"}}),
                &["total_cents"],
            ),
        );
        let report = new.compare_with(&old);
        assert!(!report.is_breaking(), "{report}");
        assert_eq!(
            changes(&old, &new)[0],
            (String::new(), ChangeKind::VersionBumped { from: 1 }, false)
        );
        assert!(
            report
                .to_string()
                .contains("ok: order.placed v2 `total`: required field removed"),
            "{report}"
        );
        let lowered = old.compare_with(&new);
        assert!(lowered.is_breaking(), "{lowered}");
    }

    #[test]
    fn new_and_removed_types_do_not_break() {
        let old = Catalog::new("svc").with(EventSchema::new("order.cancelled", 1, json!({})));
        let new = Catalog::new("svc").with(EventSchema::new("order.placed", 1, json!({})));
        let report = new.compare_with(&old);
        assert!(!report.is_breaking(), "{report}");
        assert_eq!(
            report.to_string(),
            "ok: order.cancelled v1: type no longer described\nok: order.placed v1: new type"
        );
    }
}
