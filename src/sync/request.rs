//! What a sync is asked to do.

use k8s_openapi::jiff::Timestamp;

use super::store::WriteAhead;
use crate::reconcile::reviewed::ReviewedConnector;
use crate::reconcile::{AccessObject, ConnectorObject, ObjectKey, Requests, Scope};

/// What a sync is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct SyncRequest<'a> {
    pub connector: &'a ConnectorObject,
    /// Every connector that exists (see [`crate::reconcile::PlanInput::connectors`]).
    pub connectors: &'a [ConnectorObject],
    pub accesses: &'a [AccessObject],
    pub now: Timestamp,
    pub inventory_complete: bool,
    /// What the sync may change (everything, or only deletions on held credentials).
    pub scope: Scope,
    /// See [`crate::reconcile::PlanInput::unverified`].
    pub unverified: &'a [ObjectKey],
    /// The access requests and decisions (see [`crate::reconcile::PlanInput::requests`]).
    pub requests: Requests<'a>,
    /// Read and plan only; write nothing.
    pub dry_run: bool,
    /// Saves the ledger entries about to be created before Expensify is written; its
    /// refusal (a stop was asked for, leadership was lost, the save failed) stops the write.
    pub write_ahead: Option<&'a dyn WriteAhead>,
    /// `apply --plan`: write only if the plan now is exactly this reviewed one.
    pub reviewed: Option<&'a ReviewedConnector>,
}
