//! Tenancy in the planner, one test per rule (fixtures from [`super`]): what a namespace may
//! touch (`spec.tenants`), and policies an Authoritative object closes (`spec.allowFrom`).

use super::*;
use crate::api::TenantSpec;

pub(super) const ENG: &str = "engineering";

/// `finance` (the connector's namespace) with a `tenants` entry for `engineering`.
pub(super) fn tenant_connector(
    policies: &[PolicySelector],
    max_role: Option<&str>,
) -> ConnectorObject {
    let mut connector = connector();
    connector.spec.tenants = vec![TenantSpec {
        namespace: ENG.into(),
        policies: policies.to_vec(),
        max_role: max_role.map(str::to_string),
    }];
    connector
}

pub(super) fn id(id: &str) -> PolicySelector {
    PolicySelector {
        id: Some(id.into()),
        name: None,
    }
}

fn name(name: &str) -> PolicySelector {
    PolicySelector {
        id: None,
        name: Some(name.into()),
    }
}

/// An object of `namespace` on the connector `finance/acme`.
pub(super) fn in_namespace(mut object: AccessObject, namespace: &str) -> AccessObject {
    object.key.namespace = namespace.into();
    object.spec.connector_ref.namespace = Some(NS.into());
    object
}

fn on_policy(mut object: AccessObject, policy: &str) -> AccessObject {
    object.spec.policy = id(policy);
    object
}

/// Finance (P1) and Engineering (P2), each with an admin and the given people.
fn two_policies(p1: &[(&str, &str)], p2: &[(&str, &str)]) -> Observed {
    observed(&[
        ("P1", "Finance", "cfo@acme.example", p1),
        ("P2", "Engineering", "cto@acme.example", p2),
    ])
}

fn eng_key(name: &str) -> ObjectKey {
    ObjectKey::new(ENG, name)
}

#[test]
fn a_tenant_may_name_only_the_policies_its_entry_lists() {
    let world = two_policies(&[], &[]);
    let connector = tenant_connector(&[id("P2")], None);
    let accesses = vec![
        in_namespace(
            access(
                "grab",
                AccessMode::Additive,
                vec![member("x@acme.example", "user")],
            ),
            ENG,
        ),
        on_policy(
            in_namespace(
                access(
                    "own",
                    AccessMode::Additive,
                    vec![member("y@acme.example", "user")],
                ),
                ENG,
            ),
            "P2",
        ),
    ];
    let plan = run(&connector, &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Grant, "y@acme.example".into(), Some(Role::User))],
        "only the granted policy is touched"
    );
    let grab = &plan.objects[&eng_key("grab")];
    assert!(grab.not_granted);
    assert_eq!(grab.problems.len(), 1, "{:?}", grab.problems);
    assert!(grab.drift.is_empty(), "{:?}", grab.drift);
    assert_eq!(grab.problems[0].field, "spec.policy");
    assert!(
        grab.problems[0]
            .message
            .contains("may not touch policy \"Finance\" (P1)")
            && grab.problems[0].message.contains("spec.tenants[0]"),
        "{}",
        grab.problems[0]
    );
}

#[test]
fn a_refused_policy_is_not_read_for_the_object() {
    // An ObserveOnly object reports everyone nobody asks for as drift: on a policy its
    // namespace may not touch, that would hand it the roster.
    let world = two_policies(&[("secret@acme.example", "admin")], &[]);
    let accesses = vec![in_namespace(
        access("peek", AccessMode::ObserveOnly, vec![]),
        ENG,
    )];
    let plan = run(&tenant_connector(&[id("P2")], None), &accesses, &world);
    let peek = &plan.objects[&eng_key("peek")];
    assert!(peek.not_granted);
    assert!(peek.drift.is_empty(), "{:?}", peek.drift);
}

