//! The planner: desired (objects) + observed (Expensify) + clock -> changes and per-object
//! findings. Pure: no I/O, no clock of its own, same answer for any input order.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::jiff::Timestamp;

use super::model::{AccessObject, ConnectorObject, ObjectKey, Observed};
use super::validate::{Problem, validate_access};
use crate::api::{
    ALLOW_MASS_REVOCATION, AccessMode, DeletionPolicy, Drift, DriftKind, PlanSummary,
};
use crate::email;
use crate::expensify::{EmployeeRecord, Role};

/// What the planner is given for one connector.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub connector: &'a ConnectorObject,
    /// Objects using the connector; others are ignored.
    pub accesses: &'a [AccessObject],
    pub observed: &'a Observed,
    pub now: Timestamp,
    /// False when some manifests could not be read: removals of people nobody asks for
    /// are held, since an unreadable manifest may ask for them.
    pub inventory_complete: bool,
}

/// Kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Grant,
    RoleChange,
    ApproverChange,
    Revoke,
}

impl ChangeKind {
    pub fn symbol(self) -> char {
        match self {
            ChangeKind::Grant => '+',
            ChangeKind::RoleChange | ChangeKind::ApproverChange => '~',
            ChangeKind::Revoke => '-',
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            ChangeKind::Grant => "grant",
            ChangeKind::RoleChange => "change role",
            ChangeKind::ApproverChange => "change approver",
            ChangeKind::Revoke => "revoke",
        }
    }
}

/// One change to make in Expensify, and who asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub policy_id: String,
    pub policy_name: String,
    pub email: String,
    /// The role to set (grants and role changes).
    pub role: Option<Role>,
    /// The role they have now (role changes and revocations).
    pub old_role: Option<String>,
    pub manager_email: String,
    pub employee_id: Option<String>,
    pub requested_by: ObjectKey,
    pub reason: String,
}

impl Change {
    /// The employee updater record that makes this change.
    pub fn record(&self) -> EmployeeRecord {
        match self.kind {
            ChangeKind::Revoke => EmployeeRecord::revoke(
                &self.email,
                &self.policy_id,
                &self.manager_email,
                self.employee_id.clone(),
            ),
            _ => EmployeeRecord::grant(
                &self.email,
                &self.policy_id,
                self.role.unwrap_or_default(),
                &self.manager_email,
                self.employee_id.clone(),
            ),
        }
    }
}

/// Why an object cannot do all it asks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Block {
    /// Another object disagrees (member roles, or two Authoritative objects on a policy).
    Conflict(String),
    /// More revocations pending than the connector allows.
    RevocationLimit(String),
    /// It asks to demote or revoke someone protected.
    Protected(String),
    /// Removals held because some input could not be read or validated.
    Held(String),
}

impl Block {
    pub fn reason(&self) -> &'static str {
        match self {
            Block::Conflict(_) => "Conflict",
            Block::RevocationLimit(_) => "RevocationLimit",
            Block::Protected(_) => "Protected",
            Block::Held(_) => "RemovalsHeld",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Block::Conflict(m)
            | Block::RevocationLimit(m)
            | Block::Protected(m)
            | Block::Held(m) => m,
        }
    }
}

/// The planner's findings for one object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectPlan {
    pub key: Option<ObjectKey>,
    pub problems: Vec<Problem>,
    pub mode: AccessMode,
    pub suspended: bool,
    pub deleting: bool,
    pub policy_id: Option<String>,
    pub policy_name: Option<String>,
    /// Members asked for and not expired.
    pub desired: usize,
    pub in_sync: usize,
    pub drift: Vec<Drift>,
    pub blocks: Vec<Block>,
    /// The inventory after this plan, if every change lands.
    pub managed: BTreeSet<String>,
    pub next_expiry: Option<Timestamp>,
    /// Changes in the plan that this object asked for.
    pub planned: PlanSummary,
    /// Revocations this object wants that the plan does not make.
    pub withheld_revocations: usize,
    /// The `allow-mass-revocation` value this plan uses, if any.
    pub mass_revocation_used: Option<String>,
}

impl ObjectPlan {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The plan for one connector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Sorted by policy, email, kind.
    pub changes: Vec<Change>,
    /// Sorted by key.
    pub objects: BTreeMap<ObjectKey, ObjectPlan>,
    /// The connector's `allow-mass-revocation` value this plan uses, if any.
    pub connector_mass_revocation_used: Option<String>,
}

