//! One sync of one connector: read, plan, write in batches, re-read what was touched,
//! and derive every status from what Expensify then shows.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use tracing::{debug, info, warn};

use super::model::{AccessObject, ConnectorObject, ObjectKey, Observed};
use super::plan::{Change, ChangeKind, Plan, PlanInput, plan, summarize};
use super::reviewed::ReviewedConnector;
use super::status::{
    AccessFindings, ConnectorFindings, NotSynced, access_status, connector_status, handled,
    unsynced_status,
};
use crate::api::{ExpensifyConnectorStatus, MemberFailure, PolicyAccessStatus, PolicyInfo, Reason};
use crate::email;
use crate::expensify::{
    CallCounts, ErrorKind, ExpensifyClient, ExpensifyError, Role, RosterEntry, UpdateReport,
};

/// What a sync is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct SyncRequest<'a> {
    pub connector: &'a ConnectorObject,
    /// Every connector that exists (see [`PlanInput::connectors`]).
    pub connectors: &'a [ConnectorObject],
    pub accesses: &'a [AccessObject],
    pub now: Timestamp,
    pub inventory_complete: bool,
    /// Read and plan only; write nothing.
    pub dry_run: bool,
    /// Saves the ledger entries about to be created before Expensify is written; its
    /// refusal (a stop was asked for, leadership was lost, the save failed) stops the write.
    pub write_ahead: Option<&'a dyn WriteAhead>,
    /// `apply --plan`: write only if the plan now is exactly this reviewed one.
    pub reviewed: Option<&'a ReviewedConnector>,
}

/// Why the write did not go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WriteRefused(pub String);

/// Where the ledger is saved before the employee-updater call (status files in file mode,
/// object status in the cluster): the write-ahead that keeps ownership across a crash.
pub trait WriteAhead: Send + Sync + std::fmt::Debug {
    /// Saves these statuses (the objects whose ledger changes or whose allowance is used)
    /// and, when the connector's allowance is used, the connector's; or refuses the write.
    fn save<'a>(
        &'a self,
        statuses: &'a BTreeMap<ObjectKey, PolicyAccessStatus>,
        connector: Option<&'a ExpensifyConnectorStatus>,
    ) -> BoxFuture<'a, Result<(), WriteRefused>>;
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
    /// Set when the write was refused before it was made (stop, lost leadership, save).
    pub refused: Option<WriteRefused>,
    /// The keys of `statuses` in the order to save them (gains of ledger entries first).
    pub save_order: Vec<ObjectKey>,
}

impl SyncReport {
    /// Every status, in the order to save them: see `save_order`.
    pub fn statuses_in_save_order(
        &self,
    ) -> impl Iterator<Item = (&ObjectKey, &PolicyAccessStatus)> {
        let listed = self
            .save_order
            .iter()
            .filter_map(|key| self.statuses.get_key_value(key));
        let rest = self
            .statuses
            .iter()
            .filter(|(key, _)| !self.save_order.contains(key));
        listed.chain(rest)
    }

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
    reason: Reason,
    message: &str,
    suspended: bool,
) -> SyncReport {
    let connector = request.connector;
    let findings = ConnectorFindings {
        problem: Some((reason, message.to_string())),
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
        .filter(|a| super::validate::connector_allows(connector, &a.key.namespace))
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
        refused: None,
        save_order: Vec::new(),
    }
}

