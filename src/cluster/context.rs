//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::events::Recorder;
use tokio::time::Instant;

use super::cache::{Caches, Remembered, WrittenStatuses};
use super::kube_io::{self, KubeCallError};
use super::leadership::Leadership;
use super::metrics::Metrics;
use crate::api::PolicyAccess;
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

    /// Every cached connector, as the planner sees it (only which exist and what they
    /// allow matters there).
    pub fn connectors(&self) -> Vec<crate::reconcile::model::ConnectorObject> {
        self.caches
            .connectors()
            .iter()
            .map(|c| crate::reconcile::model::ConnectorObject::from_resource(c))
            .collect()
    }

    /// Every cached PolicyAccess, each as this replica knows it.
    pub fn accesses(&self) -> Vec<PolicyAccess> {
        let cached = self.caches.accesses();
        self.written.keep_only(&cached);
        cached
            .iter()
            .map(|pa| self.written.known(pa.as_ref()))
            .collect()
    }

    /// The object as this replica knows it: with the status it last wrote in this term
    /// over a cache that has not caught up yet (see [`super::cache`]).
    pub fn known<K: Remembered>(&self, cached: &K) -> K {
        self.written.known(cached)
    }

    /// Patches a status, provided the object is still as this replica knows it, and
    /// remembers the write.
    pub async fn write_status<K: Remembered>(
        &self,
        object: &K,
        status: &K::Status,
    ) -> Result<(), KubeCallError> {
        let known = self.written.known(object);
        let version = known.meta().resource_version.clone();
        let now = kube_io::apply_status(&self.client, &known, version.as_deref(), status).await?;
        self.written.wrote(&known, now, Some(status));
        Ok(())
    }

    /// Adds or releases a finalizer from the object as this replica knows it, and
    /// remembers the version the write left (its status unchanged).
    pub async fn finalizer<K: Remembered>(
        &self,
        object: &K,
        finalizer: &str,
        change: FinalizerChange,
    ) -> Result<(), KubeCallError> {
        let known = self.written.known(object);
        let now = match change {
            FinalizerChange::Ensure => {
                kube_io::ensure_finalizer(&self.client, &known, finalizer).await?
            }
            FinalizerChange::Release => {
                kube_io::release_finalizer(&self.client, &known, finalizer).await?
            }
        };
        self.written.wrote(&known, now, known.status());
        Ok(())
    }
}

/// What a finalizer write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerChange {
    Ensure,
    Release,
}
