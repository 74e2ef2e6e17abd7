use std::convert::Infallible;
use std::task::{Context, Poll};

use tidings_core::dead_letter::{Reason, ReasonKind};
use tidings_core::retry::RetryPolicy;
use tower::{Layer, Service};

use super::{Handling, HandlingFuture};
use crate::Disposition;

/// Applies a [`RetryPolicy`]: a transient failure is redelivered by the transport after a
/// backoff with full jitter (or the delay the handler asked for), and after the last attempt
/// becomes a dead letter. Nothing waits in memory: the delay is carried out by the transport.
#[derive(Debug, Clone, Copy)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer applying `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy,
        }
    }
}

/// The service of [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> Service<Handling> for Retry<S>
where
    S: Service<Handling, Response = Disposition, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Disposition;
    type Error = Infallible;
    type Future = HandlingFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Handling) -> HandlingFuture {
        let attempt = req.attempt;
        let policy = self.policy;
        let handled = self.inner.call(req);
        Box::pin(async move {
            Ok(match handled.await? {
                Disposition::Retry { after, error } => match policy.next_delay(attempt, after) {
                    Some(delay) => Disposition::Retry {
                        after: Some(delay),
                        error,
                    },
                    None => Disposition::Reject(Reason::new(
                        ReasonKind::RetriesExhausted,
                        format!("gave up after {attempt} attempt(s): {error}"),
                    )),
                },
                other => other,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tidings_core::envelope::Envelope;
    use tower::ServiceExt;

    use super::*;

    fn failing() -> impl Service<
        Handling,
        Response = Disposition,
        Error = Infallible,
        Future = std::future::Ready<Result<Disposition, Infallible>>,
    > + Clone {
        tower::service_fn(|_: Handling| {
            std::future::ready(Ok(Disposition::Retry {
                after: None,
                error: "db down".into(),
            }))
        })
    }

    fn handling(attempt: u32) -> Handling {
        Handling::new(Arc::new(Envelope::new("s", "t")), "sub", "h")
            .with_attempt(attempt, Default::default())
    }

    #[tokio::test]
    async fn transient_failures_get_a_backoff_until_the_last_attempt() {
        let policy = RetryPolicy::exponential(Duration::from_millis(100)).with_max_attempts(3);
        let svc = RetryLayer::new(policy).layer(failing());
        for attempt in 1..3 {
            let d = svc.clone().oneshot(handling(attempt)).await.unwrap();
            let Disposition::Retry {
                after: Some(after), ..
            } = d
            else {
                panic!("attempt {attempt}: {d:?}")
            };
            assert!(after <= policy.ceiling(attempt));
        }
        let last = svc.oneshot(handling(3)).await.unwrap();
        assert!(
            matches!(&last, Disposition::Reject(r) if r.kind == ReasonKind::RetriesExhausted && r.message.contains("db down")),
            "{last:?}"
        );
    }
}
