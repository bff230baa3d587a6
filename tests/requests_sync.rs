//! Access requests through the real sync against the simulator: a request is granted,
//! its clock starts when the re-read shows the grant, and at its end exactly what it
//! added is taken back; requests that must not be granted write nothing.

mod support;

use expensify_operator::api::{AccessRequest, ExpensifyConnector, PolicyAccess, RequestPhase};
use expensify_operator::reconcile::{
    AccessObject, Approval, ConnectorObject, RequestObject, Requests, Scope,
};
use expensify_operator::sync::{SyncReport, SyncRequest, sync_connector};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use support::*;

fn connector() -> ConnectorObject {
    let resource: ExpensifyConnector = serde_json::from_value(serde_json::json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": "finance"},
        "spec": {"credentialsSecretRef": {"name": "creds"}, "adminEmail": "it-admin@acme.example",
                 "protectedEmails": ["ceo@acme.example"]}
    }))
    .unwrap();
    ConnectorObject::from_resource(&resource)
}

fn access(requests: bool) -> AccessObject {
    let mut spec = serde_json::json!({
        "connectorRef": {"name": "acme"}, "policy": {"id": FINANCE}, "mode": "Additive",
        "members": [{"email": "alice@acme.example", "role": "user"}]
    });
    if requests {
        spec["requests"] = serde_json::json!({"maxDuration": "8h", "approvals": 0,
                                              "roles": ["user", "admin"]});
    }
    let resource: PolicyAccess = serde_json::from_value(serde_json::json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": "books", "namespace": "finance"}, "spec": spec
    }))
    .unwrap();
    AccessObject::from_resource(&resource)
}

fn request(email: &str, role: &str) -> RequestObject {
    let resource: AccessRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "r1", "namespace": "finance",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"accessRef": {"name": "books"}, "email": email, "role": role,
                 "duration": "4h", "reason": "month end", "requester": "alice@acme.example"}
    }))
    .unwrap();
    RequestObject::from_resource(&resource)
}

fn start_time() -> Timestamp {
    "2026-01-01T00:05:00Z".parse().unwrap()
}

async fn run(
    sim: &expensify_operator::simulator::SimulatorHandle,
    accesses: &[AccessObject],
    requests: &[RequestObject],
    now: Timestamp,
) -> SyncReport {
    run_approving(sim, accesses, requests, now, Approval::Merge).await
}

async fn run_approving(
    sim: &expensify_operator::simulator::SimulatorHandle,
    accesses: &[AccessObject],
    requests: &[RequestObject],
    now: Timestamp,
    approval: Approval<'_>,
) -> SyncReport {
    let connector = connector();
    let connectors = [connector.clone()];
    let request = SyncRequest {
        connector: &connector,
        connectors: &connectors,
        accesses,
        now,
        inventory_complete: true,
        scope: Scope::default(),
        unverified: &[],
        requests: Requests {
            requests,
            decisions: &[],
            approval,
        },
        dry_run: false,
        write_ahead: None,
        reviewed: None,
    };
    sync_connector(request, &admin_client(sim)).await
}

/// The request with the status a sync reported for it, as the store would save it.
fn saved(mut asked: RequestObject, report: &SyncReport) -> RequestObject {
    asked.status = report.request_statuses.get(&asked.key).cloned();
    asked
}

fn role_of(sim: &expensify_operator::simulator::SimulatorHandle, email: &str) -> Option<String> {
    roster(sim, FINANCE)
        .into_iter()
        .find(|(e, _)| e == email)
        .map(|(_, r)| r)
}

#[tokio::test]
async fn a8_a9_a_request_is_granted_then_taken_back_at_its_end() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let accesses = [access(true)];
    let asked = request("newcomer@acme.example", "user");

    let report = run(&sim, &accesses, std::slice::from_ref(&asked), start_time()).await;
    let status = &report.request_statuses[&asked.key];
    assert_eq!(status.phase, RequestPhase::Active, "{status:?}");
    assert_eq!(
        role_of(&sim, "newcomer@acme.example").as_deref(),
        Some("user")
    );
    assert_eq!(status.granted_at.as_ref().map(|t| t.0), Some(start_time()));
    let expires = start_time() + SignedDuration::from_hours(4);
    assert_eq!(status.expires_at.as_ref().map(|t| t.0), Some(expires));
    assert_eq!(status.managed_members.len(), 1, "{status:?}");
    assert_eq!(status.history.len(), 1);
    assert_eq!(report.next_expiry(), Some(expires));

    // Before its end: nothing moves.
    let asked = saved(asked, &report);
    let report = run(
        &sim,
        &accesses,
        std::slice::from_ref(&asked),
        expires - SignedDuration::from_mins(1),
    )
    .await;
    assert_eq!(
        report.request_statuses[&asked.key].phase,
        RequestPhase::Active
    );
    assert_eq!(
        role_of(&sim, "newcomer@acme.example").as_deref(),
        Some("user")
    );

    // At its end: Expired, and the person it added is removed.
    let asked = saved(asked, &report);
    let report = run(&sim, &accesses, std::slice::from_ref(&asked), expires).await;
    let status = &report.request_statuses[&asked.key];
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (RequestPhase::Expired, Some("Ended"))
    );
    assert!(status.managed_members.is_empty(), "{status:?}");
    assert_eq!(status.history.len(), 2);
    assert_eq!(roster(&sim, FINANCE), origin);
}

