//! One sync of one connector: read, plan, write in batches, re-read what was touched,
//! and derive every status from what Expensify then shows.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

use super::model::{AccessObject, ConnectorObject, ObjectKey, Observed};
use super::plan::{Change, ChangeKind, Plan, PlanInput, plan, summarize};
use super::status::{
    AccessFindings, ConnectorFindings, NotSynced, access_status, connector_status, unsynced_status,
};
use crate::api::{ExpensifyConnectorStatus, MemberFailure, PolicyAccessStatus, PolicyInfo};
use crate::email;
use crate::expensify::{CallCounts, ErrorKind, ExpensifyClient, ExpensifyError, UpdateReport};

/// What a sync is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct SyncRequest<'a> {
    pub connector: &'a ConnectorObject,
    pub accesses: &'a [AccessObject],
    pub now: Timestamp,
    pub inventory_complete: bool,
    /// Read and plan only; write nothing.
    pub dry_run: bool,
}

/// What happened to one planned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeResult {
    pub change: Change,
    /// `None` when Expensify shows the change; otherwise why not.
    pub failure: Option<String>,
}

/// The outcome of one sync of one connector.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub connector: ObjectKey,
    pub connector_status: ExpensifyConnectorStatus,
    /// The plan made from what Expensify showed before any write.
    pub plan: Plan,
    /// Every planned change and whether it landed (empty on a dry run).
    pub results: Vec<ChangeResult>,
    pub statuses: BTreeMap<ObjectKey, PolicyAccessStatus>,
    /// Deleting objects with nothing left to revoke: their finalizer may go.
    pub finished_deletions: Vec<ObjectKey>,
    /// What Expensify showed at the end, for `review` and `export`.
    pub observed: Observed,
    pub calls: CallCounts,
}

impl SyncReport {
    /// The earliest `expiresAt` still ahead, so the caller can schedule a sync for it.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.statuses
            .values()
            .filter_map(|s| s.next_expiry.as_ref().map(|t| t.0))
            .min()
    }
}

/// The report of a connector that could not sync at all (invalid spec, missing secret,
/// suspended): every object on it gets the reason, nothing is read or written.
pub fn unsynced(
    request: SyncRequest<'_>,
    reason: &str,
    message: &str,
    suspended: bool,
) -> SyncReport {
    let connector = request.connector;
    let findings = ConnectorFindings {
        problem: Some((reason.to_string(), message.to_string())),
        suspended,
        ..ConnectorFindings::default()
    };
    let problem = if suspended {
        format!("connector {} is suspended", connector.key)
    } else {
        format!("connector {}: {message}", connector.key)
    };
    let statuses = request
        .accesses
        .iter()
        .filter(|a| a.connector_key() == connector.key)
        .map(|a| {
            let why = NotSynced::ConnectorDown {
                message: problem.clone(),
                suspended,
            };
            (a.key.clone(), unsynced_status(a, why, request.now))
        })
        .collect();
    SyncReport {
        connector: connector.key.clone(),
        connector_status: connector_status(connector, findings, request.now),
        plan: Plan::default(),
        results: Vec::new(),
        statuses,
        finished_deletions: Vec::new(),
        observed: Observed::default(),
        calls: CallCounts::default(),
    }
}

fn reason_for(error: &ExpensifyError) -> &'static str {
    match error.kind {
        ErrorKind::CredentialsRejected { .. } => "AuthenticationFailed",
        ErrorKind::PermissionDenied { .. } => "PermissionDenied",
        ErrorKind::RateLimited { .. } => "RateLimited",
        _ => "ExpensifyError",
    }
}

async fn read(client: &ExpensifyClient) -> Result<Observed, ExpensifyError> {
    let policies = client.list_policies(true).await?;
    let ids: Vec<String> = policies.iter().map(|p| p.id.clone()).collect();
    let rosters = client.read_rosters(&ids).await?;
    Ok(Observed { policies, rosters })
}

