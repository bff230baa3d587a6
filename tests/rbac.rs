//! The chart's RBAC grants exactly what the controller uses (`cluster::rbac`), nothing more.
//! Every request in the mock tests is also checked against the same list.

use std::collections::BTreeSet;

use expensify_operator::cluster::rbac::{LEADER_ELECTION_RULES, RULES, SECRET_WATCH_RULES};
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

#[test]
fn the_installed_cluster_role_grants_exactly_what_the_controller_uses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/install.yaml"
    ))
    .unwrap();
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
    let roles: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .collect();
    assert_eq!(roles.len(), 1);
    assert_eq!(granted(&roles[0]["rules"]), expand(RULES));
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
