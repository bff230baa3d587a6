//! One YAML document into a typed object, a skipped note or a problem.

use serde_json::Value;

use super::budgets::bounded;
use super::header::Header;
use super::manifests::{LoadProblem, Loaded, Manifests, Source};
use super::strict::{access_names, connector_names, decision_names, request_names, typed};
use crate::api::{API_VERSION, AccessDecision, AccessRequest, ExpensifyConnector, PolicyAccess};
use crate::reconcile::ObjectKey;

pub(super) fn load_document(document: Value, source: Source, manifests: &mut Manifests) {
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
    let problem_source = source.clone();
    let problem = |message: String| LoadProblem {
        source: problem_source,
        object: Some(header.object()),
        message: bounded(message),
    };
    if let Err(message) = header.check() {
        manifests.problems.push(problem(message));
        return;
    }
    let namespace = header.namespace();
    let key = ObjectKey::new(namespace.clone(), header.name());
    match header.kind.as_str() {
        "ExpensifyConnector" => keep(
            typed::<ExpensifyConnector>(document, connector_names),
            (key, source),
            namespace,
            &mut manifests.connectors,
        ),
        "AccessRequest" => keep(
            typed::<AccessRequest>(document, request_names),
            (key, source),
            namespace,
            &mut manifests.requests,
        ),
        "AccessDecision" => keep(
            typed::<AccessDecision>(document, decision_names),
            (key, source),
            namespace,
            &mut manifests.decisions,
        ),
        _ => keep(
            typed::<PolicyAccess>(document, access_names),
            (key, source),
            namespace,
            &mut manifests.accesses,
        ),
    }
    .unwrap_or_else(|message| manifests.problems.push(problem(message)));
}

/// Keeps a typed object, its namespace set to the one it was read in.
fn keep<T: kube::Resource>(
    typed: Result<T, String>,
    (key, source): (ObjectKey, Source),
    namespace: String,
    into: &mut Vec<Loaded<T>>,
) -> Result<(), String> {
    let mut object = typed?;
    object.meta_mut().namespace = Some(namespace);
    into.push(Loaded {
        object,
        key,
        source,
    });
    Ok(())
}
