//! Precedence between access requests and objects: the highest role asked wins while a
//! request is active, a request never demotes, and its end gives back exactly what it
//! raised.

use super::*;

const ALICE: &str = "alice@acme.example";

/// The synthetic holder object of access request `name` asking `role` for `email`.
pub(super) fn request(name: &str, email: &str, role: &str) -> AccessObject {
    let mut object = access(name, AccessMode::Additive, vec![member(email, role)]);
    object.key = ObjectKey::for_request(NS, name);
    object
}

/// A request holder that asks for nobody (ended), keeping its status.
pub(super) fn ended(object: &AccessObject) -> AccessObject {
    let mut object = object.clone();
    object.spec.members.clear();
    object
}

/// One sync applied in full: the ledger saved, the writes landed.
fn step(objects: &mut Vec<AccessObject>, world: &mut Observed) -> Plan {
    step_with(&connector(), objects, world)
}

/// [`step`] with another connector.
pub(super) fn step_with(
    connector: &ConnectorObject,
    objects: &mut Vec<AccessObject>,
    world: &mut Observed,
) -> Plan {
    let plan = run(connector, objects, world);
    *objects = with_status(objects, &plan, world);
    *world = apply(world, &plan);
    plan
}

pub(super) fn role_of(world: &Observed, email: &str) -> Option<String> {
    world.rosters["P1"]
        .iter()
        .find(|e| e.email == email)
        .map(|e| e.role.clone())
}

fn no_conflicts(plan: &Plan) {
    for (key, object) in &plan.objects {
        assert!(
            !object
                .blocks
                .iter()
                .any(|b| matches!(b, Block::Conflict(_))),
            "{key}: {:?}",
            object.blocks
        );
    }
}

/// The ledger the request holder `name` saves.
fn request_ledger(plan: &Plan, name: &str) -> Vec<ManagedMember> {
    plan.objects[&ObjectKey::for_request(NS, name)].write_ahead_ledger()
}

#[test]
fn a_request_raises_a_member_and_its_end_gives_back_the_member_role() {
    let mut world = finance(&[]);
    let listing = access("team", AccessMode::Additive, vec![member(ALICE, "user")]);
    let mut objects = vec![listing];
    step(&mut objects, &mut world);
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("user"));

    objects.push(request("r1", ALICE, "admin"));
    let plan = step(&mut objects, &mut world);
    no_conflicts(&plan);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::Admin))]
    );
    assert!(
        plan.objects[&ObjectKey::new(NS, "team")].drift.is_empty(),
        "the raise is the settled role, not drift"
    );
    let settled = step(&mut objects, &mut world);
    assert!(settled.is_empty(), "idempotent: {:?}", settled.changes);

    objects[1] = ended(&objects[1]);
    let plan = step(&mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::User))]
    );
    let after = step(&mut objects, &mut world);
    assert!(after.is_empty(), "{:?}", after.changes);
    assert!(request_ledger(&after, "r1").is_empty());
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("user"));
}

#[test]
fn a_request_raising_an_unmanaged_user_sets_them_back_to_user_at_its_end() {
    let mut world = finance(&[(ALICE, "user")]);
    let mut objects = vec![request("r1", ALICE, "admin")];
    let plan = step(&mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::Admin))]
    );
    objects[0] = ended(&objects[0]);
    let plan = step(&mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::User))]
    );
    let after = step(&mut objects, &mut world);
    assert!(after.is_empty() && request_ledger(&after, "r1").is_empty());
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("user"));
}

