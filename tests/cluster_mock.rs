//! The reconcile functions against kube-rs's mock service (tower-test): the exact
//! Kubernetes requests for each scenario, with Expensify played by the simulator.
#![allow(
    clippy::needless_pass_by_value,
    reason = "test helpers take json! values"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use expensify_operator::api::{ExpensifyConnector, PolicyAccess};
use expensify_operator::cluster::cache::Caches;
use expensify_operator::cluster::context::Context;
use expensify_operator::cluster::metrics::Metrics;
use expensify_operator::cluster::{access_controller, connector_controller};
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::{Value, json};
use support::*;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const GROUP: &str = "/apis/expensify.gitops.dev/v1alpha1";
const STATUS_QUERY: &str = "/status?&force=true&fieldManager=expensify-operator";

/// Plays the API server: each expected call is checked, answered, and its body returned.
/// The watch caches a reconcile reads are filled by the test (no LIST is made).
struct ApiServer {
    handle: Handle,
    accesses: Writer<PolicyAccess>,
    connectors: Writer<ExpensifyConnector>,
    listed: tokio::sync::watch::Sender<bool>,
}

impl ApiServer {
    fn new(handle: Handle) -> Self {
        Self {
            handle,
            accesses: Writer::default(),
            connectors: Writer::default(),
            listed: tokio::sync::watch::channel(false).0,
        }
    }

    /// The caches a context reads: empty, and not listed, until the test fills them.
    fn caches(&self) -> Caches {
        Caches::new(
            vec![self.connectors.as_reader()],
            vec![self.accesses.as_reader()],
            self.listed.subscribe(),
        )
    }

    /// The PolicyAccess watch lists these objects: a waiting reconcile goes on.
    fn cache(&mut self, items: Vec<Value>) {
        self.accesses.apply_watcher_event(&watcher::Event::Init);
        for item in items {
            let object: PolicyAccess = serde_json::from_value(item).unwrap();
            self.accesses
                .apply_watcher_event(&watcher::Event::InitApply(object));
        }
        self.accesses.apply_watcher_event(&watcher::Event::InitDone);
        self.listed.send_replace(true);
    }

    /// The connector watch shows this connector (and the PolicyAccess watch has listed).
    fn cache_connector(&mut self, connector: Value) {
        let object: ExpensifyConnector = serde_json::from_value(connector).unwrap();
        self.connectors
            .apply_watcher_event(&watcher::Event::Apply(object));
        self.listed.send_replace(true);
    }

    async fn expect(&mut self, method: &str, uri: &str, status: u16, reply: Value) -> Value {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("expected {method} {uri}, but no call came"))
                .expect("the client is gone");
        let seen = format!("{} {}", request.method(), request.uri());
        assert!(
            expensify_operator::cluster::rbac::allowed(
                request.method().as_str(),
                &request.uri().to_string(),
                false
            ),
            "{seen} is not covered by the controller's RBAC rules"
        );
        assert!(
            seen.starts_with(&format!("{method} {uri}")),
            "expected {method} {uri}\n     got {seen}"
        );
        let body = request.into_body().collect_bytes().await.unwrap();
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    async fn ok(&mut self, method: &str, uri: &str, reply: Value) -> Value {
        self.expect(method, uri, 200, reply).await
    }

    /// The start of every connector sync: the PolicyAccess objects from the cache, then
    /// the Secret read.
    async fn list_then_secret(&mut self, items: Vec<Value>, secret_value: &str) {
        self.cache(items);
        self.ok(
            "GET",
            "/api/v1/namespaces/finance/secrets/expensify-credentials",
            secret(secret_value),
        )
        .await;
    }

    /// The connector gets its `in-use` finalizer while objects refer to it.
    async fn in_use(&mut self) {
        let body = self
            .ok(
                "PATCH",
                &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme?"),
                connector_json("https://x.example", json!({})),
            )
            .await;
        assert_eq!(
            body["metadata"]["finalizers"],
            json!(["expensify.gitops.dev/in-use"])
        );
    }

    /// The connector is marked Syncing before a sync when it was not Connected.
    async fn syncing(&mut self) {
        let body = self
            .ok(
                "PATCH",
                &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
                connector_json("https://x.example", json!({})),
            )
            .await;
        assert_eq!(body["status"]["phase"], "Syncing");
    }

    /// An Event was published; returns its reason and note.
    async fn event(&mut self, namespace: &str) -> (String, String) {
        let body = self
            .ok("POST", &format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"), json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null}))
            .await;
        (
            body["reason"].as_str().unwrap_or_default().to_string(),
            body["note"].as_str().unwrap_or_default().to_string(),
        )
    }
}

fn context(
    client: kube::Client,
    sim_settings: expensify_operator::expensify::ClientSettings,
    caches: Caches,
) -> Arc<Context> {
    context_notifying(client, sim_settings, caches, None)
}

/// [`context`] with a notification sender.
fn context_notifying(
    client: kube::Client,
    sim_settings: expensify_operator::expensify::ClientSettings,
    caches: Caches,
    notifier: Option<expensify_operator::notify::Notifier>,
) -> Arc<Context> {
    Arc::new(
        Context::new(
            client.clone(),
            Arc::new(expensify_operator::expensify::ExpensifyClients::new(sim_settings).unwrap()),
            Recorder::new(
                client,
                Reporter {
                    controller: "expensify-operator".into(),
                    instance: None,
                },
            ),
            Arc::new(Metrics::default()),
            expensify_operator::cluster::leadership::Leadership::always(),
            caches,
        )
        .with_notifier(notifier),
    )
}

fn mock() -> (kube::Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        kube::Client::new(service, "default"),
        ApiServer::new(handle),
    )
}

fn connector_json(endpoint: &str, extra: Value) -> Value {
    let mut spec = json!({
        "credentialsSecretRef": {"name": "expensify-credentials"},
        "endpoint": endpoint,
        "adminEmail": "it-admin@acme.example",
        "protectedEmails": ["ceo@acme.example", "cfo@acme.example"],
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": "finance", "uid": "c-1", "generation": 1, "resourceVersion": "10"},
        "spec": spec,
    })
}

