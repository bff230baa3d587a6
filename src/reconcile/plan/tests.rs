//! Every planning rule as a unit test, plus property tests over random worlds.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::api::Reason;
use crate::api::{
    ALLOW_MASS_REVOCATION, AccessMode, ConnectorRef, DeletionPolicy, DriftKind,
    ExpensifyConnectorSpec, ExpensifyConnectorStatus, ManagedMember, MemberSpec, PolicyAccessSpec,
    PolicyAccessStatus, PolicySelector, SecretRef,
};
use crate::expensify::{PolicySummary, Role, RosterEntry};
use crate::reconcile::model::{AccessObject, ConnectorObject, ObjectKey, Observed};

const NS: &str = "finance";
const ADMIN: &str = "it@acme.example";

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn connector() -> ConnectorObject {
    ConnectorObject {
        key: ObjectKey::new(NS, "acme"),
        generation: Some(1),
        annotations: BTreeMap::new(),
        spec: ExpensifyConnectorSpec {
            credentials_secret_ref: SecretRef {
                name: "creds".into(),
                user_id_key: "partnerUserID".into(),
                user_secret_key: "partnerUserSecret".into(),
            },
            endpoint: crate::expensify::DEFAULT_ENDPOINT.into(),
            admin_email: ADMIN.into(),
            owners: Vec::new(),
            sync_interval: "10m".into(),
            max_revocations_per_sync: 10,
            protected_emails: vec!["ceo@acme.example".into()],
            allowed_namespaces: vec![],
            tenants: vec![],
            suspend: false,
            notifications: None,
        },
        status: None,
    }
}

/// `(id, name, owner, [(email, role)])` of one policy.
type PolicyFixture<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

/// Policies with their rosters; the owner is added as admin when not listed.
fn observed(policies: &[PolicyFixture]) -> Observed {
    let mut world = Observed::default();
    for (id, name, owner, roster) in policies {
        world.policies.push(PolicySummary {
            id: id.to_string(),
            name: name.to_string(),
            plan: "corporate".into(),
            owner: owner.to_string(),
            output_currency: "USD".into(),
            caller_role: "admin".into(),
        });
        let mut entries: Vec<RosterEntry> = roster
            .iter()
            .map(|(email, role)| RosterEntry {
                email: email.to_string(),
                role: role.to_string(),
                submits_to: Some(owner.to_string()),
                forwards_to: None,
                employee_id: None,
            })
            .collect();
        if !roster.iter().any(|(e, _)| e == owner) {
            entries.push(RosterEntry {
                email: owner.to_string(),
                role: "admin".into(),
                submits_to: Some(owner.to_string()),
                forwards_to: None,
                employee_id: None,
            });
        }
        world.rosters.insert(id.to_string(), entries);
    }
    world
}

fn finance(roster: &[(&str, &str)]) -> Observed {
    let mut with_admin = vec![(ADMIN, "admin")];
    with_admin.extend_from_slice(roster);
    observed(&[("P1", "Finance", "cfo@acme.example", &with_admin)])
}

fn member(email: &str, role: &str) -> MemberSpec {
    MemberSpec {
        email: email.into(),
        role: Some(role.into()),
        submits_to: None,
        employee_id: None,
        expires_at: None,
    }
}

fn access(name: &str, mode: AccessMode, members: Vec<MemberSpec>) -> AccessObject {
    AccessObject {
        key: ObjectKey::new(NS, name),
        generation: Some(1),
        created: None,
        annotations: BTreeMap::new(),
        spec: PolicyAccessSpec {
            requests: None,
            connector_ref: ConnectorRef {
                name: "acme".into(),
                namespace: None,
            },
            policy: PolicySelector {
                id: Some("P1".into()),
                name: None,
            },
            mode,
            deletion_policy: DeletionPolicy::Revoke,
            allow_from: Vec::new(),
            suspend: false,
            members,
        },
        deleting: false,
        status: None,
    }
}

/// An object whose ledger says it added these people on P1 (roles not recorded, as in
/// statuses converted from the old flat list).
fn managing(mut object: AccessObject, emails: &[&str]) -> AccessObject {
    object.status = Some(PolicyAccessStatus {
        managed_members: emails
            .iter()
            .map(|e| ManagedMember {
                policy_id: "P1".into(),
                email: e.to_string(),
                added: true,
                previous_role: None,
                role: None,
                pending: false,
                prior_role: None,
                connector: None,
            })
            .collect(),
        ..PolicyAccessStatus::default()
    });
    object
}

/// The object with these ledger entries in its status.
fn holding(mut object: AccessObject, entries: Vec<ManagedMember>) -> AccessObject {
    object.status = Some(PolicyAccessStatus {
        managed_members: entries,
        ..PolicyAccessStatus::default()
    });
    object
}

/// The emails of an object's ledger.
fn ledger_emails(object: &ObjectPlan) -> BTreeSet<String> {
    object.ledger.iter().map(|e| e.email.clone()).collect()
}

/// The connectors that exist in these tests (besides the one planned): `ghost` and
/// `elsewhere` are names objects give that no connector has.
const OTHER_CONNECTORS: [&str; 4] = ["acme", "other", "a-first", "aaa"];

