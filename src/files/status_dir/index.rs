//! Trust: a status file is taken only when the key vouches for it, at a sequence number
//! no older than the signed index says; the index is kept and written here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use kube::Resource;

use super::disk::{read_bounded, starts_signed, write_atomically};
use super::errors::StatusDirError;
use super::signing::{IndexState, Signing};
use super::{StatusDir, kind_dir};
use crate::files::status_signing::{self, Anchor, INDEX_FILE, Index, StatusKey, Unverified};
use crate::reconcile::ObjectKey;

impl StatusDir {
    /// The body of a status file if the key vouches for it (or `--adopt-unsigned-status`
    /// takes it); `None` when the index says the operator removed it since.
    pub(super) fn check<'t>(
        &self,
        signing: &Signing,
        place: &str,
        text: &'t str,
    ) -> Result<Option<&'t str>, Unverified> {
        self.with_index(signing, |state| {
            if let Some(why) = &state.distrust
                && !signing.adopt
            {
                return Err(Unverified::Index(why.clone()));
            }
            match status_signing::verify(&signing.key, place, text, state.index.get(place)) {
                Ok((body, sequence)) => {
                    state.index.raise(place, sequence);
                    Ok(Some(body))
                }
                // The last file written here, and the index records its removal: the
                // process stopped between the two (see `remove`). Gone, as the removal
                // meant; any older file put back is still refused.
                Err(Unverified::Replayed { found, newest })
                    if state.index.removed.contains(place) && found.saturating_add(1) == newest =>
                {
                    Ok(None)
                }
                Err(Unverified::Unsigned) if signing.adopt => {
                    tracing::warn!(
                        file = %place,
                        "--adopt-unsigned-status: an unsigned status file is taken as it is; this apply signs it"
                    );
                    Ok(Some(text))
                }
                Err(reason) => Err(reason),
            }
        })
    }

    /// Runs `use_it` on the index, read from disk the first time it is needed (so after
    /// the directory is locked).
    fn with_index<R>(&self, signing: &Signing, use_it: impl FnOnce(&mut IndexState) -> R) -> R {
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        use_it(guard.get_or_insert_with(|| self.load_index(&signing.key)))
    }

    /// Why there being no file at `place` is a problem: the index says the operator wrote
    /// one and never removed it (someone deleted it, or a checkout lost it, and with it
    /// the ledger). `--adopt-unsigned-status` takes the directory as it is.
    pub(super) fn missing(&self, place: &str) -> Option<Unverified> {
        let signing = self.signing.as_ref().filter(|s| !s.adopt)?;
        self.with_index(signing, |state| {
            state.index.expected(place).map(Unverified::Missing)
        })
    }

    /// The places of kind `K` the index expects a file at, as object keys.
    pub(super) fn expected_keys<K: Resource<DynamicType = ()>>(&self) -> Vec<ObjectKey> {
        let Some(signing) = self.signing.as_ref().filter(|s| !s.adopt) else {
            return Vec::new();
        };
        let prefix = format!("{}/", kind_dir::<K>());
        self.with_index(signing, |state| {
            state
                .index
                .expected_places()
                .filter_map(|(place, _)| place.strip_prefix(&prefix)?.split_once('/'))
                .map(|(namespace, name)| ObjectKey::new(namespace, name))
                .collect()
        })
    }

    /// Why the index cannot be trusted (it fails verification, or is older than its
    /// anchor: rolled back, or the whole directory deleted), unless
    /// `--adopt-unsigned-status` takes it: then no status file is believed, and a pass
    /// must not take an empty directory for an empty ledger either.
    pub fn distrusted(&self) -> Option<String> {
        let signing = self.signing.as_ref().filter(|s| !s.adopt)?;
        self.with_index(signing, |state| state.distrust.clone())
    }

    /// The index on disk, and whether it can be trusted.
    pub(super) fn load_index(&self, key: &StatusKey) -> IndexState {
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
    pub(super) fn read_anchor(&self, key: &StatusKey, generation: u64) -> (u64, Option<String>) {
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
    pub(super) fn status_files(&self) -> Vec<(String, PathBuf)> {
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
    pub(super) fn signed_places(&self) -> Vec<String> {
        self.status_files()
            .into_iter()
            .filter(|(_, path)| starts_signed(path))
            .map(|(place, _)| place)
            .collect()
    }

    /// The sequence number the next write of `place` gets: past the index and past the
    /// file now there.
    pub(super) fn next_sequence(&self, signing: &Signing, place: &str, path: &Path) -> u64 {
        // Only a number the key vouches for: a forged header claiming `u64::MAX` would
        // otherwise pin every later write there, and older files would verify again.
        let on_disk = read_bounded(path)
            .ok()
            .flatten()
            .and_then(|text| {
                status_signing::verify(&signing.key, place, &text, 0)
                    .ok()
                    .map(|(_, sequence)| sequence)
            })
            .unwrap_or(0);
        self.with_index(signing, |state| state.index.get(place).max(on_disk))
            .saturating_add(1)
    }

    /// Records `place` at `sequence` in the index (written by [`Self::flush_index`]).
    pub(super) fn record(&self, signing: &Signing, place: &str, sequence: u64) {
        self.update_index(signing, |index| index.raise(place, sequence));
    }

    pub(super) fn update_index(&self, signing: &Signing, change: impl FnOnce(&mut Index)) {
        self.with_index(signing, |state| {
            change(&mut state.index);
            state.changed = true;
        });
    }

    /// Writes the index before the first signed file of a directory that has none: signed
    /// files without an index are never trusted again, so a crash between the first files
    /// and the end of the pass would otherwise hold the whole directory. A file newer than
    /// the index is trusted, so the files that follow need no index write of their own.
    pub(super) fn index_before_first_file(&self, signing: &Signing) -> Result<(), StatusDirError> {
        if self.root.join(INDEX_FILE).exists() {
            return Ok(());
        }
        self.update_index(signing, |_| {});
        self.flush_index()
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
        crate::crash_point!("status-dir-before-index");
        write_atomically(&self.root, &self.root.join(INDEX_FILE), text.as_bytes())?;
        crate::crash_point!("status-dir-before-anchor");
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
}