fn access_json(name: &str, spec: Value, metadata: Value) -> Value {
    let mut meta = json!({"name": name, "namespace": "finance", "uid": format!("u-{name}"), "generation": 1, "resourceVersion": "20"});
    meta.as_object_mut()
        .unwrap()
        .extend(metadata.as_object().cloned().unwrap_or_default());
    json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess", "metadata": meta, "spec": spec})
}

fn secret(secret: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "expensify-credentials", "namespace": "finance", "resourceVersion": "5"},
           "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(secret)}})
}

fn run_connector(
    caches: Caches,
    client: kube::Client,
    connector: Value,
    endpoint_settings: expensify_operator::expensify::ClientSettings,
) -> tokio::task::JoinHandle<
    Result<kube::runtime::controller::Action, connector_controller::ReconcileError>,
> {
    let connector: ExpensifyConnector = serde_json::from_value(connector).unwrap();
    let ctx = context(client, endpoint_settings, caches);
    tokio::spawn(connector_controller::reconcile_connector(
        Arc::new(connector),
        ctx,
    ))
}

async fn finish<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("reconcile finished without further calls")
        .unwrap()
}

fn finance(members: Value, mode: &str) -> Value {
    json!({"connectorRef": {"name": "acme"}, "policy": {"id": FINANCE}, "mode": mode, "members": members})
}

#[tokio::test]
async fn first_sync_adds_the_finalizer_grants_and_writes_status() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let team = access_json(
        "team",
        finance(
            json!([{"email": "new@acme.example", "role": "auditor"}]),
            "Additive",
        ),
        json!({}),
    );
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&sim.endpoint(), json!({})),
        sim_settings(&sim),
    );

    api.list_then_secret(vec![team.clone()], ADMIN_SECRET).await;
    api.in_use().await;

    let patch = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team?"),
            team.clone(),
        )
        .await;
    assert_eq!(
        patch,
        json!({"metadata": {"finalizers": ["expensify.gitops.dev/finalizer"], "resourceVersion": "20"}})
    );
    api.syncing().await;
    // Write-ahead: the entry about to be created is in status before Expensify is written.
    let saved = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            team.clone(),
        )
        .await;
    assert_eq!(
        saved["status"]["managedMembers"],
        json!([{"policyID": FINANCE, "email": "new@acme.example", "added": true, "role": "auditor", "pending": true, "connector": "finance/acme"}])
    );
    let (reason, note) = api.event("finance").await;
    assert_eq!(reason, "Granted");
    assert_eq!(note, "granted new@acme.example as auditor on Finance");
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            team.clone(),
        )
        .await;
    assert_eq!(status["apiVersion"], "expensify.gitops.dev/v1alpha1");
    assert_eq!(status["status"]["phase"], "Synced");
    assert_eq!(
        status["status"]["managedMembers"],
        json!([{"policyID": FINANCE, "email": "new@acme.example", "added": true, "role": "auditor", "connector": "finance/acme"}]),
        "confirmed by the re-read"
    );
    assert_eq!(
        status["status"]["lastPlan"],
        json!({"grants": 1, "roleChanges": 0, "revocations": 0})
    );
    let ready = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("Synced"))
    );
    let connector = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(connector["status"]["phase"], "Connected");
    let action = finish(task).await.unwrap();
    assert!(
        format!("{action:?}").contains("requeue_after: Some"),
        "{action:?}"
    );
    assert!(has_member(&sim, "new@acme.example"));
}

fn has_member(sim: &expensify_operator::simulator::SimulatorHandle, email: &str) -> bool {
    roster(sim, FINANCE).iter().any(|(e, _)| e == email)
}

fn synced_status(managed: &[&str]) -> Value {
    // The shape statuses had before the ledger: a flat list of emails.
    json!({"phase": "Synced", "policyID": FINANCE, "managedMembers": managed})
}

#[tokio::test]
async fn in_sync_writes_nothing_but_the_stale_connector_status() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let mut team = access_json(
        "team",
        finance(json!([{"email": "alice@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    // The status it would get, so nothing differs but timestamps.
    team["status"] = json!({
        "phase": "Synced", "observedGeneration": 1, "policyID": FINANCE, "policyName": "Finance",
        "desiredMembers": 1, "inSyncMembers": 1, "lastPlan": {"grants": 0, "roleChanges": 0, "revocations": 0},
        "message": "1 of 1 member(s) in sync",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Synced", "message": "1 of 1 member(s) in sync", "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Synced", "status": "True", "reason": "InSync", "message": "Expensify matches the spec", "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]
    });
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&sim.endpoint(), json!({})),
        sim_settings(&sim),
    );
    api.list_then_secret(vec![team], ADMIN_SECRET).await;
    api.in_use().await;
    api.syncing().await;
    // No finalizer patch, no event, no PolicyAccess status: only the connector (never synced before).
    let connector = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(connector["status"]["phase"], "Connected");
    finish(task).await.unwrap();
    assert_eq!(updates(&sim), 0);
}

#[tokio::test]
async fn drift_under_authoritative_is_revoked_with_an_event() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let members = json!([{"email": "alice@acme.example"}, {"email": "bob@acme.example"}, {"email": "readonly@acme.example", "role": "auditor"}]);
    let team = access_json(
        "team",
        finance(members, "Authoritative"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&sim.endpoint(), json!({})),
        sim_settings(&sim),
    );
    api.list_then_secret(vec![team.clone()], ADMIN_SECRET).await;
    api.in_use().await;
    api.syncing().await;
    let (reason, note) = api.event("finance").await;
    assert_eq!(
        (reason.as_str(), note.as_str()),
        (
            "Revoked",
            "revoked mallory@acme.example (was admin) from Finance"
        )
    );
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            team,
        )
        .await;
    assert_eq!(status["status"]["lastPlan"]["revocations"], 1);
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
        connector_json("https://x.example", json!({})),
    )
    .await;
    finish(task).await.unwrap();
    assert!(!has_member(&sim, "mallory@acme.example"));
}

