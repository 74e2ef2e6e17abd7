//! The conformance suite every tidings transport runs, and the helpers it is built from.
//!
//! A transport crate's `tests/conformance.rs` implements [`Harness`] and expands
//! [`conformance_suite!`], which generates one `#[tokio::test]` per rule:
//!
//! ```
//! struct Memory;
//!
//! #[async_trait::async_trait]
//! impl tidings_testkit::Harness for Memory {
//!     async fn transport(&self) -> std::sync::Arc<dyn tidings::transport::Transport> {
//!         std::sync::Arc::new(tidings::memory::MemoryTransport::new())
//!     }
//! }
//!
//! tidings_testkit::conformance_suite!(Memory, start_paused = true);
//! # fn main() {}
//! ```
//!
//! Every case works in its own namespace (a random prefix on topics and subscription names),
//! so cases run in parallel against one shared broker. Cases wait on events, never on fixed
//! sleeps; with `start_paused = true` the in-memory transport runs them on tokio's virtual
//! clock.

pub mod bench;
pub mod conformance;
pub mod faults;
mod harness;
pub mod logs;
pub mod outbox;
pub mod pki;
mod probe;
pub mod process;
pub mod proxy;
pub mod sample;
pub mod service;

pub use harness::{Harness, Namespace};
pub use outbox::OutboxHarness;
pub use probe::{Probe, recv, recv_none, within};

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}

/// Expands to one test per conformance rule, for the given [`Harness`] expression.
///
/// `start_paused = true` runs the tests on tokio's paused clock (for in-process transports).
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::conformance_suite!($harness, start_paused = false);
    };
    ($harness:expr, start_paused = $paused:literal) => {
        $crate::conformance_suite!(@cases $harness, $paused;
            publish_subscribe,
            many_topics_at_once,
            concurrent_subscribers,
            redelivery_on_error,
            no_ack_means_redelivery,
            continue_after_errors,
            continue_after_subscriber_closes,
            ordering_with_one_consumer,
            publisher_close,
            fan_out_and_competing_consumers,
            new_subscriber_of_persistent_subscription_gets_old_messages,
            reconnect_after_broker_restart,
            retry_with_backoff_then_dead_letter,
            dead_letter_replay_and_purge,
            a_replay_reaches_only_its_own_subscription,
            poison_input_dead_lettered_once,
            each_version_read_as_written,
            schema_beyond_serde_is_held,
            a_panic_reading_the_data_is_a_transient_failure,
            undecodable_bytes_dead_lettered_once,
            removed_subscription_keeps_nothing,
            deduplication,
            graceful_shutdown_with_in_flight,
            pattern_routing_matches_the_reference_matcher,
        );
    };
    (@cases $harness:expr, $paused:literal; $($case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                crate = "tidings_testkit::__private::tokio",
                start_paused = $paused
            )]
            async fn $case() {
                let harness = $harness;
                $crate::within(
                    $crate::conformance::CASE_LIMIT,
                    concat!("the conformance case `", stringify!($case), "`"),
                    $crate::conformance::$case(&harness),
                )
                .await;
            }
        )*
    };
}
