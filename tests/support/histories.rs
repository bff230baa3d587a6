//! Histories with access requests, for the return-to-origin property test: whole states,
//! not menus of actions. A history holds each PolicyAccess object's whole spec at every
//! step (kept, replaced or deleted) and each access request's whole life (what it asks,
//! the step it is created and the step it is deleted, the decisions made on it and when),
//! and how far the clock moves before each step. Each step runs through `sync::sync`, the
//! sync both modes call, against the simulator, at the history's clock, with the
//! statuses fed back as a mode's store keeps them (a deleted object stays, being deleted,
//! until its sync says its deletion finished). File mode's and the cluster's own runners
//! read the wall clock, so they cannot let hours pass between two steps; this is why the
//! histories drive the sync itself.
//!
//! A [`Model`] knows only what the contract allows, and after every step checks:
//! - nobody on a policy at the start is revoked unless an Authoritative object governed
//!   that policy while nobody (member or active request) asked for them;
//! - protected people (policy owner, `adminEmail`, `protectedEmails`) never change;
//! - a request never grants beyond its rules: an `Active` request is allowed by its rules
//!   now (role, duration, reason, its PolicyAccess taking requests and not ObserveOnly or
//!   suspended, the person not protected), was approved (the merge, or enough distinct
//!   valid approvals), and cannot outlive `created + pendingTimeout + duration`; every
//!   role on Expensify that differs from the start is one a member ever asked for there
//!   or one a request that may hold now asks for (or one an active request held there,
//!   while an object is suspended or Blocked and so freezes its entries; an ObserveOnly
//!   object keeps a raise only if it lists the person at that role, a member's role, and
//!   keeps a person a request added, at the role the request set, while it lists them);
//! - a request's end takes nothing another holder still asks for: whoever was on a policy
//!   before the step and is still asked for there (a member not expired, an active
//!   request) is still there, not below what objects that write and active requests ask
//!   (unless members disagree; suspended, ObserveOnly and Blocked objects keep the person
//!   but not a raise they do not list);
//! - an ended request stays ended; an active one ends at `grantedAt + duration`;
//! - the simulator never refuses a request for its rate windows.
//!
//! At the end the clock passes every end, then every request and object is deleted:
//! Expensify must be exactly as it started, except Authoritative extras, and nothing may
//! still hold an entry.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use expensify_operator::api::{
    AccessDecision, AccessRequest, AccessRequestStatus, ConnectorPhase, DecisionKind,
    ExpensifyConnector, ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus, RequestPhase,
};
use expensify_operator::expensify::{Credentials, ExpensifyClients};
use expensify_operator::reconcile::{
    AccessObject, Approval, ConnectorObject, DecisionObject, ObjectKey, RequestObject, Requests,
    Scope,
};
use expensify_operator::simulator::SimulatorHandle;
use expensify_operator::sync::{Store, SyncReport, SyncRequest, WriteAhead, WriteRefused, sync};
use futures::future::BoxFuture;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::origin::{
    ADMIN_EMAIL, CONNECTOR_NAMESPACE, Mode, POLICIES, PROTECTED, Role, State, changes,
    connector_yaml, differences_from_origin, failure_text, is_protected, paced_clients,
    rate_problem, snapshot, start_simulator,
};
use super::{ADMIN_ID, ADMIN_SECRET};

/// People a member or a request may name. The first [`ORDINARY`] are ordinary (two nobody
/// has yet, four already on some policies); the rest are protected.
pub const PEOPLE: [&str; 9] = [
    "new1@corp.example",
    "new2@corp.example",
    "pat@corp.example",
    "bob@corp.example",
    "aud@corp.example",
    "carl@corp.example",
    PROTECTED,
    ADMIN_EMAIL,
    "owner-a@corp.example",
];
pub const ORDINARY: usize = 6;
/// The approvers every rule names (never on a policy, never asked for).
pub const LEAD1: &str = "lead1@corp.example";
pub const LEAD2: &str = "lead2@corp.example";
/// Someone who is no approver.
pub const STRANGER: &str = "eve@corp.example";
/// PolicyAccess objects `pa0`, `pa1`, in the connector's namespace.
pub const ACCESS_SLOTS: usize = 2;
/// Access requests `r0`..`r2`.
pub const REQUEST_SLOTS: usize = 3;
pub const MAX_STEPS: usize = 6;
/// Where the history's clock starts; times in a history are minutes after it.
const BASE: &str = "2026-03-01T00:00:00Z";
/// The pending timeout when the rules name none (the contract's default, 24h).
pub const DEFAULT_PENDING_MINUTES: i64 = 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub role: Role,
    /// `expiresAt`, in minutes after the start; `None`: no end.
    pub until: Option<i64>,
}

/// `spec.requests` of a PolicyAccess (approvers: always [`LEAD1`] and [`LEAD2`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub roles: Vec<Role>,
    pub max_minutes: i64,
    pub require_reason: bool,
    pub approvals: u8,
    /// `None`: the default (24h).
    pub pending_minutes: Option<i64>,
}

impl Rules {
    /// Whether the rules allow what `ask` asks (role, duration, reason).
    fn allow(&self, ask: &Ask) -> bool {
        self.roles.contains(&ask.role)
            && ask.minutes <= self.max_minutes
            && (ask.reason || !self.require_reason)
    }
}

/// One PolicyAccess object's whole spec (namespace `ops`, connector `corp`, `Revoke`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub policy: usize,
    pub mode: Mode,
    pub suspend: bool,
    /// Index in [`PEOPLE`] -> member.
    pub members: BTreeMap<usize, Member>,
    pub rules: Option<Rules>,
}

