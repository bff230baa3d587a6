//! The repository walk: which files under a directory are read as manifests.

use std::path::{Path, PathBuf};

use super::manifests::LoadManifestsError;

/// `*.yaml` or `*.yml`: the files read as manifests.
pub fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

pub(super) fn collect(
    dir: &Path,
    exclude: &[PathBuf],
    files: &mut Vec<PathBuf>,
    other_files: &mut Vec<PathBuf>,
    top: bool,
) -> Result<(), LoadManifestsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadManifestsError::ReadDir {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || exclude.iter().any(|e| same_path(e, &path)) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            // A subdirectory that cannot be read is reported like a broken file.
            if let Err(e) = collect(&path, exclude, files, other_files, false) {
                if top {
                    return Err(e);
                }
                files.push(path);
            }
        } else if is_manifest_name(&path) {
            files.push(path);
        } else {
            other_files.push(path);
        }
    }
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
