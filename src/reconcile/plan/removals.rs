//! Phase 5: removals. Released entries are taken back (an added person revoked, a changed
//! role set back), unless Expensify no longer shows what the operator set; Authoritative
//! objects revoke the people nobody asks for. Both wait where broken input may be asking
//! for the person ([`super::holds`]).

use std::collections::BTreeMap;

use super::super::model::ObjectKey;
use super::claims::Claims;
use super::holds::Holds;
use super::ledger::{Held, Ledger, Released};
use super::resolve::{self, Subject};
use super::types::{Block, Change, ChangeKind, Planned};
use super::world::{PolicyView, RosterView, World};
use crate::api::AccessMode;
use crate::expensify::Role;

/// The change that takes back one released entry (or lowers its role to `lower_to`), or
/// why it is left alone.
fn take_back(
    (held, lower_to): (&Held, Option<&(ObjectKey, Role)>),
    holder_deleting: bool,
    governor: Option<&ObjectKey>,
    policy: &PolicyView,
    world: &World<'_>,
) -> Result<Change, String> {
    let entry = &held.entry;
    let Some(current) = policy.roster.get(&entry.email) else {
        return Err(String::new());
    };
    if world.is_protected(policy, &entry.email) {
        return Err(format!(
            "{} on policy {} is protected: left as is",
            entry.email, policy.name
        ));
    }
    let still_as_set = entry
        .role
        .as_deref()
        .is_none_or(|role| super::ledger::same_role(role, &current.raw_role));
    if !still_as_set {
        return Err(format!(
            "{} on policy {} is now {} (the operator set {}): changed by someone else, left as is",
            entry.email,
            policy.name,
            current.raw_role,
            entry.role.as_deref().unwrap_or_default()
        ));
    }
    if let Some((keeper, role)) = lower_to {
        let why = format!(
            "role {} was set for a claim that ended; {keeper} lists {role}, and writes nothing: down to {role}",
            current.raw_role
        );
        return Ok(taking_back(
            ChangeKind::RoleChange,
            Some(*role),
            (policy, &entry.email, current),
            &held.holder,
            why,
        ));
    }
    if entry.added {
        let why = if holder_deleting {
            "PolicyAccess {holder} deleted (deletionPolicy Revoke): taking back what it granted"
        } else {
            "granted by {holder}, asked for by nobody now"
        };
        return Ok(revoke(policy, &entry.email, current, &held.holder, why));
    }
    if let Some(governor) = governor {
        // On an Authoritative policy someone nobody asks for is an extra: revoke at once,
        // rather than set the role back and revoke on the next sync.
        let why = format!("not asked for by any PolicyAccess ({governor} is Authoritative)");
        return Ok(revoke(policy, &entry.email, current, governor, &why));
    }
    let previous = entry.previous_role.as_deref().unwrap_or_default();
    let Some(role) = Role::parse(previous) else {
        return Err(format!(
            "{} on policy {}: the role it had before ({previous:?}) cannot be set by the operator; left as is",
            entry.email, policy.name
        ));
    };
    let why = format!(
        "role set by {} and asked for by nobody now: back to {role}",
        held.holder
    );
    Ok(taking_back(
        ChangeKind::RoleChange,
        Some(role),
        (policy, &entry.email, current),
        &held.holder,
        why,
    ))
}

/// A change that takes something back from someone on the roster, keeping their approver
/// and employeeID as they are.
fn taking_back(
    kind: ChangeKind,
    role: Option<Role>,
    (policy, email, current): (&PolicyView, &str, &RosterView),
    requester: &ObjectKey,
    reason: String,
) -> Change {
    Change {
        kind,
        policy_id: policy.id.clone(),
        policy_name: policy.name.clone(),
        email: email.to_string(),
        role,
        old_role: Some(current.raw_role.clone()),
        manager_email: current
            .submits_to
            .clone()
            .unwrap_or_else(|| policy.owner.clone()),
        employee_id: current.employee_id.clone(),
        expect_submits_to: None,
        old_submits_to: current.submits_to.clone(),
        old_employee_id: current.employee_id.clone(),
        requested_by: requester.clone(),
        reason,
    }
}

fn revoke(
    policy: &PolicyView,
    email: &str,
    current: &RosterView,
    requester: &ObjectKey,
    why: &str,
) -> Change {
    let reason = why.replace("{holder}", &requester.to_string());
    taking_back(
        ChangeKind::Revoke,
        None,
        (policy, email, current),
        requester,
        reason,
    )
}

