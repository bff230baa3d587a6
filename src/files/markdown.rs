//! `plan -o markdown`: the plan as a pull-request comment. A summary line, what failed,
//! a table of changes per policy, the removals held and the drift ObserveOnly objects
//! report. GitHub-flavoured Markdown with no raw HTML but `<details>` around long drift
//! lists; every value from the manifests or Expensify goes through
//! [`crate::sanitize::markdown`], so an email or a name cannot break a table, add markup,
//! mention anyone, link anywhere or reorder what the reviewer reads.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::failures::{connector_failures, see_connector};
use super::render::{
    drift_kind, grouped, nothing_planned, nothing_planned_summary, request_approvers,
    request_policy,
};
use super::runner::PassReport;
use crate::api::{AccessMode, AccessPhase};
use crate::reconcile::{Change, ChangeKind};
use crate::sanitize::markdown;

/// Drift lists longer than this are folded in `<details>`.
const FOLD_AFTER: usize = 10;

/// The plan as Markdown.
pub fn plan_markdown(report: &PassReport) -> String {
    let mut out = String::new();
    // What failed leads, as in `apply`: the first line is the comment's headline.
    let failures = connector_failures(report);
    if let Some(first) = failures.first() {
        let more = match failures.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more connector(s))"),
        };
        let _ = writeln!(out, "**Failed:** {}{more}\n", markdown(&first.headline));
    } else if report.has_errors() {
        let _ = writeln!(
            out,
            "**Failed:** some objects could not be planned; see Problems.\n"
        );
    } else if report.has_failed_requests() {
        let _ = writeln!(
            out,
            "**Failed:** an access request cannot be granted as written; see Access requests.\n"
        );
    }
    let _ = writeln!(out, "{}", summary_line(report));
    // Right under the headline: "No changes" means little without the ledger.
    if let Some(missing) = &report.missing_ledger {
        let _ = writeln!(out, "\n> **Warning:** {}", markdown(&missing.warning()));
    }
    problems(report, &mut out);
    for sync in &report.syncs {
        for (title, changes) in grouped(&sync.plan.changes) {
            changes_table(&title, &changes, &mut out);
        }
    }
    held(report, &mut out);
    drift(report, &mut out);
    requests(report, &mut out);
    owners(report, &mut out);
    out
}

/// Each AccessRequest the pass saw: the merge of the pull request is its approval, so the
/// reviewer reads here what they approve (who, what, how long, why, and who should).
fn requests(report: &PassReport, out: &mut String) {
    let requests = report.requests_seen();
    if requests.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Access requests\n");
    let _ = writeln!(
        out,
        "| Request | Person | Role | Policy | Phase | Duration | Ends | Reason | Approvers |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for request in &requests {
        let mut phase = request.phase();
        if let Some(problem) = request.problem() {
            phase = format!("{phase}: {problem}");
        }
        if request.removed {
            phase.push_str(" (manifest removed: it ends now)");
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            markdown(&request.key.to_string()),
            markdown(&request.spec.email),
            markdown(request.role()),
            markdown(&request_policy(request)),
            markdown(&phase),
            markdown(&request.spec.duration),
            markdown(request.ends().as_deref().unwrap_or("-")),
            markdown(request.shown_reason().as_deref().unwrap_or("-")),
            markdown(&request_approvers(request)),
        );
    }
}

/// Who answers for each connector the plan touches: the people to ask in the review.
fn owners(report: &PassReport, out: &mut String) {
    for sync in report
        .syncs
        .iter()
        .filter(|s| !s.connector_status.owners.is_empty())
    {
        let named: Vec<String> = sync
            .connector_status
            .owners
            .iter()
            .map(|o| markdown(o))
            .collect();
        let _ = writeln!(
            out,
            "\nOwners of connector {}: {}",
            markdown(&sync.connector.to_string()),
            named.join(", ")
        );
    }
}

