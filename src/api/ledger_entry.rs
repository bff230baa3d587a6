//! One ledger entry: what the operator gave one person on one policy, so that it can take
//! exactly that back. Stored in `status.managedMembers` of the object that claims it.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// What the operator owns of one person on one policy, and through which connector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedMember {
    #[serde(rename = "policyID")]
    pub policy_id: String,
    /// Lower-case email.
    pub email: String,
    /// The person was not on the policy: the operator added them, and revokes them on release.
    #[serde(default)]
    pub added: bool,
    /// The role they had before the operator first changed it; restored on release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_role: Option<String>,
    /// The role the operator set. Absent only for entries converted from the old flat list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Written (or about to be) but not yet seen in a read of the roster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// While `pending` replaces an earlier confirmed `role`: that role, so a write that did
    /// not land falls back to it instead of losing the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_role: Option<String>,
    /// The connector (`namespace/name`) whose sync wrote or last settled the entry. Absent
    /// in entries from older versions: the holder's connector then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

impl ManagedMember {
    /// The `(policyID, email)` this entry is about.
    pub fn key(&self) -> (&str, &str) {
        (&self.policy_id, &self.email)
    }

    /// A settled entry for someone the operator added as `user`: the tests' usual entry.
    #[cfg(test)]
    pub fn added_user(policy_id: &str, email: &str) -> ManagedMember {
        ManagedMember {
            policy_id: policy_id.into(),
            email: email.into(),
            added: true,
            previous_role: None,
            role: Some("user".into()),
            pending: false,
            prior_role: None,
            connector: None,
        }
    }
}

/// An entry as stored: the current shape, or an email from the old flat list.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredEntry {
    Entry(ManagedMember),
    LegacyEmail(String),
}

/// Reads `managedMembers` in either shape. Old entries (plain emails) carry no policy: the
/// caller fills it in from `status.policyID` (see [`adopt_legacy_entries`]).
pub(super) fn entries_or_legacy_emails<'de, D>(d: D) -> Result<Vec<ManagedMember>, D::Error>
where
    D: Deserializer<'de>,
{
    let stored: Option<Vec<StoredEntry>> = Option::deserialize(d)?;
    Ok(stored
        .unwrap_or_default()
        .into_iter()
        .map(|entry| match entry {
            StoredEntry::Entry(entry) => entry,
            StoredEntry::LegacyEmail(email) => ManagedMember {
                policy_id: String::new(),
                email: crate::email::normalize(&email),
                // The old list held only people the object granted.
                added: true,
                previous_role: None,
                role: None,
                pending: false,
                prior_role: None,
                connector: None,
            },
        })
        .collect())
}

/// Entries converted from the old flat list have no policy yet: they were made on the
/// policy the status names. Entries with no policy to adopt are dropped (nothing to revoke
/// them from can be known).
pub fn adopt_legacy_entries(entries: &mut Vec<ManagedMember>, status_policy_id: Option<&str>) {
    for entry in entries.iter_mut().filter(|e| e.policy_id.is_empty()) {
        if let Some(id) = status_policy_id {
            entry.policy_id = id.to_string();
        }
    }
    entries.retain(|e| !e.policy_id.is_empty());
}

pub(super) fn entries_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = generator.subschema_for::<ManagedMember>();
    schemars::json_schema!({"type": "array", "items": item})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PolicyAccessStatus;

    #[test]
    fn the_old_flat_list_is_read_as_entries_the_object_added() {
        let status: PolicyAccessStatus = serde_json::from_value(serde_json::json!({
            "policyID": "P1",
            "managedMembers": ["Alice@Acme.example", {"policyID": "P2", "email": "bob@acme.example", "previousRole": "user", "role": "admin"}]
        }))
        .unwrap();
        let mut entries = status.managed_members.clone();
        adopt_legacy_entries(&mut entries, status.policy_id.as_deref());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key(), ("P1", "alice@acme.example"));
        assert!(entries[0].added && entries[0].role.is_none());
        assert_eq!(entries[1].key(), ("P2", "bob@acme.example"));
        assert_eq!(entries[1].previous_role.as_deref(), Some("user"));
    }

    #[test]
    fn legacy_entries_without_a_policy_are_dropped() {
        let status: PolicyAccessStatus =
            serde_json::from_value(serde_json::json!({"managedMembers": ["a@acme.example"]}))
                .unwrap();
        let mut entries = status.managed_members;
        adopt_legacy_entries(&mut entries, None);
        assert!(entries.is_empty());
    }

    #[test]
    fn entries_round_trip_without_empty_fields() {
        let entry = ManagedMember {
            policy_id: "P1".into(),
            email: "a@acme.example".into(),
            added: true,
            previous_role: None,
            role: Some("user".into()),
            pending: true,
            prior_role: None,
            connector: None,
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"policyID": "P1", "email": "a@acme.example", "added": true, "role": "user", "pending": true})
        );
        assert_eq!(
            serde_json::from_value::<ManagedMember>(json).unwrap(),
            entry
        );
    }
}
