//! Step 1, read inputs: what a connector sync starts from, and whether anything that
//! decides a sync changed since the last one.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::time::Instant;

use crate::api::{
    ALLOW_MASS_REVOCATION, AccessDecision, AccessRequest, ExpensifyConnector, PolicyAccess,
    RECONCILE_REQUESTED_AT,
};
use crate::cluster::context::Context;
use crate::cluster::kube_io::{KubeCallError, SecretLookup};
use crate::cluster::requests::{access_of_request, request_of_decision};
use crate::reconcile::digest;
use crate::reconcile::requests::{connector_answering, holds_entries};
use crate::reconcile::{AccessObject, ConnectorObject, ObjectKey};
use crate::sync::reads_credentials;

/// What a connector sync starts from: the connector and every PolicyAccess as this
/// replica knows them (the caches, with the statuses written in this term), and the
/// connector's Secret (read only for a valid, allowed, unsuspended connector).
pub(super) struct Inputs {
    pub connector: ExpensifyConnector,
    pub object: ConnectorObject,
    pub all: Vec<PolicyAccess>,
    pub connectors: Vec<ConnectorObject>,
    pub secret: Option<SecretLookup>,
    /// The access requests on the attached objects, as this replica knows them.
    pub requests: Vec<AccessRequest>,
    /// The decisions on those requests.
    pub decisions: Vec<AccessDecision>,
    /// Where in `all` the objects that name this connector are, found once.
    attached: Vec<usize>,
    /// What decides whether a sync is needed (see [`fingerprint`]).
    pub fingerprint: String,
}

impl Inputs {
    pub fn key(&self) -> &ObjectKey {
        &self.object.key
    }

    /// The PolicyAccess objects that name this connector.
    pub fn attached(&self) -> Vec<&PolicyAccess> {
        self.attached
            .iter()
            .filter_map(|at| self.all.get(*at))
            .collect()
    }

    /// The attached objects by key.
    pub fn attached_by_key(&self) -> BTreeMap<ObjectKey, &PolicyAccess> {
        self.attached()
            .into_iter()
            .map(|pa| (ObjectKey::of(&pa.metadata), pa))
            .collect()
    }

    /// The requests by key.
    pub fn requests_by_key(&self) -> BTreeMap<ObjectKey, &AccessRequest> {
        self.requests
            .iter()
            .map(|r| (ObjectKey::of(&r.metadata), r))
            .collect()
    }

    /// The decisions by key.
    pub fn decisions_by_key(&self) -> BTreeMap<ObjectKey, &AccessDecision> {
        self.decisions
            .iter()
            .map(|d| (ObjectKey::of(&d.metadata), d))
            .collect()
    }

    /// How long until the next sync is due, when nothing that decides one changed since
    /// the last.
    pub fn unchanged_since_last_sync(&self, ctx: &Context) -> Option<Duration> {
        let last = ctx.last_sync(self.key())?;
        let now = Instant::now();
        (last.fingerprint == self.fingerprint && now < last.due).then(|| last.due - now)
    }
}

/// Inputs with a connector and requests only, for tests of the steps after a sync.
#[cfg(test)]
pub(super) fn with_requests(
    connector: ExpensifyConnector,
    requests: Vec<AccessRequest>,
    decisions: Vec<AccessDecision>,
) -> Inputs {
    Inputs {
        object: ConnectorObject::from_resource(&connector),
        connector,
        all: Vec::new(),
        connectors: Vec::new(),
        secret: None,
        requests,
        decisions,
        attached: Vec::new(),
        fingerprint: String::new(),
    }
}

/// Reads the inputs of a sync of `connector` (as this replica knows it).
pub(super) async fn read(
    ctx: &Context,
    connector: ExpensifyConnector,
) -> Result<Inputs, KubeCallError> {
    let object = ConnectorObject::from_resource(&connector);
    let all = ctx.accesses();
    // The endpoint allowlist and the spec are checked before the Secret is read.
    let secret = if reads_credentials(&object, &ctx.expensify) {
        let reference = &object.spec.credentials_secret_ref;
        Some(ctx.read_secret(&object.key.namespace, reference).await?)
    } else {
        None
    };
    let attached = all
        .iter()
        .enumerate()
        .filter(|(_, pa)| AccessObject::from_resource(pa).connector_key() == object.key)
        .map(|(at, _)| at)
        .collect::<Vec<usize>>();
    let attached_keys: std::collections::BTreeSet<ObjectKey> = attached
        .iter()
        .filter_map(|at| all.get(*at))
        .map(|pa| ObjectKey::of(&pa.metadata))
        .collect();
    let connectors = ctx.connectors();
    let (requests, decisions) = on_attached(ctx, &attached_keys, &all, (&object.key, &connectors));
    let mut inputs = Inputs {
        connector,
        object,
        all,
        connectors,
        secret,
        requests,
        decisions,
        attached,
        fingerprint: String::new(),
    };
    inputs.fingerprint = fingerprint(&inputs);
    Ok(inputs)
}

