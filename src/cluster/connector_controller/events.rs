//! Step 6, publish events: the Events an object's changes of one sync make.

use std::collections::BTreeMap;

use kube::runtime::events::EventType;

use super::inputs::Inputs;
use super::store::request_key;
use crate::cluster::context::Context;
use crate::cluster::requests::phase_changes;
use crate::reconcile::{ChangeKind, ObjectKey};
use crate::sync::{ChangeResult, SyncReport};

/// Up to this many changes of one object in one sync get an Event each; more get one
/// Event that counts them (the structured log has one line per change either way).
pub const EVENT_PER_CHANGE_UP_TO: usize = 5;

/// The Events an object's changes of one sync make: `(type, reason, note)`.
pub fn change_events(results: &[&ChangeResult]) -> Vec<(EventType, &'static str, String)> {
    if results.len() <= EVENT_PER_CHANGE_UP_TO {
        return results
            .iter()
            .map(|result| {
                let what = result.change.describe();
                match &result.failure {
                    None => (EventType::Normal, result.change.kind.event_reason(), what),
                    Some(failure) => (
                        EventType::Warning,
                        "ChangeFailed",
                        format!("could not {what}: {failure}"),
                    ),
                }
            })
            .collect();
    }
    let count = |kinds: &[ChangeKind]| {
        results
            .iter()
            .filter(|r| r.failure.is_none() && kinds.contains(&r.change.kind))
            .count()
    };
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let mut note = format!(
        "granted {}, changed {}, revoked {}",
        count(&[ChangeKind::Grant]),
        count(&[
            ChangeKind::RoleChange,
            ChangeKind::ApproverChange,
            ChangeKind::EmployeeIdChange
        ]),
        count(&[ChangeKind::Revoke])
    );
    if failed > 0 {
        note.push_str(&format!("; {failed} failed (see status.failures)"));
        return vec![(EventType::Warning, "ChangesFailed", note)];
    }
    vec![(EventType::Normal, "ChangesApplied", note)]
}

/// Every phase change of a request in this sync: an Event on the request and a log line
/// (the audit trail outside the object; ended requests and decisions are never deleted).
async fn publish_phase_changes(ctx: &Context, inputs: &Inputs, report: &SyncReport) {
    let requests = inputs.requests_by_key();
    for (key, status) in &report.request_statuses {
        let key = request_key(key);
        let Some(request) = requests.get(&key) else {
            continue;
        };
        // Compared with the status before the sync: its write-ahead may hold the change.
        for change in phase_changes(request.status.as_ref(), status) {
            tracing::info!(
                request = %key.name,
                namespace = %key.namespace,
                from = %change.from,
                to = %change.to,
                reason = %change.reason,
                by = change.by.as_deref().unwrap_or_default(),
                "access request changed phase"
            );
            let type_ = if change.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let reason = format!("Request{}", change.to);
            ctx.publish(*request, type_, &reason, "Request", change.note())
                .await;
        }
    }
}

/// The Events of each object's changes (see [`change_events`]) and of each request's
/// phase changes.
pub(super) async fn publish(ctx: &Context, inputs: &Inputs, report: &SyncReport) {
    let by_key = inputs.attached_by_key();
    let mut by_object: BTreeMap<&ObjectKey, Vec<&ChangeResult>> = BTreeMap::new();
    for result in &report.results {
        by_object
            .entry(&result.change.requested_by)
            .or_default()
            .push(result);
    }
    for (key, results) in by_object {
        let Some(pa) = by_key.get(key) else {
            continue;
        };
        for (type_, reason, note) in change_events(&results) {
            ctx.publish(*pa, type_, reason, "Sync", note).await;
        }
    }
    publish_phase_changes(ctx, inputs, report).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(kind: ChangeKind, email: &str, failure: Option<&str>) -> ChangeResult {
        ChangeResult {
            change: crate::reconcile::Change {
                kind,
                policy_id: "P1".into(),
                policy_name: "Finance".into(),
                email: email.into(),
                role: Some(crate::expensify::Role::User),
                old_role: None,
                manager_email: "cfo@acme.example".into(),
                employee_id: None,
                expect_submits_to: None,
                old_submits_to: None,
                old_employee_id: None,
                requested_by: ObjectKey::new("finance", "team"),
                reason: String::new(),
            },
            failure: failure.map(str::to_string),
        }
    }

    #[test]
    fn a_few_changes_get_an_event_each_many_get_one_that_counts_them() {
        let few: Vec<ChangeResult> = (0..EVENT_PER_CHANGE_UP_TO)
            .map(|i| result(ChangeKind::Grant, &format!("p{i}@acme.example"), None))
            .collect();
        let events = change_events(&few.iter().collect::<Vec<_>>());
        assert_eq!(events.len(), EVENT_PER_CHANGE_UP_TO);
        assert_eq!(events[0].1, "Granted");

        let mut many: Vec<ChangeResult> = (0..37)
            .map(|i| result(ChangeKind::Grant, &format!("p{i}@acme.example"), None))
            .collect();
        many.push(result(ChangeKind::Revoke, "gone@acme.example", None));
        many.push(result(ChangeKind::RoleChange, "r@acme.example", None));
        let events = change_events(&many.iter().collect::<Vec<_>>());
        assert_eq!(
            events,
            [(
                EventType::Normal,
                "ChangesApplied",
                "granted 37, changed 1, revoked 1".to_string()
            )]
        );
        many.push(result(ChangeKind::Grant, "x@acme.example", Some("skipped")));
        let events = change_events(&many.iter().collect::<Vec<_>>());
        assert_eq!(
            events,
            [(
                EventType::Warning,
                "ChangesFailed",
                "granted 37, changed 1, revoked 1; 1 failed (see status.failures)".to_string()
            )]
        );
    }
}
