//! The write-ahead: the ledger entries about to be created, and the mass-revocation
//! allowances about to be used, saved before Expensify is written so a crash after the
//! write never loses ownership nor honours an allowance twice.

use std::collections::BTreeMap;

use super::request::SyncRequest;
use super::store::WriteRefused;
use crate::api::{ExpensifyConnectorStatus, PolicyAccessStatus};
use crate::reconcile::plan::Plan;
use crate::reconcile::status::handled;
use crate::reconcile::{ConnectorObject, ObjectKey};

/// Saves the write-ahead through the request's hook (none on a dry run); what it saved
/// is what the write starts from.
pub(super) async fn save_write_ahead(
    request: SyncRequest<'_>,
    plan: &Plan,
) -> Result<BTreeMap<ObjectKey, PolicyAccessStatus>, WriteRefused> {
    let statuses = write_ahead_statuses(request, plan);
    let connector = connector_allowance_status(request.connector, plan);
    if let Some(hook) = request.write_ahead {
        let (accesses, requests) = super::requests::split_write_ahead(request, &statuses);
        hook.save(&accesses, &requests, connector.as_ref()).await?;
    }
    Ok(statuses)
}

/// The statuses to save before the write: every object whose ledger the plan changes,
/// with the entries about to be created or updated marked pending.
pub fn write_ahead_statuses(
    request: SyncRequest<'_>,
    plan: &Plan,
) -> BTreeMap<ObjectKey, PolicyAccessStatus> {
    request
        .accesses
        .iter()
        .filter_map(|a| {
            let object_plan = plan.objects.get(&a.key)?;
            let mut ledger = object_plan.write_ahead_ledger();
            // Nothing is dropped before the write: a hand-off's gain is saved before its
            // loss, so a failed save in between never leaves an entry with nobody.
            for stored in a.ledger_entries() {
                if !ledger.iter().any(|e| e.key() == stored.key()) {
                    ledger.push(stored);
                }
            }
            ledger.sort();
            let mut status = a.status.clone().unwrap_or_default();
            let used = object_plan.mass_revocation_used.as_deref();
            if status.managed_members == ledger && used.is_none() {
                return None;
            }
            status.managed_members = ledger;
            record_allowance(
                &mut status.last_handled_mass_revocation,
                &mut status.handled_mass_revocations,
                used,
            );
            Some((a.key.clone(), status))
        })
        .collect()
}

/// Records an allowance value as used, before the removals it lets through are written,
/// so a crash after the write never honours it twice.
fn record_allowance(last: &mut Option<String>, remembered: &mut Vec<String>, used: Option<&str>) {
    if used.is_some() {
        *remembered = handled(std::mem::take(remembered), last.as_deref(), used);
        *last = used.map(str::to_string);
    }
}

/// The connector's status with its allowance recorded, when the plan uses it.
fn connector_allowance_status(
    connector: &ConnectorObject,
    plan: &Plan,
) -> Option<ExpensifyConnectorStatus> {
    let used = plan.connector_mass_revocation_used.as_deref()?;
    let mut status = connector.status.clone().unwrap_or_default();
    record_allowance(
        &mut status.last_handled_mass_revocation,
        &mut status.handled_mass_revocations,
        Some(used),
    );
    Some(status)
}

/// The plan with no allowance used (a write that did not happen used none).
pub(super) fn without_allowances(mut plan: Plan) -> Plan {
    plan.connector_mass_revocation_used = None;
    for object in plan.objects.values_mut() {
        object.mass_revocation_used = None;
    }
    plan
}
