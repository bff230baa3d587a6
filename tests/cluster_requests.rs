//! Access requests in a cluster: the CLI signs requests and decisions as the kubeconfig's
//! user (a `SelfSubjectReview`), against kube-rs's mock service (tower-test); the real
//! controller loop hears requests and decisions (API server double and simulator) and
//! takes each through every phase transition the contract names.
#![allow(
    clippy::needless_pass_by_value,
    reason = "test helpers take json! values"
)]

mod support;
use support::*;

use std::time::Duration;

use expensify_operator::api::{
    AccessDecision, AccessDecisionStatus, AccessRequest, DecisionKind, ExpensifyConnector,
    PolicyAccess, RequestPhase,
};
use expensify_operator::cluster;
use expensify_operator::commands::request_cluster::{
    DecideArgs, ListFormat, ReadIdentityError, RequestArgs, create_request, decide, list_requests,
};
use http::{Request, Response};
use kube::api::{Api, DeleteParams};
use kube::client::Body;
use serde_json::{Value, json};
use support::apiserver::ApiServerDouble;
use support::requests::{
    CONNECTOR, Controller, Manifest, NAMESPACE, Rules, access, create, create_connector, decision,
    delete_request, eventually, request, request_status, rules, wait_for_phase,
};

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

/// A new request, and a new decision on it, each make the connector of the request's
/// PolicyAccess sync (with no request moment due, only the watches can cause it).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_request_or_decision_wakes_the_connector_of_its_policy_access() {
    let world = scene(Some(Ok(())), rules("8h").approvers(&[CAROL])).await;
    let (double, sim, client) = (&world.double, &world.sim, &world.client);
    let lists = || {
        sim.state()
            .counters()
            .by_job
            .get("get/policyList")
            .copied()
            .unwrap_or(0)
    };
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), NAMESPACE);
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

    create::<AccessRequest>(client, &ask(PERSON).set("duration", "1h").json()).await;
    eventually("the request to wake the connector", || async {
        lists() > settled
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after_request = lists();

    create::<AccessDecision>(
        client,
        &decision("r1-cfo-abcde", "r1", "Approve", CAROL).json(),
    )
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
    world.controller.stop().await;
}

/// The person who gets access; the requester asks on their behalf.
const PERSON: &str = "temp@acme.example";
const REQUESTER: &str = "lead@acme.example";
const CAROL: &str = "carol@acme.example";
const DAVE: &str = "dave@acme.example";

/// Rules under which a request stays Pending for the whole test: the API double stamps
/// objects with the time they are created, as the API server does.
fn stays_pending() -> Rules {
    rules("8h").pending_timeout("30d")
}

/// A test's world: the API double, the simulator, the controller on them (`admission` as
/// [`Controller::start`] takes it), the connector `acme` and the PolicyAccess `team` with
/// the rules given, in `finance`.
struct Scene {
    /// Serves until dropped.
    double: ApiServerDouble,
    sim: expensify_operator::simulator::SimulatorHandle,
    controller: Controller,
    client: kube::Client,
}

async fn scene(admission: Option<Result<(), String>>, rules: Rules) -> Scene {
    scene_in(admission, rules, &[NAMESPACE]).await
}

/// [`scene`], the controller watching these namespaces.
async fn scene_in(
    admission: Option<Result<(), String>>,
    rules: Rules,
    namespaces: &[&str],
) -> Scene {
    let double = ApiServerDouble::start().await;
    let sim = start(&unlimited_seed()).await;
    let controller = Controller::start_in(&double, &sim, admission, namespaces);
    let client = double.client();
    create_connector(&client, &sim).await;
    create::<PolicyAccess>(&client, &access("team").rules(rules).json()).await;
    Scene {
        double,
        sim,
        controller,
        client,
    }
}

/// `r1`: the requester asks for `email` on `team`.
fn ask(email: &str) -> Manifest {
    request("r1", "team", email).set("requester", REQUESTER)
}

/// `r1` for [`PERSON`], lasting `duration`.
fn ask_for(duration: &str) -> Manifest {
    ask(PERSON).set("duration", duration)
}

async fn phase(client: &kube::Client) -> Option<RequestPhase> {
    request_status(client, "r1").await.map(|s| s.phase)
}

/// The status of decision `namespace/name`, once the controller judged it.
async fn judged(client: &kube::Client, namespace: &str, name: &str) -> AccessDecisionStatus {
    let decisions = Api::<AccessDecision>::namespaced(client.clone(), namespace);
    eventually(&format!("decision {name} to be judged"), || async {
        decisions
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.status)
            .is_some_and(|s| s.counted.is_some())
    })
    .await;
    decisions.get(name).await.unwrap().status.unwrap()
}

