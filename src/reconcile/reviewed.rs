//! A reviewed plan's part for one connector (`plan --out`), and what moved since: the
//! changes planned now against those reviewed, and the rosters they touch. `apply --plan`
//! writes only when nothing moved, so the approved diff is the executed diff.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::model::{ObjectKey, Observed, digest};
use super::plan::{Change, Plan};

/// One reviewed change: its words for people, and a fingerprint of everything it sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewedChange {
    pub change: String,
    pub requested_by: String,
    pub fingerprint: String,
}

impl ReviewedChange {
    fn of(change: &Change) -> Self {
        Self {
            change: change.describe(),
            requested_by: change.requested_by.to_string(),
            fingerprint: fingerprint(change),
        }
    }
}

/// What a plan showed for one connector when it was reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewedConnector {
    /// `namespace/name`.
    pub connector: String,
    pub changes: Vec<ReviewedChange>,
    /// A digest of each roster the changes touch, by policy id.
    pub rosters: BTreeMap<String, String>,
}

/// Everything a change sets, and who asks: two changes with the same fingerprint write
/// the same thing.
fn fingerprint(change: &Change) -> String {
    digest(&(
        change.kind.verb(),
        &change.policy_id,
        &change.email,
        change.role.map(|r| r.to_string()),
        &change.old_role,
        &change.manager_email,
        &change.employee_id,
        change.requested_by.to_string(),
    ))
}

fn roster_digests(plan: &Plan, observed: &Observed) -> BTreeMap<String, String> {
    let touched: BTreeSet<&String> = plan.changes.iter().map(|c| &c.policy_id).collect();
    touched
        .into_iter()
        .map(|id| (id.clone(), digest(&observed.rosters.get(id))))
        .collect()
}

impl ReviewedConnector {
    /// The reviewable part of a connector's plan.
    pub fn of(connector: &ObjectKey, plan: &Plan, observed: &Observed) -> Self {
        Self {
            connector: connector.to_string(),
            changes: plan.changes.iter().map(ReviewedChange::of).collect(),
            rosters: roster_digests(plan, observed),
        }
    }

    /// What differs between this reviewed part and the plan now, in words; empty when
    /// the plan is exactly what was reviewed.
    pub fn moved(&self, plan: &Plan, observed: &Observed) -> Vec<String> {
        let now = Self::of(&ObjectKey::new("", ""), plan, observed);
        let reviewed: BTreeSet<&str> = self
            .changes
            .iter()
            .map(|c| c.fingerprint.as_str())
            .collect();
        let planned: BTreeSet<&str> = now.changes.iter().map(|c| c.fingerprint.as_str()).collect();
        let mut moved = Vec::new();
        for change in now
            .changes
            .iter()
            .filter(|c| !reviewed.contains(c.fingerprint.as_str()))
        {
            moved.push(format!(
                "not in the reviewed plan: {} (asked by {})",
                change.change, change.requested_by
            ));
        }
        for change in self
            .changes
            .iter()
            .filter(|c| !planned.contains(c.fingerprint.as_str()))
        {
            moved.push(format!(
                "no longer planned: {} (asked by {})",
                change.change, change.requested_by
            ));
        }
        for (policy, was) in &self.rosters {
            if now.rosters.get(policy) != Some(was) {
                let name = policy_name(plan, observed, policy);
                moved.push(format!(
                    "the roster of {name} changed in Expensify since the plan"
                ));
            }
        }
        moved
    }
}

fn policy_name(plan: &Plan, observed: &Observed, id: &str) -> String {
    let named = plan
        .changes
        .iter()
        .find(|c| c.policy_id == id)
        .map(|c| c.policy_name.clone())
        .or_else(|| {
            observed
                .policies
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.name.clone())
        });
    match named {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}
