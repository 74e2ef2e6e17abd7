//! The AsyncAPI 3.0 document of a catalog.
//!
//! Written by hand, as a `serde_json::Value`: no maintained Rust crate models AsyncAPI 3.0,
//! and the document needs only a few of its objects. A test validates it against the
//! specification's own JSON Schema (npm `@asyncapi/specs`).
//!
//! Payloads are JSON Schema draft 07, the dialect AsyncAPI's Schema Object extends: the
//! catalog's 2020-12 schemas go through schemars' own draft-07 transforms, and their `$defs`
//! move to `components/schemas`, where the document's `$ref`s can reach them.

use serde_json::{Map, Value, json};
use tidings_core::schemars::Schema;
use tidings_core::schemars::transform::{
    RemoveRefSiblings, ReplacePrefixItems, ReplaceUnevaluatedProperties, Transform,
};

use super::{Catalog, EventSchema};

/// The schema of the CloudEvents attributes, under `components/schemas`.
const ATTRIBUTES: &str = "CloudEventsAttributes";

pub(crate) fn document(catalog: &Catalog, api_version: &str) -> Value {
    let mut schemas = Map::new();
    schemas.insert(ATTRIBUTES.to_owned(), attributes());
    let mut messages = Map::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    let events = catalog.events();
    for chunk in events.chunk_by(|a, b| a.name == b.name) {
        let name = &chunk[0].name;
        let channel_id = key(name);
        let mut channel_messages = Map::new();
        for event in chunk {
            let message_id = key(&format!("{name}.v{}", event.version));
            let described = payload(event, &mut schemas);
            schemas.insert(message_id.clone(), described);
            messages.insert(message_id.clone(), message(event, &message_id));
            channel_messages.insert(
                format!("v{}", event.version),
                json!({"$ref": format!("#/components/messages/{message_id}")}),
            );
        }
        channels.insert(
            channel_id.clone(),
            json!({
                "address": name,
                "title": name,
                "description": format!("The topic `{name}`: every event of the type."),
                "messages": channel_messages,
            }),
        );
        for (action, selected) in [
            ("send", chunk.iter().filter(|e| e.sent).collect::<Vec<_>>()),
            ("receive", chunk.iter().filter(|e| e.received).collect()),
        ] {
            if selected.is_empty() {
                continue;
            }
            let refs: Vec<Value> = selected
                .iter()
                .map(
                    |e| json!({"$ref": format!("#/channels/{channel_id}/messages/v{}", e.version)}),
                )
                .collect();
            let summary = match action {
                "send" => format!("{} publishes {name}.", catalog.service()),
                _ => format!("{} handles {name}.", catalog.service()),
            };
            operations.insert(
                format!("{action}.{channel_id}"),
                json!({
                    "action": action,
                    "channel": {"$ref": format!("#/channels/{channel_id}")},
                    "summary": summary,
                    "messages": refs,
                }),
            );
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": catalog.service(),
            "version": api_version,
            "description": format!(
                "The events {} publishes and handles. Each is a CloudEvents 1.0 event: its \
                 `type` is the topic, its `dataversion` the version of the payload's schema.",
                catalog.service()
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "correlationIds": {
                "correlationid": {
                    "description": "The CloudEvents extension `correlationid`: the id every \
                                    event of one business flow shares.",
                    "location": "$message.header#/correlationid",
                }
            },
        },
    })
}

/// A message: the payload's schema, the CloudEvents attributes with the type and version
/// fixed, and where its correlation id is.
fn message(event: &EventSchema, message_id: &str) -> Value {
    json!({
        "name": event.name,
        "title": format!("{} v{}", event.name, event.version),
        "contentType": "application/json",
        "headers": {
            "allOf": [
                {"$ref": format!("#/components/schemas/{ATTRIBUTES}")},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": event.name},
                        "dataversion": {"const": event.version.to_string()},
                    },
                },
            ],
        },
        "payload": {"$ref": format!("#/components/schemas/{message_id}")},
        "correlationId": {"$ref": "#/components/correlationIds/correlationid"},
    })
}

/// `event`'s schema in draft 07, its definitions moved into `schemas` (under their own
/// names, or prefixed with the message's when another type defines the same name
/// differently) and its `$ref`s pointed at them.
fn payload(event: &EventSchema, schemas: &mut Map<String, Value>) -> Value {
    let mut schema = Schema::try_from(event.schema.clone()).unwrap_or_default();
    for mut transform in [
        Box::new(ReplaceUnevaluatedProperties::default()) as Box<dyn Transform>,
        Box::new(RemoveRefSiblings::default()),
        Box::new(ReplacePrefixItems::default()),
    ] {
        transform.transform(&mut schema);
    }
    let mut root = schema.to_value();
    let Some(object) = root.as_object_mut() else {
        return root;
    };
    object.remove("$schema");
    let mut definitions = object.remove("$defs").unwrap_or_default();
    if let Some(Value::Object(more)) = object.remove("definitions") {
        if let Value::Object(defs) = &mut definitions {
            defs.extend(more);
        } else {
            definitions = Value::Object(more);
        }
    }
    let definitions = match definitions {
        Value::Object(definitions) => definitions,
        _ => Map::new(),
    };
    let rename_plain = |name: &str| key(name);
    let prefix = key(&format!("{}.v{}", event.name, event.version));
    let rename_prefixed = |name: &str| key(&format!("{prefix}.{name}"));
    let clashes = definitions.iter().any(|(name, definition)| {
        let mut moved = definition.clone();
        repoint(&mut moved, &rename_plain);
        schemas
            .get(&rename_plain(name))
            .is_some_and(|known| *known != moved)
    });
    let rename: &dyn Fn(&str) -> String = if clashes {
        &rename_prefixed
    } else {
        &rename_plain
    };
    for (name, mut definition) in definitions {
        repoint(&mut definition, rename);
        schemas.insert(rename(&name), definition);
    }
    repoint(&mut root, rename);
    root
}

