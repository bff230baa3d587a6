//! The ledger's rules, one test each, and the "return to origin" property: whatever the
//! history, deleting every object with `Revoke` puts Expensify back where it started.

use super::*;

pub(super) fn entry(email: &str, added: bool, previous: Option<&str>, role: &str) -> ManagedMember {
    ManagedMember {
        policy_id: "P1".into(),
        email: email.into(),
        added,
        previous_role: previous.map(str::to_string),
        role: Some(role.into()),
        pending: false,
        prior_role: None,
        connector: None,
    }
}

pub(super) fn key(name: &str) -> ObjectKey {
    ObjectKey::new(NS, name)
}

#[test]
fn hand_off_moves_the_entry_and_the_last_drop_revokes() {
    let world = finance(&[("carol@acme.example", "user")]);
    let a = holding(
        access("a", AccessMode::Additive, vec![]),
        vec![entry("carol@acme.example", true, None, "user")],
    );
    let b = access(
        "b",
        AccessMode::Additive,
        vec![member("carol@acme.example", "user")],
    );
    let plan = run(&connector(), &[a.clone(), b.clone()], &world);
    assert!(
        plan.is_empty(),
        "a hand-off writes nothing: {:?}",
        plan.changes
    );
    assert!(plan.objects[&key("a")].ledger.is_empty());
    assert_eq!(
        ledger_emails(&plan.objects[&key("b")]),
        BTreeSet::from(["carol@acme.example".to_string()])
    );

    let b = holding(
        access("b", AccessMode::Additive, vec![]),
        plan.objects[&key("b")].ledger.clone(),
    );
    let plan = run(&connector(), &[holding(a, vec![]), b], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "carol@acme.example".into(), None)]
    );
}

#[test]
fn a_released_role_raise_goes_back_to_the_previous_role() {
    // JIT admin: bob was a user; the entry that raised him expired.
    let world = finance(&[("bob@acme.example", "admin")]);
    let mut expired = member("bob@acme.example", "admin");
    expired.expires_at = Some("2026-05-31T00:00:00Z".into());
    let object = holding(
        access("jit", AccessMode::Additive, vec![expired]),
        vec![entry("bob@acme.example", false, Some("user"), "admin")],
    );
    let plan = run(&connector(), &[object], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "bob@acme.example".into(),
            Some(Role::User)
        )]
    );
    assert!(
        plan.changes[0].is_removal(),
        "a demotion counts towards the guard"
    );
    let after = apply(&world, &plan);
    let object = holding(
        access("jit", AccessMode::Additive, vec![]),
        plan.objects[&key("jit")].write_ahead_ledger(),
    );
    let second = run(&connector(), &[object], &after);
    assert!(
        second.is_empty() && second.objects[&key("jit")].ledger.is_empty(),
        "settled: {second:?}"
    );
}

#[test]
fn a_policy_move_releases_on_the_old_policy_and_takes_nobody_on_the_new() {
    let world = observed(&[
        (
            "P1",
            "Finance",
            "cfo@acme.example",
            &[("bob@acme.example", "user")],
        ),
        (
            "P2",
            "Sales",
            "cfo@acme.example",
            &[("bob@acme.example", "auditor")],
        ),
    ]);
    let mut moved = holding(
        access("team", AccessMode::Additive, vec![]),
        vec![entry("bob@acme.example", true, None, "user")],
    );
    moved.spec.policy.id = Some("P2".into());
    let plan = run(&connector(), &[moved], &world);
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(
        (plan.changes[0].kind, plan.changes[0].policy_id.as_str()),
        (ChangeKind::Revoke, "P1")
    );
}

#[test]
fn someone_changed_by_hand_is_left_alone_and_said_so() {
    let world = finance(&[("bob@acme.example", "auditor")]);
    let object = holding(
        access("team", AccessMode::Additive, vec![]),
        vec![entry("bob@acme.example", true, None, "user")],
    );
    let plan = run(&connector(), &[object], &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    let object = &plan.objects[&key("team")];
    assert!(object.ledger.is_empty());
    assert!(
        object.notes[0].contains("changed by someone else"),
        "{:?}",
        object.notes
    );
}

#[test]
fn pending_entries_are_confirmed_by_a_read_or_dropped_when_the_write_did_not_land() {
    let mut landed = entry("alice@acme.example", true, None, "user");
    landed.pending = true;
    let mut lost = entry("dan@acme.example", true, None, "user");
    lost.pending = true;
    let mut raise = entry("bob@acme.example", false, Some("user"), "admin");
    raise.pending = true;
    let world = finance(&[("alice@acme.example", "user"), ("bob@acme.example", "user")]);
    let object = holding(
        access(
            "team",
            AccessMode::Additive,
            vec![member("alice@acme.example", "user")],
        ),
        vec![landed, lost, raise],
    );
    let plan = run(&connector(), &[object], &world);
    let ledger = &plan.objects[&key("team")].ledger;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        (ledger[0].email.as_str(), ledger[0].pending),
        ("alice@acme.example", false)
    );
    assert!(plan.is_empty());
}

#[test]
fn a_failed_role_update_falls_back_to_the_confirmed_role() {
    let mut update = entry("bob@acme.example", false, Some("user"), "admin");
    update.pending = true;
    update.prior_role = Some("auditor".into());
    let world = finance(&[("bob@acme.example", "auditor")]);
    let object = holding(access("team", AccessMode::Additive, vec![]), vec![update]);
    let plan = run(&connector(), &[object], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "bob@acme.example".into(),
            Some(Role::User)
        )],
        "the raise it confirmed is taken back"
    );
}

#[test]
fn objects_of_namespaces_the_connector_does_not_allow_take_no_part() {
    let world = finance(&[("x@acme.example", "user")]);
    let boss = access("boss", AccessMode::Authoritative, vec![]);
    let mut outsider = access(
        "outsider",
        AccessMode::Additive,
        vec![member("x@acme.example", "user")],
    );
    outsider.key = ObjectKey::new("elsewhere", "outsider");
    outsider.spec.connector_ref.namespace = Some(NS.into());
    let mut broken = outsider.clone();
    broken.key = ObjectKey::new("elsewhere", "broken");
    broken.spec.members[0].role = Some("owner".into());
    let plan = run(&connector(), &[boss, outsider, broken], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "x@acme.example".into(), None)]
    );
    assert_eq!(plan.objects.keys().collect::<Vec<_>>(), [&key("boss")]);
}

#[test]
fn a_policy_another_connector_manages_is_a_conflict() {
    let world = finance(&[]);
    let mine = access(
        "mine",
        AccessMode::Authoritative,
        vec![member("a@acme.example", "user")],
    );
    let mut theirs = access("theirs", AccessMode::Additive, vec![]);
    theirs.spec.connector_ref.name = "a-first".into();
    // Evidence the other connector manages P1: its own sync left the object Synced there.
    theirs.status = Some(PolicyAccessStatus {
        phase: crate::api::AccessPhase::Synced,
        policy_id: Some("P1".into()),
        ..PolicyAccessStatus::default()
    });
    let plan = run(&connector(), &[mine, theirs], &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    let blocks = &plan.objects[&key("mine")].blocks;
    assert_eq!(blocks[0].reason(), Reason::Conflict);
    assert!(
        blocks[0].message().contains("finance/a-first"),
        "{blocks:?}"
    );
}

#[test]
fn unresolvable_objects_keep_their_entries_and_hold_only_their_own_removals() {
    let world = finance(&[("bob@acme.example", "user"), ("x@acme.example", "user")]);
    let mut lost = holding(
        access("lost", AccessMode::Additive, vec![]),
        vec![entry("bob@acme.example", true, None, "user")],
    );
    lost.spec.policy = PolicySelector {
        id: None,
        name: Some("Nope".into()),
    };
    let boss = access("boss", AccessMode::Authoritative, vec![]);
    let plan = run(&connector(), &[lost, boss], &world);
    // x is nobody's: the Authoritative object revokes them; bob is what `lost` holds.
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "x@acme.example".into(), None)]
    );
    // bob stays: the ledger of `lost` speaks for him until it can be resolved.
    assert_eq!(plan.objects[&key("lost")].ledger.len(), 1);
}

