//! API tokens: who may publish which topics as which tenant, and whose dead letters they
//! may see.
//!
//! Each token of the configuration (`[[serve.tokens]]`) is bound to a tenant (`"*"`: every
//! tenant, for operators) and to the topic patterns it may publish and subscribe to. A
//! request names its token in `Authorization: Bearer <token>`.
//!
//! - An event published without `tenantid` gets the token's tenant; one that names another
//!   tenant is refused (`403`).
//! - Dead letters are shown, replayed and counted only when their event is of the token's
//!   tenant and its topic matches one of the token's `subscribe` patterns. Purging a whole
//!   queue is for operator tokens.
//!
//! Tokens are kept only as SHA-256 digests, compared in constant time (every configured
//! digest is compared, whichever matches), and never logged: a request is logged by the
//! token's `name`. With no token configured the gateway is open, which `tidings serve`
//! says when it starts.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tidings::envelope::Envelope;
use tidings::topic::Pattern;

use super::gateway::{ApiError, Gateway};
use crate::config::TokenSection;

/// The configured tokens; none means an open gateway.
#[derive(Default)]
pub(crate) struct Tokens {
    entries: Vec<(Digest32, Arc<Access>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: not even the digests.
        f.debug_list()
            .entries(self.entries.iter().map(|(_, access)| &access.name))
            .finish()
    }
}

type Digest32 = [u8; 32];

fn digest(token: &[u8]) -> Digest32 {
    Sha256::digest(token).into()
}

