//! Reads every manifest under a directory: `*.yaml` / `*.yml`, recursive, multi-document.
//!
//! Reading is as strict as `kubectl apply`: an unknown field, a field of the wrong type, a
//! kind of our group that does not exist, or a name the API server would refuse fails that
//! document, naming file, document and field. A failed document is a [`LoadProblem`], and
//! any problem makes the [`Manifests`] incomplete, so nothing is inferred from absence: a
//! typo never reads as "this person is no longer wanted". A broken file fails its own
//! objects, never the whole run.
//!
//! Files are streamed one document at a time under fixed budgets (file size, documents,
//! nodes, depth, aliases), so memory stays bounded by the objects kept, whatever the input.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tracing::info;

use crate::api::{API_VERSION, ExpensifyConnector, GROUP, PolicyAccess};
use crate::names;
use crate::reconcile::{DEFAULT_NAMESPACE, ObjectKey};

/// Largest manifest file read (an export of thousands of policies is a few MB).
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most documents read from one file.
pub const MAX_DOCUMENTS_PER_FILE: usize = 100_000;
/// Most YAML nodes in one document (a PolicyAccess with 10,000 members has ~50,000).
pub const MAX_NODES_PER_DOCUMENT: usize = 500_000;
/// Deepest nesting in one document; Kubernetes objects are a handful of levels deep.
pub const MAX_DEPTH: usize = 64;
/// Most YAML events an alias may replay in one document: anchors for a shared member list
/// are fine, an alias bomb stops early.
pub const MAX_ALIAS_EVENTS: usize = 100_000;

/// The kinds of [`GROUP`].
const KINDS: [&str; 2] = ["ExpensifyConnector", "PolicyAccess"];

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// 1-based position of the document in its file (empty documents are not counted).
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

impl LoadProblem {
    /// The namespace of the object the problem is about, when known (`kind ns/name`).
    pub fn namespace(&self) -> Option<&str> {
        let (_, key) = self.object.as_deref()?.split_once(' ')?;
        key.split_once('/').map(|(namespace, _)| namespace)
    }
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
    /// Files that are not manifests and documents of other kinds, one note each.
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
    /// Nothing can be synced, and an empty or wrong directory must not read as "in sync".
    #[error(
        "no ExpensifyConnector in {path}: found {found}; file mode needs the connector's manifest in the same directory"
    )]
    NoConnector { path: String, found: String },
}

/// Reads `dir`, skipping hidden entries (`.git`, the default status directory) and `exclude`.
/// Each skipped file and document is logged once at info. A directory where nothing at all
/// names a connector is an error; one whose connector failed to load is not (its problem
/// says why).
pub fn load(dir: &Path, exclude: &[PathBuf]) -> Result<Manifests, LoadManifestsError> {
    let (manifests, yaml_files, other_files) = read_tree(dir, exclude)?;
    if manifests.connectors.is_empty() && manifests.problems.is_empty() {
        return Err(LoadManifestsError::NoConnector {
            path: dir.display().to_string(),
            found: found(yaml_files, other_files, &manifests),
        });
    }
    Ok(manifests)
}

/// [`load`] without the need for a connector: `validate` checks part of a repository (a
/// directory of PolicyAccess objects whose connector is above it) as well as a whole one.
pub fn load_tree(dir: &Path, exclude: &[PathBuf]) -> Result<Manifests, LoadManifestsError> {
    read_tree(dir, exclude).map(|(manifests, _, _)| manifests)
}

/// Every manifest below `dir`, with the numbers of YAML and other files seen.
fn read_tree(
    dir: &Path,
    exclude: &[PathBuf],
) -> Result<(Manifests, usize, usize), LoadManifestsError> {
    let mut files = Vec::new();
    let mut other_files = Vec::new();
    collect(dir, exclude, &mut files, &mut other_files, true)?;
    files.sort();
    other_files.sort();
    let mut manifests = Manifests {
        skipped: other_files
            .iter()
            .map(|path| format!("{}: skipped (not a .yaml or .yml file)", path.display()))
            .collect(),
        ..Manifests::default()
    };
    for path in &files {
        load_file(path, &mut manifests);
    }
    reject_duplicates(&mut manifests);
    for note in &manifests.skipped {
        info!("{note}");
    }
    Ok((manifests, files.len(), other_files.len()))
}

/// Reads one manifest file alone, as strictly as [`load`] reads a directory (duplicates
/// inside the file included). A file without any connector is not an error here: `validate`
/// checks one file of a repository at a time.
pub fn load_file_alone(path: &Path) -> Manifests {
    let mut manifests = Manifests::default();
    load_file(path, &mut manifests);
    reject_duplicates(&mut manifests);
    manifests
}

/// Whether `dir` itself (not a subdirectory) holds a manifest file with an
/// ExpensifyConnector document, read or not: how a repository root is recognised.
pub fn holds_connector(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| is_manifest_name(path))
        .collect();
    files.sort();
    files.iter().any(|path| {
        let manifests = load_file_alone(path);
        !manifests.connectors.is_empty()
            || manifests.problems.iter().any(|p| {
                p.object
                    .as_deref()
                    .is_some_and(|o| o.starts_with("ExpensifyConnector "))
            })
    })
}

