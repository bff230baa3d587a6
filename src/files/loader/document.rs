//! One YAML document into a typed object, a skipped note or a problem.

use serde_json::Value;

use super::header::Header;
use super::manifests::{LoadProblem, Loaded, Manifests, Source};
use super::strict::{access_names, connector_names, typed};
use crate::api::{API_VERSION, ExpensifyConnector, PolicyAccess};
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