impl Access {
    /// It keeps the people it lists but writes nothing for them (suspended, ObserveOnly).
    fn keeps_without_writing(&self) -> bool {
        self.suspend || self.mode == Mode::ObserveOnly
    }

    fn spec_json(&self) -> Value {
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|(person, m)| {
                let mut member = json!({"email": PEOPLE[*person], "role": m.role.as_str()});
                if let Some(until) = m.until {
                    member["expiresAt"] = json!(at(until).to_string());
                }
                member
            })
            .collect();
        let mut spec = json!({
            "connectorRef": {"name": "corp"},
            "policy": {"id": POLICIES[self.policy].0},
            "mode": format!("{:?}", self.mode),
            "deletionPolicy": "Revoke",
            "suspend": self.suspend,
            "members": members,
        });
        if let Some(rules) = &self.rules {
            let roles: Vec<&str> = rules.roles.iter().map(|r| r.as_str()).collect();
            spec["requests"] = json!({
                "roles": roles,
                "maxDuration": format!("{}m", rules.max_minutes),
                "requireReason": rules.require_reason,
                "approvals": rules.approvals,
                "approvers": [LEAD1, LEAD2],
            });
            if let Some(pending) = rules.pending_minutes {
                spec["requests"]["pendingTimeout"] = json!(format!("{pending}m"));
            }
        }
        spec
    }

    fn describe(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|(p, m)| {
                let until = m.until.map(|u| format!(" until {u}m")).unwrap_or_default();
                format!("{}:{}{until}", short(PEOPLE[*p]), m.role.as_str())
            })
            .collect();
        let rules = match &self.rules {
            None => "no requests".to_string(),
            Some(r) => format!(
                "requests {}≤{}m{} {} approval(s){}",
                r.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join("/"),
                r.max_minutes,
                if r.require_reason { " reason" } else { "" },
                r.approvals,
                r.pending_minutes
                    .map(|p| format!(" pending {p}m"))
                    .unwrap_or_default()
            ),
        };
        format!(
            "{} {:?}{} [{}] {rules}",
            POLICIES[self.policy].1,
            self.mode,
            if self.suspend { " suspended" } else { "" },
            members.join(", ")
        )
    }
}

/// What happens to a PolicyAccess slot at a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Keep,
    Delete,
    Put(Access),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// The person who gets access asks for themselves.
    Person,
    /// An approver asks for them (and so cannot approve it).
    Lead1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider {
    Lead1,
    Lead2,
    Requester,
    Person,
    Stranger,
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The PolicyAccess slot its `accessRef` names.
    pub access: usize,
    pub person: usize,
    pub role: Role,
    pub minutes: i64,
    pub reason: bool,
    pub requester: Requester,
}

impl Ask {
    fn requester(&self) -> &'static str {
        match self.requester {
            Requester::Person => PEOPLE[self.person],
            Requester::Lead1 => LEAD1,
        }
    }

    fn decider(&self, by: Decider) -> &'static str {
        match by {
            Decider::Lead1 => LEAD1,
            Decider::Lead2 => LEAD2,
            Decider::Requester => self.requester(),
            Decider::Person => PEOPLE[self.person],
            Decider::Stranger => STRANGER,
        }
    }
}

/// A decision made `after` steps after its request was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub after: usize,
    pub by: Decider,
    pub kind: DecisionKind,
}

/// One request's whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Life {
    pub ask: Ask,
    /// The step it is created at.
    pub born: usize,
    /// Deleted this many steps after it was created (`None`: it stays).
    pub deleted_after: Option<usize>,
    pub decisions: Vec<Decision>,
}

impl Life {
    fn alive(&self, step: usize) -> bool {
        step >= self.born && self.deleted_after.is_none_or(|d| step < self.born + d)
    }

    fn decisions_by(&self, step: usize) -> impl Iterator<Item = &Decision> {
        self.decisions
            .iter()
            .filter(move |d| step >= self.born && self.born + d.after <= step)
    }

    fn describe(&self) -> String {
        let a = &self.ask;
        let decisions: Vec<String> = self
            .decisions
            .iter()
            .map(|d| format!("{:?} by {:?} at +{}", d.kind, d.by, d.after))
            .collect();
        format!(
            "pa{} {} as {} for {}m{}{} from step {}{}{}",
            a.access,
            short(PEOPLE[a.person]),
            a.role.as_str(),
            a.minutes,
            if a.reason { "" } else { " without reason" },
            match a.requester {
                Requester::Person => "",
                Requester::Lead1 => " asked by lead1",
            },
            self.born + 1,
            self.deleted_after
                .map(|d| format!(", deleted at step {}", self.born + d + 1))
                .unwrap_or_default(),
            if decisions.is_empty() {
                String::new()
            } else {
                format!(", decisions: {}", decisions.join("; "))
            }
        )
    }
}

/// How requests are approved: file mode's merge, or the cluster's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approving {
    Merge,
    Decisions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Minutes the clock moves before this step's sync.
    pub advance: i64,
    pub accesses: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub approving: Approving,
    pub steps: Vec<Step>,
    pub lives: Vec<Option<Life>>,
}

fn short(email: &str) -> &str {
    email.split('@').next().unwrap_or(email)
}

/// The moment `minutes` after the start.
fn at(minutes: i64) -> Timestamp {
    let base: Timestamp = BASE.parse().unwrap_or(Timestamp::UNIX_EPOCH);
    base + SignedDuration::from_mins(minutes)
}

