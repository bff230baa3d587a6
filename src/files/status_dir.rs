//! The status directory: one YAML per object, the object as the operator last saw it with
//! its status, so file mode keeps `managedMembers` and generations between runs without
//! ever touching the user's manifests.

use std::path::{Path, PathBuf};

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::reconcile::ObjectKey;

/// Digest of the spec the status refers to; a change bumps the generation.
pub const SPEC_DIGEST: &str = "expensify.gitops.dev/spec-digest";
/// The manifest an object was read from.
pub const SOURCE: &str = "expensify.gitops.dev/source";

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
}

/// The status directory of one manifest directory.
#[derive(Debug, Clone)]
pub struct StatusDir {
    root: PathBuf,
}

fn kind_dir<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).to_ascii_lowercase()
}

impl StatusDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path<K: Resource<DynamicType = ()>>(
        &self,
        key: &ObjectKey,
    ) -> Result<PathBuf, StatusDirError> {
        let bad = |source| StatusDirError::BadName {
            key: key.to_string(),
            source,
        };
        crate::names::check_label(&key.namespace).map_err(bad)?;
        crate::names::check_subdomain(&key.name).map_err(bad)?;
        Ok(self
            .root
            .join(kind_dir::<K>())
            .join(&key.namespace)
            .join(format!("{}.yaml", key.name)))
    }

    /// The object last written for `key`, if any.
    pub fn read<K>(&self, key: &ObjectKey) -> Result<Option<K>, StatusDirError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let path = self.path::<K>(key)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_saphyr::from_str(&text)
                .map(Some)
                .map_err(|e| StatusDirError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StatusDirError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Every object of kind `K` with a status file.
    pub fn list<K>(&self) -> Result<Vec<(ObjectKey, K)>, StatusDirError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let base = self.root.join(kind_dir::<K>());
        let mut found = Vec::new();
        let Ok(namespaces) = std::fs::read_dir(&base) else {
            return Ok(found);
        };
        for namespace in namespaces.flatten().filter(|e| e.path().is_dir()) {
            let ns = namespace.file_name().to_string_lossy().to_string();
            let Ok(files) = std::fs::read_dir(namespace.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".yaml"))
                else {
                    continue;
                };
                let key = ObjectKey::new(ns.clone(), name);
                // A file whose name no object can have (left by an older version) is not
                // an object's status.
                match self.read::<K>(&key) {
                    Ok(Some(object)) => found.push((key, object)),
                    Ok(None) | Err(StatusDirError::BadName { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Writes the object (atomically: a temporary file renamed into place).
    pub fn write<K>(&self, key: &ObjectKey, object: &K) -> Result<(), StatusDirError>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let path = self.path::<K>(key)?;
        let error = |source| StatusDirError::Write {
            path: path.display().to_string(),
            source,
        };
        let yaml = serde_saphyr::to_string(object)
            .map_err(|e| error(std::io::Error::other(e.to_string())))?;
        let text = format!(
            "# Written by expensify-operator: the object as last synced, with its status. Do not edit.\n{yaml}"
        );
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let temporary = path.with_extension("yaml.tmp");
        std::fs::write(&temporary, text).map_err(error)?;
        std::fs::rename(&temporary, &path).map_err(error)
    }

    /// Removes the status of an object that is gone.
    pub fn remove<K: Resource<DynamicType = ()>>(
        &self,
        key: &ObjectKey,
    ) -> Result<(), StatusDirError> {
        let path = self.path::<K>(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StatusDirError::Write {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

/// A short, stable digest of a serializable value (FNV-1a over its JSON form).
pub fn digest(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        ConnectorRef, PolicyAccess, PolicyAccessSpec, PolicyAccessStatus, PolicySelector,
    };

    #[test]
    fn round_trips_and_lists_objects() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = StatusDir::new(dir.path().join("status"));
        let mut access = PolicyAccess::new(
            "team",
            PolicyAccessSpec {
                connector_ref: ConnectorRef {
                    name: "acme".into(),
                    namespace: None,
                },
                policy: PolicySelector {
                    id: Some("P1".into()),
                    name: None,
                },
                mode: Default::default(),
                deletion_policy: Default::default(),
                suspend: false,
                members: vec![],
            },
        );
        access.metadata.namespace = Some("finance".into());
        access.status = Some(PolicyAccessStatus {
            managed_members: vec!["a@acme.example".into()],
            ..Default::default()
        });
        let key = ObjectKey::new("finance", "team");
        status_dir.write(&key, &access).unwrap();
        let read: PolicyAccess = status_dir.read(&key).unwrap().unwrap();
        assert_eq!(read.status.unwrap().managed_members, vec!["a@acme.example"]);
        assert_eq!(status_dir.list::<PolicyAccess>().unwrap().len(), 1);
        status_dir.remove::<PolicyAccess>(&key).unwrap();
        assert!(status_dir.read::<PolicyAccess>(&key).unwrap().is_none());
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        assert_eq!(digest(&"a"), digest(&"a"));
        assert_ne!(digest(&"a"), digest(&"b"));
    }

    #[test]
    fn keys_that_would_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = StatusDir::new(dir.path().join("status"));
        for key in [
            ObjectKey::new("finance", "../../x"),
            ObjectKey::new("..", "x"),
            ObjectKey::new("finance", "a/b"),
        ] {
            let err = status_dir.read::<PolicyAccess>(&key).unwrap_err();
            assert!(matches!(err, StatusDirError::BadName { .. }), "{err}");
            assert!(status_dir.remove::<PolicyAccess>(&key).is_err());
        }
    }
}
