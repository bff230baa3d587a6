//! The custom resources, shared by cluster mode and file mode: `ExpensifyConnector` and
//! `PolicyAccess` (what git says), `AccessRequest` and `AccessDecision` (what people ask
//! and decide).

mod access;
mod allowance;
mod conditions;
mod connector;
mod duration;
mod ledger_entry;
mod request;
mod schemas;

pub use access::{
    AccessMode, AccessPhase, ConnectorRef, DeletionPolicy, Drift, DriftKind, ManagedMember,
    MemberFailure, MemberSpec, PlanSummary, PolicyAccess, PolicyAccessSpec, PolicyAccessStatus,
    PolicySelector,
};
pub use allowance::{HANDLED_VALUES_KEPT, remember_handled, was_handled};
pub use conditions::{ConditionStatus, ConditionType, ConditionUpdate, Reason, set_condition};
pub use connector::{
    ConnectorPhase, DEFAULT_SYNC_INTERVAL, DEFAULT_SYNC_INTERVAL_TEXT, ExpensifyConnector,
    ExpensifyConnectorSpec, ExpensifyConnectorStatus, MAX_SYNC_INTERVAL, MIN_SYNC_INTERVAL,
    PolicyInfo, SecretRef, SyncIntervalError, TenantSpec,
};
pub use duration::{MAX_DURATION, ParseDurationError, parse_duration};
pub use ledger_entry::adopt_legacy_entries;
pub use request::{
    APPROVERS_CAP, AccessDecision, AccessDecisionSpec, AccessDecisionStatus, AccessRequest,
    AccessRequestSpec, AccessRequestStatus, DECISION_GROUPS_CAP, DEFAULT_PENDING_TIMEOUT,
    DecisionKind, DecisionRecord, HISTORY_CAP, LocalRef, MAX_REQUEST_DURATION, REASON_MAX_CHARS,
    RequestPhase, RequestRules, RequestTransition,
};

/// API group of every kind.
pub const GROUP: &str = "expensify.gitops.dev";
/// API version of every kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "expensify.gitops.dev/v1alpha1";

/// Any new value forces a sync; the value handled is echoed in status.
pub const RECONCILE_REQUESTED_AT: &str = "expensify.gitops.dev/reconcile-requested-at";
/// Lifts `maxRevocationsPerSync` once: each distinct value is honoured for one sync.
pub const ALLOW_MASS_REVOCATION: &str = "expensify.gitops.dev/allow-mass-revocation";

/// Most entries kept in a list in status (drift, failures, policies); the rest are counted.
pub const STATUS_LIST_CAP: usize = 50;
/// Longest status message, in bytes (a condition's message may not exceed 32768); longer
/// ones are cut, and say so.
pub const STATUS_MESSAGE_CAP: usize = 4096;