fn request_name(slot: usize) -> String {
    format!("r{slot}")
}

fn access_key(slot: usize) -> ObjectKey {
    ObjectKey::new(CONNECTOR_NAMESPACE, format!("pa{slot}"))
}

fn request_key(slot: usize) -> ObjectKey {
    ObjectKey::new(CONNECTOR_NAMESPACE, request_name(slot))
}

/// Each slot's spec at every step (`None`: no such object).
fn access_states(history: &History) -> Vec<Vec<Option<Access>>> {
    let mut now: Vec<Option<Access>> = vec![None; ACCESS_SLOTS];
    history
        .steps
        .iter()
        .map(|step| {
            for (slot, change) in step.accesses.iter().enumerate().take(ACCESS_SLOTS) {
                match change {
                    Change::Keep => {}
                    Change::Delete => now[slot] = None,
                    Change::Put(access) => now[slot] = Some(access.clone()),
                }
            }
            now.clone()
        })
        .collect()
}

/// A mode's store, in memory: credentials, and the statuses the write-ahead saves.
#[derive(Debug, Default)]
struct MemoryStore {
    saved: Mutex<Saved>,
}

#[derive(Debug, Default)]
struct Saved {
    accesses: BTreeMap<ObjectKey, PolicyAccessStatus>,
    requests: BTreeMap<ObjectKey, AccessRequestStatus>,
    connector: Option<ExpensifyConnectorStatus>,
}

impl WriteAhead for MemoryStore {
    fn save<'a>(
        &'a self,
        statuses: &'a BTreeMap<ObjectKey, PolicyAccessStatus>,
        requests: &'a BTreeMap<ObjectKey, AccessRequestStatus>,
        connector: Option<&'a ExpensifyConnectorStatus>,
    ) -> BoxFuture<'a, Result<(), WriteRefused>> {
        let saved = match self.saved.lock() {
            Ok(mut saved) => {
                saved.accesses.extend(
                    statuses
                        .iter()
                        .filter(|(key, _)| key.request_name().is_none())
                        .map(|(k, s)| (k.clone(), s.clone())),
                );
                saved
                    .requests
                    .extend(requests.iter().map(|(k, s)| (k.clone(), s.clone())));
                if let Some(connector) = connector {
                    saved.connector = Some(connector.clone());
                }
                Ok(())
            }
            Err(_) => Err(WriteRefused("the test store's lock is poisoned".into())),
        };
        Box::pin(std::future::ready(saved))
    }
}

impl Store for MemoryStore {
    fn credentials<'a>(
        &'a self,
        _connector: &'a ConnectorObject,
    ) -> BoxFuture<'a, Result<Credentials, String>> {
        Box::pin(std::future::ready(
            Credentials::new(ADMIN_ID, ADMIN_SECRET).map_err(|e| e.to_string()),
        ))
    }

    fn save_connector_status<'a>(
        &'a self,
        _connector: &'a ConnectorObject,
        status: &'a ExpensifyConnectorStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        let saved = match self.saved.lock() {
            Ok(mut saved) => {
                saved.connector = Some(status.clone());
                Ok(())
            }
            Err(_) => Err("the test store's lock is poisoned".to_string()),
        };
        Box::pin(std::future::ready(saved))
    }
}

/// The objects a step shows the sync, built as the API server or the loader would.
struct Objects {
    accesses: Vec<AccessObject>,
    requests: Vec<RequestObject>,
    decisions: Vec<DecisionObject>,
}

/// The sync of one history: the connector, what each object last saved, and which
/// deleted objects are still being deleted.
struct Driver {
    clients: Arc<ExpensifyClients>,
    connector: ConnectorObject,
    store: MemoryStore,
    /// The last spec each PolicyAccess slot had, its generation and creation time.
    accesses: BTreeMap<usize, (Access, i64, i64)>,
    /// PolicyAccess slots deleted whose deletion has not finished.
    deleting: BTreeSet<usize>,
    /// Request slots whose deletion finished: no longer shown.
    gone: BTreeSet<usize>,
}

impl Driver {
    fn start(sim: &SimulatorHandle) -> Result<Driver, String> {
        let resource: ExpensifyConnector = serde_saphyr::from_str(&connector_yaml(&sim.endpoint()))
            .map_err(|e| format!("the connector manifest: {e}"))?;
        let mut connector = ConnectorObject::from_resource(&resource);
        connector.generation = Some(1);
        Ok(Driver {
            clients: paced_clients(sim),
            connector,
            store: MemoryStore::default(),
            accesses: BTreeMap::new(),
            deleting: BTreeSet::new(),
            gone: BTreeSet::new(),
        })
    }

    fn saved_access(&self, key: &ObjectKey) -> Option<PolicyAccessStatus> {
        self.store.saved.lock().ok()?.accesses.get(key).cloned()
    }

    fn saved_request(&self, key: &ObjectKey) -> Option<AccessRequestStatus> {
        self.store.saved.lock().ok()?.requests.get(key).cloned()
    }

