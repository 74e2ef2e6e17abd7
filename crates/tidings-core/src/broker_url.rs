//! Broker URLs whose passwords never reach logs, errors or `Debug` output.

use std::fmt;

/// A broker URL (`amqp://user:password@host/vhost`, `nats://...`, `redis://...`) that prints
/// with its password replaced by `***`.
///
/// Every transport keeps its URL in one of these, so that the password can only be read on
/// purpose ([`expose`](Self::expose), [`credentials`](Self::credentials)).
///
/// ```
/// use tidings_core::broker_url::BrokerUrl;
///
/// let url = BrokerUrl::new("amqp://svc:s3cr3t@rabbit.internal:5672/prod");
/// assert_eq!(url.to_string(), "amqp://svc:***@rabbit.internal:5672/prod");
/// assert_eq!(format!("{url:?}"), "amqp://svc:***@rabbit.internal:5672/prod");
/// assert_eq!(url.credentials(), Some(("svc".to_owned(), Some("s3cr3t".to_owned()))));
/// assert_eq!(url.without_credentials(), "amqp://rabbit.internal:5672/prod");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

/// Where the parts of a URL are: `scheme://userinfo@host...`.
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    /// Host, port and whatever follows.
    rest: &'a str,
}

impl BrokerUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The scheme, e.g. `amqps`; `None` when the URL has none.
    pub fn scheme(&self) -> Option<&str> {
        self.parts().map(|p| p.scheme)
    }

    fn parts(&self) -> Option<Parts<'_>> {
        let (scheme, rest) = self.0.split_once("://")?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => Some(Parts {
                scheme,
                userinfo: Some(&rest[..at]),
                rest: &rest[at + 1..],
            }),
            None => Some(Parts {
                scheme,
                userinfo: None,
                rest,
            }),
        }
    }

    /// User name and password, percent-decoded, for clients that take them apart from the
    /// URL.
    pub fn credentials(&self) -> Option<(String, Option<String>)> {
        let userinfo = self.parts()?.userinfo?;
        Some(match userinfo.split_once(':') {
            Some((user, password)) => (percent_decode(user), Some(percent_decode(password))),
            None => (percent_decode(userinfo), None),
        })
    }

    /// The URL without user name and password.
    pub fn without_credentials(&self) -> String {
        match self.parts() {
            Some(Parts {
                scheme,
                userinfo: Some(_),
                rest,
            }) => format!("{scheme}://{rest}"),
            _ => self.0.clone(),
        }
    }

    /// The URL with the password replaced by `***`: safe to print.
    pub fn redacted(&self) -> String {
        match self.parts() {
            Some(Parts {
                scheme,
                userinfo: Some(userinfo),
                rest,
            }) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{rest}"),
                None => self.0.clone(),
            },
            Some(_) => self.0.clone(),
            // Not a URL: show nothing that could be a secret.
            None if self.0.contains('@') => "<url with credentials>".to_owned(),
            None => self.0.clone(),
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_password_and_only_it() {
        let url = BrokerUrl::new("amqp://svc:s3cr3t@rabbit.internal:5672/prod");
        assert_eq!(url.redacted(), "amqp://svc:***@rabbit.internal:5672/prod");
        assert!(!format!("{url:?} {url}").contains("s3cr3t"));
        let no_password = BrokerUrl::new("amqps://rabbit.internal/%2f");
        assert_eq!(no_password.redacted(), "amqps://rabbit.internal/%2f");
        assert_eq!(no_password.scheme(), Some("amqps"));
        for broken in ["amqp://svc:s3cr3t@[bad", "svc:s3cr3t@host"] {
            assert!(
                !BrokerUrl::new(broken).redacted().contains("s3cr3t"),
                "{broken}"
            );
        }
    }

    #[test]
    fn a_password_with_an_at_sign_or_slash_stays_hidden() {
        // An `@` inside the password must be percent-encoded, a raw one is taken as the last.
        let url = BrokerUrl::new("nats://app:p%40ss%2Fw0rd@127.0.0.1:4222");
        assert_eq!(url.redacted(), "nats://app:***@127.0.0.1:4222");
        assert_eq!(
            url.credentials(),
            Some(("app".to_owned(), Some("p@ss/w0rd".to_owned())))
        );
        let raw = BrokerUrl::new("redis://:pa@ss@127.0.0.1:6379/0");
        assert_eq!(raw.redacted(), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(raw.without_credentials(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn a_url_without_credentials_has_none() {
        let url = BrokerUrl::new("nats://127.0.0.1:4222");
        assert_eq!(url.credentials(), None);
        assert_eq!(url.without_credentials(), "nats://127.0.0.1:4222");
        let user_only = BrokerUrl::new("nats://token-abc@127.0.0.1:4222");
        assert_eq!(
            user_only.credentials(),
            Some(("token-abc".to_owned(), None))
        );
    }
}