#[tokio::test]
async fn requests_that_must_not_be_granted_write_nothing() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let cases = [
        // The policy owner, the adminEmail, a protected person.
        (
            access(true),
            request("cfo@acme.example", "user"),
            "Protected",
        ),
        (
            access(true),
            request("it-admin@acme.example", "user"),
            "Protected",
        ),
        (
            access(true),
            request("ceo@acme.example", "user"),
            "Protected",
        ),
        // A role the rules do not offer, and a PolicyAccess that takes no requests.
        (
            access(true),
            request("newcomer@acme.example", "auditor"),
            "NotRequestable",
        ),
        (
            access(false),
            request("newcomer@acme.example", "user"),
            "NotRequestable",
        ),
    ];
    for (object, asked, reason) in cases {
        let report = run(&sim, &[object], std::slice::from_ref(&asked), start_time()).await;
        let status = &report.request_statuses[&asked.key];
        assert_eq!(
            (status.phase, status.reason.as_deref()),
            (RequestPhase::Error, Some(reason)),
            "{}: {status:?}",
            asked.spec.email
        );
        assert!(status.managed_members.is_empty());
        assert_eq!(roster(&sim, FINANCE), origin, "{}", asked.spec.email);
    }
}

#[tokio::test]
async fn a_request_deleted_early_takes_back_what_it_added_and_its_finalizer_may_go() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let accesses = [access(true)];
    let asked = request("newcomer@acme.example", "user");
    let report = run(&sim, &accesses, std::slice::from_ref(&asked), start_time()).await;
    assert_eq!(
        role_of(&sim, "newcomer@acme.example").as_deref(),
        Some("user")
    );
    let mut asked = saved(asked, &report);
    asked.deleting = true;
    let report = run(&sim, &accesses, std::slice::from_ref(&asked), start_time()).await;
    let status = &report.request_statuses[&asked.key];
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (RequestPhase::Revoked, Some("Deleted"))
    );
    assert!(status.managed_members.is_empty(), "{status:?}");
    assert_eq!(report.finished_request_deletions, vec![asked.key.clone()]);
    assert!(report.statuses.keys().all(|k| k.request_name().is_none()));
    assert_eq!(roster(&sim, FINANCE), origin);
}

#[tokio::test]
async fn a_request_for_someone_already_asked_for_grants_and_takes_nothing() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let accesses = [access(true)];
    // alice is a member of the PolicyAccess at user already.
    let asked = request("alice@acme.example", "user");
    let report = run(&sim, &accesses, std::slice::from_ref(&asked), start_time()).await;
    let status = &report.request_statuses[&asked.key];
    assert_eq!(status.phase, RequestPhase::Active);
    assert!(status.managed_members.is_empty(), "{status:?}");
    let expires = start_time() + SignedDuration::from_hours(4);
    let asked = saved(asked, &report);
    let report = run(&sim, &accesses, std::slice::from_ref(&asked), expires).await;
    assert_eq!(
        report.request_statuses[&asked.key].phase,
        RequestPhase::Expired
    );
    assert_eq!(roster(&sim, FINANCE), origin);
}

#[tokio::test]
async fn a_request_raises_a_member_and_its_end_gives_back_the_member_role() {
    let sim = start(&unlimited_seed()).await;
    let accesses = [access(true)];
    run(&sim, &accesses, &[], start_time()).await;
    assert_eq!(role_of(&sim, "alice@acme.example").as_deref(), Some("user"));
    let before = roster(&sim, FINANCE);

    let asked = request("alice@acme.example", "admin");
    let report = run(&sim, &accesses, std::slice::from_ref(&asked), start_time()).await;
    let status = &report.request_statuses[&asked.key];
    assert_eq!(status.phase, RequestPhase::Active, "{status:?}");
    assert_eq!(
        role_of(&sim, "alice@acme.example").as_deref(),
        Some("admin")
    );
    assert!(status.policy_name.is_some(), "{status:?}");
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Ready"),
        "{status:?}"
    );
    let books = report.statuses.values().next().unwrap();
    assert!(books.drift.is_empty(), "the raise is not drift: {books:?}");

    let expires = start_time() + SignedDuration::from_hours(4);
    let asked = saved(asked, &report);
    let report = run(&sim, &accesses, std::slice::from_ref(&asked), expires).await;
    let status = &report.request_statuses[&asked.key];
    assert_eq!(status.phase, RequestPhase::Expired);
    assert!(status.managed_members.is_empty(), "{status:?}");
    assert_eq!(roster(&sim, FINANCE), before);
}

#[tokio::test]
async fn a_pending_request_wakes_the_connector_at_its_pending_timeout() {
    let sim = start(&unlimited_seed()).await;
    let mut books = access(true);
    let rules = books.spec.requests.as_mut().unwrap();
    rules.approvals = Some(1);
    rules.pending_timeout = Some("2h".into());
    let accesses = [books];
    let asked = request("newcomer@acme.example", "user");
    let now = start_time();
    let report = run_approving(
        &sim,
        &accesses,
        std::slice::from_ref(&asked),
        now,
        Approval::Decisions(Ok(())),
    )
    .await;
    assert_eq!(
        report.request_statuses[&asked.key].phase,
        RequestPhase::Pending
    );
    let created: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        report.next_expiry(),
        Some(created + SignedDuration::from_hours(2))
    );
}
