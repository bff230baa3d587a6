//! A hostile or broken server cannot crash the client or hold it without bound: huge
//! `Retry-After` values, endless bodies and slow drips each end the call with a clear
//! error, quickly, and the next call works.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use expensify_operator::expensify::{
    ClientSettings, ErrorKind, ExpensifyClient, MAX_RETRY_AFTER, RetryPolicy,
};
use expensify_operator::simulator::{FaultConfig, ScriptedFault, SimulatorHandle};
use support::*;

fn script(sim: &SimulatorHandle, faults: Vec<ScriptedFault>) {
    sim.state().set_faults(FaultConfig {
        script: VecDeque::from(faults),
        ..FaultConfig::default()
    });
}

fn client(sim: &SimulatorHandle, settings: ClientSettings) -> ExpensifyClient {
    client_with(sim, settings, ADMIN_ID, ADMIN_SECRET)
}

/// After a fault the same client carries on: nothing was left half-read or poisoned.
async fn still_works(client: &ExpensifyClient) {
    assert!(!client.list_policies(false).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_huge_retry_after_is_clamped_and_ends_the_call() {
    let sim = start(&unlimited_seed()).await;
    let client = client(&sim, test_settings());
    for value in [
        "18446744073709551615",
        "99999999999999999999999999999999",
        "4000",
    ] {
        script(
            &sim,
            vec![ScriptedFault::RetryAfter {
                value: value.into(),
            }],
        );
        let started = Instant::now();
        let err = client.list_policies(false).await.unwrap_err();
        // Waiting an hour does not fit the two-minute retry budget: fail now, once.
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.attempts, 1, "{err}");
        match err.kind {
            ErrorKind::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(MAX_RETRY_AFTER), "{value}");
            }
            other => panic!("{other:?}"),
        }
        still_works(&client).await;
    }
}

#[tokio::test]
async fn a_short_retry_after_is_waited_and_retried() {
    let sim = start(&unlimited_seed()).await;
    let client = client(
        &sim,
        ClientSettings {
            retry: RetryPolicy {
                rate_limited_backoff: Duration::from_millis(10),
                initial_backoff: Duration::from_millis(10),
                ..RetryPolicy::default()
            },
            ..test_settings()
        },
    );
    script(&sim, vec![ScriptedFault::RetryAfter { value: "1".into() }]);
    let started = Instant::now();
    client.list_policies(false).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(client.counts().retries, 1);
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap() {
    let sim = start(&unlimited_seed()).await;
    let limit = 1024 * 1024;
    let client = client(
        &sim,
        ClientSettings {
            max_body_bytes: limit,
            ..test_settings()
        },
    );
    script(&sim, vec![ScriptedFault::EndlessBody]);
    let started = Instant::now();
    let err = client.list_policies(false).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    // Not transient: the same server would send the same body again.
    assert_eq!(err.attempts, 1);
    assert_eq!(err.kind, ErrorKind::ResponseTooLarge { limit });
    assert_eq!(err.kind.category(), "response_too_large");
    assert!(err.to_string().contains("1048576-byte limit"), "{err}");
    still_works(&client).await;
}

#[tokio::test]
async fn an_announced_body_over_the_cap_is_refused_unread() {
    let sim = start(&unlimited_seed()).await;
    let client = client(
        &sim,
        ClientSettings {
            max_body_bytes: 64,
            ..test_settings()
        },
    );
    let err = client.list_policies(false).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ResponseTooLarge { limit: 64 });
}

#[tokio::test]
async fn a_slow_drip_ends_at_the_request_timeout() {
    let sim = start(&unlimited_seed()).await;
    let timeout = Duration::from_millis(400);
    let client = client(
        &sim,
        ClientSettings {
            request_timeout: timeout,
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..test_settings()
        },
    );
    script(&sim, vec![ScriptedFault::SlowDrip { interval_ms: 20 }]);
    let started = Instant::now();
    let err = client.list_policies(false).await.unwrap_err();
    let took = started.elapsed();
    assert!(took >= timeout && took < Duration::from_secs(3), "{took:?}");
    assert!(err.is_transient(), "{err}");
    still_works(&client).await;
}
