//! What the planner is given and what it answers: changes, and findings per object.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::super::model::{AccessObject, ConnectorObject, ObjectKey, Observed, Requests};
use super::super::problem::Problem;
use crate::api::{AccessMode, Drift, ManagedMember, PlanSummary, Reason};
use crate::expensify::{EmployeeRecord, Role};

/// What the planner is given for one connector.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub connector: &'a ConnectorObject,
    /// Every connector that exists (this one included): only they count as governing a
    /// policy, never a name an object gives.
    pub connectors: &'a [ConnectorObject],
    /// Every object known. Those of this connector are planned; those of other connectors
    /// only tell which policies another connector already governs.
    pub accesses: &'a [AccessObject],
    pub observed: &'a Observed,
    pub now: Timestamp,
    /// False when some manifests could not be read: every removal on the connector is
    /// held, since an unreadable manifest may ask for the people concerned.
    pub inventory_complete: bool,
    /// What this sync may change.
    pub scope: Scope,
    /// Objects whose recorded state (status file) is not vouched for: planned without
    /// it, as broken objects, so they hold what they could be asking for and write
    /// nothing.
    pub unverified: &'a [ObjectKey],
    /// The access requests on the connector's objects and the decisions on them.
    pub requests: Requests<'a>,
}

/// What a sync may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Everything the objects ask for.
    #[default]
    Everything,
    /// Only what objects being deleted gave: the connector's credentials Secret cannot be
    /// used and the sync runs on the last good credentials held in memory, which settle
    /// those deletions and nothing else (a Secret taken away is no licence to keep
    /// granting). Every other object stands still, as if suspended.
    DeletionsOnly,
}

/// Kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Grant,
    RoleChange,
    ApproverChange,
    EmployeeIdChange,
    Revoke,
}

impl ChangeKind {
    pub fn symbol(self) -> char {
        match self {
            ChangeKind::Grant => '+',
            ChangeKind::RoleChange | ChangeKind::ApproverChange | ChangeKind::EmployeeIdChange => {
                '~'
            }
            ChangeKind::Revoke => '-',
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            ChangeKind::Grant => "grant",
            ChangeKind::RoleChange => "change role",
            ChangeKind::ApproverChange => "change approver",
            ChangeKind::EmployeeIdChange => "change employeeID",
            ChangeKind::Revoke => "revoke",
        }
    }

    /// The change as a noun, for tables and counts: `grant`, `role change`, `revocation`
    /// (each takes an `s` in the plural).
    pub fn noun(self) -> &'static str {
        match self {
            ChangeKind::Grant => "grant",
            ChangeKind::RoleChange => "role change",
            ChangeKind::ApproverChange => "approver change",
            ChangeKind::EmployeeIdChange => "employeeID change",
            ChangeKind::Revoke => "revocation",
        }
    }

    /// The reason of the Event a change makes in cluster mode.
    pub fn event_reason(self) -> &'static str {
        match self {
            ChangeKind::Grant => "Granted",
            ChangeKind::RoleChange => "RoleChanged",
            ChangeKind::ApproverChange => "ApproverChanged",
            ChangeKind::EmployeeIdChange => "EmployeeIDChanged",
            ChangeKind::Revoke => "Revoked",
        }
    }
}

/// One change to make in Expensify, and who asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub policy_id: String,
    pub policy_name: String,
    pub email: String,
    /// The role to set (everything but revocations).
    pub role: Option<Role>,
    /// The role they have now.
    pub old_role: Option<String>,
    pub manager_email: String,
    pub employee_id: Option<String>,
    /// The approver this change must leave in place, when one is asked for.
    pub expect_submits_to: Option<String>,
    /// The approver and employeeID the person has now (none for a grant), to show what
    /// the change moves.
    pub old_submits_to: Option<String>,
    pub old_employee_id: Option<String>,
    pub requested_by: ObjectKey,
    pub reason: String,
}

impl Change {
    /// The employee updater record that makes this change.
    pub fn record(&self) -> EmployeeRecord {
        match self.kind {
            ChangeKind::Revoke => EmployeeRecord::revoke(
                &self.email,
                &self.policy_id,
                &self.manager_email,
                self.employee_id.clone(),
            ),
            _ => EmployeeRecord::grant(
                &self.email,
                &self.policy_id,
                self.role.unwrap_or_default(),
                &self.manager_email,
                self.employee_id.clone(),
            ),
        }
    }

