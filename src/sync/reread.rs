//! The re-read after the write: only the rosters the changes touched.

use std::collections::BTreeSet;

use tracing::warn;

use crate::expensify::{ExpensifyClient, ExpensifyError};
use crate::reconcile::plan::Plan;
use crate::reconcile::{ObjectKey, Observed};

/// `observed` with the touched rosters read again, and the error if they could not be
/// (then `observed` is returned as it was).
pub(super) async fn reread_touched(
    connector: &ObjectKey,
    client: &ExpensifyClient,
    before: &Plan,
    observed: Observed,
) -> (Observed, Option<ExpensifyError>) {
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
    (after_observed, reread_error)
}
