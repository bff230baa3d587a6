//! Objects that keep a person but write nothing (ObserveOnly, suspended, Blocked): what
//! they keep of a role the operator set for a claim that ended, who holds the entry, and
//! the rules every such lowering obeys. Found by an independent review of the lowering.

use super::ledger_rules::{entry, key};
use super::precedence::{ended, request, role_of, step_with};
use super::tenancy::{ENG, id, in_namespace, tenant_connector};
use super::*;

const X: &str = "x@acme.example";
const Y: &str = "y@acme.example";

fn engineering_connector(max_role: &str) -> ConnectorObject {
    tenant_connector(&[id("P1")], Some(max_role))
}

fn in_engineering(object: AccessObject) -> AccessObject {
    in_namespace(object, ENG)
}

/// `letting_go` (names in the connector's namespace) stop listing anyone, and every
/// object of the tenant namespace is suspended.
/// `a`, which no longer asks for anyone, holding `entry`: a claim that ended.
fn let_go_of(entry: ManagedMember) -> AccessObject {
    holding(access("a", AccessMode::Additive, vec![]), vec![entry])
}

/// `object` being deleted with `deletionPolicy: Orphan`.
fn orphaned(mut object: AccessObject) -> AccessObject {
    object.spec.deletion_policy = DeletionPolicy::Orphan;
    object.deleting = true;
    object
}

fn let_go_and_suspend_the_tenant(objects: &mut [AccessObject], letting_go: &[&str]) {
    for object in objects {
        if letting_go.iter().any(|name| object.key == key(name)) {
            object.spec.members.clear();
        }
        if object.key.namespace == ENG {
            object.spec.suspend = true;
        }
    }
}

/// An Orphan deletion writes nothing (contract, "Orphan"), even where an ObserveOnly
/// object lists the person below the role its entry set: the entry is dropped, not
/// lowered (review of the lowering, F-A).
#[test]
fn an_orphan_deletion_of_an_added_person_writes_nothing() {
    let world = finance(&[(X, "admin")]);
    let gone = orphaned(let_go_of(entry(X, true, None, "admin")));
    let observer = access("o", AccessMode::ObserveOnly, vec![member(X, "user")]);
    let plan = run(&connector(), &[gone, observer], &world);
    assert!(
        plan.changes.is_empty(),
        "an Orphan deletion wrote: {:?}",
        plan.changes
    );
}

/// The same for a raise of someone who was there before (before the lowering this was
/// already a write: a full set-back).
#[test]
fn an_orphan_deletion_of_a_raise_writes_nothing() {
    let world = finance(&[(X, "admin")]);
    let gone = orphaned(let_go_of(entry(X, false, Some("user"), "admin")));
    let observer = access("o", AccessMode::ObserveOnly, vec![member(X, "auditor")]);
    let plan = run(&connector(), &[gone, observer], &world);
    assert!(
        plan.changes.is_empty(),
        "an Orphan deletion wrote: {:?}",
        plan.changes
    );
}

/// The lowered entry goes to an object that lists the role kept, never to the first
/// asker by key: a tenant object whose namespace may grant only `user` never holds an
/// entry at `auditor` (review F-B).
#[test]
fn a_lowered_entry_goes_to_an_object_that_lists_the_role() {
    let connector = engineering_connector("user");
    let mut world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access(
        "t",
        AccessMode::ObserveOnly,
        vec![member(X, "user")],
    ));
    let o = access("o", AccessMode::ObserveOnly, vec![member(X, "auditor")]);
    let mut objects = vec![a, t, o];
    let plan = step_with(&connector, &mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::Auditor))]
    );
    let t_ledger = plan.objects[&ObjectKey::new(ENG, "t")].write_ahead_ledger();
    let o_ledger = plan.objects[&key("o")].write_ahead_ledger();
    assert!(
        t_ledger.is_empty() && o_ledger.len() == 1,
        "the auditor entry went to the tenant (maxRole user): t {t_ledger:?}, o {o_ledger:?}"
    );
}

