//! Phase 1b: tenancy (the rules are [`super::super::tenancy`]'s). An object asking for a
//! policy or a role its namespace is not granted is `Error` and asks for nobody; nothing is
//! inferred from it (it holds no removal, its entries stay as they are). A policy an
//! Authoritative object governs is closed to objects of other tenant namespaces it does not
//! list in `spec.allowFrom`: they are `Blocked` (`Conflict`) and ask for nobody, so the
//! Authoritative object revokes as if they were not there. Objects of the connector's own
//! namespace are never closed out.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::super::model::ConnectorObject;
use super::super::problem::Problem;
use super::super::tenancy::{POLICY_FIELD, policy_refusal, role_refusals};
use super::resolve::{Standing, Subject};
use super::types::Block;
use crate::expensify::PolicySummary;

/// Marks the objects that ask beyond their tenancy `Forbidden`, each with the rule it
/// breaks. `visible` is what Expensify shows (names are matched against it). Deleting
/// objects ask for nothing and are left alone: they settle what they gave.
pub(super) fn refuse_ungranted(
    connector: &ConnectorObject,
    visible: &[PolicySummary],
    now: Timestamp,
    subjects: &mut [Subject<'_>],
) {
    refuse(subjects, |subject| {
        let policy = subject
            .plan
            .policy_id
            .as_deref()
            .and_then(|id| policy_refusal(connector, subject.object, id, visible));
        policy
            .into_iter()
            .chain(role_refusals(connector, subject.object, now))
            .collect()
    });
    // A policy the namespace may not touch is not read for it either: no drift, so its
    // roster never reaches the object's status.
    for subject in subjects.iter_mut() {
        let refused_policy = subject.standing == Standing::Forbidden
            && subject
                .plan
                .problems
                .iter()
                .any(|p| p.field == POLICY_FIELD);
        if refused_policy {
            subject.policy = None;
        }
    }
}

/// Marks `Forbidden` every live object `refusals` finds a problem with, and returns them.
pub(super) fn refuse(
    subjects: &mut [Subject<'_>],
    refusals: impl Fn(&Subject<'_>) -> Vec<Problem>,
) -> Vec<(super::super::model::ObjectKey, Problem)> {
    let mut found = Vec::new();
    for subject in subjects.iter_mut().filter(|s| !s.object.deleting) {
        let problems = refusals(subject);
        if problems.is_empty() {
            continue;
        }
        found.extend(problems.iter().map(|p| (subject.key().clone(), p.clone())));
        subject.plan.problems.extend(problems);
        subject.plan.not_granted = true;
        subject.standing = Standing::Forbidden;
    }
    found
}

/// Closes each policy an Authoritative writer governs to the objects of other tenant
/// namespaces it does not list in `spec.allowFrom`.
pub(super) fn close_governed_policies(connector: &ConnectorObject, subjects: &mut [Subject<'_>]) {
    let governors: BTreeMap<String, (String, String, Vec<String>)> =
        super::resolve::governors(subjects)
            .map(|(policy, s)| {
                let governor = (
                    s.key().to_string(),
                    s.key().namespace.clone(),
                    s.object.spec.allow_from.clone(),
                );
                (policy.to_string(), governor)
            })
            .collect();
    if governors.is_empty() {
        return;
    }
    for subject in subjects.iter_mut().filter(|s| s.claims()) {
        let Some(policy) = subject.policy.as_deref() else {
            continue;
        };
        let Some((governor, governor_namespace, allow_from)) = governors.get(policy) else {
            continue;
        };
        let namespace = subject.key().namespace.clone();
        let open = namespace == connector.key.namespace
            || &namespace == governor_namespace
            || allow_from.contains(&namespace);
        if open {
            continue;
        }
        subject.standing = Standing::ClosedOut;
        subject.block(Block::Conflict(format!(
            "policy {policy} is governed by Authoritative PolicyAccess {governor}, which does not list namespace {namespace:?} in spec.allowFrom: this object asks for nobody there"
        )));
    }
}
