//! Which removals wait while some input is broken. A manifest that cannot be read at all
//! may ask for anyone: every removal on the connector waits. Otherwise each broken object
//! (invalid, or its policy cannot be resolved) holds only what it could be asking for:
//! everything on its policy when that is known, else the people its readable `members`
//! list, and always the entries its ledger holds. One tenant's broken object never
//! freezes another team's expiries. Entries this connector wrote that an object naming a
//! connector that does not take it still holds ([`Stranded`]) are held too.

use std::collections::{BTreeMap, BTreeSet};

use super::super::model::{AccessObject, ObjectKey};
use super::super::validate::connector_allows;
use super::asks;
use super::resolve::{Standing, Subject};
use super::types::PlanInput;
use crate::api::ManagedMember;

/// The removals held on one connector, and which broken object holds each.
#[derive(Debug, Default)]
pub(super) struct Holds {
    /// Some manifest could not be read: everything waits.
    everything: bool,
    /// Policy -> the broken objects on it.
    policies: BTreeMap<String, BTreeSet<ObjectKey>>,
    /// Email -> the broken objects that list the person (policy unknown), each with the
    /// policies its namespace may touch (`None`: any).
    people: BTreeMap<String, BTreeMap<ObjectKey, Option<BTreeSet<String>>>>,
    /// (policy, email) -> the broken objects whose ledger holds the entry.
    entries: BTreeMap<(String, String), BTreeSet<ObjectKey>>,
}

/// Entries this connector wrote that are held by objects no connector syncs any more
/// (they name a connector that does not exist or refuses their namespace): (policy,
/// email) -> the entry and its holder. Nobody settles them until the object names a
/// connector again, so they hold their removals, and an object that now asks for the
/// person takes over their origin (`added` / `previousRole`) instead of recording the
/// operator's own change as where the person started.
#[derive(Debug, Default)]
pub(super) struct Stranded {
    pub entries: BTreeMap<(String, String), (ObjectKey, ManagedMember)>,
    /// Entries without the connector that wrote them (saved by a version before entries
    /// were stamped), held by such objects: this connector may have written them, so
    /// their removals wait too; they lend no origin, since whose change they record is
    /// not known.
    pub unstamped: BTreeMap<(String, String), ObjectKey>,
}

impl Stranded {
    pub fn collect(input: &PlanInput<'_>) -> Stranded {
        let own = input.connector.key.to_string();
        let covered = |access: &AccessObject| {
            let named = access.connector_key();
            input
                .connectors
                .iter()
                .chain(std::iter::once(input.connector))
                .any(|c| c.key == named && connector_allows(c, &access.key.namespace))
        };
        let mut stranded = Stranded::default();
        for access in input.accesses.iter().filter(|a| !covered(a)) {
            for entry in access.ledger_entries() {
                let place = (entry.policy_id.clone(), entry.email.clone());
                match entry.connector.as_deref() {
                    Some(writer) if writer == own => {
                        stranded
                            .entries
                            .entry(place)
                            .or_insert_with(|| (access.key.clone(), entry));
                    }
                    Some(_) => {}
                    None => {
                        stranded
                            .unstamped
                            .entry(place)
                            .or_insert_with(|| access.key.clone());
                    }
                }
            }
        }
        stranded
    }

    pub fn get(&self, policy: &str, email: &str) -> Option<&ManagedMember> {
        self.entries
            .get(&(policy.to_string(), email.to_string()))
            .map(|(_, entry)| entry)
    }
}

