//! Showing part of a pass: the objects of one file (`plan access/finance.yaml`) and/or of
//! one namespace (`plan -n finance`). The pass itself always covers the whole repository,
//! so ownership, claims and conflicts are decided as `apply` decides them; only what is
//! shown (and the exit code derived from it) is narrowed.
//!
//! - A PolicyAccess is shown when it is in the namespace (if one is given) and, if a file
//!   is given, it is defined in the file, was last defined there (a deleted object, from
//!   its status file), or its connector is defined there.
//! - A connector is picked when it is in the namespace and (if a file is given) defined in
//!   the file; picking a connector in a file shows everything on it, picking it by
//!   namespace shows its own status only: `-n` shows objects of that namespace.
//! - An AccessRequest is shown when it is in the namespace and its PolicyAccess is shown
//!   or its manifest is in the file (`plan access/requests/x.yaml`: that request, and the
//!   grant or end it causes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::loader::Source;
use super::runner::PassReport;
use super::status_dir::{SOURCE, StatusDir};
use crate::api::PolicyAccess;
use crate::reconcile::ObjectKey;

/// What to show of a pass.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only what the objects of this file ask for (a canonical path).
    pub file: Option<PathBuf>,
    /// Only objects of this namespace.
    pub namespace: Option<String>,
    /// Deleted PolicyAccess objects (a status file, no manifest) last defined in `file`.
    pub deleted_from_file: BTreeSet<ObjectKey>,
}

/// The objects a selection picked out of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picked {
    /// Connectors picked themselves (defined in the file, in the namespace).
    pub connectors: BTreeSet<ObjectKey>,
    /// PolicyAccess objects shown.
    pub accesses: BTreeSet<ObjectKey>,
    /// AccessRequests picked themselves (their manifest is in the file, in the namespace).
    pub requests: BTreeSet<ObjectKey>,
}

impl Picked {
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty() && self.accesses.is_empty() && self.requests.is_empty()
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || a.canonicalize().is_ok_and(|a| a == b)
}

impl Selection {
    /// Whether everything is shown.
    pub fn is_everything(&self) -> bool {
        self.file.is_none() && self.namespace.is_none()
    }

    fn in_namespace(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
    }

    fn in_file(&self, source: &Source) -> bool {
        self.file
            .as_deref()
            .is_none_or(|file| same_file(&source.path, file))
    }

    /// Every PolicyAccess of the pass, with its connector and whether its manifest is (or
    /// was last) in the file.
    fn accesses(&self, report: &PassReport) -> BTreeMap<ObjectKey, (ObjectKey, bool)> {
        let mut accesses = BTreeMap::new();
        for sync in &report.syncs {
            for key in sync.statuses.keys() {
                let in_file = self.deleted_from_file.contains(key);
                accesses.insert(key.clone(), (sync.connector.clone(), in_file));
            }
        }
        for loaded in &report.manifests.accesses {
            let reference = &loaded.object.spec.connector_ref;
            let namespace = reference
                .namespace
                .clone()
                .unwrap_or_else(|| loaded.key.namespace.clone());
            let connector = ObjectKey::new(namespace, reference.name.clone());
            let in_file = self.file.is_some() && self.in_file(&loaded.source);
            accesses.insert(loaded.key.clone(), (connector, in_file));
        }
        accesses
    }

    /// The objects shown (see the module).
    pub fn pick(&self, report: &PassReport) -> Picked {
        let in_file: BTreeSet<&ObjectKey> = report
            .manifests
            .connectors
            .iter()
            .filter(|c| self.in_file(&c.source))
            .map(|c| &c.key)
            .collect();
        let connectors = in_file
            .iter()
            .filter(|key| self.in_namespace(&key.namespace))
            .map(|key| (*key).clone())
            .collect();
        let accesses = self
            .accesses(report)
            .into_iter()
            .filter(|(key, (connector, access_in_file))| {
                self.in_namespace(&key.namespace)
                    && (self.file.is_none() || *access_in_file || in_file.contains(connector))
            })
            .map(|(key, _)| key)
            .collect();
        let requests = report
            .manifests
            .requests
            .iter()
            .filter(|r| self.file.is_some() && self.in_file(&r.source))
            .filter(|r| self.in_namespace(&r.key.namespace))
            .map(|r| r.key.clone())
            .collect();
        Picked {
            connectors,
            accesses,
            requests,
        }
    }

    /// The AccessRequests shown, with their holder keys: those in the namespace whose
    /// PolicyAccess is shown or whose manifest is the file given.
    fn requests_shown(&self, report: &PassReport, picked: &Picked) -> BTreeSet<ObjectKey> {
        let mut shown = BTreeSet::new();
        for request in &report.requests {
            let key = &request.key;
            let access =
                ObjectKey::new(key.namespace.clone(), request.spec.access_ref.name.clone());
            let in_file = picked.requests.contains(key);
            if self.in_namespace(&key.namespace) && (picked.accesses.contains(&access) || in_file) {
                shown.insert(ObjectKey::for_request(key.namespace.clone(), &key.name));
                shown.insert(key.clone());
            }
        }
        shown
    }

