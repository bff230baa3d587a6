//! review3: independent review findings on access requests through the real sync
//! against the simulator (each failed before its fix).

mod support;

use expensify_operator::api::RequestPhase;
use k8s_openapi::jiff::SignedDuration;
use support::requests::{Manifest, World, access, connector, request, role_of, rules, start_time};
use support::*;

/// A connector whose tenant namespace `eng` may touch Finance at `user` at most.
fn tenant_connector() -> Manifest {
    connector().set(
        "tenants",
        serde_json::json!([{"namespace": "eng", "policies": [{"id": FINANCE}], "maxRole": "user"}]),
    )
}

/// `books` in `namespace` (alice listed), self-service for `roles`.
fn books_in(namespace: &str, roles: &[&str]) -> Manifest {
    access("books")
        .in_namespace(namespace)
        .member("alice@acme.example", "user")
        .rules(rules("8h").approvals(0).roles(roles))
}

fn asked_in(namespace: &str, email: &str, role: &str) -> Manifest {
    request("r1", "books", email)
        .in_namespace(namespace)
        .set("role", role)
        .set("requester", "alice@acme.example")
}

/// (c) A deleted PolicyAccess: an active request whose PolicyAccess is gone is skipped by
/// `sync::requests::judge` (no holder object, no verdict), so what it added is never taken
/// back, not even after its `expiresAt`, and its status stays `Active` for ever.
#[tokio::test]
async fn review3_an_active_request_whose_policy_access_is_gone_is_still_taken_back() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let mut world = World::new(
        &[books_in("finance", &["user"])],
        &[asked_in("finance", "newcomer@acme.example", "user")],
    );
    world.sync(&sim, start_time()).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Active);
    assert_eq!(
        role_of(&sim, "newcomer@acme.example").as_deref(),
        Some("user")
    );

    // The PolicyAccess is deleted (e.g. deletionPolicy Orphan, or its release held by the
    // guard while its own finalizer went); well after the request's end:
    world.accesses.clear();
    let report = world
        .sync(&sim, start_time() + SignedDuration::from_hours(5))
        .await;
    let status = report.request_statuses.get(&world.request("r1").key);
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
/// tenant rule) and nothing above `user` granted.
#[tokio::test]
async fn review3_a_request_above_the_tenants_max_role_is_refused() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let mut world = World::new(
        &[books_in("eng", &["user", "admin"])],
        &[asked_in("eng", "newcomer@acme.example", "admin")],
    )
    .through(&tenant_connector());
    world.sync(&sim, start_time()).await;
    let status = world.status("r1");
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
    let mut world = World::new(
        &[books_in("eng", &["user", "admin"])],
        &[asked_in("eng", "newcomer@acme.example", "admin")],
    )
    .through(&tenant_connector());
    world.sync(&sim, start_time()).await;
    // A week later (the duration is 4h, maxDuration 8h):
    world
        .sync(&sim, start_time() + SignedDuration::from_hours(24 * 7))
        .await;
    let status = world.status("r1");
    assert_ne!(
        status.phase,
        RequestPhase::Active,
        "a 4h request is still Active a week later: {status:?}"
    );
}
