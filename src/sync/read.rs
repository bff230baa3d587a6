//! The first read of a sync: the policy list and every policy's roster.

use crate::api::Reason;
use crate::expensify::{ErrorKind, ExpensifyClient, ExpensifyError};
use crate::reconcile::Observed;

/// Every policy the credentials see, and each one's roster.
pub(super) async fn read(client: &ExpensifyClient) -> Result<Observed, ExpensifyError> {
    let policies = client.list_policies(true).await?;
    let ids: Vec<String> = policies.iter().map(|p| p.id.clone()).collect();
    let rosters = client.read_rosters(&ids).await?;
    Ok(Observed { policies, rosters })
}

/// The status reason for an Expensify error.
pub(super) fn reason_for(error: &ExpensifyError) -> Reason {
    match error.kind {
        ErrorKind::CredentialsRejected { .. } => Reason::AuthenticationFailed,
        ErrorKind::PermissionDenied { .. } => Reason::PermissionDenied,
        ErrorKind::RateLimited { .. } => Reason::RateLimited,
        _ => Reason::ExpensifyError,
    }
}
