//! The research file's acceptance checks A1–A10 (research/access-governance.md,
//! "Acceptance checks: A"), one named test each, as our contract (design.md, "Access
//! requests") realises them. Its words are other products': `AccessApproval` is our
//! `AccessDecision`, `requiredApprovals` is `approvals`, `pendingTTL` is `pendingTimeout`.
//! Admission checks evaluate the CEL the chart ships (`support::requests::admission`);
//! the controller's checks run through the real sync against the simulator on a fake
//! clock (`support::requests::World`), A10's Events on the API server double.

mod support;

use expensify_operator::api::{AccessRequest, PolicyAccess, RequestPhase};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use serde_json::{Value, json};
use support::apiserver::ApiServerDouble;
use support::requests::admission::{DECISIONS, Policy, REQUESTS, Verdict, spec_rules_refuse, user};
use support::requests::{
    Controller, Manifest, NAMESPACE, PROTECTED, Rules, World, access, create, create_connector,
    decision, delete_request, request, role_of, rules, start_time, wait_for_phase,
};
use support::*;

const PERSON: &str = "newcomer@acme.example";
const REQUESTER: &str = "lead@acme.example";
const CAROL: &str = "carol@acme.example";
const DAVE: &str = "dave@acme.example";

/// `books` on Finance with these request rules.
fn books(rules: Rules) -> Manifest {
    access("books").rules(rules)
}

/// `name`: the requester asks for [`PERSON`] on `books`, 4h.
fn ask(name: &str) -> Manifest {
    request(name, "books", PERSON).set("requester", REQUESTER)
}

fn listed(sim: &expensify_operator::simulator::SimulatorHandle, email: &str) -> bool {
    role_of(sim, email).is_some()
}

/// A1. A request whose `requester` is not the creating user is rejected at admission. Our
/// contract differs on an omitted `requester`: no mutating webhook fills it (the CLI does,
/// from `SelfSubjectReview`), so the same rule rejects it.
#[test]
fn a1_a_request_in_someone_elses_name_or_in_no_name_is_rejected_at_admission() {
    let policy = Policy::shipped(None);
    let mallory = user("mallory@acme.example", &["system:authenticated"]);
    let theirs = ask("r1").set("requester", "alice@acme.example");
    let verdict = policy.create(&mallory, REQUESTS, theirs.spec.clone());
    assert!(
        verdict.denied_with("spec.requester must be the user creating the request"),
        "{verdict:?}"
    );
    let alice = user("alice@acme.example", &[]);
    assert_eq!(
        policy.create(&alice, REQUESTS, theirs.spec.clone()),
        Verdict::Allowed
    );
    let nameless = theirs.set("requester", Value::Null);
    assert!(
        policy
            .create(&alice, REQUESTS, nameless.spec)
            .denied_with("spec.requester must be")
    );
}

/// A2. After creation the spec does not change: the CRD's CEL rule (`self == oldSelf`)
/// refuses an edit of the policy (`accessRef`), role, duration or reason, and of a
/// decision; the spec as it was passes.
#[test]
fn a2_a_request_cannot_be_edited_after_creation() {
    let old = ask("r1").set("role", "user").spec;
    let immutable = "spec is immutable: create a new request instead";
    assert!(spec_rules_refuse(REQUESTS, &old, &old).is_empty());
    for (field, value) in [
        ("accessRef", json!({"name": "other"})),
        ("role", json!("admin")),
        ("duration", json!("8h")),
        ("reason", json!("something else")),
    ] {
        let mut edited = old.clone();
        edited[field] = value;
        assert_eq!(
            spec_rules_refuse(REQUESTS, &old, &edited),
            [immutable],
            "{field}"
        );
    }
    let approve = decision("d1", "r1", "Approve", CAROL).spec;
    let deny = decision("d1", "r1", "Deny", CAROL).spec;
    assert_eq!(
        spec_rules_refuse(DECISIONS, &approve, &deny),
        ["spec is immutable: create a new decision instead"]
    );
}

