//! The reader's fixed budgets, so memory stays bounded whatever the input, and how a
//! refusal by one of them is said.

/// Largest manifest file read (an export of thousands of policies is a few MB).
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most documents read from one file.
pub const MAX_DOCUMENTS_PER_FILE: usize = 100_000;
/// Most YAML nodes in one document (a PolicyAccess with 10,000 members has ~50,000).
pub const MAX_NODES_PER_DOCUMENT: usize = 500_000;
/// Deepest nesting in one document; Kubernetes objects are a handful of levels deep.
pub const MAX_DEPTH: usize = 64;
/// Most YAML events an alias may replay in one document: anchors for a shared member list
/// are fine, an alias bomb stops early.
pub const MAX_ALIAS_EVENTS: usize = 100_000;

/// Longest problem message kept, in characters. The parser and the types quote the
/// value at fault, and a manifest may hold a megabyte on one line: the middle is cut,
/// keeping the field and reason before it and what was expected after it.
pub const MAX_PROBLEM_CHARS: usize = 1000;

/// `message` within [`MAX_PROBLEM_CHARS`]: its start and end, the middle said to be cut.
pub(super) fn bounded(message: String) -> String {
    let count = message.chars().count();
    if count <= MAX_PROBLEM_CHARS {
        return message;
    }
    let tail = MAX_PROBLEM_CHARS / 4;
    let head = MAX_PROBLEM_CHARS - tail;
    let start: String = message.chars().take(head).collect();
    let end: String = message.chars().skip(count - tail).collect();
    format!("{start}… ({} characters cut) …{end}", count - head - tail)
}

/// The parser's budgets. They apply per document (the reader streams), except the byte
/// cap, which covers the whole file.
pub(super) fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(usize::try_from(MAX_FILE_BYTES).unwrap_or(usize::MAX)),
            max_nodes: MAX_NODES_PER_DOCUMENT,
            max_events: 4 * MAX_NODES_PER_DOCUMENT,
            max_depth: MAX_DEPTH,
            max_recorded_anchor_events: MAX_ALIAS_EVENTS,
            max_recorded_anchor_bytes: 8 * 1024 * 1024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
        },
        emit_comments: false,
    }
}

/// A limit is not a syntax error: say which one, so the reader knows what to change.
pub(super) fn yaml_error(error: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error;
    let mut cause = error;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = cause {
        cause = error;
    }
    match cause {
        Error::Budget { .. } => format!(
            "refused by the reader's limits (at most {MAX_NODES_PER_DOCUMENT} nodes per document, nesting {MAX_DEPTH} deep, bounded aliases): {error}"
        ),
        _ => format!("not valid YAML: {error}"),
    }
}
