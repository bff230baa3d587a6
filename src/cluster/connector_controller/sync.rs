//! Step 3, the sync: the one connector sync both modes run (`crate::sync`), with the
//! cluster as its store and the sync's leadership term as its clients' write gate.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::credentials;
use super::inputs::Inputs;
use super::store::ClusterStore;
use crate::cluster::context::Context;
use crate::cluster::leadership::LeadershipGuard;
use crate::reconcile::AccessObject;
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
    };
    let request = SyncRequest {
        requests: crate::reconcile::Requests::NONE,
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
