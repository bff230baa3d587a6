//! What `plan` and `apply` print: a diff like `terraform plan`, results, statuses, and a
//! JSON form of the same for machines.
//!
//! Every value in the text comes from manifests or Expensify and goes through
//! [`terminal`]: a policy name cannot colour, clear or overwrite the screen, nor start a
//! line a CI runner takes for a workflow command. JSON needs nothing (serde escapes).

use std::fmt::Write as _;

use serde::Serialize;

use super::failures::{SEE_ABOVE, connector_failures, without_repeats};
use super::report::{RequestSeen, shown_time};
use super::runner::{PassReport, Run};
use crate::api::{AccessPhase, Drift, DriftKind, PolicyAccessStatus};
use crate::reconcile::{Change, ChangeKind, ObjectKey};
use crate::sanitize::terminal;
use crate::sync::SyncReport;

/// Colours, only when printing to a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn symbol(self, kind: ChangeKind) -> String {
        let code = match kind {
            ChangeKind::Grant => "32",
            ChangeKind::Revoke => "31",
            _ => "33",
        };
        self.paint(code, &kind.symbol().to_string())
    }
}

/// One change: symbol, email, what it sets, who asks and why. `detail_width` lines up the
/// `by` column of one connector's changes ([`detail_width`]).
fn change_line(style: Style, change: &Change, detail_width: usize) -> String {
    format!(
        "    {} {:<32} {:<detail_width$} by {}  ({})",
        style.symbol(change.kind),
        terminal(&change.email),
        terminal(&change.detail()),
        terminal(&change.requested_by.to_string()),
        terminal(&change.reason)
    )
}

/// The width of the widest detail among `changes` (an approver makes it long).
fn detail_width<'a>(changes: impl IntoIterator<Item = &'a Change>) -> usize {
    changes
        .into_iter()
        .map(|change| terminal(&change.detail()).chars().count())
        .max()
        .unwrap_or(0)
}

/// Changes by policy, titled `Name (id)`, in the order given (the plan sorts by policy).
pub(super) fn grouped(changes: &[Change]) -> Vec<(String, Vec<&Change>)> {
    let mut groups: Vec<(String, Vec<&Change>)> = Vec::new();
    for change in changes {
        let title = format!("{} ({})", change.policy_name, change.policy_id);
        match groups.last_mut() {
            Some((last, items)) if *last == title => items.push(change),
            _ => groups.push((title, vec![change])),
        }
    }
    groups
}

fn totals(report: &PassReport) -> (i32, i32, i32) {
    report.syncs.iter().fold((0, 0, 0), |(g, r, v), s| {
        let summary = s.plan.summary();
        (
            g + summary.grants,
            r + summary.role_changes,
            v + summary.revocations,
        )
    })
}

fn problems(report: &PassReport, out: &mut String) {
    for problem in &report.manifests.problems {
        let _ = writeln!(out, "  ! {}", terminal(&problem.to_string()));
    }
    for unattached in &report.unattached {
        let _ = writeln!(
            out,
            "  ! {}: {}",
            terminal(&unattached.key.to_string()),
            terminal(unattached.status.message.as_deref().unwrap_or_default())
        );
    }
}

/// The summary of a plan in which nothing could be planned; `see` says where the errors are.
pub(super) fn nothing_planned_summary(see: &str) -> String {
    format!("Nothing could be planned: every object failed; see {see}.")
}

/// Whether something failed and no object could be planned: every connector failed, or
/// every object is in `Error` or could not be read. "No changes" would then read as in sync.
pub(super) fn nothing_planned(report: &PassReport) -> bool {
    report.has_errors()
        && report.pending_changes() == 0
        && !report.syncs.iter().any(|sync| {
            sync.connector_status.phase != crate::api::ConnectorPhase::Error
                && sync
                    .statuses
                    .values()
                    .any(|status| status.phase != AccessPhase::Error)
        })
}

