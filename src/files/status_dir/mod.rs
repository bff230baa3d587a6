//! The status directory: one YAML per object, the object as the operator last saw it with
//! its status, so file mode keeps `managedMembers` and generations between runs without
//! ever touching the user's manifests.
//!
//! By concern: `lock` (one writer or many readers, the holder named), `disk` (bounded
//! reads, atomic and durable writes), `signing` and `index` (files verified against the
//! key and the signed index of sequence numbers), `errors`; this file places each
//! object's file and reads, lists, writes and removes it.

mod disk;
mod errors;
mod index;
mod lock;
mod signing;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::status_signing::{self, INDEX_FILE, StatusKey};
use crate::reconcile::ObjectKey;

pub use errors::{StatusDirError, unverified_message};
pub use lock::{LOCK_FILE, LockStatusDirError, StatusDirLock};

use disk::{read_bounded, write_atomically};
use signing::Signing;

/// Digest of the spec the status refers to; a change bumps the generation.
pub const SPEC_DIGEST: &str = "expensify.gitops.dev/spec-digest";
/// The manifest an object was read from.
pub const SOURCE: &str = "expensify.gitops.dev/source";

/// The status directory of one manifest directory.
#[derive(Debug, Clone)]
pub struct StatusDir {
    root: PathBuf,
    signing: Option<Arc<Signing>>,
}

/// Every status file of one kind: the objects taken, and those ignored.
#[derive(Debug)]
pub struct Listing<K> {
    pub objects: Vec<(ObjectKey, K)>,
    /// Files that failed verification ([`StatusDirError::Unverified`]), with their keys.
    pub unverified: Vec<(ObjectKey, StatusDirError)>,
}

fn kind_dir<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).to_ascii_lowercase()
}

