//! The chart's RBAC grants exactly what the controller uses (`cluster::rbac`), nothing more.
//! Every request in the mock tests is also checked against the same list.

use std::collections::BTreeSet;

use expensify_operator::cluster::admission::{DEFAULT_BINDING_NAME, DEFAULT_POLICY_NAME};
use expensify_operator::cluster::rbac::{
    ADMISSION_RULES, LEADER_ELECTION_RULES, RULES, SECRET_WATCH_RULES,
};
use serde_json::Value;

type Permission = (String, String, String);

fn expand(rules: &[(&str, &str, &[&str])]) -> BTreeSet<Permission> {
    rules
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(move |verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect()
}

fn granted(rules: &Value) -> BTreeSet<Permission> {
    let mut set = BTreeSet::new();
    for rule in rules.as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    set.insert((
                        group.as_str().unwrap().into(),
                        resource.as_str().unwrap().into(),
                        verb.as_str().unwrap().into(),
                    ));
                }
            }
        }
    }
    set
}

fn installed() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/install.yaml"
    ))
    .unwrap();
    serde_saphyr::from_str_multiple(&text).unwrap()
}

fn cluster_role<'a>(documents: &'a [Value], name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no ClusterRole {name}"))
}

/// The ClusterRoles bound to the controller's service account.
fn controller_roles(documents: &[Value]) -> BTreeSet<String> {
    documents
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .filter(|d| {
            d["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == "expensify-operator")
        })
        .map(|d| d["roleRef"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_installed_cluster_role_grants_exactly_what_the_controller_uses() {
    let documents = installed();
    assert_eq!(
        controller_roles(&documents),
        BTreeSet::from([
            "expensify-operator".to_string(),
            "expensify-operator-admission-check".to_string()
        ])
    );
    let role = cluster_role(&documents, "expensify-operator");
    assert_eq!(granted(&role["rules"]), expand(RULES));
}

/// The admission check reads the policy and binding it is configured with, and nothing
/// else: `get` on those names, cluster-wide (a ClusterRole whatever the namespaces).
#[test]
fn the_admission_check_role_grants_get_on_the_configured_names_only() {
    let documents = installed();
    let role = cluster_role(&documents, "expensify-operator-admission-check");
    assert_eq!(granted(&role["rules"]), expand(ADMISSION_RULES));
    for rule in role["rules"].as_array().unwrap() {
        let expected = match rule["resources"][0].as_str().unwrap() {
            "validatingadmissionpolicies" => DEFAULT_POLICY_NAME,
            _ => DEFAULT_BINDING_NAME,
        };
        assert_eq!(rule["resourceNames"], serde_json::json!([expected]));
    }
    let deployment = documents
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&format!("--admission-policy-name={DEFAULT_POLICY_NAME}").as_str()));
    assert!(args.contains(&format!("--admission-binding-name={DEFAULT_BINDING_NAME}").as_str()));
    assert!(args.contains(&"--username-prefix="));
}

/// The roles a cluster admin binds per namespace: requesters create requests and read
/// the PolicyAccess objects they ask against; approvers create decisions and read
/// requests. Neither can touch the other's kind, or any status.
#[test]
fn the_requester_and_approver_roles_grant_exactly_their_kinds() {
    let documents = installed();
    let group = "expensify.gitops.dev";
    let requester = granted(&cluster_role(&documents, "expensify-requester")["rules"]);
    let mut expected = expand(&[
        (group, "accessrequests", &["create", "get", "list", "watch"]),
        (group, "policyaccesses", &["get", "list"]),
    ]);
    assert_eq!(requester, expected);
    let approver = granted(&cluster_role(&documents, "expensify-approver")["rules"]);
    expected = expand(&[
        (
            group,
            "accessdecisions",
            &["create", "get", "list", "watch"],
        ),
        (group, "accessrequests", &["get", "list"]),
    ]);
    assert_eq!(approver, expected);
    assert!(
        documents
            .iter()
            .filter(|d| d["kind"].as_str().unwrap_or_default().ends_with("Binding"))
            .all(|d| d["roleRef"]["name"] != "expensify-requester"
                && d["roleRef"]["name"] != "expensify-approver"),
        "the chart binds them to nobody: a cluster admin does, per namespace"
    );
}

#[test]
fn the_leader_election_role_grants_exactly_leases() {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/expensify-operator/templates/rbac.yaml"
    ))
    .unwrap();
    let start = template
        .find("apiGroups: [\"coordination.k8s.io\"]")
        .expect("a leases rule");
    let block: String = template[start..]
        .lines()
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    let rules: Value = serde_saphyr::from_str(&format!(
        "- {}",
        block.trim_start().replace("\n    ", "\n  ")
    ))
    .unwrap();
    assert_eq!(granted(&rules), expand(LEADER_ELECTION_RULES));
}

/// `secretWatch.enabled` adds exactly `SECRET_WATCH_RULES` to the Secret rule, and turns
/// on the controller's `--watch-secrets`; off (the default, checked above through
/// manifests/install.yaml), Secrets are `get` only.
#[test]
fn the_secret_watch_value_adds_list_and_watch_and_the_flag() {
    let chart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/expensify-operator/templates"
    );
    let helpers = std::fs::read_to_string(format!("{chart}/_helpers.tpl")).unwrap();
    let start = helpers
        .find("{{- if .Values.secretWatch.enabled }}")
        .expect("the Secret rule depends on secretWatch.enabled");
    let verbs_when_on = helpers[start..].lines().nth(1).unwrap().trim();
    let verbs: Vec<String> =
        serde_saphyr::from_str(verbs_when_on.trim_start_matches("verbs:")).unwrap();
    let on: BTreeSet<Permission> = verbs
        .into_iter()
        .map(|verb| (String::new(), "secrets".to_string(), verb))
        .collect();
    let secrets = |rules: &[(&str, &str, &[&str])]| -> BTreeSet<Permission> {
        expand(rules)
            .into_iter()
            .filter(|(_, resource, _)| resource == "secrets")
            .collect()
    };
    let expected: BTreeSet<Permission> = secrets(RULES)
        .union(&secrets(SECRET_WATCH_RULES))
        .cloned()
        .collect();
    assert_eq!(on, expected);
    assert_eq!(
        secrets(RULES),
        BTreeSet::from([(String::new(), "secrets".into(), "get".into())])
    );
    let deployment = std::fs::read_to_string(format!("{chart}/deployment.yaml")).unwrap();
    let flag = deployment
        .find("{{- if .Values.secretWatch.enabled }}")
        .expect("the flag depends on secretWatch.enabled");
    assert_eq!(
        deployment[flag..].lines().nth(1).unwrap().trim(),
        "- --watch-secrets"
    );
}
