//! What a request's form says: its job label and sizes for the log, and flags read as
//! leniently as Expensify reads them.

use std::collections::HashMap;

use serde_json::Value;

use crate::expensify::Role;

/// What a request turned out to be, for the log.
#[derive(Debug, Default)]
pub(super) struct JobInfo {
    pub(super) job: String,
    pub(super) partner_user_id: Option<String>,
    pub(super) items: usize,
    pub(super) dry_run: bool,
    /// What the request changed on the rosters (the employee updater, dry runs excluded).
    pub(super) changes: Vec<RosterChange>,
}

pub(super) fn lenient_bool(value: Option<&Value>, default: bool) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.trim(), "true" | "1"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => default,
    }
}

/// The job label and sizes of a request, from its form alone.
pub(super) fn describe(form: &HashMap<String, String>) -> JobInfo {
    let job = form
        .get("requestJobDescription")
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok());
    let label = job.as_ref().and_then(|job| {
        let outer = job.get("type")?.as_str()?;
        let inner = job.get("inputSettings")?.get("type")?.as_str()?;
        Some(format!("{outer}/{inner}"))
    });
    JobInfo {
        job: label.unwrap_or_else(|| "invalid".to_string()),
        ..JobInfo::default()
    }
}

/// One person's membership of one policy changed by a request: `None` is "not on the
/// policy", so `(Some(role), None)` is a removal. For tests that judge every change made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterChange {
    pub policy_id: String,
    pub email: String,
    pub before: Option<Role>,
    pub after: Option<Role>,
}