    /// What the change sets, in a few words, every attribute that moves: `admin`,
    /// `user -> admin, submits to a@x`, `employeeID E-1 -> E-2`, `was user`.
    pub fn detail(&self) -> String {
        let role = self.role.map(|r| r.to_string()).unwrap_or_default();
        let old = self.old_role.as_deref().unwrap_or("?");
        let mut parts = match self.kind {
            ChangeKind::Grant => vec![role],
            ChangeKind::RoleChange => vec![format!("{old} -> {role}")],
            ChangeKind::ApproverChange | ChangeKind::EmployeeIdChange => Vec::new(),
            ChangeKind::Revoke => return format!("was {old}"),
        };
        if let Some(approver) = self.approver_move() {
            parts.push(approver);
        }
        if let Some(id) = self.employee_id_move() {
            parts.push(id);
        }
        parts.join(", ")
    }

    /// `submits to b@x` or `submits to a@x -> b@x`, when the approver moves.
    fn approver_move(&self) -> Option<String> {
        let asked = self.expect_submits_to.as_deref()?;
        match self.old_submits_to.as_deref() {
            Some(old) if old == asked => None,
            Some(old) => Some(format!("submits to {old} -> {asked}")),
            None => Some(format!("submits to {asked}")),
        }
    }

    /// `employeeID E-2` or `employeeID E-1 -> E-2`, when the employeeID moves.
    fn employee_id_move(&self) -> Option<String> {
        let new = self.employee_id.as_deref()?;
        match self.old_employee_id.as_deref() {
            Some(old) if old == new => None,
            Some(old) => Some(format!("employeeID {old} -> {new}")),
            None => Some(format!("employeeID {new}")),
        }
    }

    /// The change as done, for Events and logs: `granted a@x as user on Finance`.
    pub fn describe(&self) -> String {
        let role = self.role.map(|r| r.to_string()).unwrap_or_default();
        let old = self.old_role.as_deref().unwrap_or("?");
        let (email, policy) = (&self.email, &self.policy_name);
        match self.kind {
            ChangeKind::Grant => format!("granted {email} as {role} on {policy}"),
            ChangeKind::RoleChange => format!("changed {email} from {old} to {role} on {policy}"),
            ChangeKind::ApproverChange => {
                format!("{email} now submits to {} on {policy}", self.manager_email)
            }
            ChangeKind::EmployeeIdChange => format!(
                "{email} now has employeeID {} on {policy}",
                self.employee_id.as_deref().unwrap_or_default()
            ),
            ChangeKind::Revoke => format!("revoked {email} (was {old}) from {policy}"),
        }
    }

    /// A revocation, or a role change to a lower role: what the guard counts.
    pub fn is_removal(&self) -> bool {
        match self.kind {
            ChangeKind::Revoke => true,
            ChangeKind::RoleChange => {
                let old = self.old_role.as_deref().and_then(Role::parse);
                match (old, self.role) {
                    (Some(old), Some(new)) => rank(new) < rank(old),
                    // An unknown current role: count it, to be safe.
                    _ => true,
                }
            }
            _ => false,
        }
    }
}

/// Orders roles by power, for demotions.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::User => 0,
        Role::Auditor => 1,
        Role::Admin => 2,
    }
}

/// Why an object cannot do all it asks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Block {
    /// Another object or connector disagrees.
    Conflict(String),
    /// More removals pending than the connector allows.
    RevocationLimit(String),
    /// It asks to change someone protected.
    Protected(String),
    /// Removals held because some input could not be read or validated.
    Held(String),
    /// The connector's credentials cannot be used: only deletions were settled.
    CredentialsUnusable(String),
}

impl Block {
    pub fn reason(&self) -> Reason {
        match self {
            Block::Conflict(_) => Reason::Conflict,
            Block::RevocationLimit(_) => Reason::RevocationLimit,
            Block::Protected(_) => Reason::Protected,
            Block::Held(_) => Reason::RemovalsHeld,
            Block::CredentialsUnusable(_) => Reason::SecretNotFound,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Block::Conflict(m)
            | Block::RevocationLimit(m)
            | Block::Protected(m)
            | Block::Held(m)
            | Block::CredentialsUnusable(m) => m,
        }
    }
}

