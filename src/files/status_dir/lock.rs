//! The status directory's lock: one writer at a time, readers side by side but never
//! beside a writer; the holder named in the lock file for whoever waits.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StatusDir;

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
    /// The status directory, when this lock created it: removed again if nothing but the
    /// lock file was written into it (an apply from the wrong directory, where nothing
    /// could be used, leaves nothing behind).
    created: Option<PathBuf>,
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
        if let Some(dir) = &self.created {
            remove_if_only_lock(dir);
        }
    }
}

/// Removes `dir` when it holds the lock file alone. Still locked: a process waiting for the
/// lock finds its lock file gone once it gets it, and starts again (see `lock`).
fn remove_if_only_lock(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names = entries.map(|entry| entry.map(|e| e.file_name()));
    let only_lock = matches!(
        (names.next(), names.next()),
        (Some(Ok(name)), None) if name == LOCK_FILE
    );
    if only_lock && std::fs::remove_file(dir.join(LOCK_FILE)).is_ok() {
        // Fails, harmlessly, if a file appeared since.
        let _ = std::fs::remove_dir(dir);
    }
}

/// Whether `file` (locked) is still the lock file at `path`, not one removed meanwhile by
/// the holder before (see [`remove_if_only_lock`]).
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_at(_file: &File, path: &Path) -> bool {
    path.exists()
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

impl StatusDir {
    /// Takes the exclusive lock of this status directory (creating the directory), waiting up
    /// to `timeout` for another `apply`, `watch` or `plan` to finish; `command` names this one
    /// in the message of the next to wait.
    pub async fn lock(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<StatusDirLock, LockStatusDirError> {
        let started = Instant::now();
        loop {
            let created = !self.root.exists();
            std::fs::create_dir_all(&self.root).map_err(|source| LockStatusDirError::Open {
                path: self.root.join(LOCK_FILE).display().to_string(),
                source,
            })?;
            let waited = started.elapsed();
            let mut lock = self
                .acquire(LockKind::Exclusive, timeout.saturating_sub(waited))
                .await?;
            // The holder before removed the directory it had created and left empty:
            // lock the one there now.
            if !still_at(&lock.file, &self.root.join(LOCK_FILE)) {
                continue;
            }
            lock.name(command);
            lock.created = created.then(|| self.root.clone());
            return Ok(lock);
        }
    }

    /// Takes a shared lock for a reader (`plan`): readers run side by side, but never while
    /// a writer holds the directory, so the status they read is not half written. Without a
    /// status directory there is nothing to read and nothing is created (`plan` writes
    /// nothing): `None`.
    pub async fn lock_shared(
        &self,
        timeout: Duration,
    ) -> Result<Option<StatusDirLock>, LockStatusDirError> {
        let started = Instant::now();
        loop {
            if !self.root.is_dir() {
                return Ok(None);
            }
            let waited = started.elapsed();
            let lock = match self
                .acquire(LockKind::Shared, timeout.saturating_sub(waited))
                .await
            {
                // Removed between the check and the open: nothing to read.
                Err(LockStatusDirError::Open { .. }) if !self.root.is_dir() => return Ok(None),
                other => other?,
            };
            // The writer before removed the directory it had created and left empty.
            if still_at(&lock.file, &self.root.join(LOCK_FILE)) {
                return Ok(Some(lock));
            }
        }
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
        Ok(StatusDirLock {
            file,
            named: false,
            created: None,
        })
    }
}
