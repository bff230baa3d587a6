//! Retries of transient failures: jittered exponential backoff, bounded in attempts and
//! in total time.

use std::time::Duration;

use rand::Rng;

use super::error::ErrorKind;

/// How transient failures are retried. Writes are safe to retry: every updater record
/// states an absolute outcome (this role, or removed), so sending it twice changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
    /// The least wait after a rate-limit answer (Expensify sends no Retry-After).
    pub rate_limited_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
            rate_limited_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, or `None` when the failure is not transient
    /// or the budget is spent. `attempt` counts from 1.
    pub fn delay_after(
        &self,
        attempt: u32,
        elapsed: Duration,
        error: &ErrorKind,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if !error.is_transient() || attempt >= self.max_attempts {
            return None;
        }
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let delay = if let ErrorKind::RateLimited { retry_after, .. } = error {
            // Wait out what the server asked for (or the rate-limit floor), plus jitter so
            // processes sharing the credential do not come back together.
            let floor = ceiling
                .max(self.rate_limited_backoff)
                .max(retry_after.unwrap_or_default());
            floor.saturating_add(jitter(rng, floor / 2))
        } else {
            // "Equal jitter": at least half the ceiling, so a retry never comes right back.
            (ceiling / 2).saturating_add(jitter(rng, ceiling / 2))
        };
        // Durations here can come from a server (Retry-After): never add unchecked.
        elapsed
            .checked_add(delay)
            .is_some_and(|end| end <= self.max_elapsed)
            .then_some(delay)
    }
}

fn jitter(rng: &mut impl Rng, up_to: Duration) -> Duration {
    let most = u64::try_from(up_to.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=most))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn server_error() -> ErrorKind {
        ErrorKind::Server {
            status: 502,
            message: String::new(),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let policy = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(7);
        for attempt in 1..5 {
            let ceiling = Duration::from_secs(1 << (attempt - 1)).min(policy.max_backoff);
            for _ in 0..50 {
                let delay = policy
                    .delay_after(attempt, Duration::ZERO, &server_error(), &mut rng)
                    .unwrap();
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{delay:?} vs {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn stops_at_max_attempts_and_max_elapsed() {
        let policy = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(
            policy
                .delay_after(5, Duration::ZERO, &server_error(), &mut rng)
                .is_none()
        );
        assert!(
            policy
                .delay_after(1, Duration::from_secs(120), &server_error(), &mut rng)
                .is_none()
        );
    }

    #[test]
    fn never_retries_permanent_errors() {
        let policy = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let rejected = ErrorKind::CredentialsRejected {
            code: 407,
            message: String::new(),
        };
        assert!(
            policy
                .delay_after(1, Duration::ZERO, &rejected, &mut rng)
                .is_none()
        );
    }

    #[test]
    fn never_retries_an_unreachable_endpoint() {
        let policy = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let unreachable = ErrorKind::Unreachable {
            endpoint: "https://expensify.example/".into(),
            reason: "its name does not resolve",
            message: String::new(),
        };
        assert!(
            policy
                .delay_after(1, Duration::ZERO, &unreachable, &mut rng)
                .is_none()
        );
    }

    #[test]
    fn rate_limits_wait_at_least_the_rate_limit_backoff() {
        let policy = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(3);
        let limited = ErrorKind::RateLimited {
            message: String::new(),
            retry_after: None,
        };
        let delay = policy
            .delay_after(1, Duration::ZERO, &limited, &mut rng)
            .unwrap();
        assert!(delay >= Duration::from_secs(10) && delay <= Duration::from_secs(15));
        let told = ErrorKind::RateLimited {
            message: String::new(),
            retry_after: Some(Duration::from_secs(40)),
        };
        let delay = policy
            .delay_after(1, Duration::ZERO, &told, &mut rng)
            .unwrap();
        assert!(delay >= Duration::from_secs(40) && delay <= Duration::from_secs(60));
    }

    #[test]
    fn outside_durations_never_overflow() {
        let policy = RetryPolicy {
            max_elapsed: Duration::MAX,
            ..RetryPolicy::default()
        };
        let mut rng = SmallRng::seed_from_u64(5);
        let huge = ErrorKind::RateLimited {
            message: String::new(),
            retry_after: Some(Duration::MAX),
        };
        assert_eq!(
            policy.delay_after(1, Duration::ZERO, &huge, &mut rng),
            Some(Duration::MAX)
        );
        assert!(
            policy
                .delay_after(1, Duration::MAX, &huge, &mut rng)
                .is_none()
        );
        assert!(
            RetryPolicy::default()
                .delay_after(1, Duration::ZERO, &huge, &mut rng)
                .is_none()
        );
    }
}
