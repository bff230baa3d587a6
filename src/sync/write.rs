//! The write: the planned changes sent to the employee updater in batches, then the
//! re-read of the rosters they touched and each change judged by what it shows.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::read::reason_for;
use super::reread::reread_touched;
use super::verify::ChangeResult;
use super::verify::judge;
use crate::api::{PolicyAccessStatus, Reason};
use crate::expensify::ExpensifyClient;
use crate::reconcile::plan::{Change, Plan};
use crate::reconcile::{ObjectKey, Observed};

/// What the write left: the rosters then, whether they were re-read, and each result.
pub(super) struct Written {
    pub(super) observed: Observed,
    pub(super) verified: bool,
    /// The ledger saved before the write, per object (kept as is when not verified).
    pub(super) write_ahead: BTreeMap<ObjectKey, PolicyAccessStatus>,
    pub(super) results: Vec<ChangeResult>,
    pub(super) problem: Option<(Reason, String)>,
}

impl Written {
    pub(super) fn nothing(observed: Observed) -> Self {
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
pub(super) async fn write(
    connector: &ObjectKey,
    client: &ExpensifyClient,
    before: &Plan,
    observed: Observed,
    write_ahead: BTreeMap<ObjectKey, PolicyAccessStatus>,
) -> Written {
    let records: Vec<_> = before.changes.iter().map(Change::record).collect();
    let written = client.update_employees(&records, false).await;
    // The write reached Expensify; its answer is not processed yet.
    crate::crash_point!("sync-after-employee-updater");
    let (after_observed, reread_error) = reread_touched(connector, client, before, observed).await;
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