/// The requests whose PolicyAccess is one of `attached`, or that hold ledger entries this
/// connector wrote (their PolicyAccess may be gone: what they added must still be taken
/// back), the decisions on them, and the requests and decisions nothing else routes that
/// this connector answers ([`connector_answering`]: only their statuses are written).
fn on_attached(
    ctx: &Context,
    attached: &std::collections::BTreeSet<ObjectKey>,
    all: &[PolicyAccess],
    (connector, connectors): (&ObjectKey, &[ConnectorObject]),
) -> (Vec<AccessRequest>, Vec<AccessDecision>) {
    let (requests, decisions) = ctx.requests_and_decisions();
    let existing: std::collections::BTreeSet<ObjectKey> = requests
        .iter()
        .map(|r| ObjectKey::of(&r.metadata))
        .collect();
    let accesses: Vec<AccessObject> = all.iter().map(AccessObject::from_resource).collect();
    let answers_namespace = |namespace: &str| {
        connector_answering(
            namespace,
            accesses.iter().cloned(),
            connectors.iter().cloned(),
        )
        .as_ref()
            == Some(connector)
    };
    let answers = |d: &AccessDecision| {
        !existing.contains(&request_of_decision(d))
            && answers_namespace(&ObjectKey::of(&d.metadata).namespace)
    };
    let present: std::collections::BTreeSet<&ObjectKey> = accesses.iter().map(|a| &a.key).collect();
    let answers_request = |r: &AccessRequest| {
        !present.contains(&access_of_request(r))
            && !holds_entries(r.status.as_ref())
            && answers_namespace(&ObjectKey::of(&r.metadata).namespace)
    };
    let written_here = connector.to_string();
    let holds_here = |r: &AccessRequest| {
        r.status.as_ref().is_some_and(|s| {
            s.managed_members
                .iter()
                .any(|e| e.connector.as_deref() == Some(written_here.as_str()))
        })
    };
    let requests: Vec<AccessRequest> = requests
        .into_iter()
        .filter(|r| attached.contains(&access_of_request(r)) || holds_here(r) || answers_request(r))
        .collect();
    let request_keys: std::collections::BTreeSet<ObjectKey> = requests
        .iter()
        .map(|r| ObjectKey::of(&r.metadata))
        .collect();
    let decisions = decisions
        .into_iter()
        .filter(|d| request_keys.contains(&request_of_decision(d)) || answers(d))
        .collect();
    (requests, decisions)
}

/// What decides whether a sync is needed: specs, annotations, deletions, the requests and
/// decisions, and the Secret version, never status (so our own status writes do not
/// cause syncs; a request's clock wakes the sync through the next sync's due time).
fn fingerprint(inputs: &Inputs) -> String {
    let annotations = |meta: &ObjectMeta| {
        let all = meta.annotations.clone().unwrap_or_default();
        [RECONCILE_REQUESTED_AT, ALLOW_MASS_REVOCATION].map(|k| all.get(k).cloned())
    };
    let objects: Vec<_> = inputs
        .attached()
        .iter()
        .map(|pa| {
            (
                ObjectKey::of(&pa.metadata).to_string(),
                &pa.spec,
                pa.metadata.deletion_timestamp.is_some(),
                annotations(&pa.metadata),
            )
        })
        .collect();
    let secret_version = match &inputs.secret {
        Some(SecretLookup::Found {
            resource_version, ..
        }) => resource_version.as_str(),
        _ => "",
    };
    let requests: Vec<_> = inputs
        .requests
        .iter()
        .map(|r| {
            (
                ObjectKey::of(&r.metadata).to_string(),
                r.metadata.uid.as_deref(),
                &r.spec,
                r.metadata.deletion_timestamp.is_some(),
            )
        })
        .collect();
    let decisions: Vec<_> = inputs
        .decisions
        .iter()
        .map(|d| (ObjectKey::of(&d.metadata).to_string(), &d.spec))
        .collect();
    digest(&(
        &inputs.connector.spec,
        annotations(&inputs.connector.metadata),
        objects,
        secret_version,
        requests,
        decisions,
    ))
}
