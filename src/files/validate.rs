//! `validate PATH`: every check that needs no credentials and no network, for pre-commit
//! hooks and CI on untrusted branches. It reads manifests and nothing else: no Secret, no
//! status directory, no Expensify call.
//!
//! The checks are the loader's (strict schema, kinds, Kubernetes names, duplicates) and
//! [`crate::reconcile::validate`]'s (every field of a connector, the endpoint allowlist when
//! one is given, every field of a PolicyAccess, connector references and namespace
//! consent), plus what the manifests alone decide of the planner's conflicts
//! ([`crate::reconcile::plan::offline`]) and of each AccessRequest (its fields against its
//! PolicyAccess's `spec.requests`, as `plan` judges it). Entries whose `expiresAt` has passed are
//! warnings, not problems: expiry is the ordinary end of just-in-time access; so are
//! unrestricted tenants (`allowedNamespaces` without a `tenants` entry), which still work.
//!
//! PATH is a directory (everything below it) or one manifest file (that file alone). A
//! connector reference that PATH itself cannot resolve is looked up among the connectors of
//! the repository around PATH (see [`super::repo`]), when there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::loader::{self, LoadManifestsError, LoadProblem, Manifests, Source};
use super::repo::{TargetError, find_root};
use crate::api::RequestPhase;
use crate::expensify::ExpensifyClients;
use crate::reconcile::plan::offline;
use crate::reconcile::requests::{RequestContext, access_of, evaluate};
use crate::reconcile::validate::validate_request;
use crate::reconcile::{
    AccessObject, Approval, ConnectorObject, ObjectKey, Problem, RequestObject, access_warnings,
    connector_warnings, owner_warnings, validate_access, validate_connector,
};
use crate::sync::validate_endpoint;

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub file: String,
    /// 1-based document in the file, when the problem is in one.
    pub document: Option<usize>,
    /// `kind namespace/name`, when known.
    pub object: Option<String>,
    /// The field, e.g. `spec.members[2].role`, when the problem is about one.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(document) = self.document {
            write!(f, " (document {document})")?;
        }
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl From<&LoadProblem> for Finding {
    fn from(problem: &LoadProblem) -> Self {
        Finding {
            file: problem.source.path.display().to_string(),
            document: Some(problem.source.document),
            object: problem.object.clone(),
            field: None,
            message: problem.message.clone(),
        }
    }
}

/// What `validate` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// The path checked.
    pub path: String,
    /// Objects checked.
    pub connectors: usize,
    pub policy_accesses: usize,
    /// The repository whose connectors resolved references PATH could not, if one was read.
    pub connectors_from: Option<String>,
    pub problems: Vec<Finding>,
    /// Named but not failing: unrestricted tenants, and entries past their `expiresAt`,
    /// left to tidy up.
    pub warnings: Vec<Finding>,
    /// Every namespace of the objects read, whatever `-n` asked for (for its message when
    /// it selects nothing).
    #[serde(skip)]
    pub namespaces: BTreeSet<String>,
}

impl Validation {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the checks need besides the manifests.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    /// The endpoint allowlist, when one was given (`--allowed-endpoints`); without it,
    /// endpoints are only checked to be https (or http on loopback).
    pub allowlist: Option<&'a ExpensifyClients>,
    /// Only objects of this namespace are reported.
    pub namespace: Option<&'a str>,
    /// Directories never read (a status directory inside the repository).
    pub exclude: &'a [PathBuf],
    /// For `expiresAt` and the claims of expiring entries.
    pub now: Timestamp,
}

/// Why nothing could be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Path(#[from] TargetError),
    #[error(transparent)]
    Load(#[from] LoadManifestsError),
}