#[test]
fn a_tenant_grants_roles_up_to_its_max_role_which_defaults_to_user() {
    let world = two_policies(&[], &[]);
    let asks_auditor = vec![on_policy(
        in_namespace(
            access(
                "team",
                AccessMode::Additive,
                vec![
                    member("a@acme.example", "user"),
                    member("b@acme.example", "auditor"),
                ],
            ),
            ENG,
        ),
        "P2",
    )];
    let refused = run(&tenant_connector(&[id("P2")], None), &asks_auditor, &world);
    assert!(refused.is_empty(), "claims nobody: {:?}", refused.changes);
    let team = &refused.objects[&eng_key("team")];
    assert!(team.not_granted);
    assert_eq!(team.problems[0].field, "spec.members[1].role");
    assert!(
        team.problems[0].message.contains("above the highest role")
            && team.problems[0].message.contains("(user, spec.tenants[0]"),
        "{}",
        team.problems[0]
    );
    // Refused for a role, not for its policy: its policy is still read for it.
    let drifted: Vec<&str> = team.drift.iter().map(|d| d.email.as_str()).collect();
    assert_eq!(drifted, ["a@acme.example", "b@acme.example"]);

    let allowed = run(
        &tenant_connector(&[id("P2")], Some("auditor")),
        &asks_auditor,
        &world,
    );
    assert_eq!(allowed.changes.len(), 2, "{:?}", allowed.changes);
    assert!(allowed.objects[&eng_key("team")].problems.is_empty());
}

#[test]
fn an_expired_member_asks_for_no_role() {
    let world = two_policies(&[], &[]);
    let mut past = member("old@acme.example", "admin");
    past.expires_at = Some("2020-01-01T00:00:00Z".into());
    let accesses = vec![on_policy(
        in_namespace(
            access(
                "team",
                AccessMode::Additive,
                vec![past, member("a@acme.example", "user")],
            ),
            ENG,
        ),
        "P2",
    )];
    let plan = run(&tenant_connector(&[id("P2")], None), &accesses, &world);
    assert!(plan.objects[&eng_key("team")].problems.is_empty());
    assert_eq!(plan.changes.len(), 1);
}

#[test]
fn a_namespace_in_both_lists_is_read_as_its_tenants_entry() {
    let world = two_policies(&[], &[]);
    let mut connector = tenant_connector(&[id("P2")], None);
    connector.spec.allowed_namespaces = vec![ENG.into()];
    let accesses = vec![in_namespace(
        access(
            "grab",
            AccessMode::Additive,
            vec![member("x@acme.example", "admin")],
        ),
        ENG,
    )];
    let plan = run(&connector, &accesses, &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    let grab = &plan.objects[&eng_key("grab")];
    let fields: Vec<&str> = grab.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["spec.policy", "spec.members[0].role"]);
}

#[test]
fn an_unrestricted_tenant_still_reaches_any_policy_and_role() {
    let world = two_policies(&[], &[]);
    let mut connector = connector();
    connector.spec.allowed_namespaces = vec![ENG.into()];
    let accesses = vec![in_namespace(
        access(
            "team",
            AccessMode::Additive,
            vec![member("x@acme.example", "admin")],
        ),
        ENG,
    )];
    let plan = run(&connector, &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::Grant,
            "x@acme.example".into(),
            Some(Role::Admin)
        )]
    );
}

#[test]
fn a_name_entry_that_matches_two_policies_allows_neither() {
    let world = observed(&[
        ("P1", "Shared", "cfo@acme.example", &[]),
        ("P2", "Shared", "cto@acme.example", &[]),
        ("P3", "Tools", "cto@acme.example", &[]),
    ]);
    let connector = tenant_connector(&[name("Shared"), name("Tools")], None);
    let accesses = vec![
        on_policy(
            in_namespace(
                access(
                    "shared",
                    AccessMode::Additive,
                    vec![member("x@acme.example", "user")],
                ),
                ENG,
            ),
            "P2",
        ),
        on_policy(
            in_namespace(
                access(
                    "tools",
                    AccessMode::Additive,
                    vec![member("y@acme.example", "user")],
                ),
                ENG,
            ),
            "P3",
        ),
    ];
    let plan = run(&connector, &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Grant, "y@acme.example".into(), Some(Role::User))],
        "a unique name allows its policy"
    );
    let shared = &plan.objects[&eng_key("shared")];
    assert!(
        shared.problems[0]
            .message
            .contains("spec.tenants[0].policies[0] of ExpensifyConnector finance/acme names \"Shared\", which 2 policies are called"),
        "{}",
        shared.problems[0]
    );
}

