//! The real documents mutations start from, read from the repository.

use std::path::Path;

/// Every file under `dir` (relative to the crate) whose name ends in `.ext`, sorted.
pub fn files(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .{ext} file in {}", dir.display());
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}