/// The manifests of `path`, and the directory a repository root is looked for from.
fn read(path: &Path, exclude: &[PathBuf]) -> Result<(Manifests, PathBuf), ValidateError> {
    let unreadable = |source| TargetError::Unreadable {
        path: path.display().to_string(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if metadata.is_dir() {
        let start = path.canonicalize().map_err(unreadable)?;
        return Ok((loader::load_tree(path, exclude)?, start));
    }
    if !metadata.is_file() {
        let path = path.display().to_string();
        return Err(TargetError::NotFileOrDirectory { path }.into());
    }
    if !loader::is_manifest_name(path) {
        let path = path.display().to_string();
        return Err(TargetError::NotManifest { path }.into());
    }
    let file = path.canonicalize().map_err(unreadable)?;
    let start = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    Ok((loader::load_file_alone(path), start))
}

/// The objects PATH's references may name: its own connectors and PolicyAccess objects,
/// then, for references PATH cannot resolve (a PolicyAccess's connector, an
/// AccessRequest's PolicyAccess), those of the repository around it. Returns the
/// repository read.
fn reference_targets(
    own: &Own<'_>,
    start: &Path,
    exclude: &[PathBuf],
) -> (Vec<ConnectorObject>, Vec<AccessObject>, Option<PathBuf>) {
    let mut connectors = own.connectors.to_vec();
    let mut accesses = own.accesses.to_vec();
    let unresolved = own
        .accesses
        .iter()
        .any(|a| !connectors.iter().any(|c| c.key == a.connector_key()))
        || own
            .requests
            .iter()
            .any(|r| access_of(r, &accesses).is_none());
    let Some((root, _)) = unresolved.then(|| find_root(start)).flatten() else {
        return (connectors, accesses, None);
    };
    if root == start && !(own.connectors.is_empty() && own.accesses.is_empty()) {
        // PATH is the repository: its objects are all there is.
        return (connectors, accesses, None);
    }
    let Ok(around) = loader::load_tree(&root, exclude) else {
        return (connectors, accesses, None);
    };
    for loaded in &around.connectors {
        if !connectors.iter().any(|c| c.key == loaded.key) {
            connectors.push(ConnectorObject::from_resource(&loaded.object));
        }
    }
    for loaded in &around.accesses {
        if !accesses.iter().any(|a| a.key == loaded.key) {
            let mut access = AccessObject::from_resource(&loaded.object);
            access.key = loaded.key.clone();
            accesses.push(access);
        }
    }
    (connectors, accesses, Some(root))
}

/// The objects read from PATH itself.
struct Own<'a> {
    connectors: &'a [ConnectorObject],
    accesses: &'a [AccessObject],
    requests: &'a [RequestObject],
}

/// Why each AccessRequest could never be granted, as far as the manifests alone tell (its
/// fields against its PolicyAccess's `spec.requests`, a PolicyAccess that takes no
/// requests, a protected person): the judgement `plan` and `apply` make, run without
/// Expensify (so without the policy owner, which only Expensify knows).
fn request_problems(
    requests: &[RequestObject],
    accesses: &[AccessObject],
    connectors: &[ConnectorObject],
    now: Timestamp,
) -> Vec<(ObjectKey, Problem)> {
    let mut found = Vec::new();
    for request in requests {
        let access = access_of(request, accesses);
        let rules = access.and_then(|a| a.spec.requests.as_ref());
        let own = validate_request(&request.spec, rules);
        if !own.is_empty() {
            found.extend(own.into_iter().map(|p| (request.key.clone(), p)));
            continue;
        }
        let connector = access.and_then(|a| connectors.iter().find(|c| c.key == a.connector_key()));
        let context = RequestContext {
            access,
            connector,
            policy_owner: None,
            approval: Approval::Merge,
            now,
        };
        let (verdict, _) = evaluate(request, &[], &context);
        if verdict.phase == RequestPhase::Error {
            let field = if verdict.reason == "Protected" {
                "spec.email"
            } else {
                "spec.accessRef.name"
            };
            found.push((request.key.clone(), Problem::new(field, verdict.message)));
        }
    }
    found
}

/// A finding about an object, placed at its manifest.
fn at(source: Option<&Source>, object: String, problem: Problem) -> Finding {
    Finding {
        file: source.map_or_else(String::new, |s| s.path.display().to_string()),
        document: source.map(|s| s.document),
        object: Some(object),
        field: Some(problem.field),
        message: problem.message,
    }
}

/// Checks `path` (see the module).
pub fn validate(path: &Path, checks: Checks<'_>) -> Result<Validation, ValidateError> {
    let (manifests, start) = read(path, checks.exclude)?;
    let in_namespace = |namespace: &str| checks.namespace.is_none_or(|n| n == namespace);
    let (connectors, accesses, requests) = objects(&manifests);
    let own = Own {
        connectors: &connectors,
        accesses: &accesses,
        requests: &requests,
    };
    let (targets, known_accesses, connectors_from) =
        reference_targets(&own, &start, checks.exclude);
    let sources: BTreeMap<(&str, &ObjectKey), &Source> = manifests
        .connectors
        .iter()
        .map(|c| (("ExpensifyConnector", &c.key), &c.source))
        .chain(
            manifests
                .accesses
                .iter()
                .map(|a| (("PolicyAccess", &a.key), &a.source)),
        )
        .chain(
            manifests
                .requests
                .iter()
                .map(|r| (("AccessRequest", &r.key), &r.source)),
        )
        .collect();
    let finding = |kind: &'static str, key: &ObjectKey, problem: Problem| {
        let source = sources.get(&(kind, key)).copied();
        at(source, format!("{kind} {key}"), problem)
    };
    let mut problems: Vec<Finding> = nothing_below(path, &manifests).into_iter().collect();
    problems.extend(
        manifests
            .problems
            .iter()
            .filter(|p| p.namespace().is_none_or(in_namespace))
            .map(Finding::from),
    );
    for connector in connectors.iter().filter(|c| in_namespace(&c.key.namespace)) {
        let own = validate_connector(connector).into_iter().chain(
            checks
                .allowlist
                .and_then(|clients| validate_endpoint(connector, clients)),
        );
        problems.extend(own.map(|p| finding("ExpensifyConnector", &connector.key, p)));
    }
    problems.extend(
        access_problems(&accesses, &targets, checks.now)
            .into_iter()
            .filter(|(key, _)| in_namespace(&key.namespace))
            .map(|(key, problem)| finding("PolicyAccess", &key, problem)),
    );
    problems.extend(
        request_problems(&requests, &known_accesses, &targets, checks.now)
            .into_iter()
            .filter(|(key, _)| in_namespace(&key.namespace))
            .map(|(key, problem)| finding("AccessRequest", &key, problem)),
    );
    let warnings = warnings(&connectors, &accesses, checks.now, &in_namespace, &finding);
    Ok(Validation {
        path: path.display().to_string(),
        connectors: count(&connectors, |c| &c.key.namespace, in_namespace),
        policy_accesses: count(&accesses, |a| &a.key.namespace, in_namespace),
        connectors_from: connectors_from.map(|root| root.display().to_string()),
        problems,
        warnings,
        namespaces: namespaces(&connectors, &accesses, &requests, &manifests),
    })
}