/// What F-B would have led to: o stops listing X and the tenant object is suspended; only
/// `user` is asked, so X must not stay auditor while t is suspended.
#[test]
fn a_frozen_tenant_never_keeps_a_role_above_its_max_role() {
    let connector = engineering_connector("user");
    let mut world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access(
        "t",
        AccessMode::ObserveOnly,
        vec![member(X, "user")],
    ));
    let o = access("o", AccessMode::ObserveOnly, vec![member(X, "auditor")]);
    let mut objects = vec![a, t, o];
    step_with(&connector, &mut objects, &mut world);
    step_with(&connector, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("auditor"));
    // o lets go, t is suspended.
    let_go_and_suspend_the_tenant(&mut objects, &["o"]);
    step_with(&connector, &mut objects, &mut world);
    step_with(&connector, &mut objects, &mut world);
    assert_eq!(
        role_of(&world, X).as_deref(),
        Some("user"),
        "nobody asks auditor any more; the tenant (maxRole user) keeps it frozen"
    );
}

/// A request's raise over an entry an ObserveOnly object holds moves the entry to the
/// request, so its end is the request's own take-back: the log line, Event, `lastPlan`
/// and the guard's count never land on the observer for a person it lists (review F-C).
#[test]
fn a_request_s_end_is_its_own_take_back_never_an_observer_s_write() {
    let mut world = finance(&[]);
    let team = access("a", AccessMode::Additive, vec![member(X, "user")]);
    let observer = access("o", AccessMode::ObserveOnly, vec![member(X, "user")]);
    let mut objects = vec![team, observer];
    let c = connector();
    step_with(&c, &mut objects, &mut world);
    step_with(&c, &mut objects, &mut world);
    // a lets go: the entry is handed to the observer.
    objects[0].spec.members.clear();
    step_with(&c, &mut objects, &mut world);
    assert_eq!(plan_holder(&run(&c, &objects, &world)), Some(key("o")));
    objects.push(request("r1", X, "admin"));
    let plan = step_with(&c, &mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::Admin))]
    );
    step_with(&c, &mut objects, &mut world);
    let last = objects.len() - 1;
    objects[last] = ended(&objects[last]);
    let plan = step_with(&c, &mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::User))]
    );
    assert_ne!(
        plan.changes[0].requested_by,
        key("o"),
        "the ObserveOnly object o wrote a demotion for a person it lists: {:?}",
        plan.changes[0]
    );
}

fn plan_holder(plan: &Plan) -> Option<ObjectKey> {
    plan.objects
        .iter()
        .find(|(_, o)| o.write_ahead_ledger().iter().any(|e| e.email == X))
        .map(|(k, _)| k.clone())
}

/// A request's raise over an entry a suspended object holds moves the entry to the
/// request: at its end the raise comes down to what the suspended object lists, instead
/// of staying frozen in that object's entry for as long as it is suspended (review F-D).
#[test]
fn a_request_s_raise_over_a_suspended_holder_ends_with_the_request() {
    let mut world = finance(&[]);
    let team = access("a", AccessMode::Additive, vec![member(X, "user")]);
    let mut objects = vec![team];
    let c = connector();
    step_with(&c, &mut objects, &mut world);
    step_with(&c, &mut objects, &mut world);
    objects[0].spec.suspend = true;
    step_with(&c, &mut objects, &mut world);
    objects.push(request("r1", X, "admin"));
    step_with(&c, &mut objects, &mut world);
    step_with(&c, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("admin"));
    objects[1] = ended(&objects[1]);
    step_with(&c, &mut objects, &mut world);
    step_with(&c, &mut objects, &mut world);
    assert_eq!(
        role_of(&world, X).as_deref(),
        Some("user"),
        "the request ended but its admin raise stays (frozen in the suspended object's entry)"
    );
}

