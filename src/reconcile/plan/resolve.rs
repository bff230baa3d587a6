//! Phase 1: each object of the connector, resolved: its policy, the people it asks for
//! now, its ledger entries, and what it may do in this sync.

use std::collections::BTreeSet;

use super::super::model::{AccessObject, ObjectKey};
use super::super::validate::{Problem, connector_allows, validate_access};
use super::asks::{self, Wanted};
use super::types::{Block, ObjectPlan, PlanInput, Scope};
use super::world::World;
use crate::api::{AccessMode, DeletionPolicy, ManagedMember};

/// What an object may do in this sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// Valid, resolved, live: asks for people and writes for them.
    Writer,
    /// Valid, resolved, live, but suspended: writes nothing, the people it lists count as
    /// asked for, and its entries stay as they are (neither released nor handed off).
    Frozen,
    /// Valid, resolved, live, ObserveOnly: writes nothing for the people it lists (who
    /// count as asked for), but an entry it holds follows the ordinary rules: handed off or
    /// released when it no longer lists the person, since the operator takes back what it
    /// gave whoever holds the entry.
    Observing,
    /// Invalid: asks for nobody; its entries may be handed off, releases are held.
    Invalid,
    /// Its policy cannot be resolved: its entries stay as they are.
    Unresolvable,
    /// Asks for a policy or a role its namespace is not granted (see [`super::tenancy`]):
    /// asks for nobody, holds nothing, and its entries stay as they are.
    Forbidden,
    /// Asks for people on a policy an Authoritative object of another tenant namespace
    /// governs and closes to it: asks for nobody; its entries follow the ordinary rules.
    ClosedOut,
    /// Being deleted: asks for nobody; its entries are handed off, released or orphaned.
    Deleting(DeletionPolicy),
}

/// One object of the connector, as the planner works on it.
#[derive(Debug, Clone)]
pub(super) struct Subject<'a> {
    pub object: &'a AccessObject,
    pub plan: ObjectPlan,
    pub standing: Standing,
    /// The resolved policy, when its roster was read.
    pub policy: Option<String>,
    /// The people it asks for now, from every source of asks (see [`super::asks`]).
    pub wanted: Wanted,
    pub entries: Vec<ManagedMember>,
    /// Blocked by a conflict: writes nothing for the people it asks for (who still count
    /// as asked for); its entries follow the ordinary rules.
    pub blocked: bool,
    /// Why removals it would make are held (see [`super::holds`]).
    pub held_because: BTreeSet<String>,
}

impl<'a> Subject<'a> {
    pub fn key(&self) -> &'a ObjectKey {
        &self.object.key
    }

    /// Whether it asks for people (hard: it writes for them; soft: only keeps them).
    pub fn claims(&self) -> bool {
        matches!(
            self.standing,
            Standing::Writer | Standing::Frozen | Standing::Observing
        )
    }

    /// Whether it writes for the people it asks for.
    pub fn writes(&self) -> bool {
        self.standing == Standing::Writer && !self.blocked
    }

    /// Records a removal this object would make that waits for broken input.
    pub fn hold(&mut self, email: &str, because: String) {
        self.plan.held.push(email.to_string());
        self.held_because.insert(because);
    }

    /// Stops it writing for the people it asks for (a conflict found after resolving).
    pub fn block(&mut self, block: Block) {
        self.blocked = true;
        self.plan.blocks.push(block);
    }
}

/// The Authoritative writers, each with the policy it governs (a second one on a policy is
/// blocked, so there is one per policy once conflicts are settled).
pub(super) fn governors<'s, 'a>(
    subjects: &'s [Subject<'a>],
) -> impl Iterator<Item = (&'s str, &'s Subject<'a>)> {
    subjects
        .iter()
        .filter(|s| s.writes() && s.object.spec.mode == AccessMode::Authoritative)
        .filter_map(|s| Some((s.policy.as_deref()?, s)))
}

/// The connector's objects, sorted by key. Objects of namespaces the connector does not
/// allow are left out: they claim nobody and hold nothing here (they get their status
/// from the path for objects no connector takes).
pub(super) fn subjects<'a>(input: &PlanInput<'a>, world: &World<'_>) -> Vec<Subject<'a>> {
    let connector = input.connector;
    let mut subjects: Vec<Subject<'a>> = input
        .accesses
        .iter()
        .filter(|a| a.connector_key() == connector.key)
        .filter(|a| connector_allows(connector, &a.key.namespace))
        .map(|a| subject(a, input, world))
        .collect();
    subjects.sort_by(|a, b| a.object.key.cmp(&b.object.key));
    // Keys are unique by the time objects reach the planner (the cluster's names are, the
    // file loader refuses a second object with a key, and request holders' `request:`
    // names cannot be a PolicyAccess name): lookups take the first match as the only one.
    debug_assert!(
        subjects.windows(2).all(|w| w[0].key() < w[1].key()),
        "two objects share a key"
    );
    subjects
}

/// The subject with this key: subjects are sorted by key, so a
/// binary search rather than a scan (phases look subjects up once per change).
pub(super) fn find_mut<'s, 'a>(
    subjects: &'s mut [Subject<'a>],
    key: &ObjectKey,
) -> Option<&'s mut Subject<'a>> {
    position(subjects, key).map(|at| &mut subjects[at])
}

