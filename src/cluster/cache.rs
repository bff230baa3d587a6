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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{
    AccessDecision, AccessDecisionStatus, AccessRequest, AccessRequestStatus, ExpensifyConnector,
    ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus,
};
use crate::reconcile::ObjectKey;

/// The reflector stores of every watched scope, and whether they all listed once.
#[derive(Clone)]
pub struct Caches {
    connectors: Vec<Store<ExpensifyConnector>>,
    accesses: Vec<Store<PolicyAccess>>,
    requests: Vec<Store<AccessRequest>>,
    decisions: Vec<Store<AccessDecision>>,
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
            requests: Vec::new(),
            decisions: Vec::new(),
            listed,
        }
    }

    /// With the AccessRequest and AccessDecision stores of every watched scope.
    #[must_use]
    pub fn with_requests(
        mut self,
        requests: Vec<Store<AccessRequest>>,
        decisions: Vec<Store<AccessDecision>>,
    ) -> Self {
        self.requests = requests;
        self.decisions = decisions;
        self
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

    /// Every cached AccessRequest.
    pub fn requests(&self) -> Vec<Arc<AccessRequest>> {
        self.requests.iter().flat_map(Store::state).collect()
    }

    /// Every cached AccessDecision.
    pub fn decisions(&self) -> Vec<Arc<AccessDecision>> {
        self.decisions.iter().flat_map(Store::state).collect()
    }

    /// Every cached connector.
    pub fn connectors(&self) -> Vec<Arc<ExpensifyConnector>> {
        self.connectors.iter().flat_map(Store::state).collect()
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
            .field("request_stores", &self.requests.len())
            .field("decision_stores", &self.decisions.len())
            .field("listed", &*self.listed.borrow())
            .finish()
    }
}

/// One object's last status written by this replica, and the resourceVersions it knows
/// of: `current` (after the write) and those the write made stale.
#[derive(Debug, Clone)]
struct Written<S> {
    uid: String,
    superseded: Vec<String>,
    current: String,
    status: S,
}

/// How many resourceVersions of one object's own writes are remembered.
const SUPERSEDED_KEPT: usize = 16;

/// The statuses this replica wrote in its current term, by object. Every write carries
/// the object's uid and the resourceVersion it was computed from as preconditions, so a
/// write from a stale view is refused by the API server; this log only spares a lagging
/// cache those refusals:
/// - the cache shows a version this replica's own write replaced: the written status,
///   at the version the write left;
/// - the cache shows the version the write left, or any other: the cache.
#[derive(Debug)]
pub struct WrittenLog<S>(Mutex<HashMap<ObjectKey, Written<S>>>);

impl<S> Default for WrittenLog<S> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<S: Clone> WrittenLog<S> {
    /// The status and resourceVersion to use for an object the cache shows at `cached`.
    fn view(&self, key: &ObjectKey, uid: &str, cached: Option<&str>) -> Option<(S, String)> {
        let mut log = lock(&self.0);
        let written = log.get(key)?;
        let same_object = written.uid == uid;
        if same_object && cached.is_some_and(|rv| written.superseded.iter().any(|s| s == rv)) {
            return Some((written.status.clone(), written.current.clone()));
        }
        if same_object && cached == Some(written.current.as_str()) {
            // Caught up: the cache shows this write.
            return None;
        }
        // Recreated, or written by someone else since: the cache says.
        log.remove(key);
        None
    }

    fn wrote(&self, key: ObjectKey, uid: String, sent: Option<&str>, now: String, status: S) {
        let mut log = lock(&self.0);
        let mut superseded = match log.get(&key) {
            Some(earlier) if earlier.uid == uid => {
                let mut superseded = earlier.superseded.clone();
                superseded.push(earlier.current.clone());
                superseded
            }
            _ => Vec::new(),
        };
        if let Some(sent) = sent
            && !superseded.iter().any(|s| s == sent)
        {
            superseded.push(sent.to_string());
        }
        let excess = superseded.len().saturating_sub(SUPERSEDED_KEPT);
        superseded.drain(..excess);
        let written = Written {
            uid,
            superseded,
            current: now,
            status,
        };
        log.insert(key, written);
    }

