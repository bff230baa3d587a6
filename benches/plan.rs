//! Planning 500 policies x 10,000 memberships (target < 50 ms). `cargo bench --bench plan`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use expensify_operator::api::{
    AccessMode, ConnectorRef, DeletionPolicy, ExpensifyConnectorSpec, MemberSpec, PolicyAccessSpec,
    PolicyAccessStatus, PolicySelector, SecretRef,
};
use expensify_operator::expensify::{PolicySummary, RosterEntry};
use expensify_operator::reconcile::{
    AccessObject, ConnectorObject, ObjectKey, Observed, PlanInput, plan,
};
use k8s_openapi::jiff::Timestamp;

const POLICIES: usize = 500;
const MEMBERS: usize = 20;

fn world() -> (ConnectorObject, Vec<AccessObject>, Observed) {
    let connector = ConnectorObject {
        key: ObjectKey::new("bench", "acme"),
        generation: Some(1),
        annotations: BTreeMap::new(),
        spec: ExpensifyConnectorSpec {
            credentials_secret_ref: SecretRef {
                name: "creds".into(),
                user_id_key: "partnerUserID".into(),
                user_secret_key: "partnerUserSecret".into(),
            },
            endpoint: expensify_operator::expensify::DEFAULT_ENDPOINT.into(),
            admin_email: "admin@bench.example".into(),
            owners: Vec::new(),
            sync_interval: "10m".into(),
            max_revocations_per_sync: 100_000,
            protected_emails: vec![],
            allowed_namespaces: vec![],
            tenants: vec![],
            suspend: false,
            notifications: None,
        },
        status: None,
    };
    let mut observed = Observed::default();
    let mut accesses = Vec::new();
    for p in 0..POLICIES {
        let id = format!("BE{p:014X}");
        observed.policies.push(PolicySummary {
            id: id.clone(),
            name: format!("Policy {p}"),
            plan: "corporate".into(),
            owner: "owner@bench.example".into(),
            output_currency: "USD".into(),
            caller_role: "admin".into(),
        });
        // Expensify has half the desired people, a few with another role, and some extras.
        let mut roster = vec![
            entry("owner@bench.example", "admin"),
            entry("admin@bench.example", "admin"),
        ];
        for m in 0..MEMBERS {
            if m % 2 == 0 {
                roster.push(entry(
                    &format!("person{m}.{p}@bench.example"),
                    if m % 6 == 0 { "auditor" } else { "user" },
                ));
            }
        }
        for x in 0..3 {
            roster.push(entry(&format!("extra{x}.{p}@bench.example"), "user"));
        }
        observed.rosters.insert(id.clone(), roster);
        let members = (0..MEMBERS)
            .map(|m| MemberSpec {
                email: format!("person{m}.{p}@bench.example"),
                role: Some("user".into()),
                submits_to: None,
                employee_id: None,
                expires_at: None,
            })
            .collect();
        accesses.push(AccessObject {
            key: ObjectKey::new("bench", format!("policy-{p}")),
            generation: Some(1),
            created: None,
            annotations: BTreeMap::new(),
            spec: PolicyAccessSpec {
                connector_ref: ConnectorRef {
                    name: "acme".into(),
                    namespace: None,
                },
                policy: PolicySelector {
                    id: Some(id),
                    name: None,
                },
                mode: if p % 2 == 0 {
                    AccessMode::Authoritative
                } else {
                    AccessMode::Additive
                },
                deletion_policy: DeletionPolicy::Revoke,
                allow_from: Vec::new(),
                suspend: false,
                members,
            },
            deleting: false,
            status: Some(PolicyAccessStatus::default()),
        });
    }
    (connector, accesses, observed)
}

fn entry(email: &str, role: &str) -> RosterEntry {
    RosterEntry {
        email: email.into(),
        role: role.into(),
        submits_to: Some("owner@bench.example".into()),
        forwards_to: None,
        employee_id: None,
    }
}

fn benches(c: &mut Criterion) {
    let (connector, accesses, observed) = world();
    let now = Timestamp::now();
    let input = PlanInput {
        connector: &connector,
        connectors: std::slice::from_ref(&connector),
        accesses: &accesses,
        observed: &observed,
        now,
        inventory_complete: true,
        scope: expensify_operator::reconcile::plan::Scope::Everything,
        unverified: &[],
    };
    let result = plan(input);
    eprintln!(
        "plan of {POLICIES} policies x {} desired memberships: {} changes ({:?})",
        POLICIES * MEMBERS,
        result.changes.len(),
        result.summary()
    );
    c.bench_function("plan_500_policies_10000_memberships", |b| {
        b.iter(|| black_box(plan(black_box(input))));
    });
}

criterion_group!(planning, benches);
criterion_main!(planning);
