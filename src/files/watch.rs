//! `watch`: apply now, then again on every manifest change (debounced), every
//! `syncInterval`, and at the next `expiresAt`, until asked to stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::runner::{FileMode, PassReport, Run};
use crate::api::DEFAULT_SYNC_INTERVAL;
use crate::sync::next_sync;

/// Quiet time after a file event before syncing, so an editor's burst or a `git pull` is one sync.
pub const DEBOUNCE: Duration = Duration::from_millis(500);
/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
}

/// The next time to sync after `report`: the shortest `syncInterval` (the default one
/// before any pass), or sooner for an expiry.
pub fn next_wakeup(report: Option<&PassReport>, now: Timestamp) -> Duration {
    let interval = report
        .into_iter()
        .flat_map(|r| r.manifests.connectors.iter())
        .map(|c| c.object.spec.sync_interval())
        .min()
        .unwrap_or(DEFAULT_SYNC_INTERVAL);
    let next_expiry = report.and_then(PassReport::next_expiry);
    next_sync(interval, Duration::ZERO, next_expiry, now)
}

/// Whether an event can change what the manifests say. Reading a file (`Access(Open)`,
/// `Access(Close(NoWrite))`, which every sync pass does itself) and metadata changes
/// (permissions, timestamps) cannot; counting them made `watch` re-trigger itself forever.
fn content_change(kind: EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        // Data, rename, and the backends that cannot tell which (`Any`, `Other`).
        EventKind::Modify(modify) => !matches!(modify, ModifyKind::Metadata(_)),
        // A writer closing its file: the end of a write, folded by the debounce.
        EventKind::Access(access) => matches!(access, AccessKind::Close(AccessMode::Write)),
        EventKind::Any | EventKind::Other => false,
    }
}

/// Whether an entry kind can change a manifest's content: a directory appearing, going or
/// moving takes manifests with it; its other events (its listing being read) cannot.
fn entry_change(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    )
}

/// Whether a changed path is a manifest change: not in the status directory, and not a
/// hidden entry (`.git`, editor swap files) below the watched directory.
fn relevant(path: &Path, dir: &Path, status_root: &Path, kind: EventKind) -> bool {
    if !content_change(kind) {
        return false;
    }
    let in_status = path.starts_with(status_root)
        || path
            .canonicalize()
            .ok()
            .zip(status_root.canonicalize().ok())
            .is_some_and(|(p, s)| p.starts_with(s));
    let below = path
        .strip_prefix(dir)
        .ok()
        .or_else(|| path.strip_prefix(dir.canonicalize().ok()?).ok())
        .unwrap_or(path);
    let hidden = below
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
    // The directory itself changes whenever anything in it does (the status directory
    // included); other files than manifests do not matter (an editor's or `sed -i`'s
    // temporary file), directories below do.
    let manifest_or_dir = is_manifest(path)
        || (!below.as_os_str().is_empty() && entry_change(kind) && may_be_directory(path, kind));
    !in_status && !hidden && manifest_or_dir
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|extension| matches!(extension, "yaml" | "yml"))
}

/// Whether the entry an event names is (or was) a directory. inotify says so for creations
/// and removals; for a rename, or a backend that does not say, the path is looked at now,
/// and one that is gone may have been a directory (moved away with its manifests).
fn may_be_directory(path: &Path, kind: EventKind) -> bool {
    match kind {
        EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => true,
        EventKind::Create(CreateKind::File) | EventKind::Remove(RemoveKind::File) => false,
        _ => std::fs::metadata(path).map_or(true, |metadata| metadata.is_dir()),
    }
}

/// The path of `event` that makes it a manifest change, if any: a manifest before a
/// directory, so a `sed -i` rename of its temporary file onto `team.yaml` names `team.yaml`.
fn triggering_path(event: notify::Event, dir: &Path, status_root: &Path) -> Option<PathBuf> {
    let kind = event.kind;
    let mut relevant_paths = event
        .paths
        .into_iter()
        .filter(|path| relevant(path, dir, status_root, kind));
    let first = relevant_paths.next()?;
    if is_manifest(&first) {
        return Some(first);
    }
    Some(
        relevant_paths
            .find(|path| is_manifest(path))
            .unwrap_or(first),
    )
}

/// Runs until `stop` turns true; the sync in flight always finishes first.
pub async fn watch(mode: &FileMode, mut stop: watch::Receiver<bool>) -> Result<(), WatchError> {
    let (events_tx, mut events) = mpsc::unbounded_channel::<PathBuf>();
    let status_root = mode.status_dir.root().to_path_buf();
    let (filter_dir, filter_status) = (mode.dir.clone(), status_root.clone());
    // Filtered on notify's thread: the path checks touch the file system.
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                tracing::trace!(kind = ?event.kind, paths = ?event.paths, "file event");
                if let Some(path) = triggering_path(event, &filter_dir, &filter_status) {
                    let _ = events_tx.send(path);
                }
            }
            Err(e) => warn!(error = %e, "file watch error"),
        })
        .map_err(|source| WatchError::Watch {
            path: mode.dir.display().to_string(),
            source,
        })?;
    watcher
        .watch(&mode.dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Watch {
            path: mode.dir.display().to_string(),
            source,
        })?;
    info!(dir = %mode.dir.display(), status_dir = %status_root.display(), "watching manifests");
    loop {
        let report = match mode.pass_until(Run::Apply, Some(&stop)).await {
            Ok(report) => {
                summarize(&report);
                Some(report)
            }
            Err(e) => {
                error!(error = %e, "sync pass failed");
                None
            }
        };
        if *stop.borrow() {
            break;
        }
        let wait = next_wakeup(report.as_ref(), Timestamp::now());
        info!(
            next_sync_in_seconds = wait.as_secs(),
            "waiting for a change, the interval or an expiry"
        );
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        info!("stopping");
                        return Ok(());
                    }
                }
                Some(path) = events.recv() => {
                    // Debounce: let the burst settle, then sync once.
                    tokio::time::sleep(DEBOUNCE).await;
                    let mut shown = path;
                    while let Ok(next) = events.try_recv() {
                        // Name a manifest of the burst rather than a directory that may be
                        // one (a renamed-away temporary file cannot be told from one).
                        if !is_manifest(&shown) && is_manifest(&next) {
                            shown = next;
                        }
                    }
                    info!(path = %shown.display(), "manifests changed");
                    break;
                }
            }
        }
    }
    info!("stopping");
    Ok(())
}

