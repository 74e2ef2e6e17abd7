//! What `#[derive(DomainEvent)]` generates.

use serde::{Deserialize, Serialize};
use tidings::DomainEvent;
use tidings::envelope::Category;

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "order.created", version = 3, category = "integration")]
struct OrderCreated {
    #[event(subject)]
    order_id: u64,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "customer.segment.changed")]
struct SegmentChanged(#[event(subject)] String, String);

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "payment.outcome")]
enum PaymentOutcome {
    Completed { payment_id: String },
    Failed { payment_id: String, error: String },
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "search.reindex", version = 1)]
#[serde(bound = "")]
struct Reindex<T: Send + Sync + 'static> {
    #[serde(skip)]
    marker: std::marker::PhantomData<T>,
}

#[test]
fn name_version_and_category_come_from_the_attribute() {
    assert_eq!(OrderCreated::NAME, "order.created");
    assert_eq!(OrderCreated::VERSION, 3);
    assert_eq!(OrderCreated::CATEGORY, Some(Category::Integration));
}

#[test]
fn version_defaults_to_one_and_category_to_none() {
    assert_eq!(SegmentChanged::VERSION, 1);
    assert_eq!(SegmentChanged::CATEGORY, None);
}

#[test]
fn the_subject_field_becomes_the_subject() {
    assert_eq!(
        OrderCreated { order_id: 42 }.subject().as_deref(),
        Some("42")
    );
    assert_eq!(
        SegmentChanged("cust_1".into(), "vip".into())
            .subject()
            .as_deref(),
        Some("cust_1")
    );
}

#[test]
fn enums_and_generic_types_derive_too() {
    let outcome = PaymentOutcome::Failed {
        payment_id: "p".into(),
        error: "declined".into(),
    };
    assert_eq!(outcome.subject(), None);
    assert!(matches!(outcome, PaymentOutcome::Failed { .. }));
    let _ = PaymentOutcome::Completed {
        payment_id: "p".into(),
    };
    assert_eq!(Reindex::<u8>::NAME, "search.reindex");
    let _ = Reindex::<u8> {
        marker: std::marker::PhantomData,
    };
}

/// An account's registration, as Python services send it: camelCase on the wire.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.registered", version = 2)]
#[serde(rename_all = "camelCase")]
struct AccountRegistered {
    /// The account's id.
    #[event(subject)]
    account_id: String,
    email: String,
    #[serde(default)]
    newsletter: bool,
    plan: Plan,
    referrer: Option<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Plan {
    Free,
    Pro,
}

fn schema_of<T: DomainEvent>() -> serde_json::Value {
    T::data_schema().expect("a schema").to_value()
}

#[test]
fn the_schema_describes_the_serde_form_with_its_required_fields() {
    let schema = schema_of::<AccountRegistered>();
    assert_eq!(schema["title"], "AccountRegistered", "{schema}");
    assert_eq!(schema["type"], "object");
    let properties = schema["properties"].as_object().expect("properties");
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["accountId", "email", "newsletter", "plan", "referrer"],
        "serde's renames, not the Rust names"
    );
    assert_eq!(properties["accountId"]["description"], "The account's id.");
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|v| v.as_str().expect("a name"))
        .collect();
    required.sort_unstable();
    assert_eq!(
        required,
        ["accountId", "email", "plan"],
        "`default` and `Option` fields are optional"
    );
    let plan = serde_json::to_string(&schema["$defs"]["Plan"]).expect("json");
    assert!(
        plan.contains("\"free\"") && plan.contains("\"pro\""),
        "{plan}"
    );
}

#[test]
fn tuple_structs_and_enums_have_schemas_too() {
    let tuple = schema_of::<SegmentChanged>();
    assert_eq!(tuple["type"], "array", "{tuple}");
    let outcome = serde_json::to_string(&schema_of::<PaymentOutcome>()).expect("json");
    assert!(
        outcome.contains("Completed") && outcome.contains("Failed"),
        "{outcome}"
    );
}

#[test]
fn generic_events_describe_no_schema() {
    assert!(Reindex::<u8>::data_schema().is_none());
}
