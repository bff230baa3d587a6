//! What one file-mode pass found and did: made by `runner`, read by the renderers, the
//! Markdown plan, the failure summary and saved plans. A room of its own so that those
//! readers (`saved_plan` among them) never import the runner that makes it.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::loader::Manifests;
use crate::api::{ConnectorPhase, PolicyAccessStatus};
use crate::reconcile::ObjectKey;
use crate::sync::SyncReport;

/// An object that is invalid before any connector is involved (connector missing or not
/// allowed), with its status.
#[derive(Debug, Clone)]
pub struct UnattachedAccess {
    pub key: ObjectKey,
    pub status: PolicyAccessStatus,
}

/// Everything one pass found and did.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub manifests: Manifests,
    pub syncs: Vec<SyncReport>,
    pub unattached: Vec<UnattachedAccess>,
    /// Where each object came from, for messages.
    pub sources: BTreeMap<ObjectKey, String>,
    /// A stop was requested before every connector synced.
    pub stopped: bool,
    /// Objects that keep a ledger while the status directory holds none.
    pub missing_ledger: Option<MissingLedger>,
}

/// Objects that keep a ledger in the status directory (Additive and Authoritative ones)
/// while it holds no PolicyAccess status at all: the ledger is lost (an evicted CI cache, a
/// fresh runner, another `--status-dir`), or nothing was ever applied from here. Either
/// way, what they granted before cannot be taken back: a plan without it reads "No
/// changes" although a deleted object's grants would stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingLedger {
    /// The status directory, as given.
    pub status_dir: String,
    pub objects: Vec<ObjectKey>,
}

impl MissingLedger {
    /// What `plan` says of it (text, Markdown, JSON).
    pub fn warning(&self) -> String {
        let n = self.objects.len();
        format!(
            "no recorded state for {n} {}: removals of what they granted cannot be planned (the status directory {} holds no PolicyAccess status; restore it, unless nothing was ever applied from here)",
            if n == 1 { "object" } else { "objects" },
            self.status_dir,
        )
    }

    /// Why `--require-status` refuses.
    pub fn refusal(&self) -> String {
        let keys: Vec<String> = self.objects.iter().map(ToString::to_string).collect();
        format!(
            "--require-status: the status directory {} holds no PolicyAccess status, but {} object(s) keep a ledger there ({}{}); restore it (or, the first time only, run without --require-status)",
            self.status_dir,
            keys.len(),
            keys.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if keys.len() > 3 { ", ..." } else { "" },
        )
    }
}

impl PassReport {
    /// Whether anything ended in error (load problems, connector or object errors).
    pub fn has_errors(&self) -> bool {
        self.stopped
            || self.syncs.iter().any(|s| s.refused.is_some())
            || !self.manifests.problems.is_empty()
            || !self.unattached.is_empty()
            || self.syncs.iter().any(|s| {
                s.connector_status.phase == ConnectorPhase::Error
                    || s.statuses
                        .values()
                        .any(|st| st.phase == crate::api::AccessPhase::Error)
            })
    }

    /// Whether any object is Blocked.
    pub fn has_blocked(&self) -> bool {
        self.syncs.iter().any(|s| s.plan.has_blocks())
            || self.syncs.iter().any(|s| {
                s.statuses
                    .values()
                    .any(|st| st.phase == crate::api::AccessPhase::Blocked)
            })
    }

    /// Changes planned across all connectors.
    pub fn pending_changes(&self) -> usize {
        self.syncs.iter().map(|s| s.plan.changes.len()).sum()
    }

    /// The earliest `expiresAt` ahead.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.syncs.iter().filter_map(SyncReport::next_expiry).min()
    }
}
