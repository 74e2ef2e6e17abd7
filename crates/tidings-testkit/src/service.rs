//! Tests that need a running service (a database, a broker) say so here when it is missing.

use std::fmt::Display;

/// Whether this run is CI (`CI=true` or `CI=1`), where a missing service is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports that `service` is unreachable. Under CI the test fails here; elsewhere it prints
/// the reason, and the caller returns without testing anything.
///
/// # Panics
///
/// Under CI, always.
pub fn unavailable(service: &str, error: &dyn Display) {
    assert!(
        !in_ci(),
        "{service} is required under CI=true but unreachable: {error}"
    );
    eprintln!("SKIPPED: {service} unreachable ({error}); with CI=true this fails");
}