    /// Records this step's PolicyAccess specs (a changed spec is a new generation) and
    /// builds the objects, deleted ones included while their deletion waits.
    fn objects(
        &mut self,
        history: &History,
        step: usize,
        accesses: &[Option<Access>],
        minute: i64,
    ) -> Result<Objects, String> {
        let mut objects = Objects {
            accesses: Vec::new(),
            requests: Vec::new(),
            decisions: Vec::new(),
        };
        for (slot, access) in accesses.iter().enumerate() {
            match access {
                Some(access) => {
                    self.deleting.remove(&slot);
                    let entry = self
                        .accesses
                        .entry(slot)
                        .or_insert((access.clone(), 1, minute));
                    if entry.0 != *access {
                        *entry = (access.clone(), entry.1 + 1, entry.2);
                    }
                }
                None if self.accesses.contains_key(&slot) => {
                    self.deleting.insert(slot);
                }
                None => {}
            }
        }
        for (slot, (access, generation, created)) in &self.accesses {
            let deleting = self.deleting.contains(slot);
            let key = access_key(*slot);
            let mut metadata = json!({
                "name": key.name, "namespace": key.namespace, "generation": generation,
                "creationTimestamp": at(*created).to_string(),
            });
            if deleting {
                metadata["deletionTimestamp"] = json!(at(minute).to_string());
                metadata["finalizers"] = json!(["expensify.gitops.dev/revoke"]);
            }
            let resource: PolicyAccess = serde_json::from_value(json!({
                "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
                "metadata": metadata, "spec": access.spec_json(),
            }))
            .map_err(|e| format!("{key}: {e}"))?;
            let mut object = AccessObject::from_resource(&resource);
            object.status = self.saved_access(&key);
            objects.accesses.push(object);
        }
        let born_at = born_minutes(history);
        for (slot, life) in history.lives.iter().enumerate() {
            let Some(life) = life else { continue };
            if step < life.born || self.gone.contains(&slot) {
                continue;
            }
            let key = request_key(slot);
            let created = born_at.get(&slot).copied().unwrap_or(minute);
            let mut metadata = json!({
                "name": key.name, "namespace": key.namespace, "generation": 1,
                "creationTimestamp": at(created).to_string(),
            });
            if !life.alive(step) {
                metadata["deletionTimestamp"] = json!(at(minute).to_string());
                metadata["finalizers"] = json!(["expensify.gitops.dev/revoke"]);
            }
            let ask = &life.ask;
            let mut spec = json!({
                "accessRef": {"name": access_key(ask.access).name},
                "email": PEOPLE[ask.person], "role": ask.role.as_str(),
                "duration": format!("{}m", ask.minutes), "requester": ask.requester(),
            });
            if ask.reason {
                spec["reason"] = json!("month-end close");
            }
            let resource: AccessRequest = serde_json::from_value(json!({
                "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
                "metadata": metadata, "spec": spec,
            }))
            .map_err(|e| format!("{key}: {e}"))?;
            let mut object = RequestObject::from_resource(&resource);
            object.status = self.saved_request(&key);
            objects.requests.push(object);
            for (i, decision) in life.decisions.iter().enumerate() {
                if life.born + decision.after > step {
                    continue;
                }
                let made = step_minutes(history, life.born + decision.after);
                let resource: AccessDecision = serde_json::from_value(json!({
                    "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessDecision",
                    "metadata": {"name": format!("{}-d{i}", key.name), "namespace": key.namespace,
                                 "creationTimestamp": at(made).to_string()},
                    "spec": {"requestRef": {"name": key.name}, "decision": decision.kind,
                             "decidedBy": ask.decider(decision.by)},
                }))
                .map_err(|e| format!("{key} decision {i}: {e}"))?;
                objects
                    .decisions
                    .push(DecisionObject::from_resource(&resource));
            }
        }
        Ok(objects)
    }

    /// One sync at `minute`, its statuses kept as a store keeps them.
    async fn sync(
        &mut self,
        history: &History,
        objects: &Objects,
        minute: i64,
    ) -> Result<SyncReport, String> {
        let connectors = [self.connector.clone()];
        let request = SyncRequest {
            connector: &self.connector,
            connectors: &connectors,
            accesses: &objects.accesses,
            now: at(minute),
            inventory_complete: true,
            scope: Scope::Everything,
            unverified: &[],
            requests: Requests {
                requests: &objects.requests,
                decisions: &objects.decisions,
                approval: match history.approving {
                    Approving::Merge => Approval::Merge,
                    Approving::Decisions => Approval::Decisions(Ok(())),
                },
            },
            dry_run: false,
            write_ahead: None,
            reviewed: None,
        };
        let report = sync(request, &self.clients, &self.store).await;
        if report.connector_status.phase != ConnectorPhase::Connected {
            return Err(format!(
                "the connector did not connect: {:?}",
                report.connector_status.message
            ));
        }
        self.connector.status = Some(report.connector_status.clone());
        let mut saved = self
            .store
            .saved
            .lock()
            .map_err(|_| "the test store's lock is poisoned".to_string())?;
        for (key, status) in report.statuses_in_save_order() {
            if key.request_name().is_none() {
                saved.accesses.insert(key.clone(), status.clone());
            }
        }
        for (key, status) in &report.request_statuses {
            saved.requests.insert(key.clone(), status.clone());
        }
        for key in &report.finished_deletions {
            saved.accesses.remove(key);
            if let Some(slot) = (0..ACCESS_SLOTS).find(|s| access_key(*s) == *key) {
                self.accesses.remove(&slot);
                self.deleting.remove(&slot);
            }
        }
        for key in &report.finished_request_deletions {
            if let Some(slot) = (0..REQUEST_SLOTS).find(|s| request_key(*s) == *key) {
                self.gone.insert(slot);
            }
        }
        Ok(report)
    }
}

/// The clock (minutes after the start) at each step's sync.
fn step_minutes(history: &History, step: usize) -> i64 {
    history.steps.iter().take(step + 1).map(|s| s.advance).sum()
}