/// The guard counts a lowering, holds it with its keeper's entry, and the old entry stays.
#[test]
fn the_guard_counts_a_lowering_and_holds_it_with_the_keeper_s_entry() {
    let mut c = connector();
    c.spec.max_revocations_per_sync = 0;
    let world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let o = access("o", AccessMode::ObserveOnly, vec![member(X, "user")]);
    let plan = run(&c, &[a, o], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert_eq!(plan.objects[&key("a")].write_ahead_ledger().len(), 1);
    assert!(plan.objects[&key("o")].write_ahead_ledger().is_empty());
    assert!(plan.objects[&key("a")].held.contains(&X.to_string()));
}

/// A crash after the write-ahead (or a failed write): the next sync keeps the copy
/// Expensify still shows (the holder's), drops the keeper's unlanded one and plans the
/// same lowering again; once it lands the holder holds nothing.
#[test]
fn two_copies_of_a_lowered_entry_resolve_to_one_after_a_failed_write() {
    let c = connector();
    let world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let o = access("o", AccessMode::ObserveOnly, vec![member(X, "user")]);
    let objects = vec![a, o];
    let first = run(&c, &objects, &world);
    // Saved, not written.
    let objects = with_status(&objects, &first, &world);
    assert_eq!(objects[0].ledger_entries().len(), 1);
    assert_eq!(objects[1].ledger_entries().len(), 1);
    let second = run(&c, &objects, &world);
    assert_eq!(changes(&second), changes(&first));
    assert_eq!(second.objects[&key("a")].ledger.len(), 1);
    assert!(second.objects[&key("o")].ledger.is_empty());
    assert_eq!(second.objects[&key("o")].new_entries.len(), 1);
    let after = apply(&world, &second);
    let objects = with_status(&objects, &second, &after);
    let third = run(&c, &objects, &after);
    assert!(third.changes.is_empty(), "{:?}", third.changes);
    assert!(third.objects[&key("a")].ledger.is_empty());
    assert_eq!(third.objects[&key("o")].ledger.len(), 1);
    assert!(!third.objects[&key("o")].ledger[0].pending);
    // And when o lets go, x is revoked: back to where it started.
    let mut objects = with_status(&objects, &third, &after);
    objects[1].spec.members.clear();
    let fourth = run(&c, &objects, &after);
    assert_eq!(changes(&fourth), [(ChangeKind::Revoke, X.into(), None)]);
}

/// A tenant object that may not touch the policy, or is closed out, keeps nobody: the
/// added person is revoked, not lowered to what it lists; an entry on a policy another
/// connector governs is left alone.
#[test]
fn objects_a_tenant_may_not_touch_keep_nobody() {
    let world = finance(&[(X, "admin")]);
    let granted = || let_go_of(entry(X, true, None, "admin"));
    // Not granted P1.
    let mut tenancy = engineering_connector("admin");
    tenancy.spec.tenants[0].policies = vec![PolicySelector {
        id: Some("P9".into()),
        name: None,
    }];
    let tenant = in_engineering(access(
        "t",
        AccessMode::ObserveOnly,
        vec![member(X, "user")],
    ));
    let plan = run(&tenancy, &[granted(), tenant.clone()], &world);
    assert_eq!(changes(&plan), [(ChangeKind::Revoke, X.into(), None)]);
    // maxRole user, lists auditor: Forbidden.
    let tenancy = engineering_connector("user");
    let over_max_role = in_engineering(access(
        "t",
        AccessMode::ObserveOnly,
        vec![member(X, "auditor")],
    ));
    let plan = run(&tenancy, &[granted(), over_max_role], &world);
    assert_eq!(changes(&plan), [(ChangeKind::Revoke, X.into(), None)]);
    // Closed out by an Authoritative governor of finance.
    let tenancy = engineering_connector("admin");
    let governor = access("g", AccessMode::Authoritative, vec![member(ADMIN, "admin")]);
    let closed_out = in_engineering(access(
        "t",
        AccessMode::ObserveOnly,
        vec![member(X, "user")],
    ));
    let plan = run(&tenancy, &[granted(), governor, closed_out], &world);
    assert!(
        changes(&plan).contains(&(ChangeKind::Revoke, X.into(), None)),
        "{:?}",
        changes(&plan)
    );
    // Entry stamped by another connector that governs P1: left alone.
    let mut foreign = entry(X, true, None, "admin");
    foreign.connector = Some("finance/other".into());
    let other = holding(access("b", AccessMode::Additive, vec![]), vec![foreign]);
    let mut other = other;
    other.spec.connector_ref.name = "other".into();
    other.created = Some("2020-01-01T00:00:00Z".parse().unwrap());
    let observer = access("o", AccessMode::ObserveOnly, vec![member(X, "user")]);
    let mut mine = let_go_of(entry(X, true, None, "admin"));
    mine.created = Some("2025-01-01T00:00:00Z".parse().unwrap());
    let plan = run(&connector(), &[other, mine, observer], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
}

/// A broken tenant object on a policy it may not touch does not hold the lowering; a
/// broken object on the policy does.
#[test]
fn a_broken_object_elsewhere_does_not_hold_a_lowering() {
    let world = observed(&[
        ("P1", "Finance", "cfo@acme.example", &[(X, "admin")]),
        ("P2", "Engineering", "cto@acme.example", &[]),
    ]);
    let mut c = engineering_connector("user");
    c.spec.tenants[0].policies = vec![PolicySelector {
        id: Some("P2".into()),
        name: None,
    }];
    let a = let_go_of(entry(X, true, None, "admin"));
    let o = access("o", AccessMode::ObserveOnly, vec![member(X, "user")]);
    // Broken tenant object naming no resolvable policy but listing X.
    let mut broken = in_engineering(access(
        "broken",
        AccessMode::Additive,
        vec![member(X, "user")],
    ));
    broken.spec.policy.id = Some("NOPE".into());
    let plan = run(&c, &[a, o, broken], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::User))]
    );
}

