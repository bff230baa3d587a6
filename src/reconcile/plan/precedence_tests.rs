//! Precedence between access requests and objects: the highest role asked wins while a
//! request is active, a request never demotes, and its end gives back exactly what it
//! raised.

use super::*;

const ALICE: &str = "alice@acme.example";

/// The synthetic holder object of access request `name` asking `role` for `email`.
fn request(name: &str, email: &str, role: &str) -> AccessObject {
    let mut object = access(name, AccessMode::Additive, vec![member(email, role)]);
    object.key = ObjectKey::for_request(NS, name);
    object
}

/// A request holder that asks for nobody (ended), keeping its status.
fn ended(object: &AccessObject) -> AccessObject {
    let mut object = object.clone();
    object.spec.members.clear();
    object
}

/// One sync applied in full: the ledger saved, the writes landed.
fn step(objects: &mut Vec<AccessObject>, world: &mut Observed) -> Plan {
    let plan = run(&connector(), objects, world);
    *objects = with_status(objects, &plan, world);
    *world = apply(world, &plan);
    plan
}

fn role_of(world: &Observed, email: &str) -> Option<String> {
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
