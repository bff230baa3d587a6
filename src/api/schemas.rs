//! Schemas several kinds share, written by hand where the Rust type says less than the
//! field does.

/// A role: `user`, `auditor` or `admin`.
pub(super) fn role(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["user", "auditor", "admin"]})
}

/// An RFC 3339 time.
pub(super) fn date_time(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}
