use super::file::read_documents;
use super::strict::{access_names, connector_names};
use super::*;
use crate::names;
use crate::reconcile::ObjectKey;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const ACCESS: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: team}\nspec:\n  connectorRef: {name: acme}\n  policy: {id: P1}\n  members: [{email: a@acme.example}]\n";
const CONNECTOR: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {name: acme}\nspec:\n  credentialsSecretRef: {name: creds}\n  adminEmail: it@acme.example\n";

fn problems(manifests: &Manifests) -> Vec<String> {
    manifests.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn reads_multi_document_files_recursively_and_skips_other_kinds() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a/team.yaml",
        &format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n---\n{ACCESS}---\n"),
    );
    write(dir.path(), ".git/x.yaml", "not: [valid");
    write(dir.path(), "notes.txt", "ignored");
    write(dir.path(), "connector.yml", CONNECTOR);
    let manifests = load(dir.path(), &[]).unwrap();
    assert!(manifests.complete(), "{:?}", manifests.problems);
    assert_eq!(manifests.accesses.len(), 1);
    assert_eq!(manifests.connectors.len(), 1);
    assert_eq!(manifests.accesses[0].key, ObjectKey::new("default", "team"));
    assert_eq!(manifests.accesses[0].source.document, 2);
    assert_eq!(manifests.skipped.len(), 2, "{:?}", manifests.skipped);
    assert!(manifests.skipped[0].contains("notes.txt: skipped (not a .yaml or .yml file)"));
    assert!(manifests.skipped[1].contains("Secret s skipped"));
}

#[test]
fn a_broken_file_fails_only_itself_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yaml", ACCESS);
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: x\n",
    );
    write(
        dir.path(),
        "typo.yaml",
        &ACCESS
            .replace("team", "typo")
            .replace("members:", "memberz:")
            .replace("connectorRef: {name: acme}", "connectorRef: {nam: acme}"),
    );
    let manifests = load(dir.path(), &[]).unwrap();
    assert_eq!(manifests.accesses.len(), 1);
    assert!(!manifests.complete());
    let text: Vec<String> = manifests.problems.iter().map(ToString::to_string).collect();
    assert!(
        text[0].contains("bad.yaml") && text[0].contains("not valid YAML"),
        "{text:?}"
    );
    assert!(
        text[1].contains("typo.yaml")
            && text[1].contains("PolicyAccess default/typo")
            && text[1].contains("spec.connectorRef"),
        "{text:?}"
    );
}

#[test]
fn duplicates_are_rejected_naming_both_places() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "one.yaml", ACCESS);
    write(dir.path(), "two.yaml", ACCESS);
    let manifests = load(dir.path(), &[]).unwrap();
    assert!(manifests.accesses.is_empty());
    assert_eq!(manifests.problems.len(), 2);
    assert!(
        manifests.problems[0].message.contains("one.yaml")
            && manifests.problems[0].message.contains("two.yaml")
    );
}

#[test]
fn a_name_yaml_reads_as_a_boolean_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "y.yaml",
        &ACCESS.replace("{name: team}", "{name: y}"),
    );
    let manifests = load(dir.path(), &[]).unwrap();
    assert!(
        manifests.problems[0]
            .message
            .contains("not a string; quote it"),
        "{:?}",
        manifests.problems
    );
}

#[test]
fn wrong_api_version_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "old.yaml",
        &ACCESS.replace("v1alpha1", "v1beta9"),
    );
    let manifests = load(dir.path(), &[]).unwrap();
    assert!(manifests.problems[0].message.contains("v1beta9"));
}

#[test]
fn unknown_fields_are_named_at_every_level() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "connector.yaml", CONNECTOR);
    write(
        dir.path(),
        "typo.yaml",
        &ACCESS
            .replace("members:", "memebers:")
            .replace("{name: team}", "{name: team, lables: {a: b}}")
            .replace(
                "{email: a@acme.example}",
                "{email: a@acme.example, rol: admin}",
            ),
    );
    write(
        dir.path(),
        "top.yaml",
        &format!("{}extra: 1\n", ACCESS.replace("team", "other")),
    );
    let manifests = load(dir.path(), &[]).unwrap();
    assert!(manifests.accesses.is_empty());
    let text = problems(&manifests);
    assert!(
        text[0].contains("top.yaml (document 1): PolicyAccess default/other: unknown field extra"),
        "{text:?}"
    );
    assert!(
        text[1].contains("typo.yaml (document 1)")
            && text[1].contains("metadata.lables")
            && text[1].contains("spec.memebers"),
        "{text:?}"
    );
    assert!(!text[1].contains("rol"), "members were not read: {text:?}");
}

