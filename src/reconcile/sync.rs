//! One connector's sync, the same in both modes: invalid -> suspended -> credentials ->
//! client -> `Syncing` -> read, plan, write. What differs between file mode and cluster
//! mode is only where credentials and statuses live: a [`Store`].

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use rand::Rng;
use tracing::{info, warn};

use super::executor::{
    SyncReport, SyncRequest, WriteAhead, WriteRefused, sync_connector, unsynced,
};
use super::model::ConnectorObject;
use super::validate::{Problem, describe, validate_connector, validate_endpoint};
use crate::api::{ConnectorPhase, ExpensifyConnectorStatus, Reason};
use crate::expensify::{Credentials, ExpensifyClients};

/// Where a mode keeps what a sync reads and writes besides Expensify: credentials, and
/// statuses (the write-ahead of the ledger included).
pub trait Store: WriteAhead {
    /// The connector's credentials, or why they cannot be used (a message for status
    /// that never contains the credential).
    fn credentials<'a>(
        &'a self,
        connector: &'a ConnectorObject,
    ) -> BoxFuture<'a, Result<Credentials, String>>;

    /// Saves the connector's status outside the write-ahead (its `Syncing` phase).
    fn save_connector_status<'a>(
        &'a self,
        connector: &'a ConnectorObject,
        status: &'a ExpensifyConnectorStatus,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// What stops a connector before any credential is read: its spec, and the operator's
/// endpoint allowlist.
pub fn preflight(connector: &ConnectorObject, clients: &ExpensifyClients) -> Vec<Problem> {
    let mut problems = validate_connector(connector);
    problems.extend(validate_endpoint(connector, clients));
    problems
}

/// Whether a connector gets as far as reading its credentials.
pub fn reads_credentials(connector: &ConnectorObject, clients: &ExpensifyClients) -> bool {
    !connector.spec.suspend && preflight(connector, clients).is_empty()
}

/// Syncs one connector: the request's `write_ahead` is the store unless it is a dry run.
pub async fn sync(
    request: SyncRequest<'_>,
    clients: &ExpensifyClients,
    store: &dyn Store,
) -> SyncReport {
    let request = SyncRequest {
        write_ahead: (!request.dry_run).then_some(store as &dyn WriteAhead),
        ..request
    };
    let connector = request.connector;
    let problems = preflight(connector, clients);
    if !problems.is_empty() {
        return unsynced(request, Reason::InvalidSpec, &describe(&problems), false);
    }
    if connector.spec.suspend {
        return unsynced(request, Reason::Suspended, "suspended", true);
    }
    let credentials = match store.credentials(connector).await {
        Ok(credentials) => credentials,
        Err(message) => return unsynced(request, Reason::SecretNotFound, &message, false),
    };
    let client = match clients.client(&connector.spec.endpoint, credentials) {
        Ok(client) => client,
        Err(e) => return unsynced(request, Reason::InvalidSpec, &e.to_string(), false),
    };
    if !request.dry_run
        && let Err(refused) = mark_syncing(connector, store).await
    {
        // Nothing is read or written when even the phase cannot be recorded (leadership
        // lost, status unwritable): the write-ahead would refuse anyway.
        warn!(connector = %connector.key, reason = %refused, "not synced");
        let message = format!("not synced: {refused}");
        let mut report = unsynced(request, Reason::Progressing, &message, false);
        report.refused = Some(refused);
        return report;
    }
    let dry_run = request.dry_run;
    let report = sync_connector(request, &client).await;
    let (connector, phase, calls) = (
        &connector.key,
        &report.connector_status.phase,
        report.calls.total(),
    );
    if dry_run {
        info!(%connector, %phase, expensify_calls = calls, "connector read (plan only, nothing written)");
    } else {
        info!(%connector, %phase, expensify_calls = calls, "connector synced");
    }
    report
}

/// NotConnected or Error -> `Syncing` -> Connected, as a connector reports it.
async fn mark_syncing(connector: &ConnectorObject, store: &dyn Store) -> Result<(), WriteRefused> {
    let previous = connector
        .status
        .as_ref()
        .map(|s| s.phase)
        .unwrap_or_default();
    if previous == ConnectorPhase::Connected {
        return Ok(());
    }
    let mut syncing = connector.status.clone().unwrap_or_default();
    syncing.phase = ConnectorPhase::Syncing;
    syncing.message = Some("syncing with Expensify".into());
    store
        .save_connector_status(connector, &syncing)
        .await
        .map_err(|e| WriteRefused(format!("recording the Syncing phase failed: {e}")))?;
    info!(connector = %connector.key, from = %previous, to = %ConnectorPhase::Syncing, "connector phase");
    Ok(())
}

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