/// Runs one sync of one connector.
pub async fn sync_connector(request: SyncRequest<'_>, client: &ExpensifyClient) -> SyncReport {
    let connector = request.connector;
    let calls_before = client.counts();
    let observed = match read(client).await {
        Ok(observed) => observed,
        Err(error) => {
            warn!(connector = %connector.key, error = %error, "reading Expensify failed");
            let mut report = unsynced(request, reason_for(&error), &error.to_string(), false);
            report.calls = delta(client.counts(), calls_before);
            return report;
        }
    };
    let input = PlanInput {
        connector,
        accesses: request.accesses,
        observed: &observed,
        now: request.now,
        inventory_complete: request.inventory_complete,
    };
    let before = plan(input);
    if request.dry_run {
        let statuses = statuses_for(request, &before, &before, &observed, &BTreeMap::new());
        let connector_status =
            connector_status(connector, connector_findings(&observed, None), request.now);
        return SyncReport {
            connector: connector.key.clone(),
            connector_status,
            plan: before,
            results: Vec::new(),
            statuses,
            finished_deletions: Vec::new(),
            observed,
            calls: delta(client.counts(), calls_before),
        };
    }

    let mut after_observed = observed.clone();
    let mut results = Vec::new();
    let mut reread_error = None;
    if !before.changes.is_empty() {
        let records: Vec<_> = before.changes.iter().map(Change::record).collect();
        let written = client.update_employees(&records, false).await;
        let touched: BTreeSet<String> =
            before.changes.iter().map(|c| c.policy_id.clone()).collect();
        let touched: Vec<String> = touched.into_iter().collect();
        match client.read_rosters(&touched).await {
            Ok(rosters) => after_observed.rosters.extend(rosters),
            Err(error) => {
                warn!(connector = %connector.key, error = %error, "re-reading rosters after the write failed");
                reread_error = Some(error);
            }
        }
        results = judge(
            &before.changes,
            &written,
            &after_observed,
            reread_error.as_ref(),
        );
        for result in &results {
            log_result(result);
        }
    }

    // The inventory is what was meant to be managed and Expensify now shows.
    let failures = failures_by_object(&results);
    let mut next_accesses = request.accesses.to_vec();
    for access in &mut next_accesses {
        if let Some(object_plan) = before.objects.get(&access.key) {
            let mut status = access.status.clone().unwrap_or_default();
            status.managed_members =
                confirmed_inventory(object_plan, &after_observed, reread_error.is_some());
            status.last_handled_mass_revocation = object_plan
                .mass_revocation_used
                .clone()
                .or(status.last_handled_mass_revocation);
            access.status = Some(status);
        }
    }
    let after = plan(PlanInput {
        accesses: &next_accesses,
        observed: &after_observed,
        ..input
    });
    let mut statuses = statuses_for(
        SyncRequest {
            accesses: &next_accesses,
            ..request
        },
        &before,
        &after,
        &after_observed,
        &failures,
    );
    let finished_deletions = next_accesses
        .iter()
        .filter(|a| a.deleting)
        .filter(|a| {
            statuses
                .get(&a.key)
                .is_none_or(|s| s.managed_members.is_empty())
        })
        .map(|a| a.key.clone())
        .collect();
    let problem = reread_error.map(|e| {
        (
            reason_for(&e).to_string(),
            format!("changes were sent but could not be verified: {e}"),
        )
    });
    let mut findings = connector_findings(&after_observed, problem);
    findings.mass_revocation_used = before.connector_mass_revocation_used.clone();
    if let Some((_, message)) = &findings.problem {
        for status in statuses.values_mut() {
            status.message = Some(message.clone());
        }
    }
    SyncReport {
        connector: connector.key.clone(),
        connector_status: connector_status(connector, findings, request.now),
        plan: before,
        results,
        statuses,
        finished_deletions,
        observed: after_observed,
        calls: delta(client.counts(), calls_before),
    }
}

fn delta(now: CallCounts, before: CallCounts) -> CallCounts {
    CallCounts {
        policy_list: now.policy_list - before.policy_list,
        roster_reads: now.roster_reads - before.roster_reads,
        employee_updates: now.employee_updates - before.employee_updates,
        retries: now.retries - before.retries,
        failures: now.failures - before.failures,
    }
}

