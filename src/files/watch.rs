//! `watch`: apply now, then again on every manifest change (debounced), every
//! `syncInterval`, and at the next `expiresAt`, until asked to stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::runner::{FileMode, PassReport};
use crate::api::parse_duration;

/// Quiet time after a file event before syncing, so an editor's burst or a `git pull` is one sync.
pub const DEBOUNCE: Duration = Duration::from_millis(500);
/// Used when no connector has a valid `syncInterval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);

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

/// The next time to sync after `report`: the shortest `syncInterval`, or sooner for an expiry.
pub fn next_wakeup(report: Option<&PassReport>, now: Timestamp) -> Duration {
    let interval = report
        .into_iter()
        .flat_map(|r| r.manifests.connectors.iter())
        .filter_map(|c| parse_duration(&c.object.spec.sync_interval).ok())
        .min()
        .unwrap_or(DEFAULT_INTERVAL);
    let until_expiry = report
        .and_then(PassReport::next_expiry)
        .and_then(|at| {
            let seconds = at.as_second().saturating_sub(now.as_second()).max(0);
            u64::try_from(seconds).ok()
        })
        // One second past, so the member is expired when the sync runs.
        .map(|s| Duration::from_secs(s + 1));
    until_expiry.map_or(interval, |e| e.min(interval))
}

/// Whether a changed path is a manifest change: not in the status directory, and not a
/// hidden entry (`.git`, editor swap files) below the watched directory.
fn relevant(path: &Path, dir: &Path, status_root: &Path) -> bool {
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
    // included); other files than manifests do not matter, directories below do.
    let manifest_or_dir = match path.extension().and_then(|e| e.to_str()) {
        Some(extension) => matches!(extension, "yaml" | "yml"),
        None => !below.as_os_str().is_empty(),
    };
    !in_status && !hidden && manifest_or_dir
}

/// Runs until `stop` turns true; the sync in flight always finishes first.
pub async fn watch(mode: &FileMode, mut stop: watch::Receiver<bool>) -> Result<(), WatchError> {
    let (events_tx, mut events) = mpsc::unbounded_channel::<PathBuf>();
    let status_root = mode.status_dir.root().to_path_buf();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                tracing::debug!(kind = ?event.kind, paths = ?event.paths, "file event");
                for path in event.paths {
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
        let report = match mode.pass_until(false, Some(&stop)).await {
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
                _ = &mut sleep => break,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        info!("stopping");
                        return Ok(());
                    }
                }
                Some(path) = events.recv() => {
                    if !relevant(&path, &mode.dir, &status_root) {
                        continue;
                    }
                    // Debounce: let the burst settle, then sync once.
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                    info!(path = %path.display(), "manifests changed");
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

    #[test]
    fn status_and_hidden_paths_do_not_trigger() {
        let dir = Path::new("/tmp/.hidden-parent/repo");
        let root = dir.join(".expensify-status");
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
        assert!(
            relevant(&dir.join("teams"), dir, &root),
            "a directory below"
        );
    }

    #[test]
    fn without_a_report_the_default_interval_applies() {
        assert_eq!(next_wakeup(None, Timestamp::now()), DEFAULT_INTERVAL);
    }
}