/// [`find_mut`], to read.
pub(super) fn find<'s, 'a>(
    subjects: &'s [Subject<'a>],
    key: &ObjectKey,
) -> Option<&'s Subject<'a>> {
    position(subjects, key).map(|at| &subjects[at])
}

fn position(subjects: &[Subject<'_>], key: &ObjectKey) -> Option<usize> {
    let at = subjects.partition_point(|s| s.key() < key);
    (subjects.get(at)?.key() == key).then_some(at)
}

fn subject<'a>(object: &'a AccessObject, input: &PlanInput<'_>, world: &World<'_>) -> Subject<'a> {
    let mut plan = ObjectPlan {
        key: Some(object.key.clone()),
        mode: object.spec.mode,
        suspended: object.spec.suspend,
        deleting: object.deleting,
        ..ObjectPlan::default()
    };
    if !object.deleting {
        plan.problems = validate_access(object, std::slice::from_ref(input.connector));
        if input.unverified.contains(&object.key) {
            plan.problems.push(Problem::new(
                "status",
                "its status file is not vouched for: what it recorded is not believed, and removals on its policy wait until the file is restored or forgotten (`state forget`)",
            ));
        }
    }
    let mut policy = None;
    match resolve_policy(object, world) {
        Ok(id) => {
            plan.policy_name = world.policies.get(&id).map(|p| p.name.clone());
            plan.policy_id = Some(id.clone());
            policy = world.policies.contains_key(&id).then_some(id);
        }
        // A deleting object settles its entries on the policies they name.
        Err(_) if object.deleting => {
            plan.policy_id = object.status.as_ref().and_then(|s| s.policy_id.clone());
        }
        Err(problem) => {
            plan.problems.push(problem);
        }
    }
    let (wanted, next_expiry) = asks::alive(asks::of_members(object), input.now);
    plan.next_expiry = next_expiry;
    let mut standing = standing(object, &plan, policy.is_some());
    let mut blocked = false;
    if input.scope == Scope::DeletionsOnly
        && matches!(standing, Standing::Writer | Standing::Observing)
    {
        standing = Standing::Frozen;
        blocked = true;
        plan.blocks.push(Block::CredentialsUnusable(format!(
            "the credentials Secret {} of connector {} cannot be used: only deletions were settled, with the last good credentials held in memory; this object waits for the Secret",
            input.connector.spec.credentials_secret_ref.name, input.connector.key
        )));
    }
    Subject {
        object,
        plan,
        standing,
        policy,
        wanted,
        entries: object.ledger_entries(),
        blocked,
        held_because: BTreeSet::new(),
    }
}

fn standing(object: &AccessObject, plan: &ObjectPlan, resolved: bool) -> Standing {
    if object.deleting {
        return Standing::Deleting(object.spec.deletion_policy);
    }
    if !resolved {
        return Standing::Unresolvable;
    }
    if !plan.is_valid() {
        return Standing::Invalid;
    }
    if object.spec.suspend {
        return Standing::Frozen;
    }
    if object.spec.mode == AccessMode::ObserveOnly {
        return Standing::Observing;
    }
    Standing::Writer
}

/// The policy an object names: by id (must be visible) or by a unique name.
fn resolve_policy(object: &AccessObject, world: &World<'_>) -> Result<String, Problem> {
    match (&object.spec.policy.id, &object.spec.policy.name) {
        (Some(id), None) => by_id(id.trim(), world),
        (None, Some(name)) => by_name(name.trim(), world),
        _ => Err(Problem::new(
            "spec.policy",
            "give exactly one of id and name",
        )),
    }
}

fn by_id(id: &str, world: &World<'_>) -> Result<String, Problem> {
    if !world.is_visible(id) {
        return Err(Problem::new(
            "spec.policy.id",
            format!(
                "policy {id:?} is not among the {} policies the connector's credentials can see",
                world.visible_count()
            ),
        ));
    }
    if let Some(why) = world.untrusted.get(id) {
        return Err(Problem::new(
            "spec.policy.id",
            format!("{why}: nothing is changed or forgotten on it in this sync"),
        ));
    }
    if !world.policies.contains_key(id) {
        return Err(Problem::new(
            "spec.policy.id",
            format!("the roster of policy {id} was not read"),
        ));
    }
    Ok(id.to_string())
}

fn by_name(name: &str, world: &World<'_>) -> Result<String, Problem> {
    match world.ids_named(name) {
        [id] => by_id(id, world).map_err(|p| Problem::new("spec.policy.name", p.message)),
        [] => {
            let names = world.observed.policies.iter().map(|p| p.name.as_str());
            let hint = crate::suggest::nearest(name, names)
                .map(|nearest| format!("; did you mean {nearest:?}?"))
                .unwrap_or_default();
            Err(Problem::new(
                "spec.policy.name",
                format!(
                    "no policy named {name:?} among the {} policies the connector's credentials can see{hint}",
                    world.visible_count()
                ),
            ))
        }
        ids => Err(Problem::new(
            "spec.policy.name",
            format!(
                "{} policies are named {name:?} ({}); use spec.policy.id",
                ids.len(),
                super::super::bounded::first_few(ids, ", ")
            ),
        )),
    }
}
