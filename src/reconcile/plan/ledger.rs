//! Phase 3: the ledger. Entries are checked against the rosters read (a pending write
//! confirmed or dropped), then each stays, moves to another object that asks for the
//! person (hand-off), is dropped (orphan), or is released (nobody asks any more).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use super::super::model::ObjectKey;
use super::claims::{Claim, Claims};
use super::holds::Holds;
use super::resolve::{Standing, Subject};
use super::world::{RosterView, World};
use crate::api::{DeletionPolicy, ManagedMember};
use crate::expensify::Role;

/// An entry and the object that holds it.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub holder: ObjectKey,
    pub entry: ManagedMember,
}

/// An entry whose claim ended: what was given is taken back, or the role comes down to
/// the role of `lower_to` and the entry goes to its object (see [`Fate::Lower`]).
#[derive(Debug)]
pub(super) struct Released {
    pub held: Held,
    pub lower_to: Option<(ObjectKey, Role)>,
}

/// Every entry of the connector, one per (policy, email).
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub entries: BTreeMap<(String, String), Held>,
    /// Entries that go to a writer with its write ([`Fate::HandOffWithWrite`]): the writer.
    moving_to: BTreeMap<(String, String), ObjectKey>,
}

impl Ledger {
    /// Completes the hand-offs that were to move with a write ([`Fate::HandOffWithWrite`])
    /// for which the writers plan none (people they disagree on, a role a request leaves
    /// as it is): with nothing to wait for, the entry moves now, as a plain hand-off. Runs
    /// on the writers' plan, before holds and the guard drop anything from it.
    pub fn complete_hand_offs(&mut self, planned: &[super::types::Planned]) {
        if self.moving_to.is_empty() {
            return;
        }
        let written: BTreeSet<(&str, &str)> = planned
            .iter()
            .map(|p| (p.change.policy_id.as_str(), p.change.email.as_str()))
            .collect();
        for (key, writer) in std::mem::take(&mut self.moving_to) {
            if written.contains(&(key.0.as_str(), key.1.as_str())) {
                self.moving_to.insert(key, writer);
            } else if let Some(held) = self.entries.get_mut(&key) {
                held.holder = writer;
            }
        }
    }

    pub fn get(&self, policy: &str, email: &str) -> Option<&Held> {
        self.entries.get(&(policy.to_string(), email.to_string()))
    }

    /// The role a person has apart from the operator: where its entry says they were
    /// (`None` if it added them) while the role it set still stands and one of `writers`
    /// holds the entry (or takes it with its write), else `current`. A request never lowers a role a person has, but a
    /// raise the operator made for a claim that ended is not theirs: the remaining
    /// writers settle it. An entry a frozen object holds (suspended, Blocked) stays.
    pub fn own_role(
        &self,
        (policy, email): (&str, &str),
        current: Option<Role>,
        writers: &[&Claim],
    ) -> Option<Role> {
        let key = (policy.to_string(), email.to_string());
        let Some(held) = self.entries.get(&key).filter(|held| {
            let moving_to = self.moving_to.get(&key);
            writers
                .iter()
                .any(|c| *c.key == held.holder || Some(c.key) == moving_to)
        }) else {
            return current;
        };
        let set = if held.entry.pending {
            &held.entry.prior_role
        } else {
            &held.entry.role
        };
        let stands = current.is_some() && set.as_deref().and_then(Role::parse) == current;
        match (stands, held.entry.added) {
            (false, _) => current,
            (true, true) => None,
            (true, false) => held
                .entry
                .previous_role
                .as_deref()
                .and_then(Role::parse)
                .or(current),
        }
    }
}

