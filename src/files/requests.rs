//! Access requests in file mode: the merge is the approval. Each AccessRequest manifest is
//! planned with its last saved status (its phase, clock and ledger entries), so a second
//! run does not restart its clock; a request whose manifest is gone ends only when every
//! manifest and status file was read (a typo never reads as "the request ended").

use tracing::warn;

use super::loader::{LoadProblem, Manifests};
use super::status_dir::{StatusDir, StatusDirError};
use crate::api::AccessRequest;
use crate::reconcile::{ObjectKey, RequestObject};

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
