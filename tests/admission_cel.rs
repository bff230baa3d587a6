//! The identity admission policy's CEL, evaluated: the exact expressions the chart ships
//! (read from manifests/install.yaml, which CI keeps identical to the chart's render)
//! against sample admission requests, with a CEL interpreter (the `cel` crate, with the
//! strings extension Kubernetes also enables). Evaluated as the API server does: match
//! conditions first (all true, or the policy does not apply), then the variables in
//! order, then each validation; an expression that fails to evaluate rejects
//! (`failurePolicy: Fail`). The evaluator is `support::requests::admission`.

mod support;

use serde_json::{Value, json};
use support::requests::admission::{
    DECISIONS, Policy, REQUESTS, ROOT, Verdict, admission_request, documents, object,
    shipped_policy, text, user,
};

fn request_by(requester: &str) -> Value {
    json!({"accessRef": {"name": "finance-team"}, "email": "alice@acme.com", "role": "admin",
           "duration": "4h", "reason": "close", "requester": requester})
}

fn decision_by(decided_by: &str, groups: &[&str]) -> Value {
    json!({"requestRef": {"name": "alice-admin-close"}, "decision": "Approve",
           "decidedBy": decided_by, "groups": groups})
}

#[test]
fn the_policy_matches_both_kinds_on_create_and_update_and_fails_closed() {
    let policy = shipped_policy();
    let spec = &policy["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    let rule = &spec["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["apiGroups"], json!(["expensify.gitops.dev"]));
    assert_eq!(rule["operations"], json!(["CREATE", "UPDATE"]));
    assert_eq!(rule["resources"], json!([REQUESTS, DECISIONS]));
    let binding = documents()
        .into_iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
}

