//! The Kubernetes calls the controller makes, one function each, so the RBAC rules and the
//! mock-server tests have one list to check against. The writes here (status patches,
//! finalizer changes) go through the Context's client, which refuses them once this replica
//! has lost the Lease (`super::leadership::guarded_client`).

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{API_VERSION, SecretRef};
use crate::expensify::Credentials;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "expensify-operator";
/// Held on every PolicyAccess a connector syncs, so its deletion can revoke what it granted.
pub const FINALIZER: &str = "expensify.gitops.dev/finalizer";
/// Held on a connector while any PolicyAccess refers to it, so `Revoke` deletions are
/// settled before the connector (and its credentials) go.
pub const IN_USE_FINALIZER: &str = "expensify.gitops.dev/in-use";
/// On an AccessRequest that holds (or is about to hold) access: deleting it waits until
/// what it was granted is released.
pub const REQUEST_FINALIZER: &str = "expensify.gitops.dev/release";

/// A Kubernetes call that failed, named after the action.
#[derive(Debug, thiserror::Error)]
pub enum KubeCallError {
    #[error("reading Secret {namespace}/{name}: {source}")]
    ReadSecret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("patching the status of {kind} {namespace}/{name}: {source}")]
    PatchStatus {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the finalizers of {kind} {namespace}/{name}: {source}")]
    Finalizer {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl KubeCallError {
    /// What kind of call failed: a small, fixed set, used as a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            KubeCallError::ReadSecret { .. } => "read_secret",
            KubeCallError::PatchStatus { .. } => "patch_status",
            KubeCallError::Finalizer { .. } => "finalizer",
        }
    }
}

/// The namespaces the controller watches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every namespace (a ClusterRole).
    #[default]
    AllNamespaces,
    /// Only these (a Role in each).
    Namespaces(Vec<String>),
}

impl Scope {
    /// `[]` means all namespaces.
    pub fn from_list(namespaces: &[String]) -> Scope {
        let mut namespaces: Vec<String> = namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        if namespaces.is_empty() {
            Scope::AllNamespaces
        } else {
            Scope::Namespaces(namespaces)
        }
    }

    /// One Api per watched scope: `all` once, or one per namespace.
    pub fn apis<K>(&self, client: &kube::Client) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Scope::AllNamespaces => vec![Api::all(client.clone())],
            Scope::Namespaces(namespaces) => namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Scope::AllNamespaces => true,
            Scope::Namespaces(namespaces) => namespaces.iter().any(|n| n == namespace),
        }
    }
}

/// What reading a connector's Secret found.
#[derive(Debug)]
pub enum SecretLookup {
    Found {
        credentials: Credentials,
        resource_version: String,
    },
    /// Missing Secret or key: a message for status, never the data.
    Unusable(String),
}

/// A Secret by name, `None` when there is none.
async fn get_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, KubeCallError> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| KubeCallError::ReadSecret {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
}

/// The largest Secret value [`read_secret_value`] takes (a webhook URL).
const MAX_SECRET_VALUE_BYTES: usize = 4096;

