//! Conflicts decidable from the manifests alone, before anything is read (`validate`).
//!
//! The planner's own claim rules (a second Authoritative object on a policy, two roles
//! asked for one person) run on a stand-in for Expensify that shows every policy the
//! objects name, with nobody on it: the same code decides, so `validate` and a sync never
//! disagree about what is a conflict. A policy named by id and one named by name cannot be
//! told apart without Expensify, so they are never taken for the same policy here.
//! "One policy, one connector" is decided at sync time by which connector managed the
//! policy first (from status); offline, a policy id named through two connectors is
//! reported as such.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::super::bounded::first_few;
use super::super::model::{AccessObject, ConnectorObject, ObjectKey, Observed};
use super::super::tenancy::{offline_policy_refusal, role_refusals};
use super::super::validate::{Problem, validate_access};
use super::claims::{self, Claims};
use super::resolve;
use super::tenancy;
use super::types::{Block, PlanInput};
use super::world::World;
use crate::expensify::{PolicySummary, RosterEntry};

/// The id the stand-in gives a policy named by name.
fn named(name: &str) -> String {
    format!("named {name:?}")
}

/// The owner of every stand-in policy: a reserved name (`.invalid`) no person has.
const STAND_IN_OWNER: &str = "stand-in-owner@expensify-operator.invalid";

/// Every policy the connector's objects name (by id, or by name under a made-up id), each
/// with an empty roster.
fn stand_in(connector: &ConnectorObject, accesses: &[AccessObject]) -> Observed {
    let mut policies: BTreeMap<String, String> = BTreeMap::new();
    for access in accesses
        .iter()
        .filter(|a| a.connector_key() == connector.key)
    {
        let policy = &access.spec.policy;
        match (policy.id.as_deref(), policy.name.as_deref()) {
            (Some(id), None) => policies.insert(id.trim().to_string(), String::new()),
            (None, Some(name)) => policies.insert(named(name.trim()), name.trim().to_string()),
            _ => None,
        };
    }
    // A stand-in owner, on its roster as Expensify lists one, so the stand-in policy is
    // one the planner works on (it never matches a person a manifest names).
    let owner = STAND_IN_OWNER.to_string();
    let rosters = policies
        .keys()
        .map(|id| {
            let entry = RosterEntry {
                email: owner.clone(),
                role: "admin".to_string(),
                submits_to: None,
                forwards_to: None,
                employee_id: None,
            };
            (id.clone(), vec![entry])
        })
        .collect();
    let policies = policies
        .into_iter()
        .map(|(id, name)| PolicySummary {
            id,
            name,
            plan: String::new(),
            owner: owner.clone(),
            output_currency: String::new(),
            caller_role: "admin".to_string(),
        })
        .collect();
    Observed { policies, rosters }
}