fn run(connector: &ConnectorObject, accesses: &[AccessObject], world: &Observed) -> Plan {
    run_scoped(connector, accesses, world, Scope::Everything)
}

fn run_scoped(
    connector: &ConnectorObject,
    accesses: &[AccessObject],
    world: &Observed,
    scope: Scope,
) -> Plan {
    let connectors: Vec<ConnectorObject> = OTHER_CONNECTORS
        .iter()
        .map(|name| ConnectorObject {
            key: ObjectKey::new(NS, *name),
            ..connector.clone()
        })
        .collect();
    plan(PlanInput {
        requests: crate::reconcile::Requests::NONE,
        connector,
        connectors: &connectors,
        accesses,
        observed: world,
        now: now(),
        inventory_complete: true,
        scope,
        unverified: &[],
    })
}

fn changes(plan: &Plan) -> Vec<(ChangeKind, String, Option<Role>)> {
    plan.changes
        .iter()
        .map(|c| (c.kind, c.email.clone(), c.role))
        .collect()
}

/// What Expensify would look like once `plan` is applied.
fn apply(world: &Observed, plan: &Plan) -> Observed {
    let mut next = world.clone();
    for change in &plan.changes {
        let roster = next.rosters.get_mut(&change.policy_id).unwrap();
        roster.retain(|e| crate::email::normalize(&e.email) != change.email);
        if change.kind != ChangeKind::Revoke {
            roster.push(RosterEntry {
                email: change.email.clone(),
                role: change.role.unwrap().to_string(),
                submits_to: Some(change.manager_email.clone()),
                forwards_to: None,
                employee_id: change.employee_id.clone(),
            });
        }
    }
    next
}

/// The objects as they would be once the write-ahead ledger of `plan` was saved; the next
/// plan checks it against what Expensify then shows.
fn with_status(accesses: &[AccessObject], plan: &Plan, _after: &Observed) -> Vec<AccessObject> {
    accesses
        .iter()
        .map(|a| {
            let mut next = a.clone();
            let Some(object_plan) = plan.objects.get(&a.key) else {
                return next;
            };
            let mut status = a.status.clone().unwrap_or_default();
            status.managed_members = object_plan.write_ahead_ledger();
            status.last_handled_mass_revocation = object_plan
                .mass_revocation_used
                .clone()
                .or(status.last_handled_mass_revocation);
            next.status = Some(status);
            next
        })
        .collect()
}

#[test]
fn additive_grants_and_changes_roles_then_is_idempotent() {
    let world = finance(&[("bob@acme.example", "user")]);
    let accesses = vec![access(
        "team",
        AccessMode::Additive,
        vec![
            member("alice@acme.example", "admin"),
            member("Bob@acme.example", "auditor"),
        ],
    )];
    let first = run(&connector(), &accesses, &world);
    assert_eq!(
        changes(&first),
        [
            (
                ChangeKind::Grant,
                "alice@acme.example".into(),
                Some(Role::Admin)
            ),
            (
                ChangeKind::RoleChange,
                "bob@acme.example".into(),
                Some(Role::Auditor)
            ),
        ]
    );
    let grant = &first.changes[0];
    assert_eq!(
        grant.manager_email, "cfo@acme.example",
        "newcomers submit to the owner"
    );
    assert_eq!(grant.requested_by, ObjectKey::new(NS, "team"));
    let object = &first.objects[&ObjectKey::new(NS, "team")];
    assert_eq!(object.ledger, [], "nothing is owned before a write");
    let entries: Vec<(String, bool, Option<String>, bool)> = object
        .new_entries
        .iter()
        .map(|e| (e.email.clone(), e.added, e.previous_role.clone(), e.pending))
        .collect();
    assert_eq!(
        entries,
        [
            ("alice@acme.example".to_string(), true, None, true),
            (
                "bob@acme.example".to_string(),
                false,
                Some("user".to_string()),
                true
            ),
        ],
        "what it grants and what it raises, pending until read back"
    );
    assert_eq!((object.desired, object.in_sync), (2, 0));

    let after = apply(&world, &first);
    let second = run(
        &connector(),
        &with_status(&accesses, &first, &after),
        &after,
    );
    assert!(second.is_empty(), "{:?}", second.changes);
    let object = &second.objects[&ObjectKey::new(NS, "team")];
    assert_eq!((object.desired, object.in_sync), (2, 2));
    assert!(object.drift.is_empty());
}

#[test]
fn additive_revokes_only_what_it_granted() {
    let world = finance(&[
        ("alice@acme.example", "user"),
        ("carol@acme.example", "user"),
    ]);
    let accesses = vec![managing(
        access("team", AccessMode::Additive, vec![]),
        &["alice@acme.example"],
    )];
    let plan = run(&connector(), &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "alice@acme.example".into(), None)]
    );
    assert_eq!(plan.changes[0].old_role.as_deref(), Some("user"));
    // Its drift names what it holds and no longer asks for, and nobody else.
    let drift: Vec<(&str, DriftKind)> = plan.objects[&accesses[0].key]
        .drift
        .iter()
        .map(|d| (d.email.as_str(), d.kind))
        .collect();
    assert_eq!(drift, [("alice@acme.example", DriftKind::Extra)]);
}

