//! Phase 7: what still differs from the spec, per object, as the status reports it.

use super::claims::{Claims, settled_role};
use super::ledger::Ledger;
use super::resolve::Subject;
use super::world::World;
use crate::api::{AccessMode, Drift, DriftKind};

/// Missing people and other roles for what the object asks; people nobody asks for on
/// Authoritative and ObserveOnly objects; people it holds but no longer wants on Additive.
pub(super) fn report(
    subject: &mut Subject<'_>,
    claims: &Claims,
    ledger: &Ledger,
    world: &World<'_>,
) {
    if subject.object.deleting {
        return;
    }
    let Some(policy) = subject
        .policy
        .as_ref()
        .and_then(|id| world.policies.get(id))
    else {
        return;
    };
    subject.plan.desired = subject.wanted.len();
    let mut drift = Vec::new();
    for wanted in subject.wanted.iter() {
        match policy.roster.get(&wanted.email) {
            None => drift.push(Drift {
                email: wanted.email.clone(),
                kind: DriftKind::Missing,
                desired: Some(wanted.role.to_string()),
                actual: None,
            }),
            // A role an active request raised (or a lower request left) is the settled one.
            Some(current)
                if current.role != Some(wanted.role)
                    && current.role
                        != settled(claims, ledger, &policy.id, &wanted.email, current.role) =>
            {
                drift.push(Drift {
                    email: wanted.email.clone(),
                    kind: DriftKind::RoleMismatch,
                    desired: Some(wanted.role.to_string()),
                    actual: Some(current.raw_role.clone()),
                });
            }
            Some(_) => subject.plan.in_sync += 1,
        }
    }
    let extra = |email: &String| match subject.object.spec.mode {
        AccessMode::Authoritative | AccessMode::ObserveOnly => {
            !world.is_protected(policy, email) && !claims.is_claimed(&policy.id, email)
        }
        AccessMode::Additive => {
            !subject.wanted.contains(email)
                && ledger
                    .get(&policy.id, email)
                    .is_some_and(|h| &h.holder == subject.key())
        }
    };
    for (email, current) in policy.roster.iter().filter(|(email, _)| extra(email)) {
        drift.push(Drift {
            email: email.clone(),
            kind: DriftKind::Extra,
            desired: None,
            actual: Some(current.raw_role.clone()),
        });
    }
    drift.sort_by(|a, b| (a.kind, &a.email).cmp(&(b.kind, &b.email)));
    subject.plan.drift = drift;
}

/// The role the writers of one person settle on (see [`settled_role`]).
fn settled(
    claims: &Claims,
    ledger: &Ledger,
    policy: &str,
    email: &str,
    current: Option<crate::expensify::Role>,
) -> Option<crate::expensify::Role> {
    let writers: Vec<_> = claims
        .of(policy, email)
        .iter()
        .filter(|c| c.writes)
        .collect();
    settled_role(
        &writers,
        ledger.own_role((policy, email), current, &writers),
    )
}