    fn retain(&self, keep: impl Fn(&ObjectKey) -> bool) {
        lock(&self.0).retain(|key, _| keep(key));
    }

    fn clear(&self) {
        lock(&self.0).clear();
    }
}

/// The statuses this replica wrote in its current term (see [`WrittenLog`]).
#[derive(Debug, Default)]
pub struct WrittenStatuses {
    accesses: WrittenLog<Option<PolicyAccessStatus>>,
    connectors: WrittenLog<Option<ExpensifyConnectorStatus>>,
    requests: WrittenLog<Option<AccessRequestStatus>>,
    decisions: WrittenLog<Option<AccessDecisionStatus>>,
}

fn uid(meta: &ObjectMeta) -> String {
    meta.uid.clone().unwrap_or_default()
}

/// A kind whose status writes this replica remembers: its status, and its log.
pub trait Remembered: super::kube_io::NamespacedObject + serde::Serialize {
    type Status: Clone + serde::Serialize;
    fn status(&self) -> Option<&Self::Status>;
    fn set_status(&mut self, status: Option<Self::Status>);
    fn log(written: &WrittenStatuses) -> &WrittenLog<Option<Self::Status>>;
}

impl Remembered for PolicyAccess {
    type Status = PolicyAccessStatus;
    fn status(&self) -> Option<&PolicyAccessStatus> {
        self.status.as_ref()
    }
    fn set_status(&mut self, status: Option<PolicyAccessStatus>) {
        self.status = status;
    }
    fn log(written: &WrittenStatuses) -> &WrittenLog<Option<PolicyAccessStatus>> {
        &written.accesses
    }
}

impl Remembered for ExpensifyConnector {
    type Status = ExpensifyConnectorStatus;
    fn status(&self) -> Option<&ExpensifyConnectorStatus> {
        self.status.as_ref()
    }
    fn set_status(&mut self, status: Option<ExpensifyConnectorStatus>) {
        self.status = status;
    }
    fn log(written: &WrittenStatuses) -> &WrittenLog<Option<ExpensifyConnectorStatus>> {
        &written.connectors
    }
}

impl Remembered for AccessRequest {
    type Status = AccessRequestStatus;
    fn status(&self) -> Option<&AccessRequestStatus> {
        self.status.as_ref()
    }
    fn set_status(&mut self, status: Option<AccessRequestStatus>) {
        self.status = status;
    }
    fn log(written: &WrittenStatuses) -> &WrittenLog<Option<AccessRequestStatus>> {
        &written.requests
    }
}

impl Remembered for AccessDecision {
    type Status = AccessDecisionStatus;
    fn status(&self) -> Option<&AccessDecisionStatus> {
        self.status.as_ref()
    }
    fn set_status(&mut self, status: Option<AccessDecisionStatus>) {
        self.status = status;
    }
    fn log(written: &WrittenStatuses) -> &WrittenLog<Option<AccessDecisionStatus>> {
        &written.decisions
    }
}

impl WrittenStatuses {
    /// Records a write made from `object` (as known then) that left it at `now` with
    /// `status`.
    pub fn wrote<K: Remembered>(
        &self,
        object: &K,
        now: Option<String>,
        status: Option<&K::Status>,
    ) {
        let Some(now) = now else { return };
        let meta = object.meta();
        let sent = meta.resource_version.as_deref();
        K::log(self).wrote(ObjectKey::of(meta), uid(meta), sent, now, status.cloned());
    }

    /// `object` as this replica knows it: the cache, or its own last write over a cache
    /// that has not caught up with it (see [`WrittenLog`]).
    pub fn known<K: Remembered>(&self, cached: &K) -> K {
        let mut object = cached.clone();
        let meta = cached.meta();
        let key = ObjectKey::of(meta);
        let cached_version = meta.resource_version.as_deref();
        if let Some((status, version)) = K::log(self).view(&key, &uid(meta), cached_version) {
            object.set_status(status);
            object.meta_mut().resource_version = Some(version);
        }
        object
    }

    /// Keeps only the objects still cached: a deleted object's status is not needed.
    pub fn keep_only(&self, cached: &[Arc<PolicyAccess>]) {
        let present: std::collections::HashSet<ObjectKey> = cached
            .iter()
            .map(|pa| ObjectKey::of(&pa.metadata))
            .collect();
        self.accesses.retain(|key| present.contains(key));
    }