#[test]
fn allowance_values_that_say_no_do_not_lift_the_guard() {
    for no in ["no", "False", "0", " ", "NO"] {
        let annotations = BTreeMap::from([(ALLOW_MASS_REVOCATION.to_string(), no.to_string())]);
        assert_eq!(
            super::super::guard::fresh_allowance(&annotations, None, &[]),
            None,
            "{no:?}"
        );
    }
    let yes = BTreeMap::from([(ALLOW_MASS_REVOCATION.to_string(), "CHG-1".to_string())]);
    assert_eq!(
        super::super::guard::fresh_allowance(&yes, None, &[]).as_deref(),
        Some("CHG-1")
    );
    assert_eq!(
        super::super::guard::fresh_allowance(&yes, Some("CHG-1"), &[]),
        None,
        "used once"
    );
}

#[test]
fn an_allowance_is_used_up_by_the_first_sync_that_sees_it() {
    let world = finance(&[]);
    let mut object = access("team", AccessMode::Additive, vec![]);
    object
        .annotations
        .insert(ALLOW_MASS_REVOCATION.into(), "CHG-7".into());
    let plan = run(&connector(), &[object], &world);
    assert_eq!(
        plan.objects[&key("team")].mass_revocation_used.as_deref(),
        Some("CHG-7"),
        "recorded although nothing needed it, so it is not armed for later"
    );
}

#[test]
fn an_employee_id_change_alone_is_planned() {
    let world = finance(&[("bob@acme.example", "user")]);
    let mut wanted = member("bob@acme.example", "user");
    wanted.employee_id = Some("E-1".into());
    let plan = run(
        &connector(),
        &[access("team", AccessMode::Additive, vec![wanted])],
        &world,
    );
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::EmployeeIdChange,
            "bob@acme.example".into(),
            Some(Role::User)
        )]
    );
    assert_eq!(plan.changes[0].employee_id.as_deref(), Some("E-1"));
}

// Return to origin: a random history of object sets, each planned and applied in full;
// then every object is deleted with Revoke.

/// Who the world shows, per policy: email -> role.
fn snapshot(world: &Observed) -> BTreeMap<String, BTreeMap<String, String>> {
    world
        .rosters
        .iter()
        .map(|(id, roster)| {
            let people = roster
                .iter()
                .map(|e| (e.email.clone(), e.role.clone()))
                .collect();
            (id.clone(), people)
        })
        .collect()
}

/// One sync: plan, apply in full, carry the write-ahead ledger forward. Returns people
/// revoked as Authoritative extras.
fn sync_step(
    connector: &ConnectorObject,
    objects: &mut Vec<AccessObject>,
    world: &mut Observed,
    lost_writes: u64,
) -> Result<Vec<(String, String)>, TestCaseError> {
    let mut plan = run(connector, objects, world);
    let protected = protected_people(world);
    let before = snapshot(world);
    let mut extras = Vec::new();
    for change in &plan.changes {
        prop_assert!(
            !protected.contains(&change.email),
            "protected person changed: {change:?}"
        );
        if change.kind == ChangeKind::Revoke {
            let owned = objects.iter().any(|o| {
                o.ledger_entries().iter().any(|e| {
                    e.key() == (change.policy_id.as_str(), change.email.as_str()) && e.added
                })
            });
            let extra = change.reason.contains("Authoritative");
            prop_assert!(
                owned || extra,
                "revoked someone the operator did not add: {change:?}"
            );
            if extra {
                extras.push((change.policy_id.clone(), change.email.clone()));
            }
        }
    }
    // The ledger is saved before the write; then some writes do not land.
    *objects = with_status(objects, &plan, world);
    let mut index = 0u32;
    plan.changes.retain(|_| {
        index += 1;
        lost_writes.rotate_left(index) & 1 == 0
    });
    extras.extend(
        plan.changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Revoke && c.reason.contains("Authoritative"))
            .map(|c| (c.policy_id.clone(), c.email.clone())),
    );
    *world = apply(world, &plan);
    prop_assert!(before.keys().eq(snapshot(world).keys()));
    // Deleted objects whose ledger is empty are gone.
    objects.retain(|o| {
        !(o.deleting
            && plan
                .objects
                .get(&o.key)
                .is_none_or(|p| p.write_ahead_ledger().is_empty()))
    });
    Ok(extras)
}

fn arb_history() -> impl Strategy<Value = Vec<Vec<AccessObject>>> {
    prop::collection::vec(arb_accesses(), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn deleting_everything_with_revoke_returns_expensify_to_where_it_started(
        world in arb_world(),
        history in arb_history(),
        lost_writes in prop_oneof![Just(0u64), any::<u64>()],
    ) {
        let mut connector = connector();
        connector.spec.max_revocations_per_sync = 1000;
        let origin = snapshot(&world);
        let mut world = world;
        let mut objects: Vec<AccessObject> = Vec::new();
        let mut extras = Vec::new();
        for step in history {
            // The manifests of this step; objects that disappeared are being deleted.
            let mut next: Vec<AccessObject> = step
                .into_iter()
                .map(|mut o| {
                    o.deleting = false;
                    o.status = objects.iter().find(|p| p.key == o.key).and_then(|p| p.status.clone());
                    o
                })
                .collect();
            for old in &objects {
                if !next.iter().any(|n| n.key == old.key) {
                    let mut gone = old.clone();
                    gone.deleting = true;
                    next.push(gone);
                }
            }
            objects = next;
            extras.extend(sync_step(&connector, &mut objects, &mut world, lost_writes)?);
        }
        for object in &mut objects {
            object.deleting = true;
            object.spec.deletion_policy = DeletionPolicy::Revoke;
        }
        // The faults stop.
        for _ in 0..3 {
            sync_step(&connector, &mut objects, &mut world, 0)?;
        }
        prop_assert!(objects.is_empty(), "deletions left: {objects:?}");
        let mut expected = origin;
        for (policy, email) in &extras {
            if let Some(roster) = expected.get_mut(policy) {
                roster.remove(email);
            }
        }
        let mut end = snapshot(&world);
        for (policy, email) in &extras {
            if let Some(roster) = end.get_mut(policy) {
                roster.remove(email);
            }
        }
        prop_assert_eq!(end, expected);
    }
}

#[test]
fn suspended_objects_keep_their_entries_and_their_people_count_as_asked_for() {
    let world = finance(&[("carol@acme.example", "user"), ("x@acme.example", "user")]);
    let mut paused = holding(
        access(
            "paused",
            AccessMode::Additive,
            vec![member("x@acme.example", "user")],
        ),
        vec![entry("carol@acme.example", true, None, "user")],
    );
    paused.spec.suspend = true;
    let boss = access("boss", AccessMode::Authoritative, vec![]);
    let plan = run(&connector(), &[paused, boss], &world);
    assert!(
        plan.is_empty(),
        "nothing released, x not an extra: {:?}",
        plan.changes
    );
    assert_eq!(
        ledger_emails(&plan.objects[&key("paused")]),
        BTreeSet::from(["carol@acme.example".to_string()])
    );
}

#[test]
fn orphan_deletion_drops_entries_but_hands_off_what_others_still_ask_for() {
    let world = finance(&[("carol@acme.example", "user"), ("dan@acme.example", "user")]);
    let mut gone = holding(
        access("gone", AccessMode::Additive, vec![]),
        vec![
            entry("carol@acme.example", true, None, "user"),
            entry("dan@acme.example", true, None, "user"),
        ],
    );
    gone.deleting = true;
    gone.spec.deletion_policy = DeletionPolicy::Orphan;
    let keeper = access(
        "keeper",
        AccessMode::Additive,
        vec![member("dan@acme.example", "user")],
    );
    let plan = run(&connector(), &[gone, keeper], &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert!(
        plan.objects[&key("gone")].ledger.is_empty(),
        "its deletion can finish"
    );
    assert_eq!(
        ledger_emails(&plan.objects[&key("keeper")]),
        BTreeSet::from(["dan@acme.example".to_string()])
    );
}

#[test]
fn a_deleted_object_whose_policy_is_out_of_sight_keeps_its_entries() {
    let world = finance(&[]);
    let mut gone = holding(
        access("gone", AccessMode::Additive, vec![]),
        vec![ManagedMember {
            policy_id: "P9".into(),
            ..entry("carol@acme.example", true, None, "user")
        }],
    );
    gone.deleting = true;
    gone.spec.policy.id = Some("P9".into());
    let plan = run(&connector(), &[gone], &world);
    assert!(plan.is_empty());
    let object = &plan.objects[&key("gone")];
    assert_eq!(object.ledger.len(), 1, "the deletion waits");
    assert!(
        object.notes[0].contains("cannot be read"),
        "{:?}",
        object.notes
    );
}

#[test]
fn the_guard_counts_demotions_and_names_the_people_held() {
    let world = finance(&[("a@acme.example", "admin"), ("b@acme.example", "admin")]);
    let mut connector = connector();
    connector.spec.max_revocations_per_sync = 1;
    let team = access(
        "team",
        AccessMode::Additive,
        vec![
            member("a@acme.example", "user"),
            member("b@acme.example", "user"),
            member("n@acme.example", "user"),
        ],
    );
    let plan = run(&connector, &[team], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Grant, "n@acme.example".into(), Some(Role::User))]
    );
    let object = &plan.objects[&key("team")];
    assert_eq!(object.held, ["a@acme.example", "b@acme.example"]);
    assert!(
        object.blocks[0]
            .message()
            .contains("a@acme.example, b@acme.example"),
        "{:?}",
        object.blocks
    );
    assert!(plan.has_blocks());
}

