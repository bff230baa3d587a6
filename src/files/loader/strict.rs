//! Strictness: a field the type does not know is an error, and names inside the spec are
//! held to Kubernetes rules.

use serde_json::Value;

use crate::api::{AccessDecision, AccessRequest, ExpensifyConnector, PolicyAccess};
use crate::names;

/// Converts a document to its type, as strictly as the API server: a field the type does
/// not know is an error, not ignored. `names` then checks the names inside the spec.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
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
pub(super) fn connector_names(connector: &ExpensifyConnector) -> Vec<String> {
    crate::reconcile::validate::secret_ref_problems(&connector.spec.credentials_secret_ref)
        .iter()
        .map(ToString::to_string)
        .collect()
}

pub(super) fn access_names(access: &PolicyAccess) -> Vec<String> {
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

/// The PolicyAccess a request names is looked up by name: held to the rules of names.
pub(super) fn request_names(request: &AccessRequest) -> Vec<String> {
    local_ref_problems("spec.accessRef.name", &request.spec.access_ref.name)
}

pub(super) fn decision_names(decision: &AccessDecision) -> Vec<String> {
    local_ref_problems("spec.requestRef.name", &decision.spec.request_ref.name)
}

fn local_ref_problems(field: &str, name: &str) -> Vec<String> {
    match names::check_subdomain(name) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("{field}: {e}")],
    }
}
