//! Phase 6: the mass-removal guard (rule 4). More removals (revocations and demotions)
//! than `maxRevocationsPerSync`: none is made for the objects not allowed past it, grants
//! still go ahead, and the objects are Blocked with the people held named.

use std::collections::{BTreeMap, BTreeSet};

use super::super::model::{AccessObject, ConnectorObject, ObjectKey};
use super::resolve::{self, Subject};
use super::types::{Block, Planned};
use crate::api::{ALLOW_MASS_REVOCATION, was_handled};

/// The annotation value if it lifts the guard: present, not `false`/`no`/`0`/empty (any
/// case), and not handled by an earlier sync.
pub(super) fn fresh_allowance(
    annotations: &BTreeMap<String, String>,
    last: Option<&str>,
    remembered: &[String],
) -> Option<String> {
    let value = annotations.get(ALLOW_MASS_REVOCATION)?.trim();
    let refuses = ["", "false", "no", "0"]
        .iter()
        .any(|no| value.eq_ignore_ascii_case(no));
    (!refuses && !was_handled(last, remembered, value)).then(|| value.to_string())
}

fn connector_allowance(connector: &ConnectorObject) -> Option<String> {
    let status = connector.status.as_ref();
    fresh_allowance(
        &connector.annotations,
        status.and_then(|s| s.last_handled_mass_revocation.as_deref()),
        status.map_or(&[], |s| s.handled_mass_revocations.as_slice()),
    )
}

/// Read in place: an object's status holds its whole ledger, not to be copied per object.
fn object_allowance(object: &AccessObject) -> Option<String> {
    let status = object.status.as_ref();
    fresh_allowance(
        &object.annotations,
        status.and_then(|s| s.last_handled_mass_revocation.as_deref()),
        status.map_or(&[], |s| s.handled_mass_revocations.as_slice()),
    )
}

/// "a, b, c and 4 more": people sorted, each named once.
pub(super) fn name_people(people: &[String]) -> String {
    let mut sorted: Vec<&String> = people.iter().collect();
    sorted.sort();
    sorted.dedup();
    super::super::bounded::first_few(sorted, ", ")
}

/// Applies the guard. Every fresh allowance is recorded as used (each value is honoured
/// once, by the first sync that sees it, needed or not). Returns the connector's.
pub(super) fn apply(
    connector: &ConnectorObject,
    planned: &mut Vec<Planned>,
    subjects: &mut [Subject<'_>],
) -> Option<String> {
    let connector_used = connector_allowance(connector);
    for subject in subjects.iter_mut() {
        subject.plan.mass_revocation_used = object_allowance(subject.object);
    }
    let max = usize::try_from(connector.spec.max_revocations_per_sync.max(0)).unwrap_or(0);
    let total = planned.iter().filter(|p| p.change.is_removal()).count();
    if total <= max || connector_used.is_some() {
        return connector_used;
    }
    let allowed_keys: BTreeSet<ObjectKey> = subjects
        .iter()
        .filter(|s| s.plan.mass_revocation_used.is_some())
        .map(|s| s.key().clone())
        .collect();
    let allowed = |key: &ObjectKey, _: &[Subject<'_>]| allowed_keys.contains(key);
    let remaining = planned
        .iter()
        .filter(|p| p.change.is_removal() && !allowed(&p.change.requested_by, subjects))
        .count();
    if remaining <= max {
        return None;
    }
    let mut held: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
    planned.retain(|p| {
        let hold = p.change.is_removal() && !allowed(&p.change.requested_by, subjects);
        if hold {
            held.entry(p.change.requested_by.clone())
                .or_default()
                .push(p.change.email.clone());
        }
        !hold
    });
    for (key, people) in held {
        let Some(subject) = resolve::find_mut(subjects, &key) else {
            continue;
        };
        subject.plan.blocks.push(Block::RevocationLimit(format!(
            "{total} removals (revocations and demotions) are pending on connector {} but maxRevocationsPerSync is {max}; held for this object: {}. \
             To allow them once, annotate the connector or this PolicyAccess with {ALLOW_MASS_REVOCATION}=<a new value>, or raise maxRevocationsPerSync",
            connector.key,
            name_people(&people)
        )));
        subject.plan.held.extend(people);
    }
    None
}