#[tokio::test]
async fn a_blocked_object_gets_a_warning_event_and_status() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let team = access_json(
        "team",
        finance(
            json!([{"email": "cfo@acme.example", "role": "user"}]),
            "Additive",
        ),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&sim.endpoint(), json!({})),
        sim_settings(&sim),
    );
    api.list_then_secret(vec![team.clone()], ADMIN_SECRET).await;
    api.in_use().await;
    api.syncing().await;
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            team,
        )
        .await;
    assert_eq!(status["status"]["phase"], "Blocked");
    let conditions = status["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Stalled" && c["status"] == "True")
    );
    let (reason, note) = api.event("finance").await;
    assert_eq!(reason, "Protected");
    assert!(note.contains("cfo@acme.example is protected"), "{note}");
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
        connector_json("https://x.example", json!({})),
    )
    .await;
    finish(task).await.unwrap();
}

#[tokio::test]
async fn an_invalid_connector_reads_no_secret_and_fails_its_objects() {
    let (client, mut api) = mock();
    let team = access_json(
        "team",
        finance(json!([{"email": "a@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let task = run_connector(
        api.caches(),
        client,
        connector_json("http://expensify.example/x", json!({})),
        test_settings(),
    );
    api.cache(vec![team.clone()]);
    api.in_use().await;
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            team,
        )
        .await;
    assert_eq!(status["status"]["phase"], "Error");
    let (reason, _) = api.event("finance").await;
    assert_eq!(reason, "ConnectorNotReady");
    let connector = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(connector["status"]["phase"], "Error");
    assert!(
        connector["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.endpoint")
    );
    finish(task).await.unwrap();
}

/// A connector author aims the connector at a loopback service of their own: the
/// reconciler refuses it before reading the Secret, and that service sees nothing.
#[tokio::test]
async fn a_connector_outside_the_allowlist_reads_no_secret_and_sends_nothing() {
    let sim = start(&unlimited_seed()).await;
    let attacker = Attacker::start().await;
    let (client, mut api) = mock();
    let team = access_json(
        "team",
        finance(json!([{"email": "a@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&attacker.endpoint, json!({})),
        sim_settings(&sim),
    );
    api.cache(vec![team.clone()]);
    // The next calls are the in-use finalizer and a status write, not `GET .../secrets/...`.
    api.in_use().await;
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            team,
        )
        .await;
    assert_eq!(status["status"]["phase"], "Error");
    let (reason, _) = api.event("finance").await;
    assert_eq!(reason, "ConnectorNotReady");
    let connector = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(connector["status"]["phase"], "Error");
    let message = connector["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.endpoint") && message.contains("not an allowed endpoint"),
        "{message}"
    );
    finish(task).await.unwrap();
    assert_eq!(attacker.connections(), 0);
    assert_eq!(sim.state().counters().requests, 0);
}

#[tokio::test]
async fn a_missing_secret_is_named_in_status() {
    let (client, mut api) = mock();
    let task = run_connector(
        api.caches(),
        client,
        connector_json(
            "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
            json!({}),
        ),
        test_settings(),
    );
    api.cache(vec![]);
    api.expect("GET", "/api/v1/namespaces/finance/secrets/expensify-credentials", 404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "secrets \"expensify-credentials\" not found"})).await;
    let connector = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(connector["status"]["phase"], "Error");
    assert_eq!(
        connector["status"]["conditions"][0]["reason"],
        "SecretNotFound"
    );
    assert_eq!(
        connector["status"]["message"],
        "Secret finance/expensify-credentials not found"
    );
    finish(task).await.unwrap();
}

#[tokio::test]
async fn rejected_credentials_put_the_connector_in_error_without_the_secret() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&sim.endpoint(), json!({})),
        sim_settings(&sim),
    );
    api.list_then_secret(vec![], "wrong-secret-xyz").await;
    api.syncing().await;
    let connector = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(connector["status"]["phase"], "Error");
    assert_eq!(
        connector["status"]["conditions"][0]["reason"],
        "AuthenticationFailed"
    );
    assert!(!connector.to_string().contains("wrong-secret-xyz"));
    finish(task).await.unwrap();
}

#[tokio::test]
async fn deletion_with_revoke_revokes_then_releases_the_finalizer() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let mut gone = access_json(
        "gone",
        finance(json!([{"email": "alice@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"], "deletionTimestamp": "2026-11-28T00:00:00Z"}),
    );
    gone["status"] = synced_status(&["alice@acme.example"]);
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&sim.endpoint(), json!({})),
        sim_settings(&sim),
    );
    api.list_then_secret(vec![gone.clone()], ADMIN_SECRET).await;
    api.in_use().await;
    api.syncing().await;
    // The old flat list is saved in the ledger's shape before the write.
    let saved = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/gone{STATUS_QUERY}"),
            gone.clone(),
        )
        .await;
    assert_eq!(saved["status"]["managedMembers"][0]["added"], true);
    let (reason, _) = api.event("finance").await;
    assert_eq!(reason, "Revoked");
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/policyaccesses/gone{STATUS_QUERY}"),
        gone.clone(),
    )
    .await;
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
        connector_json("https://x.example", json!({})),
    )
    .await;
    let release = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/gone?"),
            gone,
        )
        .await;
    assert_eq!(
        release,
        json!({"metadata": {"finalizers": [], "resourceVersion": "20"}})
    );
    finish(task).await.unwrap();
    assert!(!has_member(&sim, "alice@acme.example"));
}

