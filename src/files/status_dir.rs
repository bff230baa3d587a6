//! The status directory: one YAML per object, the object as the operator last saw it with
//! its status, so file mode keeps `managedMembers` and generations between runs without
//! ever touching the user's manifests.

use std::collections::BTreeSet;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::status_signing::{self, Anchor, INDEX_FILE, Index, StatusKey, Unverified};
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

/// A status file larger than this is refused unread.
const MAX_STATUS_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How a status directory with a key signs and verifies its files.
#[derive(Debug)]
struct Signing {
    key: StatusKey,
    /// `apply --adopt-unsigned-status`: unsigned files and a missing or broken index are
    /// taken as they are (once, by a person who says so), and signed.
    adopt: bool,
    /// Read when first needed, so after the directory is locked.
    index: Mutex<Option<IndexState>>,
    /// `--status-anchor`: a file outside the repository remembering the index's last
    /// generation (see [`Anchor`]).
    anchor: Option<PathBuf>,
}

#[derive(Debug)]
struct IndexState {
    index: Index,
    /// Why the index on disk cannot be trusted, if it cannot.
    distrust: Option<String>,
    /// Whether the index changed since it was read.
    changed: bool,
    /// The generation the anchor remembers (0 without one).
    anchored: u64,
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
        "the status directory {dir} is in use by {holder}; {}",
        if waited.is_zero() { "--lock-timeout 0: did not wait for it".to_string() } else { format!("waited {waited:?} (--lock-timeout) for it to finish") }
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