/// An ObserveOnly object keeps the people it lists, but writes nothing: a raise a request
/// made is not kept for it. At the request's end the person goes back to their own role;
/// an observer listing them at the raised role keeps that role (it asks for it).
#[test]
fn a_request_raise_goes_back_at_its_end_though_an_observer_lists_the_person_lower() {
    let mut world = finance(&[(ALICE, "user")]);
    let observer = access(
        "watch",
        AccessMode::ObserveOnly,
        vec![member(ALICE, "user")],
    );
    let mut objects = vec![observer, request("r1", ALICE, "admin")];
    let plan = step(&mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::Admin))]
    );
    objects[1] = ended(&objects[1]);
    let plan = step(&mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::User))],
        "the raise stayed after the request ended"
    );
    let after = step(&mut objects, &mut world);
    assert!(after.is_empty(), "{:?}", after.changes);
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("user"));
    assert!(
        after
            .objects
            .values()
            .all(|o| o.write_ahead_ledger().is_empty()),
        "nothing left to own"
    );

    // Listed at the raised role, the observer keeps it: nothing moves at the end.
    let mut world = finance(&[(ALICE, "user")]);
    let observer = access(
        "watch",
        AccessMode::ObserveOnly,
        vec![member(ALICE, "admin")],
    );
    let mut objects = vec![observer, request("r1", ALICE, "admin")];
    step(&mut objects, &mut world);
    objects[1] = ended(&objects[1]);
    let plan = step(&mut objects, &mut world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("admin"));
}

#[test]
fn a_lower_request_writes_nothing_and_takes_nothing_at_its_end() {
    let mut world = finance(&[(ALICE, "admin")]);
    let mut objects = vec![request("r1", ALICE, "user")];
    let plan = step(&mut objects, &mut world);
    assert!(plan.is_empty(), "never demotes: {:?}", plan.changes);
    assert!(request_ledger(&plan, "r1").is_empty());
    assert!(
        plan.objects[&ObjectKey::for_request(NS, "r1")]
            .drift
            .is_empty()
    );

    // Below what a PolicyAccess asks: the object's role stands.
    let mut listed = vec![
        access("team", AccessMode::Additive, vec![member(ALICE, "admin")]),
        request("r2", ALICE, "auditor"),
    ];
    let plan = step(&mut listed, &mut world);
    no_conflicts(&plan);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);

    objects[0] = ended(&objects[0]);
    let plan = step(&mut objects, &mut world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("admin"));
}

#[test]
fn of_two_overlapping_requests_the_first_to_end_takes_nothing_away() {
    let mut world = finance(&[(ALICE, "user")]);
    let mut objects = vec![
        request("r1", ALICE, "admin"),
        request("r2", ALICE, "auditor"),
    ];
    let plan = step(&mut objects, &mut world);
    no_conflicts(&plan);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::Admin))]
    );
    // r2 (lower) ends first: nothing moves.
    objects[1] = ended(&objects[1]);
    let plan = step(&mut objects, &mut world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("admin"));

    // Same role twice: the first to end hands off, the second gives back user.
    let mut objects = vec![ended(&objects[0]), request("r3", ALICE, "admin")];
    let plan = step(&mut objects, &mut world);
    assert!(plan.changes.is_empty(), "hand-off only: {:?}", plan.changes);
    objects[1] = ended(&objects[1]);
    let plan = step(&mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::User))]
    );
    step(&mut objects, &mut world);
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("user"));
}