/// `**3 grants, 1 role change, 2 revocations, 1 held** across 2 policies`, or
/// `No changes.`
fn summary_line(report: &PassReport) -> String {
    let changes: Vec<&Change> = report.syncs.iter().flat_map(|s| &s.plan.changes).collect();
    let mut policies: BTreeSet<&str> = changes.iter().map(|c| c.policy_id.as_str()).collect();
    let mut held = 0;
    for object in report.syncs.iter().flat_map(|s| s.plan.objects.values()) {
        if !object.held.is_empty() {
            held += object.held.len();
            policies.extend(object.policy_id.as_deref());
        }
    }
    let kinds = [
        ChangeKind::Grant,
        ChangeKind::RoleChange,
        ChangeKind::ApproverChange,
        ChangeKind::EmployeeIdChange,
        ChangeKind::Revoke,
    ];
    let mut parts: Vec<String> = kinds
        .iter()
        .filter_map(|&kind| {
            let n = changes.iter().filter(|c| c.kind == kind).count();
            (n > 0).then(|| format!("{n} {}{}", kind.noun(), if n == 1 { "" } else { "s" }))
        })
        .collect();
    if held > 0 {
        parts.push(format!("{held} held"));
    }
    if parts.is_empty() {
        return if nothing_planned(report) {
            nothing_planned_summary("Problems")
        } else if report.has_errors() {
            "No changes for the objects that could be synced.".to_string()
        } else {
            "No changes.".to_string()
        };
    }
    let n = policies.len();
    format!(
        "**{}** across {n} {}",
        parts.join(", "),
        if n == 1 { "policy" } else { "policies" }
    )
}

/// What failed: connectors, objects in `Error`, manifests that could not be read and
/// objects no connector took. Nothing when all is well.
fn problems(report: &PassReport, out: &mut String) {
    let mut items: Vec<String> = connector_failures(report)
        .into_iter()
        .map(|f| format!("**{}**: {}", markdown(&f.headline), markdown(&f.detail)))
        .collect();
    for sync in &report.syncs {
        let repeated = see_connector(&sync.connector);
        for (key, status) in &sync.statuses {
            let message = status.message.as_deref().unwrap_or_default();
            if status.phase == AccessPhase::Error && message != repeated {
                items.push(format!(
                    "{}: {}",
                    markdown(&key.to_string()),
                    markdown(message)
                ));
            }
        }
    }
    items.extend(
        report
            .manifests
            .problems
            .iter()
            .map(|p| markdown(&p.to_string())),
    );
    items.extend(report.unattached.iter().map(|u| {
        let message = u.status.message.as_deref().unwrap_or_default();
        format!("{}: {}", markdown(&u.key.to_string()), markdown(message))
    }));
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Problems\n");
    for item in items {
        let _ = writeln!(out, "- {item}");
    }
}

fn changes_table(title: &str, changes: &[&Change], out: &mut String) {
    let _ = writeln!(out, "\n### {}\n", markdown(title));
    let _ = writeln!(out, "| Change | Email | What | Asked by | Why |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for change in changes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            change.kind.noun(),
            markdown(&change.email),
            markdown(&change.detail()),
            markdown(&change.requested_by.to_string()),
            markdown(&change.reason)
        );
    }
}