#[test]
fn additive_drift_is_silent_on_people_it_holds_and_still_asks_for() {
    let world = finance(&[("alice@acme.example", "user")]);
    let accesses = vec![managing(
        access(
            "team",
            AccessMode::Additive,
            vec![member("alice@acme.example", "user")],
        ),
        &["alice@acme.example"],
    )];
    let plan = run(&connector(), &accesses, &world);
    assert!(plan.changes.is_empty());
    let object = &plan.objects[&accesses[0].key];
    assert!(object.drift.is_empty(), "{:?}", object.drift);
    assert_eq!((object.desired, object.in_sync), (1, 1));
}

#[test]
fn additive_does_not_revoke_someone_another_object_asks_for() {
    let world = finance(&[("alice@acme.example", "user")]);
    let accesses = vec![
        managing(
            access("old", AccessMode::Additive, vec![]),
            &["alice@acme.example"],
        ),
        access(
            "new",
            AccessMode::Additive,
            vec![member("alice@acme.example", "user")],
        ),
    ];
    assert!(run(&connector(), &accesses, &world).is_empty());
}

#[test]
fn authoritative_revokes_everyone_unasked_but_owner_admin_and_protected() {
    let world = finance(&[
        ("alice@acme.example", "user"),
        ("mallory@acme.example", "admin"),
        ("ceo@acme.example", "user"),
    ]);
    let accesses = vec![access(
        "team",
        AccessMode::Authoritative,
        vec![member("alice@acme.example", "user")],
    )];
    let plan = run(&connector(), &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "mallory@acme.example".into(), None)]
    );
    let drift = &plan.objects[&ObjectKey::new(NS, "team")].drift;
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].kind, DriftKind::Extra);
}

#[test]
fn observe_only_and_suspended_write_nothing_but_report_drift() {
    let world = finance(&[
        ("mallory@acme.example", "admin"),
        ("bob@acme.example", "user"),
    ]);
    let observer = access(
        "watch",
        AccessMode::ObserveOnly,
        vec![
            member("alice@acme.example", "user"),
            member("bob@acme.example", "admin"),
        ],
    );
    let mut suspended = managing(
        access(
            "paused",
            AccessMode::Authoritative,
            vec![member("zed@acme.example", "user")],
        ),
        &["bob@acme.example"],
    );
    suspended.spec.suspend = true;
    suspended.spec.policy = PolicySelector {
        id: Some("P1".into()),
        name: None,
    };
    let plan = run(&connector(), &[observer, suspended], &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    let kinds: Vec<DriftKind> = plan.objects[&ObjectKey::new(NS, "watch")]
        .drift
        .iter()
        .map(|d| d.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            DriftKind::Missing,
            DriftKind::Extra,
            DriftKind::RoleMismatch
        ]
    );
    assert!(
        ledger_emails(&plan.objects[&ObjectKey::new(NS, "paused")]).contains("bob@acme.example"),
        "inventory kept while suspended"
    );
}

#[test]
fn policy_by_name_unknown_and_ambiguous() {
    let world = observed(&[
        ("P1", "Finance", "cfo@acme.example", &[(ADMIN, "admin")]),
        ("P2", "Sales", "cfo@acme.example", &[(ADMIN, "admin")]),
        ("P3", "Sales", "cfo@acme.example", &[(ADMIN, "admin")]),
    ]);
    let mut by_name = access(
        "by-name",
        AccessMode::Additive,
        vec![member("a@acme.example", "user")],
    );
    by_name.spec.policy = PolicySelector {
        id: None,
        name: Some("Finance".into()),
    };
    let mut ambiguous = access(
        "ambiguous",
        AccessMode::Additive,
        vec![member("a@acme.example", "user")],
    );
    ambiguous.spec.policy = PolicySelector {
        id: None,
        name: Some("Sales".into()),
    };
    let mut unknown = access(
        "unknown",
        AccessMode::Additive,
        vec![member("a@acme.example", "user")],
    );
    unknown.spec.policy = PolicySelector {
        id: Some("NOPE".into()),
        name: None,
    };
    let plan = run(&connector(), &[by_name, ambiguous, unknown], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Grant, "a@acme.example".into(), Some(Role::User))]
    );
    assert_eq!(plan.changes[0].policy_id, "P1");
    let problem = |name: &str| plan.objects[&ObjectKey::new(NS, name)].problems[0].to_string();
    assert!(
        problem("ambiguous").contains("2 policies are named \"Sales\" (P2, P3)"),
        "{}",
        problem("ambiguous")
    );
    assert!(
        problem("unknown").contains("not among the 3 policies"),
        "{}",
        problem("unknown")
    );
}

#[test]
fn expired_members_are_absent_and_the_next_expiry_is_reported() {
    let world = finance(&[("temp@acme.example", "user")]);
    let mut expired = member("temp@acme.example", "user");
    expired.expires_at = Some("2026-05-01T00:00:00Z".into());
    let mut later = member("jit@acme.example", "user");
    later.expires_at = Some("2026-07-01T00:00:00Z".into());
    let mut sooner = member("jit2@acme.example", "user");
    sooner.expires_at = Some("2026-06-15T12:00:00Z".into());
    let accesses = vec![managing(
        access("jit", AccessMode::Additive, vec![expired, later, sooner]),
        &["temp@acme.example"],
    )];
    let plan = run(&connector(), &accesses, &world);
    assert_eq!(
        changes(&plan),
        [
            (
                ChangeKind::Grant,
                "jit2@acme.example".into(),
                Some(Role::User)
            ),
            (
                ChangeKind::Grant,
                "jit@acme.example".into(),
                Some(Role::User)
            ),
            (ChangeKind::Revoke, "temp@acme.example".into(), None),
        ]
    );
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "jit")].next_expiry,
        Some("2026-06-15T12:00:00Z".parse().unwrap())
    );
}

