//! Access requests in file mode: the merge is the approval. Each AccessRequest manifest is
//! planned with its last saved status (its phase, clock and ledger entries), so a second
//! run does not restart its clock; a request whose manifest is gone ends only when every
//! manifest and status file was read (a typo never reads as "the request ended").

use tracing::warn;

use super::loader::{LoadProblem, Manifests};
use super::status_dir::{StatusDir, StatusDirError};
use crate::api::{AccessRequest, RequestPhase};
use crate::reconcile::requests::{access_of, connector_answering, holds_entries};
use crate::reconcile::{AccessObject, ConnectorObject, ObjectKey, RequestObject};
use crate::sanitize::cut;

/// The requests of a pass, and the problems their status files had.
pub(super) struct FileRequests {
    pub(super) objects: Vec<RequestObject>,
    /// Requests whose status file failed verification: never written over.
    pub(super) unverified: Vec<ObjectKey>,
    pub(super) problems: Vec<LoadProblem>,
}

/// Reads the saved request statuses and pairs them with the manifests. `complete` says
/// whether a saved request without a manifest may be taken for deleted.
pub(super) fn file_requests(
    manifests: &Manifests,
    status_dir: &StatusDir,
    complete: bool,
) -> Result<FileRequests, StatusDirError> {
    for decision in &manifests.decisions {
        warn!(
            decision = %decision.key,
            file = %decision.source,
            "AccessDecision not counted: in file mode the merge of the AccessRequest is the approval"
        );
    }
    let listing = status_dir.list::<AccessRequest>()?;
    let mut problems = Vec::new();
    let mut unverified = Vec::new();
    for (key, error) in &listing.unverified {
        problems.push(super::status_problem::status_problem(
            key,
            "AccessRequest",
            error,
        ));
        unverified.push(key.clone());
    }
    let mut objects: Vec<RequestObject> = manifests
        .requests
        .iter()
        .map(|loaded| {
            let mut object = RequestObject::from_resource(&loaded.object);
            object.key = loaded.key.clone();
            object.status = listing
                .objects
                .iter()
                .find(|(key, _)| *key == loaded.key)
                .and_then(|(_, saved)| saved.status.clone());
            object
        })
        .collect();
    let complete = complete && problems.is_empty();
    for (key, saved) in &listing.objects {
        if manifests.requests.iter().any(|loaded| loaded.key == *key) {
            continue;
        }
        let mut object = RequestObject::from_resource(saved);
        object.key = key.clone();
        // Gone from the repository: it ends now. When the inventory is incomplete the
        // manifest may be the one that could not be read: it is kept as it was.
        object.deleting = complete;
        objects.push(object);
    }
    Ok(FileRequests {
        objects,
        unverified,
        problems,
    })
}

/// The requests of a pass as `plan` shows them: one that no connector's sync can judge
/// (its PolicyAccess's connector does not exist, or its PolicyAccess does not and no
/// connector serves its namespace) is `Error` (`NotRequestable`) saying so, rather than
/// `Pending` for ever: `plan` fails on it as `validate` does. Nothing is saved for it.
pub(super) fn as_shown(
    requests: &[RequestObject],
    accesses: &[AccessObject],
    connectors: &[ConnectorObject],
) -> Vec<RequestObject> {
    requests
        .iter()
        .map(|asked| {
            let mut shown = asked.clone();
            if let Some(why) = unjudged(asked, accesses, connectors) {
                let status = shown.status.get_or_insert_with(Default::default);
                status.phase = RequestPhase::Error;
                status.reason = Some("NotRequestable".into());
                status.message = Some(format!("{why}: nothing can grant this request"));
            }
            shown
        })
        .collect()
}

/// Why no connector's sync judges `asked`, if none does.
fn unjudged(
    asked: &RequestObject,
    accesses: &[AccessObject],
    connectors: &[ConnectorObject],
) -> Option<String> {
    if holds_entries(asked.status.as_ref()) {
        // The connector that wrote its entries judges it.
        return None;
    }
    let namespace = &asked.key.namespace;
    let name = cut(&asked.spec.access_ref.name, 253);
    match access_of(asked, accesses) {
        Some(access) => {
            let connector = access.connector_key();
            (!connectors.iter().any(|c| c.key == connector)).then(|| {
                format!("connector {connector} of PolicyAccess {} does not exist", access.key)
            })
        }
        None => connector_answering(namespace, accesses.iter().cloned(), connectors.iter().cloned())
            .is_none()
            .then(|| {
                format!(
                    "PolicyAccess {name} does not exist in namespace {namespace}, and no connector serves that namespace"
                )
            }),
    }
}
