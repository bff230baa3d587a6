//! The planner's view of the world: objects, what Expensify shows, and the clock. Plain
//! data, built by cluster mode from the API server and by file mode from YAML.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    AccessDecision, AccessDecisionSpec, AccessRequest, AccessRequestSpec, AccessRequestStatus,
    ExpensifyConnector, ExpensifyConnectorSpec, ExpensifyConnectorStatus, PolicyAccess,
    PolicyAccessSpec, PolicyAccessStatus,
};
use crate::expensify::{PolicySummary, RosterEntry};

/// `namespace/name` of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

/// Marks the key of a request's synthetic holder object.
const REQUEST_KEY_PREFIX: &str = "request:";

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of the synthetic holder object the planner sees for AccessRequest `name`:
    /// Kubernetes names cannot contain `:`, so it never collides with a PolicyAccess key.
    pub fn for_request(namespace: impl Into<String>, name: &str) -> Self {
        Self::new(namespace, format!("{REQUEST_KEY_PREFIX}{name}"))
    }

    /// The AccessRequest name behind a synthetic key; `None` for a PolicyAccess key.
    pub fn request_name(&self) -> Option<&str> {
        self.name.strip_prefix(REQUEST_KEY_PREFIX)
    }

    /// Reads `namespace/name` (as [`fmt::Display`] writes it); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, name) = text.split_once('/')?;
        let valid = |part: &str| !part.is_empty() && !part.contains('/');
        (valid(namespace) && valid(name)).then(|| Self::new(namespace, name))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Namespace of an object that names none, in both modes.
pub const DEFAULT_NAMESPACE: &str = "default";

impl ObjectKey {
    /// The key of an object's metadata (`default` when it names no namespace).
    pub fn of(meta: &ObjectMeta) -> Self {
        Self::new(
            meta.namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

fn annotations(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A connector as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorObject {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    pub annotations: BTreeMap<String, String>,
    pub spec: ExpensifyConnectorSpec,
    pub status: Option<ExpensifyConnectorStatus>,
}

impl ConnectorObject {
    pub fn from_resource(connector: &ExpensifyConnector) -> Self {
        let meta = &connector.metadata;
        Self {
            key: ObjectKey::of(meta),
            generation: meta.generation,
            annotations: annotations(meta),
            spec: connector.spec.clone(),
            status: connector.status.clone(),
        }
    }
}

/// A PolicyAccess as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessObject {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    /// Orders "newer" for conflicts between Authoritative objects; ties go by key.
    pub created: Option<Timestamp>,
    pub annotations: BTreeMap<String, String>,
    pub spec: PolicyAccessSpec,
    /// Being deleted: only its `deletionPolicy` and inventory matter.
    pub deleting: bool,
    /// The status from the last sync; `managedMembers` is read from it.
    pub status: Option<PolicyAccessStatus>,
}

impl AccessObject {
    pub fn from_resource(access: &PolicyAccess) -> Self {
        let meta = &access.metadata;
        Self {
            key: ObjectKey::of(meta),
            generation: meta.generation,
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            annotations: annotations(meta),
            spec: access.spec.clone(),
            deleting: meta.deletion_timestamp.is_some(),
            status: access.status.clone(),
        }
    }

    /// The namespace and name of the connector this object asks for.
    pub fn connector_key(&self) -> ObjectKey {
        ObjectKey::new(
            self.spec
                .connector_ref
                .namespace
                .clone()
                .unwrap_or_else(|| self.key.namespace.clone()),
            self.spec.connector_ref.name.clone(),
        )
    }

    /// The ledger entries its last status holds: emails normalized, entries from the old
    /// flat list given the status's policy, one per (policy, email).
    pub fn ledger_entries(&self) -> Vec<crate::api::ManagedMember> {
        let Some(status) = &self.status else {
            return Vec::new();
        };
        let mut entries = status.managed_members.clone();
        crate::api::adopt_legacy_entries(&mut entries, status.policy_id.as_deref());
        for entry in &mut entries {
            entry.email = crate::email::normalize(&entry.email);
        }
        entries.sort();
        entries.dedup_by(|a, b| a.key() == b.key());
        entries
    }
}

/// An AccessRequest as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestObject {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    pub created: Option<Timestamp>,
    pub spec: AccessRequestSpec,
    /// Being deleted: it ends now (its entry is released like any other).
    pub deleting: bool,
    /// The status from the last sync: its phase, clock and ledger entries.
    pub status: Option<AccessRequestStatus>,
}

impl RequestObject {
    pub fn from_resource(request: &AccessRequest) -> Self {
        let meta = &request.metadata;
        Self {
            key: ObjectKey::of(meta),
            generation: meta.generation,
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            spec: request.spec.clone(),
            deleting: meta.deletion_timestamp.is_some(),
            status: request.status.clone(),
        }
    }
}

/// An AccessDecision as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionObject {
    pub key: ObjectKey,
    /// Orders decisions: the first valid one on a point stands.
    pub created: Option<Timestamp>,
    pub spec: AccessDecisionSpec,
}

impl DecisionObject {
    pub fn from_resource(decision: &AccessDecision) -> Self {
        let meta = &decision.metadata;
        Self {
            key: ObjectKey::of(meta),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            spec: decision.spec.clone(),
        }
    }
}

/// How requests are approved in this mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval<'a> {
    /// File mode: the merge is the approval (git cannot prove who wrote a line), so
    /// `AccessDecision` documents are not counted; the caps are enforced.
    Merge,
    /// Cluster mode: `AccessDecision` objects count while the admission policy that
    /// proves who created them is in force; `Err(reason)`: it is not, and every request
    /// is `Error` with that reason (fail closed).
    Decisions(Result<(), &'a str>),
}

/// The access requests a sync sees, with the decisions on them.
#[derive(Debug, Clone, Copy)]
pub struct Requests<'a> {
    pub requests: &'a [RequestObject],
    pub decisions: &'a [DecisionObject],
    pub approval: Approval<'a>,
}

