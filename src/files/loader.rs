//! Reads every manifest under a directory: `*.yaml` / `*.yml`, recursive, multi-document.
//! A broken file fails its own objects, never the whole run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::{API_VERSION, ExpensifyConnector, PolicyAccess};
use crate::reconcile::{DEFAULT_NAMESPACE, ObjectKey};

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// 1-based position of the document in its file.
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.path.display(), self.document)
    }
}

/// An object read successfully.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub object: T,
    pub key: ObjectKey,
    pub source: Source,
}

/// Something that could not be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    pub source: Source,
    /// `kind namespace/name` when known.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{}: {object}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// Everything found under a directory.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub connectors: Vec<Loaded<ExpensifyConnector>>,
    pub accesses: Vec<Loaded<PolicyAccess>>,
    pub problems: Vec<LoadProblem>,
    /// Documents of other kinds, skipped.
    pub skipped: Vec<String>,
}

impl Manifests {
    /// Whether every manifest was understood. When not, nothing is inferred from absence:
    /// no object is taken for deleted and no one for "asked for by nobody".
    pub fn complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why a directory could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadManifestsError {
    #[error("cannot read manifest directory {path}: {source}")]
    ReadDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads `dir`, skipping hidden entries (`.git`, the default status directory) and `exclude`.
pub fn load(dir: &Path, exclude: &[PathBuf]) -> Result<Manifests, LoadManifestsError> {
    let mut files = Vec::new();
    collect(dir, exclude, &mut files, true)?;
    files.sort();
    let mut manifests = Manifests::default();
    for path in files {
        load_file(&path, &mut manifests);
    }
    reject_duplicates(&mut manifests);
    Ok(manifests)
}

fn collect(
    dir: &Path,
    exclude: &[PathBuf],
    files: &mut Vec<PathBuf>,
    top: bool,
) -> Result<(), LoadManifestsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadManifestsError::ReadDir {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || exclude.iter().any(|e| same_path(e, &path)) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            // A subdirectory that cannot be read is reported like a broken file.
            if let Err(e) = collect(&path, exclude, files, false) {
                if top {
                    return Err(e);
                }
                files.push(path);
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn load_file(path: &Path, manifests: &mut Manifests) {
    let file_source = Source {
        path: path.to_path_buf(),
        document: 1,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            manifests.problems.push(LoadProblem {
                source: file_source,
                object: None,
                message: format!("cannot read: {e}"),
            });
            return;
        }
    };
    let documents: Vec<Value> = match serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text) {
        Ok(documents) => documents,
        Err(e) => {
            manifests.problems.push(LoadProblem {
                source: file_source,
                object: None,
                message: format!("not valid YAML: {e}"),
            });
            return;
        }
    };
    for (index, document) in documents.into_iter().enumerate() {
        let source = Source {
            path: path.to_path_buf(),
            document: index + 1,
        };
        load_document(document, source, manifests);
    }
}

fn load_document(document: Value, source: Source, manifests: &mut Manifests) {
    if document.is_null() {
        return;
    }
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api_version = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let raw_name = document.pointer("/metadata/name").cloned();
    let name = match &raw_name {
        Some(Value::String(name)) => name.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    };
    let namespace = document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string();
    let ours = matches!(kind.as_str(), "ExpensifyConnector" | "PolicyAccess");
    if !ours {
        let what = if kind.is_empty() {
            "a document without kind".to_string()
        } else {
            format!("{kind} {name}")
        };
        manifests.skipped.push(format!(
            "{source}: {what} skipped (not an {API_VERSION} object)"
        ));
        return;
    }
    let object = Some(format!("{kind} {namespace}/{name}"));
    let problem = |message: String| LoadProblem {
        source: source.clone(),
        object: object.clone(),
        message,
    };
    if api_version != API_VERSION {
        manifests.problems.push(problem(format!(
            "apiVersion {api_version:?} is not supported; use {API_VERSION}"
        )));
        return;
    }
    if name.is_empty() {
        manifests
            .problems
            .push(problem("metadata.name is missing".to_string()));
        return;
    }
    if !raw_name.as_ref().is_some_and(Value::is_string) {
        // YAML reads `y`, `no`, `1` and the like as booleans or numbers.
        manifests.problems.push(problem(format!(
            "metadata.name {name} is not a string; quote it"
        )));
        return;
    }
    let key = ObjectKey::new(namespace.clone(), name);
    match kind.as_str() {
        "ExpensifyConnector" => match typed::<ExpensifyConnector>(document) {
            Ok(mut object) => {
                object.metadata.namespace = Some(namespace);
                manifests.connectors.push(Loaded {
                    object,
                    key,
                    source,
                });
            }
            Err(message) => manifests.problems.push(problem(message)),
        },
        _ => match typed::<PolicyAccess>(document) {
            Ok(mut object) => {
                object.metadata.namespace = Some(namespace);
                manifests.accesses.push(Loaded {
                    object,
                    key,
                    source,
                });
            }
            Err(message) => manifests.problems.push(problem(message)),
        },
    }
}

/// Converts a document to its type, naming the field that did not fit.
fn typed<T: serde::de::DeserializeOwned>(document: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

fn reject_duplicates(manifests: &mut Manifests) {
    fn duplicates<T>(items: &mut Vec<Loaded<T>>, kind: &str, problems: &mut Vec<LoadProblem>) {
        let mut seen: BTreeMap<ObjectKey, Vec<Source>> = BTreeMap::new();
        for item in items.iter() {
            seen.entry(item.key.clone())
                .or_default()
                .push(item.source.clone());
        }
        for (key, sources) in seen.iter().filter(|(_, s)| s.len() > 1) {
            let places = sources
                .iter()
                .map(Source::to_string)
                .collect::<Vec<_>>()
                .join(" and ");
            for source in sources {
                problems.push(LoadProblem {
                    source: source.clone(),
                    object: Some(format!("{kind} {key}")),
                    message: format!(
                        "defined more than once ({places}); none of the copies is used"
                    ),
                });
            }
        }
        items.retain(|item| seen[&item.key].len() == 1);
    }
    duplicates(
        &mut manifests.connectors,
        "ExpensifyConnector",
        &mut manifests.problems,
    );
    duplicates(
        &mut manifests.accesses,
        "PolicyAccess",
        &mut manifests.problems,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const ACCESS: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: team}\nspec:\n  connectorRef: {name: acme}\n  policy: {id: P1}\n  members: [{email: a@acme.example}]\n";

    #[test]
    fn reads_multi_document_files_recursively_and_skips_other_kinds() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a/team.yaml",
            &format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n---\n{ACCESS}---\n"
            ),
        );
        write(dir.path(), ".git/x.yaml", "not: [valid");
        write(dir.path(), "notes.txt", "ignored");
        let manifests = load(dir.path(), &[]).unwrap();
        assert!(manifests.complete(), "{:?}", manifests.problems);
        assert_eq!(manifests.accesses.len(), 1);
        assert_eq!(manifests.accesses[0].key, ObjectKey::new("default", "team"));
        assert_eq!(manifests.accesses[0].source.document, 2);
        assert_eq!(manifests.skipped.len(), 1);
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
}