fn summarize(report: &PassReport) {
    for sync in &report.syncs {
        let applied = sync.results.iter().filter(|r| r.failure.is_none()).count();
        let failed = sync.results.len() - applied;
        info!(
            connector = %sync.connector,
            phase = %sync.connector_status.phase,
            applied,
            failed,
            objects = sync.statuses.len(),
            expensify_calls = sync.calls.total(),
            detail = sync.connector_status.message.as_deref().unwrap_or_default(),
            "sync finished"
        );
    }
    for problem in &report.manifests.problems {
        warn!(problem = %problem, "manifest problem");
    }
    for unattached in &report.unattached {
        warn!(object = %unattached.key, message = unattached.status.message.as_deref().unwrap_or_default(), "object not attached to a connector");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use notify::event::{DataChange, MetadataKind, RenameMode};

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Content));

    #[test]
    fn status_and_hidden_paths_do_not_trigger() {
        let dir = Path::new("/tmp/.hidden-parent/repo");
        let root = dir.join(".expensify-status");
        let relevant = |path: &Path, dir: &Path, root: &Path| relevant(path, dir, root, WRITE);
        assert!(!relevant(&root.join("policyaccess/x.yaml"), dir, &root));
        assert!(!relevant(&dir.join(".git/index"), dir, &root));
        assert!(
            relevant(&dir.join("finance/team.yaml"), dir, &root),
            "a hidden parent does not count"
        );
        assert!(!relevant(
            Path::new("/elsewhere/status/x.yaml"),
            dir,
            Path::new("/elsewhere/status")
        ));
        assert!(!relevant(dir, dir, &root), "the directory itself");
        assert!(!relevant(&dir.join("README.md"), dir, &root));
        assert!(!relevant(&root.join(".lock"), dir, &root), "the lock file");
    }

    #[test]
    fn only_content_changes_of_manifests_trigger() {
        let dir = Path::new("/repo");
        let root = dir.join(".expensify-status");
        let manifest = dir.join("finance/team.yml");
        let triggers = |kind: EventKind| relevant(&manifest, dir, &root, kind);
        for kind in [
            EventKind::Create(CreateKind::File),
            WRITE,
            EventKind::Modify(ModifyKind::Any),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ] {
            assert!(triggers(kind), "{kind:?} changes a manifest");
        }
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Any)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(!triggers(kind), "{kind:?} changes no manifest");
        }
    }

    #[test]
    fn a_directory_below_counts_only_when_it_comes_goes_or_moves() {
        let dir = Path::new("/repo");
        let root = dir.join(".expensify-status");
        let teams = dir.join("teams");
        let triggers = |kind: EventKind| relevant(&teams, dir, &root, kind);
        assert!(triggers(EventKind::Create(CreateKind::Folder)));
        assert!(triggers(EventKind::Remove(RemoveKind::Folder)));
        assert!(triggers(EventKind::Modify(ModifyKind::Name(
            RenameMode::Both
        ))));
        assert!(!triggers(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(
            !triggers(WRITE),
            "a listing changing is its entries' events"
        );
    }

    #[test]
    fn an_event_triggers_through_its_first_manifest_path() {
        let dir = Path::new("/repo");
        let root = dir.join(".expensify-status");
        let rename = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(dir.join("notes.txt"))
            .add_path(dir.join("team.yaml"));
        assert_eq!(
            triggering_path(rename, dir, &root),
            Some(dir.join("team.yaml"))
        );
        let read = notify::Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any)))
            .add_path(dir.join("team.yaml"));
        assert_eq!(triggering_path(read, dir, &root), None);
    }

    #[test]
    fn other_files_never_trigger_even_without_an_extension() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path();
        let root = dir.join(".expensify-status");
        // `sed -i team.yaml`: a temporary file, written, then renamed onto the manifest.
        let temporary = dir.join("sedojePbu");
        assert!(!relevant(
            &temporary,
            dir,
            &root,
            EventKind::Create(CreateKind::File)
        ));
        assert!(!relevant(
            &temporary,
            dir,
            &root,
            EventKind::Remove(RemoveKind::File)
        ));
        let sed_rename = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(temporary)
            .add_path(dir.join("team.yaml"));
        assert_eq!(
            triggering_path(sed_rename, dir, &root),
            Some(dir.join("team.yaml"))
        );
        // A rename says nothing of what moved: a file there now is a file.
        std::fs::write(dir.join("Makefile"), "").unwrap();
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(!relevant(&dir.join("Makefile"), dir, &root, renamed));
        // A directory named like a file is still a directory.
        std::fs::create_dir(dir.join("v1.2")).unwrap();
        assert!(relevant(&dir.join("v1.2"), dir, &root, renamed));
        let moved_away = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        assert!(
            relevant(&dir.join("gone"), dir, &root, moved_away),
            "gone: it may have been a directory of manifests"
        );
    }

    #[test]
    fn without_a_report_the_default_interval_applies() {
        assert_eq!(next_wakeup(None, Timestamp::now()), DEFAULT_SYNC_INTERVAL);
    }
}