/// `*.yaml` or `*.yml`: the files read as manifests.
pub fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// What a directory without a connector held, for the error.
fn found(yaml_files: usize, other_files: usize, manifests: &Manifests) -> String {
    let documents = manifests.skipped.len() - other_files;
    format!(
        "{yaml_files} YAML file(s) with {} PolicyAccess and {documents} document(s) of other kinds, and {other_files} other file(s)",
        manifests.accesses.len()
    )
}

fn collect(
    dir: &Path,
    exclude: &[PathBuf],
    files: &mut Vec<PathBuf>,
    other_files: &mut Vec<PathBuf>,
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
            if let Err(e) = collect(&path, exclude, files, other_files, false) {
                if top {
                    return Err(e);
                }
                files.push(path);
            }
        } else if is_manifest_name(&path) {
            files.push(path);
        } else {
            other_files.push(path);
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

/// The parser's budgets. They apply per document (the reader streams), except the byte
/// cap, which covers the whole file.
fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(usize::try_from(MAX_FILE_BYTES).unwrap_or(usize::MAX)),
            max_nodes: MAX_NODES_PER_DOCUMENT,
            max_events: 4 * MAX_NODES_PER_DOCUMENT,
            max_depth: MAX_DEPTH,
            max_recorded_anchor_events: MAX_ALIAS_EVENTS,
            max_recorded_anchor_bytes: 8 * 1024 * 1024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
        },
        emit_comments: false,
    }
}

/// Opens a manifest after checking, without opening it, that it is a regular file of
/// reasonable size (opening a FIFO would block; a device would never end).
fn open_manifest(path: &Path) -> Result<std::fs::File, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if metadata.is_dir() {
        return Err("cannot read this directory".to_string());
    }
    if !metadata.is_file() {
        return Err("not a regular file (a FIFO or a device is never read)".to_string());
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes, more than the {} MiB a manifest file may have; split it (`export --output-dir` writes one file per policy)",
            metadata.len(),
            MAX_FILE_BYTES / (1024 * 1024)
        ));
    }
    std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))
}

fn load_file(path: &Path, manifests: &mut Manifests) {
    match open_manifest(path) {
        Ok(file) => read_documents(path, std::io::BufReader::new(file), manifests),
        Err(message) => manifests.problems.push(LoadProblem {
            source: Source {
                path: path.to_path_buf(),
                document: 1,
            },
            object: None,
            message,
        }),
    }
}

/// Reads the documents of one file, each into an object, a skipped note or a problem.
fn read_documents(path: &Path, mut reader: impl std::io::Read, manifests: &mut Manifests) {
    let source = |document: usize| Source {
        path: path.to_path_buf(),
        document,
    };
    let file_problem = |document: usize, message: String| LoadProblem {
        source: source(document),
        object: None,
        message,
    };
    let documents = serde_saphyr::read_with_options::<_, Value>(&mut reader, parse_options());
    for (index, result) in documents.enumerate() {
        let document = index + 1;
        if document > MAX_DOCUMENTS_PER_FILE {
            manifests.problems.push(file_problem(
                document,
                format!(
                    "more than {MAX_DOCUMENTS_PER_FILE} documents in one file; the rest is not read"
                ),
            ));
            return;
        }
        match result {
            Ok(value) => load_document(value, source(document), manifests),
            Err(e) => manifests
                .problems
                .push(file_problem(document, yaml_error(&e))),
        }
    }
}

/// A limit is not a syntax error: say which one, so the reader knows what to change.
fn yaml_error(error: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error;
    let mut cause = error;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = cause {
        cause = error;
    }
    match cause {
        Error::Budget { .. } => format!(
            "refused by the reader's limits (at most {MAX_NODES_PER_DOCUMENT} nodes per document, nesting {MAX_DEPTH} deep, bounded aliases): {error}"
        ),
        _ => format!("not valid YAML: {error}"),
    }
}

/// What a document says it is, read before its type is known.
struct Header {
    kind: String,
    api_version: String,
    name: Option<Value>,
    namespace: Option<Value>,
}