#[test]
fn protected_people_are_never_demoted_or_revoked() {
    let world = finance(&[("ceo@acme.example", "admin")]);
    let accesses = vec![managing(
        access(
            "team",
            AccessMode::Additive,
            vec![member("cfo@acme.example", "user"), member(ADMIN, "auditor")],
        ),
        &["ceo@acme.example"],
    )];
    let plan = run(&connector(), &accesses, &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    let blocks = &plan.objects[&ObjectKey::new(NS, "team")].blocks;
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().all(|b| b.reason() == Reason::Protected));
}

#[test]
fn protected_people_are_not_even_promoted() {
    // Protected people never change, so that taking everything back can never demote them.
    let world = finance(&[("ceo@acme.example", "user")]);
    let accesses = vec![access(
        "team",
        AccessMode::Additive,
        vec![member("ceo@acme.example", "admin")],
    )];
    let plan = run(&connector(), &accesses, &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    let blocks = &plan.objects[&ObjectKey::new(NS, "team")].blocks;
    assert_eq!(
        blocks.iter().map(Block::reason).collect::<Vec<_>>(),
        [Reason::Protected]
    );
}

#[test]
fn conflicting_roles_leave_the_person_alone_and_flag_both_objects() {
    let world = finance(&[("bob@acme.example", "user")]);
    let accesses = vec![
        access(
            "a",
            AccessMode::Additive,
            vec![
                member("bob@acme.example", "admin"),
                member("x@acme.example", "user"),
            ],
        ),
        access(
            "b",
            AccessMode::Additive,
            vec![member("bob@acme.example", "auditor")],
        ),
    ];
    let plan = run(&connector(), &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Grant, "x@acme.example".into(), Some(Role::User))]
    );
    for name in ["a", "b"] {
        let blocks = &plan.objects[&ObjectKey::new(NS, name)].blocks;
        assert!(
            matches!(&blocks[0], Block::Conflict(m) if m.contains("bob@acme.example")),
            "{blocks:?}"
        );
    }
}

#[test]
fn the_newer_of_two_authoritative_objects_is_blocked() {
    let world = finance(&[("mallory@acme.example", "user")]);
    let mut older = access(
        "older",
        AccessMode::Authoritative,
        vec![member("a@acme.example", "user")],
    );
    older.created = Some("2026-01-01T00:00:00Z".parse().unwrap());
    let mut newer = access(
        "aaa-newer",
        AccessMode::Authoritative,
        vec![member("b@acme.example", "user")],
    );
    newer.created = Some("2026-02-01T00:00:00Z".parse().unwrap());
    let plan = run(&connector(), &[newer, older], &world);
    assert_eq!(
        changes(&plan),
        [
            (ChangeKind::Grant, "a@acme.example".into(), Some(Role::User)),
            (ChangeKind::Revoke, "mallory@acme.example".into(), None)
        ],
        "b is still asked for, so not revoked; the blocked object writes nothing"
    );
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "aaa-newer")].blocks[0].reason(),
        Reason::Conflict
    );
}

fn many_extras(count: usize) -> Observed {
    let people: Vec<(String, &str)> = (0..count)
        .map(|i| (format!("p{i}@acme.example"), "user"))
        .collect();
    let roster: Vec<(&str, &str)> = people.iter().map(|(e, r)| (e.as_str(), *r)).collect();
    finance(&roster)
}

#[test]
fn more_revocations_than_the_limit_revoke_nothing_but_still_grant() {
    let world = many_extras(11);
    let accesses = vec![access(
        "team",
        AccessMode::Authoritative,
        vec![member("new@acme.example", "user")],
    )];
    let plan = run(&connector(), &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::Grant,
            "new@acme.example".into(),
            Some(Role::User)
        )]
    );
    let object = &plan.objects[&ObjectKey::new(NS, "team")];
    assert_eq!(object.held.len(), 11);
    let message = object.blocks[0].message();
    assert!(
        message.contains("11 removals")
            && message.contains("maxRevocationsPerSync is 10")
            && message.contains(ALLOW_MASS_REVOCATION),
        "{message}"
    );
    let ten = many_extras(10);
    assert_eq!(
        run(&connector(), &accesses, &ten).summary().revocations,
        10,
        "at the limit is fine"
    );
}