#[test]
fn a_raise_of_someone_already_owned_updates_the_entry_and_keeps_the_confirmed_role() {
    let world = finance(&[("bob@acme.example", "auditor")]);
    let team = holding(
        access(
            "team",
            AccessMode::Additive,
            vec![member("bob@acme.example", "admin")],
        ),
        vec![entry("bob@acme.example", false, Some("user"), "auditor")],
    );
    let plan = run(&connector(), &[team], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "bob@acme.example".into(),
            Some(Role::Admin)
        )]
    );
    let saved = plan.objects[&key("team")].write_ahead_ledger();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        (
            saved[0].previous_role.as_deref(),
            saved[0].role.as_deref(),
            saved[0].prior_role.as_deref(),
            saved[0].pending
        ),
        (Some("user"), Some("admin"), Some("auditor"), true)
    );
}

#[test]
fn an_orphan_deletion_lets_go_even_of_a_policy_out_of_sight() {
    let world = finance(&[]);
    let mut gone = holding(
        access("gone", AccessMode::Additive, vec![]),
        vec![ManagedMember {
            policy_id: "P9".into(),
            ..entry("carol@acme.example", true, None, "user")
        }],
    );
    gone.deleting = true;
    gone.spec.deletion_policy = DeletionPolicy::Orphan;
    let plan = run(&connector(), &[gone], &world);
    assert!(plan.is_empty());
    assert!(
        plan.objects[&key("gone")].ledger.is_empty(),
        "the deletion can finish"
    );
}

// Found by an independent review; each asserts what the contract requires.

fn holding_on_p1(object: AccessObject, entries: Vec<ManagedMember>) -> AccessObject {
    let mut object = holding(object, entries);
    if let Some(status) = object.status.as_mut() {
        status.policy_id = Some("P1".into());
    }
    object
}

///  A (valid) asks bob admin, B asks bob user: Conflict, bob left as he is. A gets a
/// typo in another member -> Invalid -> RemovalsHeld. Contract: nothing inferred from
/// absence while input is broken; yet bob is demoted admin -> user.
#[test]
fn while_removals_are_held_demotions_wait_too() {
    let world = finance(&[("bob@acme.example", "admin")]);
    let a = holding_on_p1(
        access(
            "a",
            AccessMode::Additive,
            vec![member("bob@acme.example", "admin")],
        ),
        vec![entry("bob@acme.example", false, Some("user"), "admin")],
    );
    let b = access(
        "b",
        AccessMode::Additive,
        vec![member("bob@acme.example", "user")],
    );
    let both_valid = run(&connector(), &[a.clone(), b.clone()], &world);
    assert!(both_valid.is_empty(), "conflict: bob left alone");

    let mut a_typo = a.clone();
    a_typo
        .spec
        .members
        .push(member("x@acme.example", "superuser"));
    let plan = run(&connector(), &[a_typo, b.clone()], &world);
    let _ = format!("R1 changes with A invalid: {:?}", changes(&plan));
    let _ = format!("R1 blocks of b: {:?}", plan.objects[&key("b")].blocks);
    assert!(
        !plan
            .changes
            .iter()
            .any(super::super::types::Change::is_removal),
        "a demotion was planned while removals are held: {:?}",
        changes(&plan)
    );
}

///  same with an unreadable manifest (inventory_complete = false).
#[test]
fn an_unreadable_manifest_holds_demotions() {
    let world = finance(&[("bob@acme.example", "admin")]);
    let b = access(
        "b",
        AccessMode::Additive,
        vec![member("bob@acme.example", "user")],
    );
    let plan = plan(PlanInput {
        requests: crate::reconcile::Requests::NONE,
        connector: &connector(),
        connectors: &[],
        accesses: &[b],
        observed: &world,
        now: now(),
        inventory_complete: false,
        scope: Scope::Everything,
        unverified: &[],
    });
    let _ = format!("R1b changes: {:?}", changes(&plan));
    assert!(
        !plan
            .changes
            .iter()
            .any(super::super::types::Change::is_removal)
    );
}

///  an object in another namespace, naming a connector that does not even exist,
/// blocks this connector's objects on P1 (file mode: no creation times).
#[test]
fn a_stray_object_naming_a_missing_connector_governs_nothing() {
    let world = finance(&[]);
    let team = access(
        "team",
        AccessMode::Additive,
        vec![member("alice@acme.example", "user")],
    );
    let mut stray = access("stray", AccessMode::Additive, vec![]);
    stray.key = ObjectKey::new("aaa", "stray");
    stray.spec.connector_ref.name = "ghost".into();
    let plan = run(&connector(), &[team, stray], &world);
    let _ = format!(
        "R2 changes: {:?} blocks: {:?}",
        changes(&plan),
        plan.objects[&key("team")].blocks
    );
    assert_eq!(plan.changes.len(), 1, "alice must be granted");
    assert!(plan.objects[&key("team")].blocks.is_empty());
}

///  cluster mode (creation times): a stray object, created before, same effect.
#[test]
fn an_older_stray_object_governs_nothing_either() {
    let world = finance(&[]);
    let mut team = access(
        "team",
        AccessMode::Additive,
        vec![member("alice@acme.example", "user")],
    );
    team.created = Some("2026-03-01T00:00:00Z".parse().unwrap());
    let mut stray = access("stray", AccessMode::Additive, vec![]);
    stray.key = ObjectKey::new("tenant-x", "stray");
    stray.spec.connector_ref.name = "ghost".into();
    stray.created = Some("2026-01-01T00:00:00Z".parse().unwrap());
    let plan = run(&connector(), &[team, stray], &world);
    let _ = format!(
        "R2c changes: {:?} blocks: {:?}",
        changes(&plan),
        plan.objects[&key("team")].blocks
    );
    assert!(plan.objects[&key("team")].blocks.is_empty());
}

fn other_connector() -> ConnectorObject {
    let mut c = connector();
    c.key = ObjectKey::new(NS, "other");
    c
}