/// Objects whose removals are held (Blocked), who is held and the guard's message.
fn held(report: &PassReport, out: &mut String) {
    let mut rows = Vec::new();
    for sync in &report.syncs {
        for (key, status) in &sync.statuses {
            if status.phase != AccessPhase::Blocked {
                continue;
            }
            let object = sync.plan.objects.get(key);
            // Capped as every message built from many people is; `-o json` lists them all.
            let people = object
                .map(|o| crate::reconcile::bounded::first_few(&o.held, ", "))
                .unwrap_or_default();
            let policy = status.policy_name.as_deref().unwrap_or("-");
            rows.push(format!(
                "| {} | {} | {} | {} |",
                markdown(&key.to_string()),
                markdown(policy),
                if people.is_empty() {
                    "-".into()
                } else {
                    markdown(&people)
                },
                markdown(status.message.as_deref().unwrap_or_default())
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Held\n");
    let _ = writeln!(out, "| Object | Policy | Held | Why |");
    let _ = writeln!(out, "|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
}

/// What ObserveOnly objects see differ from their manifests, every difference.
fn drift(report: &PassReport, out: &mut String) {
    let mut rows = Vec::new();
    for sync in &report.syncs {
        for (key, object) in &sync.plan.objects {
            if object.mode != AccessMode::ObserveOnly {
                continue;
            }
            let policy = object.policy_name.as_deref().unwrap_or("-");
            for d in &object.drift {
                rows.push(format!(
                    "| {} | {} | {} | {} | {} | {} |",
                    markdown(&key.to_string()),
                    markdown(policy),
                    markdown(&d.email),
                    drift_kind(d),
                    markdown(d.desired.as_deref().unwrap_or("-")),
                    markdown(d.actual.as_deref().unwrap_or("-"))
                ));
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Drift (ObserveOnly, not changed)\n");
    let fold = rows.len() > FOLD_AFTER;
    if fold {
        let _ = writeln!(
            out,
            "<details><summary>{} differences</summary>\n",
            rows.len()
        );
    }
    let _ = writeln!(
        out,
        "| Object | Policy | Email | Drift | Asked | On Expensify |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    if fold {
        let _ = writeln!(out, "\n</details>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessRequestStatus, RequestPhase};
    use crate::files::report::report_with_request;

    fn requests_section(report: &PassReport) -> String {
        let mut out = String::new();
        requests(report, &mut out);
        out
    }

    #[test]
    fn a_request_is_a_row_with_its_reason_end_and_approvers() {
        let status = AccessRequestStatus {
            phase: RequestPhase::Pending,
            approvers: vec!["cfo@acme.example".into(), "group:finance-leads".into()],
            ..AccessRequestStatus::default()
        };
        let section = requests_section(&report_with_request(Some("month end"), status));
        assert_eq!(
            section,
            "\n### Access requests\n\n| Request | Person | Role | Policy | Phase | Duration | Ends | Reason | Approvers |\n|---|---|---|---|---|---|---|---|---|\n| finance/r1 | henry@acme.example | admin | PolicyAccess books | Pending | 4h | when granted + 4h | month end | cfo@acme.example, group:finance-leads |\n"
        );
    }

    #[test]
    fn a_hostile_reason_cannot_break_the_table_mention_link_or_grow_it() {
        let reason = format!(
            "| x | y |\n### Approved by @everyone <img src=x> https://evil.example \u{202e}{}",
            "z".repeat(2000)
        );
        let status = AccessRequestStatus {
            phase: RequestPhase::Error,
            reason: Some("NotRequestable".into()),
            message: Some("reason: longer than 1000 characters".into()),
            ..AccessRequestStatus::default()
        };
        let section = requests_section(&report_with_request(Some(&reason), status));
        let rows: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with("| finance"))
            .collect();
        assert_eq!(rows.len(), 1, "one row: {section}");
        let row = rows[0];
        let unescaped_pipes = row
            .match_indices('|')
            .filter(|(i, _)| !row[..*i].ends_with('\\'))
            .count();
        assert_eq!(unescaped_pipes, 10, "{row}");
        for forbidden in ["@everyone", "https://", "<img", "\u{202e}"] {
            assert!(!section.contains(forbidden), "{forbidden:?} in {section}");
        }
        assert_eq!(
            section.matches("###").count(),
            1,
            "no heading of the reason's own: {section}"
        );
        assert!(row.contains("(cut)"), "{row}");
        assert!(row.chars().count() < 800, "{} chars", row.chars().count());
        assert!(
            row.contains("Error (NotRequestable): reason: longer than 1000 characters"),
            "the why is shown: {row}"
        );
        assert!(row.contains("| - |"), "never granted, never ends: {row}");
    }
}
