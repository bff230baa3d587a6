//! Policies and their members as the simulator keeps them, and a roster as Expensify
//! answers it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::expensify::Role;

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) role: Role,
    pub(super) submits_to: String,
    pub(super) employee_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) plan: String,
    pub(super) owner: String,
    pub(super) output_currency: String,
    pub(super) members: BTreeMap<String, Member>,
}

pub(super) fn roster_json(policy: &Policy) -> Value {
    // Key order as in the recorded roster answer.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry<'a> {
        role: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        custom_field1: Option<&'a str>,
        #[serde(rename = "employeeID", skip_serializing_if = "Option::is_none")]
        employee_id: Option<&'a str>,
        email: &'a str,
        submits_to: &'a str,
    }
    let entries: Vec<Entry> = policy
        .members
        .iter()
        .map(|(email, m)| Entry {
            role: m.role.as_str(),
            custom_field1: m.employee_id.as_deref(),
            employee_id: m.employee_id.as_deref(),
            email,
            submits_to: &m.submits_to,
        })
        .collect();
    json!(entries)
}
