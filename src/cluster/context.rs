//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::events::{EventType, Recorder};
use tokio::time::Instant;

use super::admission::{AdmissionGate, AdmissionSettings};
use super::cache::{Caches, Remembered, WrittenStatuses};
use super::kube_io::{self, KubeCallError, SecretLookup};
use super::leadership::Leadership;
use super::metrics::Metrics;
use crate::api::{AccessDecision, AccessRequest, PolicyAccess, SecretRef};
use crate::expensify::{Credentials, ExpensifyClients};
use crate::reconcile::ObjectKey;

/// The inputs of a connector's last sync, and when the next is due.
#[derive(Debug, Clone)]
pub struct LastSync {
    pub fingerprint: String,
    pub due: Instant,
}

/// One connector's last good credentials: those its last successful sync used, and
/// where they were read from and sent to.
struct HeldCredential {
    endpoint: String,
    secret: String,
    credentials: Credentials,
}

/// The last good credentials of each connector, in memory only (never written, never
/// logged; `Debug` shows which connectors have some, nothing of them). Deleting a
/// namespace deletes its Secret at once while the deletions of its PolicyAccess objects
/// still wait to take back what they gave: those are settled with these.
#[derive(Default)]
pub struct HeldCredentials(Mutex<HashMap<ObjectKey, HeldCredential>>);

impl std::fmt::Debug for HeldCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.lock();
        f.debug_set()
            .entries(held.keys().map(ToString::to_string))
            .finish()
    }
}

impl HeldCredentials {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, HeldCredential>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `credentials`, read from Secret `secret`, as the connector's last good ones
    /// for `endpoint`.
    pub fn remember(
        &self,
        connector: &ObjectKey,
        endpoint: &str,
        secret: &str,
        credentials: Credentials,
    ) {
        let held = HeldCredential {
            endpoint: endpoint.to_string(),
            secret: secret.to_string(),
            credentials,
        };
        self.lock().insert(connector.clone(), held);
    }

    /// The connector's last good credentials, provided its endpoint and Secret are still
    /// the ones they were used with (an edited connector gets nothing).
    pub fn get(&self, connector: &ObjectKey, endpoint: &str, secret: &str) -> Option<Credentials> {
        self.lock()
            .get(connector)
            .filter(|held| held.endpoint == endpoint && held.secret == secret)
            .map(|held| held.credentials.clone())
    }

    pub fn forget(&self, connector: &ObjectKey) {
        self.lock().remove(connector);
    }
}

/// Shared by every reconcile, and their one door to the cluster: every Kubernetes call
/// of a reconcile is a method here (one call into `kube_io` each), so the writes of this
/// term are remembered over a lagging cache.
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
    /// Each connector's last good credentials (see [`HeldCredentials`]).
    pub held_credentials: HeldCredentials,
    /// Whether the identity admission policy is enforced: access requests wait on it.
    admission_gate: AdmissionGate,
    /// Where notifications go (none: Events only).
    pub notifier: Option<crate::notify::Notifier>,
    /// Whether the admission policy that proves who created a decision is in force, when
    /// set (tests); unset, the sync asks [`Self::admission_gate`].
    requests_admission: Option<Result<(), String>>,
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
            admission_gate: AdmissionGate::new(client.clone(), AdmissionSettings::default()),
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
            held_credentials: HeldCredentials::default(),
            notifier: None,
            requests_admission: None,
        }
    }

    /// The same, checking the admission policy and binding named in `settings`.
    pub fn with_admission(mut self, settings: AdmissionSettings) -> Self {
        self.admission_gate = AdmissionGate::new(self.client.clone(), settings);
        self
    }

    /// `admission_gate().check().await` before honouring any access request: it fails
    /// closed, and costs an API call at most once per [`super::admission::RECHECK_AFTER`].
    pub fn admission_gate(&self) -> &AdmissionGate {
        &self.admission_gate
    }

    /// With the admission of access decisions settled to `admission` instead of asked of
    /// the admission gate (tests: the real check needs a cluster's admission policies).
    #[must_use]
    pub fn with_requests_admission(mut self, admission: Result<(), String>) -> Self {
        self.requests_admission = Some(admission);
        self
    }

    /// The admission settled by [`Self::with_requests_admission`], if any.
    pub fn requests_admission(&self) -> Option<&Result<(), String>> {
        self.requests_admission.as_ref()
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

    /// Every cached AccessRequest, each as this replica knows it, and every cached
    /// AccessDecision (their statuses are written by this replica too).
    pub fn requests_and_decisions(&self) -> (Vec<AccessRequest>, Vec<AccessDecision>) {
        let requests = self.caches.requests();
        let decisions = self.caches.decisions();
        self.written.keep_only_requests(&requests, &decisions);
        (
            requests
                .iter()
                .map(|r| self.written.known(r.as_ref()))
                .collect(),
            decisions
                .iter()
                .map(|d| self.written.known(d.as_ref()))
                .collect(),
        )
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

impl Context {
    /// The sender notifications go to.
    pub fn with_notifier(self, notifier: Option<crate::notify::Notifier>) -> Self {
        Self { notifier, ..self }
    }

    /// Reads one key of a Secret (see [`kube_io::read_secret_value`]).
    pub async fn read_secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, KubeCallError> {
        kube_io::read_secret_value(&self.client, namespace, name, key).await
    }

    /// Reads a connector's credentials Secret (see [`kube_io::read_secret`]).
    pub async fn read_secret(
        &self,
        namespace: &str,
        reference: &SecretRef,
    ) -> Result<SecretLookup, KubeCallError> {
        kube_io::read_secret(&self.client, namespace, reference).await
    }

    /// Publishes an Event on an object; a failure is logged, never fatal to a sync.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        kube_io::publish(&self.recorder, object, type_, reason, action, note).await;
    }
}

/// What a finalizer write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerChange {
    Ensure,
    Release,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_credentials_are_kept_per_connector_endpoint_and_secret_and_never_shown() {
        let held = HeldCredentials::default();
        let acme = ObjectKey::new("finance", "acme");
        let credentials = Credentials::new("partner-id", "held-secret-value").unwrap();
        held.remember(&acme, "https://e.example/", "creds", credentials.clone());
        assert_eq!(
            held.get(&acme, "https://e.example/", "creds"),
            Some(credentials)
        );
        assert_eq!(
            held.get(&acme, "https://other.example/", "creds"),
            None,
            "endpoint edited"
        );
        assert_eq!(
            held.get(&acme, "https://e.example/", "renamed"),
            None,
            "Secret renamed"
        );
        assert_eq!(
            held.get(
                &ObjectKey::new("sales", "acme"),
                "https://e.example/",
                "creds"
            ),
            None
        );
        let shown = format!("{held:?}");
        assert!(
            !shown.contains("held-secret-value") && !shown.contains("partner-id"),
            "{shown}"
        );
        assert!(shown.contains("finance/acme"), "{shown}");
        held.forget(&acme);
        assert_eq!(held.get(&acme, "https://e.example/", "creds"), None);
    }
}