///  connector acme governs P1 (a1 by id, ledger on P1). A new connector `other` gets
/// an Authoritative object on P1 *by name*: on its first sync it is not blocked and
/// revokes a1's people.
#[test]
fn a_newcomer_connector_by_policy_name_is_blocked_from_its_first_sync() {
    let world = finance(&[("carol@acme.example", "user")]);
    let mut a1 = holding_on_p1(
        access(
            "a1",
            AccessMode::Additive,
            vec![member("carol@acme.example", "user")],
        ),
        vec![entry("carol@acme.example", true, None, "user")],
    );
    a1.created = Some("2026-01-01T00:00:00Z".parse().unwrap());
    let mut b1 = access("b1", AccessMode::Authoritative, vec![]);
    b1.spec.connector_ref.name = "other".into();
    b1.spec.policy = crate::api::PolicySelector {
        id: None,
        name: Some("Finance".into()),
    };
    b1.created = Some("2026-05-01T00:00:00Z".parse().unwrap());
    let plan = run(&other_connector(), &[a1, b1], &world);
    let _ = format!(
        "R3 changes: {:?} blocks: {:?}",
        changes(&plan),
        plan.objects[&key("b1")].blocks
    );
    assert!(
        plan.changes.is_empty(),
        "the later connector must be Blocked, not revoke"
    );
}

/// Two connectors both with evidence on P1: the older evidence governs; without creation
/// times, the connector whose key sorts first. The other is blocked, whichever is planned.
#[test]
fn of_two_connectors_managing_a_policy_the_older_keeps_it() {
    let world = finance(&[("carol@acme.example", "user"), ("dan@acme.example", "user")]);
    let ours = |created: Option<&str>| {
        let mut a1 = holding_on_p1(
            access(
                "a1",
                AccessMode::Additive,
                vec![member("carol@acme.example", "user")],
            ),
            vec![entry("carol@acme.example", true, None, "user")],
        );
        a1.created = created.map(|at| at.parse().unwrap());
        a1
    };
    let theirs = |created: Option<&str>| {
        let mut b1 = holding_on_p1(
            access(
                "b1",
                AccessMode::Additive,
                vec![member("dan@acme.example", "user")],
            ),
            vec![entry("dan@acme.example", true, None, "user")],
        );
        b1.spec.connector_ref.name = "other".into();
        b1.created = created.map(|at| at.parse().unwrap());
        b1
    };
    let blocked = |connector: &ConnectorObject, objects: &[AccessObject], name: &str| {
        let plan = run(connector, objects, &world);
        plan.objects[&key(name)]
            .blocks
            .iter()
            .any(|b| b.reason() == Reason::Conflict)
    };
    let (older, newer) = (Some("2026-01-01T00:00:00Z"), Some("2026-05-01T00:00:00Z"));
    for (ours_at, theirs_at, ours_govern) in [
        (older, newer, true),
        (newer, older, false),
        // No creation times (file mode): `acme` sorts before `other`.
        (None, None, true),
    ] {
        let objects = [ours(ours_at), theirs(theirs_at)];
        assert_eq!(
            blocked(&connector(), &objects, "a1"),
            !ours_govern,
            "acme's object, ours {ours_at:?}, theirs {theirs_at:?}"
        );
        assert_eq!(
            blocked(&other_connector(), &objects, "b1"),
            ours_govern,
            "other's object, ours {ours_at:?}, theirs {theirs_at:?}"
        );
    }
}

///  file mode (no creation times): a connector added later whose key sorts first
/// takes P1 over; the connector that has governed P1 all along is the one Blocked.
#[test]
fn without_creation_times_the_established_connector_keeps_the_policy() {
    let world = finance(&[("carol@acme.example", "user")]);
    let a1 = holding_on_p1(
        access(
            "a1",
            AccessMode::Additive,
            vec![member("carol@acme.example", "user")],
        ),
        vec![entry("carol@acme.example", true, None, "user")],
    );
    let mut b1 = access("b1", AccessMode::Authoritative, vec![]);
    b1.spec.connector_ref.name = "aaa".into();
    let mut aaa = connector();
    aaa.key = ObjectKey::new(NS, "aaa");
    let plan_new = run(&aaa, &[a1.clone(), b1.clone()], &world);
    let plan_old = run(&connector(), &[a1, b1], &world);
    let _ = format!(
        "R3b new connector: changes {:?} blocks {:?}",
        changes(&plan_new),
        plan_new.objects[&key("b1")].blocks
    );
    let _ = format!(
        "R3b old connector: blocks {:?}",
        plan_old.objects[&key("a1")].blocks
    );
    assert!(
        plan_old.objects[&key("a1")].blocks.is_empty(),
        "the connector that claimed first keeps P1"
    );
}

///  a grant that landed but shows another role than the one sent (still pending) is
/// treated as "changed by someone else" on release: the person the operator added stays.
#[test]
fn a_grant_that_landed_with_another_role_is_still_owned() {
    let world = finance(&[("carol@acme.example", "user")]);
    let mut pending = entry("carol@acme.example", true, None, "auditor");
    pending.pending = true;
    let a = holding_on_p1(access("a", AccessMode::Additive, vec![]), vec![pending]);
    let plan = run(&connector(), &[a], &world);
    let _ = format!(
        "R4 changes: {:?} ledger: {:?} notes: {:?}",
        changes(&plan),
        plan.objects[&key("a")].ledger,
        plan.objects[&key("a")].notes
    );
    assert_eq!(
        plan.changes.len(),
        1,
        "carol was not on P1 before the operator: revoke her"
    );
}

///  a not-allowed object *of this connector*, created long ago, makes this connector
/// look like the first claimer of P1 and blocks the connector that governs P1.
#[test]
fn a_not_allowed_object_does_not_decide_who_governs_a_policy() {
    let world = finance(&[("carol@acme.example", "user")]);
    // Connector `other` (finance/other) governs P1 since March.
    let mut o1 = access(
        "o1",
        AccessMode::Additive,
        vec![member("carol@acme.example", "user")],
    );
    o1.spec.connector_ref.name = "other".into();
    o1.created = Some("2026-03-01T00:00:00Z".parse().unwrap());
    // acme's legit object arrives in May, a not-allowed object naming acme dates from January.
    let mut mine = access("mine", AccessMode::Authoritative, vec![]);
    mine.created = Some("2026-05-01T00:00:00Z".parse().unwrap());
    let mut stray = access("stray", AccessMode::Additive, vec![]);
    stray.key = ObjectKey::new("tenant-x", "stray");
    stray.spec.connector_ref.namespace = Some(NS.into());
    stray.created = Some("2026-01-01T00:00:00Z".parse().unwrap());
    let without = run(&connector(), &[o1.clone(), mine.clone()], &world);
    let with = run(&connector(), &[o1, mine, stray], &world);
    let _ = format!(
        "R6 without stray: changes {:?} blocks {:?}",
        changes(&without),
        without.objects[&key("mine")].blocks
    );
    let _ = format!(
        "R6 with stray: changes {:?} blocks {:?}",
        changes(&with),
        with.objects[&key("mine")].blocks
    );
    assert_eq!(
        changes(&without),
        changes(&with),
        "a not-allowed object changed the plan"
    );
}

///  roles are parsed case-insensitively for grants but compared raw for the ledger: a
/// roster that spells the role `Admin` makes every release of a raise a no-op.
#[test]
fn roles_compare_whatever_their_case() {
    let world = finance(&[("bob@acme.example", "Admin")]);
    let a = holding_on_p1(
        access("a", AccessMode::Additive, vec![]),
        vec![entry("bob@acme.example", false, Some("user"), "admin")],
    );
    let plan = run(&connector(), &[a], &world);
    let _ = format!(
        "R7 changes: {:?} notes: {:?}",
        changes(&plan),
        plan.objects[&key("a")].notes
    );
    assert_eq!(plan.changes.len(), 1, "the raise must be taken back");
}