#[tokio::test]
async fn deletion_with_orphan_only_releases_the_finalizer() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let mut spec = finance(json!([{"email": "alice@acme.example"}]), "Additive");
    spec["deletionPolicy"] = json!("Orphan");
    let mut gone = access_json(
        "gone",
        spec,
        json!({"finalizers": ["expensify.gitops.dev/finalizer"], "deletionTimestamp": "2026-11-28T00:00:00Z"}),
    );
    gone["status"] = synced_status(&["alice@acme.example"]);
    let task = run_connector(
        api.caches(),
        client,
        connector_json(&sim.endpoint(), json!({})),
        sim_settings(&sim),
    );
    api.list_then_secret(vec![gone.clone()], ADMIN_SECRET).await;
    api.in_use().await;
    api.syncing().await;
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/policyaccesses/gone{STATUS_QUERY}"),
        gone.clone(),
    )
    .await;
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
        connector_json("https://x.example", json!({})),
    )
    .await;
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/policyaccesses/gone?"),
        gone,
    )
    .await;
    finish(task).await.unwrap();
    assert!(has_member(&sim, "alice@acme.example"));
    assert_eq!(updates(&sim), 0);
}

#[tokio::test]
async fn a_cross_namespace_reference_the_connector_refuses_is_an_error() {
    let (client, mut api) = mock();
    let stray: PolicyAccess = serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": "stray", "namespace": "marketing", "uid": "u-s", "generation": 1, "resourceVersion": "3"},
        "spec": {"connectorRef": {"name": "acme", "namespace": "finance"}, "policy": {"name": "Marketing"}, "members": [{"email": "a@acme.example"}]}
    }))
    .unwrap();
    let ctx = context(client, test_settings(), api.caches());
    let task = tokio::spawn(access_controller::reconcile_access(
        Arc::new(stray.clone()),
        ctx,
    ));
    api.cache_connector(connector_json(
        "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
        json!({}),
    ));
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/marketing/policyaccesses/stray{STATUS_QUERY}"),
            serde_json::to_value(&stray).unwrap(),
        )
        .await;
    assert_eq!(status["status"]["phase"], "Error");
    assert!(
        status["status"]["message"]
            .as_str()
            .unwrap()
            .contains("does not allow namespace \"marketing\"")
    );
    let (reason, _) = api.event("marketing").await;
    assert_eq!(reason, "InvalidSpec");
    finish(task).await.unwrap();
}

#[tokio::test]
async fn an_allowed_object_is_left_to_its_connector() {
    let (client, mut api) = mock();
    let team: PolicyAccess = serde_json::from_value(access_json(
        "team",
        finance(json!([]), "Additive"),
        json!({}),
    ))
    .unwrap();
    let ctx = context(client, test_settings(), api.caches());
    let task = tokio::spawn(access_controller::reconcile_access(Arc::new(team), ctx));
    api.cache_connector(connector_json(
        "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
        json!({}),
    ));
    let action = finish(task).await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

// The ledger in cluster mode (issue 8, case 7): ownership survives a failed status patch,
// and a connector is not let go while objects refer to it.

#[tokio::test]
async fn a_failed_status_patch_after_a_grant_loses_no_ownership() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let team = access_json(
        "team",
        finance(
            json!([{"email": "new@acme.example", "role": "auditor"}]),
            "Additive",
        ),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let connector = connector_json(&sim.endpoint(), json!({}));
    let task = run_connector(
        api.caches(),
        client.clone(),
        connector.clone(),
        sim_settings(&sim),
    );
    api.list_then_secret(vec![team.clone()], ADMIN_SECRET).await;
    api.in_use().await;
    api.syncing().await;
    let saved = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            team.clone(),
        )
        .await;
    let (reason, _) = api.event("finance").await;
    assert_eq!(reason, "Granted");
    // The status patch after the write fails: the reconcile errors out.
    api.expect(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
        500,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500}),
    )
    .await;
    assert!(finish(task).await.is_err());
    assert!(has_member(&sim, "new@acme.example"));

    // What the API server kept is the write-ahead status. The person is then dropped:
    // the pending entry is confirmed by the read and released.
    let mut dropped = access_json(
        "team",
        finance(json!([]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"], "generation": 2}),
    );
    dropped["status"] = saved["status"].clone();
    let task = run_connector(api.caches(), client, connector, sim_settings(&sim));
    api.list_then_secret(vec![dropped.clone()], ADMIN_SECRET)
        .await;
    api.in_use().await;
    api.syncing().await;
    let confirmed = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            dropped.clone(),
        )
        .await;
    assert_eq!(
        confirmed["status"]["managedMembers"],
        json!([{"policyID": FINANCE, "email": "new@acme.example", "added": true, "role": "auditor", "connector": "finance/acme"}]),
        "the read confirmed the pending entry; it is saved before the revocation"
    );
    let (reason, note) = api.event("finance").await;
    assert_eq!(
        (reason.as_str(), note.as_str()),
        (
            "Revoked",
            "revoked new@acme.example (was auditor) from Finance"
        )
    );
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/policyaccesses/team{STATUS_QUERY}"),
            dropped,
        )
        .await;
    assert_eq!(
        status["status"]["managedMembers"],
        Value::Null,
        "nothing owned any more"
    );
    api.ok(
        "PATCH",
        &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}"),
        connector_json("https://x.example", json!({})),
    )
    .await;
    finish(task).await.unwrap();
    assert!(!has_member(&sim, "new@acme.example"));
}

