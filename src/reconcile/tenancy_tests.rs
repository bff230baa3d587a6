//! The tenancy rules on plain data: who reaches what, what `validate` decides from the
//! manifests alone, the connector's checks and warnings, and the statuses they lead to.

use std::collections::BTreeMap;

use super::*;
use crate::api::{
    AccessMode, ConnectorRef, ExpensifyConnectorSpec, MemberSpec, PolicyAccessSpec, Reason,
    SecretRef,
};
use crate::reconcile::model::ObjectKey;
use crate::reconcile::status::{ConnectorFindings, connector_status};
use crate::reconcile::validate::{validate_access, validate_connector};

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn selector(id: Option<&str>, name: Option<&str>) -> PolicySelector {
    PolicySelector {
        id: id.map(str::to_string),
        name: name.map(str::to_string),
    }
}

fn tenant(namespace: &str, policies: Vec<PolicySelector>, max_role: Option<&str>) -> TenantSpec {
    TenantSpec {
        namespace: namespace.into(),
        policies,
        max_role: max_role.map(str::to_string),
    }
}

fn connector(allowed: &[&str], tenants: Vec<TenantSpec>) -> ConnectorObject {
    ConnectorObject {
        key: ObjectKey::new("finance", "acme"),
        generation: Some(1),
        annotations: BTreeMap::new(),
        spec: ExpensifyConnectorSpec {
            credentials_secret_ref: SecretRef {
                name: "creds".into(),
                user_id_key: "partnerUserID".into(),
                user_secret_key: "partnerUserSecret".into(),
            },
            endpoint: crate::expensify::DEFAULT_ENDPOINT.into(),
            admin_email: "it@acme.example".into(),
            owners: Vec::new(),
            sync_interval: "10m".into(),
            max_revocations_per_sync: 10,
            protected_emails: vec![],
            allowed_namespaces: allowed.iter().map(ToString::to_string).collect(),
            tenants,
            suspend: false,
            notifications: None,
        },
        status: None,
    }
}

fn access(namespace: &str, policy: PolicySelector, roles: &[&str]) -> AccessObject {
    AccessObject {
        key: ObjectKey::new(namespace, "team"),
        generation: Some(1),
        created: None,
        annotations: BTreeMap::new(),
        spec: PolicyAccessSpec {
            requests: None,
            connector_ref: ConnectorRef {
                name: "acme".into(),
                namespace: Some("finance".into()),
            },
            policy,
            mode: AccessMode::Additive,
            deletion_policy: Default::default(),
            allow_from: vec![],
            suspend: false,
            members: roles
                .iter()
                .enumerate()
                .map(|(i, role)| MemberSpec {
                    email: format!("p{i}@acme.example"),
                    role: Some(role.to_string()),
                    submits_to: None,
                    employee_id: None,
                    expires_at: None,
                })
                .collect(),
        },
        deleting: false,
        status: None,
    }
}

#[test]
fn reach_follows_own_namespace_then_tenants_then_allowed_namespaces() {
    let eng = tenant("engineering", vec![selector(Some("P2"), None)], None);
    let c = connector(&["engineering", "sales"], vec![eng.clone()]);
    assert_eq!(reach(&c, "finance"), Some(Reach::Everything));
    assert_eq!(
        reach(&c, "engineering"),
        Some(Reach::Limited {
            index: 0,
            tenant: &eng
        }),
        "a namespace in both lists is read as its tenants entry"
    );
    assert_eq!(reach(&c, "sales"), Some(Reach::Everything));
    assert_eq!(reach(&c, "marketing"), None);
    assert_eq!(
        reach(&connector(&["*"], vec![]), "marketing"),
        Some(Reach::Everything)
    );
    assert_eq!(reach(&c, "engineering").unwrap().max_role(), Role::User);
    let auditors = connector(&[], vec![tenant("engineering", vec![], Some("auditor"))]);
    assert_eq!(
        reach(&auditors, "engineering").unwrap().max_role(),
        Role::Auditor
    );
}

#[test]
fn a_tenants_entry_lets_its_namespace_use_the_connector() {
    let c = connector(&[], vec![tenant("engineering", vec![], None)]);
    assert!(
        validate_access(
            &access("engineering", selector(Some("P2"), None), &[]),
            std::slice::from_ref(&c)
        )
        .is_empty()
    );
    let refused = validate_access(&access("sales", selector(Some("P2"), None), &[]), &[c]);
    assert!(
        refused[0].message.contains("spec.tenants"),
        "{}",
        refused[0]
    );
}

#[test]
fn offline_a_policy_is_refused_only_when_no_entry_can_match() {
    let by_id = tenant("engineering", vec![selector(Some("P2"), None)], None);
    let c = connector(&[], vec![by_id]);
    assert_eq!(
        offline_policy_refusal(&c, &access("engineering", selector(Some("P2"), None), &[])),
        None
    );
    let refused =
        offline_policy_refusal(&c, &access("engineering", selector(Some("P1"), None), &[]))
            .unwrap();
    assert_eq!(refused.field, "spec.policy");
    assert!(
        refused
            .message
            .contains("spec.tenants[0] of ExpensifyConnector finance/acme")
    );
    assert!(
        offline_policy_refusal(
            &c,
            &access("engineering", selector(None, Some("Finance")), &[])
        )
        .is_none(),
        "an entry by id may be the policy named by name"
    );
    let by_name = connector(
        &[],
        vec![tenant(
            "engineering",
            vec![selector(None, Some("Tools"))],
            None,
        )],
    );
    assert!(
        offline_policy_refusal(
            &by_name,
            &access("engineering", selector(None, Some("Finance")), &[])
        )
        .is_some()
    );
    let nothing = connector(&[], vec![tenant("engineering", vec![], None)]);
    assert!(
        offline_policy_refusal(
            &nothing,
            &access("engineering", selector(Some("P2"), None), &[])
        )
        .is_some(),
        "an entry listing no policy allows none"
    );
    assert!(
        offline_policy_refusal(
            &nothing,
            &access("finance", selector(Some("P2"), None), &[])
        )
        .is_none(),
        "the connector's own namespace"
    );
}

