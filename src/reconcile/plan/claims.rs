//! Phase 2: who asks for whom, and the conflicts that freeze an object: a policy another
//! connector governs, a second Authoritative object, two roles asked for one person.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use k8s_openapi::jiff::Timestamp;

use super::super::bounded::first_few;
use super::super::model::ObjectKey;
use super::super::validate::connector_allows;
use super::asks::Ask;
use super::resolve::Subject;
use super::types::{Block, PlanInput};
use crate::api::{AccessMode, AccessPhase};
use crate::expensify::Role;

/// One object asking for one person: the object's key and its ask, both shared, not
/// copied (a claim per membership).
#[derive(Debug, Clone)]
pub(super) struct Claim<'a> {
    pub key: &'a ObjectKey,
    pub wanted: Rc<Ask>,
    /// It writes for the person (else it only keeps them).
    pub writes: bool,
}

impl Claim<'_> {
    /// The synthetic holder of an access request: its role is "at least this role".
    pub fn is_request(&self) -> bool {
        self.key.request_name().is_some()
    }

    fn email(&self) -> &str {
        &self.wanted.email
    }
}

/// Precedence between the writers of one person: objects must agree on a role (else
/// `Conflict`, see [`role_conflicts`]); an active request raises that role to the highest
/// it asks and never lowers it, nor the role a person already has when only requests ask
/// for them (so a lower request writes nothing, and takes nothing at its end). `current`
/// is that role apart from the operator's own raises (see `Ledger::own_role`).
pub(super) fn settled_role(writers: &[&Claim<'_>], current: Option<Role>) -> Option<Role> {
    let highest = |requests: bool| {
        writers
            .iter()
            .filter(|c| c.is_request() == requests)
            .map(|c| c.wanted.role)
            .max()
    };
    match (highest(false), highest(true)) {
        (Some(listed), raised) => Some(raised.map_or(listed, |r| r.max(listed))),
        (None, Some(raised)) => Some(current.map_or(raised, |c| c.max(raised))),
        (None, None) => None,
    }
}

/// policy -> the claims on it, sorted by email and then by object key: one row per claim,
/// the email read from the shared ask (no key copied per person).
#[derive(Debug, Default)]
pub(super) struct Claims<'a> {
    by_policy: BTreeMap<String, Vec<Claim<'a>>>,
}