/// One key of a Secret as text (`None` when the Secret or the key is missing, or the
/// value is larger than 4 KiB or not UTF-8), read fresh each time.
pub async fn read_secret_value(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, KubeCallError> {
    let Some(secret) = get_secret(client, namespace, name).await? else {
        return Ok(None);
    };
    Ok(secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .filter(|b| b.0.len() <= MAX_SECRET_VALUE_BYTES)
        .and_then(|b| String::from_utf8(b.0.clone()).ok()))
}

/// Reads the connector's credentials, fresh each sync, so rotation needs no restart.
pub async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    reference: &SecretRef,
) -> Result<SecretLookup, KubeCallError> {
    let Some(secret) = get_secret(client, namespace, &reference.name).await? else {
        return Ok(SecretLookup::Unusable(format!(
            "Secret {namespace}/{} not found",
            reference.name
        )));
    };
    let value = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
    };
    let (Some(id), Some(secret_value)) = (
        value(&reference.user_id_key),
        value(&reference.user_secret_key),
    ) else {
        return Ok(SecretLookup::Unusable(format!(
            "Secret {namespace}/{} lacks key {:?} or {:?}",
            reference.name, reference.user_id_key, reference.user_secret_key
        )));
    };
    match Credentials::new(id, secret_value) {
        Ok(credentials) => Ok(SecretLookup::Found {
            credentials,
            resource_version: secret.resource_version().unwrap_or_default(),
        }),
        Err(e) => Ok(SecretLookup::Unusable(format!(
            "Secret {namespace}/{}: {e}",
            reference.name
        ))),
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The preconditions of a status write: the object's uid and the resourceVersion it was
/// read at. A write computed from a stale view (a lagging cache, another replica's write
/// since) is refused with a conflict instead of overwriting a newer ledger.
fn preconditions(meta: &ObjectMeta, resource_version: Option<&str>) -> serde_json::Value {
    let mut preconditions = serde_json::Map::new();
    if let Some(uid) = &meta.uid {
        preconditions.insert("uid".into(), json!(uid));
    }
    if let Some(resource_version) = resource_version {
        preconditions.insert("resourceVersion".into(), json!(resource_version));
    }
    serde_json::Value::Object(preconditions)
}

/// Server-side applies a status, provided the object is still at `resource_version`;
/// returns the resourceVersion it is at after the write. (The status's type is the
/// caller's to match: `Context::write_status` takes the kind's own.)
pub async fn apply_status<K: NamespacedObject, S: serde::Serialize>(
    client: &kube::Client,
    object: &K,
    resource_version: Option<&str>,
    status: &S,
) -> Result<Option<String>, KubeCallError> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let kind = K::kind(&()).to_string();
    let patch = json!({"apiVersion": API_VERSION, "kind": kind,
        "metadata": preconditions(object.meta(), resource_version), "status": status});
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch_status(&name, &apply_params(), &Patch::Apply(&patch))
        .await
        .map(|written| written.meta().resource_version.clone())
        .map_err(|source| KubeCallError::PatchStatus {
            kind,
            namespace,
            name,
            source,
        })
}

/// A namespaced object kube can get and patch (PolicyAccess, ExpensifyConnector).
pub trait NamespacedObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> NamespacedObject for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// Sets the finalizer list, guarded by the object's resourceVersion (a concurrent change
/// makes the API server refuse, and the next sync tries again); returns the
/// resourceVersion it left.
pub async fn set_finalizers<K>(
    client: &kube::Client,
    object: &K,
    finalizers: Vec<String>,
) -> Result<Option<String>, KubeCallError>
where
    K: NamespacedObject,
{
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|written| written.meta().resource_version.clone())
        .map_err(|source| KubeCallError::Finalizer {
            kind: K::kind(&()).to_string(),
            namespace,
            name,
            source,
        })
}

/// Adds `finalizer` when missing; `Some(resourceVersion left)` when it wrote.
pub async fn ensure_finalizer<K>(
    client: &kube::Client,
    object: &K,
    finalizer: &str,
) -> Result<Option<String>, KubeCallError>
where
    K: NamespacedObject,
{
    if object.finalizers().iter().any(|f| f == finalizer) {
        return Ok(None);
    }
    let mut finalizers = object.finalizers().to_vec();
    finalizers.push(finalizer.to_string());
    set_finalizers(client, object, finalizers).await
}

/// Removes `finalizer`, letting a deletion finish; `Some(resourceVersion left)` when it
/// wrote.
pub async fn release_finalizer<K>(
    client: &kube::Client,
    object: &K,
    finalizer: &str,
) -> Result<Option<String>, KubeCallError>
where
    K: NamespacedObject,
{
    if !object.finalizers().iter().any(|f| f == finalizer) {
        return Ok(None);
    }
    let finalizers = object
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    set_finalizers(client, object, finalizers).await
}

/// Publishes an Event on an object; a failure is logged, never fatal to a sync.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "publishing an Event failed");
    }
}
