//! Saved plans: `plan --out FILE` writes what a plan showed, `apply --plan FILE` applies
//! exactly that, and refuses, naming what moved, when the manifests or the plan changed
//! since (Terraform's guarantee: in an access-approval flow the approved diff is the
//! executed diff).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::PassReport;
use crate::reconcile::ObjectKey;
use crate::reconcile::digest;
use crate::reconcile::reviewed::ReviewedConnector;

/// The saved-plan format this build reads and writes (2: SHA-256 digests, one per object).
pub const SAVED_PLAN_VERSION: u32 = 2;
/// A saved plan larger than this is refused unread.
const MAX_SAVED_PLAN_BYTES: u64 = 64 * 1024 * 1024;

/// A plan as reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedPlan {
    pub version: u32,
    /// Every object the plan read (`Kind namespace/name`), with its manifest file and a
    /// SHA-256 digest of what it asks for (spec and annotations).
    pub manifests: BTreeMap<String, ManifestDigest>,
    pub connectors: Vec<ReviewedConnector>,
}

/// One object as the plan read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestDigest {
    /// The manifest file, relative to the repository.
    pub file: String,
    pub digest: String,
}

/// Only the version of a saved plan, read before the rest.
#[derive(Deserialize)]
struct Version {
    version: u32,
}

/// Why a saved plan could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("writing the saved plan {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the saved plan {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the saved plan {path} is larger than {MAX_SAVED_PLAN_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("the saved plan {path} is not a plan this version wrote: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the saved plan {path} has version {found}; this build reads version {SAVED_PLAN_VERSION}: plan again"
    )]
    Version { path: PathBuf, found: u32 },
}

/// Each object as loaded: what it asks for, not where it sits (a move between files
/// changes nothing it would do).
fn manifest_digests(report: &PassReport) -> BTreeMap<String, ManifestDigest> {
    let connectors = report.manifests.connectors.iter().map(|c| {
        (
            format!("ExpensifyConnector {}", c.key),
            &c.key,
            digest(&(&c.object.spec, &c.object.metadata.annotations)),
        )
    });
    let accesses = report.manifests.accesses.iter().map(|a| {
        (
            format!("PolicyAccess {}", a.key),
            &a.key,
            digest(&(&a.object.spec, &a.object.metadata.annotations)),
        )
    });
    connectors
        .chain(accesses)
        .map(|(object, key, digest)| {
            let file = report.sources.get(key).cloned().unwrap_or_default();
            (object, ManifestDigest { file, digest })
        })
        .collect()
}

/// The objects whose manifests differ between the plan and now, each with its file.
fn manifests_moved(
    reviewed: &BTreeMap<String, ManifestDigest>,
    now: &BTreeMap<String, ManifestDigest>,
) -> Vec<String> {
    let mut moved = Vec::new();
    for (object, then) in reviewed {
        match now.get(object) {
            None => moved.push(format!("{object} ({}): removed since the plan", then.file)),
            Some(current) if current.digest != then.digest => moved.push(format!(
                "{object} ({}): changed since the plan",
                current.file
            )),
            Some(_) => {}
        }
    }
    for (object, current) in now {
        if !reviewed.contains_key(object) {
            moved.push(format!("{object} ({}): added since the plan", current.file));
        }
    }
    moved
}

/// Reviewed changes whose words were edited: the fingerprint says what is applied, so
/// text that says something else is refused rather than trusted or ignored.
fn text_edited(reviewed: &ReviewedConnector, now: &ReviewedConnector) -> Vec<String> {
    let mut edited = Vec::new();
    for change in &reviewed.changes {
        let Some(real) = now
            .changes
            .iter()
            .find(|c| c.fingerprint == change.fingerprint)
        else {
            continue;
        };
        if real.change != change.change || real.requested_by != change.requested_by {
            edited.push(format!(
                "the plan's text does not match its content: it says \"{} (asked by {})\", the change it stands for is \"{} (asked by {})\"",
                change.change, change.requested_by, real.change, real.requested_by
            ));
        }
    }
    edited
}

impl SavedPlan {
    /// What a `plan` pass showed.
    pub fn of(report: &PassReport) -> Self {
        Self {
            version: SAVED_PLAN_VERSION,
            manifests: manifest_digests(report),
            connectors: report
                .syncs
                .iter()
                .map(|s| ReviewedConnector::of(&s.connector, &s.plan, &s.observed))
                .collect(),
        }
    }

    /// This connector's reviewed part; a connector the plan did not have gets none, so
    /// every change it would make now is one nobody reviewed.
    pub fn connector(&self, key: &ObjectKey) -> Option<&ReviewedConnector> {
        let key = key.to_string();
        self.connectors.iter().find(|c| c.connector == key)
    }

