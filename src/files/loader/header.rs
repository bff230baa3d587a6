//! What a document says it is (kind, apiVersion, name, namespace), read and checked before
//! its type is known.

use serde_json::Value;

use crate::api::{API_VERSION, GROUP};
use crate::names;
use crate::reconcile::DEFAULT_NAMESPACE;
use crate::sanitize::shortened;

/// The kinds of [`GROUP`].
pub(super) const KINDS: [&str; 4] = [
    "ExpensifyConnector",
    "PolicyAccess",
    "AccessRequest",
    "AccessDecision",
];

/// What a document says it is, read before its type is known.
pub(super) struct Header {
    pub(super) kind: String,
    pub(super) api_version: String,
    pub(super) name: Option<Value>,
    pub(super) namespace: Option<Value>,
}

impl Header {
    pub(super) fn read(document: &Value) -> Self {
        let text = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            kind: text("/kind"),
            api_version: text("/apiVersion"),
            name: document.pointer("/metadata/name").cloned(),
            namespace: document.pointer("/metadata/namespace").cloned(),
        }
    }

    pub(super) fn name(&self) -> String {
        match &self.name {
            Some(Value::String(name)) => name.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => String::new(),
        }
    }

    pub(super) fn namespace(&self) -> String {
        self.namespace
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string()
    }

    /// Whether the document is for this operator at all: one of its kinds, or its group.
    pub(super) fn ours(&self) -> bool {
        KINDS.contains(&self.kind.as_str())
            || self.api_version.split_once('/').map(|(group, _)| group) == Some(GROUP)
    }

    /// `kind namespace/name`, each shortened as names are in name errors (a kind or a
    /// namespace of a megabyte is not a reason to print it).
    pub(super) fn object(&self) -> String {
        format!(
            "{} {}/{}",
            shortened(&self.kind),
            shortened(&self.namespace()),
            shortened(&self.name())
        )
    }

    /// Everything that can be said wrong before the document is typed.
    pub(super) fn check(&self) -> Result<(), String> {
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(format!(
                "kind {:?} does not exist in {GROUP}; its kinds are {}",
                self.kind,
                KINDS.join(", ")
            ));
        }
        if self.api_version != API_VERSION {
            return Err(format!(
                "apiVersion {:?} is not supported; use {API_VERSION}",
                self.api_version
            ));
        }
        let name = self.name();
        if name.is_empty() {
            return Err("metadata.name is missing".to_string());
        }
        if !self.name.as_ref().is_some_and(Value::is_string) {
            // YAML reads `y`, `no`, `1` and the like as booleans or numbers.
            return Err(format!("metadata.name {name} is not a string; quote it"));
        }
        names::check_subdomain(&name).map_err(|e| format!("metadata.name: {e}"))?;
        match &self.namespace {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(namespace)) => {
                names::check_label(namespace).map_err(|e| format!("metadata.namespace: {e}"))
            }
            Some(other) => Err(format!(
                "metadata.namespace {other} is not a string; quote it"
            )),
        }
    }
}
