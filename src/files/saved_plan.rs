//! Saved plans: `plan --out FILE` writes what a plan showed, `apply --plan FILE` applies
//! exactly that, and refuses, naming what moved, when the manifests or the plan changed
//! since (Terraform's guarantee: in an access-approval flow the approved diff is the
//! executed diff).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::runner::PassReport;
use crate::reconcile::ObjectKey;
use crate::reconcile::digest;
use crate::reconcile::reviewed::ReviewedConnector;

/// The saved-plan format this build reads and writes.
pub const SAVED_PLAN_VERSION: u32 = 1;
/// A saved plan larger than this is refused unread.
const MAX_SAVED_PLAN_BYTES: u64 = 64 * 1024 * 1024;

/// A plan as reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedPlan {
    pub version: u32,
    /// A digest of every manifest the plan read (objects, specs, annotations).
    pub manifests: String,
    pub connectors: Vec<ReviewedConnector>,
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

/// A digest of the manifests as loaded: what the objects ask for, not where they sit.
fn manifests_digest(report: &PassReport) -> String {
    let connectors: Vec<_> = report
        .manifests
        .connectors
        .iter()
        .map(|c| {
            (
                c.key.to_string(),
                &c.object.spec,
                &c.object.metadata.annotations,
            )
        })
        .collect();
    let accesses: Vec<_> = report
        .manifests
        .accesses
        .iter()
        .map(|a| {
            (
                a.key.to_string(),
                &a.object.spec,
                &a.object.metadata.annotations,
            )
        })
        .collect();
    digest(&(connectors, accesses))
}

impl SavedPlan {
    /// What a `plan` pass showed.
    pub fn of(report: &PassReport) -> Self {
        Self {
            version: SAVED_PLAN_VERSION,
            manifests: manifests_digest(report),
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
        let mut moved = Vec::new();
        if manifests_digest(report) != self.manifests {
            moved.push("the manifests changed since the plan".to_string());
        }
        let empty = ReviewedConnector::default();
        for sync in &report.syncs {
            let reviewed = self.connector(&sync.connector).unwrap_or(&empty);
            for what in reviewed.moved(&sync.plan, &sync.observed) {
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
            manifests: "abc".into(),
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
            r#"{"version": 2, "manifests": "", "connectors": []}"#,
        )
        .unwrap();
        let error = SavedPlan::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("version 2") && error.contains("plan.json"),
            "{error}"
        );
        std::fs::write(
            &path,
            r#"{"version": 1, "manifests": "", "connectors": [], "extra": 1}"#,
        )
        .unwrap();
        let error = SavedPlan::load(&path).unwrap_err().to_string();
        assert!(error.contains("extra"), "{error}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = SavedPlan::load(Path::new("/nonexistent/plan.json"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/plan.json"), "{error}");
    }
}
