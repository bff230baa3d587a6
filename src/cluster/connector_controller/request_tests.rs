//! The cluster steps of access requests against kube-rs's mock service: the write-ahead
//! holds a request then saves its ledger; after a sync, phase changes become Events,
//! changed statuses are written, and a request that holds nothing any more is let go.
#![allow(
    clippy::needless_pass_by_value,
    reason = "test helpers take json! values"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};

use super::store::ClusterStore;
use super::{events, finalizers, inputs, statuses};
use crate::api::{
    AccessDecision, AccessDecisionStatus, AccessRequest, AccessRequestStatus, ExpensifyConnector,
};
use crate::cluster::cache::Caches;
use crate::cluster::context::Context;
use crate::cluster::leadership::Leadership;
use crate::cluster::metrics::Metrics;
use crate::reconcile::ObjectKey;
use crate::sync::{SyncReport, WriteAhead};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const REQUESTS: &str = "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/accessrequests";

fn context() -> (Context, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let reporter = Reporter {
        controller: "expensify-operator".into(),
        instance: None,
    };
    let ctx = Context::new(
        client.clone(),
        Arc::new(crate::expensify::ExpensifyClients::new(Default::default()).unwrap()),
        Recorder::new(client, reporter),
        Arc::new(Metrics::default()),
        Leadership::always(),
        Caches::new(Vec::new(), Vec::new(), tokio::sync::watch::channel(true).1),
    );
    (ctx, handle)
}

/// Answers each expected `(method, uri prefix, reply)` in order; returns the bodies sent.
async fn serve(mut handle: Handle, expected: Vec<(&str, String, Value)>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for (method, uri, reply) in expected {
        let (request, send) = handle.next_request().await.expect("a call");
        assert_eq!(request.method().as_str(), method, "{}", request.uri());
        assert!(
            request.uri().to_string().starts_with(&uri),
            "{} is not {uri}",
            request.uri()
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        bodies.push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
    }
    // Nothing beyond those expected: a further call would be waiting by now.
    tokio::task::yield_now().await;
    let extra = futures::FutureExt::now_or_never(handle.next_request());
    assert!(
        !matches!(extra, Some(Some(_))),
        "a call beyond those expected"
    );
    bodies
}

fn connector() -> ExpensifyConnector {
    serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": "finance", "uid": "c1", "resourceVersion": "1"},
        "spec": {"credentialsSecretRef": {"name": "creds"}, "adminEmail": "it@acme.example"}
    }))
    .unwrap()
}

fn request_json(version: &str, finalizers: Value, status: Value) -> Value {
    json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "r1", "namespace": "finance", "uid": "u1", "resourceVersion": version, "finalizers": finalizers},
        "spec": {"accessRef": {"name": "team"}, "email": "alice@acme.example", "duration": "8h", "requester": "alice@acme.example"},
        "status": status
    })
}

fn holding() -> Value {
    json!({"email": "alice@acme.example", "policyID": "P1", "role": "admin", "added": true})
}

fn transition(at: &str, phase: &str, reason: &str, by: Option<&str>) -> Value {
    let mut t = json!({"at": at, "phase": phase, "reason": reason});
    if let Some(by) = by {
        t["by"] = json!(by);
    }
    t
}

fn report(
    request_statuses: BTreeMap<ObjectKey, AccessRequestStatus>,
    decision_statuses: BTreeMap<ObjectKey, AccessDecisionStatus>,
) -> SyncReport {
    SyncReport {
        connector: ObjectKey::new("finance", "acme"),
        connector_status: Default::default(),
        plan: Default::default(),
        results: Vec::new(),
        statuses: BTreeMap::new(),
        finished_deletions: Vec::new(),
        observed: Default::default(),
        calls: Default::default(),
        refused: None,
        save_order: Vec::new(),
        request_statuses,
        decision_statuses,
        finished_request_deletions: Vec::new(),
        pending_deadline: None,
        notifications: Vec::new(),
    }
}