#[test]
fn the_mass_revocation_annotation_lifts_the_limit_once_per_value() {
    let world = many_extras(12);
    let accesses = vec![access("team", AccessMode::Authoritative, vec![])];
    let mut allowed = connector();
    allowed
        .annotations
        .insert(ALLOW_MASS_REVOCATION.into(), "true".into());
    let plan = run(&allowed, &accesses, &world);
    assert_eq!(plan.summary().revocations, 12);
    assert_eq!(plan.connector_mass_revocation_used.as_deref(), Some("true"));
    allowed.status = Some(ExpensifyConnectorStatus {
        last_handled_mass_revocation: Some("true".into()),
        ..Default::default()
    });
    assert_eq!(
        run(&allowed, &accesses, &world).summary().revocations,
        0,
        "the same value is not honoured twice"
    );
    let mut on_object = accesses[0].clone();
    on_object
        .annotations
        .insert(ALLOW_MASS_REVOCATION.into(), "2026-06-01".into());
    let plan = run(&connector(), &[on_object], &world);
    assert_eq!(plan.summary().revocations, 12);
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "team")]
            .mass_revocation_used
            .as_deref(),
        Some("2026-06-01")
    );
}

#[test]
fn deletion_revokes_or_orphans_what_the_object_granted() {
    let world = finance(&[("alice@acme.example", "user"), ("bob@acme.example", "user")]);
    let mut deleted = managing(
        access(
            "gone",
            AccessMode::Additive,
            vec![member("alice@acme.example", "user")],
        ),
        &["alice@acme.example"],
    );
    deleted.deleting = true;
    let plan = run(&connector(), std::slice::from_ref(&deleted), &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "alice@acme.example".into(), None)]
    );
    assert!(plan.changes[0].reason.contains("deleted"));
    deleted.spec.deletion_policy = DeletionPolicy::Orphan;
    let plan = run(&connector(), &[deleted], &world);
    assert!(plan.is_empty());
    assert!(
        plan.objects[&ObjectKey::new(NS, "gone")].ledger.is_empty(),
        "nothing left to wait for"
    );
}

/// Expensify lists a policy's owner on its roster: one without them (empty, cut short) is
/// not the whole roster, so nobody on it is taken for gone and nothing is forgotten.
#[test]
fn a_roster_without_its_owner_is_not_acted_on() {
    let mut world = finance(&[("temp@acme.example", "user")]);
    world
        .rosters
        .get_mut("P1")
        .unwrap()
        .retain(|e| e.email != "cfo@acme.example" && e.email != "temp@acme.example");
    let team = managing(
        access("team", AccessMode::Authoritative, vec![]),
        &["temp@acme.example"],
    );
    let plan = run(&connector(), &[team], &world);
    assert!(plan.is_empty(), "{:?}", changes(&plan));
    let object = &plan.objects[&ObjectKey::new(NS, "team")];
    assert_eq!(
        ledger_emails(object),
        BTreeSet::from(["temp@acme.example".to_string()]),
        "not forgotten"
    );
    assert!(
        object.problems.iter().any(|p| p
            .message
            .contains("does not list its owner cfo@acme.example")),
        "{:?}",
        object.problems
    );
}

#[test]
fn held_credentials_settle_deletions_and_nothing_else() {
    let world = finance(&[
        ("alice@acme.example", "user"),
        ("carol@acme.example", "user"),
        ("mallory@acme.example", "user"),
    ]);
    let mut gone = managing(
        access(
            "gone",
            AccessMode::Additive,
            vec![member("alice@acme.example", "user")],
        ),
        &["alice@acme.example"],
    );
    gone.deleting = true;
    let team = managing(
        access(
            "team",
            AccessMode::Authoritative,
            vec![member("bob@acme.example", "user")],
        ),
        &["carol@acme.example"],
    );
    let objects = [gone, team];
    let everything = run(&connector(), &objects, &world);
    assert_eq!(everything.changes.len(), 4, "{:?}", changes(&everything));

    let deletions = run_scoped(&connector(), &objects, &world, Scope::DeletionsOnly);
    assert_eq!(
        changes(&deletions),
        [(ChangeKind::Revoke, "alice@acme.example".into(), None)],
        "no grant, no release of a live object, no Authoritative extra"
    );
    let team = &deletions.objects[&ObjectKey::new(NS, "team")];
    assert_eq!(
        ledger_emails(team),
        BTreeSet::from(["carol@acme.example".to_string()]),
        "a live object's entries stay as they are"
    );
    assert!(
        team.blocks
            .iter()
            .any(|b| b.reason() == Reason::SecretNotFound && b.message().contains("creds")),
        "{:?}",
        team.blocks
    );
}

#[test]
fn an_invalid_object_writes_nothing_and_its_people_are_not_taken_for_unasked() {
    let world = finance(&[
        ("alice@acme.example", "user"),
        ("mallory@acme.example", "user"),
    ]);
    let broken = access(
        "broken",
        AccessMode::Additive,
        vec![
            member("alice@acme.example", "user"),
            member("zed@acme.example", "owner"),
        ],
    );
    let authoritative = access(
        "team",
        AccessMode::Authoritative,
        vec![member("new@acme.example", "user")],
    );
    let plan = run(&connector(), &[broken, authoritative], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::Grant,
            "new@acme.example".into(),
            Some(Role::User)
        )],
        "removals held"
    );
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "broken")].problems[0].field,
        "spec.members[1].role"
    );
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "team")].blocks[0].reason(),
        Reason::RemovalsHeld
    );
}