/// The Conflict blocks added to `subjects` since `seen` (per subject), with `field`.
fn new_conflicts(
    subjects: &[resolve::Subject<'_>],
    seen: &BTreeMap<ObjectKey, usize>,
    field: impl Fn(&resolve::Subject<'_>, &str) -> String,
) -> Vec<(ObjectKey, Problem)> {
    let mut found = Vec::new();
    for subject in subjects {
        let from = seen.get(subject.key()).copied().unwrap_or(0);
        for block in subject.plan.blocks.iter().skip(from) {
            if let Block::Conflict(message) = block {
                found.push((
                    subject.key().clone(),
                    Problem::new(field(subject, message), message.clone()),
                ));
            }
        }
    }
    found
}

fn block_counts(subjects: &[resolve::Subject<'_>]) -> BTreeMap<ObjectKey, usize> {
    subjects
        .iter()
        .map(|s| (s.key().clone(), s.plan.blocks.len()))
        .collect()
}

/// `spec.members[i].role` of the ask a role conflict is about (its message starts with
/// the email), else `spec.members`.
fn member_field(subject: &resolve::Subject<'_>, message: &str) -> String {
    subject
        .wanted
        .iter()
        .find(|ask| message.starts_with(&format!("{} on policy ", ask.email)))
        .map_or_else(
            || "spec.members".to_string(),
            |ask| format!("{}.role", ask.origin),
        )
}

/// The claim conflicts among `connector`'s objects that the manifests alone decide: asking
/// beyond the namespace's tenancy (`spec.policy` when no `tenants` policy entry can match,
/// `spec.members[i].role` above `maxRole`), a second Authoritative object on one policy
/// (`spec.mode`), a policy an Authoritative object closes to the object's namespace
/// (`spec.policy`), and objects asking different roles for one person on one policy
/// (`spec.members[i].role`). Expired entries claim nobody at `now`, as in a sync.
pub fn conflicts(
    connector: &ConnectorObject,
    accesses: &[AccessObject],
    now: Timestamp,
) -> Vec<(ObjectKey, Problem)> {
    let observed = stand_in(connector, accesses);
    let input = PlanInput {
        requests: crate::reconcile::Requests::NONE,
        connector,
        connectors: std::slice::from_ref(connector),
        accesses,
        observed: &observed,
        now,
        inventory_complete: true,
        scope: super::Scope::Everything,
        unverified: &[],
    };
    let world = World::new(&observed, connector);
    let mut subjects = resolve::subjects(&input, &world);
    let mut found = tenancy::refuse(&mut subjects, |subject| {
        offline_policy_refusal(connector, subject.object)
            .into_iter()
            .chain(role_refusals(connector, subject.object, now))
            .collect()
    });
    let before = block_counts(&subjects);
    claims::block_second_authoritative(&mut subjects);
    found.extend(new_conflicts(&subjects, &before, |_, _| {
        "spec.mode".to_string()
    }));
    let before = block_counts(&subjects);
    tenancy::close_governed_policies(connector, &mut subjects);
    found.extend(new_conflicts(&subjects, &before, |_, _| {
        "spec.policy".to_string()
    }));
    let before = block_counts(&subjects);
    let claims = Claims::collect(&subjects);
    claims::role_conflicts(&claims, &mut subjects);
    found.extend(new_conflicts(&subjects, &before, member_field));
    found
}

/// Policy ids named by valid objects of more than one connector: at sync time the
/// connector that managed the policy first keeps it and the other's objects are Blocked
/// (`Conflict`); offline, each such object is reported with the others.
pub fn policies_through_two_connectors(
    accesses: &[AccessObject],
    connectors: &[ConnectorObject],
) -> Vec<(ObjectKey, Problem)> {
    let mut by_policy: BTreeMap<&str, Vec<(&AccessObject, ObjectKey)>> = BTreeMap::new();
    for access in accesses {
        let Some(id) = access.spec.policy.id.as_deref().map(str::trim) else {
            continue;
        };
        // A valid object names an id that is not empty, through a connector that exists
        // and takes its namespace: only those count.
        if validate_access(access, connectors).is_empty() {
            by_policy
                .entry(id)
                .or_default()
                .push((access, access.connector_key()));
        }
    }
    let mut found = Vec::new();
    for (policy, users) in by_policy {
        // One connector only (the usual case): nothing to compare, in linear time.
        if users.iter().all(|(_, connector)| connector == &users[0].1) {
            continue;
        }
        for (access, connector) in &users {
            let mut others = users
                .iter()
                .filter(|(_, other)| other != connector)
                .map(|(a, other)| format!("connector {other} (PolicyAccess {})", a.key))
                .peekable();
            if others.peek().is_none() {
                continue;
            }
            found.push((
                access.key.clone(),
                Problem::new(
                    "spec.policy.id",
                    format!(
                        "policy {policy} is also named through {}; one policy is managed through one connector: the connector that manages it first keeps it and the other's objects are Blocked (Conflict)",
                        first_few(others, ", ")
                    ),
                ),
            ));
        }
    }
    found
}
