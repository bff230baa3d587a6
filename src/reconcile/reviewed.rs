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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expensify::{PolicySummary, Role, RosterEntry};
    use crate::reconcile::plan::ChangeKind;

    fn grant(email: &str) -> Change {
        Change {
            kind: ChangeKind::Grant,
            policy_id: "P1".into(),
            policy_name: "Finance".into(),
            email: email.into(),
            role: Some(Role::User),
            old_role: None,
            manager_email: "cfo@acme.example".into(),
            employee_id: None,
            expect_submits_to: None,
            old_submits_to: None,
            old_employee_id: None,
            requested_by: ObjectKey::new("finance", "team"),
            reason: String::new(),
        }
    }

    fn observed(roster: &[&str]) -> Observed {
        let entries = roster
            .iter()
            .map(|email| RosterEntry {
                email: email.to_string(),
                role: "user".into(),
                submits_to: None,
                forwards_to: None,
                employee_id: None,
            })
            .collect();
        Observed {
            policies: vec![PolicySummary {
                id: "P1".into(),
                name: "Finance".into(),
                plan: "corporate".into(),
                owner: "cfo@acme.example".into(),
                output_currency: "USD".into(),
                caller_role: "admin".into(),
            }],
            rosters: BTreeMap::from([("P1".to_string(), entries)]),
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            changes,
            ..Plan::default()
        }
    }

    #[test]
    fn the_reviewed_part_names_the_connector_its_changes_and_the_rosters_they_touch() {
        let world = observed(&["cfo@acme.example"]);
        let reviewed = ReviewedConnector::of(
            &ObjectKey::new("finance", "acme"),
            &plan(vec![grant("a@acme.example")]),
            &world,
        );
        assert_eq!(reviewed.connector, "finance/acme");
        assert_eq!(
            reviewed.changes[0].change,
            "granted a@acme.example as user on Finance"
        );
        assert_eq!(reviewed.changes[0].requested_by, "finance/team");
        assert_eq!(reviewed.changes[0].fingerprint.len(), 64);
        assert_eq!(
            reviewed.rosters,
            BTreeMap::from([("P1".to_string(), digest(&world.rosters.get("P1")))])
        );
        assert!(
            reviewed
                .moved(&plan(vec![grant("a@acme.example")]), &world)
                .is_empty()
        );
    }

    #[test]
    fn every_attribute_a_change_sets_is_in_its_fingerprint() {
        let base = fingerprint(&grant("a@acme.example"));
        let variants: Vec<Change> = vec![
            Change {
                kind: ChangeKind::RoleChange,
                ..grant("a@acme.example")
            },
            Change {
                policy_id: "P2".into(),
                ..grant("a@acme.example")
            },
            grant("b@acme.example"),
            Change {
                role: Some(Role::Admin),
                ..grant("a@acme.example")
            },
            Change {
                old_role: Some("auditor".into()),
                ..grant("a@acme.example")
            },
            Change {
                manager_email: "ceo@acme.example".into(),
                ..grant("a@acme.example")
            },
            Change {
                employee_id: Some("E-1".into()),
                ..grant("a@acme.example")
            },
            Change {
                requested_by: ObjectKey::new("finance", "other"),
                ..grant("a@acme.example")
            },
        ];
        for variant in &variants {
            assert_ne!(fingerprint(variant), base, "{variant:?}");
        }
        let wording_only = Change {
            reason: "another reason".into(),
            policy_name: "Renamed".into(),
            ..grant("a@acme.example")
        };
        assert_eq!(fingerprint(&wording_only), base);
    }

    #[test]
    fn what_moved_names_changes_added_dropped_and_rosters_changed() {
        let world = observed(&["cfo@acme.example"]);
        let reviewed = ReviewedConnector::of(
            &ObjectKey::new("finance", "acme"),
            &plan(vec![grant("a@acme.example")]),
            &world,
        );
        let mut admin = grant("a@acme.example");
        admin.role = Some(Role::Admin);
        let moved = reviewed.moved(
            &plan(vec![admin]),
            &observed(&["cfo@acme.example", "x@acme.example"]),
        );
        assert_eq!(
            moved,
            [
                "not in the reviewed plan: granted a@acme.example as admin on Finance (asked by finance/team)",
                "no longer planned: granted a@acme.example as user on Finance (asked by finance/team)",
                "the roster of Finance (P1) changed in Expensify since the plan",
            ]
        );
        // Each roster by its own policy's name, among several.
        let mut two = observed(&["cfo@acme.example"]);
        two.policies.push(PolicySummary {
            id: "P2".into(),
            name: "Travel".into(),
            ..two.policies[0].clone()
        });
        two.rosters.insert("P2".into(), Vec::new());
        let on_travel = Change {
            policy_id: "P2".into(),
            policy_name: "Travel".into(),
            ..grant("t@acme.example")
        };
        let both = plan(vec![grant("a@acme.example"), on_travel]);
        let reviewed_two = ReviewedConnector::of(&ObjectKey::new("finance", "acme"), &both, &two);
        two.rosters.get_mut("P2").unwrap().clear();
        two.rosters.get_mut("P1").unwrap().clear();
        assert_eq!(
            reviewed_two.moved(&both, &two),
            ["the roster of Finance (P1) changed in Expensify since the plan"]
        );
        // A roster the plan no longer touches is named by Expensify's name for it.
        let moved = reviewed.moved(&plan(vec![]), &world);
        assert_eq!(
            moved,
            [
                "no longer planned: granted a@acme.example as user on Finance (asked by finance/team)",
                "the roster of Finance (P1) changed in Expensify since the plan",
            ]
        );
    }
}