///  an object blocked by a Conflict (second Authoritative) that moved from P2 to P1
/// keeps its P2 entries forever: nobody claims them, yet they are not released.
#[test]
fn an_object_blocked_by_a_conflict_still_releases_what_it_no_longer_asks_for() {
    let world = observed(&[
        ("P1", "Finance", "cfo@acme.example", &[(ADMIN, "admin")]),
        (
            "P2",
            "Sales",
            "cfo@acme.example",
            &[(ADMIN, "admin"), ("dave@acme.example", "user")],
        ),
    ]);
    let mut older = access("older", AccessMode::Authoritative, vec![]);
    older.created = Some("2026-01-01T00:00:00Z".parse().unwrap());
    let mut moved = access("moved", AccessMode::Authoritative, vec![]);
    moved.created = Some("2026-02-01T00:00:00Z".parse().unwrap());
    let mut e = entry("dave@acme.example", true, None, "user");
    e.policy_id = "P2".into();
    moved.status = Some(PolicyAccessStatus {
        policy_id: Some("P2".into()),
        managed_members: vec![e],
        ..Default::default()
    });
    let plan = run(&connector(), &[older, moved], &world);
    let _ = format!(
        "R5 changes: {:?} ledger of moved: {:?}",
        changes(&plan),
        plan.objects[&key("moved")].ledger
    );
    assert!(
        plan.changes
            .iter()
            .any(|c| c.policy_id == "P2" && c.kind == ChangeKind::Revoke)
    );
}

///  rule 6 ("a second sync right after a successful one plans nothing"): on an
/// Authoritative policy, releasing a raise first restores the role, and the next sync then
/// revokes the same person as an extra.
#[test]
fn on_an_authoritative_policy_a_released_raise_is_revoked_in_one_sync() {
    let world = finance(&[("bob@acme.example", "admin")]);
    let g = holding_on_p1(
        access("g", AccessMode::Authoritative, vec![]),
        vec![entry("bob@acme.example", false, Some("user"), "admin")],
    );
    let first = run(&connector(), std::slice::from_ref(&g), &world);
    let after = apply(&world, &first);
    let g2 = holding_on_p1(
        access("g", AccessMode::Authoritative, vec![]),
        first.objects[&key("g")].write_ahead_ledger(),
    );
    let second = run(&connector(), &[g2], &after);
    let _ = format!(
        "R8 first: {:?} second: {:?}",
        changes(&first),
        changes(&second)
    );
    assert!(
        second.is_empty(),
        "second sync planned {:?}",
        changes(&second)
    );
}

/// Issue 17, item 4: an object that granted through this connector and now names a
/// connector that does not exist is no evidence that another connector governs the policy.
#[test]
fn an_object_now_naming_a_missing_connector_blocks_nothing() {
    let world = finance(&[("carol@acme.example", "user")]);
    for written_by in [None, Some("finance/acme")] {
        let mut granted = entry("carol@acme.example", true, None, "user");
        granted.connector = written_by.map(str::to_string);
        let mut moved = holding(access("moved", AccessMode::Additive, vec![]), vec![granted]);
        moved.spec.connector_ref.name = "ghost".into();
        if let Some(status) = &mut moved.status {
            status.phase = crate::api::AccessPhase::Synced;
            status.policy_id = Some("P1".into());
        }
        let team = access(
            "team",
            AccessMode::Additive,
            vec![member("alice@acme.example", "user")],
        );
        let plan = run(&connector(), &[moved, team], &world);
        assert_eq!(
            changes(&plan),
            [(
                ChangeKind::Grant,
                "alice@acme.example".into(),
                Some(Role::User)
            )],
            "written by {written_by:?}: {:?}",
            plan.objects[&key("team")].blocks
        );
        assert!(plan.objects[&key("team")].blocks.is_empty());
    }
}

/// An entry counts for the connector that wrote it, whatever its holder names now: the
/// connector that wrote it keeps governing the policy.
#[test]
fn an_entry_counts_for_the_connector_that_wrote_it() {
    let world = finance(&[("carol@acme.example", "user")]);
    let mut granted = entry("carol@acme.example", true, None, "user");
    granted.connector = Some("finance/other".into());
    let mut moved = holding(access("moved", AccessMode::Additive, vec![]), vec![granted]);
    // It names this connector now, but `other` wrote the entry and still exists.
    moved.spec.connector_ref.name = "acme".into();
    let team = access(
        "team",
        AccessMode::Additive,
        vec![member("alice@acme.example", "user")],
    );
    let plan = run(&connector(), &[moved, team], &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert_eq!(
        plan.objects[&key("team")].blocks[0].reason(),
        Reason::Conflict
    );
}

/// Entries this connector keeps are stamped with it.
#[test]
fn kept_and_new_entries_name_their_connector() {
    let world = finance(&[("carol@acme.example", "user")]);
    let team = holding(
        access(
            "team",
            AccessMode::Additive,
            vec![
                member("carol@acme.example", "user"),
                member("alice@acme.example", "user"),
            ],
        ),
        vec![entry("carol@acme.example", true, None, "user")],
    );
    let plan = run(&connector(), &[team], &world);
    let object = &plan.objects[&key("team")];
    assert_eq!(object.ledger[0].connector.as_deref(), Some("finance/acme"));
    assert_eq!(
        object.new_entries[0].connector.as_deref(),
        Some("finance/acme")
    );
}

/// Issue 17, item 1: after a hand-off that also raised the role, the old holder's copy
/// (not yet saved without the entry) and the new holder's copy (saved ahead of the write)
/// both exist. The newest copy wins, whatever the holders' names.
#[test]
fn the_newest_copy_of_a_handed_off_entry_wins() {
    let world = finance(&[("carol@acme.example", "admin")]);
    let mut raised = entry("carol@acme.example", true, None, "admin");
    raised.pending = true;
    raised.prior_role = Some("user".into());
    let settled_raise = entry("carol@acme.example", true, None, "admin");
    for newer in [raised, settled_raise] {
        for (old_name, new_name) in [("a", "b"), ("b", "a")] {
            let old = holding(
                access(old_name, AccessMode::Additive, vec![]),
                vec![entry("carol@acme.example", true, None, "user")],
            );
            let new = holding(
                access(
                    new_name,
                    AccessMode::Additive,
                    vec![member("carol@acme.example", "admin")],
                ),
                vec![newer.clone()],
            );
            let plan = run(&connector(), &[old, new], &world);
            assert!(plan.is_empty(), "{:?}", plan.changes);
            assert!(plan.objects[&key(old_name)].ledger.is_empty());
            let held = &plan.objects[&key(new_name)].ledger;
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].role.as_deref(), Some("admin"), "{held:?}");
            assert!(held[0].added && !held[0].pending);
        }
    }
}

fn shown(role: &str) -> super::super::world::RosterView {
    super::super::world::RosterView {
        role: Role::parse(role),
        raw_role: role.into(),
        submits_to: None,
        employee_id: None,
    }
}

/// `verify` on a pending role change: confirmed only by the role it asked for (or the one
/// it replaced), dropped when the roster shows the role from before the operator, and kept
/// pending when the roster shows something else (a read that proves nothing yet).
#[test]
fn a_pending_role_change_is_confirmed_only_by_what_expensify_shows() {
    use super::super::ledger::verify;
    let mut raise = entry("bob@acme.example", false, Some("user"), "admin");
    raise.pending = true;
    let landed = verify(&raise, Some(&shown("admin"))).expect("kept");
    assert!(!landed.pending);
    assert_eq!(landed.role.as_deref(), Some("admin"));

    assert_eq!(
        verify(&raise, Some(&shown("user"))),
        None,
        "did not land: nothing owned"
    );

    let elsewhere = verify(&raise, Some(&shown("auditor"))).expect("kept");
    assert!(
        elsewhere.pending,
        "not confirmed by a role it never asked for"
    );
    assert_eq!(elsewhere.role.as_deref(), Some("admin"));

    let mut update = raise.clone();
    update.prior_role = Some("auditor".into());
    let fell_back = verify(&update, Some(&shown("auditor"))).expect("kept");
    assert!(!fell_back.pending);
    assert_eq!(fell_back.role.as_deref(), Some("auditor"));
    let confirmed = verify(&update, Some(&shown("admin"))).expect("kept");
    assert_eq!(
        confirmed.prior_role, None,
        "a confirmed entry keeps no role to fall back on"
    );

    assert_eq!(
        verify(&raise, None),
        None,
        "not on the policy: nothing owned"
    );
}

