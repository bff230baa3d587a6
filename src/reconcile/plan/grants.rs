//! Phase 4: grants, role changes and attribute changes for the people writers ask for,
//! each with the ledger entry it creates or updates (saved, pending, before the write).

use std::collections::BTreeSet;

use super::asks::Ask;
use super::claims::{Claim, Claims, settled_role};
use super::holds::Stranded;
use super::ledger::Ledger;
use super::resolve::{self, Subject};
use super::types::{Block, Change, ChangeKind, Planned};
use super::world::{PolicyView, RosterView, World};
use crate::api::ManagedMember;
use crate::expensify::Role;

/// What the writers of one person agree on.
struct Asked<'c> {
    role: Role,
    submits_to: Option<String>,
    employee_id: Option<String>,
    requester: &'c Claim<'c>,
}

fn asked<'c>(
    writers: &[&'c Claim<'c>],
    ledger: &Ledger,
    (policy, email): (&str, &str),
    current: Option<&RosterView>,
) -> Asked<'c> {
    let holder = ledger.get(policy, email).map(|h| &h.holder);
    let role = settled_role(
        writers,
        ledger.own_role((policy, email), current.and_then(|c| c.role), writers),
    );
    // The write is for a writer that asks the role written: the entry's holder if it does
    // (the entry stays), else the first that does (say a request raising over a member's
    // role: the entry goes to it, and its end takes the raise back).
    let asks_it = |c: &&&Claim<'c>| role.is_none_or(|role| c.wanted.role >= role);
    let requester = writers
        .iter()
        .find(|c| Some(c.key) == holder && asks_it(c))
        .or_else(|| writers.iter().find(asks_it))
        .unwrap_or(&writers[0]);
    let first = |pick: fn(&Ask) -> Option<String>| writers.iter().find_map(|c| pick(&c.wanted));
    Asked {
        role: role.unwrap_or(requester.wanted.role),
        submits_to: first(|w| w.submits_to.clone()),
        employee_id: first(|w| w.employee_id.clone()),
        requester,
    }
}