fn reason_for(error: &ExpensifyError) -> Reason {
    match error.kind {
        ErrorKind::CredentialsRejected { .. } => Reason::AuthenticationFailed,
        ErrorKind::PermissionDenied { .. } => Reason::PermissionDenied,
        ErrorKind::RateLimited { .. } => Reason::RateLimited,
        _ => Reason::ExpensifyError,
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
            // The report carries it to whoever reports the sync (one message per failure).
            debug!(connector = %connector.key, error = %error, "reading Expensify failed");
            let mut report = unsynced(request, reason_for(&error), &error.to_string(), false);
            report.calls = delta(client.counts(), calls_before);
            return report;
        }
    };
    let plan_for = |accesses: &[AccessObject], observed: &Observed| {
        plan(PlanInput {
            connector,
            connectors: request.connectors,
            accesses,
            observed,
            now: request.now,
            inventory_complete: request.inventory_complete,
            scope: crate::reconcile::plan::Scope::Everything,
        })
    };
    let before = plan_for(request.accesses, &observed);
    let nothing = Written::nothing;
    if request.dry_run || before.changes.is_empty() {
        return finish(
            request,
            client,
            calls_before,
            before.clone(),
            &before,
            nothing(observed),
        );
    }
    let moved = request
        .reviewed
        .map(|reviewed| reviewed.moved(&before, &observed))
        .unwrap_or_default();
    if !moved.is_empty() {
        let refused = WriteRefused(format!(
            "the plan moved since it was reviewed: {}",
            super::bounded::first_few(&moved, "; ")
        ));
        return refuse_before_write(request, client, calls_before, before, observed, &refused);
    }
    let write_ahead = write_ahead_statuses(request, &before);
    let connector_ahead = connector_allowance_status(connector, &before);
    if let Some(hook) = request.write_ahead
        && let Err(refused) = hook.save(&write_ahead, connector_ahead.as_ref()).await
    {
        return refuse_before_write(request, client, calls_before, before, observed, &refused);
    }
    let written = write(&connector.key, client, &before, observed, write_ahead).await;
    let after = if written.verified {
        plan_for(
            &with_ledgers(request.accesses, &written.write_ahead),
            &written.observed,
        )
    } else {
        before.clone()
    };
    finish(request, client, calls_before, before, &after, written)
}

/// The report of a sync whose write did not go ahead: nothing was written and no
/// allowance was used up.
fn refuse_before_write(
    request: SyncRequest<'_>,
    client: &ExpensifyClient,
    calls_before: CallCounts,
    before: Plan,
    observed: Observed,
    refused: &WriteRefused,
) -> SyncReport {
    warn!(connector = %request.connector.key, reason = %refused, "changes not written");
    let unused = without_allowances(before);
    let mut report = finish(
        request,
        client,
        calls_before,
        unused.clone(),
        &unused,
        Written::nothing(observed),
    );
    refuse(&mut report, refused);
    report
}

/// What the write left: the rosters then, whether they were re-read, and each result.
struct Written {
    observed: Observed,
    verified: bool,
    /// The ledger saved before the write, per object (kept as is when not verified).
    write_ahead: BTreeMap<ObjectKey, PolicyAccessStatus>,
    results: Vec<ChangeResult>,
    problem: Option<(Reason, String)>,
}

impl Written {
    fn nothing(observed: Observed) -> Self {
        Written {
            observed,
            verified: true,
            write_ahead: BTreeMap::new(),
            results: Vec::new(),
            problem: None,
        }
    }
}

/// The employee-updater call, then the re-read of the rosters it touched. `write_ahead` is
/// what was saved before it.
async fn write(
    connector: &ObjectKey,
    client: &ExpensifyClient,
    before: &Plan,
    observed: Observed,
    write_ahead: BTreeMap<ObjectKey, PolicyAccessStatus>,
) -> Written {
    let records: Vec<_> = before.changes.iter().map(Change::record).collect();
    let written = client.update_employees(&records, false).await;
    let touched: BTreeSet<String> = before.changes.iter().map(|c| c.policy_id.clone()).collect();
    let touched: Vec<String> = touched.into_iter().collect();
    let mut after_observed = observed;
    let reread = client.read_rosters(&touched).await;
    let reread_error = match reread {
        Ok(rosters) => {
            after_observed.rosters.extend(rosters);
            None
        }
        Err(error) => {
            warn!(connector = %connector, error = %error, "re-reading rosters after the write failed");
            Some(error)
        }
    };
    let results = judge(
        &before.changes,
        &written,
        &after_observed,
        reread_error.as_ref(),
    );
    for result in &results {
        log_result(result);
    }
    Written {
        observed: after_observed,
        verified: reread_error.is_none(),
        write_ahead,
        results,
        problem: reread_error.map(|e| {
            (
                reason_for(&e),
                format!("changes were sent but could not be verified (kept as pending until a read shows them): {e}"),
            )
        }),
    }
}