/// A broken object holds the release of an entry it holds, even one Expensify no longer
/// shows as the operator set it (nothing is inferred while the input is broken).
#[test]
fn a_broken_holder_holds_its_own_releases() {
    let world = finance(&[
        ("carol@acme.example", "user"),
        ("dan@acme.example", "admin"),
    ]);
    let mut broken = holding(
        access(
            "broken",
            AccessMode::Additive,
            vec![member("x@acme.example", "nope")],
        ),
        vec![
            entry("carol@acme.example", true, None, "user"),
            entry("dan@acme.example", true, None, "user"),
        ],
    );
    broken.spec.policy.id = Some("P1".into());
    let plan = run(&connector(), &[broken], &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    let object = &plan.objects[&key("broken")];
    assert_eq!(
        object.ledger.len(),
        2,
        "nothing dropped: {:?}",
        object.ledger
    );
    assert!(object.notes.is_empty(), "{:?}", object.notes);
}

/// An object that granted through this connector and now names one that does not exist
/// still holds what it was given: the removal waits, and an object that now asks for the
/// person with another role takes over the entry's origin (not the role the operator set).
#[test]
fn a_stranded_entry_holds_its_removal_and_lends_its_origin() {
    let world = finance(&[("bob@acme.example", "admin")]);
    let mut granted = entry("bob@acme.example", true, None, "admin");
    granted.connector = Some("finance/acme".into());
    let mut stranded = holding(
        access("stranded", AccessMode::Additive, vec![]),
        vec![granted],
    );
    stranded.spec.connector_ref.name = "ghost".into();

    let auditor = access(
        "team",
        AccessMode::Additive,
        vec![member("bob@acme.example", "auditor")],
    );
    let plan = run(&connector(), &[stranded.clone(), auditor], &world);
    // admin -> auditor is a demotion the stranded object may still be asking for: held.
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert_eq!(plan.objects[&key("team")].held, ["bob@acme.example"]);

    let boss = access("boss", AccessMode::Authoritative, vec![]);
    let plan = run(&connector(), &[stranded.clone(), boss], &world);
    assert!(
        plan.is_empty(),
        "not an extra while held: {:?}",
        plan.changes
    );

    let world = finance(&[("bob@acme.example", "user")]);
    let admin = access(
        "team",
        AccessMode::Additive,
        vec![member("bob@acme.example", "admin")],
    );
    let plan = run(&connector(), &[stranded, admin.clone()], &world);
    let entry = &plan.objects[&key("team")].new_entries[0];
    assert!(entry.added, "the operator added bob: {entry:?}");
    assert_eq!(entry.previous_role, None);

    // An origin speaks only for someone still there: bob was there before the operator,
    // then left; granting him again is the operator adding him.
    let mut was_there = entry_of_a_stranded_object("bob@acme.example", false, Some("user"));
    was_there.spec.connector_ref.name = "ghost".into();
    let plan = run(&connector(), &[was_there, admin], &finance(&[]));
    assert_eq!(plan.changes[0].kind, ChangeKind::Grant);
    let entry = &plan.objects[&key("team")].new_entries[0];
    assert!(entry.added, "bob is not there now: {entry:?}");
    assert_eq!(entry.previous_role, None);
}

/// An object holding one stamped entry on P1, as a stranded object would.
fn entry_of_a_stranded_object(email: &str, added: bool, previous: Option<&str>) -> AccessObject {
    let mut stamped = entry(email, added, previous, "admin");
    stamped.connector = Some("finance/acme".into());
    holding(
        access("stranded", AccessMode::Additive, vec![]),
        vec![stamped],
    )
}

/// An entry saved before entries were stamped with their connector, held by an object
/// that names a connector that does not exist: this connector may have written it, so its
/// removal waits; but it lends no origin (whose change it records is not known).
#[test]
fn an_unstamped_entry_of_a_stranded_object_holds_its_removal_but_lends_no_origin() {
    let world = finance(&[("bob@acme.example", "admin")]);
    let mut stranded = holding(
        access("stranded", AccessMode::Additive, vec![]),
        vec![entry("bob@acme.example", true, None, "admin")],
    );
    stranded.spec.connector_ref.name = "ghost".into();
    let boss = access("boss", AccessMode::Authoritative, vec![]);
    let plan = run(&connector(), &[stranded.clone(), boss], &world);
    assert!(plan.is_empty(), "held: {:?}", plan.changes);
    assert_eq!(plan.objects[&key("boss")].held, ["bob@acme.example"]);

    let world = finance(&[("bob@acme.example", "user")]);
    let admin = access(
        "team",
        AccessMode::Additive,
        vec![member("bob@acme.example", "admin")],
    );
    let plan = run(&connector(), &[stranded, admin], &world);
    let entry = &plan.objects[&key("team")].new_entries[0];
    assert!(!entry.added, "bob was there: {entry:?}");
    assert_eq!(entry.previous_role, Some("user".into()));
}

/// A broken object whose policy is unknown holds the removal of the people it lists (it
/// may be the one asking for them) while their `expiresAt` is ahead, and of nobody else.
#[test]
fn an_unresolvable_object_holds_the_people_it_lists() {
    let world = finance(&[("carol@acme.example", "user"), ("dan@acme.example", "user")]);
    // carol's entry runs on; dan's has ended, so `lost` asks for him no more.
    let mut carol = member("carol@acme.example", "user");
    carol.expires_at = Some("2026-06-30T00:00:00Z".into());
    let mut dan = member("dan@acme.example", "user");
    // Exactly now: ended (as `asks::alive` has it), so not asked for.
    dan.expires_at = Some("2026-06-01T00:00:00Z".into());
    let mut lost = access("lost", AccessMode::Additive, vec![carol, dan]);
    lost.spec.policy = PolicySelector {
        id: None,
        name: Some("Nope".into()),
    };
    let gone = holding(
        access("gone", AccessMode::Additive, vec![]),
        vec![
            entry("carol@acme.example", true, None, "user"),
            entry("dan@acme.example", true, None, "user"),
        ],
    );
    let plan = run(&connector(), &[lost, gone], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "dan@acme.example".into(), None)]
    );
    assert_eq!(plan.objects[&key("gone")].held, ["carol@acme.example"]);
}

/// Independent review: an unresolvable object held the people it lists on every policy, not
/// only on the policies its namespace may touch. A tenant in `sales` that lists finance's
/// just-in-time admin in an object naming a policy that does not exist keeps that admin
/// raised on finance's Authoritative policy (closed to `sales`) for as long as it likes.
#[test]
fn a_broken_object_does_not_freeze_an_expiry_on_a_policy_closed_to_its_namespace() {
    let mut acme = connector();
    acme.spec.allowed_namespaces = vec!["sales".into()];
    let world = finance(&[("bob@acme.example", "admin")]);
    let mut expired = member("bob@acme.example", "admin");
    expired.expires_at = Some("2026-05-31T00:00:00Z".into());
    let jit = holding(
        access("jit", AccessMode::Authoritative, vec![expired]),
        vec![entry("bob@acme.example", false, Some("user"), "admin")],
    );
    let mut hostile = access(
        "hostile",
        AccessMode::Additive,
        vec![member("bob@acme.example", "admin")],
    );
    hostile.key = ObjectKey::new("sales", "hostile");
    hostile.spec.connector_ref.namespace = Some(NS.into());
    hostile.spec.policy = PolicySelector {
        id: None,
        name: Some("Nope".into()),
    };
    let plan = run(&acme, &[jit, hostile], &world);
    assert!(
        plan.changes
            .iter()
            .any(|c| c.email == "bob@acme.example" && c.is_removal()),
        "bob's expired raise on finance's closed policy is frozen by another namespace's broken object: {:?}",
        plan.objects[&key("jit")].blocks
    );
}