#[test]
fn incomplete_input_holds_authoritative_removals() {
    let world = finance(&[("mallory@acme.example", "user")]);
    let accesses = vec![access("team", AccessMode::Authoritative, vec![])];
    let held = plan(PlanInput {
        requests: crate::reconcile::Requests::NONE,
        connector: &connector(),
        connectors: &[],
        accesses: &accesses,
        observed: &world,
        now: now(),
        inventory_complete: false,
        scope: Scope::Everything,
        unverified: &[],
    });
    assert!(held.is_empty());
    assert_eq!(held.objects[&ObjectKey::new(NS, "team")].held.len(), 1);
}

#[test]
fn approver_changes_only_when_asked() {
    let world = finance(&[("bob@acme.example", "user")]);
    let mut bob = member("bob@acme.example", "user");
    bob.submits_to = Some("alice@acme.example".into());
    let plan = run(
        &connector(),
        &[access("team", AccessMode::Additive, vec![bob])],
        &world,
    );
    assert_eq!(plan.changes[0].kind, ChangeKind::ApproverChange);
    assert_eq!(plan.changes[0].manager_email, "alice@acme.example");
}

#[test]
fn objects_of_other_connectors_are_ignored() {
    let world = finance(&[]);
    let mut other = access(
        "other",
        AccessMode::Additive,
        vec![member("a@acme.example", "user")],
    );
    other.spec.connector_ref.name = "elsewhere".into();
    let plan = run(&connector(), &[other], &world);
    assert!(plan.is_empty() && plan.objects.is_empty());
}

// Property tests over random worlds.

const PEOPLE: [&str; 8] = [
    "cfo@acme.example",
    "it@acme.example",
    "ceo@acme.example",
    "a@acme.example",
    "b@acme.example",
    "c@acme.example",
    "d@acme.example",
    "e@acme.example",
];
const ROLES: [&str; 3] = ["user", "auditor", "admin"];

fn arb_world() -> impl Strategy<Value = Observed> {
    prop::collection::vec(
        prop::collection::btree_map(3usize..8, 0usize..3, 0..5),
        1..3,
    )
    .prop_map(|rosters| {
        let mut world = Observed::default();
        for (p, roster) in rosters.into_iter().enumerate() {
            let id = format!("P{p}");
            world.policies.push(PolicySummary {
                id: id.clone(),
                name: format!("Policy {p}"),
                plan: "corporate".into(),
                owner: PEOPLE[0].into(),
                output_currency: "USD".into(),
                caller_role: "admin".into(),
            });
            let mut entries = vec![
                RosterEntry {
                    email: PEOPLE[0].into(),
                    role: "admin".into(),
                    submits_to: Some(PEOPLE[0].into()),
                    forwards_to: None,
                    employee_id: None,
                },
                RosterEntry {
                    email: PEOPLE[1].into(),
                    role: "admin".into(),
                    submits_to: Some(PEOPLE[0].into()),
                    forwards_to: None,
                    employee_id: None,
                },
            ];
            for (person, role) in roster {
                entries.push(RosterEntry {
                    email: PEOPLE[person].into(),
                    role: ROLES[role].into(),
                    submits_to: Some(PEOPLE[0].into()),
                    forwards_to: None,
                    employee_id: None,
                });
            }
            world.rosters.insert(id, entries);
        }
        world
    })
}

fn arb_access(index: usize) -> impl Strategy<Value = AccessObject> {
    (
        0usize..2,
        0usize..3,
        any::<bool>(),
        prop::collection::btree_map(0usize..8, 0usize..3, 0..5),
        prop::collection::btree_set(0usize..8, 0..3),
        any::<bool>(),
    )
        .prop_map(move |(policy, mode, suspend, members, managed, deleting)| {
            let mode = [
                AccessMode::Additive,
                AccessMode::Authoritative,
                AccessMode::ObserveOnly,
            ][mode];
            let members = members
                .into_iter()
                .map(|(p, r)| member(PEOPLE[p], ROLES[r]))
                .collect();
            let mut object = access(&format!("obj{index}"), mode, members);
            object.spec.policy.id = Some(format!("P{policy}"));
            object.spec.suspend = suspend;
            object.deleting = deleting && index == 0;
            let managed: Vec<&str> = managed.into_iter().map(|p| PEOPLE[p]).collect();
            managing(object, &managed)
        })
}

fn arb_accesses() -> impl Strategy<Value = Vec<AccessObject>> {
    (arb_access(0), arb_access(1), arb_access(2)).prop_map(|(a, b, c)| vec![a, b, c])
}

