//! A manifest path as given on the command line: a directory (read whole, as always) or
//! one manifest file of a repository, the kubectl habit (`plan access/finance.yaml`).
//!
//! A file is never planned alone: who owns what (the ledger), who asks for whom (claims)
//! and what nobody asks for any more depend on every object of the repository. So a file
//! is located in its **repository root**, everything is loaded from there, and only what
//! the file's objects ask for is shown. The root is the nearest directory, from the file's
//! own directory upwards, that either holds an ExpensifyConnector manifest itself (not in
//! a subdirectory) or is a git root (has `.git`), whichever comes first. The nearer of the
//! two, so a repository holding several independent manifest trees (like `examples/` next
//! to production manifests) plans a file with the tree it belongs to.

use std::path::{Path, PathBuf};

use super::loader;

/// What a command reads: the directory everything is loaded from, and the file the user
/// named, if they named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The directory loaded: the path given, or the repository root around the file.
    pub root: PathBuf,
    /// The file given (canonical), when a file was given.
    pub file: Option<PathBuf>,
    /// Why `root` is the root, when it was looked for.
    pub found_by: Option<RootKind>,
}

/// How a repository root was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// It holds an ExpensifyConnector manifest.
    Connector,
    /// It is a git root.
    Git,
}

impl std::fmt::Display for RootKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RootKind::Connector => "the nearest directory holding an ExpensifyConnector manifest",
            RootKind::Git => "the git root",
        })
    }
}

/// Why a path cannot be read as manifests.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{path}: cannot read it")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a directory nor a regular file")]
    NotFileOrDirectory { path: String },
    #[error("{path} is not a manifest: only *.yaml and *.yml files are read")]
    NotManifest { path: String },
    #[error(
        "{path}: no repository root found: no directory from {start} up holds an ExpensifyConnector manifest, and none is a git root (has .git)"
    )]
    NoRoot { path: String, start: String },
}

impl Target {
    /// A directory is its own root; a file is located in its repository (see the module).
    pub fn resolve(path: &Path) -> Result<Target, TargetError> {
        let metadata = std::fs::metadata(path).map_err(|source| TargetError::Unreadable {
            path: path.display().to_string(),
            source,
        })?;
        if metadata.is_dir() {
            return Ok(Target {
                root: path.to_path_buf(),
                file: None,
                found_by: None,
            });
        }
        if !metadata.is_file() {
            return Err(TargetError::NotFileOrDirectory {
                path: path.display().to_string(),
            });
        }
        if !loader::is_manifest_name(path) {
            return Err(TargetError::NotManifest {
                path: path.display().to_string(),
            });
        }
        let file = path
            .canonicalize()
            .map_err(|source| TargetError::Unreadable {
                path: path.display().to_string(),
                source,
            })?;
        let start = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let (root, kind) = find_root(&start).ok_or_else(|| TargetError::NoRoot {
            path: path.display().to_string(),
            start: start.display().to_string(),
        })?;
        Ok(Target {
            root: shortened(&root),
            file: Some(file),
            found_by: Some(kind),
        })
    }

    /// The file given, as the user reads it: relative to the root.
    pub fn file_in_root(&self) -> Option<String> {
        let file = self.file.as_deref()?;
        let root = self.root.canonicalize().ok()?;
        Some(
            file.strip_prefix(&root)
                .unwrap_or(file)
                .display()
                .to_string(),
        )
    }
}

/// The repository root of a directory: itself or the nearest ancestor that holds an
/// ExpensifyConnector manifest or is a git root.
pub fn find_root(start: &Path) -> Option<(PathBuf, RootKind)> {
    start.ancestors().find_map(|dir| {
        if loader::holds_connector(dir) {
            Some((dir.to_path_buf(), RootKind::Connector))
        } else if dir.join(".git").exists() {
            Some((dir.to_path_buf(), RootKind::Git))
        } else {
            None
        }
    })
}

/// `path` relative to the working directory when it is below it, for shorter messages and
/// status paths; else as it is.
fn shortened(path: &Path) -> PathBuf {
    let Ok(cwd) = std::env::current_dir().and_then(|d| d.canonicalize()) else {
        return path.to_path_buf();
    };
    match path.strip_prefix(&cwd) {
        Ok(relative) if relative.as_os_str().is_empty() => PathBuf::from("."),
        Ok(relative) => relative.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTOR: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {name: acme}\nspec:\n  credentialsSecretRef: {name: creds}\n  adminEmail: it@acme.example\n";
    const ACCESS: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: team}\nspec:\n  connectorRef: {name: acme}\n  policy: {id: P1}\n  members: [{email: a@acme.example}]\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_directory_is_its_own_root() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::resolve(dir.path()).unwrap();
        assert_eq!(target.root, dir.path());
        assert_eq!(target.file, None);
    }

    #[test]
    fn a_file_is_planned_from_the_nearest_directory_holding_a_connector() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        write(dir.path(), "access/connector.yaml", CONNECTOR);
        let file = write(dir.path(), "access/teams/finance/team.yaml", ACCESS);
        let target = Target::resolve(&file).unwrap();
        let root = dir.path().join("access").canonicalize().unwrap();
        assert_eq!(target.root.canonicalize().unwrap(), root);
        assert_eq!(target.found_by, Some(RootKind::Connector));
        assert_eq!(target.file_in_root().unwrap(), "teams/finance/team.yaml");
    }

    #[test]
    fn without_a_connector_above_the_git_root_is_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        // A connector in a sibling subdirectory is not "above" the file.
        write(dir.path(), "connectors/acme.yaml", CONNECTOR);
        let file = write(dir.path(), "teams/team.yaml", ACCESS);
        let target = Target::resolve(&file).unwrap();
        assert_eq!(
            target.root.canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
        assert_eq!(target.found_by, Some(RootKind::Git));
    }

    #[test]
    fn a_file_outside_any_repository_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "team.yaml", ACCESS);
        // Temporary directories are not in a git checkout; the walk reaches `/`.
        if find_root(dir.path()).is_none() {
            let err = Target::resolve(&file).unwrap_err().to_string();
            assert!(err.contains("no repository root found"), "{err}");
        }
        let notes = write(dir.path(), "notes.txt", "hello");
        let err = Target::resolve(&notes).unwrap_err().to_string();
        assert!(err.contains("not a manifest"), "{err}");
        let err = Target::resolve(&dir.path().join("missing.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.yaml: cannot read it"), "{err}");
    }
}