/// The loaded manifests as the planner's objects, each keyed as loaded.
fn objects(manifests: &Manifests) -> (Vec<ConnectorObject>, Vec<AccessObject>, Vec<RequestObject>) {
    let connectors = manifests
        .connectors
        .iter()
        .map(|c| ConnectorObject::from_resource(&c.object))
        .collect();
    let accesses = manifests
        .accesses
        .iter()
        .map(|a| AccessObject::from_resource(&a.object))
        .collect();
    let requests = manifests
        .requests
        .iter()
        .map(|loaded| {
            let mut request = RequestObject::from_resource(&loaded.object);
            request.key = loaded.key.clone();
            request
        })
        .collect();
    (connectors, accesses, requests)
}

/// What the objects in the namespaces checked ask for that does nothing or that nobody
/// answers for (`validate` still exits 0).
fn warnings(
    connectors: &[ConnectorObject],
    accesses: &[AccessObject],
    now: Timestamp,
    in_namespace: &dyn Fn(&str) -> bool,
    finding: &dyn Fn(&'static str, &ObjectKey, Problem) -> Finding,
) -> Vec<Finding> {
    let of_connectors = connectors
        .iter()
        .filter(|c| in_namespace(&c.key.namespace))
        .flat_map(|c| {
            connector_warnings(c)
                .into_iter()
                .chain(owner_warnings(c))
                .map(|problem| finding("ExpensifyConnector", &c.key, problem))
        });
    let of_accesses = accesses
        .iter()
        .filter(|access| in_namespace(&access.key.namespace))
        .flat_map(|access| {
            access_warnings(access, now)
                .into_iter()
                .map(|problem| finding("PolicyAccess", &access.key, problem))
        });
    of_connectors.chain(of_accesses).collect()
}

/// Every namespace the repository names (objects, and manifests that could not be read).
fn namespaces(
    connectors: &[ConnectorObject],
    accesses: &[AccessObject],
    requests: &[RequestObject],
    manifests: &Manifests,
) -> BTreeSet<String> {
    connectors
        .iter()
        .map(|c| c.key.namespace.clone())
        .chain(accesses.iter().map(|a| a.key.namespace.clone()))
        .chain(requests.iter().map(|r| r.key.namespace.clone()))
        .chain(
            manifests
                .problems
                .iter()
                .filter_map(|p| p.namespace().map(str::to_string)),
        )
        .collect()
}

/// Every problem of the PolicyAccess objects checked: their own fields and references, and
/// the conflicts the manifests alone decide (on each connector they may use).
fn access_problems(
    accesses: &[AccessObject],
    connectors: &[ConnectorObject],
    now: Timestamp,
) -> Vec<(ObjectKey, Problem)> {
    let mut found: Vec<(ObjectKey, Problem)> = Vec::new();
    for access in accesses {
        let own = validate_access(access, connectors).into_iter();
        found.extend(own.map(|p| (access.key.clone(), p)));
    }
    for connector in connectors {
        found.extend(offline::conflicts(connector, accesses, now));
    }
    found.extend(offline::policies_through_two_connectors(
        accesses, connectors,
    ));
    found
}

/// A directory with nothing of this operator below it: most likely the wrong path, which a
/// CI check must not pass as clean.
fn nothing_below(path: &Path, manifests: &Manifests) -> Option<Finding> {
    let empty = manifests.connectors.is_empty()
        && manifests.accesses.is_empty()
        && manifests.requests.is_empty()
        && manifests.problems.is_empty();
    (empty && path.is_dir()).then(|| Finding {
        file: path.display().to_string(),
        document: None,
        object: None,
        field: None,
        message:
            "no ExpensifyConnector, PolicyAccess or AccessRequest manifest below this directory"
                .to_string(),
    })
}

fn count<T>(items: &[T], namespace: impl Fn(&T) -> &String, keep: impl Fn(&str) -> bool) -> usize {
    items.iter().filter(|item| keep(namespace(item))).count()
}

/// What the warnings are about, for the summary line.
fn warned_about(validation: &Validation) -> &'static str {
    let tenants = validation
        .warnings
        .iter()
        .any(|w| w.message.starts_with("unrestricted tenant"));
    let expired = validation
        .warnings
        .iter()
        .any(|w| !w.message.starts_with("unrestricted tenant"));
    match (tenants, expired) {
        (true, true) => "unrestricted tenants, expired entries to remove",
        (true, false) => "unrestricted tenants",
        _ => "expired entries to remove",
    }
}

/// The text `validate` prints: one line per problem, then a summary line.
pub fn text(validation: &Validation) -> String {
    let mut out = String::new();
    for warning in &validation.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    for problem in &validation.problems {
        out.push_str(&format!("{problem}\n"));
    }
    let checked = format!(
        "{} ExpensifyConnector and {} PolicyAccess in {}",
        validation.connectors, validation.policy_accesses, validation.path
    );
    let warned = match validation.warnings.len() {
        0 => String::new(),
        n => format!(" ({n} warning(s): {})", warned_about(validation)),
    };
    if validation.is_clean() {
        out.push_str(&format!("OK: {checked}, no problems{warned}.\n"));
    } else {
        out.push_str(&format!(
            "{} problem(s): {checked}{warned}.\n",
            validation.problems.len()
        ));
    }
    if let Some(root) = &validation.connectors_from {
        out.push_str(&format!(
            "References were also resolved against the manifests of {root}.\n"
        ));
    }
    out
}