    /// Where a status file is, as its MAC binds it: `kind/namespace/name`.
    fn place<K: Resource<DynamicType = ()>>(key: &ObjectKey) -> String {
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
                self.check(signing, &Self::place::<K>(key), &text)
                    .map_err(|reason| StatusDirError::Unverified {
                        path: path.display().to_string(),
                        reason,
                    })?
            }
        };
        serde_saphyr::from_str(body)
            .map(Some)
            .map_err(|e| StatusDirError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })
    }

    /// The body of a status file if the key vouches for it (or `--adopt-unsigned-status`
    /// takes it).
    fn check<'t>(
        &self,
        signing: &Signing,
        place: &str,
        text: &'t str,
    ) -> Result<&'t str, Unverified> {
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.get_or_insert_with(|| self.load_index(&signing.key));
        if let Some(why) = &state.distrust
            && !signing.adopt
        {
            return Err(Unverified::Index(why.clone()));
        }
        match status_signing::verify(&signing.key, place, text, state.index.get(place)) {
            Ok((body, sequence)) => {
                state.index.raise(place, sequence);
                Ok(body)
            }
            Err(Unverified::Unsigned) if signing.adopt => {
                tracing::warn!(
                    file = %place,
                    "--adopt-unsigned-status: an unsigned status file is taken as it is; this apply signs it"
                );
                Ok(text)
            }
            Err(reason) => Err(reason),
        }
    }

    /// Why there being no file at `place` is a problem: the index says the operator wrote
    /// one and never removed it (someone deleted it, or a checkout lost it, and with it
    /// the ledger). `--adopt-unsigned-status` takes the directory as it is.
    fn missing(&self, place: &str) -> Option<Unverified> {
        let signing = self.signing.as_ref().filter(|s| !s.adopt)?;
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.get_or_insert_with(|| self.load_index(&signing.key));
        state.index.expected(place).map(Unverified::Missing)
    }

    /// The places of kind `K` the index expects a file at, as object keys.
    fn expected_keys<K: Resource<DynamicType = ()>>(&self) -> Vec<ObjectKey> {
        let Some(signing) = self.signing.as_ref().filter(|s| !s.adopt) else {
            return Vec::new();
        };
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.get_or_insert_with(|| self.load_index(&signing.key));
        let prefix = format!("{}/", kind_dir::<K>());
        state
            .index
            .expected_places()
            .filter_map(|(place, _)| place.strip_prefix(&prefix)?.split_once('/'))
            .map(|(namespace, name)| ObjectKey::new(namespace, name))
            .collect()
    }

    /// The index on disk, and whether it can be trusted.
    fn load_index(&self, key: &StatusKey) -> IndexState {
        let path = self.root.join(INDEX_FILE);
        let (index, distrust) = match read_bounded(&path) {
            Ok(Some(text)) => match Index::parse(key, &text) {
                Ok(index) => (index, None),
                Err(e) => (Index::default(), Some(e.to_string())),
            },
            Ok(None) if self.signed_places().is_empty() => (Index::default(), None),
            Ok(None) => (
                Index::default(),
                Some("is missing while status files are signed".to_string()),
            ),
            Err(e) => (Index::default(), Some(format!("cannot be read ({e})"))),
        };
        let (anchored, rolled_back) = self.read_anchor(key, index.generation);
        IndexState {
            index,
            distrust: distrust.or(rolled_back),
            changed: false,
            anchored,
        }
    }

    /// The generation `--status-anchor` remembers, and why the index cannot be trusted
    /// against it: it is older (the directory was rolled back), or the anchor itself is
    /// not one the key wrote. No anchor yet is the first run with one.
    fn read_anchor(&self, key: &StatusKey, generation: u64) -> (u64, Option<String>) {
        let Some(path) = self.signing.as_ref().and_then(|s| s.anchor.as_ref()) else {
            return (0, None);
        };
        let shown = path.display();
        match read_bounded(path) {
            Ok(Some(text)) => match Anchor::parse(key, &text) {
                Ok(anchor) if anchor.generation > generation => (
                    anchor.generation,
                    Some(format!(
                        "is at generation {generation}, but the anchor {shown} remembers that generation {} was written: the status directory was rolled back to an older state (every file with its index), which would make the operator forget or replay what it did since",
                        anchor.generation
                    )),
                ),
                Ok(anchor) => (anchor.generation, None),
                Err(e) => (
                    0,
                    Some(format!("cannot be checked against its anchor: {shown} {e}")),
                ),
            },
            Ok(None) => {
                tracing::warn!(anchor = %shown, "no status anchor yet: starting one; a rollback of the status directory from before now cannot be noticed");
                (0, None)
            }
            Err(e) => (
                0,
                Some(format!("cannot be checked against its anchor: {e}")),
            ),
        }
    }

    /// Every status file on disk (`kind/namespace/name` and path), whatever its kind.
    fn status_files(&self) -> Vec<(String, PathBuf)> {
        let mut files = Vec::new();
        let Ok(kinds) = std::fs::read_dir(&self.root) else {
            return files;
        };
        for kind in kinds.flatten().filter(|e| e.path().is_dir()) {
            let Ok(namespaces) = std::fs::read_dir(kind.path()) else {
                continue;
            };
            for namespace in namespaces.flatten().filter(|e| e.path().is_dir()) {
                let Ok(entries) = std::fs::read_dir(namespace.path()) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Some(name) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".yaml"))
                        .filter(|n| !n.starts_with('.'))
                    else {
                        continue;
                    };
                    let place = format!(
                        "{}/{}/{name}",
                        kind.file_name().to_string_lossy(),
                        namespace.file_name().to_string_lossy()
                    );
                    files.push((place, path));
                }
            }
        }
        files
    }

    /// The status files that carry a signature line (verified or not).
    fn signed_places(&self) -> Vec<String> {
        self.status_files()
            .into_iter()
            .filter(|(_, path)| starts_signed(path))
            .map(|(place, _)| place)
            .collect()
    }

    /// The sequence number the next write of `place` gets: past the index and past the
    /// file now there.
    fn next_sequence(&self, signing: &Signing, place: &str, path: &Path) -> u64 {
        let on_disk = read_bounded(path)
            .ok()
            .flatten()
            .and_then(|text| status_signing::split(&text).map(|s| s.sequence))
            .unwrap_or(0);
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.get_or_insert_with(|| self.load_index(&signing.key));
        state.index.get(place).max(on_disk).saturating_add(1)
    }

    /// Records `place` at `sequence` in the index (written by [`Self::flush_index`]).
    fn record(&self, signing: &Signing, place: &str, sequence: u64) {
        self.update_index(signing, |index| index.raise(place, sequence));
    }

    fn update_index(&self, signing: &Signing, change: impl FnOnce(&mut Index)) {
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.get_or_insert_with(|| self.load_index(&signing.key));
        change(&mut state.index);
        state.changed = true;
    }

    /// Writes the index of sequence numbers, when it changed and can be trusted (an index
    /// that failed verification is never rewritten from what is on disk, or a file put
    /// back from history would be vouched for; `--adopt-unsigned-status` says to).
    pub fn flush_index(&self) -> Result<(), StatusDirError> {
        let Some(signing) = &self.signing else {
            return Ok(());
        };
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = guard.as_mut() else {
            return Ok(());
        };
        if !state.changed || (state.distrust.is_some() && !signing.adopt) {
            return Ok(());
        }
        if state.index.legacy {
            let present = self.status_files().into_iter().map(|(place, _)| place);
            state.index.settle_legacy(&present.collect());
        }
        // Past the anchor too: after `--adopt-unsigned-status` takes a rolled-back
        // directory, the anchor still only moves forward.
        state.index.generation = state.index.generation.max(state.anchored).saturating_add(1);
        let text = state.index.to_text(&signing.key);
        write_atomically(&self.root, &self.root.join(INDEX_FILE), text.as_bytes())?;
        // The anchor follows the index (never ahead of it), so a crash between the two
        // leaves an index newer than its anchor, which is trusted.
        if let Some(anchor) = &signing.anchor {
            let text = Anchor {
                generation: state.index.generation,
            }
            .to_text(&signing.key);
            let parent = anchor.parent().unwrap_or_else(|| Path::new("."));
            write_atomically(parent, anchor, text.as_bytes())?;
            state.anchored = state.index.generation;
        }
        state.changed = false;
        state.distrust = None;
        Ok(())
    }

    /// `--adopt-unsigned-status`: signs every unsigned status file as it is, takes the
    /// sequence numbers of the signed ones, and writes the index.
    pub fn adopt_unsigned(&self) -> Result<(), StatusDirError> {
        let Some(signing) = self.signing.as_ref().filter(|s| s.adopt) else {
            return Ok(());
        };
        let files = self.status_files();
        self.update_index(signing, |index| {
            let present: BTreeSet<&str> = files.iter().map(|(place, _)| place.as_str()).collect();
            let gone: Vec<(String, u64)> = index
                .expected_places()
                .filter(|(place, _)| !present.contains(place))
                .map(|(place, sequence)| (place.to_string(), sequence))
                .collect();
            for (place, sequence) in gone {
                tracing::warn!(file = %place, "--adopt-unsigned-status: a status file the operator wrote is gone; what it recorded is forgotten");
                index.mark_removed(&place, sequence);
            }
        });
        for (place, path) in files {
            let Some(text) = read_bounded(&path)? else {
                continue;
            };
            match status_signing::split(&text) {
                None => {
                    let sequence = self.next_sequence(signing, &place, &path);
                    let header = signing.key.header(&place, sequence, text.as_bytes());
                    let parent = path.parent().unwrap_or(&self.root);
                    write_atomically(parent, &path, format!("{header}{text}").as_bytes())?;
                    self.record(signing, &place, sequence);
                }
                Some(_) => {
                    if let Ok((_, sequence)) =
                        status_signing::verify(&signing.key, &place, &text, 0)
                    {
                        self.record(signing, &place, sequence);
                    }
                }
            }
        }
        {
            let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(state) = guard.as_mut() {
                state.changed = true;
            }
        }
        self.flush_index()
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
            return write_atomically(parent, &path, body.as_bytes());
        };
        let place = Self::place::<K>(key);
        let sequence = self.next_sequence(signing, &place, &path);
        let header = signing.key.header(&place, sequence, body.as_bytes());
        write_atomically(parent, &path, format!("{header}{body}").as_bytes())?;
        self.record(signing, &place, sequence);
        Ok(())
    }

    /// Removes the status of an object that is gone.
    pub fn remove<K: Resource<DynamicType = ()>>(
        &self,
        key: &ObjectKey,
    ) -> Result<(), StatusDirError> {
        let path = self.path::<K>(key)?;
        // The index keeps the file's number, so its old versions cannot come back.
        if let Some(signing) = &self.signing {
            let place = Self::place::<K>(key);
            let sequence = self.next_sequence(signing, &place, &path);
            self.update_index(signing, |index| index.mark_removed(&place, sequence));
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

/// A file's text, at most [`MAX_STATUS_FILE_BYTES`]; `None` when there is no file.
fn read_bounded(path: &Path) -> Result<Option<String>, StatusDirError> {
    let failed = |message: String| StatusDirError::Read {
        path: path.display().to_string(),
        message,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    };
    let mut text = String::new();
    file.take(MAX_STATUS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| failed(e.to_string()))?;
    if text.len() as u64 > MAX_STATUS_FILE_BYTES {
        return Err(failed(format!("larger than {MAX_STATUS_FILE_BYTES} bytes")));
    }
    Ok(Some(text))
}

/// Whether a file's first line is a signature line.
fn starts_signed(path: &Path) -> bool {
    let mut start = vec![0u8; status_signing::HEADER_PREFIX.len()];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut start))
        .is_ok_and(|()| start == status_signing::HEADER_PREFIX.as_bytes())
}

/// Writes a file atomically and durably: a temporary file of its own in `parent` (never
/// shared with another write), flushed to disk, renamed into place, and the rename flushed.
fn write_atomically(parent: &Path, path: &Path, bytes: &[u8]) -> Result<(), StatusDirError> {
    let error = |source| StatusDirError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(error)?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .tempfile_in(parent)
        .map_err(error)?;
    temporary.write_all(bytes).map_err(error)?;
    temporary.as_file().sync_all().map_err(error)?;
    temporary.persist(path).map_err(|e| error(e.error))?;
    sync_dir(parent).map_err(error)
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
        assert_eq!(status_dir.list::<PolicyAccess>().unwrap().objects.len(), 1);
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
    async fn no_wait_is_said_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let status_dir = StatusDir::new(dir.path());
        let _first = status_dir.lock("watch", Duration::ZERO).await.unwrap();
        let message = status_dir
            .lock("apply", Duration::ZERO)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--lock-timeout 0: did not wait") && !message.contains("0ns"),
            "{message}"
        );
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