/// The `plan` diff.
pub fn plan_text(report: &PassReport, style: Style) -> String {
    let mut out = String::new();
    for sync in &report.syncs {
        let _ = writeln!(
            out,
            "Connector {}: {}",
            terminal(&sync.connector.to_string()),
            sync.connector_status.phase
        );
        if !sync.connector_status.owners.is_empty() {
            let _ = writeln!(
                out,
                "  owners: {}",
                terminal(&sync.connector_status.owners.join(", "))
            );
        }
        if sync.connector_status.phase == crate::api::ConnectorPhase::Error {
            let _ = writeln!(
                out,
                "  ! {}",
                terminal(sync.connector_status.message.as_deref().unwrap_or_default())
            );
        }
        let width = detail_width(&sync.plan.changes);
        for (title, changes) in grouped(&sync.plan.changes) {
            let _ = writeln!(out, "\n  {}", terminal(&title));
            for change in changes {
                let _ = writeln!(out, "{}", change_line(style, change, width));
            }
        }
        held_lines(sync, style, &mut out);
        drift_lines(sync, &mut out);
        let _ = writeln!(out);
    }
    request_lines(report, &mut out);
    if !report.manifests.problems.is_empty() || !report.unattached.is_empty() {
        let _ = writeln!(out, "Problems:");
        problems(report, &mut out);
        let _ = writeln!(out);
    }
    if let Some(missing) = &report.missing_ledger {
        let _ = writeln!(
            out,
            "{} {}",
            style.paint("33", "Warning:"),
            terminal(&missing.warning())
        );
    }
    let (grants, roles, revocations) = totals(report);
    if nothing_planned(report) {
        let _ = writeln!(out, "{}", nothing_planned_summary("the errors above"));
    } else if grants + roles + revocations == 0 && report.has_errors() {
        let _ = writeln!(out, "No changes for the objects that could be synced.");
    } else if grants + roles + revocations == 0 {
        let _ = writeln!(out, "No changes. Expensify matches the manifests.");
    } else {
        let _ = writeln!(
            out,
            "Plan: {grants} to grant, {roles} to change, {revocations} to revoke."
        );
    }
    if report.has_failed_requests() {
        let _ = writeln!(
            out,
            "{} an access request cannot be granted as written; see Access requests.",
            style.paint("31", "Failed:")
        );
    }
    out
}

/// The policy a request is for: its name once a sync resolved it, else its PolicyAccess.
pub(super) fn request_policy(request: &RequestSeen) -> String {
    request
        .status
        .policy_name
        .clone()
        .unwrap_or_else(|| format!("PolicyAccess {}", request.spec.access_ref.name))
}

/// The approvers a request's rules name, or `-` when they name none (no rules).
pub(super) fn request_approvers(request: &RequestSeen) -> String {
    if request.status.approvers.is_empty() {
        "-".to_string()
    } else {
        request.status.approvers.join(", ")
    }
}

/// Each AccessRequest of the pass: who asks what on which policy, where it stands, when
/// it ends, why it was asked and who approves it (`plan` and `demo`).
pub fn requests_text(report: &PassReport) -> String {
    let mut out = String::new();
    request_lines(report, &mut out);
    out
}

fn request_lines(report: &PassReport, out: &mut String) {
    let requests = report.requests_seen();
    if requests.is_empty() {
        return;
    }
    let _ = writeln!(out, "Access requests:");
    for request in &requests {
        let ends = request
            .ends()
            .map(|ends| format!(", ends {ends}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}: {} asks {} on {} for {}: {}{ends}{}",
            terminal(&request.key.to_string()),
            terminal(&request.spec.email),
            terminal(request.role()),
            terminal(&request_policy(request)),
            terminal(&request.spec.duration),
            terminal(&request.phase()),
            if request.removed {
                " (its manifest is gone: it ends now)"
            } else {
                ""
            }
        );
        if let Some(problem) = request.problem() {
            // `!` marks what failed, as elsewhere in the plan; an end is no failure.
            let mark = if request.status.phase == crate::api::RequestPhase::Error {
                "!         "
            } else {
                "why:      "
            };
            let _ = writeln!(out, "    {mark} {}", terminal(problem));
        }
        let reason = request.shown_reason().unwrap_or_else(|| "-".to_string());
        let _ = writeln!(out, "    reason:    {}", terminal(&reason));
        let _ = writeln!(
            out,
            "    approvers: {}",
            terminal(&request_approvers(request))
        );
    }
    let _ = writeln!(out);
}

/// Objects that are Blocked or in Error, with why.
fn held_lines(sync: &SyncReport, style: Style, out: &mut String) {
    let held: Vec<(&ObjectKey, &PolicyAccessStatus)> = sync
        .statuses
        .iter()
        .filter(|(_, s)| matches!(s.phase, AccessPhase::Blocked | AccessPhase::Error))
        .collect();
    if held.is_empty() {
        return;
    }
    let _ = writeln!(out);
    for (key, status) in held {
        let _ = writeln!(
            out,
            "  {} {}: {}: {}",
            style.paint("31", "!"),
            terminal(&key.to_string()),
            status.phase,
            terminal(status.message.as_deref().unwrap_or_default())
        );
    }
}

/// `missing`, `extra` or `other role`.
pub(super) fn drift_kind(drift: &Drift) -> &'static str {
    match drift.kind {
        DriftKind::Missing => "missing",
        DriftKind::Extra => "extra",
        DriftKind::RoleMismatch => "other role",
    }
}

