//! What one sync of one connector reports: the plan, each change's result, every status,
//! and how those are put together at the end of a sync (or when it stops early).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use tracing::{debug, warn};

use super::request::SyncRequest;
use super::statuses::{connector_findings, failures_by_object, save_order, statuses_for};
use super::store::WriteRefused;
use super::verify::ChangeResult;
use super::write::Written;
use super::write_ahead::without_allowances;
use crate::api::{
    AccessDecisionStatus, AccessRequestStatus, ExpensifyConnectorStatus, PolicyAccessStatus, Reason,
};
use crate::expensify::{CallCounts, ExpensifyClient, ExpensifyError};
use crate::notify::Notification;
use crate::reconcile::plan::Plan;
use crate::reconcile::status::{ConnectorFindings, NotSynced, connector_status, unsynced_status};
use crate::reconcile::validate::connector_allows;
use crate::reconcile::{ObjectKey, Observed};

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
    /// The new status of every access request on the connector's objects.
    pub request_statuses: BTreeMap<ObjectKey, AccessRequestStatus>,
    /// Whether each decision counted, and why not.
    pub decision_statuses: BTreeMap<ObjectKey, AccessDecisionStatus>,
    /// Deleting requests whose entry is settled: their finalizer may go.
    pub finished_request_deletions: Vec<ObjectKey>,
    /// The earliest `creation + pendingTimeout` of a Pending request: a sync must see it
    /// expire then, not at the next interval.
    pub pending_deadline: Option<Timestamp>,
    /// What the outcome calls for telling, not sent before (see `sync::notifications`);
    /// the adapter hands them to the sender.
    pub notifications: Vec<Notification>,
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

    /// The earliest `expiresAt` still ahead (of a member or of an active access
    /// request) or pending deadline, so the caller can schedule a sync for it.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        let requests = self
            .request_statuses
            .values()
            .filter(|s| s.phase == crate::api::RequestPhase::Active)
            .filter_map(|s| s.expires_at.as_ref().map(|t| t.0));
        self.statuses
            .values()
            .filter_map(|s| s.next_expiry.as_ref().map(|t| t.0))
            .chain(requests)
            .chain(self.pending_deadline)
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
        .filter(|a| connector_allows(connector, &a.key.namespace))
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
        request_statuses: BTreeMap::new(),
        decision_statuses: BTreeMap::new(),
        finished_request_deletions: Vec::new(),
        pending_deadline: None,
        notifications: Vec::new(),
    }
}

/// The report of a sync whose first read failed: nothing was written.
pub(super) fn read_failed(
    request: SyncRequest<'_>,
    client: &ExpensifyClient,
    calls_before: CallCounts,
    error: &ExpensifyError,
) -> SyncReport {
    // The report carries it to whoever reports the sync (one message per failure).
    debug!(connector = %request.connector.key, error = %error, "reading Expensify failed");
    let mut report = unsynced(
        request,
        super::read::reason_for(error),
        &error.to_string(),
        false,
    );
    report.calls = delta(client.counts(), calls_before);
    report
}

/// The report of a sync whose write did not go ahead: nothing was written and no
/// allowance was used up.
pub(super) fn refuse_before_write(
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
        unused,
        None,
        Written::nothing(observed),
    );
    refuse(&mut report, refused);
    report
}

/// Statuses and the report, from the plan before the write and the one after it (`None`:
/// nothing was written, the plan before stands).
pub(super) fn finish(
    request: SyncRequest<'_>,
    client: &ExpensifyClient,
    calls_before: CallCounts,
    before: Plan,
    after: Option<&Plan>,
    written: Written,
) -> SyncReport {
    let after = after.unwrap_or(&before);
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
        request_statuses: BTreeMap::new(),
        decision_statuses: BTreeMap::new(),
        finished_request_deletions: Vec::new(),
        pending_deadline: None,
        notifications: Vec::new(),
    }
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

/// Moves what the holder objects reported out of the PolicyAccess statuses into the
/// requests' own: their statuses, finished deletions and save order.
pub(super) fn complete_requests(
    report: &mut SyncReport,
    request: SyncRequest<'_>,
    judged: &super::requests::Judged,
    after: Option<&crate::reconcile::plan::Plan>,
) {
    let after = after.unwrap_or(&report.plan);
    let (holder_statuses, statuses): (BTreeMap<_, _>, BTreeMap<_, _>) =
        std::mem::take(&mut report.statuses)
            .into_iter()
            .partition(|(key, _): &(ObjectKey, PolicyAccessStatus)| key.request_name().is_some());
    report.statuses = statuses;
    let policy_ids: BTreeMap<ObjectKey, Option<String>> = after
        .objects
        .iter()
        .filter(|(key, _)| key.request_name().is_some())
        .map(|(key, plan)| (key.clone(), plan.policy_id.clone()))
        .collect();
    report.request_statuses = super::requests::request_statuses(
        request,
        judged,
        &holder_statuses,
        &policy_ids,
        &report.observed,
    );
    report.decision_statuses = super::requests::decision_statuses(judged);
    report.pending_deadline = judged
        .verdicts
        .values()
        .filter(|v| v.phase == crate::api::RequestPhase::Pending)
        .filter_map(|v| v.next_sync)
        .min();
    report.save_order.retain(|key| key.request_name().is_none());
    let (requests, accesses): (Vec<ObjectKey>, Vec<ObjectKey>) =
        std::mem::take(&mut report.finished_deletions)
            .into_iter()
            .partition(|key| key.request_name().is_some());
    report.finished_deletions = accesses;
    report.finished_request_deletions = super::requests::request_keys(requests);
    // A deleting request that holds nothing (no holder object at all) is settled too.
    for asked in request.requests.requests.iter().filter(|r| r.deleting) {
        let holds = report
            .request_statuses
            .get(&asked.key)
            .is_some_and(|s| !s.managed_members.is_empty());
        if judged.verdicts.contains_key(&asked.key)
            && !holds
            && !report.finished_request_deletions.contains(&asked.key)
        {
            report.finished_request_deletions.push(asked.key.clone());
        }
    }
}