fn granted(sim: &expensify_operator::simulator::SimulatorHandle) -> bool {
    roster(sim, FINANCE).iter().any(|(e, _)| e == PERSON)
}

fn finalizers(request: &AccessRequest) -> Vec<String> {
    request.metadata.finalizers.clone().unwrap_or_default()
}

async fn get_request(client: &kube::Client) -> AccessRequest {
    Api::<AccessRequest>::namespaced(client.clone(), NAMESPACE)
        .get("r1")
        .await
        .unwrap()
}

fn told(double: &ApiServerDouble, reason: &str) -> bool {
    double
        .events()
        .iter()
        .any(|e| e["reason"] == reason && e["regarding"]["name"] == "r1")
}

/// Without the identity admission policy (the double serves none), every request is an
/// Error naming it, one with a valid approval too, and nothing is granted: the controller
/// fails closed.
#[tokio::test(flavor = "multi_thread")]
async fn without_admission_every_request_is_an_error_and_grants_nothing() {
    let world = scene(None, stays_pending().approvers(&[CAROL])).await;
    let (sim, client) = (&world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("1h").json()).await;
    let approved = request("r2", "team", "temp2@acme.example").set("requester", REQUESTER);
    create::<AccessRequest>(client, &approved.json()).await;
    create::<AccessDecision>(client, &decision("r2-carol", "r2", "Approve", CAROL).json()).await;
    for name in ["r1", "r2"] {
        eventually(&format!("{name} to be Error"), || async {
            request_status(client, name)
                .await
                .is_some_and(|s| s.phase == RequestPhase::Error)
        })
        .await;
        let status = request_status(client, name).await.unwrap();
        let message = status.message.unwrap_or_default();
        assert!(
            message
                .contains("ValidatingAdmissionPolicy expensify-access-identity is not installed"),
            "{name}: {message}"
        );
    }
    assert!(!granted(sim));
    assert!(
        !roster(sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "temp2@acme.example")
    );
    assert!(finalizers(&get_request(client).await).is_empty());
    world.controller.stop().await;
}

/// Self-service under admission: Active, granted, held by the finalizer, with an Event;
/// deleting it releases the grant first, then lets the object go.
#[tokio::test(flavor = "multi_thread")]
async fn an_active_request_is_granted_and_its_deletion_releases_through_the_finalizer() {
    let world = scene(Some(Ok(())), rules("8h").approvals(0)).await;
    let (double, sim, client) = (&world.double, &world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("1h").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Active).await;
    eventually("the grant", || async { granted(sim) }).await;
    assert_eq!(
        finalizers(&get_request(client).await),
        ["expensify.gitops.dev/release"]
    );
    assert!(told(double, "RequestActive"), "{:?}", double.events());
    delete_request(client, "r1").await;
    assert!(!granted(sim), "released before the object went");
    world.controller.stop().await;
}