fn protected_people(world: &Observed) -> BTreeSet<String> {
    let mut people: BTreeSet<String> = world.policies.iter().map(|p| p.owner.clone()).collect();
    people.insert(ADMIN.into());
    people.insert("ceo@acme.example".into());
    people
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn applying_a_plan_then_planning_again_is_empty(world in arb_world(), accesses in arb_accesses()) {
        let mut connector = connector();
        connector.spec.max_revocations_per_sync = 100;
        let first = run(&connector, &accesses, &world);
        let after = apply(&world, &first);
        let second = run(&connector, &with_status(&accesses, &first, &after), &after);
        prop_assert!(second.is_empty(), "first {:?}\nsecond {:?}", first.changes, second.changes);
    }

    #[test]
    fn protected_people_are_never_revoked_or_demoted(world in arb_world(), accesses in arb_accesses()) {
        let plan = run(&connector(), &accesses, &world);
        let protected = protected_people(&world);
        for change in &plan.changes {
            if protected.contains(&change.email) {
                prop_assert!(change.kind != ChangeKind::Revoke, "{change:?}");
                if let (Some(new), Some(old)) = (change.role, change.old_role.as_deref().and_then(Role::parse)) {
                    prop_assert!(rank(new) >= rank(old), "{change:?}");
                }
            }
        }
    }

    #[test]
    fn revocations_never_exceed_the_limit(world in arb_world(), accesses in arb_accesses(), max in 0i32..4) {
        let mut connector = connector();
        connector.spec.max_revocations_per_sync = max;
        let plan = run(&connector, &accesses, &world);
        prop_assert!(plan.summary().revocations <= max);
    }

    #[test]
    fn observers_and_suspended_objects_never_write_for_what_they_ask(world in arb_world(), accesses in arb_accesses()) {
        let plan = run(&connector(), &accesses, &world);
        for change in &plan.changes {
            let asker = accesses.iter().find(|a| a.key == change.requested_by).unwrap();
            if asker.deleting {
                continue;
            }
            prop_assert!(!asker.spec.suspend, "a suspended object wrote: {change:?}");
            if asker.spec.mode == AccessMode::ObserveOnly {
                // Only taking back what it holds and no longer lists.
                let on_policy = asker.spec.policy.id.as_deref() == Some(change.policy_id.as_str());
                let listed = on_policy && asker.spec.members.iter().any(|m| m.email == change.email);
                let held = asker.ledger_entries().iter().any(|e| e.key() == (change.policy_id.as_str(), change.email.as_str()));
                prop_assert!(change.is_removal() && held && !listed, "an ObserveOnly object wrote for what it asks: {change:?}");
            }
        }
    }

    #[test]
    fn the_plan_does_not_depend_on_input_order(world in arb_world(), accesses in arb_accesses()) {
        let forward = run(&connector(), &accesses, &world);
        let mut reversed_accesses = accesses.clone();
        reversed_accesses.reverse();
        let mut reversed_world = world.clone();
        reversed_world.policies.reverse();
        for roster in reversed_world.rosters.values_mut() {
            roster.reverse();
        }
        let backward = run(&connector(), &reversed_accesses, &reversed_world);
        prop_assert_eq!(forward, backward);
    }
}

#[path = "ledger_tests.rs"]
mod ledger_rules;

#[path = "offline_tests.rs"]
mod offline_rules;

#[path = "tenancy_tests.rs"]
mod tenancy;

#[path = "precedence_tests.rs"]
mod precedence;

#[path = "keeping_tests.rs"]
mod keeping;

#[test]
fn a_write_is_requested_by_the_object_that_holds_the_person() {
    // Both objects ask x as admin; `b` (second in key order) holds x, so the role change
    // is b's: its summary counts it and its Event names it.
    let world = finance(&[("x@acme.example", "user")]);
    let a = access(
        "a",
        AccessMode::Additive,
        vec![member("x@acme.example", "admin")],
    );
    let mut b = managing(
        access(
            "b",
            AccessMode::Additive,
            vec![member("x@acme.example", "admin")],
        ),
        &["x@acme.example"],
    );
    b.status.as_mut().unwrap().managed_members[0].role = Some("user".into());
    let plan = run(&connector(), &[a, b], &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::RoleChange,
            "x@acme.example".into(),
            Some(Role::Admin)
        )]
    );
    assert_eq!(plan.changes[0].requested_by, ObjectKey::new(NS, "b"));
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "b")].planned.role_changes,
        1
    );
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "a")].planned.role_changes,
        0
    );
}

#[test]
fn an_employee_id_nobody_asks_for_is_left_as_it_is() {
    let mut world = finance(&[("x@acme.example", "user")]);
    for entry in world.rosters.get_mut("P1").unwrap() {
        entry.employee_id = Some("E-1".into());
    }
    let object = access(
        "team",
        AccessMode::Additive,
        vec![member("x@acme.example", "user")],
    );
    assert!(run(&connector(), std::slice::from_ref(&object), &world).is_empty());

    let mut asks_another = object;
    asks_another.spec.members[0].employee_id = Some("E-2".into());
    let plan = run(&connector(), std::slice::from_ref(&asks_another), &world);
    assert_eq!(plan.changes[0].kind, ChangeKind::EmployeeIdChange);
    assert_eq!(plan.changes[0].detail(), "employeeID E-1 -> E-2");

    // A blank employeeID on the roster is none.
    for entry in world.rosters.get_mut("P1").unwrap() {
        entry.employee_id = Some(" ".into());
    }
    let plan = run(&connector(), &[asks_another], &world);
    assert_eq!(plan.changes[0].detail(), "employeeID E-2");
}

