//! Schemas shared by several kinds (in their own file so the kinds need not import each
//! other for them).

/// A policy role, as every kind that names one accepts it.
pub(super) fn role_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["user", "auditor", "admin"]})
}
