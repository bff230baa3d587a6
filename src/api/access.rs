//! `PolicyAccess`: who belongs to one Expensify policy, with which role.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired membership of one Expensify policy (workspace).
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "expensify.gitops.dev",
    version = "v1alpha1",
    kind = "PolicyAccess",
    plural = "policyaccesses",
    namespaced,
    status = "PolicyAccessStatus",
    shortname = "pa",
    category = "expensify",
    printcolumn(name = "Policy", type_ = "string", json_path = ".status.policyName"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Members",
        type_ = "integer",
        json_path = ".status.desiredMembers"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
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
#[serde(rename_all = "camelCase")]
pub struct PolicyAccessSpec {
    pub connector_ref: ConnectorRef,
    /// Exactly one of `id` and `name`.
    pub policy: PolicySelector,
    #[serde(default)]
    pub mode: AccessMode,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Authoritative only: the other tenant namespaces whose objects may still ask for
    /// people on this policy (objects of the connector's own namespace always may).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<String>,
    /// Nothing is written for this object while true; drift is still reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Keyed by `email`: the API server refuses duplicates and server-side apply merges
    /// per member.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["email"]))]
    pub members: Vec<MemberSpec>,
    /// Who may ask for temporary access to this policy, and who approves (see
    /// `AccessRequest`). Absent: no requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<super::request::RequestRules>,
}

/// The connector to use; `namespace` defaults to the object's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Which policy: by `id` (stable) or by `name` (must be unique among visible policies).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.id) != has(self.name)",
    "message": "exactly one of policy.id and policy.name"
}]))]
pub struct PolicySelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// How far this object's word goes on its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    /// Grants and changes roles; revokes only members it granted itself.
    #[default]
    Additive,
    /// Also revokes everyone no PolicyAccess asks for (except owner, admin, protected).
    Authoritative,
    /// Writes nothing; reports drift.
    ObserveOnly,
}

/// What deleting the object does to the members it granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Revoke what this object granted (subject to the revocation limit).
    #[default]
    Revoke,
    /// Leave everyone as they are.
    Orphan,
}

/// One person on the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    pub email: String,
    /// `user` (default), `auditor` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schemas::role_schema")]
    pub role: Option<String>,
    /// Approver (Expensify's managerEmail / submitsTo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submits_to: Option<String>,
    /// Sent to Expensify only when given or already known.
    #[serde(
        rename = "employeeID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub employee_id: Option<String>,
    /// RFC 3339 time after which the membership is revoked (just-in-time access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub expires_at: Option<String>,
}

fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

/// Where a PolicyAccess stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum AccessPhase {
    #[default]
    Pending,
    Syncing,
    Synced,
    Blocked,
    Error,
}

impl std::fmt::Display for AccessPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What the last sync saw and did for this object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAccessStatus {
    #[serde(default)]
    pub phase: AccessPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(rename = "policyID", default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default)]
    pub desired_members: i32,
    #[serde(default)]
    pub in_sync_members: i32,
    /// This object's part of the ledger: what the operator added or raised on its behalf,
    /// and so may take back. Read also in the old shape (a flat list of emails).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::ledger_entry::entries_or_legacy_emails"
    )]
    #[schemars(schema_with = "super::ledger_entry::entries_schema")]
    pub managed_members: Vec<ManagedMember>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_plan: Option<PlanSummary>,
    /// Differences from Expensify that remain (capped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// Member changes Expensify did not take, retried next sync (capped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<MemberFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last `reconcile-requested-at` annotation value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The last `allow-mass-revocation` value used (each value lifts the limit once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_mass_revocation: Option<String>,
    /// Earlier `allow-mass-revocation` values used, newest last (at most 20): none is
    /// honoured again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handled_mass_revocations: Vec<String>,
}

pub use super::ledger_entry::ManagedMember;

/// Changes made by the last sync that made any (for ObserveOnly: the changes the last sync
/// would have made). A sync with nothing to do leaves it as it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub grants: i32,
    pub role_changes: i32,
    pub revocations: i32,
}

/// One difference between the spec and Expensify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub email: String,
    pub kind: DriftKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

/// Kinds of drift.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum DriftKind {
    /// Asked for, not on the policy.
    Missing,
    /// On the policy, asked for by nobody (reported for Authoritative and ObserveOnly).
    Extra,
    /// On the policy with another role.
    RoleMismatch,
}

/// A member change Expensify did not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberFailure {
    pub email: String,
    pub reason: String,
}
