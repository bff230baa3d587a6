//! What one file-mode pass found and did: made by `runner`, read by the renderers, the
//! Markdown plan, the failure summary and saved plans. A room of its own so that those
//! readers (`saved_plan` among them) never import the runner that makes it.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::loader::Manifests;
use crate::api::{
    AccessRequestSpec, AccessRequestStatus, ConnectorPhase, PolicyAccessStatus, RequestPhase,
};
use crate::reconcile::{ObjectKey, RequestObject};
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
    /// Every AccessRequest the pass planned (from its manifest, or from its saved status
    /// when the manifest is gone), with the status it started from.
    pub requests: Vec<RequestObject>,
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

    /// Whether an AccessRequest still in the repository (or cluster) is in `Error`: it can
    /// never be granted as written (over its rules' caps, a role they do not allow, no
    /// reason, a PolicyAccess that takes no requests). A pull-request check must not pass
    /// it. Denied, Expired and ended requests are no failure; nor is one whose manifest is
    /// gone, since removing it is the fix.
    pub fn has_failed_requests(&self) -> bool {
        self.requests_seen()
            .iter()
            .any(|r| !r.removed && r.status.phase == RequestPhase::Error)
    }

    /// Whether `plan`, `apply` and `kubectl expensify diff` exit 1: anything in error,
    /// Blocked, or an AccessRequest in `Error`.
    pub fn fails(&self) -> bool {
        self.has_errors() || self.has_blocked() || self.has_failed_requests()
    }

    /// Changes planned across all connectors.
    pub fn pending_changes(&self) -> usize {
        self.syncs.iter().map(|s| s.plan.changes.len()).sum()
    }

    /// The earliest `expiresAt` ahead.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.syncs.iter().filter_map(SyncReport::next_expiry).min()
    }

    /// Each AccessRequest of the pass with the status its sync gave it (the one it
    /// started from when no sync judged it: its connector failed or is missing), sorted
    /// by key. What `plan` and `review` show of requests, in every format.
    pub fn requests_seen(&self) -> Vec<RequestSeen> {
        let mut seen: Vec<RequestSeen> = self
            .requests
            .iter()
            .map(|asked| {
                let judged = self
                    .syncs
                    .iter()
                    .find_map(|s| s.request_statuses.get(&asked.key).map(|st| (s, st)));
                RequestSeen {
                    key: asked.key.clone(),
                    connector: judged.map(|(sync, _)| sync.connector.clone()),
                    spec: shown_spec(&asked.spec),
                    status: judged
                        .map(|(_, status)| status.clone())
                        .or_else(|| asked.status.clone())
                        .unwrap_or_default(),
                    removed: asked.deleting,
                }
            })
            .collect();
        seen.sort_by(|a, b| a.key.cmp(&b.key));
        seen
    }
}

/// A request's spec as `plan`, `review` and `diff` show it: in file mode no CRD bounds
/// the fields, so each is cut at the length the CRD allows (a role or duration at 64
/// characters, the reason at 1,000; text and Markdown cut it further); the checks quote
/// them shortened too.
fn shown_spec(spec: &AccessRequestSpec) -> AccessRequestSpec {
    use crate::sanitize::{cut, shortened};
    AccessRequestSpec {
        access_ref: crate::api::LocalRef {
            name: cut(&spec.access_ref.name, 253),
        },
        email: cut(&spec.email, 254),
        role: spec.role.as_deref().map(shortened),
        duration: shortened(&spec.duration),
        reason: spec.reason.as_deref().map(|r| cut(r, 1_000)),
        requester: cut(&spec.requester, 254),
    }
}

/// A status time as the saved status spells it (whole seconds, UTC): the same instant
/// reads the same before and after a status file round trip.
pub fn shown_time(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    time.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Longest requester's reason `plan` and `review` print, in characters: it is hostile
/// text, written by whoever opens the pull request, and one table cell.
pub const SHOWN_REASON_CHARS: usize = 200;

/// One AccessRequest as a pass saw it: what was asked and where the pass left it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSeen {
    pub key: ObjectKey,
    /// The connector whose sync judged it; `None` when none did.
    pub connector: Option<ObjectKey>,
    pub spec: AccessRequestSpec,
    pub status: AccessRequestStatus,
    /// Its manifest is gone from the repository: it ends now.
    pub removed: bool,
}

impl RequestSeen {
    /// The role asked for (`user` when the request leaves it out).
    pub fn role(&self) -> &str {
        self.spec.role.as_deref().unwrap_or("user")
    }

    /// When its access ends: `expiresAt` once granted, `when granted + DURATION` while it
    /// waits for its grant (the clock starts when the grant lands), `None` for a request
    /// that ended without one.
    pub fn ends(&self) -> Option<String> {
        if let Some(expires) = &self.status.expires_at {
            return Some(shown_time(expires));
        }
        matches!(
            self.status.phase,
            RequestPhase::Pending | RequestPhase::Active
        )
        .then(|| format!("when granted + {}", self.spec.duration))
    }

