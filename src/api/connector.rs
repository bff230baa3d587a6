//! `ExpensifyConnector`: where Expensify is, which credentials to use, and the safety
//! settings every PolicyAccess on it shares.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::PolicySelector;
use super::duration::{ParseDurationError, parse_duration};
use crate::expensify::DEFAULT_ENDPOINT;

/// The shortest `syncInterval`: below it one connector would spend its credential's
/// shared rate budget (5 requests per 10 s) on drift checks alone.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// The longest `syncInterval`; drift older than a day is not a check.
pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// `syncInterval` when the spec leaves it out, and when its value is unusable (the
/// connector is in Error for it anyway).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(600);
/// [`DEFAULT_SYNC_INTERVAL`] as a manifest spells it (a test keeps the two equal).
pub const DEFAULT_SYNC_INTERVAL_TEXT: &str = "10m";

/// Desired state of a connection to Expensify's Integration Server.
// kube-derive takes one `printcolumn(...)` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The people answerable for this connector (at most 20 emails): the default
    /// approvers of access requests on its policies, and the people told when it needs
    /// setup. Shown in its status, in plans and in reviews.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub owners: Vec<String>,
    /// Drift check period, e.g. `10m`, `1h`; between `10s` and `24h`.
    #[serde(default = "default_sync_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new(
        "duration(self) >= duration('10s') && duration(self) <= duration('24h')"
    ).message("syncInterval must be between 10s and 24h"))]
    pub sync_interval: String,
    /// More pending revocations than this in one sync and none is made (objects Blocked).
    #[serde(default = "default_max_revocations")]
    #[schemars(range(min = 0))]
    pub max_revocations_per_sync: i32,
    /// People never revoked or demoted, whatever any PolicyAccess says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_emails: Vec<String>,
    /// Other namespaces whose PolicyAccess objects may use this connector, on any policy
    /// with any role; `*` = all. Prefer `tenants`, which says what each may touch (a
    /// namespace listed in both is read as its `tenants` entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,
    /// Other namespaces whose PolicyAccess objects may use this connector, each limited to
    /// the policies it lists and to roles up to `maxRole`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["namespace"]))]
    pub tenants: Vec<TenantSpec>,
    /// Stop syncing: nothing is read or written until it is false again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl ExpensifyConnectorSpec {
    /// `syncInterval` as a duration, or why it is not one between 10s and 24h.
    pub fn checked_sync_interval(&self) -> Result<Duration, SyncIntervalError> {
        let interval = parse_duration(&self.sync_interval)?;
        if (MIN_SYNC_INTERVAL..=MAX_SYNC_INTERVAL).contains(&interval) {
            Ok(interval)
        } else {
            Err(SyncIntervalError::OutOfRange {
                text: self.sync_interval.clone(),
            })
        }
    }

    /// `syncInterval`, always within 10s..=24h: out-of-range values are clamped and
    /// unreadable ones give the 10m default, so no caller can spin or overflow on it.
    pub fn sync_interval(&self) -> Duration {
        parse_duration(&self.sync_interval).map_or(DEFAULT_SYNC_INTERVAL, |d| {
            d.clamp(MIN_SYNC_INTERVAL, MAX_SYNC_INTERVAL)
        })
    }
}

/// Why a `syncInterval` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncIntervalError {
    #[error(transparent)]
    Unreadable(#[from] ParseDurationError),
    #[error("{text:?} is outside the allowed range 10s..24h")]
    OutOfRange { text: String },
}

/// What one tenant namespace may touch through the connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// The namespace of the PolicyAccess objects this entry limits.
    pub namespace: String,
    /// The only policies its objects may name, each by `id` or by `name` (a name that
    /// matches more than one policy allows none of them).
    #[serde(default)]
    pub policies: Vec<PolicySelector>,
    /// The highest role its objects may grant: `user` (default), `auditor` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schemas::role_schema")]
    pub max_role: Option<String>,
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
    DEFAULT_SYNC_INTERVAL_TEXT.to_string()
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
    /// `spec.owners` as the last sync read them (normalized emails): who to ask.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_sync_interval_reads_as_its_text() {
        assert_eq!(
            parse_duration(DEFAULT_SYNC_INTERVAL_TEXT).unwrap(),
            DEFAULT_SYNC_INTERVAL
        );
    }

    fn spec(sync_interval: &str) -> ExpensifyConnectorSpec {
        ExpensifyConnectorSpec {
            credentials_secret_ref: SecretRef {
                name: "creds".into(),
                user_id_key: default_user_id_key(),
                user_secret_key: default_user_secret_key(),
            },
            endpoint: default_endpoint(),
            admin_email: "admin@acme.example".into(),
            owners: Vec::new(),
            sync_interval: sync_interval.into(),
            max_revocations_per_sync: default_max_revocations(),
            protected_emails: Vec::new(),
            allowed_namespaces: Vec::new(),
            tenants: Vec::new(),
            suspend: false,
        }
    }

    #[test]
    fn sync_interval_is_always_within_bounds() {
        assert_eq!(spec("1h30m").sync_interval(), Duration::from_secs(5400));
        assert_eq!(spec("1ms").sync_interval(), MIN_SYNC_INTERVAL);
        assert_eq!(spec("48h").sync_interval(), MAX_SYNC_INTERVAL);
        for unusable in ["9999999999999999999s", "often", ""] {
            assert_eq!(spec(unusable).sync_interval(), DEFAULT_SYNC_INTERVAL);
        }
    }

    #[test]
    fn checked_sync_interval_names_the_range() {
        assert_eq!(spec("10s").checked_sync_interval(), Ok(MIN_SYNC_INTERVAL));
        assert_eq!(spec("24h").checked_sync_interval(), Ok(MAX_SYNC_INTERVAL));
        let err = spec("9s").checked_sync_interval().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"9s\" is outside the allowed range 10s..24h"
        );
        assert!(matches!(
            spec("9999999999999999999s").checked_sync_interval(),
            Err(SyncIntervalError::Unreadable(_))
        ));
    }

    #[test]
    fn the_crd_bounds_sync_interval() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(ExpensifyConnector::crd()).unwrap();
        let field = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["syncInterval"];
        assert_eq!(field["maxLength"], 32);
        let rule = field["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap();
        assert!(rule.contains("duration('10s')") && rule.contains("duration('24h')"));
    }
}
