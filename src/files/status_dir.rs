//! The status directory: one YAML per object, the object as the operator last saw it with
//! its status, so file mode keeps `managedMembers` and generations between runs without
//! ever touching the user's manifests.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// The lock file inside the status directory; hidden, so neither the loader nor `watch`
/// takes it for a manifest.
pub const LOCK_FILE: &str = ".lock";
/// How often a waiting process tries the lock again.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// Why the status directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockStatusDirError {
    #[error("cannot open the lock file {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the status directory {dir} is in use by {holder}; waited {waited:?} (--lock-timeout) for it to finish"
    )]
    Held {
        dir: String,
        holder: String,
        waited: Duration,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy)]
enum LockKind {
    Exclusive,
    Shared,
}

/// A hold on a status directory: exclusive for a writer (one process at a time reads the
/// previous status, writes to Expensify and writes the new status), shared for readers.
/// Released when dropped (the operating system releases it too when the process dies, so a
/// crash leaves no stale lock).
#[derive(Debug)]
pub struct StatusDirLock {
    file: File,
    /// Whether this holder wrote its name into the lock file (exclusive holders only).
    named: bool,
}

impl StatusDirLock {
    /// Writes who holds the lock into the lock file, for the message of the next to wait.
    fn name(&mut self, command: &str) {
        let file = &mut self.file;
        let named = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", holder_description(command)))
            .and_then(|()| file.sync_data());
        match named {
            Ok(()) => self.named = true,
            // The lock holds regardless; only the next waiter's message is poorer.
            Err(e) => tracing::debug!(error = %e, "naming the lock holder failed"),
        }
    }
}

impl Drop for StatusDirLock {
    /// Empties the lock file before the lock goes, so a committed status directory does
    /// not change with every run and no one is named who no longer holds it.
    fn drop(&mut self) {
        if self.named {
            let _ = self.file.set_len(0);
        }
    }
}

/// Who holds a lock, as written into the lock file for the message of the one waiting.
fn holder_description(command: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into());
    format!(
        "`{command}` (pid {} on {host}, since {:.0})",
        std::process::id(),
        k8s_openapi::jiff::Timestamp::now()
    )
}

/// The holder as the lock file names it; the file is small, so read a bounded prefix.
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file
        .rewind()
        .and_then(|()| file.take(1024).read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "another process (a `plan`, or one that has not named itself yet)".into(),
    }
}

