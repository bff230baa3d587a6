//! Whether each written change shows in the re-read rosters, and if not, the best reason
//! known (the batch's error, the updater's skip, or what the roster shows instead).

use std::collections::BTreeMap;

use crate::email;
use crate::expensify::{ExpensifyError, Role, RosterEntry, UpdateReport};
use crate::reconcile::Observed;
use crate::reconcile::plan::{Change, ChangeKind};

/// What happened to one planned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeResult {
    pub change: Change,
    /// `None` when Expensify shows the change; otherwise why not.
    pub failure: Option<String>,
}

/// Whether each change shows in the re-read rosters, and if not, the best reason known.
pub(super) fn judge(
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