/// Turns released entries into changes (a lowered one keeps its entry, at the new role);
/// entries left alone are dropped from the ledger.
pub(super) fn releases(
    (released, claims): (Vec<Released>, &Claims),
    ledger: &mut Ledger,
    world: &World<'_>,
    subjects: &mut [Subject<'_>],
) -> Vec<Planned> {
    let governors = authoritative_governors(subjects);
    let mut planned = Vec::new();
    for Released { held, lower_to } in released {
        let Some(policy) = world.policies.get(&held.entry.policy_id) else {
            continue;
        };
        let deleting = resolve::find(subjects, &held.holder).is_some_and(|s| s.object.deleting);
        // A raise released while objects that write nothing still list the person is set
        // back, never revoked: the governor revokes only people nobody asks for.
        let governor = governors
            .get(&policy.id)
            .filter(|_| !claims.is_claimed(&policy.id, &held.entry.email));
        match take_back(
            (&held, lower_to.as_ref()),
            deleting,
            governor,
            policy,
            world,
        ) {
            Ok(change) => planned.push(Planned {
                entry: lower_to
                    .map(|(keeper, role)| (keeper, super::ledger::rewritten(&held.entry, role))),
                change,
            }),
            Err(note) => {
                let key = (held.entry.policy_id.clone(), held.entry.email.clone());
                ledger.entries.remove(&key);
                if let Some(subject) = resolve::find_mut(subjects, &held.holder)
                    && !note.is_empty()
                {
                    subject.plan.notes.push(note);
                }
            }
        }
    }
    planned
}

/// The Authoritative writer of each policy (a second one is blocked, so there is one).
fn authoritative_governors(subjects: &[Subject<'_>]) -> BTreeMap<String, ObjectKey> {
    super::resolve::governors(subjects)
        .map(|(policy, s)| (policy.to_string(), s.key().clone()))
        .collect()
}

/// Authoritative writers revoke everyone on their policy that nobody asks for, except
/// protected people and people the ledger already speaks for.
pub(super) fn authoritative_extras(
    claims: &Claims,
    ledger: &Ledger,
    world: &World<'_>,
    holds: &Holds,
    subjects: &mut [Subject<'_>],
) -> Vec<Planned> {
    let mut planned = Vec::new();
    for subject in subjects.iter_mut() {
        if !subject.writes() || subject.object.spec.mode != AccessMode::Authoritative {
            continue;
        }
        let Some(policy) = subject
            .policy
            .as_ref()
            .and_then(|id| world.policies.get(id))
        else {
            continue;
        };
        let extras: Vec<(&String, &RosterView)> = policy
            .roster
            .iter()
            .filter(|(email, _)| {
                !world.is_protected(policy, email)
                    && !claims.is_claimed(&policy.id, email)
                    && ledger.get(&policy.id, email).is_none()
            })
            .collect();
        if extras.is_empty() {
            continue;
        }
        let why = format!(
            "not asked for by any PolicyAccess ({} is Authoritative)",
            subject.key()
        );
        for (email, current) in extras {
            if let Some(because) = holds.why(&policy.id, email) {
                subject.hold(email, because);
                continue;
            }
            let change = revoke(policy, email, current, subject.key(), &why);
            planned.push(Planned {
                change,
                entry: None,
            });
        }
    }
    planned
}

/// Where removals are held, so are the demotions and revocations planned there: a broken
/// manifest may be the one asking for the person (or for the higher role).
pub(super) fn hold_removals(
    holds: &Holds,
    planned: &mut Vec<Planned>,
    subjects: &mut [Subject<'_>],
) {
    if !holds.any() {
        return;
    }
    planned.retain(|p| {
        if !p.change.is_removal() {
            return true;
        }
        let Some(because) = holds.why(&p.change.policy_id, &p.change.email) else {
            return true;
        };
        if let Some(subject) = resolve::find_mut(subjects, &p.change.requested_by) {
            subject.hold(&p.change.email, because);
        }
        false
    });
}

/// Objects whose removals are held get a block naming the people held and why.
pub(super) fn report_held(subjects: &mut [Subject<'_>]) {
    for subject in subjects.iter_mut() {
        if subject.held_because.is_empty() {
            continue;
        }
        let because = super::super::bounded::first_few(&subject.held_because, "; ");
        subject.plan.blocks.push(Block::Held(format!(
            "removal of {} held until every manifest that may ask for them can be read and is valid ({})",
            super::guard::name_people(&subject.plan.held),
            because
        )));
    }
}