/// Whether two wire roles are the same role (Expensify's spelling may vary in case and
/// surrounding space, as [`Role::parse`] allows; roles it does not know compare the same
/// way).
pub(super) fn same_role(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// What a pending or settled entry says once the roster is known: `None` drops it.
pub(super) fn verify(entry: &ManagedMember, shown: Option<&RosterView>) -> Option<ManagedMember> {
    // Nobody owns what is not there: never landed, or taken away since.
    let shown = shown?;
    let is = |role: &Option<String>| {
        role.as_deref()
            .is_some_and(|r| same_role(r, &shown.raw_role))
    };
    let confirmed = |role: Option<String>| ManagedMember {
        role,
        pending: false,
        prior_role: None,
        ..entry.clone()
    };
    if !entry.pending {
        // Its role is the one it had before the operator changed it: nothing left to own.
        let back_where_it_was = !entry.added && is(&entry.previous_role);
        return (!back_where_it_was).then(|| entry.clone());
    }
    if is(&entry.role) {
        return Some(confirmed(entry.role.clone()));
    }
    if is(&entry.prior_role) {
        return Some(confirmed(entry.prior_role.clone()));
    }
    if entry.added {
        // Present proves the grant landed, whatever role Expensify made of it.
        return Some(confirmed(Some(shown.raw_role.clone())));
    }
    // A role change that shows the role from before did not land.
    (!is(&entry.previous_role)).then(|| entry.clone())
}

/// What becomes of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fate {
    /// Stays with its holder.
    Keep,
    /// Moves to another object that asks for the person.
    HandOff(ObjectKey),
    /// Goes to a writer that asks for another role than the one kept, with its write:
    /// until that lands (a demotion the guard or broken input holds may wait), the entry
    /// stays with its holder.
    HandOffWithWrite(ObjectKey),
    /// Goes to (or stays with) an object that writes nothing and lists the person below
    /// the role the operator set: the claim that asked for it ended, so the role comes
    /// down to this one.
    Lower(ObjectKey, Role),
    /// Kept while broken input may be asking for the person.
    Hold,
    /// Nobody asks any more: take back what was given.
    Release,
}

/// Decides the fate of an entry already checked against the roster. (An entry of an
/// `Orphan` deletion that nobody asks for never gets here: it is dropped unread.)
pub(super) fn fate(
    entry: &ManagedMember,
    holder: &Subject<'_>,
    claims: &Claims,
    foreign: &BTreeSet<String>,
    held: bool,
) -> Fate {
    // A suspended holder freezes its entries; an unresolvable one cannot say what it asks;
    // from one asking beyond its tenancy nothing is inferred.
    if matches!(
        holder.standing,
        Standing::Frozen | Standing::Unresolvable | Standing::Forbidden
    ) {
        return Fate::Keep;
    }
    // Another connector governs that policy: this one writes nothing there.
    if foreign.contains(&entry.policy_id) {
        return Fate::Keep;
    }
    let askers = claims.of(&entry.policy_id, &entry.email);
    // A holder that writes settles the role itself; one that only keeps the person
    // (ObserveOnly, Blocked) keeps the entry while it lists the role kept.
    let kept = kept_role(entry, askers);
    let holder_claim = askers.iter().find(|c| c.key == holder.key());
    let holder_keeps = holder_claim.is_some_and(|c| {
        holder.writes() || (matches!(kept, Kept::AsSet(_)) && kept.kept_by(c.wanted.role))
    });
    if holder_keeps {
        return Fate::Keep;
    }
    // Prefer an object that writes for the person and asks the role kept (no write
    // needed); else one that keeps that role as it is (ObserveOnly listing it); else the
    // first writer, whose write changes the role, and which takes the entry only with it.
    let fits = |c: &&Claim| kept.kept_by(c.wanted.role);
    let writers = || askers.iter().filter(|c| c.writes);
    if matches!(kept, Kept::AsSet(_))
        && let Some(next) = writers().find(fits).or_else(|| askers.iter().find(fits))
    {
        return Fate::HandOff(next.key.clone());
    }
    if let Some(next) = writers().find(fits).or_else(|| writers().next()) {
        return Fate::HandOffWithWrite(next.key.clone());
    }
    // Only objects that write nothing ask (ObserveOnly, suspended): they keep the person,
    // not a raise to a role none of them lists (say a request's that ended). The entry
    // goes to one that lists the role kept, so no object holds a role it could not ask.
    let keeper = holder_claim
        .into_iter()
        .chain(askers)
        .find(|c| kept.kept_by(c.wanted.role))
        .map(|c| c.key.clone());
    match (keeper, kept) {
        (Some(keeper), Kept::AsSet(_)) => Fate::HandOff(keeper),
        _ if held => Fate::Hold,
        (Some(keeper), Kept::Lowered(role)) => Fate::Lower(keeper, role),
        _ => Fate::Release,
    }
}