/// A conflict lowering gives the lowered entry to the writer whose role it is, never to a
/// writer asking less (a tenant with maxRole user would hold `auditor`, and keep it frozen
/// once suspended after the other writer lets go). Second review, R4-1.
#[test]
fn a_conflict_lowering_gives_the_entry_to_the_writer_whose_role_it_is() {
    let connector = engineering_connector("user");
    let mut world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access("t", AccessMode::Additive, vec![member(X, "user")]));
    let b = access("b", AccessMode::Additive, vec![member(X, "auditor")]);
    let mut objects = vec![a, t, b];
    let plan = step_with(&connector, &mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::Auditor))]
    );
    assert_eq!(
        plan.objects[&key("b")].write_ahead_ledger().len(),
        1,
        "the lowered entry goes to the writer the role is for"
    );
    step_with(&connector, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("auditor"));
    let t_ledger =
        run(&connector, &objects, &world).objects[&ObjectKey::new(ENG, "t")].write_ahead_ledger();
    let_go_and_suspend_the_tenant(&mut objects, &["b"]);
    step_with(&connector, &mut objects, &mut world);
    step_with(&connector, &mut objects, &mut world);
    assert_eq!(
        role_of(&world, X).as_deref(),
        Some("user"),
        "nobody asks auditor; tenant t (maxRole user) held {t_ledger:?} and keeps it frozen"
    );
}

/// A writer that asks less than a raise whose claim ended takes the entry only with the
/// demotion: while the guard holds that, the entry stays where it was, so the writer (a
/// tenant with maxRole user) never holds admin to keep frozen once suspended. R4-2.
#[test]
fn a_held_demotion_leaves_the_entry_where_it_was() {
    let mut connector = engineering_connector("user");
    connector.spec.max_revocations_per_sync = 0;
    let mut world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access("t", AccessMode::Additive, vec![member(X, "user")]));
    let mut objects = vec![a, t];
    let plan = step_with(&connector, &mut objects, &mut world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let t_ledger = plan.objects[&ObjectKey::new(ENG, "t")].write_ahead_ledger();
    // Guard lifted; t suspended.
    connector.spec.max_revocations_per_sync = 10;
    let_go_and_suspend_the_tenant(&mut objects, &[]);
    step_with(&connector, &mut objects, &mut world);
    step_with(&connector, &mut objects, &mut world);
    assert_eq!(
        role_of(&world, X).as_deref(),
        Some("user"),
        "nobody asks admin; t (maxRole user) took {t_ledger:?} while its demotion was held"
    );
}

