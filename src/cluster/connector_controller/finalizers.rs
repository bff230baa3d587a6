//! Steps 2 and 5, hold and release finalizers: the connector's `in-use` finalizer and
//! each attached object's, before a sync; those of finished deletions after it.

use kube::runtime::controller::Action;
use tracing::info;

use super::inputs::Inputs;
use super::store::request_key;
use crate::api::{ExpensifyConnector, PolicyAccess};
use crate::cluster::context::{Context, FinalizerChange};
use crate::cluster::kube_io::{FINALIZER, IN_USE_FINALIZER, KubeCallError, REQUEST_FINALIZER};
use crate::cluster::requests::holds_access;
use crate::sync::SyncReport;

/// Before a sync: the connector's `in-use` finalizer (or its release, ending here with
/// `Some`), the objects' finalizers, and the `release` finalizer of each request that
/// holds access (one granted the first time gets it in the write-ahead).
pub(super) async fn hold(ctx: &Context, inputs: &Inputs) -> Result<Option<Action>, KubeCallError> {
    let attached = inputs.attached();
    if let Some(action) = settle_in_use(ctx, &inputs.connector, &attached).await? {
        // The connector is let go: nothing of it is kept.
        ctx.held_credentials.forget(inputs.key());
        return Ok(Some(action));
    }
    for pa in attached
        .iter()
        .filter(|pa| pa.metadata.deletion_timestamp.is_none())
    {
        ctx.finalizer(*pa, FINALIZER, FinalizerChange::Ensure)
            .await?;
    }
    for request in inputs
        .requests
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none() && holds_access(r.status.as_ref()))
    {
        ctx.finalizer(request, REQUEST_FINALIZER, FinalizerChange::Ensure)
            .await?;
    }
    Ok(None)
}

/// The connector's `in-use` finalizer: held while any PolicyAccess refers to it, so that
/// deleting the connector (or its namespace) waits until `Revoke` deletions are settled.
/// A connector being deleted that nobody refers to any more is let go: `Some` then.
async fn settle_in_use(
    ctx: &Context,
    connector: &ExpensifyConnector,
    attached: &[&PolicyAccess],
) -> Result<Option<Action>, KubeCallError> {
    let deleting = connector.metadata.deletion_timestamp.is_some();
    if attached.is_empty() {
        ctx.finalizer(connector, IN_USE_FINALIZER, FinalizerChange::Release)
            .await?;
        return Ok(deleting.then(Action::await_change));
    }
    if !deleting {
        ctx.finalizer(connector, IN_USE_FINALIZER, FinalizerChange::Ensure)
            .await?;
    }
    Ok(None)
}

/// After a sync: the finalizers of deleted objects that hold nothing any more, and those
/// of requests that hold nothing (ended and released, or deleted and settled).
pub(super) async fn release(
    ctx: &Context,
    inputs: &Inputs,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    let by_key = inputs.attached_by_key();
    for key in &report.finished_deletions {
        if let Some(pa) = by_key.get(key) {
            info!(object = %key, "deletion finished; releasing the finalizer");
            ctx.finalizer(*pa, FINALIZER, FinalizerChange::Release)
                .await?;
        }
    }
    let requests = inputs.requests_by_key();
    let settled = report
        .request_statuses
        .iter()
        .filter(|(_, status)| !holds_access(Some(status)))
        .map(|(key, _)| key)
        .chain(&report.finished_request_deletions);
    for key in settled {
        if let Some(request) = requests.get(&request_key(key)) {
            // A no-op (no call) for a request that never held the finalizer.
            ctx.finalizer(*request, REQUEST_FINALIZER, FinalizerChange::Release)
                .await?;
        }
    }
    Ok(())
}