/// A one-minute request ends by the controller's own clock (no change wakes it): Expired,
/// the grant taken back, the finalizer gone, an Event told.
#[tokio::test(flavor = "multi_thread")]
async fn an_active_request_expires_on_time_and_is_taken_back() {
    let world = scene(Some(Ok(())), rules("8h").approvals(0)).await;
    let (double, sim, client) = (&world.double, &world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("1m").json()).await;
    eventually("the grant", || async { granted(sim) }).await;
    let started = std::time::Instant::now();
    while phase(client).await != Some(RequestPhase::Expired) {
        assert!(
            started.elapsed() < Duration::from_secs(100),
            "not expired in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eventually("the grant taken back", || async { !granted(sim) }).await;
    let request = get_request(client).await;
    assert_eq!(
        request.status.as_ref().and_then(|s| s.reason.as_deref()),
        Some("Ended")
    );
    assert!(finalizers(&request).is_empty());
    assert!(told(double, "RequestExpired"));
    world.controller.stop().await;
}

/// With `approvals: 2`: one approval leaves the request Pending and writes nothing to
/// Expensify; the same approver again, the requester, the person who would get access and
/// someone who is no approver count for nothing (each decision's status says why); a
/// second distinct approver makes it Active and granted.
#[tokio::test(flavor = "multi_thread")]
async fn two_distinct_approvals_make_a_request_active_and_nothing_less_does() {
    let world = scene(
        Some(Ok(())),
        stays_pending().approvals(2).approvers(&[CAROL, DAVE]),
    )
    .await;
    let (sim, client) = (&world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("1h").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Pending).await;
    let writes = updates(sim);

    // The double stamps every object with one creation time: decisions are judged in
    // name order, so the names say which comes first.
    create::<AccessDecision>(
        client,
        &decision("r1-a-carol", "r1", "Approve", CAROL).json(),
    )
    .await;
    assert_eq!(
        judged(client, NAMESPACE, "r1-a-carol").await.counted,
        Some(true)
    );
    let refused = [
        (
            "r1-b-carol-again",
            CAROL,
            "carol@acme.example already decided this request",
        ),
        (
            "r1-c-requester",
            REQUESTER,
            "lead@acme.example made the request and cannot decide it",
        ),
        (
            "r1-d-person",
            PERSON,
            "temp@acme.example is the person who gets access and cannot decide it",
        ),
        (
            "r1-e-mallory",
            "mallory@acme.example",
            "mallory@acme.example is not one of the approvers",
        ),
    ];
    for (name, by, why) in refused {
        create::<AccessDecision>(client, &decision(name, "r1", "Approve", by).json()).await;
        let status = judged(client, NAMESPACE, name).await;
        assert_eq!(
            (status.counted, status.message.as_deref()),
            (Some(false), Some(why)),
            "{name}"
        );
    }
    let status = request_status(client, "r1").await.unwrap();
    assert_eq!(status.phase, RequestPhase::Pending, "{status:?}");
    assert_eq!(status.approvals.len(), 1, "{status:?}");
    assert_eq!(updates(sim), writes, "no Expensify write while Pending");
    assert!(!granted(sim));

    create::<AccessDecision>(client, &decision("r1-f-dave", "r1", "Approve", DAVE).json()).await;
    wait_for_phase(client, "r1", RequestPhase::Active).await;
    eventually("the grant", || async { granted(sim) }).await;
    let status = request_status(client, "r1").await.unwrap();
    let approvers: Vec<&str> = status.approvals.iter().map(|a| a.by.as_str()).collect();
    assert_eq!(approvers, [CAROL, DAVE]);
    world.controller.stop().await;
}

/// The first valid Deny ends the request for good: Denied, an approval after it is not
/// counted, nothing is granted.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_valid_deny_ends_a_request_for_good() {
    let world = scene(Some(Ok(())), stays_pending().approvers(&[CAROL, DAVE])).await;
    let (double, sim, client) = (&world.double, &world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("1h").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Pending).await;
    let writes = updates(sim);
    create::<AccessDecision>(client, &decision("r1-deny", "r1", "Deny", CAROL).json()).await;
    wait_for_phase(client, "r1", RequestPhase::Denied).await;
    create::<AccessDecision>(
        client,
        &decision("r1-approve", "r1", "Approve", DAVE).json(),
    )
    .await;
    let status = judged(client, NAMESPACE, "r1-approve").await;
    assert_eq!(
        (status.counted, status.message.as_deref()),
        (Some(false), Some("the request is already Denied"))
    );
    let request = request_status(client, "r1").await.unwrap();
    assert_eq!(request.phase, RequestPhase::Denied);
    assert_eq!(request.denial.map(|d| d.by).as_deref(), Some(CAROL));
    assert!(!granted(sim));
    assert_eq!(updates(sim), writes);
    assert!(told(double, "RequestDenied"));
    world.controller.stop().await;
}

/// A Revoke decision (here by the requester) ends an active request early: Revoked, the
/// grant taken back, the finalizer gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoke_decision_ends_an_active_request_and_takes_the_grant_back() {
    let world = scene(Some(Ok(())), rules("8h").approvals(0)).await;
    let (double, sim, client) = (&world.double, &world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("4h").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Active).await;
    eventually("the grant", || async { granted(sim) }).await;
    create::<AccessDecision>(
        client,
        &decision("r1-revoke", "r1", "Revoke", REQUESTER).json(),
    )
    .await;
    wait_for_phase(client, "r1", RequestPhase::Revoked).await;
    eventually("the grant taken back", || async { !granted(sim) }).await;
    let request = get_request(client).await;
    assert_eq!(
        request.status.as_ref().and_then(|s| s.reason.as_deref()),
        Some("Revoked")
    );
    eventually("the finalizer to go", || async {
        finalizers(&get_request(client).await).is_empty()
    })
    .await;
    assert!(told(double, "RequestRevoked"));
    world.controller.stop().await;
}