/// Objects that only report drift (ObserveOnly, or nothing planned), every difference.
fn drift_lines(sync: &SyncReport, out: &mut String) {
    let observing = sync.statuses.iter().filter(|(_, s)| {
        s.phase != AccessPhase::Blocked
            && s.phase != AccessPhase::Error
            && !s.drift.is_empty()
            && s.last_plan
                .is_some_and(|p| p.grants + p.role_changes + p.revocations == 0)
    });
    for (key, status) in observing {
        // Printed after the last policy's changes: say which policy it watches.
        let policy = status
            .policy_name
            .as_deref()
            .map(|name| format!(" on {}", terminal(name)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  ? {}{policy}: {}",
            terminal(&key.to_string()),
            terminal(status.message.as_deref().unwrap_or_default())
        );
        // The plan's list is whole; the status keeps the first few.
        let drift = sync
            .plan
            .objects
            .get(key)
            .filter(|o| !o.drift.is_empty())
            .map_or(&status.drift, |o| &o.drift);
        for d in drift {
            let mut line = format!("      {:<10} {:<32}", drift_kind(d), terminal(&d.email));
            let asked = d.desired.as_deref().map(terminal);
            let has = d.actual.as_deref().map(terminal);
            match (asked, has) {
                (Some(asked), Some(has)) => line.push_str(&format!(" asked {asked}, has {has}")),
                (Some(asked), None) => line.push_str(&format!(" asked {asked}")),
                (None, Some(has)) => line.push_str(&format!(" has {has}")),
                (None, None) => {}
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// What `apply` did, and where every object stands. What failed comes first, once: a
/// connector that could not sync is named in the headline with its message, and its row
/// and its objects' rows point there (see [`super::failures`]).
pub fn apply_text(report: &PassReport, style: Style) -> String {
    let failures = connector_failures(report);
    let mut out = String::new();
    for failure in &failures {
        let _ = writeln!(
            out,
            "{} {}",
            style.paint("31", "Failed:"),
            terminal(&failure.headline)
        );
        let _ = writeln!(out, "  {}", terminal(&failure.detail));
    }
    if !failures.is_empty() {
        let _ = writeln!(out);
    }
    let (applied, failed) = applied_changes(report, style, &mut out);
    if applied + failed > 0 {
        let _ = writeln!(out, "\nApplied {applied} change(s), {failed} failed.");
    } else if !failures.is_empty() {
        let _ = writeln!(out, "No changes were made.");
    } else if report.has_errors() || report.has_blocked() {
        let _ = writeln!(out, "No changes were made; see the objects below.");
    } else {
        let _ = writeln!(out, "No changes were needed.");
    }
    let _ = writeln!(out);
    let mut shown = without_repeats(report.clone());
    for sync in &mut shown.syncs {
        if failures.iter().any(|f| f.connector == sync.connector) {
            sync.connector_status.message = Some(SEE_ABOVE.to_string());
        }
    }
    out.push_str(&status_table(&shown));
    if !report.manifests.problems.is_empty() {
        // Objects no connector took are rows of the table already: only what could not be
        // read is listed here.
        let _ = writeln!(out, "\nProblems:");
        for problem in &report.manifests.problems {
            let _ = writeln!(out, "  ! {}", terminal(&problem.to_string()));
        }
    }
    out
}

/// The changes made and not made, per policy; returns how many of each.
fn applied_changes(report: &PassReport, style: Style, out: &mut String) -> (usize, usize) {
    let mut applied = 0;
    let mut failed = 0;
    for sync in &report.syncs {
        let changes: Vec<Change> = sync.results.iter().map(|r| r.change.clone()).collect();
        let width = detail_width(&changes);
        for (title, group) in grouped(&changes) {
            let _ = writeln!(out, "  {}", terminal(&title));
            for change in group {
                let failure = sync
                    .results
                    .iter()
                    .find(|r| &r.change == change)
                    .and_then(|r| r.failure.as_deref());
                match failure {
                    None => {
                        applied += 1;
                        let _ = writeln!(out, "{}", change_line(style, change, width));
                    }
                    Some(reason) => {
                        failed += 1;
                        let _ = writeln!(
                            out,
                            "    {} {:<32} not applied: {}",
                            style.paint("31", "x"),
                            terminal(&change.email),
                            terminal(reason)
                        );
                    }
                }
            }
        }
    }
    (applied, failed)
}

/// A table of every connector and object with its phase.
pub fn status_table(report: &PassReport) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "OBJECT".into(),
        "POLICY".into(),
        "PHASE".into(),
        "MEMBERS".into(),
        "MESSAGE".into(),
    ]];
    for sync in &report.syncs {
        rows.push([
            format!("ExpensifyConnector {}", sync.connector),
            "-".into(),
            sync.connector_status.phase.to_string(),
            sync.connector_status
                .user_count
                .map_or_else(|| "-".into(), |c| c.to_string()),
            sync.connector_status.message.clone().unwrap_or_default(),
        ]);
        for (key, status) in &sync.statuses {
            rows.push(access_row(key, status));
        }
    }
    for unattached in &report.unattached {
        rows.push(access_row(&unattached.key, &unattached.status));
    }
    // An object that could not be read (an unknown field, defined twice) keeps its row:
    // absent, it would look as if it had never been there.
    let mut unread: Vec<&str> = Vec::new();
    for object in report
        .manifests
        .problems
        .iter()
        .filter_map(|p| p.object.as_deref())
    {
        let has_row = rows.iter().any(|row| row[0] == object);
        if !has_row && !unread.contains(&object) {
            unread.push(object);
        }
    }
    for object in unread {
        rows.push([
            object.to_string(),
            "-".into(),
            AccessPhase::Error.to_string(),
            "-".into(),
            "not read; see Problems below".into(),
        ]);
    }
    // Escaped before measuring, so the columns line up as printed.
    let rows: Vec<[String; 5]> = rows
        .into_iter()
        .map(|row| row.map(|cell| terminal(&cell)))
        .collect();
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    out
}

fn access_row(key: &ObjectKey, status: &PolicyAccessStatus) -> [String; 5] {
    [
        format!("PolicyAccess {key}"),
        // The name, else the id (an object that asks by id for a policy not found).
        status
            .policy_name
            .clone()
            .or_else(|| status.policy_id.clone())
            .unwrap_or_else(|| "-".into()),
        status.phase.to_string(),
        format!("{}/{}", status.in_sync_members, status.desired_members),
        status.message.clone().unwrap_or_default(),
    ]
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonChange<'a> {
    action: &'static str,
    /// One spelling everywhere a user sees it, as in the CRD status.
    #[serde(rename = "policyID")]
    policy_id: &'a str,
    policy_name: &'a str,
    email: &'a str,
    role: Option<String>,
    old_role: Option<&'a str>,
    manager_email: &'a str,
    #[serde(rename = "employeeID", skip_serializing_if = "Option::is_none")]
    employee_id: Option<&'a str>,
    /// Every attribute the change moves, as the text and Markdown plans say it.
    detail: String,
    requested_by: String,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<&'a str>,
}

fn json_change<'a>(change: &'a Change, failure: Option<&'a str>) -> JsonChange<'a> {
    JsonChange {
        action: change.kind.verb(),
        policy_id: &change.policy_id,
        policy_name: &change.policy_name,
        email: &change.email,
        role: change.role.map(|r| r.to_string()),
        old_role: change.old_role.as_deref(),
        manager_email: &change.manager_email,
        employee_id: change.employee_id.as_deref(),
        detail: change.detail(),
        requested_by: change.requested_by.to_string(),
        reason: &change.reason,
        failure,
    }
}

/// Every object of a sync with its status, and from the plan the people whose removal it
/// holds (`held`) and every difference it sees (`drift`; the status keeps the first few).
fn json_objects(sync: &SyncReport) -> Vec<serde_json::Value> {
    sync.statuses
        .iter()
        .map(|(key, status)| {
            let mut value = serde_json::json!({"object": key.to_string(), "status": status});
            if let Some(plan) = sync.plan.objects.get(key) {
                value["mode"] = serde_json::json!(plan.mode);
                value["held"] = serde_json::json!(plan.held);
                value["drift"] = serde_json::json!(plan.drift);
            }
            value
        })
        .collect()
}

/// One AccessRequest in `-o json` (`requests`): documented in docs/commands.md.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest<'a> {
    request: String,
    /// The connector whose sync judged it; null when none did.
    connector: Option<String>,
    access_ref: &'a str,
    email: &'a str,
    role: &'a str,
    duration: &'a str,
    /// The requester's reason, whole (bounded by validation to 1,000 characters).
    reason: Option<&'a str>,
    requester: &'a str,
    phase: crate::api::RequestPhase,
    /// Why it is in this phase (`Approved`, `NotRequestable`, ...).
    phase_reason: Option<&'a str>,
    message: Option<&'a str>,
    #[serde(rename = "policyID")]
    policy_id: Option<&'a str>,
    policy_name: Option<&'a str>,
    approvers: &'a [String],
    approvals_required: Option<i32>,
    approved_by: Vec<&'a str>,
    granted_at: Option<String>,
    expires_at: Option<String>,
    /// `expiresAt`, or `when granted + DURATION` before the grant lands; null once it
    /// ended without one.
    ends: Option<String>,
    /// Its manifest is gone: it ends now.
    removed: bool,
}

fn json_request(request: &RequestSeen) -> JsonRequest<'_> {
    let status = &request.status;
    JsonRequest {
        request: request.key.to_string(),
        connector: request.connector.as_ref().map(ToString::to_string),
        access_ref: &request.spec.access_ref.name,
        email: &request.spec.email,
        role: request.role(),
        duration: &request.spec.duration,
        reason: request.spec.reason.as_deref(),
        requester: &request.spec.requester,
        phase: status.phase,
        phase_reason: status.reason.as_deref(),
        message: status.message.as_deref(),
        policy_id: status.policy_id.as_deref(),
        policy_name: status.policy_name.as_deref(),
        approvers: &status.approvers,
        approvals_required: status.approvals_required,
        approved_by: status.approvals.iter().map(|a| a.by.as_str()).collect(),
        granted_at: status.granted_at.as_ref().map(shown_time),
        expires_at: status.expires_at.as_ref().map(shown_time),
        ends: request.ends(),
        removed: request.removed,
    }
}

