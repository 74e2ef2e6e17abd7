//! Topic patterns as SNS filter policies and EventBridge event patterns.
//!
//! Neither service has AMQP's wildcards, so each pattern becomes the narrowest condition the
//! service can check on the event's type, and the consumer checks the exact pattern after:
//!
//! | pattern | SNS filter policy | EventBridge pattern |
//! |---|---|---|
//! | `order.created` | `eventName` = `order.created` | `detail-type` = `order.created` |
//! | `order.*` | `eventName` starts with `order.`, `depth` = 2 | `detail-type` starts with `order.` |
//! | `order.#` | `eventName` = `order`, or starts with `order.` | the same |
//! | `*.created`, `#` | none: everything | none: everything |
//!
//! `depth` is a Number attribute with the topic's word count, published with every event so
//! that SNS can tell `order.created` from `order.stock.low`.

use serde_json::{Value, json};
use tidings_core::topic::{Pattern, words};

/// Most patterns one filter policy expresses; more are filtered on the consumer only (SNS
/// caps a policy's combinations).
const MAX_PATTERNS: usize = 10;

/// What the service can check of one pattern.
enum Condition {
    /// Everything (the pattern starts with a wildcard).
    Any,
    /// The type equals this.
    Exact(String),
    /// The type starts with `prefix.` and has this many words.
    PrefixAndDepth(String, usize),
    /// The type equals `prefix`, or starts with `prefix.`.
    PrefixOrSelf(String),
}

fn condition(pattern: &Pattern) -> Condition {
    let all: Vec<&str> = words(pattern.as_str()).collect();
    let Some(first_wildcard) = all.iter().position(|w| *w == "*" || *w == "#") else {
        return Condition::Exact(pattern.as_str().to_owned());
    };
    if first_wildcard == 0 {
        return Condition::Any;
    }
    let prefix = all[..first_wildcard].join(".");
    if all.contains(&"#") {
        Condition::PrefixOrSelf(prefix)
    } else {
        Condition::PrefixAndDepth(prefix, all.len())
    }
}

/// The SNS filter policy (JSON, on message attributes) for `patterns`; `None` for no filter.
pub(crate) fn sns_policy(patterns: &[Pattern]) -> Option<String> {
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        return None;
    }
    let mut alternatives = Vec::new();
    for pattern in patterns {
        alternatives.push(match condition(pattern) {
            Condition::Any => return None,
            Condition::Exact(ty) => json!({ "eventName": [ty] }),
            Condition::PrefixAndDepth(prefix, depth) => json!({
                "eventName": [{ "prefix": format!("{prefix}.") }],
                "depth": [{ "numeric": ["=", depth] }],
            }),
            Condition::PrefixOrSelf(prefix) => json!({
                "eventName": [prefix.clone(), { "prefix": format!("{prefix}.") }],
            }),
        });
    }
    let policy = if alternatives.len() == 1 {
        alternatives.pop().expect("one")
    } else {
        json!({ "$or": alternatives })
    };
    Some(policy.to_string())
}

/// The EventBridge event pattern (JSON) for `patterns`: every event of the bus when none
/// can be narrowed.
pub(crate) fn event_pattern(patterns: &[Pattern]) -> String {
    let mut types: Vec<Value> = Vec::new();
    for pattern in patterns {
        match condition(pattern) {
            Condition::Any => {
                types.clear();
                break;
            }
            Condition::Exact(ty) => types.push(json!(ty)),
            Condition::PrefixAndDepth(prefix, _) => {
                types.push(json!({ "prefix": format!("{prefix}.") }))
            }
            Condition::PrefixOrSelf(prefix) => {
                types.push(json!(prefix.clone()));
                types.push(json!({ "prefix": format!("{prefix}.") }));
            }
        }
    }
    if types.is_empty() {
        // Every event has a source: this matches them all.
        return json!({ "source": [{ "prefix": "" }] }).to_string();
    }
    json!({ "detail-type": types }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_become_the_narrowest_sns_policy() {
        assert_eq!(
            sns_policy(&[p("order.created")]).unwrap(),
            r#"{"eventName":["order.created"]}"#
        );
        let star: Value = serde_json::from_str(&sns_policy(&[p("order.*")]).unwrap()).unwrap();
        assert_eq!(star["eventName"][0]["prefix"], "order.");
        assert_eq!(star["depth"][0]["numeric"][1], 2);
        let hash: Value = serde_json::from_str(&sns_policy(&[p("order.#")]).unwrap()).unwrap();
        assert_eq!(hash["eventName"][0], "order");
        assert_eq!(sns_policy(&[p("#")]), None);
        assert_eq!(sns_policy(&[p("order.*"), p("*.created")]), None);
        let both: Value =
            serde_json::from_str(&sns_policy(&[p("order.*"), p("payment.*")]).unwrap()).unwrap();
        assert_eq!(both["$or"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn patterns_become_an_event_pattern_on_the_detail_type() {
        assert_eq!(
            event_pattern(&[p("order.*"), p("customer.created")]),
            r#"{"detail-type":[{"prefix":"order."},"customer.created"]}"#
        );
        assert_eq!(event_pattern(&[p("#")]), r#"{"source":[{"prefix":""}]}"#);
    }
}
