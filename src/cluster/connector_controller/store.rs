//! Cluster mode's store for the shared sync: the credentials chosen for this sync, and
//! status patches, each refused once the sync's leadership term is over.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::api::{
    AccessRequest, AccessRequestStatus, ExpensifyConnector, ExpensifyConnectorStatus, PolicyAccess,
    PolicyAccessStatus,
};
use crate::cluster::context::{Context, FinalizerChange};
use crate::cluster::kube_io::REQUEST_FINALIZER;
use crate::cluster::leadership::LeadershipGuard;
use crate::cluster::requests::holds_access;
use crate::expensify::Credentials;
use crate::reconcile::{ConnectorObject, ObjectKey};
use crate::sync::{Store, WriteAhead, WriteRefused};

/// Cluster mode's store: the Secret read for this sync, and status patches. Its
/// write-ahead patches the statuses carrying the entries about to be created before
/// Expensify is written; a replica that is no longer the leader writes nothing.
pub(super) struct ClusterStore<'a> {
    pub ctx: &'a Context,
    pub connector: &'a ExpensifyConnector,
    pub term: LeadershipGuard,
    pub credentials: Result<Credentials, String>,
    pub by_key: BTreeMap<ObjectKey, &'a PolicyAccess>,
    /// The access requests of the sync, by key.
    pub requests_by_key: BTreeMap<ObjectKey, &'a AccessRequest>,
}

/// The key of the AccessRequest a ledger key names: its own, or the planner's synthetic
/// `request:NAME` holder key (a `:` no Kubernetes name can contain).
pub(super) fn request_key(key: &ObjectKey) -> ObjectKey {
    match key.name.strip_prefix("request:") {
        Some(name) => ObjectKey::new(key.namespace.clone(), name),
        None => key.clone(),
    }
}

impl ClusterStore<'_> {
    /// Saves the ledger of each request about to be written for, its `release`
    /// finalizer first when it will hold access (so deleting it releases first).
    async fn save_requests(
        &self,
        requests: &BTreeMap<ObjectKey, AccessRequestStatus>,
    ) -> Result<(), WriteRefused> {
        for (key, status) in requests {
            let Some(request) = self.requests_by_key.get(&request_key(key)) else {
                continue;
            };
            if holds_access(Some(status)) && request.metadata.deletion_timestamp.is_none() {
                self.ctx
                    .finalizer(*request, REQUEST_FINALIZER, FinalizerChange::Ensure)
                    .await
                    .map_err(|e| WriteRefused(format!("holding the request first failed: {e}")))?;
            }
            self.ctx.write_status(*request, status).await.map_err(|e| {
                WriteRefused(format!("saving the request's ledger first failed: {e}"))
            })?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ClusterStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("objects", &self.by_key.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Store for ClusterStore<'_> {
    fn credentials<'s>(
        &'s self,
        _connector: &'s ConnectorObject,
    ) -> BoxFuture<'s, Result<Credentials, String>> {
        Box::pin(std::future::ready(self.credentials.clone()))
    }

    fn save_connector_status<'s>(
        &'s self,
        _connector: &'s ConnectorObject,
        status: &'s ExpensifyConnectorStatus,
    ) -> BoxFuture<'s, Result<(), String>> {
        Box::pin(async move {
            // This sync's term, not just any: a sync that outlived its term writes nothing.
            self.term
                .ensure_leading()
                .map_err(|lost| lost.to_string())?;
            self.ctx
                .write_status(self.connector, status)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl WriteAhead for ClusterStore<'_> {
    fn save<'s>(
        &'s self,
        statuses: &'s BTreeMap<ObjectKey, PolicyAccessStatus>,
        requests: &'s BTreeMap<ObjectKey, AccessRequestStatus>,
        connector: Option<&'s ExpensifyConnectorStatus>,
    ) -> BoxFuture<'s, Result<(), WriteRefused>> {
        Box::pin(async move {
            self.term
                .ensure_leading()
                .map_err(|lost| WriteRefused(lost.to_string()))?;
            for (key, status) in statuses {
                let Some(pa) = self.by_key.get(key) else {
                    continue;
                };
                self.ctx
                    .write_status(*pa, status)
                    .await
                    .map_err(|e| WriteRefused(format!("saving the ledger first failed: {e}")))?;
            }
            self.save_requests(requests).await?;
            if let Some(status) = connector {
                self.ctx
                    .write_status(self.connector, status)
                    .await
                    .map_err(|e| WriteRefused(format!("recording the allowance failed: {e}")))?;
            }
            crate::crash_point!("cluster-after-write-ahead-patch");
            // Once more, right before the employee-updater call that follows.
            self.term
                .ensure_leading()
                .map_err(|lost| WriteRefused(lost.to_string()))
        })
    }
}
