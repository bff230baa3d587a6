//! The connector reconcile: one sync per connector for every PolicyAccess that uses it.
//! [`sync_connector_once`] is the whole conversation with the cluster, one step per file:
//!
//! 1. `inputs`: the connector, every PolicyAccess (caches, with this term's writes) and
//!    the Secret; nothing changed since the last sync ends here;
//! 2. `finalizers::hold`: the connector's `in-use` finalizer and each object's;
//! 3. `sync`: the shared `crate::sync` with `store::ClusterStore`, on the credentials
//!    `credentials` chose;
//! 4. `events`: an Event per change (or one that counts them);
//! 5. `notifications`: deliveries that ended recorded, an Event per new notification,
//!    the notifications queued for the connector's webhook;
//! 6. `statuses`: the statuses that changed;
//! 7. `finalizers::release`: those of finished deletions;
//! 8. the next sync scheduled.
//!
//! Every Kubernetes call of these steps goes through [`Context`], which remembers the
//! writes of this term.

mod credentials;
mod events;
mod finalizers;
mod inputs;
mod notifications;
#[cfg(test)]
mod request_tests;
mod statuses;
mod store;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::api::ExpensifyConnector;
use crate::cluster::context::{Context, LastSync};
use crate::cluster::kube_io::KubeCallError;
use crate::reconcile::ObjectKey;
use crate::sync::{SyncReport, jitter, next_sync};

pub use events::{EVENT_PER_CHANGE_UP_TO, change_events};
pub use statuses::status_changed;

/// How often a standby replica checks whether it became the leader.
pub const STANDBY_RECHECK: Duration = Duration::from_secs(5);
/// How long a sync waits for the watches' first complete lists before trying later.
pub const CACHES_LISTED_WAIT: Duration = Duration::from_secs(30);

/// A reconcile that failed on a Kubernetes call; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("syncing connector {connector}: {source}")]
    Kube {
        connector: String,
        #[source]
        source: KubeCallError,
    },
}

impl ReconcileError {
    /// What failed, for the failures metric (a small, fixed set of values).
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Kube { source, .. } => source.category(),
        }
    }
}

/// Reconciles one connector; a success resets its error backoff.
pub async fn reconcile_connector(
    connector: Arc<ExpensifyConnector>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = ObjectKey::of(&connector.metadata);
    // On the heap: the sync's future is large, and callers hold this one in theirs.
    let reconcile = Box::pin(sync_connector_once(connector, ctx.clone()));
    ctx.connector_backoff.track(&key, reconcile).await
}

/// One reconcile of a connector, step by step (see the module's documentation).
async fn sync_connector_once(
    connector: Arc<ExpensifyConnector>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // This sync's leadership term: every write it makes checks that the term still lasts.
    let Ok(term) = ctx.leadership().guard() else {
        return Ok(Action::requeue(STANDBY_RECHECK));
    };
    if !ctx.caches.wait_until_listed(CACHES_LISTED_WAIT).await {
        info!(connector = %connector.name_any(), "the watches have not listed everything yet; syncing later");
        return Ok(Action::requeue(STANDBY_RECHECK));
    }
    let connector = ctx.known(connector.as_ref());
    let key = ObjectKey::of(&connector.metadata);
    let kube_error = |source| ReconcileError::Kube {
        connector: key.to_string(),
        source,
    };
    let inputs = inputs::read(&ctx, connector).await.map_err(kube_error)?;
    if let Some(wait) = inputs.unchanged_since_last_sync(&ctx) {
        return Ok(Action::requeue(wait));
    }
    if let Some(action) = finalizers::hold(&ctx, &inputs).await.map_err(kube_error)? {
        return Ok(action);
    }
    let mut report = sync::run(&ctx, &inputs, &term).await;
    if term.ensure_leading().is_err() {
        // Leadership went during the sync: the new leader writes the statuses.
        warn!(connector = %inputs.key(), "lost leadership during the sync; writing no status");
        return Ok(Action::requeue(STANDBY_RECHECK));
    }
    events::publish(&ctx, &inputs, &report).await;
    notifications::hand_over(&ctx, &inputs, &mut report).await;
    statuses::write(&ctx, &inputs, &report)
        .await
        .map_err(kube_error)?;
    finalizers::release(&ctx, &inputs, &report)
        .await
        .map_err(kube_error)?;
    Ok(Action::requeue(schedule_next(&ctx, inputs, &report)))
}

/// Remembers what this sync started from and when the next is due: the connector's
/// `syncInterval` with jitter, or the next expiry (an active request's end included) when
/// sooner.
fn schedule_next(ctx: &Context, inputs: inputs::Inputs, report: &SyncReport) -> Duration {
    let interval = inputs.object.spec.sync_interval();
    let wait = next_sync(
        interval,
        jitter(interval),
        report.next_expiry(),
        Timestamp::now(),
    );
    let key = inputs.key().clone();
    ctx.remember(
        key.clone(),
        LastSync {
            fingerprint: inputs.fingerprint,
            due: Instant::now() + wait,
        },
    );
    info!(
        connector = %key,
        objects = report.statuses.len(),
        changes = report.results.len(),
        next_sync_seconds = wait.as_secs(),
        detail = report.connector_status.message.as_deref().unwrap_or_default(),
        "next sync scheduled"
    );
    wait
}

/// A failed reconcile is retried with per-connector exponential backoff and jitter, and
/// counted by category.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature kube's Controller::run takes"
)]
pub fn error_policy(
    connector: Arc<ExpensifyConnector>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let wait = ctx
        .connector_backoff
        .failed(&ObjectKey::of(&connector.metadata));
    ctx.metrics.failed("connector", error.category());
    warn!(
        connector = %connector.name_any(),
        error = %error,
        category = error.category(),
        retry_in_seconds = wait.as_secs(),
        "reconcile failed; retrying"
    );
    Action::requeue(wait)
}
