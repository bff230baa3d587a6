//! Every status a sync leaves: each object's from the plans before and after the write
//! and the changes that failed, the connector's from what Expensify showed, and the order
//! to save them in.

use std::collections::{BTreeMap, BTreeSet};

use super::request::SyncRequest;
use super::verify::ChangeResult;
use super::write::Written;
use crate::api::{MemberFailure, PolicyAccessStatus, PolicyInfo, Reason};
use crate::email;
use crate::reconcile::plan::Plan;
use crate::reconcile::status::{AccessFindings, ConnectorFindings, access_status};
use crate::reconcile::{AccessObject, ObjectKey, Observed};

/// The order to save statuses in: objects that gain ledger entries before the others, so
/// that an entry handed from one object to another is never saved as held by neither.
pub(super) fn save_order(
    accesses: &[AccessObject],
    statuses: &BTreeMap<ObjectKey, PolicyAccessStatus>,
) -> Vec<ObjectKey> {
    let gains = |key: &ObjectKey, status: &PolicyAccessStatus| {
        let before = accesses
            .iter()
            .find(|a| &a.key == key)
            .map(AccessObject::ledger_entries)
            .unwrap_or_default();
        status
            .managed_members
            .iter()
            .any(|e| !before.iter().any(|b| b.key() == e.key()))
    };
    let (first, then): (Vec<_>, Vec<_>) = statuses
        .iter()
        .map(|(key, status)| (key.clone(), gains(key, status)))
        .partition(|(_, gains)| *gains);
    first.into_iter().chain(then).map(|(key, _)| key).collect()
}

pub(super) fn connector_findings(
    observed: &Observed,
    problem: Option<(Reason, String)>,
) -> ConnectorFindings {
    let people: BTreeSet<String> = observed
        .rosters
        .values()
        .flatten()
        .map(|e| email::normalize(&e.email))
        .collect();
    let policies = observed
        .policies
        .iter()
        .map(|p| PolicyInfo {
            id: p.id.clone(),
            name: p.name.clone(),
            plan: p.plan.clone(),
            owner: p.owner.clone(),
            employee_count: observed
                .rosters
                .get(&p.id)
                .map_or(0, |r| i64::try_from(r.len()).unwrap_or(i64::MAX)),
        })
        .collect();
    ConnectorFindings {
        policies,
        user_count: people.len(),
        problem,
        mass_revocation_used: None,
        suspended: false,
    }
}

pub(super) fn failures_by_object(
    results: &[ChangeResult],
) -> BTreeMap<ObjectKey, Vec<MemberFailure>> {
    let mut failures: BTreeMap<ObjectKey, Vec<MemberFailure>> = BTreeMap::new();
    for result in results {
        if let Some(reason) = &result.failure {
            failures
                .entry(result.change.requested_by.clone())
                .or_default()
                .push(MemberFailure {
                    email: result.change.email.clone(),
                    // What was asked, so the failure says which approver or role did not land.
                    reason: format!(
                        "{} ({}): {reason}",
                        result.change.kind.verb(),
                        result.change.detail()
                    ),
                });
        }
    }
    failures
}

pub(super) fn statuses_for(
    request: SyncRequest<'_>,
    before: &Plan,
    after: &Plan,
    failures: &BTreeMap<ObjectKey, Vec<MemberFailure>>,
    written: &Written,
) -> BTreeMap<ObjectKey, PolicyAccessStatus> {
    request
        .accesses
        .iter()
        .filter_map(|a| {
            let after_plan = after.objects.get(&a.key)?;
            let before_plan = before.objects.get(&a.key);
            // Unverified writes keep the ledger saved before them, pending entries and all.
            let ledger = match written.write_ahead.get(&a.key) {
                Some(saved) if !written.verified => saved.managed_members.clone(),
                _ if !written.verified => a.ledger_entries(),
                _ => after_plan.ledger.clone(),
            };
            // What the plan before the write left alone is said in the status too.
            let mut after_plan = after_plan.clone();
            for note in before_plan.iter().flat_map(|p| &p.notes) {
                if !after_plan.notes.contains(note) {
                    after_plan.notes.push(note.clone());
                }
            }
            let findings = AccessFindings {
                object: a,
                after: &after_plan,
                managed: ledger,
                // The planner's per-object count of `before.changes` (a filter of every
                // change per object would be objects x changes).
                attempted: before_plan.map(|p| p.planned).unwrap_or_default(),
                failures: failures.get(&a.key).cloned().unwrap_or_default(),
                connector_problem: None,
                connector_suspended: false,
                mass_revocation_used: before_plan.and_then(|p| p.mass_revocation_used.clone()),
            };
            Some((a.key.clone(), access_status(findings, request.now)))
        })
        .collect()
}