/// Each request's creation time.
fn born_minutes(history: &History) -> BTreeMap<usize, i64> {
    history
        .lives
        .iter()
        .enumerate()
        .filter_map(|(slot, life)| Some((slot, step_minutes(history, life.as_ref()?.born))))
        .collect()
}

/// What the contract allows, learned from the history so far.
#[derive(Debug, Default)]
struct Model {
    /// (policy, email) -> every role a member ever asked for them there.
    member_roles: BTreeMap<(usize, String), BTreeSet<Role>>,
    /// (policy, email, role) an active request ever held: a suspended object may keep
    /// such a role frozen in an entry it holds.
    request_roles: BTreeSet<(usize, String, Role)>,
    /// Request slots whose approval was complete at some step so far.
    approved: BTreeSet<usize>,
    /// (policy, email) an Authoritative object may have removed as an extra.
    removable: BTreeSet<(usize, String)>,
    /// Each request's phase after the last sync.
    phases: BTreeMap<usize, RequestPhase>,
    /// Access slot -> every policy its objects have been on: a suspended object freezes
    /// the entries it holds on any of them, not only on its policy now.
    visited: BTreeMap<usize, BTreeSet<usize>>,
}

/// One step as the model sees it.
struct Now<'a> {
    history: &'a History,
    step: usize,
    minute: i64,
    accesses: &'a [Option<Access>],
}

impl Now<'_> {
    fn access(&self, slot: usize) -> Option<&Access> {
        self.accesses.get(slot).and_then(Option::as_ref)
    }

    /// The roles members of objects alive now ask for `email` on `policy` (any mode,
    /// suspended or not: they all count as asking).
    fn member_asks(&self, policy: usize, email: &str) -> Vec<Role> {
        self.asks_among(policy, email, |_| true)
    }

    /// The roles members not expired ask for `email` on `policy`, of the objects alive now
    /// that `among` keeps.
    fn asks_among(&self, policy: usize, email: &str, among: impl Fn(&Access) -> bool) -> Vec<Role> {
        self.accesses
            .iter()
            .flatten()
            .filter(|a| a.policy == policy && among(a))
            .flat_map(|a| a.members.iter())
            .filter(|(p, m)| PEOPLE[**p] == email && m.until.is_none_or(|u| u > self.minute))
            .map(|(_, m)| m.role)
            .collect()
    }

    /// The roles members of objects that write now ask for `email` on `policy`: not
    /// suspended, not ObserveOnly, and not one of two Authoritative objects on the policy
    /// (the newer is Blocked; which one that is, the model does not track). The others
    /// keep the person but write nothing: see [`Now::only_keeping_asks`].
    fn writing_member_asks(&self, policy: usize, email: &str) -> Vec<Role> {
        let authoritative = self
            .accesses
            .iter()
            .flatten()
            .filter(|a| a.policy == policy && a.mode == Mode::Authoritative)
            .count();
        self.asks_among(policy, email, |a| {
            !a.keeps_without_writing() && (a.mode != Mode::Authoritative || authoritative < 2)
        })
    }

    /// The roles members of objects that keep the person but write nothing ask for
    /// `email` on `policy` (suspended or ObserveOnly), and whether those are all that ask:
    /// none of two Authoritative objects on the policy (one of them writes; which one,
    /// the model does not track) nor any object that writes lists them.
    fn only_keeping_asks(&self, policy: usize, email: &str) -> Option<Vec<Role>> {
        self.asks_among(policy, email, |a| !a.keeps_without_writing())
            .is_empty()
            .then(|| self.asks_among(policy, email, Access::keeps_without_writing))
    }

    /// Whether an object that keeps the person but writes nothing (suspended or
    /// ObserveOnly) lists `email` on `policy` at `role` or above: a role a request set is
    /// kept for it when the request ends (it never raises, and takes back only what it
    /// does not list).
    fn kept_at_least(&self, policy: usize, email: &str, role: Role) -> bool {
        self.asks_among(policy, email, Access::keeps_without_writing)
            .iter()
            .any(|listed| *listed >= role)
    }

    /// Whether the request's approval is complete now, under its rules now.
    fn approval_complete(&self, life: &Life) -> bool {
        let Some(rules) = self.access(life.ask.access).and_then(|a| a.rules.as_ref()) else {
            return false;
        };
        match self.history.approving {
            Approving::Merge => true,
            Approving::Decisions => {
                let ask = &life.ask;
                let approvers: BTreeSet<&str> = life
                    .decisions_by(self.step)
                    .filter(|d| d.kind == DecisionKind::Approve)
                    .map(|d| ask.decider(d.by))
                    .filter(|by| {
                        [LEAD1, LEAD2].contains(by)
                            && *by != ask.requester()
                            && *by != PEOPLE[ask.person]
                    })
                    .collect();
                approvers.len() >= usize::from(rules.approvals)
            }
        }
    }

    /// Whether request `slot` may be Active now: alive, allowed by its rules now, and
    /// approved at some step (its time is judged from its status: see `check_requests`).
    fn may_hold(&self, model: &Model, slot: usize) -> Option<(usize, String, Role)> {
        let life = self.history.lives.get(slot)?.as_ref()?;
        let ask = &life.ask;
        let access = self.access(ask.access)?;
        let rules = access.rules.as_ref()?;
        let email = PEOPLE[ask.person];
        let allowed = life.alive(self.step)
            && access.mode != Mode::ObserveOnly
            && !access.suspend
            && rules.allow(ask)
            && !is_protected(access.policy, email)
            && model.approved.contains(&slot);
        allowed.then(|| (access.policy, email.to_string(), ask.role))
    }

    /// The request's pending deadline under its rules now, in minutes after the start.
    fn pending_deadline(&self, slot: usize) -> Option<i64> {
        let life = self.history.lives.get(slot)?.as_ref()?;
        let rules = self.access(life.ask.access)?.rules.as_ref()?;
        let created = step_minutes(self.history, life.born);
        Some(created + rules.pending_minutes.unwrap_or(DEFAULT_PENDING_MINUTES))
    }
}

