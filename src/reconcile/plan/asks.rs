//! Asks: an object wants a person on its policy with a role, until some time. Every source
//! of access produces asks (today the `members` of a PolicyAccess; an AccessRequest or a
//! review decision tomorrow) and the phases after [`super::resolve`] see only asks, so the
//! ledger, hand-off, guard and expiry rules apply to every source alike. The clock is
//! applied here, once: an ask past its end asks for nobody, and the earliest end still
//! ahead is when the next sync must run.

use std::collections::BTreeSet;
use std::fmt;
use std::rc::Rc;

use k8s_openapi::jiff::Timestamp;

use super::super::model::AccessObject;
use crate::email;
use crate::expensify::Role;

/// One person asked for, with what, until when, and where the ask was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ask {
    /// Normalized.
    pub email: String,
    pub role: Role,
    pub submits_to: Option<String>,
    pub employee_id: Option<String>,
    /// When the ask ends by itself; `None`: when it is withdrawn.
    pub until: Option<Timestamp>,
    pub origin: Origin,
}

/// Where an ask was written, as a field path a person can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// `spec.members[i]` of a PolicyAccess.
    Member(usize),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Member(i) => write!(f, "spec.members[{i}]"),
        }
    }
}

/// The asks of a PolicyAccess's members. An entry that cannot be read (an email that is
/// not one, an unknown role, an unreadable `expiresAt`) asks for nobody: validation
/// reports it, and a sync never guesses what it meant.
pub(super) fn of_members(object: &AccessObject) -> Vec<Ask> {
    if object.deleting {
        return Vec::new();
    }
    object
        .spec
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, member)| {
            if !email::is_valid(&member.email) {
                return None;
            }
            let role = member
                .role
                .as_deref()
                .map_or(Some(Role::User), Role::parse)?;
            let until = match &member.expires_at {
                Some(at) => Some(at.parse::<Timestamp>().ok()?),
                None => None,
            };
            Some(Ask {
                email: email::normalize(&member.email),
                role,
                submits_to: member
                    .submits_to
                    .as_deref()
                    .filter(|m| email::is_valid(m))
                    .map(email::normalize),
                employee_id: member
                    .employee_id
                    .clone()
                    .filter(|id| !id.trim().is_empty()),
                until,
                origin: Origin::Member(i),
            })
        })
        .collect()
}

/// The people an object asks for now, one ask each, sorted by email: a vector, not a map
/// keyed by a copy of each email (a million memberships). Each ask is shared (`Rc`): every
/// claim on the person points at it instead of copying it.
#[derive(Debug, Clone, Default)]
pub(super) struct Wanted(Vec<Rc<Ask>>);

impl Wanted {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The asks, by email.
    pub fn iter(&self) -> impl Iterator<Item = &Rc<Ask>> {
        self.0.iter()
    }

    pub fn contains(&self, email: &str) -> bool {
        self.0
            .binary_search_by(|ask| ask.email.as_str().cmp(email))
            .is_ok()
    }
}

/// The asks alive at `now`, one per person (the first written wins; validation reports a
/// person listed twice), and the earliest end still ahead.
pub(super) fn alive(asks: Vec<Ask>, now: Timestamp) -> (Wanted, Option<Timestamp>) {
    let mut next_end: Option<Timestamp> = None;
    let mut alive: Vec<(usize, Ask)> = Vec::with_capacity(asks.len());
    for (written, ask) in asks.into_iter().enumerate() {
        if let Some(until) = ask.until {
            if until <= now {
                continue;
            }
            next_end = Some(next_end.map_or(until, |n| n.min(until)));
        }
        alive.push((written, ask));
    }
    // By email, then as written: the first of each email is the one that counts.
    alive.sort_unstable_by(|(i, a), (j, b)| (a.email.as_str(), i).cmp(&(b.email.as_str(), j)));
    alive.dedup_by(|(_, later), (_, first)| later.email == first.email);
    let wanted = alive.into_iter().map(|(_, ask)| Rc::new(ask)).collect();
    (Wanted(wanted), next_end)
}

