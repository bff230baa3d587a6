//! What `validate` decides from the manifests alone: the planner's own conflicts, found
//! without Expensify, and policies named through two connectors.

use super::*;

/// Every Conflict block of a plan, as (object, message).
fn planned_conflicts(plan: &Plan) -> BTreeSet<(ObjectKey, String)> {
    plan.objects
        .iter()
        .flat_map(|(key, object)| {
            object.blocks.iter().filter_map(move |block| match block {
                Block::Conflict(message) => Some((key.clone(), message.clone())),
                _ => None,
            })
        })
        .collect()
}

fn by_name(mut object: AccessObject, name: &str) -> AccessObject {
    object.spec.policy = PolicySelector {
        id: None,
        name: Some(name.into()),
    };
    object
}

#[test]
fn offline_conflicts_are_the_conflicts_a_sync_finds() {
    let mut expired = member("x@acme.example", "auditor");
    expired.expires_at = Some("2020-01-01T00:00:00Z".into());
    let accesses = vec![
        access(
            "auth-a",
            AccessMode::Authoritative,
            vec![member("a@acme.example", "user")],
        ),
        access(
            "auth-b",
            AccessMode::Authoritative,
            vec![member("b@acme.example", "user")],
        ),
        access(
            "role-1",
            AccessMode::Additive,
            vec![member("x@acme.example", "admin")],
        ),
        access(
            "role-2",
            AccessMode::Additive,
            vec![member("X@acme.example", "user")],
        ),
        // Expired: asks for nobody, so it is in no conflict.
        access("role-3", AccessMode::Additive, vec![expired]),
    ];
    let found = offline::conflicts(&connector(), &accesses, now());
    let offline: BTreeSet<(ObjectKey, String)> = found
        .iter()
        .map(|(key, problem)| (key.clone(), problem.message.clone()))
        .collect();
    let synced = run(&connector(), &accesses, &finance(&[]));
    assert_eq!(offline, planned_conflicts(&synced));
    let fields: BTreeSet<(String, String)> = found
        .iter()
        .map(|(key, problem)| (key.name.clone(), problem.field.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("auth-b", "spec.mode"),
        ("role-1", "spec.members[0].role"),
        ("role-2", "spec.members[0].role"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(fields, expected);
}

#[test]
fn offline_a_name_is_one_policy_but_never_the_same_as_an_id() {
    let same_name = vec![
        by_name(access("a", AccessMode::Authoritative, vec![]), "Finance"),
        by_name(access("b", AccessMode::Authoritative, vec![]), "Finance"),
    ];
    let found = offline::conflicts(&connector(), &same_name, now());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0.name, "b");
    let name_and_id = vec![
        by_name(access("a", AccessMode::Authoritative, vec![]), "Finance"),
        access("b", AccessMode::Authoritative, vec![]),
    ];
    assert!(offline::conflicts(&connector(), &name_and_id, now()).is_empty());
    let two_names = vec![
        by_name(access("a", AccessMode::Authoritative, vec![]), "Finance"),
        by_name(access("b", AccessMode::Authoritative, vec![]), "Travel"),
    ];
    assert!(offline::conflicts(&connector(), &two_names, now()).is_empty());
    // Each name is a stand-in policy of its own: a third object on another name neither
    // hides the first name's conflict nor joins it.
    let two_on_one_name = vec![
        by_name(access("a", AccessMode::Authoritative, vec![]), "Finance"),
        by_name(access("b", AccessMode::Authoritative, vec![]), "Finance"),
        by_name(access("c", AccessMode::Authoritative, vec![]), "Travel"),
    ];
    let found = offline::conflicts(&connector(), &two_on_one_name, now());
    let names: Vec<&str> = found.iter().map(|(key, _)| key.name.as_str()).collect();
    assert_eq!(names, ["b"], "{found:?}");
}

#[test]
fn offline_a_policy_named_through_two_connectors_is_reported_on_each() {
    let mut other = connector();
    other.key = ObjectKey::new(NS, "beta");
    let mut on_beta = access("on-beta", AccessMode::Additive, vec![]);
    on_beta.spec.connector_ref.name = "beta".into();
    let accesses = vec![access("on-acme", AccessMode::Additive, vec![]), on_beta];
    let connectors = [connector(), other];
    let found = offline::policies_through_two_connectors(&accesses, &connectors);
    let names: Vec<&str> = found.iter().map(|(key, _)| key.name.as_str()).collect();
    assert_eq!(names, ["on-acme", "on-beta"]);
    assert!(
        found[0]
            .1
            .message
            .contains("connector finance/beta (PolicyAccess finance/on-beta)")
    );
    assert_eq!(found[0].1.field, "spec.policy.id");
    // One connector: no problem.
    let single = offline::policies_through_two_connectors(&accesses[..1], &connectors);
    assert!(single.is_empty());

    // Only valid objects through a connector that exists and takes their namespace count.
    let mut through_ghost = access("ghost", AccessMode::Additive, vec![]);
    through_ghost.spec.connector_ref.name = "ghost".into();
    let mut invalid = access(
        "invalid",
        AccessMode::Additive,
        vec![member("x@acme.example", "nope")],
    );
    invalid.spec.connector_ref.name = "beta".into();
    // beta takes objects of its own namespace only, not of `sales`.
    let mut from_sales = accesses[1].clone();
    from_sales.key = ObjectKey::new("sales", "on-beta");
    from_sales.spec.connector_ref.namespace = Some(NS.into());
    for accesses in [
        vec![accesses[0].clone(), through_ghost],
        vec![accesses[0].clone(), invalid],
        vec![accesses[0].clone(), from_sales.clone()],
    ] {
        let found = offline::policies_through_two_connectors(&accesses, &connectors);
        assert!(found.is_empty(), "{found:?}");
    }
    // Once beta takes `sales`, the same object counts.
    let mut taking_sales = connectors[1].clone();
    taking_sales.spec.allowed_namespaces = vec!["sales".into()];
    let found = offline::policies_through_two_connectors(
        &[accesses[0].clone(), from_sales],
        &[connector(), taking_sales],
    );
    let names: Vec<String> = found.iter().map(|(key, _)| key.to_string()).collect();
    assert_eq!(
        names,
        [format!("{NS}/on-acme"), "sales/on-beta".to_string()]
    );
}