#[test]
fn the_connectors_own_namespace_may_touch_everything() {
    let world = two_policies(&[], &[]);
    let connector = tenant_connector(&[id("P2")], None);
    let accesses = vec![access(
        "central",
        AccessMode::Additive,
        vec![member("x@acme.example", "admin")],
    )];
    let plan = run(&connector, &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::Grant,
            "x@acme.example".into(),
            Some(Role::Admin)
        )]
    );
}

#[test]
fn an_object_beyond_its_tenancy_holds_nothing_and_keeps_its_entries() {
    // grab once granted kept@ on Finance; it now asks for Finance, which engineering may
    // not touch. finance/team's alice, asked for by nobody, is still taken back: nothing is
    // held for an object that may not ask for her.
    let world = two_policies(
        &[
            ("kept@acme.example", "user"),
            ("alice@acme.example", "user"),
        ],
        &[],
    );
    let connector = tenant_connector(&[id("P2")], None);
    let accesses = vec![
        managing(
            in_namespace(
                access(
                    "grab",
                    AccessMode::Additive,
                    vec![member("alice@acme.example", "user")],
                ),
                ENG,
            ),
            &["kept@acme.example"],
        ),
        managing(
            access("team", AccessMode::Additive, vec![]),
            &["alice@acme.example"],
        ),
    ];
    let plan = run(&connector, &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "alice@acme.example".into(), None)],
        "the refused object's ask holds nothing, and its own entry is not released"
    );
    let grab = &plan.objects[&eng_key("grab")];
    assert_eq!(
        ledger_emails(grab),
        BTreeSet::from(["kept@acme.example".to_string()])
    );
    assert!(grab.blocks.is_empty() && grab.held.is_empty());
}

/// finance/gov is Authoritative on P2 (Engineering), which engineering may touch too.
fn governed(allow_from: &[&str]) -> Vec<AccessObject> {
    let mut gov = on_policy(
        access(
            "gov",
            AccessMode::Authoritative,
            vec![member("a@acme.example", "user")],
        ),
        "P2",
    );
    gov.spec.allow_from = allow_from.iter().map(ToString::to_string).collect();
    let tenant = on_policy(
        in_namespace(
            access(
                "team",
                AccessMode::Additive,
                vec![
                    member("bob@acme.example", "user"),
                    member("carol@acme.example", "user"),
                ],
            ),
            ENG,
        ),
        "P2",
    );
    vec![gov, tenant]
}

#[test]
fn an_authoritative_policy_is_closed_to_other_tenant_namespaces() {
    let world = two_policies(
        &[],
        &[("a@acme.example", "user"), ("bob@acme.example", "user")],
    );
    let connector = tenant_connector(&[id("P2")], None);
    let plan = run(&connector, &governed(&[]), &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "bob@acme.example".into(), None)],
        "the Authoritative object revokes as if engineering/team were not there; carol is not granted"
    );
    let team = &plan.objects[&eng_key("team")];
    assert_eq!(team.blocks.len(), 1, "{:?}", team.blocks);
    assert_eq!(team.blocks[0].reason(), Reason::Conflict);
    assert!(
        team.blocks[0].message().contains("finance/gov")
            && team.blocks[0].message().contains("spec.allowFrom"),
        "{}",
        team.blocks[0].message()
    );
}

#[test]
fn allow_from_opens_a_governed_policy() {
    let world = two_policies(
        &[],
        &[("a@acme.example", "user"), ("bob@acme.example", "user")],
    );
    let connector = tenant_connector(&[id("P2")], None);
    let plan = run(&connector, &governed(&[ENG]), &world);
    assert_eq!(
        changes(&plan),
        [(
            ChangeKind::Grant,
            "carol@acme.example".into(),
            Some(Role::User)
        )],
        "bob stays, carol is granted"
    );
    assert!(plan.objects[&eng_key("team")].blocks.is_empty());
}