/// The role objects that write nothing keep for a person whose entry set a role. They keep
/// a raise the operator made as far as they list it; the rest of it is taken back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kept {
    /// Kept at the role set by an object listing a role in the range: the role set (or,
    /// for a raise, a higher one). With no such object, it is released.
    AsSet(RangeInclusive<Role>),
    /// A raise comes down to the highest role one of them lists below the role set, which
    /// is above where the person started.
    Lowered(Role),
    /// None lists a role between where the person started and the role set: back to
    /// where they started.
    Released,
}

impl Kept {
    /// Whether an object listing `role` keeps the entry.
    fn kept_by(&self, role: Role) -> bool {
        match self {
            Kept::AsSet(range) => range.contains(&role),
            Kept::Lowered(lowered) => *lowered == role,
            Kept::Released => false,
        }
    }
}

fn kept_role(entry: &ManagedMember, askers: &[Claim]) -> Kept {
    let Some(set) = entry.role.as_deref().and_then(Role::parse) else {
        return Kept::AsSet(Role::User..=Role::Admin);
    };
    let listed = || askers.iter().map(|c| c.wanted.role);
    let started = entry.previous_role.as_deref().and_then(Role::parse);
    // A demotion, or a change from a role the operator cannot compare, is kept only by an
    // object that lists the role set; with none, it goes back whole.
    let raised = entry.added || started.is_some_and(|started| started < set);
    if !raised {
        return Kept::AsSet(set..=set);
    }
    if listed().any(|role| role >= set) {
        return Kept::AsSet(set..=Role::Admin);
    }
    // Every role listed is below the one set.
    match (listed().max(), started) {
        (Some(below), _) if entry.added => Kept::Lowered(below),
        (Some(below), Some(started)) if below > started => Kept::Lowered(below),
        // Nobody lists a role in between (or nobody asks at all): back where they started.
        _ => Kept::Released,
    }
}

/// `entry` after the operator writes `role` for it: pending until a read shows it, the
/// role confirmed last kept as the prior one.
pub(super) fn rewritten(entry: &ManagedMember, role: Role) -> ManagedMember {
    let prior_role = if entry.pending {
        entry.prior_role.clone()
    } else {
        entry.role.clone()
    };
    ManagedMember {
        role: Some(role.to_string()),
        pending: true,
        prior_role,
        ..entry.clone()
    }
}

/// One copy of an entry and the index of the subject whose status holds it.
type Copy = (usize, ManagedMember);

