//! The status directory's files on disk: read within a bound, written atomically and
//! durably.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::errors::StatusDirError;
use crate::files::status_signing;

/// A status file larger than this is refused unread.
const MAX_STATUS_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A file's text, at most [`MAX_STATUS_FILE_BYTES`]; `None` when there is no file.
pub(super) fn read_bounded(path: &Path) -> Result<Option<String>, StatusDirError> {
    let failed = |message: String| StatusDirError::Read {
        path: path.display().to_string(),
        message,
    };
    // Never through a link: a pull request could point a status file at a secret of the
    // runner (`/proc/self/environ`, a credentials file), and a status file is never one.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(failed(
                "is a symbolic link; status files are never read through links".to_string(),
            ));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(failed("is not a regular file".to_string()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    }
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
pub(super) fn starts_signed(path: &Path) -> bool {
    let mut start = vec![0u8; status_signing::HEADER_PREFIX.len()];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut start))
        .is_ok_and(|()| start == status_signing::HEADER_PREFIX.as_bytes())
}

/// Writes a file atomically and durably: a temporary file of its own in `parent` (never
/// shared with another write), flushed to disk, renamed into place, and the rename flushed.
pub(super) fn write_atomically(
    parent: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), StatusDirError> {
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