/// Plans the writes for every person writers ask for (contested people excepted).
pub(super) fn plan_writes(
    (claims, contested): (&Claims, &BTreeSet<(String, String)>),
    (ledger, stranded): (&Ledger, &Stranded),
    world: &World<'_>,
    subjects: &mut [Subject<'_>],
) -> Vec<Planned> {
    let mut planned = Vec::new();
    for (policy_id, email, writers) in claims.writers() {
        let Some(policy) = world.policies.get(policy_id) else {
            continue;
        };
        let current = policy.roster.get(email);
        // Conflicts are rare: the key is built (two strings) only when there are some.
        let is_contested = !contested.is_empty()
            && contested.contains(&(policy_id.to_string(), email.to_string()));
        let asked = if is_contested {
            let holder_frozen = ledger.get(policy_id, email).is_some_and(|held| {
                resolve::find(subjects, &held.holder)
                    .is_some_and(|s| s.standing == resolve::Standing::Frozen)
            });
            let every_claim = claims.of(policy_id, email);
            match unasked_raise(
                (&writers, every_claim),
                (ledger, holder_frozen),
                (policy_id, email),
                current,
            ) {
                Some(lowered) => lowered,
                None => continue,
            }
        } else {
            asked(&writers, ledger, (policy_id, email), current)
        };
        let Some(kind) = kind_of_change(&asked, current) else {
            continue;
        };
        if world.is_protected(policy, email) {
            let message = format!(
                "{email} is protected (policy owner, connector adminEmail or protectedEmails) on policy {}: the operator does not {} them",
                policy.name,
                kind.verb()
            );
            for claim in &writers {
                if let Some(subject) = resolve::find_mut(subjects, claim.key) {
                    subject.plan.blocks.push(Block::Protected(message.clone()));
                }
            }
            continue;
        }
        planned.push(write(
            kind,
            &asked,
            (policy, email, current),
            (ledger, &writers),
            stranded,
        ));
    }
    planned
}

/// Writers that disagree leave the person as they are, except at a role the operator set
/// that no claim at all asks for (a request's raise that ended into their disagreement):
/// a claim that ended takes back what it gave, so that role comes down to the highest one
/// the writers still ask. The disagreement itself stays a `Conflict`. A suspended holder
/// freezes its entry, and an object that writes nothing but lists the role keeps it.
fn unasked_raise<'c>(
    (writers, every_claim): (&[&'c Claim<'c>], &[Claim<'_>]),
    (ledger, holder_frozen): (&Ledger, bool),
    (policy, email): (&str, &str),
    current: Option<&RosterView>,
) -> Option<Asked<'c>> {
    let current = current?.role?;
    let held = ledger.get(policy, email)?;
    let set_by_operator =
        !held.entry.pending && held.entry.role.as_deref().and_then(Role::parse) == Some(current);
    let still_asked = every_claim.iter().any(|c| c.wanted.role >= current);
    // The demotion is the writers' doing, never a request's (a request never demotes).
    let highest = writers
        .iter()
        .filter(|c| !c.is_request())
        .max_by_key(|c| c.wanted.role)?;
    (set_by_operator && !holder_frozen && !still_asked).then(|| Asked {
        role: highest.wanted.role,
        submits_to: None,
        employee_id: None,
        requester: highest,
    })
}

/// The change a person needs, if any.
fn kind_of_change(asked: &Asked<'_>, current: Option<&RosterView>) -> Option<ChangeKind> {
    let Some(current) = current else {
        return Some(ChangeKind::Grant);
    };
    if current.role != Some(asked.role) {
        return Some(ChangeKind::RoleChange);
    }
    if asked.submits_to.is_some() && asked.submits_to != current.submits_to {
        return Some(ChangeKind::ApproverChange);
    }
    if asked.employee_id.is_some() && asked.employee_id != current.employee_id {
        return Some(ChangeKind::EmployeeIdChange);
    }
    None
}

fn write(
    kind: ChangeKind,
    asked: &Asked<'_>,
    (policy, email, current): (&PolicyView, &str, Option<&RosterView>),
    (ledger, writers): (&Ledger, &[&Claim<'_>]),
    stranded: &Stranded,
) -> Planned {
    let change = Change {
        kind,
        policy_id: policy.id.clone(),
        policy_name: policy.name.clone(),
        email: email.to_string(),
        role: Some(asked.role),
        old_role: current.map(|c| c.raw_role.clone()),
        manager_email: asked
            .submits_to
            .clone()
            .or_else(|| current.and_then(|c| c.submits_to.clone()))
            .unwrap_or_else(|| policy.owner.clone()),
        employee_id: asked
            .employee_id
            .clone()
            .or_else(|| current.and_then(|c| c.employee_id.clone())),
        expect_submits_to: asked.submits_to.clone(),
        old_submits_to: current.and_then(|c| c.submits_to.clone()),
        old_employee_id: current.and_then(|c| c.employee_id.clone()),
        requested_by: asked.requester.key.clone(),
        reason: reason(kind, asked, current),
    };
    let entry = match kind {
        ChangeKind::Grant | ChangeKind::RoleChange => {
            Some(entry_for(&change, current, (ledger, writers), stranded))
        }
        _ => None,
    };
    Planned { change, entry }
}

fn reason(kind: ChangeKind, asked: &Asked<'_>, current: Option<&RosterView>) -> String {
    let now = |f: fn(&RosterView) -> Option<String>| {
        current.and_then(f).unwrap_or_else(|| "nothing".to_string())
    };
    match kind {
        ChangeKind::Grant => "asked for, not on the policy".to_string(),
        ChangeKind::RoleChange => format!(
            "role is {}, asked for {}",
            now(|c| Some(c.raw_role.clone())),
            asked.role
        ),
        ChangeKind::ApproverChange => format!(
            "submits to {}, asked for {}",
            now(|c| c.submits_to.clone()),
            asked.submits_to.as_deref().unwrap_or_default()
        ),
        ChangeKind::EmployeeIdChange => format!(
            "employeeID is {}, asked for {}",
            now(|c| c.employee_id.clone()),
            asked.employee_id.as_deref().unwrap_or_default()
        ),
        ChangeKind::Revoke => String::new(),
    }
}

/// The entry a grant or role change leaves, pending until a read shows it: a new one, or
/// the existing one with the new role and the confirmed one kept. The existing one stays
/// with its holder if that writes for the person at the role written or above; else it
/// goes to the object the write is for (its origin kept), whose end then takes the change
/// back: no object (ObserveOnly, suspended, or a writer asking less, say a tenant's with
/// a lower `maxRole`) holds a role set for another claim. A new
/// entry for someone a stranded entry speaks for keeps that entry's origin: the role the
/// person has now is the operator's own doing, not where they started.
fn entry_for(
    change: &Change,
    current: Option<&RosterView>,
    (ledger, writers): (&Ledger, &[&Claim<'_>]),
    stranded: &Stranded,
) -> (super::super::model::ObjectKey, ManagedMember) {
    if let (Some(held), Some(role)) = (ledger.get(&change.policy_id, &change.email), change.role) {
        let holder_asks_it = writers
            .iter()
            .any(|c| *c.key == held.holder && c.wanted.role >= role);
        let holder = if holder_asks_it {
            &held.holder
        } else {
            &change.requested_by
        };
        return (holder.clone(), super::ledger::rewritten(&held.entry, role));
    }
    let role = change.role.map(|r| r.to_string());
    let (added, previous_role) = match stranded.get(&change.policy_id, &change.email) {
        Some(origin) if current.is_some() => (origin.added, origin.previous_role.clone()),
        _ => (current.is_none(), current.map(|c| c.raw_role.clone())),
    };
    let entry = ManagedMember {
        policy_id: change.policy_id.clone(),
        email: change.email.clone(),
        added,
        previous_role,
        role,
        pending: true,
        prior_role: None,
        // Stamped with the connector when the plan is finished.
        connector: None,
    };
    (change.requested_by.clone(), entry)
}
