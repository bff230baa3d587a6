//! Access requests in a cluster: the CLI signs requests and decisions as the kubeconfig's
//! user (a `SelfSubjectReview`), against kube-rs's mock service (tower-test); the real
//! controller loop hears requests and decisions (API server double and simulator).
#![allow(
    clippy::needless_pass_by_value,
    reason = "test helpers take json! values"
)]

mod support;
use support::*;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use expensify_operator::api::{
    AccessDecision, AccessRequest, DecisionKind, ExpensifyConnector, PolicyAccess,
};
use expensify_operator::cluster;
use expensify_operator::commands::request_cluster::{
    DecideArgs, ListFormat, ReadIdentityError, RequestArgs, create_request, decide, list_requests,
};
use expensify_operator::expensify::ExpensifyClients;
use http::{Request, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Answers the next call, which must be `method` on a URI starting with `uri`; returns
/// its body.
async fn answer(
    handle: &mut Handle,
    method: &str,
    uri: &str,
    reply: impl Fn(&Value) -> Value,
) -> Value {
    let (request, send) = handle.next_request().await.expect("a call");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    assert!(
        request.uri().to_string().starts_with(uri),
        "{} is not {uri}",
        request.uri()
    );
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let answer = reply(&body);
    send.send_response(
        Response::builder()
            .status(if answer["kind"] == "Status" { 403 } else { 201 })
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap(),
    );
    body
}

async fn who(handle: &mut Handle, username: &str) {
    let body = answer(
        handle,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews?",
        |_| {
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                "metadata": {}, "status": {"userInfo": {"username": username, "groups": ["system:authenticated"]}}})
        },
    )
    .await;
    assert_eq!(body["kind"], "SelfSubjectReview");
}

/// The created object as the API server returns it.
fn created(body: &Value) -> Value {
    let mut object = body.clone();
    object["metadata"]["uid"] = json!("u1");
    object["metadata"]["resourceVersion"] = json!("1");
    object
}

fn request_args() -> RequestArgs {
    RequestArgs {
        namespace: "finance".into(),
        access: "team".into(),
        email: None,
        role: Some("admin".into()),
        duration: "8h".into(),
        reason: Some("quarter close".into()),
        username_prefix: Some("oidc:".into()),
    }
}

