//! What the access-request tests build, in one place: the connector `acme`, a PolicyAccess
//! with request rules, an AccessRequest and an AccessDecision, each as JSON, YAML (file
//! mode), the typed resource, or the object the planner reads; a sync of them through the
//! real pipeline against the simulator (statuses saved back, as a store would); and, for
//! cluster mode, the controller on the API server double. `admission` evaluates the
//! chart's identity admission policy.

pub mod admission;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use expensify_operator::api::{
    AccessDecision, AccessRequest, AccessRequestStatus, ExpensifyConnector, PolicyAccess,
};
use expensify_operator::cluster;
use expensify_operator::expensify::ExpensifyClients;
use expensify_operator::reconcile::{
    AccessObject, Approval, ConnectorObject, DecisionObject, RequestObject, Requests, Scope,
};
use expensify_operator::simulator::SimulatorHandle;
use expensify_operator::sync::{SyncReport, SyncRequest, sync_connector};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::apiserver::ApiServerDouble;
use super::{ADMIN_ID, ADMIN_SECRET, FINANCE, admin_client, roster, sim_settings};

/// The namespace every object is in unless a test moves it.
pub const NAMESPACE: &str = "finance";
pub const CONNECTOR: &str = "acme";
pub const CREDENTIALS: &str = "expensify-credentials";
pub const ADMIN_EMAIL: &str = "it-admin@acme.example";
/// One of the connector's `protectedEmails`.
pub const PROTECTED: &str = "ceo@acme.example";
/// The Finance policy's owner in the simulator's seed.
pub const POLICY_OWNER: &str = "cfo@acme.example";
/// When the requests built here were created (the API double stamps its own).
pub const CREATED: &str = "2026-01-01T00:00:00Z";

/// One object of the `expensify.gitops.dev` group, built up field by field.
#[derive(Debug, Clone)]
pub struct Manifest {
    kind: &'static str,
    namespace: String,
    name: String,
    created: Option<String>,
    pub spec: Value,
}

impl Manifest {
    fn new(kind: &'static str, name: &str, spec: Value) -> Self {
        Self {
            kind,
            namespace: NAMESPACE.into(),
            name: name.into(),
            created: None,
            spec,
        }
    }

    /// Sets `spec.FIELD`; `Value::Null` removes it.
    pub fn set(mut self, field: &str, value: impl serde::Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap();
        let spec = self.spec.as_object_mut().unwrap();
        if value.is_null() {
            spec.remove(field);
        } else {
            spec.insert(field.into(), value);
        }
        self
    }

    pub fn in_namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    pub fn created(mut self, at: &str) -> Self {
        self.created = Some(at.into());
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn json(&self) -> Value {
        let mut metadata = json!({"name": self.name, "namespace": self.namespace});
        if let Some(created) = &self.created {
            metadata["creationTimestamp"] = json!(created);
        }
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": self.kind,
               "metadata": metadata, "spec": self.spec})
    }

    /// The document as a person writes it in a repository (no server-set fields).
    pub fn yaml(&self) -> String {
        let mut document = self.json();
        if let Some(metadata) = document["metadata"].as_object_mut() {
            metadata.remove("creationTimestamp");
        }
        serde_saphyr::to_string(&document).unwrap()
    }

    pub fn resource<K: serde::de::DeserializeOwned>(&self) -> K {
        serde_json::from_value(self.json()).unwrap()
    }

    pub fn connector_object(&self) -> ConnectorObject {
        ConnectorObject::from_resource(&self.resource::<ExpensifyConnector>())
    }

    pub fn access_object(&self) -> AccessObject {
        AccessObject::from_resource(&self.resource::<PolicyAccess>())
    }

    pub fn request_object(&self) -> RequestObject {
        RequestObject::from_resource(&self.resource::<AccessRequest>())
    }

    pub fn decision_object(&self) -> DecisionObject {
        DecisionObject::from_resource(&self.resource::<AccessDecision>())
    }

    /// A PolicyAccess listing one more member.
    pub fn member(mut self, email: &str, role: &str) -> Self {
        let members = self.spec["members"].as_array_mut().unwrap();
        members.push(json!({"email": email, "role": role}));
        self
    }

    /// A PolicyAccess taking requests under these rules.
    pub fn rules(self, rules: Rules) -> Self {
        self.set("requests", rules.0)
    }
}