#[tokio::test]
async fn the_write_ahead_holds_the_request_then_saves_its_ledger() {
    let (ctx, handle) = context();
    let connector = connector();
    let request: AccessRequest =
        serde_json::from_value(request_json("5", json!([]), json!({"phase": "Pending"}))).unwrap();
    let active: AccessRequestStatus =
        serde_json::from_value(json!({"phase": "Active", "managedMembers": [holding()]})).unwrap();
    let store = ClusterStore {
        ctx: &ctx,
        connector: &connector,
        term: ctx.leadership().guard().unwrap(),
        credentials: Err("unused".into()),
        by_key: BTreeMap::new(),
        requests_by_key: [(ObjectKey::new("finance", "r1"), &request)].into(),
    };
    // The planner's synthetic holder key names the request.
    let requests = [(ObjectKey::new("finance", "request:r1"), active.clone())].into();
    let expected = vec![
        (
            "PATCH",
            format!("{REQUESTS}/r1?"),
            request_json(
                "6",
                json!(["expensify.gitops.dev/release"]),
                json!({"phase": "Pending"}),
            ),
        ),
        (
            "PATCH",
            format!("{REQUESTS}/r1/status?"),
            request_json(
                "7",
                json!(["expensify.gitops.dev/release"]),
                serde_json::to_value(&active).unwrap(),
            ),
        ),
    ];
    let no_accesses = BTreeMap::new();
    let (saved, bodies) = tokio::join!(
        store.save(&no_accesses, &requests, None),
        serve(handle, expected)
    );
    drop(store);
    saved.unwrap();
    assert_eq!(
        bodies[0]["metadata"],
        json!({"finalizers": ["expensify.gitops.dev/release"], "resourceVersion": "5"})
    );
    assert_eq!(bodies[1]["status"]["phase"], "Active");
    assert_eq!(bodies[1]["status"]["managedMembers"], json!([holding()]));
    assert_eq!(
        bodies[1]["metadata"]["resourceVersion"], "6",
        "computed from the version the finalizer write left"
    );
}

#[tokio::test]
async fn after_a_sync_a_phase_change_is_an_event_the_status_is_written_and_a_released_request_let_go()
 {
    let (ctx, handle) = context();
    let approved = transition(
        "2026-12-04T10:00:00Z",
        "Active",
        "Approved",
        Some("cfo@acme.example"),
    );
    let request: AccessRequest = serde_json::from_value(request_json(
        "5",
        json!(["expensify.gitops.dev/release"]),
        json!({"phase": "Active", "managedMembers": [holding()], "history": [approved]}),
    ))
    .unwrap();
    let decision: AccessDecision = serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessDecision",
        "metadata": {"name": "r1-cfo-abcde", "namespace": "finance", "uid": "d1", "resourceVersion": "3"},
        "spec": {"requestRef": {"name": "r1"}, "decision": "Approve", "decidedBy": "cfo@acme.example"}
    }))
    .unwrap();
    let inputs = inputs::with_requests(connector(), vec![request], vec![decision]);
    let expired: AccessRequestStatus = serde_json::from_value(json!({
        "phase": "Expired", "reason": "Ended",
        "history": [approved, transition("2026-12-04T18:00:00Z", "Expired", "Ended", None)]
    }))
    .unwrap();
    let counted = AccessDecisionStatus {
        counted: Some(true),
        message: None,
    };
    let report = report(
        [(ObjectKey::new("finance", "r1"), expired.clone())].into(),
        [(ObjectKey::new("finance", "r1-cfo-abcde"), counted)].into(),
    );
    let after = async {
        events::publish(&ctx, &inputs, &report).await;
        statuses::write_request_statuses(&ctx, &inputs, &report).await?;
        finalizers::release(&ctx, &inputs, &report).await
    };
    let expired_json = serde_json::to_value(&expired).unwrap();
    let expected = vec![
        (
            "POST",
            "/apis/events.k8s.io/v1/namespaces/finance/events?".to_string(),
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "finance"}, "eventTime": "2026-12-04T18:00:00.000000Z"}),
        ),
        (
            "PATCH",
            format!("{REQUESTS}/r1/status?"),
            request_json("6", json!(["expensify.gitops.dev/release"]), expired_json.clone()),
        ),
        (
            "PATCH",
            "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/accessdecisions/r1-cfo-abcde/status?"
                .to_string(),
            json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessDecision",
                "metadata": {"name": "r1-cfo-abcde", "namespace": "finance", "uid": "d1", "resourceVersion": "4"},
                "spec": {"requestRef": {"name": "r1"}, "decision": "Approve", "decidedBy": "cfo@acme.example"},
                "status": {"counted": true}}),
        ),
        (
            "PATCH",
            format!("{REQUESTS}/r1?"),
            request_json("7", json!([]), expired_json),
        ),
    ];
    let (done, bodies) = tokio::join!(after, serve(handle, expected));
    drop(inputs);
    done.unwrap();
    assert_eq!(bodies[0]["reason"], "RequestExpired");
    assert_eq!(bodies[0]["type"], "Normal");
    assert_eq!(bodies[0]["note"], "Active -> Expired (Ended)");
    assert_eq!(bodies[0]["regarding"]["kind"], "AccessRequest");
    assert_eq!(bodies[1]["status"]["phase"], "Expired");
    assert_eq!(bodies[2]["status"], json!({"counted": true}));
    assert_eq!(
        bodies[3]["metadata"],
        json!({"finalizers": [], "resourceVersion": "6"}),
        "released from the version the status write left"
    );
}