#[test]
fn every_write_says_why() {
    let mut world = finance(&[("x@acme.example", "user"), ("y@acme.example", "user")]);
    for entry in world.rosters.get_mut("P1").unwrap() {
        entry.employee_id = Some("E-1".into());
    }
    let mut approver = member("x@acme.example", "user");
    approver.submits_to = Some("alice@acme.example".into());
    let mut employee_id = member("y@acme.example", "user");
    employee_id.employee_id = Some("E-2".into());
    let asks = |members| {
        run(
            &connector(),
            &[access("team", AccessMode::Additive, members)],
            &world,
        )
    };
    let reasons =
        |plan: Plan| -> Vec<String> { plan.changes.into_iter().map(|c| c.reason).collect() };

    assert_eq!(
        reasons(asks(vec![member("new@acme.example", "user")])),
        ["asked for, not on the policy"]
    );
    assert_eq!(
        reasons(asks(vec![member("x@acme.example", "admin")])),
        ["role is user, asked for admin"]
    );
    assert_eq!(
        reasons(asks(vec![approver])),
        ["submits to cfo@acme.example, asked for alice@acme.example"]
    );
    assert_eq!(
        reasons(asks(vec![employee_id])),
        ["employeeID is E-1, asked for E-2"]
    );
}

#[test]
fn removals_an_annotation_allows_leave_the_limit_to_everyone_else() {
    // `team` may revoke its three extras on P1 (annotation); `ops` releases one person on
    // P2 and grants two: its one removal is within the limit of one, grants not counted.
    let world = observed(&[
        (
            "P1",
            "Finance",
            "cfo@acme.example",
            &[
                ("p1@acme.example", "user"),
                ("p2@acme.example", "user"),
                ("p3@acme.example", "user"),
            ],
        ),
        (
            "P2",
            "Travel",
            "cfo@acme.example",
            &[("gone@acme.example", "user")],
        ),
    ]);
    let mut team = access("team", AccessMode::Authoritative, vec![]);
    team.annotations
        .insert(ALLOW_MASS_REVOCATION.into(), "2026-06-01".into());
    let mut ops = managing(
        access(
            "ops",
            AccessMode::Additive,
            vec![
                member("n1@acme.example", "user"),
                member("n2@acme.example", "user"),
            ],
        ),
        &["gone@acme.example"],
    );
    ops.spec.policy.id = Some("P2".into());
    for entry in &mut ops.status.as_mut().unwrap().managed_members {
        entry.policy_id = "P2".into();
    }
    let mut limited = connector();
    limited.spec.max_revocations_per_sync = 1;
    let plan = run(&limited, &[team, ops], &world);
    assert_eq!(plan.summary().revocations, 4, "{:?}", plan.changes);
    assert_eq!(plan.summary().grants, 2);
    assert!(!plan.has_blocks(), "{:?}", plan.objects);
}

#[test]
fn each_object_plan_says_which_object_it_is_and_how_it_stands() {
    let world = finance(&[("x@acme.example", "user")]);
    let mut paused = access("paused", AccessMode::Additive, vec![]);
    paused.spec.suspend = true;
    let mut gone = managing(
        access("gone", AccessMode::Additive, vec![]),
        &["x@acme.example"],
    );
    gone.deleting = true;
    let watching = access("watching", AccessMode::ObserveOnly, vec![]);
    let plan = run(&connector(), &[paused, gone, watching], &world);
    let standing: Vec<(Option<ObjectKey>, AccessMode, bool, bool)> = plan
        .objects
        .values()
        .map(|o| (o.key.clone(), o.mode, o.suspended, o.deleting))
        .collect();
    assert_eq!(
        standing,
        [
            (
                Some(ObjectKey::new(NS, "gone")),
                AccessMode::Additive,
                false,
                true
            ),
            (
                Some(ObjectKey::new(NS, "paused")),
                AccessMode::Additive,
                true,
                false
            ),
            (
                Some(ObjectKey::new(NS, "watching")),
                AccessMode::ObserveOnly,
                false,
                false
            ),
        ]
    );
}

/// A deleting object whose policy no longer resolves (renamed, say) settles its entries
/// on the policy its status names, and reports no problem for a spec it no longer acts on.
#[test]
fn a_deleting_object_settles_on_the_policy_its_status_names() {
    let world = finance(&[("x@acme.example", "user")]);
    let mut gone = managing(
        access("gone", AccessMode::Additive, vec![]),
        &["x@acme.example"],
    );
    gone.spec.policy = PolicySelector {
        id: None,
        name: Some("Renamed".into()),
    };
    gone.status.as_mut().unwrap().policy_id = Some("P1".into());
    gone.deleting = true;
    let plan = run(&connector(), &[gone], &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "x@acme.example".into(), None)]
    );
    let object = &plan.objects[&ObjectKey::new(NS, "gone")];
    assert_eq!(object.policy_id.as_deref(), Some("P1"));
    assert!(object.problems.is_empty(), "{:?}", object.problems);
}

#[test]
fn authoritative_and_observe_only_objects_report_as_extra_only_the_people_nobody_asks_for() {
    let world = finance(&[("x@acme.example", "user"), ("y@acme.example", "user")]);
    for mode in [AccessMode::Authoritative, AccessMode::ObserveOnly] {
        let plan = run(
            &connector(),
            &[access("team", mode, vec![member("x@acme.example", "user")])],
            &world,
        );
        let extras: Vec<&str> = plan.objects[&ObjectKey::new(NS, "team")]
            .drift
            .iter()
            .filter(|d| d.kind == DriftKind::Extra)
            .map(|d| d.email.as_str())
            .collect();
        assert_eq!(extras, ["y@acme.example"], "{mode:?}");
    }
}
