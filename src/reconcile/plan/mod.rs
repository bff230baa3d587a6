//! The planner: desired (objects) + the ledger (what the operator gave) + observed
//! (Expensify) + clock -> changes and per-object findings. Pure: no I/O, no clock of its
//! own, the same answer for any input order. A pipeline of small named phases:
//!
//! 1. [`resolve`]: each object's policy, the people it asks for now, its standing, and
//!    [`tenancy`]: what its namespace may touch (policies, roles, governed policies);
//! 2. [`claims`]: who asks for whom, and the conflicts that freeze an object;
//! 3. [`ledger`]: entries checked against the rosters, then kept, handed off, dropped or
//!    released;
//! 4. [`grants`]: grants, role and attribute changes, each with its ledger entry;
//! 5. [`removals`]: releases taken back and Authoritative extras, held while input is
//!    broken;
//! 6. [`guard`]: the mass-removal limit;
//! 7. [`drift`] and the findings per object.

mod asks;
mod claims;
mod drift;
mod grants;
mod guard;
mod holds;
mod ledger;
pub mod offline;
mod removals;
mod resolve;
mod tenancy;
mod types;
mod world;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use types::{
    Block, Change, ChangeKind, ObjectPlan, Plan, PlanInput, Scope, count, rank, summarize,
};

use super::model::ObjectKey;
use crate::api::PlanSummary;
use claims::Claims;
use holds::{Holds, Stranded};
use ledger::Ledger;
use resolve::Subject;
use types::Planned;
use world::World;

/// Plans one sync of one connector.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let world = World::new(input.observed, input.connector);
    let mut subjects = resolve::subjects(&input, &world);
    tenancy::refuse_ungranted(
        input.connector,
        &input.observed.policies,
        input.now,
        &mut subjects,
    );
    let foreign = claims::block_foreign_policies(&input, &mut subjects);
    claims::block_second_authoritative(&mut subjects);
    tenancy::close_governed_policies(input.connector, &mut subjects);
    let claims = Claims::collect(&subjects);
    let contested = claims::role_conflicts(&claims, &mut subjects);
    let stranded = Stranded::collect(&input);
    let holds = Holds::collect(&input, &subjects, &stranded);

    let (mut ledger, released) = ledger::settle(&mut subjects, &claims, &foreign, &world, &holds);
    let mut planned = grants::plan_writes(
        (&claims, &contested),
        (&ledger, &stranded),
        &world,
        &mut subjects,
    );
    ledger.complete_hand_offs(&planned);
    removals::hold_removals(&holds, &mut planned, &mut subjects);
    planned.extend(removals::releases(
        (released, &claims),
        &mut ledger,
        &world,
        &mut subjects,
    ));
    planned.extend(removals::authoritative_extras(
        &claims,
        &ledger,
        &world,
        &holds,
        &mut subjects,
    ));
    removals::report_held(&mut subjects);
    let connector_used = guard::apply(input.connector, &mut planned, &mut subjects);
    for subject in &mut subjects {
        drift::report(subject, &claims, &ledger, &world);
    }
    let stamp = Stamp {
        connector: input.connector.key.to_string(),
        foreign: &foreign,
    };
    finish(subjects, ledger, planned, connector_used, &stamp)
}

/// Marks the entries this connector keeps as its own, so "one policy, one connector"
/// counts the connector that wrote an entry, not whichever one its holder names now.
struct Stamp<'a> {
    connector: String,
    /// Policies another connector governs: entries there are left as they are.
    foreign: &'a BTreeSet<String>,
}

impl Stamp<'_> {
    fn apply(&self, entry: &mut crate::api::ManagedMember) {
        if !self.foreign.contains(&entry.policy_id) {
            entry.connector = Some(self.connector.clone());
        }
    }
}

/// Hands every object its ledger entries, its new entries and its summary. Objects are
/// found by position (a hash of the key, once per entry or change), not by searching a
/// tree of keys a million times.
fn finish(
    subjects: Vec<Subject<'_>>,
    ledger: Ledger,
    planned: Vec<Planned>,
    connector_used: Option<String>,
    stamp: &Stamp<'_>,
) -> Plan {
    let keys: Vec<&ObjectKey> = subjects.iter().map(Subject::key).collect();
    let position: HashMap<&ObjectKey, usize> =
        keys.iter().enumerate().map(|(i, key)| (*key, i)).collect();
    let mut plans: Vec<ObjectPlan> = subjects.into_iter().map(|s| s.plan).collect();
    for mut held in ledger.entries.into_values() {
        if let Some(&i) = position.get(&held.holder) {
            stamp.apply(&mut held.entry);
            plans[i].ledger.push(held.entry);
        }
    }
    // Sorted through positions, by borrowed keys: a stable sort of the writes themselves
    // (half a kilobyte each) would allocate half their size again as scratch.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&planned[a].change, &planned[b].change);
        (a.policy_id.as_str(), a.email.as_str(), a.kind).cmp(&(
            b.policy_id.as_str(),
            b.email.as_str(),
            b.kind,
        ))
    });
    let mut slots: Vec<Option<Planned>> = planned.into_iter().map(Some).collect();
    let mut changes = Vec::with_capacity(slots.len());
    let mut summaries = vec![PlanSummary::default(); plans.len()];
    for Planned { change, entry } in order.into_iter().filter_map(|i| slots[i].take()) {
        if let Some((holder, mut entry)) = entry
            && let Some(&i) = position.get(&holder)
        {
            stamp.apply(&mut entry);
            plans[i].new_entries.push(entry);
        }
        if let Some(&i) = position.get(&change.requested_by) {
            count(&mut summaries[i], change.kind);
        }
        changes.push(change);
    }
    let mut objects = BTreeMap::new();
    for ((key, mut object), summary) in keys.into_iter().zip(plans).zip(summaries) {
        object.planned = summary;
        object.blocks.sort();
        object.blocks.dedup();
        object.held.sort();
        object.held.dedup();
        objects.insert(key.clone(), object);
    }
    Plan {
        changes,
        objects,
        connector_mass_revocation_used: connector_used,
    }
}

#[cfg(test)]
mod tests;
