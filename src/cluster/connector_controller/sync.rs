//! Step 3, the sync: the one connector sync both modes run (`crate::sync`), with the
//! cluster as its store and the sync's leadership term as its clients' write gate.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::credentials;
use super::inputs::Inputs;
use super::store::ClusterStore;
use crate::cluster::context::Context;
use crate::cluster::leadership::LeadershipGuard;
use crate::reconcile::{AccessObject, Approval, DecisionObject, RequestObject, Requests};
use crate::sync::{SyncReport, SyncRequest};

/// Syncs the connector of `inputs` with the credentials chosen for it, keeps those
/// Expensify accepted, and records the sync's metrics.
pub(super) async fn run(ctx: &Context, inputs: &Inputs, term: &LeadershipGuard) -> SyncReport {
    let credentials = credentials::choose(ctx, inputs);
    let started = std::time::Instant::now();
    // Every object: those of other connectors tell which policies they already govern.
    let objects: Vec<AccessObject> = inputs.all.iter().map(AccessObject::from_resource).collect();
    let store = ClusterStore {
        ctx,
        connector: &inputs.connector,
        term: term.clone(),
        credentials: credentials.for_store(),
        by_key: inputs.attached_by_key(),
        requests_by_key: inputs.requests_by_key(),
    };
    let requests: Vec<RequestObject> = inputs
        .requests
        .iter()
        .map(RequestObject::from_resource)
        .collect();
    let decisions: Vec<DecisionObject> = inputs
        .decisions
        .iter()
        .map(DecisionObject::from_resource)
        .collect();
    let admission = admission(ctx, !requests.is_empty()).await;
    let request = SyncRequest {
        requests: Requests {
            requests: &requests,
            decisions: &decisions,
            approval: Approval::Decisions(admission.as_ref().copied().map_err(String::as_str)),
        },
        connector: &inputs.object,
        connectors: &inputs.connectors,
        accesses: &objects,
        now: Timestamp::now(),
        inventory_complete: true,
        scope: credentials.scope(),
        unverified: &[],
        dry_run: false,
        write_ahead: None,
        reviewed: None,
    };
    // Every Expensify write of this sync asks its term first, right before it is sent.
    let clients = ctx.expensify.with_write_gate(Arc::new(term.clone()));
    let mut report = crate::sync::sync(request, &clients, &store).await;
    credentials::after_used(ctx, &inputs.object, credentials, &mut report);
    ctx.metrics.record(
        &inputs.key().to_string(),
        &report,
        started.elapsed().as_secs_f64(),
    );
    report
}

/// Why decisions cannot be counted, if they cannot: a decision proves who made it only
/// while the admission policy that checks `decidedBy` is in force, so every request fails
/// closed (`Error`, nothing granted) while the gate cannot confirm it. The gate is asked
/// only when there are requests (its answer is cached 30 s).
async fn admission(ctx: &Context, any_requests: bool) -> Result<(), String> {
    if let Some(settled) = ctx.requests_admission() {
        return settled.clone();
    }
    if !any_requests {
        return Ok(());
    }
    ctx.admission_gate()
        .check()
        .await
        .map_err(|refused| refused.to_string())
}
