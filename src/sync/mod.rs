//! The one connector sync both modes run: invalid -> suspended -> credentials -> client
//! -> `Syncing` -> read -> plan -> save the write-ahead -> write in batches -> re-read ->
//! statuses. What differs between file mode and cluster mode is only where credentials
//! and statuses live: a [`Store`]. Every rule is in the pure [`crate::reconcile`]; this
//! room holds the calls to Expensify and to the store, in order, one step a file.

mod crash_point;
mod notifications;
mod plan;
mod preflight;
mod read;
mod report;
mod request;
mod requests;
mod reread;
mod schedule;
mod statuses;
mod store;
mod verify;
mod write;
mod write_ahead;

use tracing::{info, warn};

pub use preflight::{preflight, reads_credentials, validate_endpoint};
pub use report::{SyncReport, unsynced};
pub use request::SyncRequest;
pub use schedule::{jitter, next_sync};
pub use store::{Store, WriteAhead, WriteRefused};
pub use verify::ChangeResult;
pub use write_ahead::write_ahead_statuses;

use crate::api::{ConnectorPhase, Reason};
use crate::expensify::{ExpensifyClient, ExpensifyClients};
use crate::reconcile::ConnectorObject;
use crate::reconcile::validate::describe;

/// Syncs one connector: the request's `write_ahead` is the store unless it is a dry run.
/// The report lists the notifications its outcome calls for (`report.notifications`).
pub async fn sync(
    request: SyncRequest<'_>,
    clients: &ExpensifyClients,
    store: &dyn Store,
) -> SyncReport {
    let mut report = sync_steps(request, clients, store).await;
    notifications::collect(request, &mut report);
    report
}

/// The steps of [`sync`], in order.
async fn sync_steps(
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

/// Runs one sync of one connector through a client: read, plan, save the write-ahead,
/// write, re-read, statuses.
pub async fn sync_connector(request: SyncRequest<'_>, client: &ExpensifyClient) -> SyncReport {
    let calls_before = client.counts();
    let observed = match read::read(client).await {
        Ok(observed) => observed,
        Err(error) => return report::read_failed(request, client, calls_before, &error),
    };
    // Requests are planned as one more holder object each, next to the PolicyAccess
    // objects: from here on the sync sees them among `accesses`.
    let judged = requests::judge(request, &observed);
    let request = SyncRequest {
        accesses: &judged.accesses,
        ..request
    };
    let before = plan::plan_for(request, request.accesses, &observed);
    if request.dry_run || before.changes.is_empty() {
        let unchanged = write::Written::nothing(observed);
        // Nothing written: the plan after is the plan before (never a copy of it: a
        // million memberships' plan is over a gigabyte).
        let mut report = report::finish(request, client, calls_before, before, None, unchanged);
        report::complete_requests(&mut report, request, &judged, None);
        return report;
    }
    // A reviewed plan that moved, or a write-ahead that cannot be saved, stops the write.
    let saved = match plan::check_reviewed(request, &before, &observed) {
        Ok(()) => write_ahead::save_write_ahead(request, &before).await,
        Err(refused) => Err(refused),
    };
    let write_ahead = match saved {
        Ok(saved) => saved,
        Err(refused) => {
            let mut report = report::refuse_before_write(
                request,
                client,
                calls_before,
                before,
                observed,
                &refused,
            );
            report::complete_requests(&mut report, request, &judged, None);
            return report;
        }
    };
    crate::crash_point!("sync-after-write-ahead");
    let connector = &request.connector.key;
    let written = write::write(connector, client, &before, observed, write_ahead).await;
    let after = plan::replan(request, &before, &written);
    let mut report = report::finish(request, client, calls_before, before, Some(&after), written);
    report::complete_requests(&mut report, request, &judged, Some(&after));
    crate::crash_point!("sync-before-final-statuses");
    report
}
