//! review3: independent review findings on access requests through the real sync
//! against the simulator. These tests are expected to FAIL until the findings are fixed.

mod support;

use expensify_operator::api::{AccessRequest, ExpensifyConnector, PolicyAccess, RequestPhase};
use expensify_operator::reconcile::{
    AccessObject, Approval, ConnectorObject, RequestObject, Requests, Scope,
};
use expensify_operator::sync::{SyncReport, SyncRequest, sync_connector};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use support::*;

fn connector_with(extra: &serde_json::Value) -> ConnectorObject {
    let mut spec = serde_json::json!({
        "credentialsSecretRef": {"name": "creds"}, "adminEmail": "it-admin@acme.example",
        "protectedEmails": ["ceo@acme.example"]
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    let resource: ExpensifyConnector = serde_json::from_value(serde_json::json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": "finance"},
        "spec": spec
    }))
    .unwrap();
    ConnectorObject::from_resource(&resource)
}

fn access_in(namespace: &str, roles: &[&str]) -> AccessObject {
    let resource: PolicyAccess = serde_json::from_value(serde_json::json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": "books", "namespace": namespace},
        "spec": {
            "connectorRef": {"name": "acme", "namespace": "finance"},
            "policy": {"id": FINANCE}, "mode": "Additive",
            "members": [{"email": "alice@acme.example", "role": "user"}],
            "requests": {"maxDuration": "8h", "approvals": 0, "roles": roles}
        }
    }))
    .unwrap();
    AccessObject::from_resource(&resource)
}

fn request_in(namespace: &str, email: &str, role: &str) -> RequestObject {
    let resource: AccessRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "r1", "namespace": namespace,
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
    connector: &ConnectorObject,
    accesses: &[AccessObject],
    requests: &[RequestObject],
    now: Timestamp,
) -> SyncReport {
    let connectors = [connector.clone()];
    let request = SyncRequest {
        connector,
        connectors: &connectors,
        accesses,
        now,
        inventory_complete: true,
        scope: Scope::default(),
        unverified: &[],
        requests: Requests {
            requests,
            decisions: &[],
            approval: Approval::Merge,
        },
        dry_run: false,
        write_ahead: None,
        reviewed: None,
    };
    sync_connector(request, &admin_client(sim)).await
}

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

/// (c) A deleted PolicyAccess: an active request whose PolicyAccess is gone is skipped by
/// `sync::requests::judge` (no holder object, no verdict), so what it added is never taken
/// back, not even after its `expiresAt`, and its status stays `Active` for ever.
#[tokio::test]
async fn review3_an_active_request_whose_policy_access_is_gone_is_still_taken_back() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let connector = connector_with(&serde_json::json!({}));
    let accesses = [access_in("finance", &["user"])];
    let asked = request_in("finance", "newcomer@acme.example", "user");
    let report = run(
        &sim,
        &connector,
        &accesses,
        std::slice::from_ref(&asked),
        start_time(),
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

    // The PolicyAccess is deleted (e.g. deletionPolicy Orphan, or its release held by the
    // guard while its own finalizer went); well after the request's end:
    let asked = saved(asked, &report);
    let after_end = start_time() + SignedDuration::from_hours(5);
    let report = run(
        &sim,
        &connector,
        &[],
        std::slice::from_ref(&asked),
        after_end,
    )
    .await;
    let status = report.request_statuses.get(&asked.key);
    assert!(
        status.is_some_and(|s| s.phase != RequestPhase::Active),
        "the request is not judged any more: {status:?}"
    );
    assert_eq!(
        roster(&sim, FINANCE),
        origin,
        "the person the request added keeps access after its end"
    );
}

/// (b) Tenancy: a tenant namespace limited to `maxRole: user` whose PolicyAccess offers
/// `admin` through `spec.requests.roles`. The request must be refused (Error naming the
/// tenant rule) and nothing above `user` granted; nothing in `validate_request` or
/// `ineligible` checks the tenant's maxRole.
#[tokio::test]
async fn review3_a_request_above_the_tenants_max_role_is_refused() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let connector = connector_with(&serde_json::json!({
        "tenants": [{"namespace": "eng", "policies": [{"id": FINANCE}], "maxRole": "user"}]
    }));
    let accesses = [access_in("eng", &["user", "admin"])];
    let asked = request_in("eng", "newcomer@acme.example", "admin");
    let report = run(
        &sim,
        &connector,
        &accesses,
        std::slice::from_ref(&asked),
        start_time(),
    )
    .await;
    let status = &report.request_statuses[&asked.key];
    assert_ne!(
        role_of(&sim, "newcomer@acme.example").as_deref(),
        Some("admin"),
        "a tenant got a role above its maxRole through a request"
    );
    assert_eq!(
        status.phase,
        RequestPhase::Error,
        "a request above the tenant's maxRole must be Error, not {:?} ({:?}); roster {:?} (origin {:?})",
        status.phase,
        status.message,
        roster(&sim, FINANCE),
        origin
    );
}

/// (a) A request never extends itself: when its grant cannot land (here the tenant
/// refuses the role), the holder object is rebuilt every sync with `expiresAt = now +
/// duration`, so the request stays `Active` (asking) past any end it could have had.
#[tokio::test]
async fn review3_a_request_whose_grant_never_lands_does_not_stay_active_for_ever() {
    let sim = start(&unlimited_seed()).await;
    let connector = connector_with(&serde_json::json!({
        "tenants": [{"namespace": "eng", "policies": [{"id": FINANCE}], "maxRole": "user"}]
    }));
    let accesses = [access_in("eng", &["user", "admin"])];
    let asked = request_in("eng", "newcomer@acme.example", "admin");
    let report = run(
        &sim,
        &connector,
        &accesses,
        std::slice::from_ref(&asked),
        start_time(),
    )
    .await;
    let asked = saved(asked, &report);
    // A week later (the duration is 4h, maxDuration 8h):
    let later = start_time() + SignedDuration::from_hours(24 * 7);
    let report = run(
        &sim,
        &connector,
        &accesses,
        std::slice::from_ref(&asked),
        later,
    )
    .await;
    let status = &report.request_statuses[&asked.key];
    assert_ne!(
        status.phase,
        RequestPhase::Active,
        "a 4h request is still Active a week later: {status:?}"
    );
}
