//! Which credentials a sync uses: the Secret's, or, while it cannot be used and `Revoke`
//! deletions wait, the connector's last good ones held in memory.

use tracing::warn;

use super::inputs::Inputs;
use crate::api::{ConnectorPhase, DeletionPolicy, PolicyAccess};
use crate::cluster::context::Context;
use crate::cluster::kube_io::SecretLookup;
use crate::cluster::metrics::ConnectorLabels;
use crate::expensify::Credentials;
use crate::reconcile::{AccessObject, ConnectorObject, ObjectKey, Scope};
use crate::sync::SyncReport;

/// The credentials a sync uses.
pub(super) enum SyncCredentials {
    /// Read from the Secret for this sync.
    Secret(Credentials),
    /// The Secret is gone while `Revoke` deletions wait: the connector's last good
    /// credentials, held in memory.
    Held(Credentials),
    /// None: why, for status.
    Missing(String),
}

impl SyncCredentials {
    /// What the sync may change on these credentials: held ones settle deletions and
    /// nothing else (a Secret taken away is no licence to keep granting).
    pub fn scope(&self) -> Scope {
        match self {
            SyncCredentials::Held(_) => Scope::DeletionsOnly,
            SyncCredentials::Secret(_) | SyncCredentials::Missing(_) => Scope::Everything,
        }
    }

    /// What the sync's store hands out: the credentials, or why there are none.
    pub fn for_store(&self) -> Result<Credentials, String> {
        match self {
            SyncCredentials::Secret(c) | SyncCredentials::Held(c) => Ok(c.clone()),
            SyncCredentials::Missing(message) => Err(message.clone()),
        }
    }
}

/// How many waiting objects a message names before "and N more".
const NAMED_UP_TO: usize = 5;

/// The attached objects being deleted with `Revoke` that still hold something to take back.
fn waiting_deletions(attached: &[&PolicyAccess]) -> Vec<ObjectKey> {
    attached
        .iter()
        .map(|pa| AccessObject::from_resource(pa))
        .filter(|a| {
            a.deleting
                && a.spec.deletion_policy == DeletionPolicy::Revoke
                && !a.ledger_entries().is_empty()
        })
        .map(|a| a.key)
        .collect()
}

/// The Secret's credentials; while the Secret cannot be used (a namespace being deleted
/// takes it at once) and `Revoke` deletions wait, the last good ones held in memory; with
/// none held, the deletions keep their finalizers and the status, the log and the metric
/// `deletions_waiting_for_credentials` say what to do. `Revoke` never becomes `Orphan`.
pub(super) fn choose(ctx: &Context, inputs: &Inputs) -> SyncCredentials {
    let object = &inputs.object;
    let gauge = ctx
        .metrics
        .deletions_waiting_for_credentials
        .get_or_create(&ConnectorLabels {
            connector: object.key.to_string(),
        });
    let unusable = match &inputs.secret {
        Some(SecretLookup::Found { credentials, .. }) => {
            gauge.set(0);
            return SyncCredentials::Secret(credentials.clone());
        }
        Some(SecretLookup::Unusable(message)) => message,
        None => return SyncCredentials::Missing("no Secret read".to_string()),
    };
    let waiting = waiting_deletions(&inputs.attached());
    if waiting.is_empty() {
        gauge.set(0);
        return SyncCredentials::Missing(unusable.clone());
    }
    let spec = &object.spec;
    let held = ctx.held_credentials.get(
        &object.key,
        &spec.endpoint,
        &spec.credentials_secret_ref.name,
    );
    if let Some(credentials) = held {
        gauge.set(0);
        warn!(connector = %object.key, deletions = waiting.len(), problem = %unusable, "the credentials Secret cannot be used; settling the deletions that wait with the connector's last good credentials, held in memory");
        return SyncCredentials::Held(credentials);
    }
    gauge.set(i64::try_from(waiting.len()).unwrap_or(i64::MAX));
    let mut named: Vec<String> = waiting
        .iter()
        .take(NAMED_UP_TO)
        .map(ToString::to_string)
        .collect();
    if waiting.len() > NAMED_UP_TO {
        named.push(format!("and {} more", waiting.len() - NAMED_UP_TO));
    }
    warn!(connector = %object.key, deletions = waiting.len(), problem = %unusable, "the credentials Secret cannot be used and no earlier credentials are held: deletions with deletionPolicy Revoke wait; restore the Secret, or set their deletionPolicy to Orphan");
    SyncCredentials::Missing(format!(
        "{unusable}, and this replica holds no earlier credentials of the connector: {} deletion(s) with deletionPolicy Revoke wait to take back what they gave ({}). Restore the Secret, or set spec.deletionPolicy: Orphan on them to leave that access as it is",
        waiting.len(),
        named.join(", ")
    ))
}

/// After a sync: credentials read from the Secret that Expensify accepted become the
/// connector's last good ones; a sync on held credentials says so in the connector status.
pub(super) fn after_used(
    ctx: &Context,
    object: &ConnectorObject,
    credentials: SyncCredentials,
    report: &mut SyncReport,
) {
    if report.connector_status.phase != ConnectorPhase::Connected {
        return;
    }
    match credentials {
        SyncCredentials::Secret(credentials) => ctx.held_credentials.remember(
            &object.key,
            &object.spec.endpoint,
            &object.spec.credentials_secret_ref.name,
            credentials,
        ),
        SyncCredentials::Held(_) => {
            let status = &mut report.connector_status;
            let said = status.message.take().unwrap_or_default();
            status.message = Some(format!(
                "{said}; the credentials Secret {} cannot be used: deletions were settled with the last good credentials held in memory, restore it for anything else",
                object.spec.credentials_secret_ref.name
            ));
        }
        SyncCredentials::Missing(_) => {}
    }
}