impl Holds {
    pub fn collect(input: &PlanInput<'_>, subjects: &[Subject<'_>], stranded: &Stranded) -> Holds {
        let mut holds = Holds {
            everything: !input.inventory_complete,
            ..Holds::default()
        };
        let held = stranded
            .entries
            .iter()
            .map(|(place, (holder, _))| (place, holder))
            .chain(stranded.unstamped.iter());
        for (place, holder) in held {
            holds
                .entries
                .entry(place.clone())
                .or_default()
                .insert(holder.clone());
        }
        let closed = Closed::of(input, subjects);
        for subject in subjects
            .iter()
            .filter(|s| matches!(s.standing, Standing::Invalid | Standing::Unresolvable))
        {
            holds.add(subject, input, &closed);
        }
        holds
    }

    fn add(&mut self, subject: &Subject<'_>, input: &PlanInput<'_>, closed: &Closed) {
        let key = subject.key();
        for entry in &subject.entries {
            self.entries
                .entry((entry.policy_id.clone(), entry.email.clone()))
                .or_default()
                .insert(key.clone());
        }
        if let Some(policy) = &subject.plan.policy_id {
            // A policy closed to its namespace is one it cannot be asking for anyone on.
            if closed.to(policy, &key.namespace) {
                return;
            }
            self.policies
                .entry(policy.clone())
                .or_default()
                .insert(key.clone());
            return;
        }
        let touchable = touchable_policies(subject.object, input, closed);
        for email in asks::people_possibly_asked(subject.object, input.now) {
            self.people
                .entry(email)
                .or_default()
                .insert(key.clone(), touchable.clone());
        }
    }

    /// Whether anything is held at all.
    pub fn any(&self) -> bool {
        self.everything
            || !self.policies.is_empty()
            || !self.people.is_empty()
            || !self.entries.is_empty()
    }

    /// Why a removal of this person on this policy waits, if it does.
    pub fn why(&self, policy: &str, email: &str) -> Option<String> {
        if self.everything {
            return Some("some manifests could not be read".to_string());
        }
        let mut holders: BTreeSet<&ObjectKey> = BTreeSet::new();
        holders.extend(self.policies.get(policy).into_iter().flatten());
        holders.extend(
            self.people
                .get(email)
                .into_iter()
                .flatten()
                .filter(|(_, touchable)| touchable.as_ref().is_none_or(|t| t.contains(policy)))
                .map(|(holder, _)| holder),
        );
        holders.extend(
            self.entries
                .get(&(policy.to_string(), email.to_string()))
                .into_iter()
                .flatten(),
        );
        if holders.is_empty() {
            return None;
        }
        let names: Vec<String> = holders.iter().map(ToString::to_string).collect();
        Some(format!(
            "PolicyAccess {} is invalid or names a connector that does not take it",
            super::guard::name_people(&names)
        ))
    }
}

/// The policies the object's namespace may touch through this connector (`None`: any), so
/// a tenant's broken object never holds what it could not be asking for.
fn touchable_policies(
    object: &AccessObject,
    input: &PlanInput<'_>,
    closed: &Closed,
) -> Option<BTreeSet<String>> {
    use super::super::tenancy::{Reach, policy_refusal, reach};
    let namespace = &object.key.namespace;
    let visible = &input.observed.policies;
    let limited = match reach(input.connector, namespace) {
        None => return Some(BTreeSet::new()),
        Some(Reach::Everything) if !closed.any_to(namespace) => return None,
        Some(Reach::Everything) => false,
        Some(Reach::Limited { .. }) => true,
    };
    Some(
        visible
            .iter()
            .filter(|p| !closed.to(&p.id, namespace))
            .filter(|p| {
                !limited || policy_refusal(input.connector, object, &p.id, visible).is_none()
            })
            .map(|p| p.id.clone())
            .collect(),
    )
}

/// The policies Authoritative writers govern, each with the namespaces it is open to: its
/// own, the connector's and those its `spec.allowFrom` lists (see `tenancy`).
struct Closed {
    connector_namespace: String,
    governed: BTreeMap<String, BTreeSet<String>>,
}

impl Closed {
    fn of(input: &PlanInput<'_>, subjects: &[Subject<'_>]) -> Closed {
        let governed = super::resolve::governors(subjects)
            .map(|(policy, s)| {
                let mut open: BTreeSet<String> = s.object.spec.allow_from.iter().cloned().collect();
                open.insert(s.key().namespace.clone());
                (policy.to_string(), open)
            })
            .collect();
        Closed {
            connector_namespace: input.connector.key.namespace.clone(),
            governed,
        }
    }

    /// Whether `policy` is closed to objects of `namespace`.
    fn to(&self, policy: &str, namespace: &str) -> bool {
        namespace != self.connector_namespace
            && self
                .governed
                .get(policy)
                .is_some_and(|open| !open.contains(namespace))
    }

    fn any_to(&self, namespace: &str) -> bool {
        self.governed
            .keys()
            .any(|policy| self.to(policy, namespace))
    }
}