/// Fsyncs a directory so a rename in it survives a crash (a no-op where directories cannot
/// be opened as files).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
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

    /// Takes the exclusive lock of this status directory (creating the directory), waiting up
    /// to `timeout` for another `apply`, `watch` or `plan` to finish; `command` names this one
    /// in the message of the next to wait.
    pub async fn lock(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<StatusDirLock, LockStatusDirError> {
        std::fs::create_dir_all(&self.root).map_err(|source| LockStatusDirError::Open {
            path: self.root.join(LOCK_FILE).display().to_string(),
            source,
        })?;
        let mut lock = self.acquire(LockKind::Exclusive, timeout).await?;
        lock.name(command);
        Ok(lock)
    }

    /// Takes a shared lock for a reader (`plan`): readers run side by side, but never while
    /// a writer holds the directory, so the status they read is not half written. Without a
    /// status directory there is nothing to read and nothing is created (`plan` writes
    /// nothing): `None`.
    pub async fn lock_shared(
        &self,
        timeout: Duration,
    ) -> Result<Option<StatusDirLock>, LockStatusDirError> {
        if !self.root.is_dir() {
            return Ok(None);
        }
        self.acquire(LockKind::Shared, timeout).await.map(Some)
    }

    async fn acquire(
        &self,
        kind: LockKind,
        timeout: Duration,
    ) -> Result<StatusDirLock, LockStatusDirError> {
        let path = self.root.join(LOCK_FILE);
        // Not truncated on open: the holder's name is in it until this process holds the lock.
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| LockStatusDirError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let started = Instant::now();
        let mut told = false;
        loop {
            let attempt = match kind {
                LockKind::Exclusive => file.try_lock(),
                LockKind::Shared => file.try_lock_shared(),
            };
            match attempt {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if started.elapsed() < timeout => {
                    if !told {
                        told = true;
                        tracing::info!(
                            dir = %self.root.display(),
                            holder = %read_holder(&mut file),
                            timeout = ?timeout,
                            "the status directory is in use; waiting for it"
                        );
                    }
                    tokio::time::sleep(LOCK_RETRY.min(timeout)).await;
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockStatusDirError::Held {
                        dir: self.root.display().to_string(),
                        holder: read_holder(&mut file),
                        waited: timeout,
                    });
                }
                Err(TryLockError::Error(source)) => {
                    return Err(LockStatusDirError::Lock {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(StatusDirLock { file, named: false })
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

    /// Writes the object atomically and durably: a temporary file of its own (never shared
    /// with another write), flushed to disk, renamed into place, and the rename flushed.
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
        let parent = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(error)?;
        let mut temporary = tempfile::Builder::new()
            .prefix(".")
            .suffix(".tmp")
            .tempfile_in(parent)
            .map_err(error)?;
        temporary.write_all(text.as_bytes()).map_err(error)?;
        temporary.as_file().sync_all().map_err(error)?;
        temporary.persist(&path).map_err(|e| error(e.error))?;
        sync_dir(parent).map_err(error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        ConnectorRef, PolicyAccess, PolicyAccessSpec, PolicyAccessStatus, PolicySelector,
    };
    use crate::reconcile::digest;

    fn team() -> PolicyAccess {
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
                allow_from: Vec::new(),
                suspend: false,
                members: vec![],
            },
        );
        access.metadata.namespace = Some("finance".into());
        access
    }

    #[test]
    fn round_trips_and_lists_objects() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = StatusDir::new(dir.path().join("status"));
        let mut access = team();
        access.status = Some(PolicyAccessStatus {
            managed_members: vec![crate::api::ManagedMember {
                policy_id: "P1".into(),
                email: "a@acme.example".into(),
                added: true,
                previous_role: None,
                role: Some("user".into()),
                pending: true,
                prior_role: None,
                connector: None,
            }],
            ..Default::default()
        });
        let key = ObjectKey::new("finance", "team");
        status_dir.write(&key, &access).unwrap();
        let read: PolicyAccess = status_dir.read(&key).unwrap().unwrap();
        assert_eq!(
            read.status.unwrap().managed_members,
            access.status.unwrap().managed_members
        );
        assert_eq!(status_dir.list::<PolicyAccess>().unwrap().len(), 1);
        status_dir.remove::<PolicyAccess>(&key).unwrap();
        assert!(status_dir.read::<PolicyAccess>(&key).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_second_holder_waits_then_fails_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = StatusDir::new(dir.path().join("status"));
        let first = status_dir.lock("watch", Duration::ZERO).await.unwrap();
        let started = Instant::now();
        let error = status_dir
            .lock("apply", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
        let message = error.to_string();
        assert!(
            message.contains("`watch` (pid ") && message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(first);
        let second = status_dir.lock("apply", Duration::ZERO).await.unwrap();
        drop(second);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = StatusDir::new(dir.path());
        let first = status_dir.lock("apply", Duration::ZERO).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(first);
        });
        let _second = status_dir
            .lock("watch", Duration::from_secs(5))
            .await
            .unwrap();
        release.await.unwrap();
        let holder = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(holder.starts_with("`watch` (pid "), "{holder}");
    }

    #[tokio::test]
    async fn readers_share_the_lock_but_not_with_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let missing = StatusDir::new(dir.path().join("status"));
        assert!(missing.lock_shared(Duration::ZERO).await.unwrap().is_none());
        assert!(
            !dir.path().join("status").exists(),
            "a reader creates nothing"
        );

        let status_dir = StatusDir::new(dir.path());
        let first = status_dir.lock_shared(Duration::ZERO).await.unwrap();
        let second = status_dir.lock_shared(Duration::ZERO).await.unwrap();
        assert!(first.is_some() && second.is_some());
        let writer = status_dir.lock("apply", Duration::from_millis(150)).await;
        assert!(writer.unwrap_err().to_string().contains("a `plan`"));
        drop((first, second));

        let writer = status_dir.lock("apply", Duration::ZERO).await.unwrap();
        let reader = status_dir.lock_shared(Duration::from_millis(150)).await;
        assert!(reader.unwrap_err().to_string().contains("`apply` (pid "));
        drop(writer);
        let holder = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(holder, "", "the name goes with the lock");
    }

    #[test]
    fn writes_leave_no_temporary_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = StatusDir::new(dir.path());
        let access = team();
        let key = ObjectKey::new("finance", "team");
        status_dir.write(&key, &access).unwrap();
        status_dir.write(&key, &access).unwrap();
        let entries: Vec<String> = std::fs::read_dir(dir.path().join("policyaccess/finance"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(entries, vec!["team.yaml"]);
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