/// The objects as they stand once the write-ahead statuses are saved.
fn with_ledgers(
    accesses: &[AccessObject],
    saved: &BTreeMap<ObjectKey, PolicyAccessStatus>,
) -> Vec<AccessObject> {
    accesses
        .iter()
        .map(|a| {
            let mut next = a.clone();
            if let Some(status) = saved.get(&a.key) {
                next.status = Some(status.clone());
            }
            next
        })
        .collect()
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
fn without_allowances(mut plan: Plan) -> Plan {
    plan.connector_mass_revocation_used = None;
    for object in plan.objects.values_mut() {
        object.mass_revocation_used = None;
    }
    plan
}

/// Statuses and the report, from the plan before the write and the one after it.
fn finish(
    request: SyncRequest<'_>,
    client: &ExpensifyClient,
    calls_before: CallCounts,
    before: Plan,
    after: &Plan,
    written: Written,
) -> SyncReport {
    let connector = request.connector;
    let failures = failures_by_object(&written.results);
    let mut statuses = statuses_for(request, &before, after, &failures, &written);
    let finished_deletions = request
        .accesses
        .iter()
        .filter(|a| a.deleting && statuses.contains_key(&a.key))
        .filter(|a| {
            statuses
                .get(&a.key)
                .is_none_or(|s| s.managed_members.is_empty())
        })
        .map(|a| a.key.clone())
        .collect();
    let mut findings = connector_findings(&written.observed, written.problem.clone());
    findings
        .mass_revocation_used
        .clone_from(&before.connector_mass_revocation_used);
    if let Some((_, message)) = &findings.problem {
        for status in statuses.values_mut() {
            status.message = Some(message.clone());
        }
    }
    let save_order = save_order(request.accesses, &statuses);
    SyncReport {
        connector: connector.key.clone(),
        connector_status: connector_status(connector, findings, request.now),
        plan: before,
        results: written.results,
        save_order,
        statuses,
        finished_deletions,
        observed: written.observed,
        calls: delta(client.counts(), calls_before),
        refused: None,
    }
}

/// The order to save statuses in: objects that gain ledger entries before the others, so
/// that an entry handed from one object to another is never saved as held by neither.
fn save_order(
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

/// A write that did not go ahead: the connector says why; nothing changed in Expensify.
fn refuse(report: &mut SyncReport, refused: &WriteRefused) {
    let message = format!("changes were not written: {refused}");
    for status in report.statuses.values_mut() {
        status.message = Some(message.clone());
    }
    report.connector_status.message = Some(message);
    report.refused = Some(refused.clone());
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

fn connector_findings(observed: &Observed, problem: Option<(Reason, String)>) -> ConnectorFindings {
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

fn present<'a>(observed: &'a Observed, policy_id: &str) -> BTreeMap<String, &'a RosterEntry> {
    observed
        .rosters
        .get(policy_id)
        .map(|r| r.iter().map(|e| (email::normalize(&e.email), e)).collect())
        .unwrap_or_default()
}

/// Whether Expensify shows every attribute the change wrote.
fn landed(change: &Change, shown: Option<&RosterEntry>) -> bool {
    let Some(shown) = shown else {
        return change.kind == ChangeKind::Revoke;
    };
    if change.kind == ChangeKind::Revoke {
        return false;
    }
    let role = change.role.is_some() && change.role == Role::parse(&shown.role);
    let approver = change.expect_submits_to.as_deref().is_none_or(|want| {
        shown.submits_to.as_deref().map(email::normalize).as_deref() == Some(want)
    });
    let employee_id = change
        .employee_id
        .as_deref()
        .is_none_or(|want| shown.employee_id.as_deref() == Some(want));
    role && approver && employee_id
}

/// What the roster shows of a change that did not land, for the failure message.
fn shown_as(shown: Option<&RosterEntry>) -> String {
    match shown {
        None => "not on the policy".to_string(),
        Some(s) => format!(
            "shows role {}, submits to {}, employeeID {}",
            s.role,
            s.submits_to.as_deref().unwrap_or("nobody"),
            s.employee_id.as_deref().unwrap_or("none")
        ),
    }
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
                let shown = roster.get(&change.email).copied();
                (!landed(change, shown)).then(|| {
                    batch_errors
                        .get(&(change.policy_id.clone(), change.email.clone()))
                        .or_else(|| skipped.get(&change.email))
                        .cloned()
                        .unwrap_or_else(|| {
                            format!(
                                "Expensify accepted the change but does not show it ({})",
                                shown_as(shown)
                            )
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

fn statuses_for(
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