/// A request nobody answers within `pendingTimeout` is Expired (`NotApproved`); an
/// approval after that counts for nothing and nothing is granted. (The double stamps the
/// request two days old: a 24h timeout has passed at the first sync.)
#[tokio::test(flavor = "multi_thread")]
async fn a_request_pending_past_its_timeout_expires_and_grants_nothing() {
    let world = scene(
        Some(Ok(())),
        rules("8h").approvers(&[CAROL]).pending_timeout("24h"),
    )
    .await;
    let (sim, client) = (&world.sim, &world.client);
    let two_days_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(48);
    world.double.stamp_creations_at(two_days_ago);
    create::<AccessRequest>(client, &ask_for("1h").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Expired).await;
    assert_eq!(
        request_status(client, "r1")
            .await
            .unwrap()
            .reason
            .as_deref(),
        Some("NotApproved")
    );
    create::<AccessDecision>(client, &decision("r1-late", "r1", "Approve", CAROL).json()).await;
    assert_eq!(
        judged(client, NAMESPACE, "r1-late").await.counted,
        Some(false)
    );
    assert_eq!(phase(client).await, Some(RequestPhase::Expired));
    assert!(!granted(sim));
    world.controller.stop().await;
}

/// A request deleted while Pending holds no finalizer and goes at once; an approval for
/// it afterwards (a request that does not exist) counts for nothing, says so, and grants
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_deleted_while_pending_goes_and_a_later_approval_grants_nothing() {
    let world = scene(Some(Ok(())), stays_pending().approvers(&[CAROL])).await;
    let (sim, client) = (&world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("1h").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Pending).await;
    assert!(finalizers(&get_request(client).await).is_empty());
    let requests = Api::<AccessRequest>::namespaced(client.clone(), NAMESPACE);
    requests
        .delete("r1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        requests.get_opt("r1").await.unwrap().is_none(),
        "gone at once"
    );
    create::<AccessDecision>(client, &decision("r1-carol", "r1", "Approve", CAROL).json()).await;
    let status = judged(client, NAMESPACE, "r1-carol").await;
    assert_eq!(
        (status.counted, status.message.as_deref()),
        (
            Some(false),
            Some("no AccessRequest r1 in namespace finance")
        )
    );
    assert!(!granted(sim));
    world.controller.stop().await;
}

/// A decision names its request by name in its own namespace: one in `sales` naming `r1`
/// of `finance` decides nothing there (the request stays Pending) and says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_decision_in_another_namespace_decides_nothing() {
    let pending = stays_pending().approvers(&[CAROL]);
    let world = scene_in(Some(Ok(())), pending.clone(), &[NAMESPACE, "sales"]).await;
    let (sim, client) = (&world.sim, &world.client);
    // `sales` is a tenant of the same connector, with a PolicyAccess of its own.
    accept_namespace(client, "sales").await;
    create::<PolicyAccess>(
        client,
        &access("team").in_namespace("sales").rules(pending).json(),
    )
    .await;
    a_decision_from_sales_counts_for_nothing(client, sim).await;
    world.controller.stop().await;
}

/// A decision in a namespace that holds no PolicyAccess at all (and no such request) is
/// still answered, by a connector that accepts the namespace: it counts for nothing and
/// says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_decision_in_a_namespace_without_policy_access_is_answered_and_counts_for_nothing() {
    let world = scene_in(
        Some(Ok(())),
        stays_pending().approvers(&[CAROL]),
        &[NAMESPACE, "sales"],
    )
    .await;
    let (sim, client) = (&world.sim, &world.client);
    accept_namespace(client, "sales").await;
    a_decision_from_sales_counts_for_nothing(client, sim).await;
    world.controller.stop().await;
}

