//! (a) The manifest loader over arbitrary bytes, over mutated real manifests (every
//! example, the bad-input corpus, access requests and decisions) and over valid
//! documents given an unknown field or a value of the wrong type.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use expensify_operator::files::loader::{
    self, MAX_DOCUMENTS_PER_FILE, MAX_PROBLEM_CHARS, Manifests,
};
use proptest::prelude::*;
use serde_json::Value;

use super::mutate::{case, config, mutated};
use super::seeds;

pub const REQUEST: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessRequest\nmetadata: {name: r1, namespace: finance}\nspec:\n  accessRef: {name: books}\n  email: henry@acme.example\n  role: user\n  duration: 4h\n  reason: month end\n  requester: henry@acme.example\n";
const DECISION: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessDecision\nmetadata: {name: d1, namespace: finance}\nspec:\n  requestRef: {name: r1}\n  decision: Revoke\n  decidedBy: boss@acme.example\n";

/// Every manifest the project ships or keeps as a case, requests and decisions, and all
/// of them in one multi-document file.
pub fn manifest_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut all = seeds::files("examples", "yaml");
        all.extend(seeds::files("tests/bad_input", "yaml"));
        all.push(REQUEST.as_bytes().to_vec());
        all.push(DECISION.as_bytes().to_vec());
        let joined = all.join(&b"\n---\n"[..]);
        all.push(joined);
        all
    })
}

/// Writes `bytes` as one manifest file and loads it alone, as `validate FILE` does.
fn load_bytes(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, Manifests) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.yaml");
    std::fs::write(&path, bytes).unwrap();
    let manifests = loader::load_file_alone(&path);
    (dir, path, manifests)
}

/// What every load must give: each object and each problem placed in its file and a
/// document of it, each problem saying something, and no more documents than the budget.
fn assert_well_placed(path: &Path, manifests: &Manifests) -> Result<(), TestCaseError> {
    let shown = path.display().to_string();
    for problem in &manifests.problems {
        prop_assert_eq!(&problem.source.path, path);
        prop_assert!(problem.source.document >= 1);
        prop_assert!(!problem.message.trim().is_empty(), "{:?}", problem);
        let text = problem.to_string();
        prop_assert!(
            text.starts_with(&format!("{shown} (document ")),
            "a problem not naming its file and document: {}",
            text
        );
    }
    let sources = manifests
        .connectors
        .iter()
        .map(|o| &o.source)
        .chain(manifests.accesses.iter().map(|o| &o.source))
        .chain(manifests.requests.iter().map(|o| &o.source))
        .chain(manifests.decisions.iter().map(|o| &o.source));
    for source in sources {
        prop_assert_eq!(&source.path, path);
        prop_assert!((1..=MAX_DOCUMENTS_PER_FILE).contains(&source.document));
    }
    Ok(())
}

/// A field's path the way the loader names it: `spec.members[0].email`.
fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The objects of a document that are typed structs (not free maps such as annotations),
/// and its scalar leaves, each with its path.
fn places(value: &Value, path: &str, structs: &mut Vec<String>, leaves: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let free = path.ends_with("annotations") || path.ends_with("labels");
            if !free {
                structs.push(path.to_string());
            }
            for (key, inner) in map {
                places(inner, &child(path, key), structs, leaves);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                places(inner, &format!("{path}[{i}]"), structs, leaves);
            }
        }
        _ => leaves.push(path.to_string()),
    }
}

/// The node at `path` (as built by [`places`]).
fn node_at<'v>(value: &'v mut Value, path: &str) -> &'v mut Value {
    let mut node = value;
    if path.is_empty() {
        return node;
    }
    for part in path.split('.') {
        let (key, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        node = &mut node[key];
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().unwrap();
            node = &mut node[i];
        }
    }
    node
}

/// The valid documents of our kinds, parsed (the examples, a request, a decision).
fn valid_documents() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut texts: Vec<String> = seeds::files("examples", "yaml")
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        texts.push(REQUEST.to_string());
        texts.push(DECISION.to_string());
        let docs: Vec<Value> = texts
            .iter()
            .flat_map(|t| serde_saphyr::from_multiple::<Value>(t).unwrap())
            .filter(|d| !d.is_null())
            .collect();
        for doc in &docs {
            let (_dir, _path, manifests) =
                load_bytes(serde_json::to_string(doc).unwrap().as_bytes());
            assert!(
                manifests.complete(),
                "a seed is not valid: {:?}",
                manifests.problems
            );
        }
        docs
    })
}