impl Model {
    /// Before the sync: what the history makes known at this step.
    fn learn(&mut self, now: &Now<'_>) {
        for access in now.accesses.iter().flatten() {
            for (person, member) in &access.members {
                self.member_roles
                    .entry((access.policy, PEOPLE[*person].to_string()))
                    .or_default()
                    .insert(member.role);
            }
        }
        for (slot, life) in now.history.lives.iter().enumerate() {
            if let Some(life) = life
                && life.alive(now.step)
                && now.approval_complete(life)
            {
                self.approved.insert(slot);
            }
        }
    }

    /// After the sync: the requests it reports Active, by slot, with (policy, email, role).
    fn active(
        now: &Now<'_>,
        report: &SyncReport,
    ) -> BTreeMap<usize, (Option<usize>, String, Role)> {
        (0..REQUEST_SLOTS)
            .filter_map(|slot| {
                let status = report.request_statuses.get(&request_key(slot))?;
                if status.phase != RequestPhase::Active {
                    return None;
                }
                let ask = &now.history.lives.get(slot)?.as_ref()?.ask;
                let policy = now.access(ask.access).map(|a| a.policy);
                Some((slot, (policy, PEOPLE[ask.person].to_string(), ask.role)))
            })
            .collect()
    }

    /// After the sync: the people an Authoritative object could remove in it (on its
    /// policy, not protected, asked for by no member and no active request).
    fn note_extras(&mut self, now: &Now<'_>, before: &State, report: &SyncReport) {
        let active = Model::active(now, report);
        for (policy, roster) in before {
            let governed = now
                .accesses
                .iter()
                .flatten()
                .any(|a| a.policy == *policy && a.mode == Mode::Authoritative && !a.suspend);
            if !governed {
                continue;
            }
            for email in roster.keys() {
                let asked = !now.member_asks(*policy, email).is_empty()
                    || active
                        .values()
                        .any(|(p, e, _)| *p == Some(*policy) && e == email);
                if !asked && !is_protected(*policy, email) {
                    self.removable.insert((*policy, email.clone()));
                }
            }
        }
    }

    /// The invariants after a step's sync.
    fn check(
        &mut self,
        now: &Now<'_>,
        (origin, before, after): (&State, &State, &State),
        report: &SyncReport,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (slot, access) in now.accesses.iter().enumerate() {
            if let Some(access) = access {
                self.visited.entry(slot).or_default().insert(access.policy);
            }
        }
        self.check_requests(now, report, &mut problems);
        // What requests may hold after this sync: reported Active and allowed.
        let active = Model::active(now, report);
        let holding: Vec<(usize, String, Role)> = (0..REQUEST_SLOTS)
            .filter(|slot| active.contains_key(slot))
            .filter_map(|slot| now.may_hold(self, slot))
            .collect();
        self.request_roles.extend(holding.iter().cloned());
        // A suspended object, and the newer of two Authoritative objects on one policy
        // (Blocked), freeze their entries, with whatever role they recorded.
        let alive: Vec<&Access> = now.accesses.iter().flatten().collect();
        let visited = &self.visited;
        let frozen = |policy: usize| {
            now.accesses.iter().enumerate().any(|(slot, a)| {
                a.as_ref().is_some_and(|a| a.suspend)
                    && visited
                        .get(&slot)
                        .is_some_and(|seen| seen.contains(&policy))
            }) || alive.iter().enumerate().any(|(i, a)| {
                a.mode == Mode::Authoritative
                    && a.policy == policy
                    && alive[i + 1..]
                        .iter()
                        .any(|b| b.mode == Mode::Authoritative && b.policy == a.policy)
            })
        };
        for (policy, start) in origin {
            let name = POLICIES[*policy].1;
            let current = &after[policy];
            let explained = |email: &str, role: &str| {
                Role::parse(role).is_some_and(|role| {
                    self.member_roles
                        .get(&(*policy, email.to_string()))
                        .is_some_and(|roles| roles.contains(&role))
                        || holding
                            .iter()
                            .any(|(p, e, r)| p == policy && e == email && *r == role)
                        || ((frozen(*policy) || now.kept_at_least(*policy, email, role))
                            && self
                                .request_roles
                                .contains(&(*policy, email.to_string(), role)))
                })
            };
            for (email, role) in start {
                let now_role = current.get(email);
                if is_protected(*policy, email) {
                    if now_role != Some(role) {
                        problems.push(format!(
                            "protected {email} on {name} changed: {role} -> {}",
                            now_role.map_or("(gone)", String::as_str)
                        ));
                    }
                    continue;
                }
                match now_role {
                    None if !self.removable.contains(&(*policy, email.clone())) => {
                        problems.push(format!(
                            "{email} was on {name} before the operator and was revoked, but was never an Authoritative extra"
                        ));
                    }
                    Some(now_role) if now_role != role && !explained(email, now_role) => {
                        problems.push(format!(
                            "{email} on {name} was {role} before the operator and is now {now_role}: no member asked for that and no request that may hold now does"
                        ));
                    }
                    _ => {}
                }
            }
            for (email, role) in current {
                if start.contains_key(email) {
                    continue;
                }
                if is_protected(*policy, email) {
                    problems.push(format!("protected {email} appeared on {name} as {role}"));
                } else if !explained(email, role) {
                    problems.push(format!(
                        "{email} is on {name} as {role}: no member asked for that and no request that may hold now does"
                    ));
                }
            }
            problems.extend(Model::check_still_asked(
                now,
                *policy,
                (before, after),
                report,
            ));
        }
        problems
    }

