//! Why the status directory could not be read or written, and what a person can do when a
//! status file is not vouched for.

use crate::files::status_signing::Unverified;

/// Why the status directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusDirError {
    #[error("cannot read status file {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write status file {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A key that would put a status file outside the directory; the loader refuses such
    /// names first, this is the last guard where the path is built.
    #[error("no status file for {key}: {source}")]
    BadName {
        key: String,
        #[source]
        source: crate::names::InvalidName,
    },
    /// A status file the key does not vouch for: it is not taken as the ledger.
    #[error("status file {path} is ignored: {}", unverified_message(.reason, .path))]
    Unverified { path: String, reason: Unverified },
}

/// Why a status file is ignored, and what a person can do about it.
pub fn unverified_message(reason: &Unverified, path: &str) -> String {
    format!(
        "{reason}. Its object is not synced and removals on its connector are held. Restore the file from git history (`git log -- {path}`), or let the operator forget what it recorded for this object with `state forget` (people it added then stay)"
    )
}