/// Every entry of every object, one list of copies per (policy, email). An entry is held
/// twice only between two saves: a hand-off saves the gain before the loss, and a crash or
/// a failed save in between leaves both.
fn copies(subjects: &mut [Subject<'_>]) -> BTreeMap<(String, String), Vec<Copy>> {
    let mut copies: BTreeMap<(String, String), Vec<Copy>> = BTreeMap::new();
    for (index, subject) in subjects.iter_mut().enumerate() {
        for entry in std::mem::take(&mut subject.entries) {
            copies
                .entry((entry.policy_id.clone(), entry.email.clone()))
                // Nearly every entry has one copy: a first push would reserve four.
                .or_insert_with(|| Vec::with_capacity(1))
                .push((index, entry));
        }
    }
    copies
}

/// The copy that says what the operator wrote last: one whose role Expensify shows, then
/// one saved ahead of a write (pending) over a settled one, then the first by key. The
/// others are stale and are dropped: a loss not yet saved, or the gain of a write that did
/// not land (an entry moving with a write stays with its holder, whose copy Expensify
/// still shows, until the write lands).
fn newest(copies: Vec<Copy>, shown: Option<&RosterView>) -> Option<Copy> {
    // A pending grant (added, no role before it) counts as shown once the person is there,
    // whatever role Expensify made of it (as `verify` confirms it).
    let shows_role = |entry: &ManagedMember| {
        shown.is_some_and(|shown| {
            (entry.pending && entry.added && entry.prior_role.is_none())
                || entry
                    .role
                    .as_deref()
                    .is_some_and(|role| same_role(role, &shown.raw_role))
        })
    };
    copies
        .into_iter()
        .max_by_key(|(index, entry)| (shows_role(entry), entry.pending, std::cmp::Reverse(*index)))
}

/// Records an entry's fate: where it is held, and whether it is released or lowered.
fn record(
    fate: Fate,
    (key, Held { holder, entry }): ((String, String), Held),
    (held, subject): (Option<String>, &mut Subject<'_>),
    (ledger, releases): (&mut Ledger, &mut Vec<Released>),
) {
    // Orphan writes nothing: what no other object takes over as it is, is dropped, and an
    // Orphan deletion never waits for another object's write.
    let orphaning = subject.standing == Standing::Deleting(DeletionPolicy::Orphan);
    let holder = match fate {
        Fate::Keep => holder,
        Fate::HandOff(next) => next,
        // An Orphan deletion never waits for another object's write.
        Fate::HandOffWithWrite(next) if orphaning => next,
        // The entry stays where it is until the write lands: the write's own entry (see
        // `grants::entry_for`) is the writer's gain, so a held write moves nothing.
        Fate::HandOffWithWrite(next) => {
            ledger.moving_to.insert(key.clone(), next);
            holder
        }
        _ if orphaning => return,
        Fate::Hold => {
            if let Some(because) = held {
                subject.hold(&entry.email, because);
            }
            holder
        }
        // Like a release, the entry stays where it is until the change lands (a guard may
        // hold it); the lowered entry is the keeper's gain.
        Fate::Lower(..) | Fate::Release => {
            let lower_to = match fate {
                Fate::Lower(keeper, role) => Some((keeper, role)),
                _ => None,
            };
            releases.push(Released {
                held: Held {
                    holder: holder.clone(),
                    entry: entry.clone(),
                },
                lower_to,
            });
            holder
        }
    };
    ledger.entries.insert(key, Held { holder, entry });
}

/// Collects the entries of every object (one copy per entry: [`newest`]), checks them
/// against the rosters and settles their fate. Returns the ledger as it stands before any
/// write and the entries to release or lower.
pub(super) fn settle(
    subjects: &mut [Subject<'_>],
    claims: &Claims,
    foreign: &BTreeSet<String>,
    world: &World<'_>,
    holds: &Holds,
) -> (Ledger, Vec<Released>) {
    let mut ledger = Ledger::default();
    let mut releases = Vec::new();
    for (key, copies) in copies(subjects) {
        let policy = world.policies.get(&key.0);
        let shown = policy.and_then(|p| p.roster.get(&key.1));
        let Some((index, entry)) = newest(copies, shown) else {
            continue;
        };
        let subject = &mut subjects[index];
        let holder = subject.key().clone();
        let orphaned = subject.standing == Standing::Deleting(DeletionPolicy::Orphan)
            && !claims.is_claimed(&entry.policy_id, &entry.email);
        if orphaned {
            // Orphan writes nothing, so it needs no read of the policy either.
            continue;
        }
        let Some(policy) = policy else {
            // Not visible or not read: nothing can be checked, so nothing changes.
            subject.plan.notes.push(format!(
                "{} on policy {}: the policy cannot be read with the connector's credentials; kept until it can",
                entry.email, entry.policy_id
            ));
            ledger.entries.insert(key, Held { holder, entry });
            continue;
        };
        let Some(entry) = verify(&entry, policy.roster.get(&entry.email)) else {
            continue;
        };
        let held = holds.why(&entry.policy_id, &entry.email);
        let mut fate = fate(&entry, subject, claims, foreign, held.is_some());
        if let Fate::HandOffWithWrite(next) = &fate {
            // Only a write that will be made waits. None is made for a protected person:
            // the entry is released (and dropped: protected people are left as they are),
            // so no writer holds a role it never asked for. None is needed where Expensify
            // no longer shows the role set (someone changed it): a plain hand-off.
            let shown = policy.roster.get(&entry.email).map(|r| r.raw_role.as_str());
            let still_as_set = shown
                .zip(entry.role.as_deref())
                .is_some_and(|(shown, set)| same_role(shown, set));
            if world.is_protected(policy, &entry.email) {
                fate = Fate::Release;
            } else if !still_as_set {
                fate = Fate::HandOff(next.clone());
            }
        }
        let settled = (key, Held { holder, entry });
        record(fate, settled, (held, subject), (&mut ledger, &mut releases));
    }
    (ledger, releases)
}
