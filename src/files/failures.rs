//! One message per failure in what `plan` and `apply` print.
//!
//! A connector that cannot sync (its Secret missing, its credentials rejected, its spec
//! invalid) makes every one of its objects `Error` with the connector's message in their
//! status, as the status must say. Printed as is, one failure would read N + 1 times. The
//! text output says it once, where it is decided (the connector: `apply`'s headline, the
//! connector's line of `plan`), and each object refers to it. Log lines do not repeat it
//! either: the summary on stdout is the one place, because it is the command's result
//! (kept by CI logs and `> file`) and says it next to what it affects. `watch` and the
//! controller, which print no summary, log it once per sync. JSON output keeps every
//! status as it is: machines read each object on its own.

use super::runner::PassReport;
use crate::api::{ConditionType, ConnectorPhase, Reason};
use crate::reconcile::ObjectKey;

/// A connector that could not sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorFailure {
    pub connector: ObjectKey,
    /// What failed, in a few words: `credentials rejected for connector finance/acme`.
    pub headline: String,
    /// The whole message (Expensify's answer, where a Secret was looked for).
    pub detail: String,
}

/// The `Ready` reason of a connector's status.
fn ready_reason(status: &crate::api::ExpensifyConnectorStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Ready.as_str())
        .map(|c| c.reason.as_str())
}

/// The Secret a connector reads, as `namespace/name`.
fn secret_of(report: &PassReport, connector: &ObjectKey) -> Option<String> {
    report
        .manifests
        .connectors
        .iter()
        .find(|c| &c.key == connector)
        .map(|c| {
            format!(
                "{}/{}",
                connector.namespace, c.object.spec.credentials_secret_ref.name
            )
        })
}

/// Every connector of the pass in `Error`, with what failed first.
pub fn connector_failures(report: &PassReport) -> Vec<ConnectorFailure> {
    report
        .syncs
        .iter()
        .filter(|sync| sync.connector_status.phase == ConnectorPhase::Error)
        .map(|sync| {
            let key = &sync.connector;
            let reason = ready_reason(&sync.connector_status).unwrap_or_default();
            let is = |r: Reason| reason == r.as_str();
            let headline = if is(Reason::SecretNotFound) {
                match secret_of(report, key) {
                    Some(secret) => format!("Secret {secret} not found for connector {key}"),
                    None => format!("Secret not found for connector {key}"),
                }
            } else if is(Reason::AuthenticationFailed) {
                format!("credentials rejected for connector {key}")
            } else if is(Reason::PermissionDenied) {
                format!("permission denied for connector {key}")
            } else if is(Reason::RateLimited) {
                format!("rate limited: connector {key}")
            } else if is(Reason::InvalidSpec) {
                format!("connector {key} is invalid")
            } else {
                format!("Expensify could not be read for connector {key}")
            };
            ConnectorFailure {
                connector: key.clone(),
                headline,
                detail: sync.connector_status.message.clone().unwrap_or_default(),
            }
        })
        .collect()
}

/// What an object on a failed connector says instead of repeating the connector's message.
pub fn see_connector(connector: &ObjectKey) -> String {
    format!("connector {connector} failed (see above)")
}

/// What a failed connector's own row says once the headline has said it.
pub const SEE_ABOVE: &str = "failed (see above)";

/// The pass with the statuses of objects on a failed connector pointing at the connector
/// instead of repeating its message (for text output only).
pub fn without_repeats(mut report: PassReport) -> PassReport {
    for sync in &mut report.syncs {
        if sync.connector_status.phase != ConnectorPhase::Error {
            continue;
        }
        let Some(detail) = sync.connector_status.message.clone() else {
            continue;
        };
        let repeated = format!("connector {}: {detail}", sync.connector);
        for status in sync.statuses.values_mut() {
            if status.message.as_deref() == Some(repeated.as_str()) {
                status.message = Some(see_connector(&sync.connector));
            }
        }
    }
    report
}