#[tokio::test]
async fn a_request_is_signed_by_the_kubeconfig_user() {
    let (client, mut handle) = mock();
    let task = tokio::spawn(async move { create_request(&client, &request_args()).await });
    who(&mut handle, "oidc:Alice@Acme.Example").await;
    let body = answer(
        &mut handle,
        "POST",
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/accessrequests?",
        created,
    )
    .await;
    let request = task.await.unwrap().unwrap();
    assert_eq!(
        body["spec"],
        json!({"accessRef": {"name": "team"}, "email": "alice@acme.example", "role": "admin",
            "duration": "8h", "reason": "quarter close", "requester": "alice@acme.example"})
    );
    let name = body["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("team-alice-"), "{name}");
    assert_eq!(request.spec.requester, "alice@acme.example");
}

#[tokio::test]
async fn a_decision_is_signed_and_named_after_the_request_and_the_decider() {
    let (client, mut handle) = mock();
    let args = DecideArgs {
        namespace: "finance".into(),
        request: "team-alice-x1y2z".into(),
        comment: Some("ok for the close".into()),
        groups: vec![],
        username_prefix: None,
    };
    let task = tokio::spawn(async move { decide(&client, DecisionKind::Approve, &args).await });
    who(&mut handle, "bob.smith@acme.example").await;
    let body = answer(
        &mut handle,
        "POST",
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/accessdecisions?",
        created,
    )
    .await;
    task.await.unwrap().unwrap();
    assert_eq!(
        body["spec"],
        json!({"requestRef": {"name": "team-alice-x1y2z"}, "decision": "Approve",
            "decidedBy": "bob.smith@acme.example", "comment": "ok for the close"})
    );
    let name = body["metadata"]["name"].as_str().unwrap();
    let suffix = name.strip_prefix("team-alice-x1y2z-bob-smith-").unwrap();
    assert_eq!(suffix.len(), 5, "{name}");
}

#[tokio::test]
async fn a_service_account_or_a_name_that_is_no_email_signs_nothing() {
    for (username, service_account) in [
        ("system:serviceaccount:ops:ci", true),
        ("kubernetes-admin", false),
    ] {
        let (client, mut handle) = mock();
        let args = DecideArgs {
            namespace: "finance".into(),
            request: "r1".into(),
            comment: None,
            groups: vec![],
            username_prefix: None,
        };
        let task = tokio::spawn(async move { decide(&client, DecisionKind::Revoke, &args).await });
        who(&mut handle, username).await;
        let error = task.await.unwrap().unwrap_err();
        let identity = error.downcast_ref::<ReadIdentityError>().unwrap();
        assert_eq!(
            matches!(identity, ReadIdentityError::ServiceAccount(_)),
            service_account,
            "{identity}"
        );
        // Nothing was created: the mock saw no further call.
        drop(handle);
    }
}

#[tokio::test]
async fn requests_shows_who_is_awaited_and_when_access_ends() {
    let (client, mut handle) = mock();
    let task =
        tokio::spawn(
            async move { list_requests(&client, Some("finance"), ListFormat::Table).await },
        );
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(
        request.uri().to_string(),
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/accessrequests?"
    );
    let item = |name: &str, email: &str, status: Value| {
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": name, "namespace": "finance"},
            "spec": {"accessRef": {"name": "team"}, "email": email, "duration": "8h", "requester": email},
            "status": status})
    };
    let list = json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequestList",
    "metadata": {"resourceVersion": "9"}, "items": [
        item("b-pending", "bob@acme.example", json!({"phase": "Pending", "approvers": ["cfo@acme.example", "group:finance-leads"], "approvalsRequired": 2,
            "approvals": [{"by": "cfo@acme.example", "at": "2026-12-04T10:00:00Z", "decision": "d1"}]})),
        item("a-active", "alice@acme.example", json!({"phase": "Active", "expiresAt": "2026-12-04T18:00:00Z"})),
    ]});
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&list).unwrap()))
            .unwrap(),
    );
    let table = task.await.unwrap().unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].starts_with("finance/a-active") && lines[1].contains("Active"),
        "{table}"
    );
    assert!(lines[1].ends_with("ends 2026-12-04T18:00:00Z"), "{table}");
    assert!(
        lines[2].ends_with("approvals 1/2 from cfo@acme.example, group:finance-leads"),
        "{table}"
    );
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn create<K>(client: &kube::Client, namespace: &str, object: Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// A new request, and a new decision on it, each make the connector of the request's
/// PolicyAccess sync (with no request moment due, only the watches can cause it).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_request_or_decision_wakes_the_connector_of_its_policy_access() {
    let double = support::apiserver::ApiServerDouble::start().await;
    let client = double.client();
    let sim = start(&unlimited_seed()).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = cluster::ControllerSettings {
        admission: Default::default(),
        allowed_webhooks: None,
        probes_addr: "127.0.0.1:0".parse().unwrap(),
        lease: None,
        debounce: Duration::from_millis(200),
        scope: cluster::Scope::Namespaces(vec!["finance".into()]),
        watch_secrets: false,
    };
    let controller = tokio::spawn(cluster::run_with_requests_admission(
        client.clone(),
        settings,
        Arc::new(ExpensifyClients::new(sim_settings(&sim)).unwrap()),
        async move {
            let _ = stop_rx.await;
        },
        Some(Ok(())),
    ));
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    create::<Secret>(
        &client,
        "finance",
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "expensify-credentials", "namespace": "finance"},
        "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(ADMIN_SECRET)}}),
    )
    .await;
    create::<ExpensifyConnector>(&client, "finance", json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": "finance"},
        "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "endpoint": sim.endpoint(), "adminEmail": "it-admin@acme.example"}}))
    .await;
    create::<PolicyAccess>(
        &client,
        "finance",
        json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": "team", "namespace": "finance"},
        "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": FINANCE}, "members": [],
            "requests": {"maxDuration": "8h", "approvers": ["cfo@acme.example"]}}}),
    )
    .await;
    let lists = || {
        sim.state()
            .counters()
            .by_job
            .get("get/policyList")
            .copied()
            .unwrap_or(0)
    };
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), "finance");
    eventually("the PolicyAccess to be synced", || async {
        accesses
            .get("team")
            .await
            .ok()
            .and_then(|a| a.status)
            .is_some_and(|s| s.phase == expensify_operator::api::AccessPhase::Synced)
    })
    .await;
    // Settled: the debounce has passed and no sync is due for the connector's interval.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let settled = lists();

    create::<AccessRequest>(
        &client,
        "finance",
        json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "r1", "namespace": "finance"},
        "spec": {"accessRef": {"name": "team"}, "email": "pending@acme.example", "duration": "1h",
            "reason": "close", "requester": "pending@acme.example"}}),
    )
    .await;
    eventually("the request to wake the connector", || async {
        lists() > settled
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after_request = lists();

    create::<AccessDecision>(&client, "finance", json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessDecision",
        "metadata": {"name": "r1-cfo-abcde", "namespace": "finance"},
        "spec": {"requestRef": {"name": "r1"}, "decision": "Approve", "decidedBy": "cfo@acme.example"}}))
    .await;
    eventually("the decision to wake the connector", || async {
        lists() > after_request
    })
    .await;

    // The controller watched both kinds, as the chart's RBAC allows (the test's own
    // creates go through the same server, so only reads are checked).
    let reads: Vec<(String, String)> = double
        .requests_seen()
        .into_iter()
        .filter(|(method, uri)| {
            method == "GET" && (uri.contains("/accessrequests") || uri.contains("/accessdecisions"))
        })
        .collect();
    for plural in ["accessrequests", "accessdecisions"] {
        assert!(
            reads
                .iter()
                .any(|(_, uri)| uri.contains(plural) && uri.contains("watch=true")),
            "{plural} watched: {reads:?}"
        );
    }
    let refused: Vec<_> = reads
        .iter()
        .filter(|(method, uri)| !cluster::rbac::allowed(method, uri, false))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("the controller stops")
        .unwrap()
        .unwrap();
}