#[test]
fn roles_above_max_role_are_refused_per_member() {
    let c = connector(&[], vec![tenant("engineering", vec![], Some("auditor"))]);
    let object = access(
        "engineering",
        selector(Some("P2"), None),
        &["user", "auditor", "admin", "owner"],
    );
    let refused = role_refusals(&c, &object, now());
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].field, "spec.members[2].role");
    assert!(refused[0].message.contains("admin for p2@acme.example"));
    let own = access("finance", selector(Some("P2"), None), &["admin"]);
    assert!(role_refusals(&c, &own, now()).is_empty());
}

#[test]
fn unrestricted_tenants_are_warned_about() {
    let c = connector(
        &["finance", "engineering", "sales", "*"],
        vec![tenant("engineering", vec![], None)],
    );
    let warnings = unrestricted_tenants(&c);
    let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.allowedNamespaces[2]", "spec.allowedNamespaces[3]"],
        "not the own namespace, not a namespace with a tenants entry"
    );
    assert!(
        warnings[0]
            .message
            .starts_with("unrestricted tenant: namespace \"sales\"")
    );
    assert!(
        validate_connector(&c).is_empty(),
        "a warning, not a problem"
    );
}

#[test]
fn tenants_entries_are_checked() {
    let c = connector(
        &[],
        vec![
            tenant("Engineering!", vec![], None),
            tenant("finance", vec![], None),
            tenant(
                "eng",
                vec![selector(None, None), selector(Some(" "), None)],
                Some("owner"),
            ),
            tenant("eng", vec![], None),
        ],
    );
    let fields: Vec<String> = validate_connector(&c)
        .into_iter()
        .map(|p| p.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.tenants[0].namespace",
            "spec.tenants[1].namespace",
            "spec.tenants[2].policies[0]",
            "spec.tenants[2].policies[1].id",
            "spec.tenants[2].maxRole",
            "spec.tenants[3].namespace",
        ]
    );
}

#[test]
fn allow_from_names_namespaces() {
    let c = connector(&[], vec![]);
    let mut object = access("finance", selector(Some("P1"), None), &[]);
    object.spec.allow_from = vec!["engineering".into(), "../x".into()];
    let fields: Vec<String> = validate_access(&object, &[c])
        .into_iter()
        .map(|p| p.field)
        .collect();
    assert_eq!(fields, ["spec.allowFrom[1]"]);
}

#[test]
fn a_connector_with_an_unrestricted_tenant_says_so_in_its_status() {
    let c = connector(&["sales"], vec![]);
    let status = connector_status(&c, ConnectorFindings::default(), now());
    let message = status.message.unwrap();
    assert!(
        message.contains("warning: unrestricted tenant: namespace \"sales\""),
        "{message}"
    );
    let quiet = connector_status(&connector(&[], vec![]), ConnectorFindings::default(), now());
    assert_eq!(quiet.message.as_deref(), Some("0 policies, 0 people"));
}

#[test]
fn an_object_beyond_its_tenancy_is_error_with_reason_not_granted() {
    use crate::reconcile::plan::{ObjectPlan, PlanInput, plan};
    use crate::reconcile::status::{AccessFindings, access_status};
    let c = connector(&[], vec![tenant("engineering", vec![], None)]);
    let object = access("engineering", selector(Some("P1"), None), &["user"]);
    let observed = crate::reconcile::model::Observed {
        policies: vec![crate::expensify::PolicySummary {
            id: "P1".into(),
            name: "Finance".into(),
            plan: "corporate".into(),
            owner: "cfo@acme.example".into(),
            output_currency: "USD".into(),
            caller_role: "admin".into(),
        }],
        // Expensify lists the owner on the roster, as admin.
        rosters: BTreeMap::from([(
            "P1".to_string(),
            vec![crate::expensify::RosterEntry {
                email: "cfo@acme.example".into(),
                role: "admin".into(),
                submits_to: None,
                forwards_to: None,
                employee_id: None,
            }],
        )]),
    };
    let accesses = [object.clone()];
    let planned = plan(PlanInput {
        requests: crate::reconcile::Requests::NONE,
        connector: &c,
        connectors: std::slice::from_ref(&c),
        accesses: &accesses,
        observed: &observed,
        now: now(),
        inventory_complete: true,
        scope: crate::reconcile::plan::Scope::Everything,
        unverified: &[],
    });
    let after: &ObjectPlan = &planned.objects[&object.key];
    let status = access_status(
        AccessFindings {
            object: &object,
            after,
            managed: vec![],
            attempted: Default::default(),
            failures: vec![],
            connector_problem: None,
            connector_suspended: false,
            mass_revocation_used: None,
        },
        now(),
    );
    assert_eq!(status.phase, crate::api::AccessPhase::Error);
    assert_eq!(status.conditions[0].reason, Reason::NotGranted.as_str());
    assert!(
        status
            .message
            .unwrap()
            .contains("may not touch policy \"Finance\" (P1)"),
        "the message names the rule"
    );
}