/// The expressions in manifests/install.yaml are the template's, character for character,
/// but for the templated prefix, which is a bare CEL string literal of checked characters.
#[test]
fn the_evaluated_expressions_are_the_templates() {
    let template = std::fs::read_to_string(format!(
        "{ROOT}/charts/expensify-operator/templates/admission.yaml"
    ))
    .unwrap();
    let spec = shipped_policy()["spec"].clone();
    let mut expressions = Vec::new();
    for key in ["matchConditions", "variables", "validations"] {
        for entry in spec[key].as_array().unwrap() {
            let name = entry["name"].as_str().unwrap_or_default().to_string();
            expressions.push((name, text(&entry["expression"])));
            if let Some(message) = entry.get("messageExpression") {
                expressions.push((String::new(), text(message)));
            }
        }
    }
    for (name, expression) in &expressions {
        if name == "prefix" {
            assert_eq!(expression, "''", "the default render has no prefix");
            assert!(template.contains(r#"expression: "'{{ $prefix }}'""#));
        } else {
            let quoted = format!("\"{expression}\"");
            assert!(
                template.contains(&quoted),
                "not in the template: {expression}"
            );
        }
    }
    assert!(expressions.len() >= 10, "{expressions:?}");
    let helpers = std::fs::read_to_string(format!(
        "{ROOT}/charts/expensify-operator/templates/_helpers.tpl"
    ))
    .unwrap();
    assert!(
        helpers.contains(r#"regexMatch "^[A-Za-z0-9._:@/-]*$" $prefix"#),
        "the prefix is checked before it goes into a CEL literal"
    );
}

#[test]
fn ones_own_request_is_allowed() {
    let policy = Policy::shipped(None);
    let alice = user("alice@acme.com", &["system:authenticated"]);
    assert_eq!(
        policy.create(&alice, REQUESTS, request_by("alice@acme.com")),
        Verdict::Allowed
    );
}

#[test]
fn a_request_in_someone_elses_name_is_rejected_naming_the_field() {
    let policy = Policy::shipped(None);
    let mallory = user("mallory@acme.com", &[]);
    let verdict = policy.create(&mallory, REQUESTS, request_by("alice@acme.com"));
    assert_eq!(
        verdict,
        Verdict::Denied(vec![
            "spec.requester must be the user creating the request (mallory@acme.com)".into()
        ])
    );
}

#[test]
fn the_email_is_compared_without_case() {
    let policy = Policy::shipped(None);
    let alice = user("Alice@ACME.com", &[]);
    assert_eq!(
        policy.create(&alice, REQUESTS, request_by("alice@acme.com")),
        Verdict::Allowed
    );
    assert_eq!(
        policy.create(
            &user("alice@acme.com", &[]),
            DECISIONS,
            decision_by("ALICE@acme.com", &[])
        ),
        Verdict::Allowed
    );
}

#[test]
fn a_prefixed_username_is_compared_without_its_prefix() {
    let policy = Policy::shipped(Some("oidc:"));
    let alice = user(
        "oidc:alice@acme.com",
        &["oidc:finance", "system:authenticated"],
    );
    assert_eq!(
        policy.create(&alice, REQUESTS, request_by("alice@acme.com")),
        Verdict::Allowed
    );
    assert!(
        policy
            .create(&alice, REQUESTS, request_by("oidc:alice@acme.com"))
            .denied_with("spec.requester must be the user creating the request (alice@acme.com)")
    );
    // A user outside the prefix (a client certificate named like a person) is refused.
    let impostor = user("alice@acme.com", &[]);
    let verdict = policy.create(&impostor, REQUESTS, request_by("alice@acme.com"));
    assert!(
        verdict.denied_with("must start with the username prefix (oidc:)"),
        "{verdict:?}"
    );
    // Without a prefix configured, the prefix is part of the name.
    let unprefixed = Policy::shipped(None);
    assert!(
        unprefixed
            .create(&alice, REQUESTS, request_by("alice@acme.com"))
            .denied_with("spec.requester")
    );
}

#[test]
fn a_username_that_is_only_the_prefix_is_refused() {
    let policy = Policy::shipped(Some("oidc:"));
    assert!(
        policy
            .create(&user("oidc:", &[]), REQUESTS, request_by(""))
            .denied_with("must start with the username prefix")
    );
}

#[test]
fn a_decision_claiming_a_group_the_user_is_not_in_is_rejected() {
    let policy = Policy::shipped(None);
    let carol = user("carol@acme.com", &["finance-leads", "system:authenticated"]);
    let verdict = policy.create(
        &carol,
        DECISIONS,
        decision_by("carol@acme.com", &["finance-leads", "admins"]),
    );
    assert_eq!(
        verdict,
        Verdict::Denied(vec![
            "spec.groups must all be groups of the user creating the decision (carol@acme.com)"
                .into()
        ])
    );
}

#[test]
fn a_decision_with_only_the_users_groups_is_allowed() {
    let policy = Policy::shipped(None);
    let carol = user("carol@acme.com", &["finance-leads", "auditors"]);
    for groups in [&["finance-leads", "auditors"][..], &["auditors"], &[]] {
        assert_eq!(
            policy.create(&carol, DECISIONS, decision_by("carol@acme.com", groups)),
            Verdict::Allowed,
            "{groups:?}"
        );
    }
}

#[test]
fn groups_follow_the_prefix_rule() {
    let policy = Policy::shipped(Some("oidc:"));
    let carol = user(
        "oidc:carol@acme.com",
        &["oidc:finance-leads", "system:masters"],
    );
    assert_eq!(
        policy.create(
            &carol,
            DECISIONS,
            decision_by("carol@acme.com", &["finance-leads"])
        ),
        Verdict::Allowed
    );
    // Only groups the identity provider gave (with the prefix) can be claimed.
    for claimed in ["system:masters", "masters", "oidc:finance-leads"] {
        assert!(
            policy
                .create(&carol, DECISIONS, decision_by("carol@acme.com", &[claimed]))
                .denied_with("spec.groups must all be groups"),
            "{claimed}"
        );
    }
}

#[test]
fn a_decision_in_someone_elses_name_is_rejected_naming_the_field() {
    let policy = Policy::shipped(None);
    let mallory = user("mallory@acme.com", &["finance-leads"]);
    let verdict = policy.create(&mallory, DECISIONS, decision_by("carol@acme.com", &[]));
    assert_eq!(
        verdict,
        Verdict::Denied(vec![
            "spec.decidedBy must be the user creating the decision (mallory@acme.com)".into()
        ])
    );
}

#[test]
fn service_accounts_can_neither_request_nor_decide() {
    let policy = Policy::shipped(None);
    let robot = "system:serviceaccount:argocd:argocd-application-controller";
    let sa = user(robot, &["system:serviceaccounts"]);
    for (resource, spec) in [
        (REQUESTS, request_by(robot)),
        (DECISIONS, decision_by(robot, &[])),
    ] {
        let verdict = policy.create(&sa, resource, spec);
        assert_eq!(
            verdict,
            Verdict::Denied(vec![
                "service accounts may not create access requests or decisions: a person must, under their own name".into()
            ]),
            "{resource}"
        );
    }
}

#[test]
fn missing_fields_are_rejected_by_the_rule_that_needs_them() {
    let policy = Policy::shipped(None);
    let alice = user("alice@acme.com", &[]);
    let mut without_requester = request_by("alice@acme.com");
    without_requester
        .as_object_mut()
        .unwrap()
        .remove("requester");
    assert_eq!(
        policy.create(&alice, REQUESTS, without_requester),
        Verdict::Denied(vec![
            "spec.requester must be the user creating the request (alice@acme.com)".into()
        ])
    );
    assert!(
        policy
            .create(&alice, REQUESTS, Value::Null)
            .denied_with("spec.requester must be")
    );
    let mut without_decider = decision_by("alice@acme.com", &[]);
    without_decider.as_object_mut().unwrap().remove("decidedBy");
    assert!(
        policy
            .create(&alice, DECISIONS, without_decider)
            .denied_with("spec.decidedBy must be")
    );
    assert!(
        policy
            .create(&alice, DECISIONS, Value::Null)
            .denied_with("spec.decidedBy must be")
    );
    // No groups claimed: nothing to prove.
    let mut without_groups = decision_by("alice@acme.com", &[]);
    without_groups.as_object_mut().unwrap().remove("groups");
    assert_eq!(
        policy.create(&alice, DECISIONS, without_groups),
        Verdict::Allowed
    );
    // A user the API server gives no groups cannot claim any.
    let no_groups = json!({"username": "alice@acme.com"});
    assert_eq!(
        policy.create(&no_groups, DECISIONS, decision_by("alice@acme.com", &[])),
        Verdict::Allowed
    );
    assert!(
        policy
            .create(
                &no_groups,
                DECISIONS,
                decision_by("alice@acme.com", &["finance-leads"])
            )
            .denied_with("spec.groups must all be groups")
    );
}

#[test]
fn an_update_is_checked_only_when_it_changes_the_spec() {
    let policy = Policy::shipped(None);
    let controller = user(
        "system:serviceaccount:expensify-operator:expensify-operator",
        &[],
    );
    let old = object(REQUESTS, request_by("alice@acme.com"));
    let mut with_finalizer = old.clone();
    with_finalizer["metadata"]["finalizers"] = json!(["expensify.gitops.dev/grant"]);
    assert_eq!(
        policy.admit(
            &admission_request("UPDATE", &controller, REQUESTS),
            &with_finalizer,
            &old
        ),
        Verdict::NotMatched,
        "the controller's metadata writes pass"
    );
    let rewritten = object(REQUESTS, request_by("mallory@acme.com"));
    let mallory = user("mallory@acme.com", &[]);
    assert_eq!(
        policy.admit(
            &admission_request("UPDATE", &mallory, REQUESTS),
            &rewritten,
            &old
        ),
        Verdict::Allowed,
        "a rewrite in one's own name passes admission (the CRD rule keeps the spec immutable)"
    );
    let alice = user("alice@acme.com", &[]);
    assert!(
        policy
            .admit(
                &admission_request("UPDATE", &alice, REQUESTS),
                &rewritten,
                &old
            )
            .denied_with("spec.requester must be")
    );
}