/// The controller, the connector `acme` and the PolicyAccess `team` (requests allowed,
/// self-service) in `finance`, on the double and the simulator.
async fn controller_with_rules(
    double: &support::apiserver::ApiServerDouble,
    sim: &expensify_operator::simulator::SimulatorHandle,
    admission: Option<Result<(), String>>,
    duration: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), cluster::RunControllerError>>,
) {
    let client = double.client();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = cluster::ControllerSettings {
        admission: Default::default(),
        allowed_webhooks: None,
        probes_addr: "127.0.0.1:0".parse().unwrap(),
        lease: None,
        debounce: Duration::from_millis(200),
        scope: cluster::Scope::Namespaces(vec!["finance".into()]),
        watch_secrets: false,
    };
    let controller = tokio::spawn(cluster::run_with_requests_admission(
        client.clone(),
        settings,
        Arc::new(ExpensifyClients::new(sim_settings(sim)).unwrap()),
        async move {
            let _ = stop_rx.await;
        },
        admission,
    ));
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    create::<Secret>(
        &client,
        "finance",
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "expensify-credentials", "namespace": "finance"},
        "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(ADMIN_SECRET)}}),
    )
    .await;
    create::<ExpensifyConnector>(&client, "finance", json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": "finance"},
        "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "endpoint": sim.endpoint(), "adminEmail": "it-admin@acme.example"}}))
    .await;
    create::<PolicyAccess>(&client, "finance", json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": "team", "namespace": "finance"},
        "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": FINANCE}, "mode": "Additive", "members": [],
            "requests": {"maxDuration": "8h", "approvals": 0}}}))
    .await;
    create::<AccessRequest>(
        &client,
        "finance",
        json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "r1", "namespace": "finance"},
        "spec": {"accessRef": {"name": "team"}, "email": "temp@acme.example", "duration": duration,
            "reason": "close", "requester": "temp@acme.example"}}),
    )
    .await;
    (stop_tx, controller)
}