impl Requests<'_> {
    /// No requests at all.
    pub const NONE: Requests<'static> = Requests {
        requests: &[],
        decisions: &[],
        approval: Approval::Merge,
    };
}

/// What Expensify showed: the visible policies and the rosters read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub policies: Vec<PolicySummary>,
    pub rosters: BTreeMap<String, Vec<RosterEntry>>,
}

/// A stable digest of a serializable value: SHA-256 over its JSON form, in hex. Saved
/// plans bind what was reviewed with it, so it must resist a crafted collision.
pub fn digest(value: &impl serde::Serialize) -> String {
    use sha2::Digest;
    let text = serde_json::to_string(value).unwrap_or_default();
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{AccessObject, DEFAULT_NAMESPACE, ObjectKey};
    use crate::api::{
        ALLOW_MASS_REVOCATION, ConnectorRef, PolicyAccess, PolicyAccessSpec, PolicySelector,
    };

    #[test]
    fn an_object_from_a_resource_keeps_its_key_annotations_and_deletion() {
        let mut resource = PolicyAccess::new(
            "team",
            PolicyAccessSpec {
                requests: None,
                connector_ref: ConnectorRef {
                    name: "acme".into(),
                    namespace: None,
                },
                policy: PolicySelector {
                    id: Some("P1".into()),
                    name: None,
                },
                mode: Default::default(),
                deletion_policy: Default::default(),
                allow_from: Vec::new(),
                suspend: false,
                members: vec![],
            },
        );
        resource.metadata.annotations = Some(
            [(ALLOW_MASS_REVOCATION.to_string(), "x".to_string())]
                .into_iter()
                .collect(),
        );
        let object = AccessObject::from_resource(&resource);
        assert_eq!(object.key, ObjectKey::new(DEFAULT_NAMESPACE, "team"));
        assert_eq!(
            object
                .annotations
                .get(ALLOW_MASS_REVOCATION)
                .map(String::as_str),
            Some("x")
        );
        assert!(!object.deleting);

        resource.metadata.namespace = Some("finance".into());
        resource.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        let object = AccessObject::from_resource(&resource);
        assert_eq!(object.key, ObjectKey::new("finance", "team"));
        assert!(object.deleting);
    }

    #[test]
    fn a_key_reads_back_from_its_display_and_nothing_else_reads_as_one() {
        let key = ObjectKey::new("finance", "team");
        assert_eq!(ObjectKey::parse(&key.to_string()), Some(key));
        for not_a_key in ["finance", "/team", "finance/", "finance/team/x", "a//b", ""] {
            assert_eq!(ObjectKey::parse(not_a_key), None, "{not_a_key:?}");
        }
    }
}
