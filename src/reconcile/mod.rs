//! The reconciliation core: validation and planning (pure), the status they lead to
//! (pure), and the executor that reads, writes and re-reads Expensify.

pub mod bounded;
pub mod executor;
pub mod model;
pub mod plan;
pub mod reviewed;
pub mod status;
pub mod sync;
pub mod tenancy;
pub mod validate;

pub use executor::{ChangeResult, SyncReport, SyncRequest, sync_connector, unsynced};
pub use model::{AccessObject, ConnectorObject, DEFAULT_NAMESPACE, ObjectKey, Observed, digest};
pub use plan::{Block, Change, ChangeKind, ObjectPlan, Plan, PlanInput, plan};
pub use validate::{
    Problem, access_warnings, connector_allows, connector_warnings, expired_members,
    stranded_deletion, validate_access, validate_connector,
};