/// The planner's findings for one object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectPlan {
    pub key: Option<ObjectKey>,
    pub problems: Vec<Problem>,
    /// Its problems include asking for a policy or role its namespace is not granted.
    pub not_granted: bool,
    pub mode: AccessMode,
    pub suspended: bool,
    pub deleting: bool,
    pub policy_id: Option<String>,
    pub policy_name: Option<String>,
    /// Members asked for and not expired.
    pub desired: usize,
    pub in_sync: usize,
    pub drift: Vec<Drift>,
    pub blocks: Vec<Block>,
    /// The ledger entries this object holds now: checked against the rosters read, handed
    /// off, and still holding what is being released (until a read shows it done).
    pub ledger: Vec<ManagedMember>,
    /// Entries the planned writes create or update (`pending`), saved before the write.
    pub new_entries: Vec<ManagedMember>,
    /// Entries dropped without a write, and why (shown in the status message).
    pub notes: Vec<String>,
    pub next_expiry: Option<Timestamp>,
    /// Changes in the plan that this object asked for.
    pub planned: PlanSummary,
    /// People whose removal this object wants that the plan does not make.
    pub held: Vec<String>,
    /// The `allow-mass-revocation` value this plan uses, if any.
    pub mass_revocation_used: Option<String>,
}

impl ObjectPlan {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// The ledger as it must be saved before the write: `ledger` with `new_entries` laid
    /// over it, sorted.
    pub fn write_ahead_ledger(&self) -> Vec<ManagedMember> {
        let mut by_key: BTreeMap<(String, String), ManagedMember> = self
            .ledger
            .iter()
            .map(|e| ((e.policy_id.clone(), e.email.clone()), e.clone()))
            .collect();
        for entry in &self.new_entries {
            by_key.insert(
                (entry.policy_id.clone(), entry.email.clone()),
                entry.clone(),
            );
        }
        by_key.into_values().collect()
    }
}

/// The plan for one connector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Sorted by policy, email, kind.
    pub changes: Vec<Change>,
    /// Sorted by key.
    pub objects: BTreeMap<ObjectKey, ObjectPlan>,
    /// The connector's `allow-mass-revocation` value this plan uses, if any.
    pub connector_mass_revocation_used: Option<String>,
}

impl Plan {
    pub fn summary(&self) -> PlanSummary {
        summarize(self.changes.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether any object is blocked (the `plan` command exits 1 then).
    pub fn has_blocks(&self) -> bool {
        self.objects.values().any(|o| !o.blocks.is_empty())
    }
}

pub fn summarize<'a>(changes: impl Iterator<Item = &'a Change>) -> PlanSummary {
    let mut summary = PlanSummary::default();
    for change in changes {
        count(&mut summary, change.kind);
    }
    summary
}

/// Counts one change of this kind in a summary.
pub fn count(summary: &mut PlanSummary, kind: ChangeKind) {
    match kind {
        ChangeKind::Grant => summary.grants += 1,
        ChangeKind::RoleChange | ChangeKind::ApproverChange | ChangeKind::EmployeeIdChange => {
            summary.role_changes += 1;
        }
        ChangeKind::Revoke => summary.revocations += 1,
    }
}

/// A change together with the ledger entry it creates or updates, kept only if the change
/// survives the guard.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub change: Change,
    /// The object that holds the entry, and the entry.
    pub entry: Option<(ObjectKey, ManagedMember)>,
}

#[cfg(test)]
mod detail_tests {
    use super::*;

    fn change(kind: ChangeKind) -> Change {
        Change {
            kind,
            policy_id: "P1".into(),
            policy_name: "Finance".into(),
            email: "a@acme.example".into(),
            role: Some(Role::Admin),
            old_role: Some("user".into()),
            manager_email: "cfo@acme.example".into(),
            employee_id: None,
            expect_submits_to: None,
            old_submits_to: None,
            old_employee_id: None,
            requested_by: ObjectKey::new("finance", "team"),
            reason: String::new(),
        }
    }

    #[test]
    fn each_kind_has_its_symbol_verb_noun_and_event_reason() {
        let words: Vec<(char, &str, &str, &str)> = [
            ChangeKind::Grant,
            ChangeKind::RoleChange,
            ChangeKind::ApproverChange,
            ChangeKind::EmployeeIdChange,
            ChangeKind::Revoke,
        ]
        .into_iter()
        .map(|k| (k.symbol(), k.verb(), k.noun(), k.event_reason()))
        .collect();
        assert_eq!(
            words,
            [
                ('+', "grant", "grant", "Granted"),
                ('~', "change role", "role change", "RoleChanged"),
                ('~', "change approver", "approver change", "ApproverChanged"),
                (
                    '~',
                    "change employeeID",
                    "employeeID change",
                    "EmployeeIDChanged"
                ),
                ('-', "revoke", "revocation", "Revoked"),
            ]
        );
    }