/// The connector `acme` in `finance`: the admin and one protected person; no endpoint
/// (sync tests hand the client in), see [`Manifest::set`] for `endpoint`, `tenants`...
pub fn connector() -> Manifest {
    Manifest::new(
        "ExpensifyConnector",
        CONNECTOR,
        json!({"credentialsSecretRef": {"name": CREDENTIALS}, "adminEmail": ADMIN_EMAIL,
               "protectedEmails": [PROTECTED]}),
    )
}

/// A PolicyAccess on Finance through `acme` (in `finance`), Additive, no members, no rules.
pub fn access(name: &str) -> Manifest {
    Manifest::new(
        "PolicyAccess",
        name,
        json!({"connectorRef": {"name": CONNECTOR, "namespace": NAMESPACE},
               "policy": {"id": FINANCE}, "mode": "Additive", "members": []}),
    )
}

/// `spec.requests` of a PolicyAccess, starting from `maxDuration` alone.
#[derive(Debug, Clone)]
pub struct Rules(Value);

pub fn rules(max_duration: &str) -> Rules {
    Rules(json!({"maxDuration": max_duration}))
}

impl Rules {
    fn with(mut self, field: &str, value: Value) -> Self {
        self.0[field] = value;
        self
    }

    pub fn approvals(self, count: i32) -> Self {
        self.with("approvals", json!(count))
    }

    pub fn roles(self, roles: &[&str]) -> Self {
        self.with("roles", json!(roles))
    }

    pub fn approvers(self, approvers: &[&str]) -> Self {
        self.with("approvers", json!(approvers))
    }

    pub fn pending_timeout(self, timeout: &str) -> Self {
        self.with("pendingTimeout", json!(timeout))
    }
}

/// `email` asks for `user` on `access` for 4h, with a reason, in their own name.
pub fn request(name: &str, access: &str, email: &str) -> Manifest {
    Manifest::new(
        "AccessRequest",
        name,
        json!({"accessRef": {"name": access}, "email": email, "duration": "4h",
               "reason": "month end", "requester": email}),
    )
    .created(CREATED)
}

/// `by` decides `request` (`Approve`, `Deny` or `Revoke`).
pub fn decision(name: &str, request: &str, decision: &str, by: &str) -> Manifest {
    Manifest::new(
        "AccessDecision",
        name,
        json!({"requestRef": {"name": request}, "decision": decision, "decidedBy": by}),
    )
    .created(CREATED)
}

/// The role `email` has on Finance in the simulator.
pub fn role_of(sim: &SimulatorHandle, email: &str) -> Option<String> {
    roster(sim, FINANCE)
        .into_iter()
        .find(|(e, _)| e == email)
        .map(|(_, r)| r)
}

/// What one connector's syncs see, kept from one sync to the next as a store keeps it.
pub struct World {
    pub connector: ConnectorObject,
    pub accesses: Vec<AccessObject>,
    pub requests: Vec<RequestObject>,
    pub decisions: Vec<DecisionObject>,
    pub approval: Approval<'static>,
}

impl World {
    /// `acme` with these PolicyAccess objects and requests; the merge approves (file mode).
    pub fn new(accesses: &[Manifest], requests: &[Manifest]) -> Self {
        Self {
            connector: connector().connector_object(),
            accesses: accesses.iter().map(Manifest::access_object).collect(),
            requests: requests.iter().map(Manifest::request_object).collect(),
            decisions: Vec::new(),
            approval: Approval::Merge,
        }
    }

    /// Through this connector instead of the default one.
    pub fn through(mut self, connector: &Manifest) -> Self {
        self.connector = connector.connector_object();
        self
    }

    /// Decisions count, as in a cluster with the admission policy in force.
    pub fn deciding(mut self) -> Self {
        self.approval = Approval::Decisions(Ok(()));
        self
    }

    pub fn decide(&mut self, decision: &Manifest) {
        self.decisions.push(decision.decision_object());
    }

    pub fn request(&self, name: &str) -> &RequestObject {
        self.requests.iter().find(|r| r.key.name == name).unwrap()
    }

    pub fn request_mut(&mut self, name: &str) -> &mut RequestObject {
        self.requests
            .iter_mut()
            .find(|r| r.key.name == name)
            .unwrap()
    }

    /// The status the last sync gave `name`.
    pub fn status(&self, name: &str) -> AccessRequestStatus {
        self.request(name).status.clone().unwrap_or_default()
    }