/// A request naming a PolicyAccess that does not exist is `Error`, the PolicyAccess
/// named, and nothing is granted; once that PolicyAccess is created it is judged again
/// under its rules (an `Error` is looked at every sync).
#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_a_missing_policy_access_is_an_error_until_it_exists() {
    let world = scene(Some(Ok(())), rules("8h").approvals(0)).await;
    let (sim, client) = (&world.sim, &world.client);
    let early = request("r1", "later", PERSON).set("requester", REQUESTER);
    create::<AccessRequest>(client, &early.json()).await;
    wait_for_phase(client, "r1", RequestPhase::Error).await;
    let status = request_status(client, "r1").await.unwrap();
    assert_eq!(
        status.message.as_deref(),
        Some("PolicyAccess later does not exist in namespace finance"),
        "{status:?}"
    );
    assert!(!granted(sim));
    create::<PolicyAccess>(
        client,
        &access("later").rules(rules("8h").approvals(0)).json(),
    )
    .await;
    wait_for_phase(client, "r1", RequestPhase::Active).await;
    eventually("the grant", || async { granted(sim) }).await;
    world.controller.stop().await;
}

/// `r1` waits in `finance`; Carol approves `r1` from `sales`, where no such request
/// exists: her decision counts for nothing and says why; `r1` stays Pending.
async fn a_decision_from_sales_counts_for_nothing(
    client: &kube::Client,
    sim: &expensify_operator::simulator::SimulatorHandle,
) {
    create::<AccessRequest>(client, &ask_for("1h").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Pending).await;
    let elsewhere = decision("r1-carol", "r1", "Approve", CAROL).in_namespace("sales");
    create::<AccessDecision>(client, &elsewhere.json()).await;
    let status = judged(client, "sales", "r1-carol").await;
    assert_eq!(
        (status.counted, status.message.as_deref()),
        (Some(false), Some("no AccessRequest r1 in namespace sales"))
    );
    assert_eq!(phase(client).await, Some(RequestPhase::Pending));
    assert!(!granted(sim));
}

/// Lets the connector `acme` take objects from `namespace` too.
async fn accept_namespace(client: &kube::Client, namespace: &str) {
    let patch = json!({"spec": {"allowedNamespaces": [namespace]}});
    Api::<ExpensifyConnector>::namespaced(client.clone(), NAMESPACE)
        .patch(
            CONNECTOR,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
}

/// The controller is down when an active request ends: a fresh controller on the same
/// API server takes the grant back when it starts.
#[tokio::test(flavor = "multi_thread")]
async fn an_expiry_while_the_controller_is_down_is_taken_back_on_start() {
    let world = scene(Some(Ok(())), rules("8h").approvals(0)).await;
    let (double, sim, client) = (&world.double, &world.sim, &world.client);
    create::<AccessRequest>(client, &ask_for("1m").json()).await;
    wait_for_phase(client, "r1", RequestPhase::Active).await;
    eventually("the grant", || async { granted(sim) }).await;
    eventually("expiresAt to be saved", || async {
        request_status(client, "r1")
            .await
            .is_some_and(|s| s.expires_at.is_some())
    })
    .await;
    world.controller.stop().await;
    let expires = request_status(client, "r1")
        .await
        .unwrap()
        .expires_at
        .unwrap()
        .0;
    let left = expires.duration_since(k8s_openapi::jiff::Timestamp::now());
    let left = Duration::try_from(left).unwrap_or_default();
    tokio::time::sleep(left + Duration::from_secs(1)).await;
    assert!(
        granted(sim),
        "nobody took it back while the controller was down"
    );
    assert_eq!(phase(client).await, Some(RequestPhase::Active));

    let controller = Controller::start(double, sim, Some(Ok(())));
    wait_for_phase(client, "r1", RequestPhase::Expired).await;
    eventually("the grant taken back", || async { !granted(sim) }).await;
    eventually("the finalizer to go", || async {
        finalizers(&get_request(client).await).is_empty()
    })
    .await;
    controller.stop().await;
}
