//! Step 4, write statuses: each object's status and the connector's, written only when
//! changed (timestamps aside), with a Warning Event for a new block or error.

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use serde::Serialize;

use super::inputs::Inputs;
use super::store::request_key;
use crate::api::{AccessPhase, ExpensifyConnector, ExpensifyConnectorStatus, PolicyAccessStatus};
use crate::cluster::context::Context;
use crate::cluster::kube_io::KubeCallError;
use crate::sync::SyncReport;

/// The status without the fields that change on every sync, to decide whether to write.
fn comparable<T: Serialize>(status: &T) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("lastSyncTime");
        object.remove("lastSuccessfulSyncTime");
        if let Some(conditions) = object.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for condition in conditions {
                if let Some(condition) = condition.as_object_mut() {
                    condition.remove("lastTransitionTime");
                }
            }
        }
    }
    value
}

/// Whether `new` differs from `old` in anything but timestamps.
pub fn status_changed<T: Serialize>(old: Option<&T>, new: &T) -> bool {
    old.is_none_or(|old| comparable(old) != comparable(new))
}

/// After a sync: the objects' changed statuses, gaining objects first, then the
/// connector's.
pub(super) async fn write(
    ctx: &Context,
    inputs: &Inputs,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    crate::crash_point!("cluster-before-final-status-patch");
    write_access_statuses(ctx, inputs, report).await?;
    write_request_statuses(ctx, inputs, report).await?;
    write_connector_status(ctx, &inputs.connector, report).await
}

/// Each request's and each decision's changed status.
pub(super) async fn write_request_statuses(
    ctx: &Context,
    inputs: &Inputs,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    let requests = inputs.requests_by_key();
    for (key, status) in &report.request_statuses {
        let Some(request) = requests.get(&request_key(key)) else {
            continue;
        };
        // As this sync left it: its write-ahead included.
        let known = ctx.known(*request);
        if status_changed(known.status.as_ref(), status) {
            ctx.write_status(*request, status).await?;
        }
    }
    let decisions = inputs.decisions_by_key();
    for (key, status) in &report.decision_statuses {
        let Some(decision) = decisions.get(key) else {
            continue;
        };
        let known = ctx.known(*decision);
        if status_changed(known.status.as_ref(), status) {
            ctx.write_status(*decision, status).await?;
        }
    }
    Ok(())
}

/// Each changed status, gaining objects first; a Warning Event for a new block or error.
async fn write_access_statuses(
    ctx: &Context,
    inputs: &Inputs,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    let by_key = inputs.attached_by_key();
    for (key, status) in report.statuses_in_save_order() {
        let Some(pa) = by_key.get(key) else { continue };
        // As this sync left it: its write-ahead included.
        let known = ctx.known(*pa);
        let previous: Option<&PolicyAccessStatus> = known.status.as_ref();
        if !status_changed(previous, status) {
            continue;
        }
        ctx.write_status(*pa, status).await?;
        let message_changed = previous.and_then(|p| p.message.as_ref()) != status.message.as_ref();
        if matches!(status.phase, AccessPhase::Blocked | AccessPhase::Error) && message_changed {
            let reason = status
                .conditions
                .iter()
                .find(|c| c.type_ == crate::api::ConditionType::Ready.as_str())
                .map_or_else(|| status.phase.to_string(), |c| c.reason.clone());
            let note = status.message.clone().unwrap_or_default();
            ctx.publish(*pa, EventType::Warning, &reason, "Sync", note)
                .await;
        }
    }
    Ok(())
}

/// The connector's status, when it changed or is older than its `syncInterval`.
async fn write_connector_status(
    ctx: &Context,
    connector: &ExpensifyConnector,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    // As this sync left it: its own Syncing or allowance writes included.
    let connector = &ctx.known(connector);
    let interval = connector.spec.sync_interval();
    let stale = connector
        .status
        .as_ref()
        .and_then(|s| s.last_sync_time.as_ref())
        .is_none_or(|t| {
            Timestamp::now().as_second() - t.0.as_second()
                >= i64::try_from(interval.as_secs()).unwrap_or(i64::MAX)
        });
    let previous: Option<&ExpensifyConnectorStatus> = connector.status.as_ref();
    if stale || status_changed(previous, &report.connector_status) {
        ctx.write_status(connector, &report.connector_status)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ConnectorPhase, Reason};

    #[test]
    fn timestamps_alone_do_not_count_as_a_change() {
        let now = Timestamp::from_second(1_000).unwrap();
        let later = Timestamp::from_second(2_000).unwrap();
        let mut old = ExpensifyConnectorStatus {
            phase: ConnectorPhase::Connected,
            last_sync_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            ..Default::default()
        };
        crate::api::set_condition(
            &mut old.conditions,
            crate::api::ConditionUpdate {
                type_: crate::api::ConditionType::Ready,
                status: crate::api::ConditionStatus::True,
                reason: Reason::Synced,
                message: "ok",
                observed_generation: Some(1),
            },
            now,
        );
        let mut new = old.clone();
        new.last_sync_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(later));
        new.conditions[0].last_transition_time =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(later);
        assert!(!status_changed(Some(&old), &new));
        new.user_count = Some(3);
        assert!(status_changed(Some(&old), &new));
        assert!(status_changed(None, &new));
    }
}
