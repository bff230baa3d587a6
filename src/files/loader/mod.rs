//! Reads every manifest under a directory: `*.yaml` / `*.yml`, recursive, multi-document.
//!
//! Reading is as strict as `kubectl apply`: an unknown field, a field of the wrong type, a
//! kind of our group that does not exist, or a name the API server would refuse fails that
//! document, naming file, document and field. A failed document is a [`LoadProblem`], and
//! any problem makes the [`Manifests`] incomplete, so nothing is inferred from absence: a
//! typo never reads as "this person is no longer wanted". A broken file fails its own
//! objects, never the whole run.
//!
//! Files are streamed one document at a time under fixed budgets (file size, documents,
//! nodes, depth, aliases), so memory stays bounded by the objects kept, whatever the input.
//!
//! The parts, in the order a file meets them: `walk` finds the files, `file` opens one
//! and streams its documents under the `budgets`, `header` reads and checks what a
//! document says it is, `document` and `strict` turn it into a typed object (or a
//! problem), and `duplicates` rejects objects defined twice. `manifests` holds what a
//! load gives back.

mod budgets;
mod document;
mod duplicates;
mod file;
mod header;
mod manifests;
mod strict;
mod walk;

use std::path::{Path, PathBuf};

use tracing::info;

pub use budgets::{
    MAX_ALIAS_EVENTS, MAX_DEPTH, MAX_DOCUMENTS_PER_FILE, MAX_FILE_BYTES, MAX_NODES_PER_DOCUMENT,
    MAX_PROBLEM_CHARS,
};
pub use manifests::{LoadManifestsError, LoadProblem, Loaded, Manifests, Source};
pub use walk::is_manifest_name;

use duplicates::reject_duplicates;
use file::load_file;
use walk::collect;

/// Reads `dir`, skipping hidden entries (`.git`, the default status directory) and `exclude`.
/// Each skipped file and document is logged once at info. A directory where nothing at all
/// names a connector is an error; one whose connector failed to load is not (its problem
/// says why).
pub fn load(dir: &Path, exclude: &[PathBuf]) -> Result<Manifests, LoadManifestsError> {
    let (manifests, yaml_files, other_files) = read_tree(dir, exclude)?;
    if manifests.connectors.is_empty() && manifests.problems.is_empty() {
        return Err(LoadManifestsError::NoConnector {
            path: dir.display().to_string(),
            found: found(yaml_files, other_files, &manifests),
        });
    }
    Ok(manifests)
}

/// [`load`] without the need for a connector: `validate` checks part of a repository (a
/// directory of PolicyAccess objects whose connector is above it) as well as a whole one.
pub fn load_tree(dir: &Path, exclude: &[PathBuf]) -> Result<Manifests, LoadManifestsError> {
    read_tree(dir, exclude).map(|(manifests, _, _)| manifests)
}

/// Every manifest below `dir`, with the numbers of YAML and other files seen.
fn read_tree(
    dir: &Path,
    exclude: &[PathBuf],
) -> Result<(Manifests, usize, usize), LoadManifestsError> {
    let mut files = Vec::new();
    let mut other_files = Vec::new();
    collect(dir, exclude, &mut files, &mut other_files, true)?;
    files.sort();
    other_files.sort();
    let mut manifests = Manifests {
        skipped: other_files
            .iter()
            .map(|path| format!("{}: skipped (not a .yaml or .yml file)", path.display()))
            .collect(),
        ..Manifests::default()
    };
    for path in &files {
        load_file(path, &mut manifests);
    }
    reject_duplicates(&mut manifests);
    for note in &manifests.skipped {
        info!("{note}");
    }
    Ok((manifests, files.len(), other_files.len()))
}

/// Reads one manifest file alone, as strictly as [`load`] reads a directory (duplicates
/// inside the file included). A file without any connector is not an error here: `validate`
/// checks one file of a repository at a time.
pub fn load_file_alone(path: &Path) -> Manifests {
    let mut manifests = Manifests::default();
    load_file(path, &mut manifests);
    reject_duplicates(&mut manifests);
    manifests
}

/// Whether `dir` itself (not a subdirectory) holds a manifest file with an
/// ExpensifyConnector document, read or not: how a repository root is recognised.
pub fn holds_connector(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| is_manifest_name(path))
        .collect();
    files.sort();
    files.iter().any(|path| {
        let manifests = load_file_alone(path);
        !manifests.connectors.is_empty()
            || manifests.problems.iter().any(|p| {
                p.object
                    .as_deref()
                    .is_some_and(|o| o.starts_with("ExpensifyConnector "))
            })
    })
}

/// What a directory without a connector held, for the error.
fn found(yaml_files: usize, other_files: usize, manifests: &Manifests) -> String {
    let documents = manifests.skipped.len() - other_files;
    format!(
        "{yaml_files} YAML file(s) with {} PolicyAccess and {documents} document(s) of other kinds, and {other_files} other file(s)",
        manifests.accesses.len()
    )
}

#[cfg(test)]
mod tests;
