//! Cluster mode's store for the shared sync: the credentials chosen for this sync, and
//! status patches, each refused once the sync's leadership term is over.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::api::{ExpensifyConnector, ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus};
use crate::cluster::context::Context;
use crate::cluster::leadership::LeadershipGuard;
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
        _requests: &'s BTreeMap<ObjectKey, crate::api::AccessRequestStatus>,
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
            if let Some(status) = connector {
                self.ctx
                    .write_status(self.connector, status)
                    .await
                    .map_err(|e| WriteRefused(format!("recording the allowance failed: {e}")))?;
            }
            // Once more, right before the employee-updater call that follows.
            self.term
                .ensure_leading()
                .map_err(|lost| WriteRefused(lost.to_string()))
        })
    }
}