/// The people an object that cannot be planned may still be asking for (see
/// [`super::holds`]): read loosely, since holding too much only delays a removal, while
/// holding too little could revoke someone it asks for. Every valid email whose expiry
/// has not visibly passed counts, whatever its role or other fields say.
pub(super) fn people_possibly_asked(object: &AccessObject, now: Timestamp) -> BTreeSet<String> {
    object
        .spec
        .members
        .iter()
        .filter(|m| email::is_valid(&m.email))
        .filter(|m| {
            m.expires_at
                .as_deref()
                .and_then(|at| at.parse::<Timestamp>().ok())
                .is_none_or(|at| at > now)
        })
        .map(|m| email::normalize(&m.email))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MemberSpec;

    fn member(email: &str, role: Option<&str>, expires: Option<&str>) -> MemberSpec {
        MemberSpec {
            email: email.into(),
            role: role.map(Into::into),
            submits_to: None,
            employee_id: None,
            expires_at: expires.map(Into::into),
        }
    }

    fn object(members: Vec<MemberSpec>) -> AccessObject {
        let mut object = crate::reconcile::validate::tests::access("finance", members);
        object.deleting = false;
        object
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn members_ask_with_their_role_and_end_and_unreadable_ones_ask_for_nobody() {
        let asks = of_members(&object(vec![
            member(
                "Alice@Acme.example",
                Some("auditor"),
                Some("2026-06-02T00:00:00Z"),
            ),
            member("not an email", None, None),
            member("bob@acme.example", Some("emperor"), None),
            member("carol@acme.example", None, Some("soon")),
            member("dave@acme.example", None, None),
        ]));
        let people: Vec<(&str, Role, Option<String>, String)> = asks
            .iter()
            .map(|a| {
                (
                    a.email.as_str(),
                    a.role,
                    a.until.map(|t| t.to_string()),
                    a.origin.to_string(),
                )
            })
            .collect();
        assert_eq!(
            people,
            [
                (
                    "alice@acme.example",
                    Role::Auditor,
                    Some("2026-06-02T00:00:00Z".to_string()),
                    "spec.members[0]".to_string()
                ),
                (
                    "dave@acme.example",
                    Role::User,
                    None,
                    "spec.members[4]".to_string()
                ),
            ]
        );
    }

    #[test]
    fn only_live_asks_count_and_the_earliest_end_ahead_is_the_next_wake_up() {
        let asks = of_members(&object(vec![
            member("gone@acme.example", None, Some("2026-05-31T00:00:00Z")),
            member("edge@acme.example", None, Some("2026-06-01T00:00:00Z")),
            member("later@acme.example", None, Some("2026-06-03T00:00:00Z")),
            member("soon@acme.example", None, Some("2026-06-02T00:00:00Z")),
            member("soon@acme.example", Some("admin"), None),
        ]));
        let (alive, next) = alive(asks, now());
        assert_eq!(
            alive.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(),
            ["later@acme.example", "soon@acme.example"],
            "an ask ending exactly now has ended"
        );
        let soon = alive.iter().find(|a| a.email == "soon@acme.example");
        assert_eq!(soon.map(|a| a.role), Some(Role::User), "first written wins");
        assert_eq!(next, Some("2026-06-02T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn a_deleting_object_asks_for_nobody() {
        let mut deleting = object(vec![member("a@acme.example", None, None)]);
        deleting.deleting = true;
        assert!(of_members(&deleting).is_empty());
    }

    #[test]
    fn a_broken_object_is_taken_to_ask_for_every_readable_person_not_visibly_expired() {
        let people = people_possibly_asked(
            &object(vec![
                member("a@acme.example", Some("emperor"), None),
                member("b@acme.example", None, Some("soon")),
                member("c@acme.example", None, Some("2026-05-01T00:00:00Z")),
                member("not an email", None, None),
            ]),
            now(),
        );
        assert_eq!(
            people.into_iter().collect::<Vec<_>>(),
            ["a@acme.example", "b@acme.example"]
        );
    }
}
