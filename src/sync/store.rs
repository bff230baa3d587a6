//! Where a mode keeps what a sync reads and writes besides Expensify: credentials and
//! statuses (the cluster, or the status directory), behind two small traits.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::api::{AccessRequestStatus, ExpensifyConnectorStatus, PolicyAccessStatus};
use crate::expensify::Credentials;
use crate::reconcile::{ConnectorObject, ObjectKey};

/// Why the write did not go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WriteRefused(pub String);

/// Where the ledger is saved before the employee-updater call (status files in file mode,
/// object status in the cluster): the write-ahead that keeps ownership across a crash.
pub trait WriteAhead: Send + Sync + std::fmt::Debug {
    /// Saves these statuses (the objects whose ledger changes or whose allowance is used,
    /// and the access requests whose ledger changes) and, when the connector's allowance
    /// is used, the connector's; or refuses the write.
    fn save<'a>(
        &'a self,
        statuses: &'a BTreeMap<ObjectKey, PolicyAccessStatus>,
        requests: &'a BTreeMap<ObjectKey, AccessRequestStatus>,
        connector: Option<&'a ExpensifyConnectorStatus>,
    ) -> BoxFuture<'a, Result<(), WriteRefused>>;
}

/// Where a mode keeps what a sync reads and writes besides Expensify: credentials, and
/// statuses (the write-ahead of the ledger included).
pub trait Store: WriteAhead {
    /// The connector's credentials, or why they cannot be used (a message for status
    /// that never contains the credential).
    fn credentials<'a>(
        &'a self,
        connector: &'a ConnectorObject,
    ) -> BoxFuture<'a, Result<Credentials, String>>;

    /// Saves the connector's status outside the write-ahead (its `Syncing` phase).
    fn save_connector_status<'a>(
        &'a self,
        connector: &'a ConnectorObject,
        status: &'a ExpensifyConnectorStatus,
    ) -> BoxFuture<'a, Result<(), String>>;
}