#[test]
fn a_misspelled_kind_of_our_group_is_a_problem_other_groups_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "connector.yaml", CONNECTOR);
    write(
        dir.path(),
        "typo.yaml",
        &ACCESS.replace("kind: PolicyAccess", "kind: PolicyAcess"),
    );
    write(
        dir.path(),
        "other.yaml",
        "apiVersion: example.com/v1\nkind: PolicyAcess\nmetadata: {name: x}\n",
    );
    let manifests = load(dir.path(), &[]).unwrap();
    let text = problems(&manifests);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].contains("typo.yaml") && text[0].contains("kind \"PolicyAcess\" does not exist"),
        "{text:?}"
    );
    assert_eq!(manifests.skipped.len(), 1);
}

#[test]
fn names_follow_kubernetes_rules() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "connector.yaml",
        &CONNECTOR.replace(
            "{name: creds}",
            "{name: /etc, userSecretKey: ../os-release}",
        ),
    );
    write(
        dir.path(),
        "up.yaml",
        &ACCESS.replace("{name: team}", "{name: \"../../x\"}"),
    );
    write(
        dir.path(),
        "ns.yaml",
        &ACCESS.replace("{name: team}", "{name: team, namespace: Finance}"),
    );
    let manifests = load(dir.path(), &[]).unwrap();
    assert!(manifests.connectors.is_empty() && manifests.accesses.is_empty());
    let text = problems(&manifests).join("\n");
    for expected in [
        "spec.credentialsSecretRef.name: \"/etc\" is not a valid DNS-1123 subdomain",
        "spec.credentialsSecretRef.userSecretKey: \"../os-release\" is not a valid Secret key",
        "metadata.name: \"../../x\" is not a valid DNS-1123 subdomain",
        "metadata.namespace: \"Finance\" is not a valid DNS-1123 label",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn a_directory_without_a_connector_is_an_error_naming_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "team.yaml", ACCESS);
    write(dir.path(), "README.md", "hello");
    let err = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("no ExpensifyConnector")
            && err.contains("1 YAML file(s) with 1 PolicyAccess")
            && err.contains("1 other file(s)"),
        "{err}"
    );
    // A connector that fails to load is reported as itself, not as "no connector".
    write(
        dir.path(),
        "connector.yaml",
        &CONNECTOR.replace("adminEmail", "admin"),
    );
    let manifests = load(dir.path(), &[]).unwrap();
    assert!(problems(&manifests)[0].contains("ExpensifyConnector default/acme"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const CONNECTOR_AND_ACCESS: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {name: acme}\nspec:\n  credentialsSecretRef: {name: creds, userIDKey: id}\n  adminEmail: it@acme.example\n---\napiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: team, namespace: finance, labels: {a: b}}\nspec:\n  connectorRef: {name: acme, namespace: default}\n  policy: {id: P1}\n  mode: Authoritative\n  members:\n    - {email: a@acme.example, role: admin}\n    - email: b@acme.example\n      expiresAt: \"2026-12-31T00:00:00Z\"\n";

    /// Bits of YAML that change structure: the mutations most likely to reach odd paths.
    const TOKENS: &[&str] = &[
        "\n", ": ", "- ", "---\n", "[", "]", "{", "}", "&a ", "*a", "!!str ", "? ", "|\n", "\"",
        "'", "#", "\t", "..", "/", "null", "~", "1e999", "-1", "\u{feff}", "\\", "<<: *a\n",
    ];

    fn read(bytes: &[u8]) -> Manifests {
        let mut manifests = Manifests::default();
        read_documents(Path::new("case.yaml"), bytes, &mut manifests);
        manifests
    }

    /// Whatever loaded passed every check: names are Kubernetes names.
    fn loaded_objects_are_valid(manifests: &Manifests) {
        for connector in &manifests.connectors {
            assert!(names::check_subdomain(&connector.key.name).is_ok());
            assert!(connector_names(&connector.object).is_empty());
        }
        for access in &manifests.accesses {
            assert!(names::check_subdomain(&access.key.name).is_ok());
            assert!(names::check_label(&access.key.namespace).is_ok());
            assert!(access_names(&access.object).is_empty());
        }
    }

    // Case count from PROPTEST_CASES (default 256); see the README for long runs.
    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            loaded_objects_are_valid(&read(&bytes));
        }

        #[test]
        fn mutated_manifests_never_panic_and_load_only_valid_objects(
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), prop::sample::select(TOKENS), any::<bool>()),
                1..6,
            )
        ) {
            let mut text = CONNECTOR_AND_ACCESS.to_string();
            for (at, token, replace) in edits {
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                if replace {
                    let mut end = (at + token.len()).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(at..end, token);
                } else {
                    text.insert_str(at, token);
                }
            }
            loaded_objects_are_valid(&read(text.as_bytes()));
        }
    }
}
