//! What Expensify showed, indexed for the planner, and who is protected.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::super::model::{ConnectorObject, Observed};
use crate::email;
use crate::expensify::Role;

/// One person on a roster.
#[derive(Debug, Clone)]
pub(super) struct RosterView {
    pub role: Option<Role>,
    pub raw_role: String,
    pub submits_to: Option<String>,
    pub employee_id: Option<String>,
}

/// A policy whose roster was read.
#[derive(Debug, Clone)]
pub(super) struct PolicyView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub roster: BTreeMap<String, RosterView>,
}

/// The rosters read, the policies visible, and the connector's protected people.
pub(super) struct World<'a> {
    pub observed: &'a Observed,
    pub policies: BTreeMap<String, PolicyView>,
    /// Policies not to act on, each with why: Expensify named no owner for it, or its
    /// roster came back without that owner (see [`World::new`]).
    pub untrusted: BTreeMap<String, String>,
    protected: BTreeSet<String>,
    /// The ids of every policy the credentials see, and the ids under each name (in
    /// Expensify's order): looked up once per object, so hashed rather than scanned.
    visible: HashSet<&'a str>,
    named: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> World<'a> {
    pub fn new(observed: &'a Observed, connector: &ConnectorObject) -> Self {
        let mut protected: BTreeSet<String> = connector
            .spec
            .protected_emails
            .iter()
            .map(|e| email::normalize(e))
            .collect();
        protected.insert(email::normalize(&connector.spec.admin_email));
        let mut policies = BTreeMap::new();
        let mut untrusted = BTreeMap::new();
        for p in &observed.policies {
            let Some(roster) = observed.rosters.get(&p.id) else {
                continue;
            };
            let view = PolicyView {
                id: p.id.clone(),
                name: p.name.clone(),
                owner: email::normalize(&p.owner),
                roster: roster
                    .iter()
                    .map(|e| (email::normalize(&e.email), roster_view(e)))
                    .collect(),
            };
            // The owner is never changed, so a policy whose owner is not known cannot be
            // worked on safely. And Expensify always lists the owner on the roster, as
            // admin: a roster without them (empty, cut short, answered for another call)
            // is not the whole roster; read as "everyone else left", it would make the
            // operator forget what it gave, and those people would keep access for good.
            if !email::is_valid(&view.owner) {
                untrusted.insert(
                    p.id.clone(),
                    format!("Expensify's policy list names no owner for policy {} (the owner is never changed, so a policy whose owner is unknown is not worked on)", p.id),
                );
                continue;
            }
            if !view.roster.contains_key(&view.owner) {
                untrusted.insert(
                    p.id.clone(),
                    format!("Expensify's roster of policy {} does not list its owner {} (always listed, as admin), so it is not the whole roster", p.id, view.owner),
                );
                continue;
            }
            policies.insert(p.id.clone(), view);
        }
        let visible = observed.policies.iter().map(|p| p.id.as_str()).collect();
        let mut named: HashMap<&str, Vec<&str>> = HashMap::new();
        for p in &observed.policies {
            named
                .entry(p.name.as_str())
                .or_default()
                .push(p.id.as_str());
        }
        World {
            observed,
            policies,
            untrusted,
            protected,
            visible,
            named,
        }
    }

    /// The policy owner, the connector's `adminEmail` and `protectedEmails`: never changed.
    pub fn is_protected(&self, policy: &PolicyView, email: &str) -> bool {
        email == policy.owner || self.protected.contains(email)
    }

    /// Whether the credentials can see the policy at all.
    pub fn is_visible(&self, policy_id: &str) -> bool {
        self.visible.contains(policy_id)
    }

    /// The ids of the visible policies with this exact name, in Expensify's order.
    pub fn ids_named(&self, name: &str) -> &[&'a str] {
        self.named.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn visible_count(&self) -> usize {
        self.observed.policies.len()
    }
}

fn roster_view(entry: &crate::expensify::RosterEntry) -> RosterView {
    RosterView {
        role: entry.known_role(),
        raw_role: entry.role.clone(),
        submits_to: entry.submits_to.as_deref().map(email::normalize),
        employee_id: entry.employee_id.clone().filter(|id| !id.trim().is_empty()),
    }
}
