//! A status file that failed verification, as a problem of the pass: shared by the
//! runner (PolicyAccess and connector records) and the request records.

use std::path::PathBuf;

use super::loader::LoadProblem;
use super::status_dir::{StatusDirError, unverified_message};
use crate::reconcile::ObjectKey;

/// A status file that failed verification, as a problem of the pass.
pub(super) fn status_problem(key: &ObjectKey, kind: &str, error: &StatusDirError) -> LoadProblem {
    let (path, message) = match error {
        StatusDirError::Unverified { path, reason } => {
            (path.clone(), unverified_message(reason, path))
        }
        other => (String::new(), other.to_string()),
    };
    tracing::error!(object = %key, file = %path, "status file ignored: {message}");
    LoadProblem {
        source: super::loader::Source {
            path: PathBuf::from(path),
            document: 1,
        },
        object: Some(format!("{kind} {key}")),
        message: format!("status file ignored: {message}"),
    }
}