/// `verify` on a settled entry: kept while the role the operator set stands or another
/// role someone else set stands; dropped once the person is back where they started
/// (nothing left to own), and never for someone the operator added.
#[test]
fn a_settled_entry_is_dropped_once_the_person_is_back_where_they_started() {
    use super::super::ledger::verify;
    let raise = entry("bob@acme.example", false, Some("user"), "admin");
    assert_eq!(verify(&raise, Some(&shown("admin"))), Some(raise.clone()));
    assert_eq!(verify(&raise, Some(&shown("auditor"))), Some(raise.clone()));
    assert_eq!(verify(&raise, Some(&shown("User"))), None);

    let added = entry("bob@acme.example", true, Some("user"), "admin");
    assert_eq!(verify(&added, Some(&shown("user"))), Some(added.clone()));
}

/// Two requests raise alice (user) to admin and auditor; the higher ends first: she goes
/// to the role the remaining request asks, and to user when it ends too.
#[test]
fn of_two_overlapping_requests_the_higher_ending_first_leaves_the_lower_raise() {
    let request = |name: &str, role: &str| {
        let mut object = access(name, AccessMode::Additive, vec![member(ALICE_R, role)]);
        object.key = ObjectKey::for_request(NS, name);
        object
    };
    let mut world = finance(&[(ALICE_R, "user")]);
    let mut objects = vec![request("r1", "admin"), request("r2", "auditor")];
    let plan = run(&connector(), &objects, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE_R.into(), Some(Role::Admin))]
    );
    objects = with_status(&objects, &plan, &world);
    world = apply(&world, &plan);

    objects[0].spec.members.clear();
    let plan = run(&connector(), &objects, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE_R.into(), Some(Role::Auditor))]
    );
    objects = with_status(&objects, &plan, &world);
    world = apply(&world, &plan);

    objects[1].spec.members.clear();
    let plan = run(&connector(), &objects, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::RoleChange, ALICE_R.into(), Some(Role::User))]
    );
}

/// A raise someone else has since replaced is theirs: a request asking a lower role that
/// takes over the entry never sets the person down to it.
#[test]
fn a_request_taking_over_a_raise_someone_changed_never_demotes() {
    let mut raised = entry(ALICE_R, false, Some("user"), "admin");
    raised.connector = Some("finance/acme".into());
    let mut first = holding(access("r1", AccessMode::Additive, vec![]), vec![raised]);
    first.key = ObjectKey::for_request(NS, "r1");
    let mut second = access("r2", AccessMode::Additive, vec![member(ALICE_R, "user")]);
    second.key = ObjectKey::for_request(NS, "r2");
    // Someone set alice to auditor after the operator raised her to admin.
    let world = finance(&[(ALICE_R, "auditor")]);
    let plan = run(&connector(), &[first, second], &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
}

const ALICE_R: &str = "alice@acme.example";

/// A release says whether its holder is being deleted; only its own holder's deletion
/// counts, not another object's.
#[test]
fn a_release_names_its_own_holders_deletion_and_no_other() {
    let world = finance(&[("x@acme.example", "user"), ("y@acme.example", "user")]);
    let mut gone = holding(
        access("gone", AccessMode::Additive, vec![]),
        vec![entry("x@acme.example", true, None, "user")],
    );
    gone.deleting = true;
    let team = holding(
        access("team", AccessMode::Additive, vec![]),
        vec![entry("y@acme.example", true, None, "user")],
    );
    let plan = run(&connector(), &[gone, team], &world);
    let reasons: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.email.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "x@acme.example",
                "PolicyAccess finance/gone deleted (deletionPolicy Revoke): taking back what it granted"
            ),
            (
                "y@acme.example",
                "granted by finance/team, asked for by nobody now"
            ),
        ]
    );
}

/// An entry another connector wrote, held by an object no connector takes, is that
/// connector's business: it neither holds this connector's removals nor lends an origin.
#[test]
fn an_entry_another_connector_wrote_is_not_stranded_here() {
    let mut theirs = entry("bob@acme.example", true, None, "admin");
    theirs.connector = Some("finance/retired".into());
    let mut stray = holding(access("stray", AccessMode::Additive, vec![]), vec![theirs]);
    stray.spec.connector_ref.name = "ghost".into();
    let boss = access("boss", AccessMode::Authoritative, vec![]);
    let world = finance(&[("bob@acme.example", "admin")]);
    let plan = run(&connector(), &[stray, boss], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "bob@acme.example".into(), None)]
    );
}

/// A demotion the listing object asks for waits while a broken object could be asking for
/// the higher role: one on the same policy, or one whose policy is unknown that lists the
/// person. Each kind of hold alone is enough.
#[test]
fn a_demotion_waits_for_each_kind_of_broken_object() {
    let world = finance(&[("bob@acme.example", "admin")]);
    let lower = access(
        "team",
        AccessMode::Additive,
        vec![member("bob@acme.example", "user")],
    );
    let demotion = [(
        ChangeKind::RoleChange,
        "bob@acme.example".to_string(),
        Some(Role::User),
    )];
    assert_eq!(
        changes(&run(&connector(), std::slice::from_ref(&lower), &world)),
        demotion
    );

    let mut on_the_policy = access(
        "broken",
        AccessMode::Additive,
        vec![member("someone@acme.example", "nope")],
    );
    on_the_policy.spec.policy.id = Some("P1".into());
    let mut listing = access(
        "lost",
        AccessMode::Additive,
        vec![member("bob@acme.example", "admin")],
    );
    listing.spec.policy = PolicySelector {
        id: None,
        name: Some("Nope".into()),
    };
    for broken in [on_the_policy, listing] {
        let plan = run(&connector(), &[lower.clone(), broken.clone()], &world);
        assert!(plan.is_empty(), "{}: {:?}", broken.key, plan.changes);
        assert_eq!(plan.objects[&key("team")].held, ["bob@acme.example"]);
    }
}

/// Writers that disagree leave the person alone, but not at a role the operator set that
/// none of them asks for (a request's raise that ended into the disagreement): it comes
/// down to the highest role still asked, and the disagreement stays a `Conflict`.
#[test]
fn a_raise_nobody_asks_for_comes_down_even_while_writers_disagree() {
    let world = finance(&[("carol@acme.example", "admin")]);
    let a = holding(
        access(
            "a",
            AccessMode::Additive,
            vec![member("carol@acme.example", "auditor")],
        ),
        vec![entry("carol@acme.example", true, None, "admin")],
    );
    let b = access(
        "b",
        AccessMode::Additive,
        vec![member("carol@acme.example", "user")],
    );
    let plan = run(&connector(), &[a.clone(), b.clone()], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "carol@acme.example".into(),
            Some(Role::Auditor)
        )]
    );
    let held = plan.objects[&key("a")].write_ahead_ledger();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].role.as_deref(), Some("auditor"));
    assert!(held[0].added && held[0].pending);
    for name in ["a", "b"] {
        let blocks = &plan.objects[&key(name)].blocks;
        assert!(
            matches!(blocks.first(), Some(Block::Conflict(m)) if m.contains("carol@acme.example")),
            "{blocks:?}"
        );
    }

    // Someone changed the role by hand (the operator set auditor): left as they are.
    let by_hand = holding(
        access(
            "a",
            AccessMode::Additive,
            vec![member("carol@acme.example", "auditor")],
        ),
        vec![entry("carol@acme.example", true, None, "auditor")],
    );
    assert!(
        run(&connector(), &[by_hand, b.clone()], &world)
            .changes
            .is_empty()
    );
    // A writer asks for the role the operator set: a plain disagreement, left alone.
    let asks_admin = access(
        "b",
        AccessMode::Additive,
        vec![member("carol@acme.example", "admin")],
    );
    assert!(
        run(&connector(), &[a, asks_admin], &world)
            .changes
            .is_empty()
    );
}