async fn phase(client: &kube::Client) -> Option<expensify_operator::api::RequestPhase> {
    Api::<AccessRequest>::namespaced(client.clone(), "finance")
        .get("r1")
        .await
        .ok()
        .and_then(|r| r.status)
        .map(|s| s.phase)
}

fn granted(sim: &expensify_operator::simulator::SimulatorHandle) -> bool {
    roster(sim, FINANCE)
        .iter()
        .any(|(e, _)| e == "temp@acme.example")
}

/// Without the identity admission policy (the double serves none), a request is an Error
/// naming it and grants nothing: the controller fails closed.
#[tokio::test(flavor = "multi_thread")]
async fn without_admission_a_request_is_an_error_and_grants_nothing() {
    let double = support::apiserver::ApiServerDouble::start().await;
    let sim = start(&unlimited_seed()).await;
    let (stop_tx, controller) = controller_with_rules(&double, &sim, None, "1h").await;
    let client = double.client();
    eventually("the request to be Error", || async {
        phase(&client).await == Some(expensify_operator::api::RequestPhase::Error)
    })
    .await;
    let request = Api::<AccessRequest>::namespaced(client.clone(), "finance")
        .get("r1")
        .await
        .unwrap();
    let message = request.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("ValidatingAdmissionPolicy expensify-access-identity is not installed"),
        "{message}"
    );
    assert!(!granted(&sim));
    assert!(request.metadata.finalizers.unwrap_or_default().is_empty());
    stop_tx.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
}

/// Self-service under admission: Active, granted, held by the finalizer, with an Event;
/// deleting it releases the grant first, then lets the object go.
#[tokio::test(flavor = "multi_thread")]
async fn an_active_request_is_granted_and_its_deletion_releases_through_the_finalizer() {
    let double = support::apiserver::ApiServerDouble::start().await;
    let sim = start(&unlimited_seed()).await;
    let (stop_tx, controller) = controller_with_rules(&double, &sim, Some(Ok(())), "1h").await;
    let client = double.client();
    eventually("the request to be Active", || async {
        phase(&client).await == Some(expensify_operator::api::RequestPhase::Active)
    })
    .await;
    eventually("the grant", || async { granted(&sim) }).await;
    let requests = Api::<AccessRequest>::namespaced(client.clone(), "finance");
    let request = requests.get("r1").await.unwrap();
    assert_eq!(
        request.metadata.finalizers.clone().unwrap_or_default(),
        ["expensify.gitops.dev/release"]
    );
    assert!(
        double
            .events()
            .iter()
            .any(|e| e["reason"] == "RequestActive" && e["regarding"]["name"] == "r1"),
        "{:?}",
        double.events()
    );
    requests
        .delete("r1", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    eventually("the request to be gone", || async {
        requests.get_opt("r1").await.ok().flatten().is_none()
    })
    .await;
    assert!(!granted(&sim), "released before the object went");
    stop_tx.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
}

/// A one-minute request ends by the controller's own clock (no change wakes it): Expired,
/// the grant taken back, the finalizer gone, an Event told.
#[tokio::test(flavor = "multi_thread")]
async fn an_active_request_expires_on_time_and_is_taken_back() {
    let double = support::apiserver::ApiServerDouble::start().await;
    let sim = start(&unlimited_seed()).await;
    let (stop_tx, controller) = controller_with_rules(&double, &sim, Some(Ok(())), "1m").await;
    let client = double.client();
    eventually("the grant", || async { granted(&sim) }).await;
    let started = std::time::Instant::now();
    while phase(&client).await != Some(expensify_operator::api::RequestPhase::Expired) {
        assert!(
            started.elapsed() < Duration::from_secs(100),
            "not expired in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eventually("the grant taken back", || async { !granted(&sim) }).await;
    let request = Api::<AccessRequest>::namespaced(client.clone(), "finance")
        .get("r1")
        .await
        .unwrap();
    assert!(request.metadata.finalizers.unwrap_or_default().is_empty());
    assert!(
        double
            .events()
            .iter()
            .any(|e| e["reason"] == "RequestExpired" && e["regarding"]["name"] == "r1")
    );
    stop_tx.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
}