    /// Everything that moved between this plan and a `plan` pass now; empty when the pass
    /// would do exactly what was reviewed.
    pub fn moved(&self, report: &PassReport) -> Vec<String> {
        let mut moved = manifests_moved(&self.manifests, &manifest_digests(report));
        let empty = ReviewedConnector::default();
        for sync in &report.syncs {
            let reviewed = self.connector(&sync.connector).unwrap_or(&empty);
            let now = ReviewedConnector::of(&sync.connector, &sync.plan, &sync.observed);
            let edited = text_edited(reviewed, &now);
            let changed = reviewed.moved(&sync.plan, &sync.observed);
            for what in edited.into_iter().chain(changed) {
                moved.push(format!("connector {}: {what}", sync.connector));
            }
        }
        for reviewed in &self.connectors {
            let synced = report
                .syncs
                .iter()
                .any(|s| s.connector.to_string() == reviewed.connector);
            if !synced && !reviewed.changes.is_empty() {
                moved.push(format!(
                    "connector {}: in the plan, not synced now",
                    reviewed.connector
                ));
            }
        }
        moved
    }

    /// Writes the plan as JSON (atomically: a reader never sees half a plan).
    pub fn save(&self, path: &Path) -> Result<(), SavedPlanError> {
        let failed = |source| SavedPlanError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| failed(e.into()))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        file.persist(path).map_err(|e| failed(e.error))?;
        Ok(())
    }

    /// Reads a saved plan: bounded, strict (unknown fields are errors), this version only.
    pub fn load(path: &Path) -> Result<Self, SavedPlanError> {
        let read_failed = |source| SavedPlanError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_failed)?;
        let mut text = String::new();
        file.take(MAX_SAVED_PLAN_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_failed)?;
        if text.len() as u64 > MAX_SAVED_PLAN_BYTES {
            return Err(SavedPlanError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        // The version first, so an old or new format is named as such.
        let parse = |source| SavedPlanError::Parse {
            path: path.to_path_buf(),
            source,
        };
        let version: Version = serde_json::from_str(&text).map_err(parse)?;
        if version.version != SAVED_PLAN_VERSION {
            return Err(SavedPlanError::Version {
                path: path.to_path_buf(),
                found: version.version,
            });
        }
        serde_json::from_str(&text).map_err(parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_plan_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let plan = SavedPlan {
            version: SAVED_PLAN_VERSION,
            manifests: BTreeMap::from([(
                "PolicyAccess finance/team".to_string(),
                ManifestDigest {
                    file: "team.yaml".into(),
                    digest: digest(&"spec"),
                },
            )]),
            connectors: vec![ReviewedConnector {
                connector: "finance/acme".into(),
                ..Default::default()
            }],
        };
        plan.save(&path).unwrap();
        assert_eq!(SavedPlan::load(&path).unwrap(), plan);
    }

    #[test]
    fn another_version_or_unknown_fields_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(
            &path,
            r#"{"version": 1, "manifests": "", "connectors": []}"#,
        )
        .unwrap();
        let error = SavedPlan::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("version 1") && error.contains("plan.json"),
            "{error}"
        );
        std::fs::write(
            &path,
            r#"{"version": 2, "manifests": {}, "connectors": [], "extra": 1}"#,
        )
        .unwrap();
        let error = SavedPlan::load(&path).unwrap_err().to_string();
        assert!(error.contains("extra"), "{error}");
    }

    #[test]
    fn digests_are_sha256() {
        assert_eq!(
            digest(&"abc"),
            "6cc43f858fbb763301637b5af970e2a46b46f461f27e5a0f41e009c59b827b25",
            "SHA-256 of the JSON text \"abc\""
        );
    }

    fn digests(objects: &[(&str, &str, &str)]) -> BTreeMap<String, ManifestDigest> {
        objects
            .iter()
            .map(|(object, file, digest)| {
                (
                    (*object).to_string(),
                    ManifestDigest {
                        file: (*file).into(),
                        digest: (*digest).into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn moved_manifests_are_named_with_their_files() {
        let then = digests(&[
            ("PolicyAccess finance/team", "team.yaml", "a"),
            ("PolicyAccess finance/gone", "gone.yaml", "b"),
        ]);
        let now = digests(&[
            ("PolicyAccess finance/team", "teams/team.yaml", "c"),
            ("PolicyAccess finance/new", "new.yaml", "d"),
        ]);
        assert_eq!(
            manifests_moved(&then, &now),
            vec![
                "PolicyAccess finance/gone (gone.yaml): removed since the plan",
                "PolicyAccess finance/team (teams/team.yaml): changed since the plan",
                "PolicyAccess finance/new (new.yaml): added since the plan",
            ]
        );
        assert!(manifests_moved(&then, &then).is_empty());
    }

    #[test]
    fn edited_words_of_a_change_are_refused() {
        use crate::reconcile::reviewed::ReviewedChange;
        let change = |words: &str| ReviewedChange {
            change: words.into(),
            requested_by: "finance/team".into(),
            fingerprint: "f1".into(),
        };
        let now = ReviewedConnector {
            connector: "finance/acme".into(),
            changes: vec![change("+ a@acme.example as user on Finance")],
            ..Default::default()
        };
        let edited = ReviewedConnector {
            changes: vec![change("+ a@acme.example as auditor on Finance")],
            ..now.clone()
        };
        assert!(text_edited(&now, &now).is_empty());
        let said = text_edited(&edited, &now);
        assert_eq!(said.len(), 1);
        assert!(
            said[0].contains("as auditor") && said[0].contains("as user"),
            "{said:?}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = SavedPlan::load(Path::new("/nonexistent/plan.json"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/plan.json"), "{error}");
    }
}