    /// [`Self::keep_only`] for the access requests and decisions.
    pub fn keep_only_requests(
        &self,
        requests: &[Arc<AccessRequest>],
        decisions: &[Arc<AccessDecision>],
    ) {
        let keys = |metas: &mut dyn Iterator<Item = &ObjectMeta>| {
            metas
                .map(ObjectKey::of)
                .collect::<std::collections::HashSet<ObjectKey>>()
        };
        let requests = keys(&mut requests.iter().map(|r| &r.metadata));
        let decisions = keys(&mut decisions.iter().map(|d| &d.metadata));
        self.requests.retain(|key| requests.contains(key));
        self.decisions.retain(|key| decisions.contains(key));
    }

    /// A new term: another replica may have written since.
    pub fn forget_all(&self) {
        self.accesses.clear();
        self.connectors.clear();
        self.requests.clear();
        self.decisions.clear();
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

    fn access(uid: &str, version: &str, phase: AccessPhase) -> PolicyAccess {
        let spec: PolicyAccessSpec = serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"}, "policy": {"id": "P1"}, "members": []
        }))
        .unwrap();
        let mut object = PolicyAccess::new("team", spec);
        object.metadata.namespace = Some("finance".into());
        object.metadata.uid = Some(uid.into());
        object.metadata.resource_version = Some(version.into());
        object.status = Some(PolicyAccessStatus {
            phase,
            ..Default::default()
        });
        object
    }

    fn synced() -> PolicyAccessStatus {
        PolicyAccessStatus {
            phase: AccessPhase::Synced,
            ..Default::default()
        }
    }

    fn phase_and_version(object: &PolicyAccess) -> (AccessPhase, String) {
        (
            object.status.clone().unwrap().phase,
            object.metadata.resource_version.clone().unwrap(),
        )
    }

    #[test]
    fn a_lagging_cache_shows_the_status_last_written_at_the_version_it_left() {
        let written = WrittenStatuses::default();
        let cached = access("u1", "10", AccessPhase::Pending);
        written.wrote(&cached, Some("11".into()), Some(&synced()));
        let seen = written.known(&cached);
        assert_eq!(phase_and_version(&seen), (AccessPhase::Synced, "11".into()));
        // A second write from that view; the cache still shows 10, or 11 by now.
        written.wrote(&seen, Some("12".into()), Some(&synced()));
        for lagging in ["10", "11"] {
            let cached = access("u1", lagging, AccessPhase::Pending);
            assert_eq!(
                phase_and_version(&written.known(&cached)),
                (AccessPhase::Synced, "12".into())
            );
        }
    }

    #[test]
    fn a_cache_that_caught_up_or_moved_on_is_believed() {
        let written = WrittenStatuses::default();
        let cached = access("u1", "10", AccessPhase::Pending);
        written.wrote(&cached, Some("11".into()), Some(&synced()));
        let newer = access("u1", "14", AccessPhase::Blocked);
        assert_eq!(
            phase_and_version(&written.known(&newer)),
            (AccessPhase::Blocked, "14".into())
        );
        // Once believed, the write is forgotten: the older cache is not overlaid again.
        assert_eq!(
            phase_and_version(&written.known(&cached)),
            (AccessPhase::Pending, "10".into())
        );
    }

    #[test]
    fn a_recreated_object_does_not_inherit_the_old_status() {
        let written = WrittenStatuses::default();
        written.wrote(
            &access("u1", "10", AccessPhase::Pending),
            Some("11".into()),
            Some(&synced()),
        );
        let recreated = access("u2", "10", AccessPhase::Pending);
        assert_eq!(
            phase_and_version(&written.known(&recreated)).0,
            AccessPhase::Pending
        );
    }

    #[test]
    fn a_new_term_forgets_what_was_written() {
        let written = WrittenStatuses::default();
        let cached = access("u1", "10", AccessPhase::Pending);
        written.wrote(&cached, Some("11".into()), Some(&synced()));
        written.forget_all();
        assert_eq!(
            phase_and_version(&written.known(&cached)).0,
            AccessPhase::Pending
        );
    }
}