    /// The pass as far as it is shown: the connectors picked or used by a PolicyAccess
    /// picked, the changes those objects ask for, their statuses, and the manifest
    /// problems of the file (or namespace). Unchanged when everything is shown.
    pub fn narrow(&self, mut report: PassReport) -> PassReport {
        if self.is_everything() {
            return report;
        }
        let picked = self.pick(&report);
        let requests = self.requests_shown(&report, &picked);
        // A request's grant is planned under its holder key: shown with the request.
        let shown = |key: &ObjectKey| picked.accesses.contains(key) || requests.contains(key);
        report.syncs.retain(|sync| {
            picked.connectors.contains(&sync.connector)
                || sync.statuses.keys().any(shown)
                || sync.request_statuses.keys().any(shown)
        });
        for sync in &mut report.syncs {
            sync.plan.changes.retain(|c| shown(&c.requested_by));
            sync.plan.objects.retain(|key, _| shown(key));
            sync.results.retain(|r| shown(&r.change.requested_by));
            sync.statuses.retain(|key, _| shown(key));
            sync.finished_deletions.retain(shown);
            sync.save_order.retain(shown);
        }
        report.unattached.retain(|u| shown(&u.key));
        if let Some(missing) = &mut report.missing_ledger {
            missing.objects.retain(shown);
        }
        report.missing_ledger = report
            .missing_ledger
            .take()
            .filter(|m| !m.objects.is_empty());
        report.manifests.connectors.retain(|c| {
            picked.connectors.contains(&c.key) || report.syncs.iter().any(|s| s.connector == c.key)
        });
        report.manifests.accesses.retain(|a| shown(&a.key));
        report.requests.retain(|r| requests.contains(&r.key));
        report
            .manifests
            .requests
            .retain(|r| requests.contains(&r.key));
        report.manifests.problems.retain(|problem| {
            self.in_file(&problem.source)
                && problem.namespace().is_none_or(|n| self.in_namespace(n))
        });
        report
    }
}

/// `-n NAMESPACE` that selects nothing (`plan`, `validate`): a typo in CI must fail, not
/// read as "nothing to do". Says which namespaces the repository has and the nearest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct EmptyNamespace {
    pub asked: String,
    /// Every namespace of the repository's objects, sorted.
    pub existing: Vec<String>,
}

impl EmptyNamespace {
    fn message(&self) -> String {
        let mut message = format!(
            "namespace {:?} holds no ExpensifyConnector or PolicyAccess",
            self.asked
        );
        if self.existing.is_empty() {
            message.push_str(" (the repository has no objects)");
        } else {
            message.push_str(&format!(
                "; the repository's namespaces: {}",
                crate::reconcile::bounded::first_few(&self.existing, ", ")
            ));
        }
        let nearest =
            crate::suggest::nearest(&self.asked, self.existing.iter().map(String::as_str));
        if let Some(nearest) = nearest {
            message.push_str(&format!(". Did you mean {nearest:?}?"));
        }
        message
    }

    /// `namespace` when no connector, PolicyAccess (deleted ones too) nor manifest problem of
    /// the pass is in it.
    pub fn in_pass(report: &PassReport, namespace: &str) -> Option<EmptyNamespace> {
        let mut existing: BTreeSet<&str> = report
            .sources
            .keys()
            .map(|key| key.namespace.as_str())
            .collect();
        existing.extend(
            report
                .manifests
                .problems
                .iter()
                .filter_map(|p| p.namespace()),
        );
        if existing.contains(namespace) {
            return None;
        }
        Some(EmptyNamespace {
            asked: namespace.to_string(),
            existing: existing.into_iter().map(str::to_string).collect(),
        })
    }
}

/// The deleted PolicyAccess objects of a pass (a status file, no manifest) whose manifest
/// was last read from `file_in_root` (a path relative to the manifest directory, as status
/// files record it).
pub fn deleted_from_file(
    report: &PassReport,
    status_dir: &StatusDir,
    file_in_root: &str,
) -> BTreeSet<ObjectKey> {
    report
        .sources
        .iter()
        .filter(|(_, source)| source.as_str() == "(deleted)")
        .filter(|(key, _)| {
            status_dir
                .read::<PolicyAccess>(key)
                .ok()
                .flatten()
                .and_then(|object| object.metadata.annotations)
                .and_then(|annotations| annotations.get(SOURCE).cloned())
                .is_some_and(|source| source == file_in_root)
        })
        .map(|(key, _)| key.clone())
        .collect()
}
