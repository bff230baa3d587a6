//! What a status directory with a key holds to sign and verify its files: the key, whether
//! unsigned files are adopted, and the index of sequence numbers once read.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::files::status_signing::{Index, StatusKey};

/// How a status directory with a key signs and verifies its files.
#[derive(Debug)]
pub(super) struct Signing {
    pub(super) key: StatusKey,
    /// `apply --adopt-unsigned-status`: unsigned files and a missing or broken index are
    /// taken as they are (once, by a person who says so), and signed.
    pub(super) adopt: bool,
    /// Read when first needed, so after the directory is locked.
    pub(super) index: Mutex<Option<IndexState>>,
    /// `--status-anchor`: a file outside the repository remembering the index's last
    /// generation (see [`crate::files::status_signing::Anchor`]).
    pub(super) anchor: Option<PathBuf>,
}

#[derive(Debug)]
pub(super) struct IndexState {
    pub(super) index: Index,
    /// Why the index on disk cannot be trusted, if it cannot.
    pub(super) distrust: Option<String>,
    /// Whether the index changed since it was read.
    pub(super) changed: bool,
    /// The generation the anchor remembers (0 without one).
    pub(super) anchored: u64,
}
