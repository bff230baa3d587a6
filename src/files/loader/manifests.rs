//! What a load gives back: the objects read, where each came from, and what could not be used.

use std::fmt;
use std::path::PathBuf;

use crate::api::{AccessDecision, AccessRequest, ExpensifyConnector, PolicyAccess};
use crate::reconcile::ObjectKey;

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// 1-based position of the document in its file (empty documents are not counted).
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.path.display(), self.document)
    }
}

/// An object read successfully.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub object: T,
    pub key: ObjectKey,
    pub source: Source,
}

/// Something that could not be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    pub source: Source,
    /// `kind namespace/name` when known.
    pub object: Option<String>,
    pub message: String,
}

impl LoadProblem {
    /// The namespace of the object the problem is about, when known (`kind ns/name`).
    pub fn namespace(&self) -> Option<&str> {
        let (_, key) = self.object.as_deref()?.split_once(' ')?;
        key.split_once('/').map(|(namespace, _)| namespace)
    }
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{}: {object}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// Everything found under a directory.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub connectors: Vec<Loaded<ExpensifyConnector>>,
    pub accesses: Vec<Loaded<PolicyAccess>>,
    pub requests: Vec<Loaded<AccessRequest>>,
    /// Read so that a broken one is reported, and never counted: in file mode the merge
    /// is the approval.
    pub decisions: Vec<Loaded<AccessDecision>>,
    pub problems: Vec<LoadProblem>,
    /// Files that are not manifests and documents of other kinds, one note each.
    pub skipped: Vec<String>,
}

impl Manifests {
    /// Whether every manifest was understood. When not, nothing is inferred from absence:
    /// no object is taken for deleted and no one for "asked for by nobody".
    pub fn complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why a directory could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadManifestsError {
    #[error("cannot read manifest directory {path}: {source}")]
    ReadDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Nothing can be synced, and an empty or wrong directory must not read as "in sync".
    #[error(
        "no ExpensifyConnector in {path}: found {found}; file mode needs the connector's manifest in the same directory"
    )]
    NoConnector { path: String, found: String },
}