impl StatusDir {
    /// A status directory whose files are neither signed nor verified.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            signing: None,
        }
    }

    /// A status directory whose files are signed with `key` and verified against it;
    /// `adopt` takes unsigned files and a missing or broken index as they are.
    pub fn signed(root: impl Into<PathBuf>, key: StatusKey, adopt: bool) -> Self {
        Self {
            root: root.into(),
            signing: Some(Arc::new(Signing {
                key,
                adopt,
                index: Mutex::new(None),
                anchor: None,
            })),
        }
    }

    /// Remembers the index's generation in `anchor` too (a file outside the repository),
    /// so a rollback of the whole directory is noticed. Only for a signed directory.
    #[must_use]
    pub fn with_anchor(mut self, anchor: PathBuf) -> Self {
        if let Some(signing) = &self.signing {
            self.signing = Some(Arc::new(Signing {
                key: signing.key.clone(),
                adopt: signing.adopt,
                index: Mutex::new(None),
                anchor: Some(anchor),
            }));
        }
        self
    }

    /// Whether files are verified (a key was given).
    pub fn verifies(&self) -> bool {
        self.signing.is_some()
    }

    /// Whether this directory was signed before: an index, or any signed status file.
    /// A writer without the key must not write over it.
    pub fn is_signed(&self) -> bool {
        self.root.join(INDEX_FILE).exists() || !self.signed_places().is_empty()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a status file is, as its MAC binds it: `kind/namespace/name`.
    pub(super) fn place<K: Resource<DynamicType = ()>>(key: &ObjectKey) -> String {
        format!("{}/{}/{}", kind_dir::<K>(), key.namespace, key.name)
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

    /// The object last written for `key`, if any; a file the key does not vouch for is
    /// [`StatusDirError::Unverified`].
    pub fn read<K>(&self, key: &ObjectKey) -> Result<Option<K>, StatusDirError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let path = self.path::<K>(key)?;
        let Some(text) = read_bounded(&path)? else {
            return match self.missing(&Self::place::<K>(key)) {
                Some(reason) => Err(StatusDirError::Unverified {
                    path: path.display().to_string(),
                    reason,
                }),
                None => Ok(None),
            };
        };
        let body = match &self.signing {
            None => status_signing::split(&text).map_or(text.as_str(), |signed| signed.body),
            Some(signing) => {
                let checked =
                    self.check(signing, &Self::place::<K>(key), &text)
                        .map_err(|reason| StatusDirError::Unverified {
                            path: path.display().to_string(),
                            reason,
                        })?;
                let Some(body) = checked else {
                    return Ok(None);
                };
                body
            }
        };
        serde_saphyr::from_str(body)
            .map(Some)
            .map_err(|e| StatusDirError::Read {
                path: path.display().to_string(),
                // The first line only: the parser's next lines quote the file, and a
                // status file put where a secret is must not print it.
                message: e.to_string().lines().next().unwrap_or_default().to_string(),
            })
    }

    /// Every object of kind `K` with a status file, and the files that failed
    /// verification (the caller holds what they would drive).
    pub fn list<K>(&self) -> Result<Listing<K>, StatusDirError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let base = self.root.join(kind_dir::<K>());
        let mut listing = Listing {
            objects: Vec::new(),
            unverified: Vec::new(),
        };
        let Ok(namespaces) = std::fs::read_dir(&base) else {
            return Ok(listing);
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
                    Ok(Some(object)) => listing.objects.push((key, object)),
                    Ok(None) | Err(StatusDirError::BadName { .. }) => {}
                    Err(e @ StatusDirError::Unverified { .. }) => listing.unverified.push((key, e)),
                    Err(e) => return Err(e),
                }
            }
        }
        // Files the operator wrote, never removed, and that are gone.
        for key in self.expected_keys::<K>() {
            if listing.objects.iter().any(|(k, _)| *k == key)
                || listing.unverified.iter().any(|(k, _)| *k == key)
            {
                continue;
            }
            if let Err(e @ StatusDirError::Unverified { .. }) = self.read::<K>(&key) {
                listing.unverified.push((key, e));
            }
        }
        listing.objects.sort_by(|a, b| a.0.cmp(&b.0));
        listing.unverified.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listing)
    }

    /// Writes the object atomically and durably (see [`write_atomically`]), signed when
    /// there is a key.
    pub fn write<K>(&self, key: &ObjectKey, object: &K) -> Result<(), StatusDirError>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let path = self.path::<K>(key)?;
        let yaml = serde_saphyr::to_string(object).map_err(|e| StatusDirError::Write {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let body = format!(
            "# Written by expensify-operator: the object as last synced, with its status. Do not edit.\n{yaml}"
        );
        let parent = path.parent().unwrap_or(&self.root);
        let Some(signing) = &self.signing else {
            write_atomically(parent, &path, body.as_bytes())?;
            crate::crash_point!("status-dir-after-file");
            return Ok(());
        };
        self.index_before_first_file(signing)?;
        let place = Self::place::<K>(key);
        let sequence = self.next_sequence(signing, &place, &path);
        let header = signing.key.header(&place, sequence, body.as_bytes());
        write_atomically(parent, &path, format!("{header}{body}").as_bytes())?;
        // The file is newer than the signed index until the index is flushed.
        crate::crash_point!("status-dir-after-file");
        self.record(signing, &place, sequence);
        Ok(())
    }

    /// Removes the status of an object that is gone.
    pub fn remove<K: Resource<DynamicType = ()>>(
        &self,
        key: &ObjectKey,
    ) -> Result<(), StatusDirError> {
        let path = self.path::<K>(key)?;
        // The index keeps the file's number, so its old versions cannot come back, and
        // marks it removed, so its absence is not taken for a deletion by hand. It is
        // written before the file goes: a crash in between leaves a file the index already
        // calls removed (gone to the next run), never a missing file it still expects.
        if let Some(signing) = &self.signing {
            let place = Self::place::<K>(key);
            let sequence = self.next_sequence(signing, &place, &path);
            self.update_index(signing, |index| index.mark_removed(&place, sequence));
            self.flush_index()?;
            crate::crash_point!("status-dir-before-file-removal");
        }
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

#[cfg(test)]
mod tests;
