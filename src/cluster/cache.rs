//! What the controller knows without asking the API server: the watch caches (the
//! reflector stores the controllers maintain anyway) and the statuses this replica wrote
//! in its current leadership term.
//!
//! A cache lags behind the writes that caused its next events. A sync that read its own
//! objects' statuses from a lagging cache would see a ledger without the entries it just
//! saved, and its next status write would drop them: what it granted could no longer be
//! taken back. During a term the leader is the only writer of these statuses, so the last
//! status it wrote to an object is that object's status, whatever the cache shows yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::watch;

use crate::api::{ExpensifyConnector, ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus};
use crate::reconcile::ObjectKey;

/// The reflector stores of every watched scope, and whether they all listed once.
#[derive(Clone)]
pub struct Caches {
    connectors: Vec<Store<ExpensifyConnector>>,
    accesses: Vec<Store<PolicyAccess>>,
    listed: watch::Receiver<bool>,
}

impl Caches {
    /// `listed` turns true once every watch behind these stores has listed everything.
    pub fn new(
        connectors: Vec<Store<ExpensifyConnector>>,
        accesses: Vec<Store<PolicyAccess>>,
        listed: watch::Receiver<bool>,
    ) -> Self {
        Self {
            connectors,
            accesses,
            listed,
        }
    }

    /// Waits up to `limit` for every watch's first complete list; `false` if it did not
    /// come. Before it, a cache may miss objects, and an Authoritative object would read
    /// the people of a missing one as extras.
    pub async fn wait_until_listed(&self, limit: Duration) -> bool {
        let mut listed = self.listed.clone();
        matches!(
            tokio::time::timeout(limit, listed.wait_for(|l| *l)).await,
            Ok(Ok(_))
        )
    }

    /// Every cached PolicyAccess.
    pub fn accesses(&self) -> Vec<Arc<PolicyAccess>> {
        self.accesses.iter().flat_map(Store::state).collect()
    }

    /// A cached connector.
    pub fn connector(&self, key: &ObjectKey) -> Option<Arc<ExpensifyConnector>> {
        let reference = ObjectRef::new(&key.name).within(&key.namespace);
        self.connectors.iter().find_map(|s| s.get(&reference))
    }
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("connector_stores", &self.connectors.len())
            .field("access_stores", &self.accesses.len())
            .field("listed", &*self.listed.borrow())
            .finish()
    }
}

/// The statuses this replica wrote in its current term, by object and uid (a recreated
/// object of the same name is another object).
#[derive(Debug, Default)]
pub struct WrittenStatuses {
    accesses: Mutex<HashMap<ObjectKey, (String, PolicyAccessStatus)>>,
    connectors: Mutex<HashMap<ObjectKey, (String, ExpensifyConnectorStatus)>>,
}

fn uid(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.uid.clone().unwrap_or_default()
}

impl WrittenStatuses {
    pub fn wrote_access(&self, object: &PolicyAccess, status: &PolicyAccessStatus) {
        let key = ObjectKey::of(&object.metadata);
        lock(&self.accesses).insert(key, (uid(&object.metadata), status.clone()));
    }

    pub fn wrote_connector(&self, object: &ExpensifyConnector, status: &ExpensifyConnectorStatus) {
        let key = ObjectKey::of(&object.metadata);
        lock(&self.connectors).insert(key, (uid(&object.metadata), status.clone()));
    }

    /// The object with the status last written to it in this term, if any.
    pub fn access(&self, cached: &PolicyAccess) -> PolicyAccess {
        let mut object = cached.clone();
        let key = ObjectKey::of(&cached.metadata);
        if let Some((written_uid, status)) = lock(&self.accesses).get(&key)
            && *written_uid == uid(&cached.metadata)
        {
            object.status = Some(status.clone());
        }
        object
    }

    /// The connector with the status last written to it in this term, if any.
    pub fn connector(&self, cached: &ExpensifyConnector) -> ExpensifyConnector {
        let mut object = cached.clone();
        let key = ObjectKey::of(&cached.metadata);
        if let Some((written_uid, status)) = lock(&self.connectors).get(&key)
            && *written_uid == uid(&cached.metadata)
        {
            object.status = Some(status.clone());
        }
        object
    }

    /// Keeps only the objects still cached: a deleted object's status is not needed.
    pub fn keep_only(&self, cached: &[Arc<PolicyAccess>]) {
        let present: std::collections::HashSet<ObjectKey> = cached
            .iter()
            .map(|pa| ObjectKey::of(&pa.metadata))
            .collect();
        lock(&self.accesses).retain(|key, _| present.contains(key));
    }

    /// A new term: another replica may have written since.
    pub fn forget_all(&self) {
        lock(&self.accesses).clear();
        lock(&self.connectors).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessPhase, PolicyAccessSpec};

    fn access(uid: &str, phase: AccessPhase) -> PolicyAccess {
        let spec: PolicyAccessSpec = serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"}, "policy": {"id": "P1"}, "members": []
        }))
        .unwrap();
        let mut object = PolicyAccess::new("team", spec);
        object.metadata.namespace = Some("finance".into());
        object.metadata.uid = Some(uid.into());
        object.status = Some(PolicyAccessStatus {
            phase,
            ..Default::default()
        });
        object
    }

    #[test]
    fn a_lagging_cache_shows_the_status_last_written() {
        let written = WrittenStatuses::default();
        let cached = access("u1", AccessPhase::Pending);
        let status = PolicyAccessStatus {
            phase: AccessPhase::Synced,
            ..Default::default()
        };
        written.wrote_access(&cached, &status);
        assert_eq!(
            written.access(&cached).status.unwrap().phase,
            AccessPhase::Synced
        );
    }

    #[test]
    fn a_recreated_object_does_not_inherit_the_old_status() {
        let written = WrittenStatuses::default();
        let old = access("u1", AccessPhase::Pending);
        written.wrote_access(
            &old,
            &PolicyAccessStatus {
                phase: AccessPhase::Synced,
                ..Default::default()
            },
        );
        let recreated = access("u2", AccessPhase::Pending);
        assert_eq!(
            written.access(&recreated).status.unwrap().phase,
            AccessPhase::Pending
        );
    }

    #[test]
    fn a_new_term_forgets_what_was_written() {
        let written = WrittenStatuses::default();
        let cached = access("u1", AccessPhase::Pending);
        written.wrote_access(
            &cached,
            &PolicyAccessStatus {
                phase: AccessPhase::Synced,
                ..Default::default()
            },
        );
        written.forget_all();
        assert_eq!(
            written.access(&cached).status.unwrap().phase,
            AccessPhase::Pending
        );
    }
}