#[tokio::test]
async fn a_connector_being_deleted_is_let_go_only_when_no_object_refers_to_it() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let mut connector = connector_json(&sim.endpoint(), json!({}));
    connector["metadata"]["finalizers"] = json!(["expensify.gitops.dev/in-use"]);
    connector["metadata"]["deletionTimestamp"] = json!("2026-11-28T00:00:00Z");
    let task = run_connector(api.caches(), client, connector, sim_settings(&sim));
    api.list_then_secret(vec![], ADMIN_SECRET).await;
    let release = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/finance/expensifyconnectors/acme?"),
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(
        release,
        json!({"metadata": {"finalizers": [], "resourceVersion": "10"}})
    );
    let action = finish(task).await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn a_replica_that_lost_the_lease_writes_nothing_to_expensify() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let team = access_json(
        "team",
        finance(json!([{"email": "new@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let (terms, leader) = expensify_operator::cluster::leadership::leadership(true);
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(expensify_operator::expensify::ExpensifyClients::new(sim_settings(&sim)).unwrap()),
        Recorder::new(
            client,
            Reporter {
                controller: "expensify-operator".into(),
                instance: None,
            },
        ),
        Arc::new(Metrics::default()),
        leader,
        api.caches(),
    ));
    let connector: ExpensifyConnector =
        serde_json::from_value(connector_json(&sim.endpoint(), json!({}))).unwrap();
    let task = tokio::spawn(connector_controller::reconcile_connector(
        Arc::new(connector),
        ctx,
    ));
    api.list_then_secret(vec![team.clone()], ADMIN_SECRET).await;
    api.in_use().await;
    // The Lease is lost after the reconcile started, before the write.
    terms.set(false);
    // Not even the Syncing phase: no status patch, no read, no write; the new leader takes
    // over from here.
    let action = finish(task).await.unwrap();
    assert!(
        format!("{action:?}").contains("requeue_after: Some"),
        "{action:?}"
    );
    assert!(
        !has_member(&sim, "new@acme.example"),
        "no write after the lease was lost"
    );
}

#[tokio::test]
async fn a_deletion_no_connector_can_settle_keeps_its_finalizer() {
    let (client, mut api) = mock();
    let stray: PolicyAccess = serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": "stray", "namespace": "marketing", "uid": "u-s", "generation": 1, "resourceVersion": "3",
                     "finalizers": ["expensify.gitops.dev/finalizer"], "deletionTimestamp": "2026-11-28T00:00:00Z"},
        "spec": {"connectorRef": {"name": "acme", "namespace": "finance"}, "policy": {"id": FINANCE}, "members": []},
        "status": {"policyID": FINANCE, "managedMembers": [{"policyID": FINANCE, "email": "carol@acme.example", "added": true, "role": "user"}]}
    }))
    .unwrap();
    let ctx = context(client, test_settings(), api.caches());
    let task = tokio::spawn(access_controller::reconcile_access(
        Arc::new(stray.clone()),
        ctx,
    ));
    // The connector no longer allows the namespace.
    api.cache_connector(connector_json(
        "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
        json!({}),
    ));
    let status = api
        .ok(
            "PATCH",
            &format!("{GROUP}/namespaces/marketing/policyaccesses/stray{STATUS_QUERY}"),
            serde_json::to_value(&stray).unwrap(),
        )
        .await;
    assert_eq!(status["status"]["phase"], "Error");
    assert!(
        status["status"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be taken back"),
        "{status}"
    );
    assert_eq!(
        status["status"]["managedMembers"][0]["email"],
        "carol@acme.example"
    );
    let (reason, _) = api.event("marketing").await;
    assert_eq!(reason, "CannotSettle");
    // No finalizer patch: `Revoke` does not silently become `Orphan`.
    let action = finish(task).await.unwrap();
    assert!(
        format!("{action:?}").contains("requeue_after: Some"),
        "{action:?}"
    );
}

#[tokio::test]
async fn a_failed_reconcile_backs_off_and_is_counted_by_category() {
    let (client, mut api) = mock();
    let ctx = context(client, test_settings(), api.caches());
    let connector: ExpensifyConnector = serde_json::from_value(connector_json(
        "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
        json!({}),
    ))
    .unwrap();
    let connector = Arc::new(connector);
    let mut waits = Vec::new();
    for _ in 0..2 {
        let task = tokio::spawn(connector_controller::reconcile_connector(
            connector.clone(),
            ctx.clone(),
        ));
        api.cache(vec![]);
        api.expect(
            "GET",
            "/api/v1/namespaces/finance/secrets/expensify-credentials",
            500,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500}),
        )
        .await;
        let error = finish(task).await.unwrap_err();
        assert_eq!(error.category(), "read_secret");
        let action = connector_controller::error_policy(connector.clone(), &error, ctx.clone());
        waits.push(format!("{action:?}"));
    }
    // 5 s (+ up to 10 %) then 10 s (+ up to 10 %): doubling, per connector.
    assert!(waits[0].contains("requeue_after: Some(5"), "{waits:?}");
    assert!(
        waits[1].contains("requeue_after: Some(10") || waits[1].contains("requeue_after: Some(11"),
        "{waits:?}"
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "expensify_operator_reconcile_failures_total{controller=\"connector\",category=\"read_secret\"} 2"
        ),
        "{metrics}"
    );
}

/// Plays a willing API server until the reconcile ends (for scenarios that check what
/// reached Expensify, not each Kubernetes call): every write moves the object on to a new
/// resourceVersion, and a write whose resourceVersion precondition is stale gets 409, as
/// from the real one. Returns the reconcile's result.
struct WillingServer {
    versions: u64,
    /// The resourceVersion each object (by URI path) is at on this server.
    at: std::collections::HashMap<String, String>,
}

impl WillingServer {
    fn new() -> Self {
        Self {
            versions: 100,
            at: std::collections::HashMap::new(),
        }
    }

    /// One connector reconcile with the PolicyAccess cache showing `cached`, served
    /// until it ends.
    async fn sync(
        &mut self,
        api: &mut ApiServer,
        ctx: &Arc<Context>,
        connector: &ExpensifyConnector,
        cached: &Value,
    ) -> Result<kube::runtime::controller::Action, connector_controller::ReconcileError> {
        api.cache(vec![cached.clone()]);
        let task = tokio::spawn(connector_controller::reconcile_connector(
            Arc::new(connector.clone()),
            ctx.clone(),
        ));
        self.serve(api, task, cached).await
    }