/// A3. A request beyond its rules (a duration over `maxDuration`, a role they do not
/// offer, no reason where one is required) is refused naming the field. Our contract
/// checks the rules in the controller, not at admission (they live on the PolicyAccess);
/// there is no minimum duration but 1m and no reason pattern (both optional). Nothing is
/// written to Expensify.
#[tokio::test]
async fn a3_a_request_beyond_its_rules_is_refused_naming_the_field() {
    let sim = start(&unlimited_seed()).await;
    let self_service = books(rules("8h").approvals(0));
    let cases = [
        (ask("r1").set("duration", "9h"), "spec.duration"),
        (ask("r1").set("role", "admin"), "spec.role"),
        (ask("r1").set("reason", Value::Null), "spec.reason"),
    ];
    for (asked, field) in cases {
        let mut world = World::new(std::slice::from_ref(&self_service), &[asked]).deciding();
        world.sync(&sim, start_time()).await;
        let status = world.status("r1");
        assert_eq!(
            (status.phase, status.reason.as_deref()),
            (RequestPhase::Error, Some("NotRequestable")),
            "{field}"
        );
        let message = status.message.unwrap_or_default();
        assert!(message.contains(field), "{field}: {message}");
    }
    assert_eq!(updates(&sim), 0);
    assert!(!listed(&sim, PERSON));
}

/// A4. A decision whose `decidedBy` is not the creating user is rejected at admission; one
/// from the requester or from someone who is no approver passes admission (it is in their
/// own name) and the controller does not count it, saying why.
#[tokio::test]
async fn a4_a_decision_from_the_requester_a_non_approver_or_in_another_name_does_not_count() {
    let policy = Policy::shipped(None);
    let mallory = user("mallory@acme.example", &[]);
    assert!(
        policy
            .create(
                &mallory,
                DECISIONS,
                decision("d0", "r1", "Approve", CAROL).spec
            )
            .denied_with("spec.decidedBy must be the user creating the decision")
    );

    let sim = start(&unlimited_seed()).await;
    let mut world = World::new(&[books(rules("8h").approvers(&[CAROL]))], &[ask("r1")]).deciding();
    world.decide(&decision("d1", "r1", "Approve", REQUESTER));
    world.decide(&decision("d2", "r1", "Approve", "mallory@acme.example"));
    let report = world.sync(&sim, start_time()).await;
    let said = |name: &str| {
        let key = expensify_operator::reconcile::ObjectKey::new(NAMESPACE, name);
        let status = &report.decision_statuses[&key];
        (status.counted, status.message.clone().unwrap_or_default())
    };
    assert_eq!(
        said("d1"),
        (
            Some(false),
            "lead@acme.example made the request and cannot decide it".into()
        )
    );
    assert_eq!(
        said("d2"),
        (
            Some(false),
            "mallory@acme.example is not one of the approvers".into()
        )
    );
    assert_eq!(world.status("r1").phase, RequestPhase::Pending);
    assert_eq!(updates(&sim), 0);
}

/// A5. With `approvals: 2`, one approval leaves the request Pending and makes no
/// Expensify write; the same approver again counts once; a second distinct approver
/// grants it.
#[tokio::test]
async fn a5_two_distinct_approvers_grant_and_one_or_a_duplicate_do_not() {
    let sim = start(&unlimited_seed()).await;
    let two = rules("8h").approvals(2).approvers(&[CAROL, DAVE]);
    let mut world = World::new(&[books(two)], &[ask("r1")]).deciding();
    world.decide(&decision("d1", "r1", "Approve", CAROL));
    world.sync(&sim, start_time()).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Pending);
    assert_eq!(updates(&sim), 0, "no Expensify write");

    world.decide(&decision("d2", "r1", "Approve", CAROL));
    let report = world.sync(&sim, start_time()).await;
    let status = world.status("r1");
    assert_eq!(
        (status.phase, status.approvals.len()),
        (RequestPhase::Pending, 1)
    );
    let duplicate = &report.decision_statuses[&world.decisions[1].key];
    assert_eq!(duplicate.counted, Some(false));
    assert_eq!(updates(&sim), 0, "no Expensify write");

    world.decide(&decision("d3", "r1", "Approve", DAVE));
    world.sync(&sim, start_time()).await;
    let status = world.status("r1");
    assert_eq!(status.phase, RequestPhase::Active, "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("Approved"));
    assert_eq!(role_of(&sim, PERSON).as_deref(), Some("user"));
}