    /// Phases: an Active request may hold; an ended one stays ended; an active one ends
    /// at `grantedAt + duration`.
    fn check_requests(&mut self, now: &Now<'_>, report: &SyncReport, problems: &mut Vec<String>) {
        for slot in 0..REQUEST_SLOTS {
            let Some(status) = report.request_statuses.get(&request_key(slot)) else {
                continue;
            };
            let Some(Some(life)) = now.history.lives.get(slot) else {
                continue;
            };
            let was = self.phases.insert(slot, status.phase);
            if let Some(was) = was
                && was.is_final()
                && status.phase != was
            {
                problems.push(format!(
                    "r{slot} was {was} and is now {}: an ended request never comes back",
                    status.phase
                ));
            }
            if status.phase == RequestPhase::Pending
                && let Some(deadline) = now.pending_deadline(slot)
                && deadline <= now.minute
            {
                problems.push(format!(
                    "r{slot} is still Pending at {}m, past its pendingTimeout ({deadline}m)",
                    now.minute
                ));
            }
            if status.phase != RequestPhase::Active {
                continue;
            }
            if now.may_hold(self, slot).is_none() {
                problems.push(format!(
                    "r{slot} is Active but its rules, approvals or time do not allow it ({}): {:?}",
                    life.describe(),
                    status.message
                ));
            }
            let granted = status.granted_at.as_ref().map(|t| t.0);
            let expires = status.expires_at.as_ref().map(|t| t.0);
            // Active before its grant landed (the person held where it cannot raise them)
            // holds nothing yet: its clock has not started.
            match (granted, expires) {
                (None, None) => {}
                (Some(granted), Some(expires)) => {
                    if expires != granted + SignedDuration::from_mins(life.ask.minutes) {
                        problems.push(format!(
                            "r{slot} expires at {expires}, not grantedAt {granted} + {}m",
                            life.ask.minutes
                        ));
                    }
                    if expires <= at(now.minute) {
                        problems.push(format!(
                            "r{slot} is still Active at {}, past its expiresAt {expires}",
                            at(now.minute)
                        ));
                    }
                }
                _ => problems.push(format!(
                    "r{slot} is Active with only one of grantedAt and expiresAt"
                )),
            }
        }
    }

    /// Whoever was on `policy` before the step and is still asked for there is still
    /// there, and not below what is asked (or where they were).
    fn check_still_asked(
        now: &Now<'_>,
        policy: usize,
        (before, after): (&State, &State),
        report: &SyncReport,
    ) -> Vec<String> {
        let name = POLICIES[policy].1;
        let active = Model::active(now, report);
        let mut problems = Vec::new();
        for (email, was) in &before[&policy] {
            if is_protected(policy, email) {
                continue;
            }
            let members = now.member_asks(policy, email);
            let requests: Vec<Role> = active
                .values()
                .filter(|(p, e, _)| *p == Some(policy) && e == email)
                .map(|(_, _, r)| *r)
                .collect();
            if members.is_empty() && requests.is_empty() {
                continue;
            }
            let is = after[&policy].get(email);
            let Some(is) = is else {
                problems.push(format!(
                    "{email} was revoked from {name}, yet is still asked for there (members {members:?}, active requests {requests:?})"
                ));
                continue;
            };
            // The floor is what objects that write ask (and active requests); where only
            // objects that write nothing ask, it is what they keep of the role it was: a
            // raise comes down no lower than the highest role they list.
            let writing = now.writing_member_asks(policy, email);
            let keeping = requests
                .is_empty()
                .then(|| now.only_keeping_asks(policy, email))
                .flatten()
                .unwrap_or_default();
            let Some(wanted) = writing
                .iter()
                .chain(&requests)
                .chain(&keeping)
                .max()
                .copied()
            else {
                continue;
            };
            let members_agree = writing.windows(2).all(|w| w[0] == w[1]);
            let floor = Role::parse(was).map_or(wanted, |was| was.min(wanted));
            if members_agree && Role::parse(is).is_some_and(|is| is < floor) {
                problems.push(format!(
                    "{email} on {name} went from {was} to {is}, below what is still asked for (members {members:?}, active requests {requests:?})"
                ));
            }
        }
        problems
    }
}

/// One history against a fresh simulator.
pub struct Case {
    sim: SimulatorHandle,
    driver: Driver,
    model: Model,
    origin: State,
    log: String,
}

impl Case {
    pub async fn start() -> Result<Case, String> {
        let sim = start_simulator().await;
        let driver = Driver::start(&sim)?;
        let origin = snapshot(&sim);
        Ok(Case {
            sim,
            driver,
            model: Model::default(),
            origin,
            log: String::new(),
        })
    }

