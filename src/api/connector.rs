//! `ExpensifyConnector`: where Expensify is, which credentials to use, and the safety
//! settings every PolicyAccess on it shares.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::expensify::DEFAULT_ENDPOINT;

/// Desired state of a connection to Expensify's Integration Server.
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "expensify.gitops.dev",
    version = "v1alpha1",
    kind = "ExpensifyConnector",
    namespaced,
    status = "ExpensifyConnectorStatus",
    shortname = "exc",
    category = "expensify",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Users", type_ = "integer", json_path = ".status.userCount"),
    printcolumn(
        name = "Policies",
        type_ = "integer",
        json_path = ".status.policyCount"
    ),
    printcolumn(
        name = "Last Sync",
        type_ = "date",
        json_path = ".status.lastSuccessfulSyncTime"
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
pub struct ExpensifyConnectorSpec {
    /// The Secret, in the connector's namespace, that holds the partner credentials.
    pub credentials_secret_ref: SecretRef,
    /// Integration Server URL. https only; plain http is accepted on loopback (simulator).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The Expensify account behind the credentials; never revoked or demoted.
    pub admin_email: String,
    /// Drift check period, e.g. `10m`, `1h`.
    #[serde(default = "default_sync_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub sync_interval: String,
    /// More pending revocations than this in one sync and none is made (objects Blocked).
    #[serde(default = "default_max_revocations")]
    #[schemars(range(min = 0))]
    pub max_revocations_per_sync: i32,
    /// People never revoked or demoted, whatever any PolicyAccess says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_emails: Vec<String>,
    /// Other namespaces whose PolicyAccess objects may use this connector; `*` = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,
    /// Stop syncing: nothing is read or written until it is false again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// A Secret holding `partnerUserID` and `partnerUserSecret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub name: String,
    #[serde(rename = "userIDKey", default = "default_user_id_key")]
    pub user_id_key: String,
    #[serde(default = "default_user_secret_key")]
    pub user_secret_key: String,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_string()
}

fn default_sync_interval() -> String {
    "10m".to_string()
}

fn default_max_revocations() -> i32 {
    10
}

fn default_user_id_key() -> String {
    "partnerUserID".to_string()
}

fn default_user_secret_key() -> String {
    "partnerUserSecret".to_string()
}

/// A connector's lifecycle, as an identity-governance connector reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ConnectorPhase {
    #[default]
    NotConnected,
    Syncing,
    Connected,
    Error,
}

impl std::fmt::Display for ConnectorPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What the connector saw and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpensifyConnectorStatus {
    #[serde(default)]
    pub phase: ConnectorPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync_time: Option<Time>,
    /// Distinct people seen on the policies the credentials can see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_count: Option<i64>,
    /// The policies seen (capped; `export` lists them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last `reconcile-requested-at` annotation value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The last `allow-mass-revocation` value used (each value lifts the limit once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_mass_revocation: Option<String>,
}

/// One policy the credentials can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plan: String,
    pub owner: String,
    pub employee_count: i64,
}