/// A6. One valid Deny makes the request Denied, for good: approvals after it are not
/// counted and nothing is granted.
#[tokio::test]
async fn a6_one_deny_is_final_and_later_approvals_are_ignored() {
    let sim = start(&unlimited_seed()).await;
    let mut world = World::new(
        &[books(rules("8h").approvers(&[CAROL, DAVE]))],
        &[ask("r1")],
    )
    .deciding();
    world.decide(&decision("d1", "r1", "Deny", CAROL));
    world.sync(&sim, start_time()).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Denied);

    world.decide(&decision("d2", "r1", "Approve", DAVE));
    let report = world
        .sync(&sim, start_time() + SignedDuration::from_mins(1))
        .await;
    let status = world.status("r1");
    assert_eq!(status.phase, RequestPhase::Denied);
    assert_eq!(status.denial.map(|d| d.by).as_deref(), Some(CAROL));
    let later = &report.decision_statuses[&world.decisions[1].key];
    assert_eq!(
        (later.counted, later.message.as_deref()),
        (Some(false), Some("the request is already Denied"))
    );
    assert!(!listed(&sim, PERSON));
    assert_eq!(updates(&sim), 0);
}

/// A7. A request still Pending after `pendingTimeout` becomes Expired (`NotApproved`) and
/// nothing is granted, not even by an approval after that.
#[tokio::test]
async fn a7_a_request_pending_past_its_timeout_expires_and_nothing_is_granted() {
    let sim = start(&unlimited_seed()).await;
    let two_hours = rules("8h").approvers(&[CAROL]).pending_timeout("2h");
    let mut world = World::new(&[books(two_hours)], &[ask("r1")]).deciding();
    let created: Timestamp = support::requests::CREATED.parse().unwrap();
    world
        .sync(&sim, created + SignedDuration::from_mins(119))
        .await;
    assert_eq!(world.status("r1").phase, RequestPhase::Pending);
    world
        .sync(&sim, created + SignedDuration::from_hours(2))
        .await;
    let status = world.status("r1");
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (RequestPhase::Expired, Some("NotApproved"))
    );
    world.decide(&decision("d1", "r1", "Approve", CAROL));
    world
        .sync(&sim, created + SignedDuration::from_hours(3))
        .await;
    assert_eq!(world.status("r1").phase, RequestPhase::Expired);
    assert!(!listed(&sim, PERSON));
    assert_eq!(updates(&sim), 0);
}

/// A8. A grant is exactly one employee-updater call; its ledger entry is held in the
/// request's own status; `expiresAt = grantedAt + duration`. Another reconcile at the
/// same moment changes nothing and calls no updater.
#[tokio::test]
async fn a8_a_grant_is_one_updater_call_with_its_ledger_entry_and_a_second_reconcile_changes_nothing()
 {
    let sim = start(&unlimited_seed()).await;
    let mut world = World::new(&[books(rules("8h").approvals(0))], &[ask("r1")]).deciding();
    world.sync(&sim, start_time()).await;
    assert_eq!(updates(&sim), 1, "one employee-updater call");
    let status = world.status("r1");
    assert_eq!(status.phase, RequestPhase::Active);
    let entries: Vec<(&str, &str, bool)> = status
        .managed_members
        .iter()
        .map(|e| (e.email.as_str(), e.policy_id.as_str(), e.added))
        .collect();
    assert_eq!(entries, [(PERSON, FINANCE, true)], "{status:?}");
    let granted = status.granted_at.clone().unwrap().0;
    assert_eq!(granted, start_time());
    assert_eq!(
        status.expires_at.clone().map(|t| t.0),
        Some(granted + SignedDuration::from_hours(4))
    );

    let roster_after_grant = roster(&sim, FINANCE);
    world.sync(&sim, start_time()).await;
    assert_eq!(updates(&sim), 1, "the second reconcile wrote nothing");
    let again = world.status("r1");
    assert_eq!(
        (
            again.phase,
            &again.granted_at,
            &again.expires_at,
            &again.managed_members,
            again.history.len()
        ),
        (
            status.phase,
            &status.granted_at,
            &status.expires_at,
            &status.managed_members,
            status.history.len()
        )
    );
    assert_eq!(roster(&sim, FINANCE), roster_after_grant);
}