/// What is done to one field of a valid document.
#[derive(Debug, Clone)]
enum FieldChange {
    /// A key the type does not have, in one of its objects.
    Unknown(prop::sample::Index),
    /// A scalar replaced by a list: a value of the wrong type.
    WrongType(prop::sample::Index),
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn loader_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (_dir, path, manifests) = load_bytes(&bytes);
        assert_well_placed(&path, &manifests)?;
    }

    #[test]
    fn loader_mutated_manifests_never_panic((seed, changes) in case(manifest_seeds().len(), 8)) {
        let seeds = manifest_seeds();
        let bytes = mutated(&seeds[seed], &changes, seeds);
        let (_dir, path, manifests) = load_bytes(&bytes);
        assert_well_placed(&path, &manifests)?;
    }

    /// A typo is never read as absence: the document fails, naming the field.
    #[test]
    fn loader_unknown_or_mistyped_field_is_named(
        doc in 0..valid_documents().len(),
        change in prop_oneof![
            any::<prop::sample::Index>().prop_map(FieldChange::Unknown),
            any::<prop::sample::Index>().prop_map(FieldChange::WrongType),
        ],
    ) {
        let mut value = valid_documents()[doc].clone();
        let (mut structs, mut leaves) = (Vec::new(), Vec::new());
        places(&value, "", &mut structs, &mut leaves);
        let field = match &change {
            FieldChange::Unknown(at) => {
                let parent = &structs[at.index(structs.len())];
                node_at(&mut value, parent)["zzFuzz"] = Value::from(1);
                child(parent, "zzFuzz")
            }
            FieldChange::WrongType(at) => {
                let leaf = leaves[at.index(leaves.len())].clone();
                *node_at(&mut value, &leaf) = serde_json::json!([["x"]]);
                leaf
            }
        };
        let (_dir, path, manifests) = load_bytes(serde_json::to_string(&value).unwrap().as_bytes());
        assert_well_placed(&path, &manifests)?;
        prop_assert_eq!(manifests.problems.len(), 1, "{:?}", manifests);
        let problem = manifests.problems[0].to_string();
        prop_assert!(problem.contains(&field), "{} not named in: {}", field, problem);
    }
}

/// A problem about a hostile value says the field and the reason, not the whole value (a
/// manifest may hold a megabyte on one line): at most [`MAX_PROBLEM_CHARS`] and the note
/// of what was cut, and the object named in at most three shortened parts.
#[test]
fn loader_problems_about_huge_values_are_bounded() {
    let huge = "x".repeat(1024 * 1024);
    let good = String::from_utf8(manifest_seeds()[0].clone()).unwrap();
    let access = REQUEST
        .replace("kind: AccessRequest", "kind: PolicyAccess")
        .replace("spec:\n", "spec:\n  connectorRef: {name: acme}\n");
    let cases = [
        // A value of the wrong kind, quoted by the type's error.
        format!("{access}  mode: {huge}\n"),
        format!("{REQUEST}  role: [{huge}]\n"),
        // A syntax error on a megabyte-long line.
        format!("{good}\nkey: [{huge}\n"),
        format!("{good}\n{huge}: \"unterminated\n"),
        // An unknown field, a kind, a namespace and a name of a megabyte.
        format!("{REQUEST}  {huge}: 1\n"),
        REQUEST.replace("kind: AccessRequest", &format!("kind: {huge}")),
        REQUEST.replace("namespace: finance", &format!("namespace: {huge}")),
        REQUEST.replace("name: r1", &format!("name: {huge}")),
    ];
    for (i, text) in cases.iter().enumerate() {
        let (_dir, _path, manifests) = load_bytes(text.as_bytes());
        assert!(!manifests.problems.is_empty(), "case {i}");
        for problem in &manifests.problems {
            let chars = problem.message.chars().count();
            let object = problem.object.as_deref().unwrap_or_default();
            assert!(
                chars <= MAX_PROBLEM_CHARS + 40 && object.chars().count() <= 3 * 70,
                "case {i}: a problem of {chars} characters about {} characters: {}...",
                object.chars().count(),
                problem.to_string().chars().take(300).collect::<String>()
            );
        }
    }
}