/// A holder that only keeps the person (ObserveOnly) keeps no raise it does not list: a
/// request's raise written over its entry goes back to where the person started when the
/// request ends. A holder that writes sets the role it asks for instead.
#[test]
fn a_holder_that_writes_nothing_keeps_no_raise_it_does_not_list() {
    let world = finance(&[("aud@acme.example", "admin")]);
    let raised = vec![entry("aud@acme.example", false, Some("auditor"), "admin")];
    let observing = holding(
        access(
            "a",
            AccessMode::ObserveOnly,
            vec![member("aud@acme.example", "user")],
        ),
        raised.clone(),
    );
    let plan = run(&connector(), &[observing], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "aud@acme.example".into(),
            Some(Role::Auditor)
        )]
    );
    let writing = holding(
        access(
            "a",
            AccessMode::Additive,
            vec![member("aud@acme.example", "user")],
        ),
        raised.clone(),
    );
    // Another writer asks the same: the holder that writes keeps its entry.
    let also_writing = access(
        "0-first",
        AccessMode::Additive,
        vec![member("aud@acme.example", "user")],
    );
    let plan = run(&connector(), &[also_writing, writing], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "aud@acme.example".into(),
            Some(Role::User)
        )]
    );
    assert_eq!(plan.objects[&key("a")].write_ahead_ledger().len(), 1);
    assert!(
        plan.objects[&key("0-first")]
            .write_ahead_ledger()
            .is_empty()
    );
    // Listed at the raised role: kept.
    let listing_admin = holding(
        access(
            "a",
            AccessMode::ObserveOnly,
            vec![member("aud@acme.example", "admin")],
        ),
        raised,
    );
    assert!(
        run(&connector(), &[listing_admin], &world)
            .changes
            .is_empty()
    );
}

/// Where only objects that write nothing still list the person, a raise made for a claim
/// that ended comes down to the highest role they list below it: what they keep, never
/// below where the person started (review F3). A person the operator added stays, at that
/// role (review F4). A role listed only above the one set keeps the person as they are.
#[test]
fn a_raise_over_what_objects_that_write_nothing_list_comes_down_to_what_they_list() {
    let world = finance(&[("aud@acme.example", "admin")]);
    let observing = |listed: &str, raised: ManagedMember| {
        holding(
            access(
                "o",
                AccessMode::ObserveOnly,
                vec![member("aud@acme.example", listed)],
            ),
            vec![raised],
        )
    };
    let expect_lowered = |plan: &Plan, role: Role, added: bool| {
        assert_eq!(
            changes(plan),
            [(
                ChangeKind::RoleChange,
                "aud@acme.example".into(),
                Some(role)
            )]
        );
        let kept = plan.objects[&key("o")].write_ahead_ledger();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].role.as_deref(), Some(role.as_str()));
        assert_eq!(kept[0].added, added);
        assert!(kept[0].pending);
    };
    // Started as user, raised to auditor (kept by the ObserveOnly object), then to admin
    // for a request that ended: back to auditor, not to user.
    let raised = entry("aud@acme.example", false, Some("user"), "admin");
    let plan = run(
        &connector(),
        &[observing("auditor", raised.clone())],
        &world,
    );
    expect_lowered(&plan, Role::Auditor, false);
    assert_eq!(
        plan.objects[&key("o")].write_ahead_ledger()[0]
            .previous_role
            .as_deref(),
        Some("user"),
        "where the person started is still known"
    );
    // The same when the entry is still held by the object the request wrote through.
    let requester = holding(access("r", AccessMode::Additive, vec![]), vec![raised]);
    let listing = access(
        "o",
        AccessMode::ObserveOnly,
        vec![member("aud@acme.example", "auditor")],
    );
    let plan = run(&connector(), &[listing, requester], &world);
    expect_lowered(&plan, Role::Auditor, false);
    // Like a release, the old entry stays where it was until the change lands (a guard
    // may hold it back); the next sync keeps the lowered copy only.
    assert_eq!(plan.objects[&key("r")].ledger.len(), 1);
    assert!(plan.objects[&key("r")].new_entries.is_empty());

    // Added as admin for a request; the ObserveOnly object lists user: stays, as user.
    let added = entry("aud@acme.example", true, None, "admin");
    let plan = run(&connector(), &[observing("user", added.clone())], &world);
    expect_lowered(&plan, Role::User, true);
    // Added as auditor, listed only as admin: kept as it is (nothing writes the raise).
    let world_auditor = finance(&[("aud@acme.example", "auditor")]);
    let added_auditor = entry("aud@acme.example", true, None, "auditor");
    let plan = run(
        &connector(),
        &[observing("admin", added_auditor)],
        &world_auditor,
    );
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert_eq!(plan.objects[&key("o")].write_ahead_ledger().len(), 1);
    // Raised from user to auditor, listed only as admin: the raise is kept too.
    let raised_auditor = entry("aud@acme.example", false, Some("user"), "auditor");
    let plan = run(
        &connector(),
        &[observing("admin", raised_auditor)],
        &world_auditor,
    );
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert_eq!(plan.objects[&key("o")].write_ahead_ledger().len(), 1);
    // Demoted from admin to user, listed as auditor: a demotion is taken back whole.
    let world_user = finance(&[("aud@acme.example", "user")]);
    let demoted = entry("aud@acme.example", false, Some("admin"), "user");
    let plan = run(&connector(), &[observing("auditor", demoted)], &world_user);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "aud@acme.example".into(),
            Some(Role::Admin)
        )]
    );
}

/// Lowering a raise to what objects that write nothing list is a removal like any other:
/// protected people are left as they are, someone else's change is theirs, a broken
/// manifest holds it, and a suspended holder freezes it.
#[test]
fn lowering_to_what_objects_that_write_nothing_list_obeys_every_removal_rule() {
    let lister =
        |name: &str, mode: AccessMode, email: &str| access(name, mode, vec![member(email, "user")]);
    // Protected.
    let world = finance(&[("ceo@acme.example", "admin")]);
    let plan = run(
        &connector(),
        &[holding(
            lister("o", AccessMode::ObserveOnly, "ceo@acme.example"),
            vec![entry("ceo@acme.example", true, None, "admin")],
        )],
        &world,
    );
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    // Someone else set another role since: theirs.
    let world = finance(&[("aud@acme.example", "auditor")]);
    let plan = run(
        &connector(),
        &[holding(
            lister("o", AccessMode::ObserveOnly, "aud@acme.example"),
            vec![entry("aud@acme.example", true, None, "admin")],
        )],
        &world,
    );
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    // A broken object on the policy may be asking for the higher role: held.
    let world = finance(&[("aud@acme.example", "admin")]);
    let mut broken = access(
        "broken",
        AccessMode::Additive,
        vec![member("x@acme.example", "nope")],
    );
    broken.spec.policy.id = Some("P1".into());
    let plan = run(
        &connector(),
        &[
            broken,
            holding(
                lister("o", AccessMode::ObserveOnly, "aud@acme.example"),
                vec![entry("aud@acme.example", true, None, "admin")],
            ),
        ],
        &world,
    );
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert_eq!(plan.objects[&key("o")].held, ["aud@acme.example"]);
    // A suspended holder freezes its entry.
    let mut suspended = lister("o", AccessMode::Additive, "aud@acme.example");
    suspended.spec.suspend = true;
    let plan = run(
        &connector(),
        &[holding(
            suspended,
            vec![entry("aud@acme.example", true, None, "admin")],
        )],
        &world,
    );
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
}