/// Points every local definition `$ref` (`#/$defs/X`, `#/definitions/X`) at
/// `#/components/schemas/<rename(X)>`.
fn repoint(value: &mut Value, rename: &dyn Fn(&str) -> String) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get_mut("$ref") {
                let name = target
                    .strip_prefix("#/$defs/")
                    .or_else(|| target.strip_prefix("#/definitions/"));
                if let Some(name) = name {
                    *target = format!("#/components/schemas/{}", rename(name));
                }
            }
            for child in object.values_mut() {
                repoint(child, rename);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| repoint(item, rename)),
        _ => {}
    }
}

/// A component key: AsyncAPI allows letters, digits, `.`, `-` and `_`.
fn key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The CloudEvents 1.0 attributes tidings writes, as the message headers.
fn attributes() -> Value {
    let text = |description: &str| json!({"type": "string", "description": description});
    json!({
        "type": "object",
        "description": "The event's CloudEvents 1.0 attributes. In binary mode they travel as \
                        headers with the binding's prefix (AMQP `cloudEvents:`, NATS and HTTP \
                        `ce-`) and the payload is the message body; in structured mode \
                        (`application/cloudevents+json`) they and the payload (as `data`) are \
                        one JSON object.",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": text("Unique per source (a UUIDv7 by default); with `source`, the key of de-duplication."),
            "source": text("The service that published the event (a URI reference)."),
            "type": text("The event type, which is also its topic."),
            "subject": text("The id of the aggregate the event is about."),
            "time": {"type": "string", "format": "date-time", "description": "When it happened (RFC 3339, UTC)."},
            "datacontenttype": text("The payload's media type."),
            "dataschema": {"type": "string", "format": "uri", "description": "The payload's schema."},
            "dataversion": text("The version of the payload's schema."),
            "tenantid": text("The tenant the event belongs to."),
            "correlationid": text("Shared by every event of one business flow."),
            "causationid": text("The id of the event that caused this one."),
            "traceparent": text("W3C trace context."),
            "tracestate": text("W3C trace context."),
            "category": {
                "type": "string",
                "enum": ["domain", "integration", "system", "user", "notification"],
            },
            "partitionkey": text("Events with the same key keep their order."),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(version: u32, plan: Value) -> EventSchema {
        EventSchema::new(
            "order.placed",
            version,
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"plan": {"$ref": "#/$defs/Plan"}, "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}},
                "$defs": {"Plan": plan},
            }),
        )
    }

    #[test]
    fn channels_operations_and_messages_follow_the_roles() {
        let catalog = Catalog::new("checkout")
            .with(placed(1, json!({"enum": ["free"]})).received(true))
            .with(
                placed(2, json!({"enum": ["free"]}))
                    .sent(true)
                    .received(true),
            )
            .with(EventSchema::new("payment.failed", 1, json!({})).received(true));
        let doc = catalog.asyncapi();
        assert_eq!(doc["channels"]["order.placed"]["address"], "order.placed");
        let send = &doc["operations"]["send.order.placed"];
        assert_eq!(send["action"], "send");
        assert_eq!(
            send["messages"],
            json!([{"$ref": "#/channels/order.placed/messages/v2"}])
        );
        assert_eq!(
            doc["operations"]["receive.order.placed"]["messages"]
                .as_array()
                .map(Vec::len),
            Some(2),
            "a consumer reads both versions"
        );
        assert!(doc["operations"].get("send.payment.failed").is_none());
        let message = &doc["components"]["messages"]["order.placed.v2"];
        assert_eq!(
            message["headers"]["allOf"][1]["properties"]["dataversion"]["const"],
            "2"
        );
    }

    #[test]
    fn payloads_are_draft_07_with_their_definitions_in_components() {
        let catalog = Catalog::new("checkout").with(placed(1, json!({"enum": ["free"]})));
        let doc = catalog.asyncapi();
        let schemas = &doc["components"]["schemas"];
        let payload = &schemas["order.placed.v1"];
        assert!(payload.get("$schema").is_none() && payload.get("$defs").is_none());
        assert_eq!(
            payload["properties"]["plan"]["$ref"],
            "#/components/schemas/Plan"
        );
        assert_eq!(schemas["Plan"], json!({"enum": ["free"]}));
        assert!(
            payload["properties"]["pair"]["items"].is_array(),
            "draft 07 tuples: {payload}"
        );
    }

    #[test]
    fn a_definition_name_two_types_use_differently_is_kept_apart() {
        let catalog = Catalog::new("checkout")
            .with(placed(1, json!({"enum": ["free"]})))
            .with(placed(2, json!({"enum": ["free", "pro"]})));
        let doc = catalog.asyncapi();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Plan"], json!({"enum": ["free"]}));
        assert_eq!(
            schemas["order.placed.v2.Plan"],
            json!({"enum": ["free", "pro"]})
        );
        assert_eq!(
            schemas["order.placed.v2"]["properties"]["plan"]["$ref"],
            "#/components/schemas/order.placed.v2.Plan"
        );
    }
}
