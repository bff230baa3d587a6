//! The plan of a sync: made from what Expensify showed before the write, checked against
//! a reviewed plan (`apply --plan`), and made again from the re-read after it.

use std::collections::BTreeMap;

use super::request::SyncRequest;
use super::store::WriteRefused;
use super::write::Written;
use crate::api::PolicyAccessStatus;
use crate::reconcile::bounded::first_few;
use crate::reconcile::plan::{Plan, PlanInput, plan};
use crate::reconcile::{AccessObject, ObjectKey, Observed};

/// The plan for these objects (the request's, or the same with their saved ledgers)
/// against what Expensify shows.
pub(super) fn plan_for(
    request: SyncRequest<'_>,
    accesses: &[AccessObject],
    observed: &Observed,
) -> Plan {
    plan(PlanInput {
        connector: request.connector,
        connectors: request.connectors,
        accesses,
        observed,
        now: request.now,
        inventory_complete: request.inventory_complete,
        scope: request.scope,
        unverified: request.unverified,
        requests: request.requests,
    })
}

/// `apply --plan`: refuses the write when the plan now is not the reviewed one.
pub(super) fn check_reviewed(
    request: SyncRequest<'_>,
    before: &Plan,
    observed: &Observed,
) -> Result<(), WriteRefused> {
    let moved = request
        .reviewed
        .map(|reviewed| reviewed.moved(before, observed))
        .unwrap_or_default();
    if moved.is_empty() {
        return Ok(());
    }
    Err(WriteRefused(format!(
        "the plan moved since it was reviewed: {}",
        first_few(&moved, "; ")
    )))
}

/// The plan after the write, from the re-read rosters and the saved ledgers; the plan
/// before it when the re-read failed (nothing is known to have changed).
pub(super) fn replan(request: SyncRequest<'_>, before: &Plan, written: &Written) -> Plan {
    if written.verified {
        plan_for(
            request,
            &with_ledgers(request.accesses, &written.write_ahead),
            &written.observed,
        )
    } else {
        before.clone()
    }
}

/// The objects as they stand once the write-ahead statuses are saved.
fn with_ledgers(
    accesses: &[AccessObject],
    saved: &BTreeMap<ObjectKey, PolicyAccessStatus>,
) -> Vec<AccessObject> {
    accesses
        .iter()
        // Field by field, so the status being replaced is not copied first.
        .map(|a| AccessObject {
            key: a.key.clone(),
            generation: a.generation,
            created: a.created,
            annotations: a.annotations.clone(),
            spec: a.spec.clone(),
            deleting: a.deleting,
            status: saved.get(&a.key).or(a.status.as_ref()).cloned(),
        })
        .collect()
}