fn connector_findings(observed: &Observed, problem: Option<(String, String)>) -> ConnectorFindings {
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
            employee_count: observed.rosters.get(&p.id).map_or(0, |r| r.len() as i64),
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

fn present(observed: &Observed, policy_id: &str) -> BTreeMap<String, String> {
    observed
        .rosters
        .get(policy_id)
        .map(|r| {
            r.iter()
                .map(|e| (email::normalize(&e.email), e.role.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn confirmed_inventory(
    object_plan: &super::plan::ObjectPlan,
    observed: &Observed,
    unverified: bool,
) -> Vec<String> {
    let Some(policy_id) = &object_plan.policy_id else {
        return object_plan.managed.iter().cloned().collect();
    };
    if unverified || !observed.rosters.contains_key(policy_id) {
        return object_plan.managed.iter().cloned().collect();
    }
    let roster = present(observed, policy_id);
    object_plan
        .managed
        .iter()
        .filter(|e| roster.contains_key(*e))
        .cloned()
        .collect()
}

/// Whether each change shows in the re-read rosters, and if not, the best reason known.
fn judge(
    changes: &[Change],
    written: &UpdateReport,
    after: &Observed,
    reread: Option<&ExpensifyError>,
) -> Vec<ChangeResult> {
    let mut batch_errors: BTreeMap<(String, String), String> = BTreeMap::new();
    for batch in &written.failed {
        for record in &batch.records {
            batch_errors.insert(
                (
                    record.policy_id.clone(),
                    email::normalize(&record.employee_email),
                ),
                batch.error.to_string(),
            );
        }
    }
    let skipped: BTreeMap<String, String> = written
        .outcome
        .skipped
        .iter()
        .map(|s| (email::normalize(&s.email), s.reason.clone()))
        .collect();
    changes
        .iter()
        .map(|change| {
            let failure = if let Some(error) = reread {
                Some(format!("could not verify: {error}"))
            } else {
                let roster = present(after, &change.policy_id);
                let landed = match change.kind {
                    ChangeKind::Revoke => !roster.contains_key(&change.email),
                    _ => roster
                        .get(&change.email)
                        .is_some_and(|role| Some(role.as_str()) == change.role.map(|r| r.as_str())),
                };
                (!landed).then(|| {
                    batch_errors
                        .get(&(change.policy_id.clone(), change.email.clone()))
                        .or_else(|| skipped.get(&change.email))
                        .cloned()
                        .unwrap_or_else(|| {
                            "Expensify accepted the change but does not show it".to_string()
                        })
                })
            };
            ChangeResult {
                change: change.clone(),
                failure,
            }
        })
        .collect()
}

/// Rule 7: one structured line per change.
fn log_result(result: &ChangeResult) {
    let change = &result.change;
    let role = change.role.map(|r| r.to_string()).unwrap_or_default();
    let old_role = change.old_role.clone().unwrap_or_default();
    match &result.failure {
        None => info!(
            action = change.kind.verb(),
            email = %change.email,
            policy_id = %change.policy_id,
            policy = %change.policy_name,
            role = %role,
            old_role = %old_role,
            object = %change.requested_by,
            "access changed"
        ),
        Some(reason) => warn!(
            action = change.kind.verb(),
            email = %change.email,
            policy_id = %change.policy_id,
            policy = %change.policy_name,
            role = %role,
            old_role = %old_role,
            object = %change.requested_by,
            reason = %reason,
            "access change not applied"
        ),
    }
}

fn failures_by_object(results: &[ChangeResult]) -> BTreeMap<ObjectKey, Vec<MemberFailure>> {
    let mut failures: BTreeMap<ObjectKey, Vec<MemberFailure>> = BTreeMap::new();
    for result in results {
        if let Some(reason) = &result.failure {
            failures
                .entry(result.change.requested_by.clone())
                .or_default()
                .push(MemberFailure {
                    email: result.change.email.clone(),
                    reason: format!("{}: {reason}", result.change.kind.verb()),
                });
        }
    }
    failures
}

fn statuses_for(
    request: SyncRequest<'_>,
    before: &Plan,
    after: &Plan,
    observed: &Observed,
    failures: &BTreeMap<ObjectKey, Vec<MemberFailure>>,
) -> BTreeMap<ObjectKey, PolicyAccessStatus> {
    request
        .accesses
        .iter()
        .filter(|a| a.connector_key() == request.connector.key)
        .filter_map(|a| {
            let after_plan = after.objects.get(&a.key)?;
            let before_plan = before.objects.get(&a.key);
            let managed = if request.dry_run {
                a.previously_managed()
            } else {
                let confirmed = confirmed_inventory(after_plan, observed, false);
                confirmed.into_iter().collect()
            };
            let findings = AccessFindings {
                object: a,
                after: after_plan,
                managed,
                attempted: summarize(before.changes.iter().filter(|c| c.requested_by == a.key)),
                failures: failures.get(&a.key).cloned().unwrap_or_default(),
                connector_problem: None,
                connector_suspended: false,
                mass_revocation_used: before_plan.and_then(|p| p.mass_revocation_used.clone()),
            };
            Some((a.key.clone(), access_status(findings, request.now)))
        })
        .collect()
}
