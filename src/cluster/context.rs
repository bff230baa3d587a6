//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::events::Recorder;
use tokio::time::Instant;

use super::cache::{Caches, WrittenStatuses};
use super::kube_io::{self, KubeCallError};
use super::leadership::Leadership;
use super::metrics::Metrics;
use crate::api::{ExpensifyConnector, ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus};
use crate::expensify::ExpensifyClients;
use crate::reconcile::ObjectKey;

/// The inputs of a connector's last sync, and when the next is due.
#[derive(Debug, Clone)]
pub struct LastSync {
    pub fingerprint: String,
    pub due: Instant,
}

/// Shared by every reconcile.
pub struct Context {
    /// Writes to our objects through it are refused while this replica does not lead
    /// (see [`super::leadership::guarded_client`]).
    pub client: kube::Client,
    pub expensify: Arc<ExpensifyClients>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Whether this replica holds the lease (always, without leader election).
    leadership: Leadership,
    /// The watch caches every read comes from.
    pub caches: Caches,
    /// The statuses written in this term, which a cache may not show yet.
    written: WrittenStatuses,
    last: Mutex<HashMap<ObjectKey, LastSync>>,
    /// Failures in a row per connector and per PolicyAccess, for the error policies.
    pub connector_backoff: super::backoff::ErrorBackoff,
    pub access_backoff: super::backoff::ErrorBackoff,
}

impl Context {
    pub fn new(
        client: kube::Client,
        expensify: Arc<ExpensifyClients>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        leadership: Leadership,
        caches: Caches,
    ) -> Self {
        Self {
            client,
            expensify,
            recorder,
            metrics,
            leadership,
            caches,
            written: WrittenStatuses::default(),
            last: Mutex::new(HashMap::new()),
            connector_backoff: Default::default(),
            access_backoff: Default::default(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leadership.is_leading()
    }

    /// This replica's leadership: `ensure_leading()` right before a write, or a `guard()`
    /// taken when a sync starts and moved into the code that writes.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    pub fn last_sync(&self, key: &ObjectKey) -> Option<LastSync> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub fn remember(&self, key: ObjectKey, last: LastSync) {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, last);
    }

    /// Forgets every connector's last sync and every status written: a new leader syncs
    /// everything once, from what the caches show.
    pub fn forget_all(&self) {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.written.forget_all();
    }

    /// Every cached PolicyAccess, each with the status last written to it in this term.
    pub fn accesses(&self) -> Vec<PolicyAccess> {
        let cached = self.caches.accesses();
        self.written.keep_only(&cached);
        cached.iter().map(|pa| self.written.access(pa)).collect()
    }

    /// The object with the status last written to it in this term.
    pub fn access(&self, cached: &PolicyAccess) -> PolicyAccess {
        self.written.access(cached)
    }

    /// The connector with the status last written to it in this term.
    pub fn connector(&self, cached: &ExpensifyConnector) -> ExpensifyConnector {
        self.written.connector(cached)
    }

    /// Patches a PolicyAccess status, provided the object is still as this replica knows
    /// it, and remembers the write (see [`super::cache`]).
    pub async fn write_access_status(
        &self,
        object: &PolicyAccess,
        status: &PolicyAccessStatus,
    ) -> Result<(), KubeCallError> {
        let known = self.written.access(object);
        let version = known.metadata.resource_version.as_deref();
        let now = kube_io::apply_access_status(&self.client, &known, version, status).await?;
        self.written.wrote_access(&known, now, Some(status));
        Ok(())
    }

    /// Patches a connector status, provided the connector is still as this replica knows
    /// it, and remembers the write (see [`super::cache`]).
    pub async fn write_connector_status(
        &self,
        object: &ExpensifyConnector,
        status: &ExpensifyConnectorStatus,
    ) -> Result<(), KubeCallError> {
        let known = self.written.connector(object);
        let version = known.metadata.resource_version.as_deref();
        let now = kube_io::apply_connector_status(&self.client, &known, version, status).await?;
        self.written.wrote_connector(&known, now, Some(status));
        Ok(())
    }

    /// Adds or releases a PolicyAccess finalizer from the object as this replica knows
    /// it, and remembers the version the write left (its status unchanged).
    pub async fn access_finalizer(
        &self,
        object: &PolicyAccess,
        finalizer: &str,
        change: FinalizerChange,
    ) -> Result<(), KubeCallError> {
        let known = self.written.access(object);
        let now = match change {
            FinalizerChange::Ensure => {
                kube_io::ensure_finalizer(&self.client, &known, finalizer).await?
            }
            FinalizerChange::Release => {
                kube_io::release_finalizer(&self.client, &known, finalizer).await?
            }
        };
        self.written
            .wrote_access(&known, now, known.status.as_ref());
        Ok(())
    }

    /// Adds or releases a connector finalizer (see [`Context::access_finalizer`]).
    pub async fn connector_finalizer(
        &self,
        object: &ExpensifyConnector,
        finalizer: &str,
        change: FinalizerChange,
    ) -> Result<(), KubeCallError> {
        let known = self.written.connector(object);
        let now = match change {
            FinalizerChange::Ensure => {
                kube_io::ensure_finalizer(&self.client, &known, finalizer).await?
            }
            FinalizerChange::Release => {
                kube_io::release_finalizer(&self.client, &known, finalizer).await?
            }
        };
        self.written
            .wrote_connector(&known, now, known.status.as_ref());
        Ok(())
    }
}

/// What a finalizer write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerChange {
    Ensure,
    Release,
}