    /// One sync at `now` through the real pipeline; the statuses it reports are saved back.
    pub async fn sync(&mut self, sim: &SimulatorHandle, now: Timestamp) -> SyncReport {
        let connectors = [self.connector.clone()];
        let request = SyncRequest {
            connector: &self.connector,
            connectors: &connectors,
            accesses: &self.accesses,
            now,
            inventory_complete: true,
            scope: Scope::default(),
            unverified: &[],
            requests: Requests {
                requests: &self.requests,
                decisions: &self.decisions,
                approval: self.approval,
            },
            dry_run: false,
            write_ahead: None,
            reviewed: None,
        };
        let report = sync_connector(request, &admin_client(sim)).await;
        for access in &mut self.accesses {
            if let Some(status) = report.statuses.get(&access.key) {
                access.status = Some(status.clone());
            }
        }
        for asked in &mut self.requests {
            if let Some(status) = report.request_statuses.get(&asked.key) {
                asked.status = Some(status.clone());
            }
        }
        report
    }
}

/// The clock of the sync tests: five minutes after the requests were created.
pub fn start_time() -> Timestamp {
    "2026-01-01T00:05:00Z".parse().unwrap()
}

/// Creates `object` (JSON of kind `K`) through the API.
pub async fn create<K>(client: &kube::Client, object: &Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let namespace = object["metadata"]["namespace"].as_str().unwrap();
    let object: K = serde_json::from_value(object.clone()).unwrap();
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

pub use super::controller::eventually;

/// The controller of `finance` on the API double, its Expensify on the simulator.
pub struct Controller {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), cluster::RunControllerError>>,
}

impl Controller {
    /// `admission`: `Some(Ok(()))` takes the identity policy as in force; `None` checks it
    /// on the double (which serves none).
    pub fn start(
        double: &ApiServerDouble,
        sim: &SimulatorHandle,
        admission: Option<Result<(), String>>,
    ) -> Self {
        Self::start_in(double, sim, admission, &[NAMESPACE])
    }

    /// [`Controller::start`], watching these namespaces.
    pub fn start_in(
        double: &ApiServerDouble,
        sim: &SimulatorHandle,
        admission: Option<Result<(), String>>,
        namespaces: &[&str],
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = cluster::ControllerSettings {
            admission: Default::default(),
            allowed_webhooks: None,
            probes_addr: "127.0.0.1:0".parse().unwrap(),
            lease: None,
            debounce: Duration::from_millis(200),
            scope: cluster::Scope::Namespaces(
                namespaces.iter().map(|n| (*n).to_string()).collect(),
            ),
            watch_secrets: false,
        };
        let task = tokio::spawn(cluster::run_with_requests_admission(
            double.client(),
            settings,
            Arc::new(ExpensifyClients::new(sim_settings(sim)).unwrap()),
            async move {
                let _ = stopped.await;
            },
            admission,
        ));
        Self { stop, task }
    }

    /// Stops it and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the controller stops")
            .unwrap()
            .unwrap();
    }
}

/// The credentials Secret and the connector `acme` on the simulator, through the API.
pub async fn create_connector(client: &kube::Client, sim: &SimulatorHandle) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    create::<k8s_openapi::api::core::v1::Secret>(
        client,
        &json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": CREDENTIALS, "namespace": NAMESPACE},
        "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(ADMIN_SECRET)}}),
    )
    .await;
    create::<ExpensifyConnector>(client, &connector().set("endpoint", sim.endpoint()).json()).await;
}

/// The status of the request `name` in `finance`, if it exists and has one.
pub async fn request_status(client: &kube::Client, name: &str) -> Option<AccessRequestStatus> {
    Api::<AccessRequest>::namespaced(client.clone(), NAMESPACE)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.status)
}

/// Waits until the request `name` in `finance` is in `phase`.
pub async fn wait_for_phase(
    client: &kube::Client,
    name: &str,
    phase: expensify_operator::api::RequestPhase,
) {
    eventually(&format!("request {name} to be {phase}"), || async {
        request_status(client, name)
            .await
            .is_some_and(|s| s.phase == phase)
    })
    .await;
}

/// Deletes the request `name` in `finance` and waits until it is gone (its finalizer, if
/// any, released).
pub async fn delete_request(client: &kube::Client, name: &str) {
    let requests = Api::<AccessRequest>::namespaced(client.clone(), NAMESPACE);
    requests
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    eventually(&format!("request {name} to be gone"), || async {
        requests.get_opt(name).await.ok().flatten().is_none()
    })
    .await;
}