/// A9 (AWS TEAM #279). Two overlapping requests for one person: when the first ends it is
/// Expired (not Revoked) and the person keeps access, since the second still holds it;
/// when the second ends, the person is removed and Finance is as it started. A request
/// for a protected person is never granted, so never taken either.
#[tokio::test]
async fn a9_the_first_of_two_overlapping_requests_to_end_takes_nothing_away() {
    let sim = start(&unlimited_seed()).await;
    let origin = roster(&sim, FINANCE);
    let mut world = World::new(
        &[books(rules("8h").approvals(0))],
        &[
            ask("r1"),
            ask("r2").set("duration", "8h"),
            request("r3", "books", PROTECTED).set("requester", REQUESTER),
        ],
    )
    .deciding();
    world.sync(&sim, start_time()).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Active);
    assert_eq!(world.status("r2").phase, RequestPhase::Active);
    assert_eq!(world.status("r3").reason.as_deref(), Some("Protected"));
    assert!(listed(&sim, PERSON));

    world
        .sync(&sim, start_time() + SignedDuration::from_hours(4))
        .await;
    let first = world.status("r1");
    assert_eq!(
        (first.phase, first.reason.as_deref()),
        (RequestPhase::Expired, Some("Ended"))
    );
    assert!(first.managed_members.is_empty(), "{first:?}");
    assert_eq!(world.status("r2").phase, RequestPhase::Active);
    assert!(
        listed(&sim, PERSON),
        "the second request still holds access"
    );
    assert!(!world.status("r2").managed_members.is_empty(), "handed off");

    world
        .sync(&sim, start_time() + SignedDuration::from_hours(8))
        .await;
    assert_eq!(world.status("r2").phase, RequestPhase::Expired);
    assert_eq!(
        roster(&sim, FINANCE),
        origin,
        "the protected person untouched too"
    );
}

/// A10. Eligibility lost before the grant: the rules stop offering the role while the
/// request waits, then an approval arrives; nothing is granted, the request is an Error
/// naming why, and the approval did not count.
#[tokio::test]
async fn a10_eligibility_lost_before_the_grant_grants_nothing() {
    let sim = start(&unlimited_seed()).await;
    let offering = |roles: &[&str]| books(rules("8h").approvers(&[CAROL]).roles(roles));
    let admin = ask("r1").set("role", "admin");
    let mut world = World::new(&[offering(&["user", "admin"])], &[admin]).deciding();
    world.sync(&sim, start_time()).await;
    assert_eq!(world.status("r1").phase, RequestPhase::Pending);

    world.accesses = vec![offering(&["user"]).access_object()];
    world.decide(&decision("d1", "r1", "Approve", CAROL));
    let report = world.sync(&sim, start_time()).await;
    let status = world.status("r1");
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (RequestPhase::Error, Some("NotRequestable"))
    );
    assert!(status.message.unwrap_or_default().contains("spec.role"));
    let approval = report.decision_statuses.get(&world.decisions[0].key);
    assert_eq!(
        approval.and_then(|s| s.counted),
        Some(false),
        "{approval:?}"
    );
    assert!(!listed(&sim, PERSON));
    assert_eq!(updates(&sim), 0);
}

/// A10. The audit Events outlive the request: after it is deleted, the Events about it
/// are still listed in its namespace, and none is owned by it (the garbage collector
/// would take an owned one with it).
#[tokio::test(flavor = "multi_thread")]
async fn a10_the_audit_events_outlive_the_deleted_request() {
    let double = ApiServerDouble::start().await;
    let sim = start(&unlimited_seed()).await;
    let controller = Controller::start(&double, &sim, Some(Ok(())));
    let client = double.client();
    create_connector(&client, &sim).await;
    create::<PolicyAccess>(&client, &books(rules("8h").approvals(0)).json()).await;
    create::<AccessRequest>(&client, &ask("r1").json()).await;
    wait_for_phase(&client, "r1", RequestPhase::Active).await;
    delete_request(&client, "r1").await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap();
    let about: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("r1"))
        .collect();
    let reasons: Vec<&str> = about.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert!(reasons.contains(&"RequestActive"), "{reasons:?}");
    assert!(reasons.contains(&"RequestRevoked"), "{reasons:?}");
    assert!(
        about.iter().all(|e| e
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)),
        "{about:?}"
    );
    controller.stop().await;
}
