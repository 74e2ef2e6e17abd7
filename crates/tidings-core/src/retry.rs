//! Retry policy: how many attempts, and how long to wait between them.
//!
//! Exponential backoff with full jitter: the delay before attempt `n + 1` is drawn uniformly
//! from `[0, min(max_delay, initial_delay × 2^(n-1))]`. The attempt number comes from the
//! transport (a header, a delivery count), so the delay is a pure function of it and of a
//! random draw; no state is kept between attempts, which is why this is not built on an
//! iterator-style backoff crate.
//!
//! ```
//! use std::time::Duration;
//! use tidings_core::retry::RetryPolicy;
//!
//! let policy = RetryPolicy::exponential(Duration::from_millis(100))
//!     .with_max_attempts(5)
//!     .with_max_delay(Duration::from_secs(1));
//! assert_eq!(policy.ceiling(1), Duration::from_millis(100));
//! assert_eq!(policy.ceiling(4), Duration::from_millis(800));
//! assert_eq!(policy.ceiling(5), Duration::from_secs(1));
//! assert!(policy.next_delay(5, None).is_none()); // the fifth attempt was the last
//! ```

use std::time::Duration;

/// When and how often a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total deliveries allowed, the first one included. `1` means no retry.
    pub max_attempts: u32,
    /// Ceiling of the first backoff.
    pub initial_delay: Duration,
    /// Largest backoff ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, backoff from 1 s up to 5 min.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff from `initial_delay`, with the default attempts and cap.
    pub fn exponential(initial_delay: Duration) -> Self {
        Self {
            initial_delay,
            ..Self::default()
        }
    }

    /// No retry: the first failure is final.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the total number of attempts (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the largest backoff.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The backoff ceiling after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << exp;
        let nanos = self
            .initial_delay
            .as_nanos()
            .saturating_mul(u128::from(factor));
        let capped = nanos.min(self.max_delay.as_nanos());
        Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
    }

    /// A delay with full jitter after failed attempt `attempt`, drawn from `rng`.
    pub fn jittered(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.u64(0..=nanos))
    }

    /// What to do after attempt `attempt` failed transiently: `Some(delay)` to retry, `None`
    /// when it was the last. A delay the handler asked for is honoured, capped at `max_delay`.
    pub fn next_delay(&self, attempt: u32, requested: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        Some(match requested {
            Some(delay) => delay.min(self.max_delay),
            None => self.jittered(attempt, &mut fastrand::Rng::new()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = RetryPolicy::exponential(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(50));
        let got: Vec<_> = (1..=5).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(got, [10, 20, 40, 50, 50]);
        assert_eq!(p.ceiling(1000), Duration::from_millis(50));
    }

    #[test]
    fn last_attempt_is_not_retried() {
        let p = RetryPolicy::default().with_max_attempts(3);
        assert!(p.next_delay(1, None).is_some());
        assert!(p.next_delay(2, None).is_some());
        assert!(p.next_delay(3, None).is_none());
        assert!(RetryPolicy::never().next_delay(1, None).is_none());
    }

    #[test]
    fn requested_delay_is_capped() {
        let p = RetryPolicy::default().with_max_delay(Duration::from_secs(10));
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        let p = RetryPolicy::exponential(Duration::from_millis(1000));
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<_> = (0..1000).map(|_| p.jittered(1, &mut rng)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(900)));
    }

    proptest! {
        #[test]
        fn jitter_never_exceeds_the_ceiling(
            initial_ms in 0u64..10_000,
            max_ms in 0u64..1_000_000,
            attempt in 1u32..200,
            seed in any::<u64>(),
        ) {
            let p = RetryPolicy::exponential(Duration::from_millis(initial_ms))
                .with_max_delay(Duration::from_millis(max_ms));
            let d = p.jittered(attempt, &mut fastrand::Rng::with_seed(seed));
            prop_assert!(d <= p.ceiling(attempt));
            prop_assert!(p.ceiling(attempt) <= p.max_delay);
        }
    }
}