impl Plan {
    pub fn summary(&self) -> PlanSummary {
        summarize(self.changes.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

pub fn summarize<'a>(changes: impl Iterator<Item = &'a Change>) -> PlanSummary {
    let mut summary = PlanSummary::default();
    for change in changes {
        match change.kind {
            ChangeKind::Grant => summary.grants += 1,
            ChangeKind::RoleChange | ChangeKind::ApproverChange => summary.role_changes += 1,
            ChangeKind::Revoke => summary.revocations += 1,
        }
    }
    summary
}

fn rank(role: Role) -> u8 {
    match role {
        Role::User => 0,
        Role::Auditor => 1,
        Role::Admin => 2,
    }
}

/// A member entry, parsed leniently (invalid objects still claim their valid people).
#[derive(Debug, Clone)]
struct Wanted {
    email: String,
    role: Role,
    submits_to: Option<String>,
    employee_id: Option<String>,
}

#[derive(Debug, Clone)]
struct RosterView {
    role: Option<Role>,
    raw_role: String,
    submits_to: Option<String>,
    employee_id: Option<String>,
}

struct PolicyView {
    id: String,
    name: String,
    owner: String,
    roster: BTreeMap<String, RosterView>,
}

/// policy id -> email -> the objects asking for that person, with the role each asks.
type Claims<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<(&'a ObjectKey, Role)>>>;

/// An object's live desires, once its policy is known.
struct Resolved<'a> {
    object: &'a AccessObject,
    policy: String,
    wanted: BTreeMap<String, Wanted>,
}

fn fresh_allowance(
    annotations: &BTreeMap<String, String>,
    last_handled: Option<&String>,
) -> Option<String> {
    let value = annotations.get(ALLOW_MASS_REVOCATION)?.trim();
    (!value.is_empty() && value != "false" && Some(&value.to_string()) != last_handled)
        .then(|| value.to_string())
}

/// Plans one sync of one connector.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let connector = input.connector;
    let mut protected: BTreeSet<String> = connector
        .spec
        .protected_emails
        .iter()
        .map(|e| email::normalize(e))
        .collect();
    protected.insert(email::normalize(&connector.spec.admin_email));

    let policies: BTreeMap<String, PolicyView> = input
        .observed
        .policies
        .iter()
        .filter_map(|p| {
            let roster = input.observed.rosters.get(&p.id)?;
            let roster = roster
                .iter()
                .map(|e| {
                    (
                        email::normalize(&e.email),
                        RosterView {
                            role: e.known_role(),
                            raw_role: e.role.clone(),
                            submits_to: e.submits_to.as_deref().map(email::normalize),
                            employee_id: e.employee_id.clone(),
                        },
                    )
                })
                .collect();
            Some((
                p.id.clone(),
                PolicyView {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    owner: email::normalize(&p.owner),
                    roster,
                },
            ))
        })
        .collect();

    let visible: HashSet<&str> = input
        .observed
        .policies
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    let mut accesses: Vec<&AccessObject> = input
        .accesses
        .iter()
        .filter(|a| a.connector_key() == connector.key)
        .collect();
    accesses.sort_by(|a, b| a.key.cmp(&b.key));

    let mut objects: BTreeMap<ObjectKey, ObjectPlan> = BTreeMap::new();
    let mut resolved: Vec<Resolved> = Vec::new();
    for access in &accesses {
        let mut object_plan = ObjectPlan {
            key: Some(access.key.clone()),
            mode: access.spec.mode,
            suspended: access.spec.suspend,
            deleting: access.deleting,
            ..ObjectPlan::default()
        };
        if !access.deleting {
            object_plan.problems = validate_access(access, std::slice::from_ref(connector));
        }
        let policy = resolve_policy(access, input.observed, &policies, &visible);
        match policy {
            Ok(id) => {
                object_plan.policy_id = Some(id.clone());
                object_plan.policy_name = policies.get(&id).map(|p| p.name.clone());
                let (wanted, next_expiry) = wanted_members(access, input.now);
                object_plan.next_expiry = next_expiry;
                if policies.contains_key(&id) {
                    resolved.push(Resolved {
                        object: access,
                        policy: id,
                        wanted,
                    });
                }
            }
            Err(problem) => object_plan.problems.push(problem),
        }
        objects.insert(access.key.clone(), object_plan);
    }

    // Who asks for whom: every live object on a policy, valid or not, so that a broken
    // sibling's people are never taken for "asked for by nobody".
    let mut claims: Claims = BTreeMap::new();
    for r in resolved.iter().filter(|r| !r.object.deleting) {
        for wanted in r.wanted.values() {
            claims
                .entry(r.policy.as_str())
                .or_default()
                .entry(wanted.email.as_str())
                .or_default()
                .push((&r.object.key, wanted.role));
        }
    }

    // Two Authoritative objects on one policy: the older governs, the newer is blocked.
    let mut authoritative_owner: BTreeMap<&str, &AccessObject> = BTreeMap::new();
    let mut by_age: Vec<&Resolved> = resolved
        .iter()
        .filter(|r| r.object.spec.mode == AccessMode::Authoritative && !r.object.deleting)
        .filter(|r| objects[&r.object.key].is_valid())
        .collect();
    by_age
        .sort_by(|a, b| (a.object.created, &a.object.key).cmp(&(b.object.created, &b.object.key)));
    for r in by_age {
        match authoritative_owner.get(r.policy.as_str()) {
            Some(first) => {
                let message = format!(
                    "PolicyAccess {} is already Authoritative for policy {}; only one Authoritative object may govern a policy",
                    first.key, r.policy
                );
                if let Some(p) = objects.get_mut(&r.object.key) {
                    p.blocks.push(Block::Conflict(message));
                }
            }
            None => {
                authoritative_owner.insert(r.policy.as_str(), r.object);
            }
        }
    }

    let any_invalid = objects.values().any(|p| !p.problems.is_empty());
    let mut changes: Vec<Change> = Vec::new();
    let mut revoked: BTreeSet<(String, String)> = BTreeSet::new();

    for r in &resolved {
        let policy = &policies[&r.policy];
        let Some(object_plan) = objects.get_mut(&r.object.key) else {
            continue;
        };
        let is_protected = |email: &str| email == policy.owner || protected.contains(email);
        let prev_managed = r.object.previously_managed();
        let policy_claims = claims.get(policy.id.as_str());
        let claimed_by_others = |email: &str| {
            policy_claims
                .and_then(|c| c.get(email))
                .is_some_and(|askers| askers.iter().any(|(key, _)| **key != r.object.key))
        };
        let writer = object_plan.is_valid()
            && !r.object.spec.suspend
            && !r.object.deleting
            && r.object.spec.mode != AccessMode::ObserveOnly
            && object_plan.blocks.is_empty();

        // Drift, for every resolved object.
        object_plan.desired = r.wanted.len();
        let mut in_sync = 0;
        for wanted in r.wanted.values() {
            match policy.roster.get(&wanted.email) {
                None => object_plan.drift.push(Drift {
                    email: wanted.email.clone(),
                    kind: DriftKind::Missing,
                    desired: Some(wanted.role.to_string()),
                    actual: None,
                }),
                Some(entry) if entry.role != Some(wanted.role) => object_plan.drift.push(Drift {
                    email: wanted.email.clone(),
                    kind: DriftKind::RoleMismatch,
                    desired: Some(wanted.role.to_string()),
                    actual: Some(entry.raw_role.clone()),
                }),
                Some(_) => in_sync += 1,
            }
        }
        object_plan.in_sync = in_sync;
        let unclaimed_extras: Vec<(&String, &RosterView)> = policy
            .roster
            .iter()
            .filter(|(email, _)| {
                !is_protected(email)
                    && !policy_claims.is_some_and(|c| c.contains_key(email.as_str()))
            })
            .collect();
        if matches!(
            r.object.spec.mode,
            AccessMode::Authoritative | AccessMode::ObserveOnly
        ) && !r.object.deleting
        {
            for (email, entry) in &unclaimed_extras {
                object_plan.drift.push(Drift {
                    email: (*email).clone(),
                    kind: DriftKind::Extra,
                    desired: None,
                    actual: Some(entry.raw_role.clone()),
                });
            }
        }

        // The inventory: kept while asked for, or while its revocation is pending.
        let mut managed: BTreeSet<String> = if r.object.deleting {
            BTreeSet::new()
        } else {
            prev_managed
                .iter()
                .filter(|e| r.wanted.contains_key(*e))
                .cloned()
                .collect()
        };

        if !writer {
            // Observers, suspended, invalid and blocked objects keep their inventory as is,
            // except a deleting object, handled below.
            if !r.object.deleting {
                managed.extend(prev_managed.iter().cloned());
            }
        } else {
            for wanted in r.wanted.values() {
                let askers = policy_claims
                    .and_then(|c| c.get(wanted.email.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let roles: BTreeSet<Role> = askers.iter().map(|(_, role)| *role).collect();
                if roles.len() > 1 {
                    let who = askers
                        .iter()
                        .map(|(key, role)| format!("{role} by {key}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    object_plan.blocks.push(Block::Conflict(format!(
                        "{} on policy {} is asked for as {who}; left as they are",
                        wanted.email, policy.name
                    )));
                    continue;
                }
                let first_asker = askers.iter().map(|(key, _)| *key).min();
                let change = |kind: ChangeKind, old: Option<&RosterView>, reason: String| Change {
                    kind,
                    policy_id: policy.id.clone(),
                    policy_name: policy.name.clone(),
                    email: wanted.email.clone(),
                    role: Some(wanted.role),
                    old_role: old.map(|o| o.raw_role.clone()),
                    manager_email: wanted
                        .submits_to
                        .clone()
                        .or_else(|| old.and_then(|o| o.submits_to.clone()))
                        .unwrap_or_else(|| policy.owner.clone()),
                    employee_id: wanted
                        .employee_id
                        .clone()
                        .or_else(|| old.and_then(|o| o.employee_id.clone())),
                    requested_by: r.object.key.clone(),
                    reason,
                };
                match policy.roster.get(&wanted.email) {
                    None => {
                        // Several objects asking the same: the first by name grants it.
                        if first_asker == Some(&r.object.key) {
                            changes.push(change(
                                ChangeKind::Grant,
                                None,
                                "asked for, not on the policy".into(),
                            ));
                            managed.insert(wanted.email.clone());
                        }
                    }
                    Some(entry) if entry.role != Some(wanted.role) => {
                        let demotion = entry.role.is_none_or(|old| rank(wanted.role) < rank(old));
                        if is_protected(&wanted.email) && demotion {
                            object_plan.blocks.push(Block::Protected(format!(
                                "{} is protected (policy owner, connector adminEmail or protectedEmails) and is not demoted from {} to {}",
                                wanted.email, entry.raw_role, wanted.role
                            )));
                        } else if first_asker == Some(&r.object.key) {
                            changes.push(change(
                                ChangeKind::RoleChange,
                                Some(entry),
                                format!("role is {}, asked for {}", entry.raw_role, wanted.role),
                            ));
                        }
                    }
                    Some(entry)
                        if wanted.submits_to.is_some() && wanted.submits_to != entry.submits_to =>
                    {
                        if first_asker == Some(&r.object.key) {
                            changes.push(change(
                                ChangeKind::ApproverChange,
                                Some(entry),
                                format!(
                                    "submits to {}, asked for {}",
                                    entry.submits_to.as_deref().unwrap_or("nobody"),
                                    wanted.submits_to.as_deref().unwrap_or_default()
                                ),
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
        }

        // Revocations: what this object granted and no longer wants (or, deleted with
        // Revoke, all it granted); for Authoritative, also everyone nobody asks for.
        let mut wants_revoked: Vec<(String, String)> = Vec::new();
        let deleting_revokes =
            r.object.deleting && r.object.spec.deletion_policy == DeletionPolicy::Revoke;
        if writer || deleting_revokes {
            for email in &prev_managed {
                if r.wanted.contains_key(email)
                    || claimed_by_others(email)
                    || !policy.roster.contains_key(email)
                {
                    continue;
                }
                if is_protected(email) {
                    continue;
                }
                let why = if r.object.deleting {
                    format!(
                        "PolicyAccess {} deleted (deletionPolicy Revoke)",
                        r.object.key
                    )
                } else {
                    format!("granted by {}, no longer asked for", r.object.key)
                };
                wants_revoked.push((email.clone(), why));
            }
        }
        if writer && r.object.spec.mode == AccessMode::Authoritative {
            let held = !input.inventory_complete || any_invalid;
            let extras: Vec<&String> = unclaimed_extras
                .iter()
                .map(|(email, _)| *email)
                .filter(|email| !wants_revoked.iter().any(|(e, _)| e == *email))
                .collect();
            if held && !extras.is_empty() {
                object_plan.withheld_revocations += extras.len();
                object_plan.blocks.push(Block::Held(format!(
                    "{} removal(s) of people nobody asks for are held until every manifest on connector {} can be read and is valid",
                    extras.len(),
                    connector.key
                )));
                managed.extend(
                    extras
                        .iter()
                        .filter(|e| prev_managed.contains(**e))
                        .map(|e| (*e).clone()),
                );
            } else {
                for email in extras {
                    wants_revoked.push((
                        email.clone(),
                        format!(
                            "not asked for by any PolicyAccess ({} is Authoritative)",
                            r.object.key
                        ),
                    ));
                }
            }
        }
        for (email, why) in wants_revoked {
            if !revoked.insert((policy.id.clone(), email.clone())) {
                continue;
            }
            let entry = &policy.roster[&email];
            if prev_managed.contains(&email) {
                managed.insert(email.clone());
            }
            changes.push(Change {
                kind: ChangeKind::Revoke,
                policy_id: policy.id.clone(),
                policy_name: policy.name.clone(),
                email: email.clone(),
                role: None,
                old_role: Some(entry.raw_role.clone()),
                manager_email: entry
                    .submits_to
                    .clone()
                    .unwrap_or_else(|| policy.owner.clone()),
                employee_id: entry.employee_id.clone(),
                requested_by: r.object.key.clone(),
                reason: why,
            });
        }
        if r.object.spec.mode == AccessMode::Additive && !r.object.deleting {
            for email in managed
                .iter()
                .filter(|e| !r.wanted.contains_key(*e) && policy.roster.contains_key(*e))
            {
                object_plan.drift.push(Drift {
                    email: email.clone(),
                    kind: DriftKind::Extra,
                    desired: None,
                    actual: policy.roster.get(email).map(|e| e.raw_role.clone()),
                });
            }
        }
        object_plan.managed = managed;
    }

    let resolved_keys: BTreeSet<&ObjectKey> = resolved.iter().map(|r| &r.object.key).collect();
    // Objects whose policy no longer exists while deleting: nothing left to revoke.
    // Objects that did not resolve keep their inventory untouched.
    for access in &accesses {
        let Some(object_plan) = objects.get_mut(&access.key) else {
            continue;
        };
        if !resolved_keys.contains(&access.key) && !access.deleting {
            object_plan.managed = access.previously_managed();
        }
    }

    let connector_used =
        apply_revocation_limit(connector, &mut changes, &mut objects, input.accesses);

    changes.sort_by(|a, b| (&a.policy_id, &a.email, a.kind).cmp(&(&b.policy_id, &b.email, b.kind)));
    let mut by_requester: BTreeMap<&ObjectKey, Vec<&Change>> = BTreeMap::new();
    for change in &changes {
        by_requester
            .entry(&change.requested_by)
            .or_default()
            .push(change);
    }
    for (key, object_plan) in objects.iter_mut() {
        object_plan.planned = summarize(by_requester.get(key).into_iter().flatten().copied());
        object_plan
            .drift
            .sort_by(|a, b| (a.kind, &a.email).cmp(&(b.kind, &b.email)));
        object_plan.blocks.sort();
        object_plan.blocks.dedup();
    }
    Plan {
        changes,
        objects,
        connector_mass_revocation_used: connector_used,
    }
}

/// Rule 4: more pending revocations than `maxRevocationsPerSync` and none is made for the
/// objects not allowed past it; grants go ahead. Returns the connector allowance used.
fn apply_revocation_limit(
    connector: &ConnectorObject,
    changes: &mut Vec<Change>,
    objects: &mut BTreeMap<ObjectKey, ObjectPlan>,
    accesses: &[AccessObject],
) -> Option<String> {
    let max = usize::try_from(connector.spec.max_revocations_per_sync.max(0)).unwrap_or(0);
    let total = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Revoke)
        .count();
    if total <= max {
        return None;
    }
    let last_handled = connector
        .status
        .as_ref()
        .and_then(|s| s.last_handled_mass_revocation.as_ref());
    if let Some(value) = fresh_allowance(&connector.annotations, last_handled) {
        return Some(value);
    }
    let allowed: BTreeMap<&ObjectKey, String> = accesses
        .iter()
        .filter_map(|a| {
            let last = a
                .status
                .as_ref()
                .and_then(|s| s.last_handled_mass_revocation.as_ref());
            fresh_allowance(&a.annotations, last).map(|v| (&a.key, v))
        })
        .collect();
    let remaining = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Revoke && !allowed.contains_key(&c.requested_by))
        .count();
    for (key, value) in &allowed {
        if changes
            .iter()
            .any(|c| c.kind == ChangeKind::Revoke && &c.requested_by == *key)
            && let Some(p) = objects.get_mut(*key)
        {
            p.mass_revocation_used = Some(value.clone());
        }
    }
    if remaining <= max {
        return None;
    }
    let message = format!(
        "{total} revocations are pending on connector {} but maxRevocationsPerSync is {max}; nothing was revoked for this object. \
         To allow them once, annotate the connector or this PolicyAccess with {ALLOW_MASS_REVOCATION}=<a new value>, or raise maxRevocationsPerSync",
        connector.key
    );
    let mut blocked_counts: BTreeMap<ObjectKey, usize> = BTreeMap::new();
    changes.retain(|c| {
        let block = c.kind == ChangeKind::Revoke && !allowed.contains_key(&c.requested_by);
        if block {
            *blocked_counts.entry(c.requested_by.clone()).or_default() += 1;
        }
        !block
    });
    for (key, count) in blocked_counts {
        if let Some(p) = objects.get_mut(&key) {
            p.withheld_revocations += count;
            p.blocks.push(Block::RevocationLimit(message.clone()));
        }
    }
    None
}

fn resolve_policy(
    access: &AccessObject,
    observed: &Observed,
    policies: &BTreeMap<String, PolicyView>,
    visible: &HashSet<&str>,
) -> Result<String, Problem> {
    match (&access.spec.policy.id, &access.spec.policy.name) {
        (Some(id), None) if visible.contains(id.as_str()) => {
            if policies.contains_key(id) || access.deleting {
                Ok(id.clone())
            } else {
                Err(Problem::new(
                    "spec.policy.id",
                    format!("the roster of policy {id} was not read"),
                ))
            }
        }
        (Some(id), None) if access.deleting => Ok(id.clone()),
        (Some(id), None) => Err(Problem::new(
            "spec.policy.id",
            format!(
                "policy {id:?} is not among the {} policies the connector's credentials can see",
                visible.len()
            ),
        )),
        (None, Some(name)) => {
            let matches: Vec<&str> = observed
                .policies
                .iter()
                .filter(|p| p.name == name.trim())
                .map(|p| p.id.as_str())
                .collect();
            match matches.as_slice() {
                [id] => Ok((*id).to_string()),
                [] => Err(Problem::new(
                    "spec.policy.name",
                    format!(
                        "no policy named {name:?} among the {} policies the connector's credentials can see",
                        visible.len()
                    ),
                )),
                ids => Err(Problem::new(
                    "spec.policy.name",
                    format!(
                        "{} policies are named {name:?} ({}); use spec.policy.id",
                        ids.len(),
                        ids.join(", ")
                    ),
                )),
            }
        }
        // Both or neither: validation already says so.
        _ => Err(Problem::new(
            "spec.policy",
            "give exactly one of id and name",
        )),
    }
}

/// The members an object asks for now (expired ones are absent), and the next expiry.
fn wanted_members(
    access: &AccessObject,
    now: Timestamp,
) -> (BTreeMap<String, Wanted>, Option<Timestamp>) {
    let mut wanted = BTreeMap::new();
    let mut next_expiry: Option<Timestamp> = None;
    if access.deleting {
        return (wanted, None);
    }
    for member in &access.spec.members {
        if !email::is_valid(&member.email) {
            continue;
        }
        let Some(role) = member.role.as_deref().map_or(Some(Role::User), Role::parse) else {
            continue;
        };
        if let Some(expires) = &member.expires_at {
            match expires.parse::<Timestamp>() {
                Ok(at) if at <= now => continue,
                Ok(at) => next_expiry = Some(next_expiry.map_or(at, |n| n.min(at))),
                Err(_) => continue,
            }
        }
        let normalized = email::normalize(&member.email);
        wanted.entry(normalized.clone()).or_insert(Wanted {
            email: normalized,
            role,
            submits_to: member
                .submits_to
                .as_deref()
                .filter(|m| email::is_valid(m))
                .map(email::normalize),
            employee_id: member
                .employee_id
                .clone()
                .filter(|id| !id.trim().is_empty()),
        });
    }
    (wanted, next_expiry)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