/// A suspended holder's entry moved to a request; the request's write never lands
/// (failed) and the request then ends. The entry must come back to the suspended
/// object as it was (user, added), with nothing written.
#[test]
fn a_failed_request_write_over_a_suspended_holder_gives_the_entry_back() {
    let plain = connector();
    let mut world = finance(&[]);
    let mut objects = vec![access("a", AccessMode::Additive, vec![member(X, "user")])];
    step_with(&plain, &mut objects, &mut world);
    step_with(&plain, &mut objects, &mut world);
    objects[0].spec.suspend = true;
    step_with(&plain, &mut objects, &mut world);
    objects.push(request("r1", X, "admin"));
    let plan = run(&plain, &objects, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::Admin))]
    );
    // Saved, not written.
    let mut objects = with_status(&objects, &plan, &world);
    objects[1] = ended(&objects[1]);
    let plan = run(&plain, &objects, &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let objects = with_status(&objects, &plan, &world);
    let plan = run(&plain, &objects, &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert_eq!(
        plan.objects[&key("a")].write_ahead_ledger().len(),
        1,
        "{:?}",
        plan.objects
    );
    // a resumes then lets go: x revoked (the operator added them).
    let mut objects = with_status(&objects, &plan, &world);
    objects[0].spec.suspend = false;
    objects[0].spec.members.clear();
    let plan = run(&plain, &objects, &world);
    assert_eq!(changes(&plan), [(ChangeKind::Revoke, X.into(), None)]);
}

/// A Blocked (second Authoritative) holder: a request's raise moves its entry; at the
/// request's end x comes back to user with the Blocked object, and the governing
/// Authoritative object does not revoke x.
#[test]
fn a_blocked_holder_gets_its_entry_back_after_a_request() {
    let plain = connector();
    let mut world = finance(&[(X, "user")]);
    let mut governor = access("g", AccessMode::Authoritative, vec![member(ADMIN, "admin")]);
    governor.created = Some("2020-01-01T00:00:00Z".parse().unwrap());
    let mut blocked = holding(
        access("h", AccessMode::Authoritative, vec![member(X, "user")]),
        vec![entry(X, true, None, "user")],
    );
    blocked.created = Some("2025-01-01T00:00:00Z".parse().unwrap());
    let mut objects = vec![governor, blocked];
    let plan = step_with(&plain, &mut objects, &mut world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    objects.push(request("r1", X, "admin"));
    step_with(&plain, &mut objects, &mut world);
    step_with(&plain, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("admin"));
    objects[2] = ended(&objects[2]);
    step_with(&plain, &mut objects, &mut world);
    let plan = step_with(&plain, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("user"));
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert_eq!(
        plan.objects[&key("h")].write_ahead_ledger().len(),
        1,
        "{:?}",
        plan.objects
    );
}

/// A request's raise over a person a PolicyAccess holds at a lower role is the request's
/// write: the entry (its origin kept) goes to the request, whose end takes the raise back,
/// and the PolicyAccess gets the entry again with its own role. So a member object that is
/// suspended meanwhile never keeps the request's raise frozen in its entry.
#[test]
fn a_request_s_raise_over_a_member_s_role_is_the_request_s_write() {
    let plain = connector();
    let mut world = finance(&[]);
    let mut objects = vec![access("a", AccessMode::Additive, vec![member(X, "user")])];
    step_with(&plain, &mut objects, &mut world);
    step_with(&plain, &mut objects, &mut world);
    objects.push(request("r1", X, "admin"));
    let plan = step_with(&plain, &mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::Admin))]
    );
    let request_key = ObjectKey::for_request(NS, "r1");
    assert_eq!(plan.changes[0].requested_by, request_key);
    let moved = plan.objects[&request_key].write_ahead_ledger();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].added, "the origin moves with the entry: {moved:?}");
    // Once the write landed, the member object holds nothing; then it is suspended and the
    // request ends: the raise comes down to what it lists.
    let plan = step_with(&plain, &mut objects, &mut world);
    assert!(plan.objects[&key("a")].write_ahead_ledger().is_empty());
    objects[0].spec.suspend = true;
    objects[1] = ended(&objects[1]);
    let plan = step_with(&plain, &mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::User))]
    );
    assert_eq!(plan.changes[0].requested_by, request_key);
    step_with(&plain, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("user"));
}

