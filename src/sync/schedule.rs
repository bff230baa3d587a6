//! When a connector syncs next: the one schedule of both modes (`watch` and the
//! connector controller).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rand::Rng;

/// Up to a tenth of `interval`, at random: replicas and connectors do not all sync at
/// the same second.
pub fn jitter(interval: Duration) -> Duration {
    let tenth = u64::try_from(interval.as_millis() / 10).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=tenth))
}

/// When to sync next: after `interval` (plus `jitter`), or one second past the next
/// `expiresAt` if that comes first, so the member is expired when the sync runs.
pub fn next_sync(
    interval: Duration,
    jitter: Duration,
    next_expiry: Option<Timestamp>,
    now: Timestamp,
) -> Duration {
    let periodic = interval.saturating_add(jitter);
    let until_expiry = next_expiry.map(|at| {
        let seconds = at.as_second().saturating_sub(now.as_second()).max(0);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0).saturating_add(1))
    });
    until_expiry.map_or(periodic, |e| e.min(periodic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_applies_without_an_expiry() {
        let now = Timestamp::now();
        let wait = next_sync(Duration::from_secs(600), Duration::from_secs(3), None, now);
        assert_eq!(wait, Duration::from_secs(603));
    }

    #[test]
    fn an_expiry_before_the_interval_comes_first_one_second_late() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let expiry = Timestamp::from_second(1_000_030).unwrap();
        let wait = next_sync(Duration::from_secs(600), Duration::ZERO, Some(expiry), now);
        assert_eq!(wait, Duration::from_secs(31));
    }

    #[test]
    fn a_past_expiry_syncs_in_a_second() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let expiry = Timestamp::from_second(999_000).unwrap();
        let wait = next_sync(Duration::from_secs(600), Duration::ZERO, Some(expiry), now);
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        for _ in 0..200 {
            assert!(jitter(Duration::from_secs(600)) <= Duration::from_secs(60));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