    async fn serve(
        &mut self,
        api: &mut ApiServer,
        mut task: tokio::task::JoinHandle<
            Result<kube::runtime::controller::Action, connector_controller::ReconcileError>,
        >,
        team: &Value,
    ) -> Result<kube::runtime::controller::Action, connector_controller::ReconcileError> {
        loop {
            tokio::select! {
                finished = &mut task => return finished.unwrap(),
                request = api.handle.next_request() => {
                    let (request, send) = request.expect("the client is gone");
                    let path = request.uri().path().trim_end_matches("/status").to_string();
                    let write = request.method() == "PATCH";
                    let body: Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap_or(Value::Null);
                    let sent = body["metadata"]["resourceVersion"].as_str().map(str::to_string);
                    if let (true, Some(sent), Some(at)) = (write, &sent, self.at.get(&path))
                        && sent != at
                    {
                        send.send_response(Response::builder().status(409).body(Body::from(serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"})).unwrap())).unwrap());
                        continue;
                    }
                    let mut reply = if path.contains("/secrets/") {
                        secret(ADMIN_SECRET)
                    } else if path.contains("/events") {
                        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null})
                    } else if path.contains("/expensifyconnectors/") {
                        connector_json("https://x.example", json!({}))
                    } else {
                        team.clone()
                    };
                    if write {
                        self.versions += 1;
                        self.at.insert(path, self.versions.to_string());
                        reply["metadata"]["resourceVersion"] = json!(self.versions.to_string());
                    }
                    send.send_response(
                        Response::builder()
                            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                            .unwrap(),
                    );
                }
            }
        }
    }
}

/// The watch cache has not seen the status the first sync wrote (it lags behind our own
/// writes) when the person is dropped from the spec: the second sync still knows the
/// operator added them, and takes them back.
#[tokio::test]
async fn a_cache_lagging_behind_our_status_writes_loses_no_ownership() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let ctx = context(client, sim_settings(&sim), api.caches());
    let connector: ExpensifyConnector =
        serde_json::from_value(connector_json(&sim.endpoint(), json!({}))).unwrap();
    let wanted = access_json(
        "team",
        finance(json!([{"email": "new@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let mut server = WillingServer::new();
    server
        .sync(&mut api, &ctx, &connector, &wanted)
        .await
        .unwrap();
    assert!(has_member(&sim, "new@acme.example"));

    // The spec changes; the cache still shows the object without any status.
    let dropped = access_json(
        "team",
        finance(json!([]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"], "generation": 2}),
    );
    server
        .sync(&mut api, &ctx, &connector, &dropped)
        .await
        .unwrap();
    assert!(
        !has_member(&sim, "new@acme.example"),
        "the person the operator added is taken back"
    );
}

/// A new leadership term forgets what this replica wrote, while its cache still lags
/// behind those writes: a status computed from that stale view must not overwrite the
/// ledger. The write carries the version it was computed from, the API server refuses it,
/// and once the cache catches up the person the operator added is taken back.
#[tokio::test]
async fn a_stale_view_after_a_new_term_cannot_overwrite_the_ledger() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let ctx = context(client, sim_settings(&sim), api.caches());
    // Its in-use finalizer is in place: only status writes are in question here.
    let mut connector = connector_json(&sim.endpoint(), json!({}));
    connector["metadata"]["finalizers"] = json!(["expensify.gitops.dev/in-use"]);
    let connector: ExpensifyConnector = serde_json::from_value(connector).unwrap();
    let wanted = access_json(
        "team",
        finance(json!([{"email": "new@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    let mut server = WillingServer::new();
    server
        .sync(&mut api, &ctx, &connector, &wanted)
        .await
        .unwrap();
    assert!(has_member(&sim, "new@acme.example"));

    // A new term, and the cache still shows the object as it was before the first sync.
    ctx.forget_all();
    let dropped = access_json(
        "team",
        finance(json!([]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"], "generation": 2}),
    );
    let refused = server.sync(&mut api, &ctx, &connector, &dropped).await;
    assert!(refused.is_err(), "the stale status write is refused");
    assert!(
        has_member(&sim, "new@acme.example"),
        "nothing was taken on a stale view"
    );

    // The cache catches up with what the server holds: the ledger is intact there.
    let path = "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/policyaccesses/team";
    let mut caught_up = dropped.clone();
    caught_up["metadata"]["resourceVersion"] = json!(server.at[path]);
    caught_up["status"] = json!({"policyID": FINANCE, "managedMembers": [{"policyID": FINANCE, "email": "new@acme.example", "added": true, "role": "user"}]});
    let mut connector_now = serde_json::to_value(&connector).unwrap();
    let connector_path =
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/expensifyconnectors/acme";
    connector_now["metadata"]["resourceVersion"] = json!(server.at[connector_path]);
    let connector_now: ExpensifyConnector = serde_json::from_value(connector_now).unwrap();
    server
        .sync(&mut api, &ctx, &connector_now, &caught_up)
        .await
        .unwrap();
    assert!(
        !has_member(&sim, "new@acme.example"),
        "the person the operator added is taken back"
    );
}

/// One call a reconcile made: method, path and query, body.
type Call = (String, String, Value);

/// Plays the API server for a whole reconcile whatever it calls, answering as the API
/// server would (the Secret with `secret`, or 404 when it is gone), and returns its result
/// and the calls it made in order.
async fn serve_whole_reconcile<T>(
    api: &mut ApiServer,
    mut task: tokio::task::JoinHandle<T>,
    secret: Option<&str>,
    objects: (&Value, &Value),
) -> (T, Vec<Call>) {
    let (access, connector) = objects;
    let mut calls = Vec::new();
    // A bound for a reconcile that hangs, not a speed target (paced tests take seconds).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::select! {
            biased;
            done = &mut task => return (done.unwrap(), calls),
            next = api.handle.next_request() => match next {
                Some(next) => next,
                // The reconcile ended and dropped its client: its result is the answer.
                None => return ((&mut task).await.unwrap(), calls),
            },
            () = tokio::time::sleep_until(deadline) => panic!("the reconcile did not finish: {calls:?}"),
        };
        let (request, send) = next;
        let (method, uri) = (request.method().to_string(), request.uri().to_string());
        let body = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, reply) = if uri.contains("/secrets/") {
            secret.map_or_else(
                || (404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "secrets \"expensify-credentials\" not found"})),
                |s| (200, self::secret(s)),
            )
        } else if uri.contains("/policyaccesses/") {
            (200, access.clone())
        } else if uri.contains("/expensifyconnectors/") {
            (200, connector.clone())
        } else {
            (
                200,
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null}),
            )
        };
        calls.push((method, uri, body));
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
    }
}

/// `team`, holding alice (whom it added) on Finance, in sync.
fn team_holding_alice(deleting: bool) -> Value {
    let mut metadata = json!({"finalizers": ["expensify.gitops.dev/finalizer"]});
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-28T00:00:00Z");
    }
    let mut team = access_json(
        "team",
        finance(json!([{"email": "alice@acme.example"}]), "Additive"),
        metadata,
    );
    team["status"] = json!({"phase": "Synced", "policyID": FINANCE, "managedMembers": [
        {"policyID": FINANCE, "email": "alice@acme.example", "added": true, "role": "user"}]});
    team
}

fn status_patches<'a>(calls: &'a [Call], path: &str) -> Vec<&'a Value> {
    calls
        .iter()
        .filter(|(method, uri, _)| method == "PATCH" && uri.starts_with(&format!("{path}/status")))
        .map(|(_, _, body)| body)
        .collect()
}

fn finalizer_released(calls: &[Call], path: &str) -> bool {
    calls.iter().any(|(method, uri, body)| {
        method == "PATCH"
            && uri.starts_with(&format!("{path}?"))
            && body["metadata"]["finalizers"] == json!([])
    })
}

const TEAM: &str = "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/policyaccesses/team";
const ACME: &str =
    "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/expensifyconnectors/acme";

/// Deleting a namespace deletes its Secret at once, while the deletion of a `Revoke`
/// PolicyAccess still waits on its finalizer: it is settled with the credentials the
/// connector's last good sync used, held in memory.
#[tokio::test]
async fn a_deletion_whose_secret_is_gone_is_settled_with_the_last_good_credentials() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let ctx = context(client, sim_settings(&sim), api.caches());
    let connector_value = connector_json(&sim.endpoint(), json!({}));
    let connector: Arc<ExpensifyConnector> =
        Arc::new(serde_json::from_value(connector_value.clone()).unwrap());

    let team = team_holding_alice(false);
    api.cache(vec![team.clone()]);
    let first = tokio::spawn(connector_controller::reconcile_connector(
        connector.clone(),
        ctx.clone(),
    ));
    let (result, _) = serve_whole_reconcile(
        &mut api,
        first,
        Some(ADMIN_SECRET),
        (&team, &connector_value),
    )
    .await;
    result.unwrap();
    assert!(has_member(&sim, "alice@acme.example"));

    // The namespace goes: the Secret at once, the PolicyAccess waits on its finalizer.
    // Meanwhile another object asks for a newcomer: held credentials settle deletions only.
    let deleting = team_holding_alice(true);
    let newcomer = access_json(
        "newcomer",
        finance(json!([{"email": "newbie@acme.example"}]), "Additive"),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    api.cache(vec![deleting.clone(), newcomer]);
    let second = tokio::spawn(connector_controller::reconcile_connector(
        connector,
        ctx.clone(),
    ));
    let (result, calls) =
        serve_whole_reconcile(&mut api, second, None, (&deleting, &connector_value)).await;
    result.unwrap();
    assert!(
        !has_member(&sim, "alice@acme.example"),
        "revoked, not orphaned"
    );
    assert!(
        !has_member(&sim, "newbie@acme.example"),
        "nothing is granted on credentials whose Secret is gone"
    );
    assert!(finalizer_released(&calls, TEAM), "{calls:#?}");
    let connector_status = status_patches(&calls, ACME);
    let said = connector_status.last().unwrap()["status"]["message"]
        .as_str()
        .unwrap();
    assert!(said.contains("held in memory"), "{said}");
    let everything = format!("{calls:?}");
    assert!(
        !everything.contains(ADMIN_SECRET),
        "the held secret is never sent to the API server"
    );
    let labels = expensify_operator::cluster::metrics::ConnectorLabels {
        connector: "finance/acme".into(),
    };
    assert_eq!(
        ctx.metrics
            .deletions_waiting_for_credentials
            .get_or_create(&labels)
            .get(),
        0
    );
}

/// With no credentials held (a replica that started after the Secret went), the deletion
/// keeps its finalizer, is never turned into an Orphan, and the status, the log and a
/// metric say how to let it go.
#[tokio::test]
async fn a_deletion_without_any_credentials_waits_and_says_how_to_let_it_go() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let ctx = context(client, sim_settings(&sim), api.caches());
    let connector_value = connector_json(&sim.endpoint(), json!({}));
    let connector: Arc<ExpensifyConnector> =
        Arc::new(serde_json::from_value(connector_value.clone()).unwrap());
    let deleting = team_holding_alice(true);
    api.cache(vec![deleting.clone()]);
    let task = tokio::spawn(connector_controller::reconcile_connector(
        connector,
        ctx.clone(),
    ));
    let (result, calls) =
        serve_whole_reconcile(&mut api, task, None, (&deleting, &connector_value)).await;
    result.unwrap();
    assert!(has_member(&sim, "alice@acme.example"));
    assert_eq!(sim.state().counters().requests, 0);
    assert!(!finalizer_released(&calls, TEAM), "{calls:#?}");
    let team_status = status_patches(&calls, TEAM);
    let said = team_status.last().unwrap()["status"]["message"]
        .as_str()
        .unwrap();
    for part in [
        "not found",
        "no earlier credentials",
        "finance/team",
        "Restore the Secret",
        "deletionPolicy: Orphan",
    ] {
        assert!(said.contains(part), "{part:?} in {said}");
    }
    let labels = expensify_operator::cluster::metrics::ConnectorLabels {
        connector: "finance/acme".into(),
    };
    assert_eq!(
        ctx.metrics
            .deletions_waiting_for_credentials
            .get_or_create(&labels)
            .get(),
        1
    );
}

/// The Lease is lost while a sync's second employee-updater batch waits for its pacing
/// slot: that batch and every later one never reach Expensify (the sync's term is its
/// client's write gate).
#[tokio::test]
async fn a_term_lost_between_two_batches_stops_the_rest_of_the_write() {
    let sim = start(&unlimited_seed()).await;
    let (client, mut api) = mock();
    let settings = expensify_operator::expensify::ClientSettings {
        update_batch_size: 1,
        pacing: expensify_operator::expensify::Pacing {
            windows: vec![expensify_operator::expensify::PacingWindow {
                max_requests: 1,
                // Long enough for the watcher below to see the first batch and end the
                // term before the second one's slot comes, even on a loaded machine.
                period: Duration::from_secs(2),
            }],
        },
        ..sim_settings(&sim)
    };
    let (terms, leader) = expensify_operator::cluster::leadership::leadership(true);
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(expensify_operator::expensify::ExpensifyClients::new(settings).unwrap()),
        Recorder::new(
            client,
            Reporter {
                controller: "expensify-operator".into(),
                instance: None,
            },
        ),
        Arc::new(Metrics::default()),
        leader,
        api.caches(),
    ));
    let team = access_json(
        "team",
        finance(
            json!([{"email": "n1@acme.example"}, {"email": "n2@acme.example"}, {"email": "n3@acme.example"}]),
            "Additive",
        ),
        json!({"finalizers": ["expensify.gitops.dev/finalizer"]}),
    );
    api.cache(vec![team.clone()]);
    let connector_value = connector_json(&sim.endpoint(), json!({}));
    let connector: Arc<ExpensifyConnector> =
        Arc::new(serde_json::from_value(connector_value.clone()).unwrap());
    let task = tokio::spawn(connector_controller::reconcile_connector(connector, ctx));
    let ends_the_term = {
        let state = sim.admin_url();
        tokio::spawn(async move {
            // The first batch reached Expensify: the second now waits for its slot.
            loop {
                let counters: Value = reqwest::get(format!("{state}/counters"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if counters["byJob"]["update/employees"].as_u64().unwrap_or(0) >= 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            terms.set(false);
            terms
        })
    };
    let (result, _) = serve_whole_reconcile(
        &mut api,
        task,
        Some(ADMIN_SECRET),
        (&team, &connector_value),
    )
    .await;
    result.unwrap();
    drop(ends_the_term.await.unwrap());
    assert_eq!(updates(&sim), 1, "no batch after the term ended");
    let granted: Vec<bool> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| has_member(&sim, &format!("{n}@acme.example")))
        .collect();
    assert_eq!(granted, [true, false, false]);
}

/// A connector that needs setup: an Event, one post to its webhook (URL from its Secret),
/// and the delivery recorded in its status by the next sync, which publishes and sends
/// nothing again.
#[tokio::test]
async fn a_connector_needing_setup_is_told_once_with_an_event_and_recorded() {
    use expensify_operator::notify::{AllowedWebhooks, Notifier, NotifierSettings, NotifyCounters};
    use support::webhook::Webhook;
    let hook = Webhook::start(Vec::new()).await;
    let notifier = Notifier::start(
        NotifierSettings::new(AllowedWebhooks::parse(&hook.prefix).unwrap()),
        NotifyCounters::default(),
    )
    .unwrap();
    let (client, mut api) = mock();
    let ctx = context_notifying(
        client,
        test_settings(),
        api.caches(),
        Some(notifier.clone()),
    );
    let notifying = json!({"owners": ["it-admin@acme.example"], "notifications": {"webhookSecretRef": {"name": "expensify-notify"}}});
    let endpoint = "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations";
    let missing = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    let webhook_secret = {
        use base64::Engine;
        let url = base64::engine::general_purpose::STANDARD.encode(&hook.url);
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "expensify-notify", "namespace": "finance"}, "data": {"url": url}})
    };
    let reconcile = |connector: Value| {
        let connector: ExpensifyConnector = serde_json::from_value(connector).unwrap();
        tokio::spawn(connector_controller::reconcile_connector(
            Arc::new(connector),
            ctx.clone(),
        ))
    };
    let task = reconcile(connector_json(endpoint, notifying.clone()));
    api.cache(vec![]);
    api.expect(
        "GET",
        "/api/v1/namespaces/finance/secrets/expensify-credentials",
        404,
        missing.clone(),
    )
    .await;
    let (reason, note) = api.event("finance").await;
    assert_eq!(reason, "SetupNeeded");
    assert!(
        note.contains("finance/acme") && note.contains("it-admin@acme.example"),
        "{note}"
    );
    api.ok(
        "GET",
        "/api/v1/namespaces/finance/secrets/expensify-notify",
        webhook_secret,
    )
    .await;
    let status_path = format!("{GROUP}/namespaces/finance/expensifyconnectors/acme{STATUS_QUERY}");
    let first = api
        .ok(
            "PATCH",
            &status_path,
            connector_json("https://x.example", json!({})),
        )
        .await;
    assert_eq!(first["status"]["phase"], "Error");
    assert!(
        first["status"]["notifications"].is_null(),
        "not delivered yet: {first}"
    );
    finish(task).await.unwrap();
    assert!(notifier.wait_idle(Duration::from_secs(30)).await);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "SetupNeeded");

    // The next sync (asked for by the annotation): no Event, no post, the delivery recorded.
    let mut again = connector_json(endpoint, notifying);
    again["metadata"]["annotations"] =
        json!({expensify_operator::api::RECONCILE_REQUESTED_AT: "1"});
    let task = reconcile(again);
    api.expect(
        "GET",
        "/api/v1/namespaces/finance/secrets/expensify-credentials",
        404,
        missing,
    )
    .await;
    let second = api
        .ok(
            "PATCH",
            &status_path,
            connector_json("https://x.example", json!({})),
        )
        .await;
    let sent = &second["status"]["notifications"]["sent"];
    assert_eq!(
        sent[0]["key"], "SetupNeeded:finance/acme:SecretNotFound",
        "{second}"
    );
    assert_eq!(sent[0]["outcome"], "Delivered");
    assert!(!second.to_string().contains(Webhook::TOKEN));
    finish(task).await.unwrap();
    assert_eq!(hook.bodies().len(), 1);
}
