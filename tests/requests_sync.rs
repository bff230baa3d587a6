//! Access requests through the real sync against the simulator: a request is granted,
//! its clock starts when the re-read shows the grant, and at its end exactly what it
//! added is taken back; requests that must not be granted write nothing.

mod support;

use expensify_operator::api::RequestPhase;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use support::requests::{Manifest, World, access, request, role_of, rules, start_time};
use support::*;

/// `books`: alice listed at user; with `requests`, self-service for user and admin.
fn books(requests: bool) -> Manifest {
    let books = access("books").member("alice@acme.example", "user");
    if requests {
        books.rules(rules("8h").approvals(0).roles(&["user", "admin"]))
    } else {
        books
    }
}

/// `email` asks alice's way (she is the requester) for `role` on `books`.
fn asked(email: &str, role: &str) -> Manifest {
    request("r1", "books", email)
        .set("role", role)
        .set("requester", "alice@acme.example")
}

#[tokio::test]
async fn a8_a9_a_request_is_granted_then_taken_back_at_its_end() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let mut world = World::new(&[books(true)], &[asked("newcomer@acme.example", "user")]);

    let report = world.sync(&sim, start_time()).await;
    let status = world.status("r1");
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
    world
        .sync(&sim, expires - SignedDuration::from_mins(1))
        .await;
    assert_eq!(world.status("r1").phase, RequestPhase::Active);
    assert_eq!(
        role_of(&sim, "newcomer@acme.example").as_deref(),
        Some("user")
    );

    // At its end: Expired, and the person it added is removed.
    world.sync(&sim, expires).await;
    let status = world.status("r1");
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
        (books(true), asked("cfo@acme.example", "user"), "Protected"),
        (
            books(true),
            asked("it-admin@acme.example", "user"),
            "Protected",
        ),
        (books(true), asked("ceo@acme.example", "user"), "Protected"),
        // A role the rules do not offer, and a PolicyAccess that takes no requests.
        (
            books(true),
            asked("newcomer@acme.example", "auditor"),
            "NotRequestable",
        ),
        (
            books(false),
            asked("newcomer@acme.example", "user"),
            "NotRequestable",
        ),
        // A PolicyAccess that does not exist: judged by the connector that answers the
        // namespace (here the only one), never left without a status.
        (
            books(true),
            request("r1", "nowhere", "newcomer@acme.example"),
            "NotRequestable",
        ),
    ];
    for (object, asked, reason) in cases {
        let mut world = World::new(&[object], std::slice::from_ref(&asked));
        world.sync(&sim, start_time()).await;
        let status = world.status("r1");
        assert_eq!(
            (status.phase, status.reason.as_deref()),
            (RequestPhase::Error, Some(reason)),
            "{}: {status:?}",
            asked.spec["email"]
        );
        assert!(status.managed_members.is_empty());
        assert_eq!(roster(&sim, FINANCE), origin, "{}", asked.spec["email"]);
    }
}

#[tokio::test]
async fn a_request_deleted_early_takes_back_what_it_added_and_its_finalizer_may_go() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let mut world = World::new(&[books(true)], &[asked("newcomer@acme.example", "user")]);
    world.sync(&sim, start_time()).await;
    assert_eq!(
        role_of(&sim, "newcomer@acme.example").as_deref(),
        Some("user")
    );
    world.request_mut("r1").deleting = true;
    let report = world.sync(&sim, start_time()).await;
    let status = world.status("r1");
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (RequestPhase::Revoked, Some("Deleted"))
    );
    assert!(status.managed_members.is_empty(), "{status:?}");
    assert_eq!(
        report.finished_request_deletions,
        vec![world.request("r1").key.clone()]
    );
    assert!(report.statuses.keys().all(|k| k.request_name().is_none()));
    assert_eq!(roster(&sim, FINANCE), origin);
}

#[tokio::test]
async fn a_request_for_someone_already_asked_for_grants_and_takes_nothing() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    // alice is a member of the PolicyAccess at user already.
    let mut world = World::new(&[books(true)], &[asked("alice@acme.example", "user")]);
    world.sync(&sim, start_time()).await;
    let status = world.status("r1");
    assert_eq!(status.phase, RequestPhase::Active);
    assert!(status.managed_members.is_empty(), "{status:?}");
    let expires = start_time() + SignedDuration::from_hours(4);
    world.sync(&sim, expires).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Expired);
    assert_eq!(roster(&sim, FINANCE), origin);
}

#[tokio::test]
async fn a_request_raises_a_member_and_its_end_gives_back_the_member_role() {
    let sim = start(&unlimited_seed()).await;
    let mut world = World::new(&[books(true)], &[]);
    world.sync(&sim, start_time()).await;
    assert_eq!(role_of(&sim, "alice@acme.example").as_deref(), Some("user"));
    let before = roster(&sim, FINANCE);

    world.requests = vec![asked("alice@acme.example", "admin").request_object()];
    let report = world.sync(&sim, start_time()).await;
    let status = world.status("r1");
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
    world.sync(&sim, expires).await;
    let status = world.status("r1");
    assert_eq!(status.phase, RequestPhase::Expired);
    assert!(status.managed_members.is_empty(), "{status:?}");
    assert_eq!(roster(&sim, FINANCE), before);
}

#[tokio::test]
async fn a_pending_request_wakes_the_connector_at_its_pending_timeout() {
    let sim = start(&unlimited_seed()).await;
    let books = books(false).rules(
        rules("8h")
            .approvals(1)
            .roles(&["user", "admin"])
            .pending_timeout("2h"),
    );
    let mut world = World::new(&[books], &[asked("newcomer@acme.example", "user")]).deciding();
    let report = world.sync(&sim, start_time()).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Pending);
    let created: Timestamp = support::requests::CREATED.parse().unwrap();
    assert_eq!(
        report.next_expiry(),
        Some(created + SignedDuration::from_hours(2))
    );
}

/// bob is on Finance at user by hand; an ObserveOnly PolicyAccess lists him at user (it
/// writes nothing). r1 raises him to admin for 1h. At r1's end nobody asks for admin: he
/// goes back to user; the raise is not handed to the observer to live on while it lists
/// him. (Found by review 5.)
#[tokio::test]
async fn a_request_raise_ends_even_when_an_observe_only_object_lists_the_person() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let email = "bob@acme.example";
    let books = access("books").rules(rules("8h").approvals(0).roles(&["user", "admin"]));
    let watch = access("watch")
        .set("mode", "ObserveOnly")
        .member(email, "user");
    let raise = request("r1", "books", email)
        .set("role", "admin")
        .set("duration", "1h")
        .set("requester", "alice@acme.example");
    let mut world = World::new(&[books, watch], &[raise]);
    world.sync(&sim, start_time()).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Active);
    assert_eq!(role_of(&sim, email).as_deref(), Some("admin"));

    let end = start_time() + SignedDuration::from_hours(1);
    world.sync(&sim, end).await;
    world.sync(&sim, end + SignedDuration::from_mins(1)).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Expired);
    assert_eq!(
        role_of(&sim, email).as_deref(),
        Some("user"),
        "r1={:?} watch={:?}",
        world.status("r1"),
        world.accesses[1].status
    );
    assert_eq!(roster(&sim, FINANCE), origin);
}
