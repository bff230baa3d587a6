//! One manifest file: opened only when it is a regular file of reasonable size, then
//! streamed one document at a time.

use std::path::Path;

use serde_json::Value;

use super::budgets::{MAX_DOCUMENTS_PER_FILE, MAX_FILE_BYTES, bounded, parse_options, yaml_error};
use super::document::load_document;
use super::manifests::{LoadProblem, Manifests, Source};

/// Opens a manifest after checking, without opening it, that it is a regular file of
/// reasonable size (opening a FIFO would block; a device would never end).
fn open_manifest(path: &Path) -> Result<std::fs::File, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if metadata.is_dir() {
        return Err("cannot read this directory".to_string());
    }
    if !metadata.is_file() {
        return Err("not a regular file (a FIFO or a device is never read)".to_string());
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes, more than the {} MiB a manifest file may have; split it (`export --output-dir` writes one file per policy)",
            metadata.len(),
            MAX_FILE_BYTES / (1024 * 1024)
        ));
    }
    std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))
}

pub(super) fn load_file(path: &Path, manifests: &mut Manifests) {
    match open_manifest(path) {
        Ok(file) => read_documents(path, std::io::BufReader::new(file), manifests),
        Err(message) => manifests.problems.push(LoadProblem {
            source: Source {
                path: path.to_path_buf(),
                document: 1,
            },
            object: None,
            message,
        }),
    }
}

/// Reads the documents of one file, each into an object, a skipped note or a problem.
pub(super) fn read_documents(
    path: &Path,
    mut reader: impl std::io::Read,
    manifests: &mut Manifests,
) {
    let source = |document: usize| Source {
        path: path.to_path_buf(),
        document,
    };
    let file_problem = |document: usize, message: String| LoadProblem {
        source: source(document),
        object: None,
        message: bounded(message),
    };
    let documents = serde_saphyr::read_with_options::<_, Value>(&mut reader, parse_options());
    for (index, result) in documents.enumerate() {
        let document = index + 1;
        if document > MAX_DOCUMENTS_PER_FILE {
            manifests.problems.push(file_problem(
                document,
                format!(
                    "more than {MAX_DOCUMENTS_PER_FILE} documents in one file; the rest is not read"
                ),
            ));
            return;
        }
        match result {
            Ok(value) => load_document(value, source(document), manifests),
            Err(e) => manifests
                .problems
                .push(file_problem(document, yaml_error(&e))),
        }
    }
}