#[test]
fn two_objects_asking_different_roles_still_conflict_whatever_a_request_asks() {
    let world = finance(&[(ALICE, "user")]);
    let objects = vec![
        access("a", AccessMode::Additive, vec![member(ALICE, "admin")]),
        access("b", AccessMode::Additive, vec![member(ALICE, "auditor")]),
        request("r1", ALICE, "admin"),
    ];
    let plan = run(&connector(), &objects, &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    for key in [ObjectKey::new(NS, "a"), ObjectKey::new(NS, "b")] {
        assert!(
            matches!(&plan.objects[&key].blocks[..], [Block::Conflict(m)] if m.contains(ALICE)),
            "{key}: {:?}",
            plan.objects[&key].blocks
        );
    }
}

const PEOPLE: [&str; 3] = [ALICE, "bob@acme.example", "carol@acme.example"];
const ROLES: [&str; 3] = ["user", "auditor", "admin"];

/// One request: who, which role, the step it starts and the step it ends.
type Asked = (usize, usize, usize, usize);

fn arb_requests() -> impl Strategy<Value = Vec<Asked>> {
    prop::collection::vec(
        (0..3usize, 0..3usize, 0..4usize, 1..4usize).prop_map(|(p, r, s, d)| (p, r, s, s + d)),
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Requests overlapping each other and a PolicyAccess's members, each ending (the
    /// PolicyAccess is deleted with Revoke last): Expensify is back where it started, and
    /// no step revokes someone the operator did not add.
    #[test]
    fn requests_and_members_all_ended_return_expensify_to_where_it_started(
        listed in prop::collection::btree_map(0..3usize, 0..3usize, 0..3),
        asked in arb_requests(),
        alice in 0..4usize,
    ) {
        let mut roster = vec![("bob@acme.example", "admin")];
        if alice < 3 {
            roster.push((ALICE, ROLES[alice]));
        }
        let mut world = finance(&roster);
        let origin = world.clone();
        let members: Vec<_> = listed.iter().map(|(&p, &r)| member(PEOPLE[p], ROLES[r])).collect();
        let mut statuses: BTreeMap<ObjectKey, PolicyAccessStatus> = BTreeMap::new();
        let last = asked.iter().map(|a| a.3).max().unwrap_or(0) + 1;
        for step_at in 0..last + 8 {
            let mut objects = vec![access("team", AccessMode::Additive, members.clone())];
            objects[0].deleting = step_at >= last;
            for (i, &(person, role, start, end)) in asked.iter().enumerate() {
                if step_at < start {
                    continue;
                }
                let mut holder = request(&format!("r{i}"), PEOPLE[person], ROLES[role]);
                if step_at >= end {
                    holder = ended(&holder);
                }
                objects.push(holder);
            }
            for object in &mut objects {
                object.status = statuses.get(&object.key).cloned();
            }
            let plan = run(&connector(), &objects, &world);
            for change in plan.changes.iter().filter(|c| c.kind == ChangeKind::Revoke) {
                let added = objects.iter().any(|o| {
                    o.ledger_entries().iter().any(|e| {
                        e.key() == (change.policy_id.as_str(), change.email.as_str()) && e.added
                    })
                });
                prop_assert!(added, "revoked someone the operator did not add: {change:?}");
            }
            for object in with_status(&objects, &plan, &world) {
                if let Some(status) = object.status {
                    statuses.insert(object.key, status);
                }
            }
            world = apply(&world, &plan);
        }
        let roles = |w: &Observed| {
            let mut people: Vec<_> = w.rosters["P1"].iter().map(|e| (e.email.clone(), e.role.clone())).collect();
            people.sort();
            people
        };
        prop_assert_eq!(roles(&world), roles(&origin));
    }
}

/// On a policy an Authoritative object governs, Alice (there before the operator, user) is
/// listed only by an object that writes nothing: ObserveOnly, suspended, or Blocked (a
/// second Authoritative object). A request raises her to admin; at its end the raise is
/// released and she goes back to user: never revoked by the governor, since someone still
/// asks for her. (Review 6: the release turned into the governor's revoke.)
#[test]
fn a_released_raise_is_set_back_never_revoked_while_an_object_that_writes_nothing_lists_the_person()
{
    let observer = access(
        "watch",
        AccessMode::ObserveOnly,
        vec![member(ALICE, "user")],
    );
    let mut suspended = access("frozen", AccessMode::Additive, vec![member(ALICE, "user")]);
    suspended.spec.suspend = true;
    let blocked = access(
        "gov2",
        AccessMode::Authoritative,
        vec![member(ALICE, "user")],
    );
    for lister in [observer, suspended, blocked] {
        let mut world = finance(&[(ALICE, "user")]);
        let governor = access("gov", AccessMode::Authoritative, vec![]);
        let name = lister.key.name.clone();
        let mut objects = vec![governor, lister, request("r1", ALICE, "admin")];
        let plan = step(&mut objects, &mut world);
        assert_eq!(
            changes(&plan),
            [(ChangeKind::RoleChange, ALICE.into(), Some(Role::Admin))],
            "{name}"
        );
        objects[2] = ended(&objects[2]);
        let plan = step(&mut objects, &mut world);
        assert_eq!(
            changes(&plan),
            [(ChangeKind::RoleChange, ALICE.into(), Some(Role::User))],
            "{name}: set back, not revoked"
        );
        step(&mut objects, &mut world);
        assert_eq!(role_of(&world, ALICE).as_deref(), Some("user"), "{name}");
    }
}

/// A person a request added, whom an ObserveOnly object lists (lower): the observer keeps
/// the person (releasing would revoke someone it asks for), and when the request ends the
/// person goes back to what the remaining claim asks, as the contract's Precedence says
/// (review F4): the request's take-back, not a write for the observer. When the observer
/// stops listing them they are revoked and the policy is back where it started.
#[test]
fn a_person_a_request_added_comes_down_to_what_an_observer_lists_and_goes_when_it_stops() {
    let mut world = finance(&[]);
    let observer = access(
        "watch",
        AccessMode::ObserveOnly,
        vec![member(ALICE, "user")],
    );
    let mut objects = vec![observer, request("r1", ALICE, "admin")];
    step(&mut objects, &mut world);
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("admin"));
    objects[1] = ended(&objects[1]);
    let plan = step(&mut objects, &mut world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE.into(), Some(Role::User))]
    );
    assert_eq!(role_of(&world, ALICE).as_deref(), Some("user"));
    let plan = step(&mut objects, &mut world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert!(
        plan.objects[&ObjectKey::new(NS, "watch")].drift.is_empty(),
        "nothing left that the observer does not list"
    );
    // The request holds nothing any more; the observer holds her entry, still "added".
    assert!(request_ledger(&plan, "r1").is_empty());
    let kept = plan.objects[&ObjectKey::new(NS, "watch")].write_ahead_ledger();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].added && !kept[0].pending);
    assert_eq!(kept[0].role.as_deref(), Some("user"));
    // The observer stops listing her (its status, holding her entry, stays).
    objects[0].spec.members.clear();
    let plan = step(&mut objects, &mut world);
    assert_eq!(changes(&plan), [(ChangeKind::Revoke, ALICE.into(), None)]);
    step(&mut objects, &mut world);
    assert_eq!(role_of(&world, ALICE), None);
}

