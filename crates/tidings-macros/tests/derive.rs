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