impl Header {
    fn read(document: &Value) -> Self {
        let text = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            kind: text("/kind"),
            api_version: text("/apiVersion"),
            name: document.pointer("/metadata/name").cloned(),
            namespace: document.pointer("/metadata/namespace").cloned(),
        }
    }

    fn name(&self) -> String {
        match &self.name {
            Some(Value::String(name)) => name.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => String::new(),
        }
    }

    fn namespace(&self) -> String {
        self.namespace
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string()
    }

    /// Whether the document is for this operator at all: one of its kinds, or its group.
    fn ours(&self) -> bool {
        KINDS.contains(&self.kind.as_str())
            || self.api_version.split_once('/').map(|(group, _)| group) == Some(GROUP)
    }

    /// `kind namespace/name`, the name shortened as in name errors.
    fn object(&self) -> String {
        let name = self.name();
        let name = if name.chars().count() > 64 {
            format!("{}...", name.chars().take(64).collect::<String>())
        } else {
            name
        };
        format!("{} {}/{name}", self.kind, self.namespace())
    }

    /// Everything that can be said wrong before the document is typed.
    fn check(&self) -> Result<(), String> {
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(format!(
                "kind {:?} does not exist in {GROUP}; its kinds are {}",
                self.kind,
                KINDS.join(" and ")
            ));
        }
        if self.api_version != API_VERSION {
            return Err(format!(
                "apiVersion {:?} is not supported; use {API_VERSION}",
                self.api_version
            ));
        }
        let name = self.name();
        if name.is_empty() {
            return Err("metadata.name is missing".to_string());
        }
        if !self.name.as_ref().is_some_and(Value::is_string) {
            // YAML reads `y`, `no`, `1` and the like as booleans or numbers.
            return Err(format!("metadata.name {name} is not a string; quote it"));
        }
        names::check_subdomain(&name).map_err(|e| format!("metadata.name: {e}"))?;
        match &self.namespace {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(namespace)) => {
                names::check_label(namespace).map_err(|e| format!("metadata.namespace: {e}"))
            }
            Some(other) => Err(format!(
                "metadata.namespace {other} is not a string; quote it"
            )),
        }
    }
}

fn load_document(document: Value, source: Source, manifests: &mut Manifests) {
    if document.is_null() {
        return;
    }
    let header = Header::read(&document);
    if !header.ours() {
        let what = if header.kind.is_empty() {
            "a document without kind".to_string()
        } else {
            format!("{} {}", header.kind, header.name())
        };
        manifests.skipped.push(format!(
            "{source}: {what} skipped (not an {API_VERSION} object)"
        ));
        return;
    }
    let problem = |message: String| LoadProblem {
        source: source.clone(),
        object: Some(header.object()),
        message,
    };
    if let Err(message) = header.check() {
        manifests.problems.push(problem(message));
        return;
    }
    let namespace = header.namespace();
    let key = ObjectKey::new(namespace.clone(), header.name());
    if header.kind == "ExpensifyConnector" {
        match typed::<ExpensifyConnector>(document, connector_names) {
            Ok(mut object) => {
                object.metadata.namespace = Some(namespace);
                manifests.connectors.push(Loaded {
                    object,
                    key,
                    source,
                });
            }
            Err(message) => manifests.problems.push(problem(message)),
        }
    } else {
        match typed::<PolicyAccess>(document, access_names) {
            Ok(mut object) => {
                object.metadata.namespace = Some(namespace);
                manifests.accesses.push(Loaded {
                    object,
                    key,
                    source,
                });
            }
            Err(message) => manifests.problems.push(problem(message)),
        }
    }
}

/// Converts a document to its type, as strictly as the API server: a field the type does
/// not know is an error, not ignored. `names` then checks the names inside the spec.
fn typed<T: serde::de::DeserializeOwned>(
    document: Value,
    names: fn(&T) -> Vec<String>,
) -> Result<T, String> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result: Result<T, _> = serde_ignored::deserialize(
        serde_path_to_error::Deserializer::new(document, &mut track),
        |path| {
            // kube's generated types read `apiVersion` and `kind` as ignored fields; the
            // header check has already held them to the exact values.
            let path = field_path(&path);
            if path != "apiVersion" && path != "kind" {
                unknown.push(path);
            }
        },
    );
    let object = result.map_err(|e| {
        let path = track.path().to_string();
        if path == "." {
            e.to_string()
        } else {
            format!("{path}: {e}")
        }
    })?;
    if !unknown.is_empty() {
        return Err(format!(
            "unknown field{} {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", ")
        ));
    }
    let problems = names(&object);
    if problems.is_empty() {
        Ok(object)
    } else {
        Err(problems.join("; "))
    }
}

/// `spec.members[0].emial`, the way kubectl names fields.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// The Secret name and keys become a path under `--secrets-dir`.
fn connector_names(connector: &ExpensifyConnector) -> Vec<String> {
    crate::reconcile::validate::secret_ref_problems(&connector.spec.credentials_secret_ref)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn access_names(access: &PolicyAccess) -> Vec<String> {
    let reference = &access.spec.connector_ref;
    let mut problems = Vec::new();
    if let Err(e) = names::check_subdomain(&reference.name) {
        problems.push(format!("spec.connectorRef.name: {e}"));
    }
    if let Some(Err(e)) = reference.namespace.as_deref().map(names::check_label) {
        problems.push(format!("spec.connectorRef.namespace: {e}"));
    }
    problems
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
            &format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n---\n{ACCESS}---\n"
            ),
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
            text[0]
                .contains("top.yaml (document 1): PolicyAccess default/other: unknown field extra"),
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
            text[0].contains("typo.yaml")
                && text[0].contains("kind \"PolicyAcess\" does not exist"),
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
            "\n", ": ", "- ", "---\n", "[", "]", "{", "}", "&a ", "*a", "!!str ", "? ", "|\n",
            "\"", "'", "#", "\t", "..", "/", "null", "~", "1e999", "-1", "\u{feff}", "\\",
            "<<: *a\n",
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
}
