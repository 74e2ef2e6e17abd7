//! Broker URLs (from configuration, the command line and the environment): reading any text
//! as one never panics, and for a URL built with a password, neither the redacted form
//! written to logs and the dashboard nor the Debug output shows it.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tidings_core::broker_url::BrokerUrl;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Read as it is.
    text: String,
    /// Built into `{scheme}://{user}:{password}@{rest}`.
    scheme: String,
    user: String,
    password: String,
    rest: String,
}

fuzz_target!(|input: Input| {
    let url = BrokerUrl::new(input.text.as_str());
    let _ = (url.scheme(), url.credentials(), url.without_credentials());
    let _ = (url.redacted(), format!("{url:?}"));

    // The password is made of characters a URL does not escape or give a meaning to, so that
    // it reads back as itself; it must be long enough, and nowhere else in the URL, for its
    // absence from the output to mean something.
    let password = &input.password;
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    if password.len() < 6
        || !plain(password)
        || [&input.scheme, &input.user, &input.rest]
            .iter()
            .any(|s| s.contains(password.as_str()))
        || !input.scheme.bytes().all(|b| b.is_ascii_alphanumeric())
        || input.scheme.is_empty()
        || input.user.contains([':', '@', '/', '?', '#', '%'])
        || input.rest.contains('@')
    {
        return;
    }
    let text = format!(
        "{}://{}:{password}@{}",
        input.scheme, input.user, input.rest
    );
    let url = BrokerUrl::new(text.as_str());
    assert_eq!(
        url.credentials().and_then(|(_, p)| p).as_deref(),
        Some(password.as_str())
    );
    for shown in [
        url.redacted(),
        url.without_credentials(),
        format!("{url:?}"),
    ] {
        assert!(
            !shown.contains(password.as_str()),
            "{shown:?} shows the password of {text:?}"
        );
    }
});
