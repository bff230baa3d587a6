//! The reconciliation core, pure: validation, the tenancy rules, planning, the statuses
//! they lead to, and a reviewed plan's fingerprint. No async, no I/O, no clock reads
//! (`now` is passed in): `tests/pure_core.rs` keeps it so. The sync that reads and
//! writes Expensify is [`crate::sync`].

pub mod bounded;
pub mod model;
pub mod plan;
pub mod problem;
pub mod requests;
pub mod reviewed;
pub mod status;
pub mod tenancy;
pub mod validate;

pub use model::{
    AccessObject, Approval, ConnectorObject, DEFAULT_NAMESPACE, DecisionObject, ObjectKey,
    Observed, RequestObject, Requests, digest,
};
pub use plan::{Block, Change, ChangeKind, ObjectPlan, Plan, PlanInput, Scope, plan};
pub use validate::{
    Problem, access_warnings, connector_allows, connector_warnings, expired_members,
    owner_warnings, owners, stranded_deletion, validate_access, validate_connector,
};