/// An Orphan deletion hands its entry to a writer that asks less even while the guard
/// holds that writer's demotion: Orphan drops the object's entries, writing nothing, and
/// its deletion never waits for another object's removal (third review, F1).
#[test]
fn an_orphan_deletion_never_waits_for_a_held_demotion() {
    let mut strict = connector();
    strict.spec.max_revocations_per_sync = 0;
    let world = finance(&[(X, "admin")]);
    let gone = orphaned(let_go_of(entry(X, true, None, "admin")));
    let b = access("b", AccessMode::Additive, vec![member(X, "user")]);
    let plan = run(&strict, &[gone, b], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let left = plan.objects[&key("a")].write_ahead_ledger();
    assert!(
        left.is_empty(),
        "Orphan deletion still holds {left:?}: its finalizer waits for b's demotion"
    );
}

/// The same with the demotion held by a broken manifest listing X: the Orphan deletion
/// does not wait for that manifest to be fixed (third review, F1).
#[test]
fn an_orphan_deletion_never_waits_for_a_broken_manifest() {
    let world = finance(&[(X, "admin")]);
    let gone = orphaned(let_go_of(entry(X, true, None, "admin")));
    let b = access("b", AccessMode::Additive, vec![member(X, "user")]);
    let broken = access(
        "broken",
        AccessMode::Additive,
        vec![member(X, "user"), member("zed@acme.example", "owner")],
    );
    let plan = run(&connector(), &[gone, b, broken], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let left = plan.objects[&key("a")].write_ahead_ledger();
    assert!(left.is_empty(), "Orphan deletion still holds {left:?}");
}

/// No writer asks the role kept, an ObserveOnly object does, and the writers disagree (no
/// write is planned): the raise goes to the ObserveOnly object, never to the first writer
/// (a tenant asking user), which would keep it frozen once suspended (third review, F3).
#[test]
fn a_contested_hand_off_prefers_an_object_that_lists_the_role_kept() {
    let tenancy = engineering_connector("user");
    let mut world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access("t", AccessMode::Additive, vec![member(X, "user")]));
    let b = access("b", AccessMode::Additive, vec![member(X, "auditor")]);
    let o = access("o", AccessMode::ObserveOnly, vec![member(X, "admin")]);
    let mut objects = vec![a, t, b, o];
    let plan = step_with(&tenancy, &mut objects, &mut world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let t_ledger = plan.objects[&ObjectKey::new(ENG, "t")].write_ahead_ledger();
    assert!(
        t_ledger.is_empty(),
        "the admin raise went to t (asks user) rather than o (lists admin): {t_ledger:?}"
    );
}

/// Once the others let go and the tenant is suspended, the raise nobody asks for comes
/// down (third review, F3).
#[test]
fn a_contested_hand_off_never_freezes_a_raise_nobody_asks_for() {
    let tenancy = engineering_connector("user");
    let mut world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access("t", AccessMode::Additive, vec![member(X, "user")]));
    let b = access("b", AccessMode::Additive, vec![member(X, "auditor")]);
    let o = access("o", AccessMode::ObserveOnly, vec![member(X, "admin")]);
    let mut objects = vec![a, t, b, o];
    step_with(&tenancy, &mut objects, &mut world);
    let_go_and_suspend_the_tenant(&mut objects, &["b", "o"]);
    step_with(&tenancy, &mut objects, &mut world);
    step_with(&tenancy, &mut objects, &mut world);
    assert_eq!(
        role_of(&world, X).as_deref(),
        Some("user"),
        "nobody asks admin; suspended t keeps it frozen"
    );
}

/// A hand-off to a writer that asks the role kept is never undone, even when that writer's
/// own write (a demotion of a role raised by hand) is held: the Revoke deletion it came
/// from does not wait on another object's write (third review, F4).
#[test]
fn a_hand_off_to_a_writer_asking_the_role_kept_is_never_undone() {
    let mut strict = connector();
    strict.spec.max_revocations_per_sync = 0;
    // Operator added X as user; someone raised X to admin by hand.
    let world = finance(&[(X, "admin")]);
    let mut gone = let_go_of(entry(X, true, None, "user"));
    gone.deleting = true;
    let b = access("b", AccessMode::Additive, vec![member(X, "auditor")]);
    let plan = run(&strict, &[gone, b], &world);
    eprintln!("changes {:?}", changes(&plan));
    let left = plan.objects[&key("a")].write_ahead_ledger();
    assert!(
        left.is_empty(),
        "b asks auditor >= user (the role kept) yet the entry went back to the deletion: {left:?}"
    );
}

/// An ended request's raise handed to a member asking less, whose demotion the guard holds:
/// the request keeps the entry (and its finalizer waits) until the demotion lands, then
/// lets go (third review, a check that held).
#[test]
fn an_ended_request_keeps_its_entry_while_the_demotion_is_held() {
    let mut strict = connector();
    strict.spec.max_revocations_per_sync = 0;
    let mut world = finance(&[]);
    let mut objects = vec![
        access("a", AccessMode::Additive, vec![member(X, "user")]),
        request("r1", X, "admin"),
    ];
    let plain = connector();
    step_with(&plain, &mut objects, &mut world);
    step_with(&plain, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("admin"));
    objects[1] = ended(&objects[1]);
    let plan = step_with(&strict, &mut objects, &mut world);
    assert!(plan.changes.is_empty());
    let request_key = ObjectKey::for_request(NS, "r1");
    assert_eq!(plan.objects[&request_key].write_ahead_ledger().len(), 1);
    step_with(&plain, &mut objects, &mut world);
    let plan = step_with(&plain, &mut objects, &mut world);
    assert_eq!(role_of(&world, X).as_deref(), Some("user"));
    assert!(
        plan.objects[&request_key].write_ahead_ledger().is_empty(),
        "{:?}",
        plan.objects
    );
    assert_eq!(
        plan.objects[&key("a")].write_ahead_ledger().len(),
        1,
        "{:?}",
        plan.objects
    );
}

/// A hand-off's demotion is planned but does not land (a failed write, or a crash after
/// the write-ahead save), and the next sync's guard holds it: the entry is still where it
/// was (the copy Expensify shows wins over the unlanded one), so the writer asking less
/// never holds the raise as its own (third review, F2).
#[test]
fn a_failed_demotion_then_held_leaves_the_entry_where_it_was() {
    let mut tenancy = engineering_connector("user");
    tenancy.spec.max_revocations_per_sync = 1;
    let world = finance(&[(X, "admin"), (Y, "user")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access("t", AccessMode::Additive, vec![member(X, "user")]));
    let b = holding(
        access("b", AccessMode::Additive, vec![member(Y, "user")]),
        vec![entry(Y, true, None, "user")],
    );
    let objects = vec![a, t, b];
    let plan = run(&tenancy, &objects, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, X.into(), Some(Role::User))]
    );
    // Saved ahead, the write fails (world unchanged).
    let mut objects = with_status(&objects, &plan, &world);
    // Next sync: b lets Y go too: 2 removals > 1, both held.
    objects[2].spec.members.clear();
    let plan = run(&tenancy, &objects, &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let t_ledger = plan.objects[&ObjectKey::new(ENG, "t")].write_ahead_ledger();
    assert!(
        t_ledger.iter().all(|e| e.role.as_deref() != Some("admin")),
        "t (asks user, maxRole user) holds the admin raise while its demotion is held: {t_ledger:?}"
    );
}

/// And so, once the tenant is suspended, no raise nobody asks for stays frozen (F2).
#[test]
fn a_failed_then_held_demotion_never_freezes_a_raise_nobody_asks_for() {
    let mut tenancy = engineering_connector("user");
    tenancy.spec.max_revocations_per_sync = 1;
    let mut world = finance(&[(X, "admin"), (Y, "user")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access("t", AccessMode::Additive, vec![member(X, "user")]));
    let b = holding(
        access("b", AccessMode::Additive, vec![member(Y, "user")]),
        vec![entry(Y, true, None, "user")],
    );
    let objects = vec![a, t, b];
    let plan = run(&tenancy, &objects, &world);
    let mut objects = with_status(&objects, &plan, &world);
    objects[2].spec.members.clear();
    let plan = run(&tenancy, &objects, &world);
    let mut objects = with_status(&objects, &plan, &world);
    // Guard lifted; t suspended.
    tenancy.spec.max_revocations_per_sync = 10;
    let_go_and_suspend_the_tenant(&mut objects, &[]);
    step_with(&tenancy, &mut objects, &mut world);
    step_with(&tenancy, &mut objects, &mut world);
    assert_eq!(
        role_of(&world, X).as_deref(),
        Some("user"),
        "nobody asks admin; suspended t keeps it frozen"
    );
}

/// A protected person's ended raise is never handed to a writer asking less (no demotion
/// is ever made for them, so it would hold admin for good): the entry is released, and
/// dropped, since protected people are left as they are (third review, F5).
#[test]
fn a_protected_person_s_ended_raise_goes_to_no_writer_asking_less() {
    let mut tenancy = engineering_connector("user");
    tenancy.spec.protected_emails.push(X.into());
    let world = finance(&[(X, "admin")]);
    let a = let_go_of(entry(X, true, None, "admin"));
    let t = in_engineering(access("t", AccessMode::Additive, vec![member(X, "user")]));
    let plan = run(&tenancy, &[a, t], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let t_ledger = plan.objects[&ObjectKey::new(ENG, "t")].write_ahead_ledger();
    assert!(t_ledger.is_empty(), "{t_ledger:?}");
}

/// A hand-off that was to move with a write for which the writers plan none (they
/// disagree, and no role is lowered) moves at once: the Revoke deletion it came from never
/// waits for a write that is not coming (fourth review, F1).
#[test]
fn a_hand_off_with_no_write_coming_moves_at_once() {
    let world = finance(&[(X, "user")]);
    let mut gone = let_go_of(entry(X, false, Some("admin"), "user"));
    gone.deleting = true;
    let auditor = access("b", AccessMode::Additive, vec![member(X, "auditor")]);
    let admin = access("c", AccessMode::Additive, vec![member(X, "admin")]);
    let plan = run(&connector(), &[gone, auditor, admin], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert!(plan.objects[&key("a")].write_ahead_ledger().is_empty());
    assert_eq!(plan.objects[&key("b")].write_ahead_ledger().len(), 1);
}

/// A grant that landed after a crash (Expensify made the person a user, not the role
/// asked) wins over a stale copy of an older entry: the operator added them, so letting
/// go revokes them instead of setting back a role from before (fourth review, F2).
#[test]
fn a_landed_grant_wins_over_a_stale_copy() {
    let world = finance(&[(X, "user")]);
    let stale = let_go_of(entry(X, false, Some("admin"), "user"));
    let mut granted = entry(X, true, None, "auditor");
    granted.pending = true;
    let asking = holding(
        access("b", AccessMode::Additive, vec![member(X, "auditor")]),
        vec![granted],
    );
    let plan = run(&connector(), &[stale, asking], &world);
    assert!(plan.objects[&key("a")].write_ahead_ledger().is_empty());
    let kept = plan.objects[&key("b")].write_ahead_ledger();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].added, "{kept:?}");
}