    async fn step(
        &mut self,
        label: &str,
        history: &History,
        step: usize,
        accesses: &[Option<Access>],
        minute: i64,
    ) -> Result<(), String> {
        let now = Now {
            history,
            step,
            minute,
            accesses,
        };
        let described: Vec<String> = accesses
            .iter()
            .enumerate()
            .filter_map(|(slot, a)| Some(format!("pa{slot}: {}", a.as_ref()?.describe())))
            .collect();
        let _ = write!(
            self.log,
            "  {label} at {minute}m: {}",
            if described.is_empty() {
                "no PolicyAccess".to_string()
            } else {
                described.join("; ")
            }
        );
        self.model.learn(&now);
        let objects = self.driver.objects(history, step, accesses, minute)?;
        let before = snapshot(&self.sim);
        let result = self.driver.sync(history, &objects, minute).await;
        let after = snapshot(&self.sim);
        let phases: Vec<String> = result
            .iter()
            .flat_map(|r| r.request_statuses.iter())
            .map(|(key, s)| {
                let why = match (s.phase, &s.message) {
                    (RequestPhase::Error, Some(message)) => format!(": {message}"),
                    _ => String::new(),
                };
                format!(
                    "{} {}{}{why}",
                    key.name,
                    s.phase,
                    s.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(
            self.log,
            "\n      -> {}; requests: {}",
            changes(&before, &after),
            if phases.is_empty() {
                "none".to_string()
            } else {
                phases.join(", ")
            }
        );
        let report = result?;
        self.model.note_extras(&now, &before, &report);
        let mut problems = self
            .model
            .check(&now, (&self.origin, &before, &after), &report);
        problems.extend(rate_problem(&self.sim));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.failure("an invariant broke", &problems, &after))
        }
    }

    fn failure(&self, what: &str, problems: &[String], now: &State) -> String {
        failure_text(what, problems, &self.log, &self.origin, now)
    }

    /// Runs the history, then the wind-down; fails with the history and what broke.
    pub async fn run(mut self, history: &History) -> Result<(), String> {
        let _ = writeln!(self.log, "  approval: {:?}", history.approving);
        for (slot, life) in history.lives.iter().enumerate() {
            if let Some(life) = life
                && life.born < history.steps.len()
            {
                let _ = writeln!(self.log, "  r{slot}: {}", life.describe());
            }
        }
        let states = access_states(history);
        let mut minute = 0;
        for (step, accesses) in states.iter().enumerate() {
            minute = step_minutes(history, step);
            self.step(&format!("{}.", step + 1), history, step, accesses, minute)
                .await?;
        }
        // Wind-down. Every claim ends: the clock passes every request's and member's end
        // (objects unsuspended, so nothing frozen holds an entry) ...
        let last = states.last().cloned().unwrap_or_default();
        let unsuspended: Vec<Option<Access>> = last
            .iter()
            .map(|a| {
                a.clone().map(|a| Access {
                    suspend: false,
                    ..a
                })
            })
            .collect();
        let steps = history.steps.len();
        let mut ending = history.clone();
        // Lives and decisions the history never reached stay out of the wind-down.
        for life in &mut ending.lives {
            if life.as_ref().is_some_and(|l| l.born >= steps) {
                *life = None;
            }
        }
        for life in ending.lives.iter_mut().flatten() {
            let born = life.born;
            life.decisions.retain(|d| born + d.after < steps);
        }
        ending.steps.push(Step {
            advance: 3 * 24 * 60,
            accesses: Vec::new(),
        });
        minute += 3 * 24 * 60;
        self.step(
            "end: every end passes",
            &ending,
            steps,
            &unsuspended,
            minute,
        )
        .await?;
        // ... then every request is deleted and every member dropped (Additive, so
        // nobody is an Authoritative extra any more) ...
        for life in ending.lives.iter_mut().flatten() {
            let by_now = steps + 1 - life.born;
            life.deleted_after = Some(life.deleted_after.map_or(by_now, |d| d.min(by_now)));
        }
        ending.steps.push(Step {
            advance: 1,
            accesses: Vec::new(),
        });
        let dropped: Vec<Option<Access>> = unsuspended
            .iter()
            .map(|a| {
                a.clone().map(|a| Access {
                    mode: Mode::Additive,
                    members: BTreeMap::new(),
                    ..a
                })
            })
            .collect();
        minute += 1;
        self.step(
            "end: requests deleted, members dropped",
            &ending,
            steps + 1,
            &dropped,
            minute,
        )
        .await?;
        // ... then every object is deleted.
        let none = vec![None; ACCESS_SLOTS];
        ending.steps.push(Step {
            advance: 1,
            accesses: Vec::new(),
        });
        minute += 1;
        self.step("end: objects deleted", &ending, steps + 2, &none, minute)
            .await?;
        ending.steps.push(Step {
            advance: 1,
            accesses: Vec::new(),
        });
        minute += 1;
        self.step("end: one more sync", &ending, steps + 3, &none, minute)
            .await?;
        let now = snapshot(&self.sim);
        let mut problems = differences_from_origin(
            &self.origin,
            &now,
            (&self.model.removable, &BTreeSet::new()),
        );
        problems.extend(self.leftovers());
        if problems.is_empty() {
            if std::env::var_os("HISTORY_LOG").is_some() {
                eprintln!("{}", self.log);
            }
            Ok(())
        } else {
            Err(self.failure(
                "not back at the start after every claim ended",
                &problems,
                &now,
            ))
        }
    }

    /// Entries still held, and deletions still waiting.
    fn leftovers(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Ok(saved) = self.driver.store.saved.lock() {
            for (key, status) in &saved.requests {
                if !status.managed_members.is_empty() {
                    problems.push(format!(
                        "request {key} still holds {} entr(ies)",
                        status.managed_members.len()
                    ));
                }
            }
        }
        for slot in &self.driver.deleting {
            problems.push(format!("the deletion of pa{slot} still waits"));
        }
        problems
    }
}

/// Runs one history on its own runtime and simulator.
pub fn run_history(history: &History) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async { Case::start().await?.run(history).await })
}