#[test]
fn what_a_closed_out_object_gave_is_taken_back() {
    let world = two_policies(
        &[],
        &[("a@acme.example", "user"), ("bob@acme.example", "user")],
    );
    let connector = tenant_connector(&[id("P2")], None);
    let mut accesses = governed(&[]);
    let status = PolicyAccessStatus {
        managed_members: vec![ManagedMember::added_user("P2", "bob@acme.example")],
        ..PolicyAccessStatus::default()
    };
    accesses[1].status = Some(status);
    let plan = run(&connector, &accesses, &world);
    assert_eq!(
        changes(&plan),
        [(ChangeKind::Revoke, "bob@acme.example".into(), None)]
    );
}

#[test]
fn objects_of_the_connectors_namespace_are_never_closed_out() {
    // engineering/gov governs P2; finance/central (the connector's namespace) still asks.
    let world = two_policies(
        &[],
        &[("a@acme.example", "user"), ("bob@acme.example", "user")],
    );
    let connector = tenant_connector(&[id("P2")], None);
    let accesses = vec![
        on_policy(
            in_namespace(
                access(
                    "gov",
                    AccessMode::Authoritative,
                    vec![member("a@acme.example", "user")],
                ),
                ENG,
            ),
            "P2",
        ),
        on_policy(
            access(
                "central",
                AccessMode::Additive,
                vec![member("bob@acme.example", "user")],
            ),
            "P2",
        ),
    ];
    let plan = run(&connector, &accesses, &world);
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert!(
        plan.objects[&ObjectKey::new(NS, "central")]
            .blocks
            .is_empty()
    );
}

#[test]
fn two_hundred_askers_make_one_short_conflict_message_each() {
    let world = finance(&[]);
    let accesses: Vec<AccessObject> = (0..200)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "admin" };
            access(
                &format!("team-{i:03}"),
                AccessMode::Additive,
                vec![member("x@acme.example", role)],
            )
        })
        .collect();
    let plan = run(&connector(), &accesses, &world);
    assert!(plan.is_empty());
    for object in plan.objects.values() {
        let message = object.blocks[0].message();
        assert!(message.len() < 600, "{} bytes: {message}", message.len());
        assert!(message.contains("and 190 more"), "{message}");
    }
}

#[test]
fn validate_reports_what_the_manifests_alone_decide() {
    let connector = tenant_connector(&[id("P2")], None);
    let accesses = vec![
        // Finance by id: no entry of engineering can be it.
        in_namespace(
            access(
                "grab",
                AccessMode::Additive,
                vec![member("x@acme.example", "user")],
            ),
            ENG,
        ),
        // Above maxRole.
        on_policy(
            in_namespace(
                access(
                    "raise",
                    AccessMode::Additive,
                    vec![member("y@acme.example", "admin")],
                ),
                ENG,
            ),
            "P2",
        ),
        // Closed out by finance/gov.
        on_policy(
            in_namespace(
                access(
                    "team",
                    AccessMode::Additive,
                    vec![member("z@acme.example", "user")],
                ),
                ENG,
            ),
            "P2",
        ),
        on_policy(
            access(
                "gov",
                AccessMode::Authoritative,
                vec![member("z@acme.example", "user")],
            ),
            "P2",
        ),
    ];
    let found: Vec<(String, String)> = offline::conflicts(&connector, &accesses, now())
        .into_iter()
        .map(|(key, problem)| (key.to_string(), problem.field))
        .collect();
    assert_eq!(
        found,
        [
            ("engineering/grab".to_string(), "spec.policy".to_string()),
            (
                "engineering/raise".to_string(),
                "spec.members[0].role".to_string()
            ),
            ("engineering/team".to_string(), "spec.policy".to_string()),
        ]
    );
}