impl Tokens {
    /// The tokens of the configuration, each checked: a pattern that does not parse, a
    /// token given twice, or a missing secret is an error naming the token.
    pub(crate) fn from_config(sections: &[TokenSection]) -> anyhow::Result<Self> {
        let mut entries: Vec<(Digest32, Arc<Access>)> = Vec::with_capacity(sections.len());
        for section in sections {
            let token = section.token()?;
            let digest = digest(token.expose().as_bytes());
            if let Some((_, twin)) = entries.iter().find(|(d, _)| *d == digest) {
                anyhow::bail!(
                    "tokens `{}` and `{}` have the same value; give each its own",
                    twin.name,
                    section.name
                );
            }
            let patterns = |list: &[String], what: &str| {
                list.iter()
                    .map(|p| {
                        Pattern::parse(p).map_err(|e| {
                            anyhow::anyhow!("token `{}`: {what} pattern `{p}`: {e}", section.name)
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
            let tenant = match section.tenant.as_str() {
                "" => anyhow::bail!("token `{}`: `tenant` is empty", section.name),
                "*" => TenantScope::Any,
                one => TenantScope::One(one.to_owned()),
            };
            entries.push((
                digest,
                Arc::new(Access {
                    name: section.name.clone(),
                    tenant,
                    publish: patterns(&section.publish, "publish")?,
                    subscribe: patterns(&section.subscribe, "subscribe")?,
                }),
            ));
        }
        Ok(Self { entries })
    }

    /// Whether no token is configured: every request is let in.
    pub(crate) fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many tokens are configured.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The access `presented` grants, if any. Compares against every token in constant time.
    fn find(&self, presented: &str) -> Option<Arc<Access>> {
        let presented = digest(presented.as_bytes());
        let mut found = None;
        for (digest, access) in &self.entries {
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(access.clone());
            }
        }
        found
    }
}

/// Which tenants a token acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TenantScope {
    /// Every tenant (an operator's token, or an open gateway).
    Any,
    /// One tenant.
    One(String),
}

/// What the caller of a request may do.
#[derive(Debug)]
pub(crate) struct Access {
    /// The token's name, for logs (never the token).
    pub(crate) name: String,
    tenant: TenantScope,
    publish: Vec<Pattern>,
    subscribe: Vec<Pattern>,
}

impl Access {
    /// Everything: the access of every request when no token is configured.
    fn open() -> Self {
        let all = Pattern::parse("#").expect("`#` is a pattern");
        Self {
            name: "anonymous".to_owned(),
            tenant: TenantScope::Any,
            publish: vec![all.clone()],
            subscribe: vec![all],
        }
    }

    /// Whether the caller acts for every tenant.
    pub(crate) fn is_operator(&self) -> bool {
        self.tenant == TenantScope::Any
    }

    /// Checks that the caller may publish `envelope`, and gives it the caller's tenant when
    /// it names none.
    pub(crate) fn authorize_publish(&self, envelope: &mut Envelope) -> Result<(), ApiError> {
        if !self.publish.iter().any(|p| p.matches(envelope.topic())) {
            return Err(ApiError::forbidden(format!(
                "token `{}` may not publish `{}`",
                self.name,
                envelope.topic()
            )));
        }
        if let TenantScope::One(tenant) = &self.tenant {
            match &envelope.extensions.tenantid {
                None => envelope.extensions.tenantid = Some(tenant.clone()),
                Some(named) if named == tenant => {}
                Some(named) => {
                    return Err(ApiError::forbidden(format!(
                        "token `{}` publishes for tenant `{tenant}`, not `{named}`",
                        self.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether the caller may see an event of `topic` and `tenant` (a dead letter's).
    pub(crate) fn may_read(&self, topic: &str, tenant: Option<&str>) -> bool {
        let tenant_ok = match &self.tenant {
            TenantScope::Any => true,
            TenantScope::One(mine) => tenant == Some(mine.as_str()),
        };
        tenant_ok && self.subscribe.iter().any(|p| p.matches(topic))
    }
}

/// The caller of a request, authenticated by its bearer token.
pub(crate) struct Caller(pub(crate) Arc<Access>);

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let tokens = gateway.tokens();
        if tokens.is_open() {
            return Ok(Self(OPEN.clone()));
        }
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API token is required: `Authorization: Bearer <token>`",
            ));
        };
        match tokens.find(presented) {
            Some(access) => Ok(Self(access)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API token is not valid",
            )),
        }
    }
}

/// The access of every request to an open gateway.
static OPEN: std::sync::LazyLock<Arc<Access>> =
    std::sync::LazyLock::new(|| Arc::new(Access::open()));

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(config: &str) -> Tokens {
        #[derive(serde::Deserialize)]
        struct File {
            tokens: Vec<TokenSection>,
        }
        let file: File = toml::from_str(config).expect("toml");
        Tokens::from_config(&file.tokens).expect("tokens")
    }

    const ACME: &str = r##"
        [[tokens]]
        name = "acme-checkout"
        token = "acme-secret-1"
        tenant = "acme"
        publish = ["order.#"]
        subscribe = ["order.#"]

        [[tokens]]
        name = "globex-billing"
        token = "globex-secret-2"
        tenant = "globex"
        publish = ["invoice.*"]
        subscribe = ["order.#", "invoice.*"]
    "##;

    #[test]
    fn a_token_is_found_by_its_value_and_an_unknown_one_is_not() {
        let tokens = tokens(ACME);
        assert_eq!(tokens.find("acme-secret-1").unwrap().name, "acme-checkout");
        assert_eq!(
            tokens.find("globex-secret-2").unwrap().name,
            "globex-billing"
        );
        assert!(tokens.find("acme-secret-").is_none());
        assert!(tokens.find("").is_none());
    }

    #[test]
    fn a_tenant_token_stamps_its_tenant_and_cannot_publish_as_another() {
        let acme = tokens(ACME).find("acme-secret-1").unwrap();
        let mut unnamed = Envelope::new("checkout", "order.created");
        acme.authorize_publish(&mut unnamed).unwrap();
        assert_eq!(unnamed.extensions.tenantid.as_deref(), Some("acme"));

        let mut as_globex = Envelope::new("checkout", "order.created").with_tenant("globex");
        let refused = acme.authorize_publish(&mut as_globex).unwrap_err();
        assert_eq!(refused.code(), "forbidden");

        let mut other_topic = Envelope::new("checkout", "invoice.sent");
        assert!(acme.authorize_publish(&mut other_topic).is_err());
    }

    #[test]
    fn dead_letters_are_readable_only_within_the_tenant_and_subscribed_topics() {
        let globex = tokens(ACME).find("globex-secret-2").unwrap();
        assert!(globex.may_read("order.created", Some("globex")));
        assert!(!globex.may_read("order.created", Some("acme")));
        assert!(!globex.may_read("order.created", None));
        assert!(!globex.may_read("user.signed_up", Some("globex")));
        assert!(!globex.is_operator());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        #[derive(serde::Deserialize)]
        struct File {
            tokens: Vec<TokenSection>,
        }
        let file: File = toml::from_str(ACME).unwrap();
        let shown = format!("{:?} {:?}", file.tokens, tokens(ACME));
        assert!(!shown.contains("acme-secret-1"), "{shown}");
        assert!(!shown.contains("globex-secret-2"), "{shown}");
    }

    #[test]
    fn two_tokens_with_one_value_are_refused() {
        #[derive(serde::Deserialize)]
        struct File {
            tokens: Vec<TokenSection>,
        }
        let file: File = toml::from_str(
            r#"
            [[tokens]]
            name = "a"
            token = "same"
            tenant = "x"
            [[tokens]]
            name = "b"
            token = "same"
            tenant = "y"
        "#,
        )
        .unwrap();
        let error = Tokens::from_config(&file.tokens).unwrap_err().to_string();
        assert!(error.contains("`a` and `b`"), "{error}");
    }
}