    #[test]
    fn a_revocation_terminates_and_every_other_change_sets_the_role() {
        let revoke = change(ChangeKind::Revoke).record();
        assert!(revoke.is_terminated);
        assert_eq!(revoke.role, None);
        assert_eq!(
            (revoke.employee_email.as_str(), revoke.policy_id.as_str()),
            ("a@acme.example", "P1")
        );
        for kind in [
            ChangeKind::Grant,
            ChangeKind::RoleChange,
            ChangeKind::ApproverChange,
            ChangeKind::EmployeeIdChange,
        ] {
            let record = change(kind).record();
            assert!(!record.is_terminated, "{kind:?}");
            assert_eq!(record.role, Some(Role::Admin), "{kind:?}");
            assert_eq!(record.manager_email, "cfo@acme.example");
        }
    }

    #[test]
    fn a_removal_is_a_revocation_or_a_lower_role() {
        let role_change = |old: &str, new: Role| Change {
            old_role: Some(old.into()),
            role: Some(new),
            ..change(ChangeKind::RoleChange)
        };
        assert!(change(ChangeKind::Revoke).is_removal());
        assert!(!change(ChangeKind::Grant).is_removal());
        assert!(role_change("admin", Role::User).is_removal());
        assert!(role_change("Admin", Role::Auditor).is_removal());
        assert!(!role_change("user", Role::Admin).is_removal());
        assert!(
            !role_change("user", Role::User).is_removal(),
            "no lower role"
        );
        assert!(
            role_change("owner", Role::Admin).is_removal(),
            "unknown: counted"
        );

        let plan = Plan {
            changes: vec![change(ChangeKind::Grant)],
            ..Plan::default()
        };
        assert!(!plan.is_empty() && !plan.has_blocks());
        assert!(Plan::default().is_empty());
    }

    #[test]
    fn each_change_is_described_as_done() {
        let mut employee_id = change(ChangeKind::EmployeeIdChange);
        employee_id.employee_id = Some("E-2".into());
        let described: Vec<String> = [
            change(ChangeKind::Grant),
            change(ChangeKind::RoleChange),
            change(ChangeKind::ApproverChange),
            employee_id,
            change(ChangeKind::Revoke),
        ]
        .iter()
        .map(Change::describe)
        .collect();
        assert_eq!(
            described,
            [
                "granted a@acme.example as admin on Finance",
                "changed a@acme.example from user to admin on Finance",
                "a@acme.example now submits to cfo@acme.example on Finance",
                "a@acme.example now has employeeID E-2 on Finance",
                "revoked a@acme.example (was user) from Finance",
            ]
        );
    }

    #[test]
    fn the_detail_names_every_attribute_that_moves() {
        let mut grant = change(ChangeKind::Grant);
        assert_eq!(grant.detail(), "admin");
        grant.expect_submits_to = Some("cfo@acme.example".into());
        grant.employee_id = Some("E-1".into());
        assert_eq!(
            grant.detail(),
            "admin, submits to cfo@acme.example, employeeID E-1"
        );

        let mut role = change(ChangeKind::RoleChange);
        role.expect_submits_to = Some("cfo@acme.example".into());
        role.old_submits_to = Some("ceo@acme.example".into());
        role.employee_id = Some("E-1".into());
        role.old_employee_id = Some("E-1".into());
        assert_eq!(
            role.detail(),
            "user -> admin, submits to ceo@acme.example -> cfo@acme.example"
        );

        let mut approver = change(ChangeKind::ApproverChange);
        approver.expect_submits_to = Some("cfo@acme.example".into());
        assert_eq!(approver.detail(), "submits to cfo@acme.example");
        approver.old_submits_to = Some("cfo@acme.example".into());
        assert_eq!(
            approver.detail(),
            "",
            "an approver that stays is not a move"
        );

        let mut id = change(ChangeKind::EmployeeIdChange);
        id.employee_id = Some("E-2".into());
        id.old_employee_id = Some("E-1".into());
        assert_eq!(id.detail(), "employeeID E-1 -> E-2");

        assert_eq!(change(ChangeKind::Revoke).detail(), "was user");
    }
}