    /// `Active (Approved)`: the phase and why.
    pub fn phase(&self) -> String {
        match self.status.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(reason) => format!("{} ({reason})", self.status.phase),
            None => self.status.phase.to_string(),
        }
    }

    /// The status message once the request is over or refused (`Error`, `Denied`,
    /// `Revoked`, `Expired`): the reader needs the why, not only the phase.
    pub fn problem(&self) -> Option<&str> {
        (!matches!(
            self.status.phase,
            RequestPhase::Pending | RequestPhase::Active
        ))
        .then_some(self.status.message.as_deref())
        .flatten()
        .filter(|m| !m.is_empty())
    }

    /// The requester's reason, cut to [`SHOWN_REASON_CHARS`] characters for people;
    /// escape it for where it goes.
    pub fn shown_reason(&self) -> Option<String> {
        let reason = self.spec.reason.as_deref()?;
        if reason.chars().count() <= SHOWN_REASON_CHARS {
            return Some(reason.to_string());
        }
        let cut: String = reason.chars().take(SHOWN_REASON_CHARS).collect();
        Some(format!("{cut}… (cut)"))
    }

    /// Who approved it: the deciders whose approvals counted, or, in file mode where
    /// decisions are never counted, the merge that brought the request in.
    pub fn decided_by(&self) -> String {
        if !self.status.approvals.is_empty() {
            let by: Vec<&str> = self
                .status
                .approvals
                .iter()
                .map(|a| a.by.as_str())
                .collect();
            return by.join(" ");
        }
        match self.status.phase {
            RequestPhase::Active => "merge".to_string(),
            _ => String::new(),
        }
    }
}

/// A pass that saw one AccessRequest (`finance/r1`, henry asking `role` on the
/// PolicyAccess `books`) and no connector: what the renderers' tests show.
#[cfg(test)]
pub(crate) fn report_with_request(reason: Option<&str>, status: AccessRequestStatus) -> PassReport {
    use crate::api::LocalRef;
    let request = RequestObject {
        key: ObjectKey::new("finance", "r1"),
        generation: Some(1),
        created: None,
        spec: AccessRequestSpec {
            access_ref: LocalRef {
                name: "books".into(),
            },
            email: "henry@acme.example".into(),
            role: Some("admin".into()),
            duration: "4h".into(),
            reason: reason.map(Into::into),
            requester: "henry@acme.example".into(),
        },
        deleting: false,
        status: Some(status),
    };
    PassReport {
        manifests: Manifests::default(),
        syncs: Vec::new(),
        unattached: Vec::new(),
        sources: BTreeMap::new(),
        stopped: false,
        missing_ledger: None,
        requests: vec![request],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn seen(phase: RequestPhase, expires: Option<&str>) -> RequestSeen {
        let status = AccessRequestStatus {
            phase,
            expires_at: expires.map(|t| Time(t.parse().unwrap())),
            ..AccessRequestStatus::default()
        };
        report_with_request(Some("month end"), status)
            .requests_seen()
            .remove(0)
    }

    #[test]
    fn a_request_ends_at_its_expiry_or_its_duration_after_the_grant() {
        assert_eq!(
            seen(RequestPhase::Pending, None).ends().as_deref(),
            Some("when granted + 4h")
        );
        assert_eq!(
            seen(RequestPhase::Active, None).ends().as_deref(),
            Some("when granted + 4h"),
            "approved, grant not landed yet: the clock has not started"
        );
        assert_eq!(
            seen(RequestPhase::Active, Some("2030-01-01T04:00:00Z"))
                .ends()
                .as_deref(),
            Some("2030-01-01T04:00:00Z")
        );
        assert_eq!(
            seen(RequestPhase::Error, None).ends(),
            None,
            "never granted, never ends"
        );
    }

    #[test]
    fn a_long_reason_is_cut_for_people_and_whole_in_the_status() {
        let long = "é".repeat(SHOWN_REASON_CHARS + 50);
        let report = report_with_request(Some(&long), AccessRequestStatus::default());
        let request = report.requests_seen().remove(0);
        let shown = request.shown_reason().unwrap();
        assert_eq!(
            shown.chars().count(),
            SHOWN_REASON_CHARS + "… (cut)".chars().count()
        );
        assert!(shown.ends_with("… (cut)"), "{shown}");
        assert_eq!(request.spec.reason.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn only_a_request_in_error_that_is_still_asked_for_fails() {
        let with = |phase: RequestPhase, removed: bool| {
            let status = AccessRequestStatus {
                phase,
                ..AccessRequestStatus::default()
            };
            let mut report = report_with_request(None, status);
            report.requests[0].deleting = removed;
            report
        };
        assert!(with(RequestPhase::Error, false).has_failed_requests());
        assert!(with(RequestPhase::Error, false).fails());
        assert!(
            !with(RequestPhase::Error, true).has_failed_requests(),
            "its file is removed: that is the fix"
        );
        for ended in [
            RequestPhase::Denied,
            RequestPhase::Expired,
            RequestPhase::Revoked,
            RequestPhase::Pending,
            RequestPhase::Active,
        ] {
            assert!(!with(ended, false).fails(), "{ended}");
        }
    }

    #[test]
    fn an_active_file_request_was_decided_by_the_merge() {
        assert_eq!(seen(RequestPhase::Active, None).decided_by(), "merge");
        assert_eq!(seen(RequestPhase::Pending, None).decided_by(), "");
    }
}