/// The same report for machines: `-o json`.
pub fn json(report: &PassReport, run: Run) -> String {
    let applied = run == Run::Apply;
    let connectors: Vec<serde_json::Value> = report
        .syncs
        .iter()
        .map(|sync| {
            let changes: Vec<JsonChange> = if applied {
                sync.results
                    .iter()
                    .map(|r| json_change(&r.change, r.failure.as_deref()))
                    .collect()
            } else {
                sync.plan
                    .changes
                    .iter()
                    .map(|c| json_change(c, None))
                    .collect()
            };
            let objects = json_objects(sync);
            serde_json::json!({
                "connector": sync.connector.to_string(),
                "status": sync.connector_status,
                "changes": changes,
                "objects": objects,
                "expensifyCalls": sync.calls.total(),
            })
        })
        .collect();
    let unattached: Vec<serde_json::Value> = report
        .unattached
        .iter()
        .map(|u| serde_json::json!({"object": u.key.to_string(), "status": u.status}))
        .collect();
    let problems: Vec<String> = report
        .manifests
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    let warnings: Vec<String> = report
        .missing_ledger
        .iter()
        .map(super::report::MissingLedger::warning)
        .collect();
    let seen = report.requests_seen();
    let requests: Vec<JsonRequest> = seen.iter().map(json_request).collect();
    let value = serde_json::json!({
        "pendingChanges": if applied { 0 } else { report.pending_changes() },
        "connectors": connectors,
        "unattachedObjects": unattached,
        "requests": requests,
        "problems": problems,
        "warnings": warnings,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expensify::wire::Role;
    use crate::reconcile::model::ObjectKey;

    fn grant(email: &str, submits_to: Option<&str>) -> Change {
        Change {
            kind: ChangeKind::Grant,
            policy_id: "F1".into(),
            policy_name: "Finance".into(),
            email: email.into(),
            role: Some(Role::Admin),
            old_role: None,
            manager_email: "cfo@acme.example".into(),
            employee_id: None,
            expect_submits_to: submits_to.map(Into::into),
            old_submits_to: None,
            old_employee_id: None,
            requested_by: ObjectKey::new("finance", "team"),
            reason: "asked for".into(),
        }
    }

    fn active(approvers: &[&str], expires: Option<&str>) -> crate::api::AccessRequestStatus {
        crate::api::AccessRequestStatus {
            phase: crate::api::RequestPhase::Active,
            reason: Some("Approved".into()),
            policy_name: Some("Finance".into()),
            policy_id: Some("F1".into()),
            approvers: approvers.iter().map(|a| (*a).to_string()).collect(),
            expires_at: expires
                .map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.parse().unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn plan_text_lists_a_request_with_its_end_reason_and_approvers() {
        let report = super::super::report::report_with_request(
            Some("month end"),
            active(&["cfo@acme.example", "group:finance-leads"], None),
        );
        let text = plan_text(&report, Style { colour: false });
        assert!(
            text.contains("Access requests:\n  finance/r1: henry@acme.example asks admin on Finance for 4h: Active (Approved), ends when granted + 4h\n    reason:    month end\n    approvers: cfo@acme.example, group:finance-leads\n"),
            "{text}"
        );
    }

    #[test]
    fn a_hostile_request_reason_prints_escaped_and_cut() {
        let reason = format!("\r::add-mask::x\x1b[2J\n{}", "y".repeat(500));
        let report = super::super::report::report_with_request(
            Some(&reason),
            active(&[], Some("2030-01-01T04:00:00Z")),
        );
        let text = requests_text(&report);
        assert!(!text.contains(['\x1b', '\r']), "{text:?}");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("reason:"))
            .unwrap();
        assert!(line.ends_with("… (cut)"), "{line}");
        assert!(line.chars().count() < 300, "{line}");
        assert!(text.contains("ends 2030-01-01T04:00:00Z"), "{text}");
        assert!(text.contains("approvers: -"), "{text}");
        assert_eq!(text.lines().count(), 5, "one request, one block: {text}");
    }

    #[test]
    fn plan_json_has_a_requests_array() {
        let report = super::super::report::report_with_request(
            Some("month end"),
            active(&["cfo@acme.example"], Some("2030-01-01T04:00:00Z")),
        );
        let json: serde_json::Value = serde_json::from_str(&json(&report, Run::Plan)).unwrap();
        let request = &json["requests"][0];
        assert_eq!(request["request"], "finance/r1");
        assert_eq!(request["email"], "henry@acme.example");
        assert_eq!(request["role"], "admin");
        assert_eq!(request["phase"], "Active");
        assert_eq!(request["phaseReason"], "Approved");
        assert_eq!(request["reason"], "month end");
        assert_eq!(request["duration"], "4h");
        assert_eq!(request["policyID"], "F1");
        assert_eq!(
            request["approvers"],
            serde_json::json!(["cfo@acme.example"])
        );
        assert_eq!(request["expiresAt"], "2030-01-01T04:00:00Z");
        assert_eq!(request["ends"], "2030-01-01T04:00:00Z");
        assert_eq!(request["connector"], serde_json::Value::Null);
    }

    /// Review 6: `shown_spec` cuts each request field at the CRD's length, except the
    /// reason: in file mode nothing bounds it, and `plan -o json` prints it whole (a request
    /// whose reason is over the 1,000-character cap is in Error, and still shown whole).
    #[test]
    fn plan_json_bounds_a_hostile_request_reason() {
        let reason = "y".repeat(200_000);
        let report = super::super::report::report_with_request(
            Some(&reason),
            active(&[], Some("2030-01-01T04:00:00Z")),
        );
        let out = json(&report, Run::Plan);
        assert!(out.len() < 20_000, "plan -o json is {} bytes", out.len());
    }

    #[test]
    fn a_hostile_change_prints_escaped() {
        let mut change = grant("evil\x1b[2J@acme.example", None);
        change.reason = "\r::add-mask::x".into();
        let line = change_line(Style { colour: false }, &change, 0);
        assert!(!line.contains(['\x1b', '\r']), "{line:?}");
        assert!(line.contains("evil\\u{1b}[2J@acme.example"), "{line}");
        assert!(line.ends_with("(\\r::add-mask::x)"), "{line}");
    }

    #[test]
    fn the_by_column_lines_up_past_a_long_detail() {
        let changes = [
            grant("zoe@acme.example", Some("cfo@acme.example")),
            grant("bob@acme.example", None),
        ];
        let width = detail_width(&changes);
        let lines: Vec<String> = changes
            .iter()
            .map(|change| change_line(Style { colour: false }, change, width))
            .collect();
        let columns: Vec<usize> = lines
            .iter()
            .map(|line| line.find(" by ").unwrap())
            .collect();
        assert_eq!(columns[0], columns[1], "{lines:#?}");
        assert!(lines[0].contains("admin, submits to cfo@acme.example by finance/team"));
    }
}
