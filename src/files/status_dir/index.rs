//! Trust: a status file is taken only when the key vouches for it, at a sequence number
//! no older than the signed index says; the index is kept and written here.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use super::StatusDir;
use super::disk::{read_bounded, starts_signed, write_atomically};
use super::errors::StatusDirError;
use super::signing::{IndexState, Signing};
use crate::files::status_signing::{self, INDEX_FILE, Index, StatusKey, Unverified};

impl StatusDir {
    /// The body of a status file if the key vouches for it (or `--adopt-unsigned-status`
    /// takes it).
    pub(super) fn check<'t>(
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
        IndexState {
            index,
            distrust,
            changed: false,
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
    pub(super) fn record(&self, signing: &Signing, place: &str, sequence: u64) {
        let mut guard = signing.index.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.get_or_insert_with(|| self.load_index(&signing.key));
        state.index.raise(place, sequence);
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
        let text = state.index.to_text(&signing.key);
        write_atomically(&self.root, &self.root.join(INDEX_FILE), text.as_bytes())?;
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
        for (place, path) in self.status_files() {
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