/// Issue 17, item 3 with tenancy: a tenant's object whose policy cannot be resolved holds
/// the people it lists only on the policies its namespace may touch; another team's
/// expiry on a policy the tenant cannot reach goes ahead.
#[test]
fn a_tenants_broken_object_holds_only_on_policies_it_may_touch() {
    let world = two_policies(
        &[("carol@acme.example", "user")],
        &[("carol@acme.example", "user")],
    );
    let connector = tenant_connector(&[id("P2")], None);
    let mut broken = in_namespace(
        access(
            "broken",
            AccessMode::Additive,
            vec![member("carol@acme.example", "user")],
        ),
        ENG,
    );
    broken.spec.policy = name("Engineeering");
    let carol = |policy: &str| ManagedMember::added_user(policy, "carol@acme.example");
    let mut expired = member("carol@acme.example", "user");
    expired.expires_at = Some("2026-05-31T00:00:00Z".into());
    let mut finance_jit = access("jit", AccessMode::Additive, vec![expired.clone()]);
    finance_jit.status = Some(PolicyAccessStatus {
        managed_members: vec![carol("P1")],
        ..PolicyAccessStatus::default()
    });
    let mut eng_jit = on_policy(access("eng-jit", AccessMode::Additive, vec![expired]), "P2");
    eng_jit.status = Some(PolicyAccessStatus {
        managed_members: vec![carol("P2")],
        ..PolicyAccessStatus::default()
    });
    let plan = run(&connector, &[broken, finance_jit, eng_jit], &world);
    // On Finance (which engineering may not touch) carol's expiry goes ahead; on
    // Engineering the broken object may be asking for her: held.
    assert_eq!(
        plan.changes
            .iter()
            .map(|c| (c.kind, c.policy_id.as_str()))
            .collect::<Vec<_>>(),
        [(ChangeKind::Revoke, "P1")]
    );
    assert_eq!(
        plan.objects[&ObjectKey::new(NS, "eng-jit")].held,
        ["carol@acme.example"]
    );
}

/// A member's role is held to `maxRole` until the moment it ends: one ending later is
/// refused, one ending exactly now asks for nothing.
#[test]
fn max_role_binds_a_member_until_the_moment_it_ends() {
    let world = two_policies(&[], &[]);
    let asking = |expires_at: &str| {
        let mut admin = member("x@acme.example", "admin");
        admin.expires_at = Some(expires_at.into());
        vec![on_policy(
            in_namespace(access("team", AccessMode::Additive, vec![admin]), ENG),
            "P2",
        )]
    };
    let connector = tenant_connector(&[id("P2")], None);
    let later = run(&connector, &asking("2026-06-02T00:00:00Z"), &world);
    assert_eq!(
        later.objects[&eng_key("team")].problems[0].field,
        "spec.members[0].role"
    );
    let ending_now = run(&connector, &asking("2026-06-01T00:00:00Z"), &world);
    assert!(ending_now.objects[&eng_key("team")].problems.is_empty());
}

/// A tenant entry by a name two other policies share refuses as "not listed", not as
/// ambiguous: the ambiguity is about other policies than the one asked.
#[test]
fn an_ambiguous_name_for_other_policies_is_not_the_reason_given() {
    let world = observed(&[
        ("P1", "Finance", "cfo@acme.example", &[]),
        ("P2", "Engineering", "cto@acme.example", &[]),
        ("P3", "Shared", "cfo@acme.example", &[]),
        ("P4", "Shared", "cfo@acme.example", &[]),
    ]);
    let connector = tenant_connector(&[name("Shared")], None);
    let asks_p2 = vec![on_policy(
        in_namespace(
            access(
                "team",
                AccessMode::Additive,
                vec![member("x@acme.example", "user")],
            ),
            ENG,
        ),
        "P2",
    )];
    let plan = run(&connector, &asks_p2, &world);
    let problem = &plan.objects[&eng_key("team")].problems[0];
    assert!(
        problem.message.contains("it is not among the policies"),
        "{problem}"
    );

    let asks_p3 = vec![on_policy(asks_p2[0].clone(), "P3")];
    let plan = run(&connector, &asks_p3, &world);
    let problem = &plan.objects[&eng_key("team")].problems[0];
    assert!(
        problem.message.contains("which 2 policies are called"),
        "{problem}"
    );
}
