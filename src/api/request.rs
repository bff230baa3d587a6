//! Access requests: `spec.requests` on a PolicyAccess (who may ask for temporary access to
//! its policy, and who approves), and the two kinds people create, `AccessRequest` and
//! `AccessDecision`. Both kinds are immutable after creation: what was asked and decided
//! is the audit trail.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ledger_entry::ManagedMember;

/// Longest `reason` or `comment`, in characters: it is copied into notifications and
/// status, so it is bounded where it is written.
pub const REASON_MAX_CHARS: usize = 1000;
/// Most transitions kept in `status.history` (oldest dropped first).
pub const HISTORY_CAP: usize = 20;
/// Most approvers a rule may name.
pub const APPROVERS_CAP: usize = 20;
/// Most groups a decision may claim.
pub const DECISION_GROUPS_CAP: usize = 20;
/// `spec.requests.pendingTimeout` when the rules leave it out.
pub const DEFAULT_PENDING_TIMEOUT: &str = "24h";
/// The longest `maxDuration` a rule may allow.
pub const MAX_REQUEST_DURATION: &str = "30d";

/// `spec.requests` of a PolicyAccess: who may ask for temporary access to its policy, for
/// how long, and who approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestRules {
    /// Roles that may be asked for; default `[user]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("items" = {"type": "string", "enum": ["user", "auditor", "admin"]}), length(max = 3))]
    pub roles: Option<Vec<String>>,
    /// The longest duration a request may ask for, e.g. `8h`; at most `30d`.
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h|d))+$"), length(max = 32))]
    pub max_duration: String,
    /// A request must say why; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_reason: Option<bool>,
    /// Distinct valid approvals needed, 0..5; 0 grants at once (self-service within the
    /// caps); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 5))]
    pub approvals: Option<i32>,
    /// Emails, or `group:NAME`; default: the connector's owners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub approvers: Vec<String>,
    /// An unanswered request expires after this long; default `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h|d))+$"), length(max = 32))]
    pub pending_timeout: Option<String>,
}

/// A person asks for a role on the policy of a PolicyAccess, for a while, with a reason.
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "expensify.gitops.dev",
    version = "v1alpha1",
    kind = "AccessRequest",
    plural = "accessrequests",
    namespaced,
    status = "AccessRequestStatus",
    shortname = "areq",
    category = "expensify",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".status.policyName"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".spec.reason",
        priority = "1"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = "1"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: create a new request instead"))]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestSpec {
    /// A PolicyAccess in the same namespace whose `spec.requests` rules apply.
    pub access_ref: LocalRef,
    /// Who gets access.
    #[schemars(length(max = 254))]
    pub email: String,
    /// `user` (default), `auditor` or `admin`; one of the rules' `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schemas::role_schema")]
    pub role: Option<String>,
    /// How long, from when the grant lands: `1m` up to the rules' `maxDuration`.
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h|d))+$"), length(max = 32))]
    pub duration: String,
    /// Why (at most 1,000 characters); required unless the rules say otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub reason: Option<String>,
    /// The user who created the request (enforced at admission in a cluster).
    #[schemars(length(max = 254))]
    pub requester: String,
}

/// An object in the same namespace, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    #[schemars(length(max = 253))]
    pub name: String,
}

/// Where a request stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, JsonSchema,
)]
pub enum RequestPhase {
    /// Waiting for approvals.
    #[default]
    Pending,
    /// Granted; `expiresAt` is set.
    Active,
    /// Ended at `expiresAt` (reason `Ended`) or never answered (reason `NotApproved`).
    Expired,
    /// A valid Deny while Pending; for good.
    Denied,
    /// Ended early: a Revoke decision, its rules withdrawn, or a review.
    Revoked,
    /// Invalid; the reason says why.
    Error,
}

impl RequestPhase {
    /// Whether the request is over for good (its entry may still wait to be released).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestPhase::Expired | RequestPhase::Denied | RequestPhase::Revoked
        )
    }
}

impl std::fmt::Display for RequestPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One decision that counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// Who decided (normalized email).
    pub by: String,
    pub at: Time,
    /// The AccessDecision object.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One transition of a request, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestTransition {
    pub at: Time,
    pub phase: RequestPhase,
    /// A short machine-readable reason (`Approved`, `Ended`, `NotApproved`, ...).
    pub reason: String,
    /// The person whose decision caused it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a request stands, what counted, and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestStatus {
    #[serde(default)]
    pub phase: RequestPhase,
    /// Why it is in this phase (`Approved`, `Ended`, `NotApproved`, `Protected`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(rename = "policyID", default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    /// The approvers its rules name (emails and `group:NAME`), as read at the last sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Distinct valid approvals needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<i32>,
    /// The approvals that counted, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<DecisionRecord>,
    /// The decision that denied or revoked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<DecisionRecord>,
    /// When the grant landed: the clock starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Time>,
    /// `grantedAt + duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Its part of the ledger: what the operator added or raised for it, and so takes back
    /// when it ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_members: Vec<ManagedMember>,
    /// Its transitions, oldest first (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RequestTransition>,
}

/// A person's decision on a request: approve, deny, or end an active one early.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "expensify.gitops.dev",
    version = "v1alpha1",
    kind = "AccessDecision",
    plural = "accessdecisions",
    namespaced,
    status = "AccessDecisionStatus",
    shortname = "adec",
    category = "expensify",
    printcolumn(
        name = "Request",
        type_ = "string",
        json_path = ".spec.requestRef.name"
    ),
    printcolumn(name = "Decision", type_ = "string", json_path = ".spec.decision"),
    printcolumn(name = "By", type_ = "string", json_path = ".spec.decidedBy"),
    printcolumn(name = "Counted", type_ = "string", json_path = ".status.counted"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = "1"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: create a new decision instead"))]
#[serde(rename_all = "camelCase")]
pub struct AccessDecisionSpec {
    /// The AccessRequest, in the same namespace, this decides.
    pub request_ref: LocalRef,
    pub decision: DecisionKind,
    /// The user who created the decision (enforced at admission in a cluster).
    #[schemars(length(max = 254))]
    pub decided_by: String,
    /// Groups the decider claims (each must be one of theirs: enforced at admission).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub comment: Option<String>,
}

/// What a decision says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DecisionKind {
    Approve,
    Deny,
    /// Ends an active request early (by an approver or the requester).
    Revoke,
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Whether a decision counted, and why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessDecisionStatus {
    /// `true` when it counted towards its request; `false` with the reason otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