fn raised_to_admin() -> ManagedMember {
    ManagedMember {
        added: false,
        previous_role: Some("user".into()),
        role: Some("admin".into()),
        ..ManagedMember::added_user("P1", ALICE)
    }
}

/// Review of the conflict lowering: a suspended holder freezes its raise, and an object
/// that writes nothing but lists the raised role keeps it, even while writers disagree.
#[test]
fn a_conflict_lowers_no_raise_a_frozen_or_listing_holder_keeps() {
    let world = finance(&[(ALICE, "admin")]);
    let a = access("a", AccessMode::Additive, vec![member(ALICE, "auditor")]);
    let b = access("b", AccessMode::Additive, vec![member(ALICE, "user")]);
    let mut suspended = holding(
        access("s", AccessMode::Additive, vec![member(ALICE, "auditor")]),
        vec![raised_to_admin()],
    );
    suspended.spec.suspend = true;
    let plan = run(&connector(), &[a.clone(), b.clone(), suspended], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let observing = holding(
        access("o", AccessMode::ObserveOnly, vec![member(ALICE, "admin")]),
        vec![raised_to_admin()],
    );
    let plan = run(&connector(), &[a, b, observing], &world);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
}

/// Review of the conflict lowering: the demotion is an object's, never a request's (a
/// request never demotes), even when the request asks the highest remaining role.
#[test]
fn a_conflict_lowering_is_never_a_requests_change() {
    let world = finance(&[(ALICE, "admin")]);
    let a = holding(
        access("a", AccessMode::Additive, vec![member(ALICE, "user")]),
        vec![ManagedMember {
            role: Some("admin".into()),
            ..ManagedMember::added_user("P1", ALICE)
        }],
    );
    let b = access("b", AccessMode::Additive, vec![member(ALICE, "auditor")]);
    let plan = run(
        &connector(),
        &[a, b, request("r1", ALICE, "auditor")],
        &world,
    );
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
    let change = &plan.changes[0];
    assert_eq!(change.role, Some(Role::Auditor));
    assert_eq!(change.requested_by, ObjectKey::new(NS, "b"));
}
