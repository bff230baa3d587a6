//! PolicyAccess objects no connector sync covers: their connector is missing or refuses
//! their namespace. They get an Error status, and their deletion is never held up.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::connector_controller::{
    CACHES_LISTED_WAIT, ReconcileError, STANDBY_RECHECK, status_changed,
};
use super::context::{Context, FinalizerChange};
use super::kube_io::{FINALIZER, KubeCallError};
use crate::api::{PolicyAccess, Reason};
use crate::reconcile::status::{NotSynced, unsynced_status};
use crate::reconcile::{
    AccessObject, ConnectorObject, connector_allows, stranded_deletion, validate_access,
};

/// Reconciles one PolicyAccess; only acts when no connector sync will. A success resets
/// its error backoff.
pub async fn reconcile_access(
    access: Arc<PolicyAccess>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = AccessObject::from_resource(&access).key;
    let reconcile = look_at_access(access, ctx.clone());
    ctx.access_backoff.track(&key, reconcile).await
}

async fn look_at_access(
    access: Arc<PolicyAccess>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if !ctx.is_leader() {
        return Ok(Action::requeue(STANDBY_RECHECK));
    }
    if !ctx.caches.wait_until_listed(CACHES_LISTED_WAIT).await {
        return Ok(Action::requeue(STANDBY_RECHECK));
    }
    let access = Arc::new(ctx.known(access.as_ref()));
    let object = AccessObject::from_resource(&access);
    let connector_key = object.connector_key();
    let kube_error = |source| ReconcileError::Kube {
        connector: connector_key.to_string(),
        source,
    };
    let connector = ctx
        .caches
        .connector(&connector_key)
        .map(|c| ConnectorObject::from_resource(&c));
    let attached = connector
        .as_ref()
        .is_some_and(|c| connector_allows(c, &object.key.namespace));
    if attached {
        // The connector's sync covers it.
        return Ok(Action::await_change());
    }
    if access.metadata.deletion_timestamp.is_some() {
        return settle_deletion(&ctx, &access, &object)
            .await
            .map_err(kube_error);
    }
    let connectors: Vec<ConnectorObject> = connector.into_iter().collect();
    let problems = validate_access(&object, &connectors);
    report_invalid(
        &ctx,
        &access,
        &object,
        problems,
        (Reason::InvalidSpec, "Sync"),
    )
    .await
    .map_err(kube_error)?;
    // Connectors appear and change; look again now and then.
    Ok(Action::requeue(RECHECK))
}

/// How often an object no connector takes is looked at again.
const RECHECK: Duration = Duration::from_secs(300);

/// A deletion no connector covers: it goes ahead only when the object holds nothing to
/// take back (or is `Orphan`); otherwise it waits, `Error`, with what to do.
async fn settle_deletion(
    ctx: &Context,
    access: &PolicyAccess,
    object: &AccessObject,
) -> Result<Action, KubeCallError> {
    let hint = "set spec.deletionPolicy to Orphan to leave them as they are";
    if let Some(problem) = stranded_deletion(object, hint) {
        let event = (Reason::CannotSettle, "Delete");
        report_invalid(ctx, access, object, vec![problem], event).await?;
        return Ok(Action::requeue(RECHECK));
    }
    if access.finalizers().iter().any(|f| f == FINALIZER) {
        let note = format!(
            "connector {} is missing or refuses this namespace, and this object holds nothing to take back: deletion goes ahead",
            object.connector_key()
        );
        ctx.publish(
            access,
            EventType::Warning,
            "ConnectorMissing",
            "Delete",
            note,
        )
        .await;
        ctx.finalizer(access, FINALIZER, FinalizerChange::Release)
            .await?;
    }
    Ok(Action::await_change())
}

/// Writes the `Error` status these problems give (when it changed) with a Warning event
/// of this `(reason, action)`.
async fn report_invalid(
    ctx: &Context,
    access: &PolicyAccess,
    object: &AccessObject,
    problems: Vec<crate::reconcile::Problem>,
    (reason, action): (Reason, &str),
) -> Result<(), KubeCallError> {
    let status = unsynced_status(object, NotSynced::Invalid(problems), Timestamp::now());
    if !status_changed(access.status.as_ref(), &status) {
        return Ok(());
    }
    ctx.write_status(access, &status).await?;
    let note = status.message.clone().unwrap_or_default();
    ctx.publish(access, EventType::Warning, reason.as_str(), action, note)
        .await;
    Ok(())
}

/// A failed reconcile is retried with per-object exponential backoff and jitter, and
/// counted by category.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature kube's Controller::run takes"
)]
pub fn error_policy(
    access: Arc<PolicyAccess>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let wait = ctx
        .access_backoff
        .failed(&AccessObject::from_resource(&access).key);
    ctx.metrics.failed("policyaccess", error.category());
    tracing::warn!(
        object = %access.name_any(),
        error = %error,
        category = error.category(),
        retry_in_seconds = wait.as_secs(),
        "reconcile failed; retrying"
    );
    Action::requeue(wait)
}