impl<'a> Claims<'a> {
    pub fn collect(subjects: &[Subject<'a>]) -> Claims<'a> {
        let mut by_policy: BTreeMap<String, Vec<Claim<'a>>> = BTreeMap::new();
        // Subjects come sorted by key, so a stable sort by email keeps each person's
        // claims in key order.
        for subject in subjects.iter().filter(|s| s.claims()) {
            let Some(policy) = &subject.policy else {
                continue;
            };
            let rows = by_policy.entry(policy.clone()).or_default();
            rows.extend(subject.wanted.iter().map(|wanted| Claim {
                key: subject.key(),
                wanted: Rc::clone(wanted),
                writes: subject.writes(),
            }));
        }
        for rows in by_policy.values_mut() {
            rows.sort_by(|a, b| a.email().cmp(b.email()));
        }
        Claims { by_policy }
    }

    pub fn of(&self, policy: &str, email: &str) -> &[Claim<'a>] {
        let Some(rows) = self.by_policy.get(policy) else {
            return &[];
        };
        let start = rows.partition_point(|c| c.email() < email);
        let len = rows[start..].partition_point(|c| c.email() == email);
        &rows[start..start + len]
    }

    pub fn is_claimed(&self, policy: &str, email: &str) -> bool {
        !self.of(policy, email).is_empty()
    }

    /// Every claimed person with the objects that write for them.
    pub fn writers(&self) -> impl Iterator<Item = (&str, &str, Vec<&Claim<'a>>)> {
        self.by_policy.iter().flat_map(|(policy, rows)| {
            rows.chunk_by(|a, b| a.email() == b.email())
                .filter_map(move |claims| {
                    let writers: Vec<&Claim<'a>> = claims.iter().filter(|c| c.writes).collect();
                    (!writers.is_empty()).then(|| (policy.as_str(), claims[0].email(), writers))
                })
        })
    }
}

/// The policies each connector already manages, and since when: evidence written by a
/// connector's own syncs (ledger entries, each counted for the connector that wrote it, or
/// a `Synced` status naming the policy), never a manifest alone, and only for connectors
/// that exist and allow the object's namespace. So a stray object (any namespace, any
/// connector name, valid or not) cannot make a connector look established. The age is the
/// oldest such object's.
fn established(input: &PlanInput<'_>) -> BTreeMap<(String, ObjectKey), Option<Timestamp>> {
    let counts = |connector: &ObjectKey, namespace: &str| {
        input
            .connectors
            .iter()
            .chain(std::iter::once(input.connector))
            .any(|c| &c.key == connector && connector_allows(c, namespace))
    };
    let mut ages: BTreeMap<(String, ObjectKey), Option<Timestamp>> = BTreeMap::new();
    for access in input.accesses {
        let Some(status) = &access.status else {
            continue;
        };
        let named = access.connector_key();
        let mut evidence: BTreeSet<(String, ObjectKey)> = access
            .ledger_entries()
            .into_iter()
            .map(|e| {
                let writer = e
                    .connector
                    .as_deref()
                    .and_then(ObjectKey::parse)
                    .unwrap_or_else(|| named.clone());
                (e.policy_id, writer)
            })
            .collect();
        if status.phase == AccessPhase::Synced
            && let Some(policy) = &status.policy_id
        {
            evidence.insert((policy.clone(), named.clone()));
        }
        for (policy, connector) in evidence {
            if policy.is_empty() || !counts(&connector, &access.key.namespace) {
                continue;
            }
            let age = ages.entry((policy, connector)).or_insert(access.created);
            *age = (*age).min(access.created);
        }
    }
    ages
}

/// One policy, one connector: when another connector already manages a policy and this
/// one does not (or started later), this connector's objects on it are blocked with
/// `Conflict` and write nothing there. Returns the policies another connector governs.
pub(super) fn block_foreign_policies(
    input: &PlanInput<'_>,
    subjects: &mut [Subject<'_>],
) -> BTreeSet<String> {
    let own = &input.connector.key;
    let ages = established(input);
    let governed_elsewhere = |policy: &str| {
        let first_other = ages
            .iter()
            .filter(|((p, connector), _)| p == policy && connector != own)
            .map(|((_, connector), age)| (*age, connector))
            .min()?;
        match ages.get(&(policy.to_string(), own.clone())) {
            Some(ours) if (*ours, own) < first_other => None,
            _ => Some(first_other.1.clone()),
        }
    };
    let mut foreign = BTreeSet::new();
    for policy in ages.keys().map(|(p, _)| p.clone()).collect::<BTreeSet<_>>() {
        if governed_elsewhere(&policy).is_some() {
            foreign.insert(policy);
        }
    }
    for subject in subjects.iter_mut() {
        let Some(policy) = subject.plan.policy_id.clone() else {
            continue;
        };
        if let Some(other) = governed_elsewhere(&policy) {
            subject.block(Block::Conflict(format!(
                "policy {policy} is already managed through connector {other}; one policy is managed through one connector"
            )));
        }
    }
    foreign
}

/// Two Authoritative objects on one policy: the older governs, the newer is blocked.
pub(super) fn block_second_authoritative(subjects: &mut [Subject<'_>]) {
    let mut order: Vec<usize> = (0..subjects.len())
        .filter(|&i| {
            subjects[i].writes() && subjects[i].object.spec.mode == AccessMode::Authoritative
        })
        .collect();
    order.sort_by(|&a, &b| {
        let key = |s: &Subject<'_>| (s.object.created, s.object.key.clone());
        key(&subjects[a]).cmp(&key(&subjects[b]))
    });
    let mut governing: BTreeMap<String, ObjectKey> = BTreeMap::new();
    for i in order {
        let Some(policy) = subjects[i].policy.clone() else {
            continue;
        };
        match governing.get(&policy) {
            Some(first) => {
                let message = format!(
                    "PolicyAccess {first} is already Authoritative for policy {policy}; only one Authoritative object may govern a policy"
                );
                subjects[i].block(Block::Conflict(message));
            }
            None => {
                governing.insert(policy, subjects[i].key().clone());
            }
        }
    }
}

/// Objects (not requests: see [`settled_role`]) asking different roles for one person:
/// all writers get `Conflict` for that person, who is left as they are. Returns the contested (policy, email) pairs. The
/// message names the first few askers only: it is copied into every asker's status.
pub(super) fn role_conflicts(
    claims: &Claims,
    subjects: &mut [Subject<'_>],
) -> BTreeSet<(String, String)> {
    let index: BTreeMap<&ObjectKey, usize> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key(), i))
        .collect();
    let mut contested = BTreeSet::new();
    for (policy, email, writers) in claims.writers() {
        let roles: BTreeSet<_> = writers
            .iter()
            .filter(|c| !c.is_request())
            .map(|c| c.wanted.role)
            .collect();
        if roles.len() < 2 {
            continue;
        }
        let askers = first_few(
            writers
                .iter()
                .map(|c| format!("{} asks {}", c.key, c.wanted.role)),
            ", ",
        );
        let message =
            format!("{email} on policy {policy}: {askers}; the person is left as they are");
        for claim in &writers {
            if let Some(&i) = index.get(claim.key) {
                subjects[i]
                    .plan
                    .blocks
                    .push(Block::Conflict(message.clone()));
            }
        }
        contested.insert((policy.to_string(), email.to_string()));
    }
    contested
}
