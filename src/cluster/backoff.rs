//! The error policy's memory: per-object exponential backoff with jitter, reset when a
//! reconcile of that object succeeds (as kube-rs's and kaniop's backoff reconcilers do).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use crate::reconcile::ObjectKey;

/// The first retry after a failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between retries.
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// The wait before retry number `failures` (1 for the first failure): doubling from
/// [`FIRST_RETRY`] up to [`LONGEST_RETRY`], spread by `jitter` (a fraction in 0..=1, 10 %
/// of the wait at most) so that objects failing together do not retry together.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = FIRST_RETRY
        .saturating_mul(1u32 << doublings)
        .min(LONGEST_RETRY);
    let spread = base.mul_f64(jitter.clamp(0.0, 1.0) / 10.0);
    base.saturating_add(spread)
}

/// Failures in a row, per object.
#[derive(Debug, Default)]
pub struct ErrorBackoff {
    failures: Mutex<HashMap<ObjectKey, u32>>,
}

impl ErrorBackoff {
    /// Counts one more failure of `key`; returns how long to wait before retrying.
    pub fn failed(&self, key: &ObjectKey) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key.clone()).or_default();
        *count = count.saturating_add(1);
        retry_delay(*count, rand::rng().random_range(0.0..=1.0))
    }

    /// Runs one reconcile of `key`; a success starts the failure count over.
    pub async fn track<T, E>(
        &self,
        key: &ObjectKey,
        reconcile: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let result = reconcile.await;
        if result.is_ok() {
            self.succeeded(key);
        }
        result
    }

    /// A reconcile of `key` succeeded: the next failure starts over.
    pub fn succeeded(&self, key: &ObjectKey) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_longest_wait() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_delay(n, 0.0).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_delay(u32::MAX, 0.0), LONGEST_RETRY, "no overflow");
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        assert_eq!(retry_delay(1, 1.0), Duration::from_millis(5_500));
        assert_eq!(retry_delay(1, 7.0), Duration::from_millis(5_500), "clamped");
    }

    #[test]
    fn a_success_starts_the_count_over() {
        let backoff = ErrorBackoff::default();
        let key = ObjectKey::new("finance", "acme");
        backoff.failed(&key);
        let second = backoff.failed(&key);
        assert!(second >= Duration::from_secs(10), "{second:?}");
        backoff.succeeded(&key);
        assert!(backoff.failed(&key) < Duration::from_secs(6));
    }
}
