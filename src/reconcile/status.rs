//! From what a sync found to the status objects get: pure functions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::bounded::{capped_message, first_few};
use super::model::{AccessObject, ConnectorObject};
use super::plan::ObjectPlan;
use super::validate::{connector_warnings, describe};
use crate::api::{
    AccessMode, AccessPhase, ConditionStatus, ConditionType, ConditionUpdate, ConnectorPhase,
    ExpensifyConnectorStatus, ManagedMember, MemberFailure, PlanSummary, PolicyAccessStatus,
    PolicyInfo, RECONCILE_REQUESTED_AT, Reason, STATUS_LIST_CAP, remember_handled, set_condition,
};

/// Everything that decides one PolicyAccess's status after a sync.
#[derive(Debug, Clone)]
pub struct AccessFindings<'a> {
    pub object: &'a AccessObject,
    /// The plan against what Expensify shows after the writes.
    pub after: &'a ObjectPlan,
    /// The ledger entries the object holds after the sync.
    pub managed: Vec<ManagedMember>,
    /// Changes this object asked for in this sync (before the writes).
    pub attempted: PlanSummary,
    pub failures: Vec<MemberFailure>,
    /// Set when the connector could not sync at all.
    pub connector_problem: Option<String>,
    /// The connector is suspended on purpose: objects wait, they are not in error.
    pub connector_suspended: bool,
    /// The `allow-mass-revocation` value this sync used for the object.
    pub mass_revocation_used: Option<String>,
}

struct Verdict {
    phase: AccessPhase,
    ready: ConditionStatus,
    reason: Reason,
    message: String,
    stalled: bool,
}

impl Verdict {
    fn not_ready(phase: AccessPhase, reason: Reason, message: String, stalled: bool) -> Self {
        Verdict {
            phase,
            ready: ConditionStatus::False,
            reason,
            message,
            stalled,
        }
    }

    fn ready(reason: Reason, message: String) -> Self {
        Verdict {
            phase: AccessPhase::Synced,
            ready: ConditionStatus::True,
            reason,
            message,
            stalled: false,
        }
    }
}

/// The first finding that decides the object's phase, in order of precedence.
/// Its message is capped ([`capped_message`]): the bound on the status's size besides the
/// capped lists and the ledger, which is never cut.
fn verdict(f: &AccessFindings<'_>) -> Verdict {
    let mut verdict = connector_not_ready(f)
        .or_else(|| invalid(f))
        .or_else(|| deleting(f))
        .or_else(|| failed_changes(f))
        .or_else(|| blocked(f))
        .or_else(|| not_writing(f))
        .unwrap_or_else(|| converging(f));
    verdict.message = capped_message(verdict.message);
    verdict
}

fn connector_not_ready(f: &AccessFindings<'_>) -> Option<Verdict> {
    let problem = f.connector_problem.clone()?;
    Some(if f.connector_suspended {
        Verdict::not_ready(
            AccessPhase::Pending,
            Reason::ConnectorSuspended,
            problem,
            false,
        )
    } else {
        Verdict::not_ready(
            AccessPhase::Error,
            Reason::ConnectorNotReady,
            problem,
            false,
        )
    })
}

fn invalid(f: &AccessFindings<'_>) -> Option<Verdict> {
    let problems = &f.after.problems;
    let reason = if f.after.not_granted {
        Reason::NotGranted
    } else {
        Reason::InvalidSpec
    };
    (!problems.is_empty())
        .then(|| Verdict::not_ready(AccessPhase::Error, reason, describe(problems), true))
}

/// A deletion waits while the object holds ledger entries: to take back, to hand off, or
/// that cannot be settled (policy out of sight).
fn deleting(f: &AccessFindings<'_>) -> Option<Verdict> {
    if !f.object.deleting {
        return None;
    }
    if !f.after.notes.is_empty() && !f.managed.is_empty() {
        let message = format!(
            "deletion waits: {} ledger entr(ies) cannot be settled: {}",
            f.managed.len(),
            first_few(&f.after.notes, "; ")
        );
        return Some(Verdict::not_ready(
            AccessPhase::Error,
            Reason::CannotSettle,
            message,
            true,
        ));
    }
    if !f.after.blocks.is_empty() {
        return None;
    }
    let message = format!(
        "{} ledger entr(ies) still to take back before deletion completes",
        f.managed.len()
    );
    Some(Verdict::not_ready(
        AccessPhase::Syncing,
        Reason::Deleting,
        message,
        false,
    ))
}

fn failed_changes(f: &AccessFindings<'_>) -> Option<Verdict> {
    if f.failures.is_empty() {
        return None;
    }
    let shown: Vec<String> = f
        .failures
        .iter()
        .take(3)
        .map(|m| format!("{}: {}", m.email, m.reason))
        .collect();
    let message = format!(
        "{} member change(s) failed and are retried next sync: {}",
        f.failures.len(),
        shown.join("; ")
    );
    Some(Verdict::not_ready(
        AccessPhase::Error,
        Reason::PartialFailure,
        message,
        false,
    ))
}

fn blocked(f: &AccessFindings<'_>) -> Option<Verdict> {
    let block = f.after.blocks.first()?;
    let mut message = block.message().to_string();
    if f.after.blocks.len() > 1 {
        message.push_str(&format!(" (and {} more)", f.after.blocks.len() - 1));
    }
    Some(Verdict::not_ready(
        AccessPhase::Blocked,
        block.reason(),
        message,
        true,
    ))
}

fn not_writing(f: &AccessFindings<'_>) -> Option<Verdict> {
    let differences = f.after.drift.len();
    if f.object.spec.suspend {
        let message =
            format!("suspended: nothing is written; {differences} difference(s) from Expensify");
        return Some(Verdict::not_ready(
            AccessPhase::Pending,
            Reason::Suspended,
            message,
            false,
        ));
    }
    (f.object.spec.mode == AccessMode::ObserveOnly).then(|| {
        let message =
            format!("observe-only: {differences} difference(s) from Expensify, nothing written");
        Verdict::ready(Reason::Observed, message)
    })
}

fn converging(f: &AccessFindings<'_>) -> Verdict {
    let after = f.after;
    if !after.drift.is_empty() || after.planned != PlanSummary::default() {
        let message = format!(
            "{} difference(s) from Expensify remain",
            after.drift.len().max(1)
        );
        return Verdict::not_ready(AccessPhase::Syncing, Reason::Progressing, message, false);
    }
    let mut message = format!("{} of {} member(s) in sync", after.in_sync, after.desired);
    if !after.notes.is_empty() {
        message.push_str(&format!("; {}", first_few(&after.notes, "; ")));
    }
    Verdict::ready(Reason::Synced, message)
}

/// Why no sync looked at an object.
#[derive(Debug, Clone)]
pub enum NotSynced {
    /// The object itself is invalid before any connector is involved.
    Invalid(Vec<super::problem::Problem>),
    /// Its connector could not sync; `suspended` when that was on purpose.
    ConnectorDown { message: String, suspended: bool },
}

/// The status of an object that no sync could look at; its inventory is kept as it was.
pub fn unsynced_status(
    object: &AccessObject,
    why: NotSynced,
    now: Timestamp,
) -> PolicyAccessStatus {
    let (problems, connector_problem, connector_suspended) = match why {
        NotSynced::Invalid(problems) => (problems, None, false),
        NotSynced::ConnectorDown { message, suspended } => (Vec::new(), Some(message), suspended),
    };
    let after = ObjectPlan {
        problems,
        ..ObjectPlan::default()
    };
    let findings = AccessFindings {
        object,
        after: &after,
        managed: object.ledger_entries(),
        attempted: PlanSummary::default(),
        failures: Vec::new(),
        connector_problem,
        connector_suspended,
        mass_revocation_used: None,
    };
    access_status(findings, now)
}

/// The status a PolicyAccess gets after a sync.
pub fn access_status(f: AccessFindings<'_>, now: Timestamp) -> PolicyAccessStatus {
    let previous = f.object.status.clone().unwrap_or_default();
    let verdict = verdict(&f);
    let conditions = access_conditions(&f, &verdict, &previous, now);
    let connector_down = f.connector_problem.is_some();
    let mut failures = f.failures.clone();
    failures.truncate(STATUS_LIST_CAP);
    let mut drift = f.after.drift.clone();
    drift.truncate(STATUS_LIST_CAP);
    let last_plan = last_plan(&f, previous.last_plan);
    let (policy_id, policy_name) = status_policy(&f, previous.policy_id, previous.policy_name);
    PolicyAccessStatus {
        phase: verdict.phase,
        observed_generation: f.object.generation,
        conditions,
        policy_id,
        policy_name,
        desired_members: i32::try_from(f.after.desired).unwrap_or(i32::MAX),
        in_sync_members: i32::try_from(f.after.in_sync).unwrap_or(i32::MAX),
        // A connector that could not sync checked nothing: the ledger stays as it was.
        managed_members: if connector_down {
            previous.managed_members
        } else {
            f.managed
        },
        last_sync_time: Some(Time(now)),
        last_plan,
        drift: if connector_down {
            previous.drift
        } else {
            drift
        },
        failures,
        next_expiry: f.after.next_expiry.map(Time),
        message: Some(verdict.message),
        last_handled_reconcile_at: f
            .object
            .annotations
            .get(RECONCILE_REQUESTED_AT)
            .cloned()
            .or(previous.last_handled_reconcile_at),
        handled_mass_revocations: handled(
            previous.handled_mass_revocations,
            previous.last_handled_mass_revocation.as_deref(),
            f.mass_revocation_used.as_deref(),
        ),
        last_handled_mass_revocation: f
            .mass_revocation_used
            .or(previous.last_handled_mass_revocation),
    }
}

/// The policy a status names: the one resolved; else (an unknown policy, a connector that
/// could not sync) what the spec asks for, so a typo shows as typed and not as the last
/// good name, with the other half of the last status kept only when it was about the same
/// ask.
fn status_policy(
    f: &AccessFindings<'_>,
    previous_id: Option<String>,
    previous_name: Option<String>,
) -> (Option<String>, Option<String>) {
    let asked = &f.object.spec.policy;
    let same_ask = match (&asked.id, &asked.name) {
        (Some(id), _) => previous_id.as_ref() == Some(id),
        (None, Some(name)) => previous_name.as_ref() == Some(name),
        (None, None) => false,
    };
    let (previous_id, previous_name) = if same_ask {
        (previous_id, previous_name)
    } else {
        (None, None)
    };
    let id = f
        .after
        .policy_id
        .clone()
        .or_else(|| asked.id.clone())
        .or(previous_id);
    let name = f
        .after
        .policy_name
        .clone()
        .or_else(|| asked.name.clone())
        .or(previous_name);
    (id, name)
}

/// The changes of the last sync that made any (ObserveOnly: would make now). A sync with
/// nothing to do keeps the previous summary, so a steady state rewrites no status.
fn last_plan(f: &AccessFindings<'_>, previous: Option<PlanSummary>) -> Option<PlanSummary> {
    let nothing_done = f.attempted == PlanSummary::default();
    if nothing_done && f.object.spec.mode != AccessMode::ObserveOnly && previous.is_some() {
        return previous;
    }
    Some(f.attempted)
}

/// `Ready`, `Synced`, and the kstatus "abnormal-true" `Stalled` and `Reconciling`
/// (present only while true).
fn access_conditions(
    f: &AccessFindings<'_>,
    verdict: &Verdict,
    previous: &PolicyAccessStatus,
    now: Timestamp,
) -> Vec<Condition> {
    let generation = f.object.generation;
    let mut conditions = previous.conditions.clone();
    let mut set = |type_, status, reason, message: &str| {
        let update = ConditionUpdate {
            type_,
            status,
            reason,
            message,
            observed_generation: generation,
        };
        set_condition(&mut conditions, update, now);
    };
    set(
        ConditionType::Ready,
        verdict.ready,
        verdict.reason,
        &verdict.message,
    );
    let differences = f.after.drift.len();
    if f.connector_problem.is_some() || !f.after.problems.is_empty() {
        set(
            ConditionType::Synced,
            ConditionStatus::Unknown,
            verdict.reason,
            &verdict.message,
        );
    } else if differences == 0 {
        let message = "Expensify matches the spec";
        set(
            ConditionType::Synced,
            ConditionStatus::True,
            Reason::InSync,
            message,
        );
    } else {
        let message = format!("{differences} difference(s) from Expensify");
        set(
            ConditionType::Synced,
            ConditionStatus::False,
            Reason::Drift,
            &message,
        );
    }
    if verdict.stalled {
        set(
            ConditionType::Stalled,
            ConditionStatus::True,
            verdict.reason,
            &verdict.message,
        );
    }
    if verdict.phase == AccessPhase::Syncing {
        set(
            ConditionType::Reconciling,
            ConditionStatus::True,
            verdict.reason,
            &verdict.message,
        );
    }
    let keep_abnormal = |c: &Condition| {
        if c.type_ == ConditionType::Stalled.as_str() {
            verdict.stalled
        } else if c.type_ == ConditionType::Reconciling.as_str() {
            verdict.phase == AccessPhase::Syncing
        } else {
            true
        }
    };
    conditions.retain(keep_abnormal);
    conditions
}

/// The remembered allowance values once `used` (if any) is handled: the value it replaces
/// as the last one is remembered too.
pub fn handled(mut remembered: Vec<String>, last: Option<&str>, used: Option<&str>) -> Vec<String> {
    if let Some(used) = used {
        if let Some(last) = last.filter(|l| *l != used) {
            remember_handled(&mut remembered, last);
        }
        remember_handled(&mut remembered, used);
    }
    remembered
}

/// The connector's `Ready` condition.
fn ready(
    status: ConditionStatus,
    reason: Reason,
    message: &str,
    observed_generation: Option<i64>,
) -> ConditionUpdate<'_> {
    ConditionUpdate {
        type_: ConditionType::Ready,
        status,
        reason,
        message,
        observed_generation,
    }
}

/// What a connector's sync saw, for its status.
#[derive(Debug, Clone, Default)]
pub struct ConnectorFindings {
    pub policies: Vec<PolicyInfo>,
    pub user_count: usize,
    /// The error that stopped the sync, if any.
    pub problem: Option<(Reason, String)>,
    pub mass_revocation_used: Option<String>,
    pub suspended: bool,
}

/// The status a connector gets after a sync attempt.
pub fn connector_status(
    connector: &ConnectorObject,
    f: ConnectorFindings,
    now: Timestamp,
) -> ExpensifyConnectorStatus {
    let previous = connector.status.clone().unwrap_or_default();
    let generation = connector.generation;
    let mut conditions = previous.conditions.clone();
    let mut status = ExpensifyConnectorStatus {
        observed_generation: generation,
        last_sync_time: Some(Time(now)),
        last_handled_reconcile_at: connector
            .annotations
            .get(RECONCILE_REQUESTED_AT)
            .cloned()
            .or(previous.last_handled_reconcile_at.clone()),
        handled_mass_revocations: handled(
            previous.handled_mass_revocations.clone(),
            previous.last_handled_mass_revocation.as_deref(),
            f.mass_revocation_used.as_deref(),
        ),
        last_handled_mass_revocation: f
            .mass_revocation_used
            .or(previous.last_handled_mass_revocation.clone()),
        owners: super::validate::owners(connector),
        ..previous.clone()
    };
    if f.suspended {
        status.message = Some("suspended: nothing is read or written".into());
        set_condition(
            &mut conditions,
            ready(
                ConditionStatus::False,
                Reason::Suspended,
                "suspended",
                generation,
            ),
            now,
        );
        status.conditions = conditions;
        status.last_sync_time = previous.last_sync_time;
        return status;
    }
    if let Some((reason, message)) = f.problem {
        let message = capped_message(message);
        status.phase = ConnectorPhase::Error;
        // Counted by a sync that read Expensify; this one read nothing, so a count now
        // would be a stale one shown as current.
        status.user_count = None;
        status.policy_count = None;
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, reason, &message, generation),
            now,
        );
        status.message = Some(message);
    } else {
        connected(
            &mut status,
            &mut conditions,
            connector,
            f.policies,
            f.user_count,
            now,
        );
    }
    status.conditions = conditions;
    status
}

/// A sync that read Expensify: `Connected`, with what it counted and the spec's warnings.
fn connected(
    status: &mut ExpensifyConnectorStatus,
    conditions: &mut Vec<Condition>,
    connector: &ConnectorObject,
    mut policies: Vec<PolicyInfo>,
    user_count: usize,
    now: Timestamp,
) {
    status.phase = ConnectorPhase::Connected;
    let mut message = format!("{} policies, {} people", policies.len(), user_count);
    let warnings = connector_warnings(connector);
    if !warnings.is_empty() {
        message.push_str(&format!(
            "; warning: {}",
            first_few(warnings.iter().map(|w| &w.message), "; ")
        ));
    }
    let message = capped_message(message);
    set_condition(
        conditions,
        ready(
            ConditionStatus::True,
            Reason::Synced,
            &message,
            connector.generation,
        ),
        now,
    );
    status.last_successful_sync_time = Some(Time(now));
    status.user_count = Some(i64::try_from(user_count).unwrap_or(i64::MAX));
    status.policy_count = Some(i64::try_from(policies.len()).unwrap_or(i64::MAX));
    policies.truncate(STATUS_LIST_CAP);
    status.policies = policies;
    status.message = Some(message);
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::api::{
        ConnectorRef, MemberSpec, PolicyAccessSpec, PolicySelector, STATUS_MESSAGE_CAP,
    };
    use crate::reconcile::model::ObjectKey;
    use crate::reconcile::validate::Problem;

    pub(super) fn object() -> AccessObject {
        AccessObject {
            key: ObjectKey::new("finance", "team"),
            generation: Some(1),
            created: None,
            annotations: std::collections::BTreeMap::new(),
            spec: PolicyAccessSpec {
                requests: None,
                connector_ref: ConnectorRef {
                    name: "acme".into(),
                    namespace: None,
                },
                policy: PolicySelector {
                    id: Some("P1".into()),
                    name: None,
                },
                mode: AccessMode::Additive,
                deletion_policy: crate::api::DeletionPolicy::Revoke,
                allow_from: vec![],
                suspend: false,
                members: vec![MemberSpec {
                    email: "a@acme.example".into(),
                    role: None,
                    submits_to: None,
                    employee_id: None,
                    expires_at: None,
                }],
            },
            deleting: false,
            status: None,
        }
    }

    /// The findings of a sync that found `after` for `object` and nothing else.
    pub(super) fn findings<'a>(
        object: &'a AccessObject,
        after: &'a ObjectPlan,
    ) -> AccessFindings<'a> {
        AccessFindings {
            object,
            after,
            managed: Vec::new(),
            attempted: PlanSummary::default(),
            failures: Vec::new(),
            connector_problem: None,
            connector_suspended: false,
            mass_revocation_used: None,
        }
    }

    pub(super) fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_status_message_is_capped_however_many_problems_it_names() {
        let object = object();
        let problems: Vec<Problem> = (0..5000)
            .map(|i| {
                Problem::new(
                    format!("spec.members[{i}].email"),
                    "is not an email address",
                )
            })
            .collect();
        let status = unsynced_status(&object, NotSynced::Invalid(problems), now());
        let message = status.message.unwrap();
        assert!(message.len() <= STATUS_MESSAGE_CAP, "{}", message.len());
        assert!(message.ends_with("(cut)"));
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.message.len() <= STATUS_MESSAGE_CAP)
        );
    }
}

/// The phase, the Ready reason and the message of each finding, in order of precedence.
#[cfg(test)]
mod verdict_tests {
    use super::bound_tests::{findings, now, object};
    use super::*;
    use crate::api::{Drift, DriftKind};
    use crate::reconcile::plan::Block;

    /// Phase, Ready reason and message.
    fn said(f: AccessFindings<'_>) -> (AccessPhase, String, String) {
        let status = access_status(f, now());
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        (
            status.phase,
            ready.reason.clone(),
            status.message.unwrap_or_default(),
        )
    }

    fn expect(phase: AccessPhase, reason: Reason, message: &str) -> (AccessPhase, String, String) {
        (phase, reason.as_str().to_string(), message.to_string())
    }

    fn entry() -> ManagedMember {
        ManagedMember::added_user("P1", "a@acme.example")
    }

    fn missing(email: &str) -> Drift {
        Drift {
            email: email.into(),
            kind: DriftKind::Missing,
            desired: Some("user".into()),
            actual: None,
        }
    }

    #[test]
    fn a_connector_that_cannot_sync_decides_first() {
        let object = object();
        let after = ObjectPlan {
            blocks: vec![Block::Conflict("conflict".into())],
            ..ObjectPlan::default()
        };
        let mut f = findings(&object, &after);
        f.connector_problem = Some("credentials rejected".into());
        assert_eq!(
            said(f.clone()),
            expect(
                AccessPhase::Error,
                Reason::ConnectorNotReady,
                "credentials rejected"
            )
        );
        f.connector_suspended = true;
        assert_eq!(
            said(f),
            expect(
                AccessPhase::Pending,
                Reason::ConnectorSuspended,
                "credentials rejected"
            )
        );
    }

    #[test]
    fn a_deletion_waits_for_what_it_holds_and_says_what_cannot_be_settled() {
        let mut deleting = object();
        deleting.deleting = true;
        let settling = ObjectPlan::default();
        let mut f = findings(&deleting, &settling);
        f.managed = vec![entry()];
        assert_eq!(
            said(f.clone()),
            expect(
                AccessPhase::Syncing,
                Reason::Deleting,
                "1 ledger entr(ies) still to take back before deletion completes"
            )
        );

        let stuck = ObjectPlan {
            notes: vec!["P9 is out of sight".into()],
            ..ObjectPlan::default()
        };
        f.after = &stuck;
        assert_eq!(
            said(f.clone()),
            expect(
                AccessPhase::Error,
                Reason::CannotSettle,
                "deletion waits: 1 ledger entr(ies) cannot be settled: P9 is out of sight"
            )
        );
        // Notes with nothing held left: nothing waits on them.
        f.managed.clear();
        assert_eq!(said(f.clone()).1, Reason::Deleting.as_str());

        let blocked = ObjectPlan {
            blocks: vec![Block::RevocationLimit("limit".into())],
            ..ObjectPlan::default()
        };
        f.after = &blocked;
        assert_eq!(
            said(f),
            expect(AccessPhase::Blocked, Reason::RevocationLimit, "limit")
        );

        // An object not being deleted is not reported as deleting.
        let live = object();
        let mut f = findings(&live, &settling);
        f.managed = vec![entry()];
        assert_eq!(said(f).1, Reason::Synced.as_str());
    }

    #[test]
    fn failed_changes_come_before_blocks() {
        let object = object();
        let after = ObjectPlan {
            blocks: vec![Block::Conflict("conflict".into())],
            ..ObjectPlan::default()
        };
        let mut f = findings(&object, &after);
        f.failures = vec![
            MemberFailure {
                email: "a@acme.example".into(),
                reason: "HTTP 500".into(),
            },
            MemberFailure {
                email: "b@acme.example".into(),
                reason: "timeout".into(),
            },
        ];
        assert_eq!(
            said(f),
            expect(
                AccessPhase::Error,
                Reason::PartialFailure,
                "2 member change(s) failed and are retried next sync: a@acme.example: HTTP 500; b@acme.example: timeout"
            )
        );
    }

    #[test]
    fn a_block_names_itself_and_how_many_more() {
        let object = object();
        let one = ObjectPlan {
            blocks: vec![Block::Protected("ceo is protected".into())],
            ..ObjectPlan::default()
        };
        assert_eq!(
            said(findings(&object, &one)),
            expect(AccessPhase::Blocked, Reason::Protected, "ceo is protected")
        );
        let two = ObjectPlan {
            blocks: vec![
                Block::Conflict("conflict".into()),
                Block::Held("held".into()),
            ],
            ..ObjectPlan::default()
        };
        assert_eq!(
            said(findings(&object, &two)),
            expect(
                AccessPhase::Blocked,
                Reason::Conflict,
                "conflict (and 1 more)"
            )
        );
    }

    #[test]
    fn suspended_and_observe_only_objects_say_how_far_off_they_are() {
        let after = ObjectPlan {
            drift: vec![missing("a@acme.example")],
            ..ObjectPlan::default()
        };
        let mut suspended = object();
        suspended.spec.suspend = true;
        assert_eq!(
            said(findings(&suspended, &after)),
            expect(
                AccessPhase::Pending,
                Reason::Suspended,
                "suspended: nothing is written; 1 difference(s) from Expensify"
            )
        );
        let mut observing = object();
        observing.spec.mode = AccessMode::ObserveOnly;
        assert_eq!(
            said(findings(&observing, &after)),
            expect(
                AccessPhase::Synced,
                Reason::Observed,
                "observe-only: 1 difference(s) from Expensify, nothing written"
            )
        );
    }

    #[test]
    fn an_object_is_synced_only_with_no_drift_and_nothing_planned() {
        let object = object();
        let drifting = ObjectPlan {
            drift: vec![missing("a@acme.example"), missing("b@acme.example")],
            ..ObjectPlan::default()
        };
        assert_eq!(
            said(findings(&object, &drifting)),
            expect(
                AccessPhase::Syncing,
                Reason::Progressing,
                "2 difference(s) from Expensify remain"
            )
        );
        let planning = ObjectPlan {
            planned: PlanSummary {
                grants: 1,
                ..PlanSummary::default()
            },
            ..ObjectPlan::default()
        };
        assert_eq!(
            said(findings(&object, &planning)),
            expect(
                AccessPhase::Syncing,
                Reason::Progressing,
                "1 difference(s) from Expensify remain"
            )
        );
        let synced = ObjectPlan {
            desired: 4,
            in_sync: 4,
            notes: vec!["x left as is".into()],
            ..ObjectPlan::default()
        };
        assert_eq!(
            said(findings(&object, &synced)),
            expect(
                AccessPhase::Synced,
                Reason::Synced,
                "4 of 4 member(s) in sync; x left as is"
            )
        );
    }
}

/// The policy a status names, and the last plan it keeps.
#[cfg(test)]
mod policy_tests {
    use super::bound_tests::{findings, now, object};
    use super::*;
    use crate::api::PolicySelector;

    fn status_of(
        object: &AccessObject,
        after: &ObjectPlan,
        attempted: PlanSummary,
    ) -> PolicyAccessStatus {
        let attempted_now = AccessFindings {
            attempted,
            ..findings(object, after)
        };
        access_status(attempted_now, now())
    }

    fn named(id: Option<&str>, name: Option<&str>) -> (Option<String>, Option<String>) {
        (id.map(str::to_string), name.map(str::to_string))
    }

    #[test]
    fn the_status_names_the_resolved_policy_else_the_ask_as_typed() {
        let mut object = object();
        let resolved = ObjectPlan {
            policy_id: Some("P1".into()),
            policy_name: Some("Finance".into()),
            ..ObjectPlan::default()
        };
        let status = status_of(&object, &resolved, PlanSummary::default());
        assert_eq!(
            (status.policy_id, status.policy_name),
            named(Some("P1"), Some("Finance"))
        );

        // Unresolved now, same id asked: the last name is kept beside it.
        object.status = Some(PolicyAccessStatus {
            policy_id: Some("P1".into()),
            policy_name: Some("Finance".into()),
            ..PolicyAccessStatus::default()
        });
        let unresolved = ObjectPlan::default();
        let status = status_of(&object, &unresolved, PlanSummary::default());
        assert_eq!(
            (status.policy_id, status.policy_name),
            named(Some("P1"), Some("Finance"))
        );

        // Another id asked (a typo): shown as typed, without the old name.
        object.spec.policy.id = Some("P9".into());
        let status = status_of(&object, &unresolved, PlanSummary::default());
        assert_eq!(
            (status.policy_id, status.policy_name),
            named(Some("P9"), None)
        );

        // By name: the same name keeps the last id; another name drops it.
        object.spec.policy = PolicySelector {
            id: None,
            name: Some("Finance".into()),
        };
        let status = status_of(&object, &unresolved, PlanSummary::default());
        assert_eq!(
            (status.policy_id, status.policy_name),
            named(Some("P1"), Some("Finance"))
        );
        object.spec.policy.name = Some("Fnance".into());
        let status = status_of(&object, &unresolved, PlanSummary::default());
        assert_eq!(
            (status.policy_id, status.policy_name),
            named(None, Some("Fnance"))
        );
    }

    #[test]
    fn the_last_plan_is_the_last_that_did_something() {
        let mut object = object();
        let after = ObjectPlan::default();
        let did = PlanSummary {
            grants: 2,
            ..PlanSummary::default()
        };
        assert_eq!(status_of(&object, &after, did).last_plan, Some(did));
        assert_eq!(
            status_of(&object, &after, PlanSummary::default()).last_plan,
            Some(PlanSummary::default()),
            "a first sync records that it did nothing"
        );
        object.status = Some(PolicyAccessStatus {
            last_plan: Some(did),
            ..PolicyAccessStatus::default()
        });
        assert_eq!(
            status_of(&object, &after, PlanSummary::default()).last_plan,
            Some(did),
            "a steady state keeps it"
        );
        object.spec.mode = AccessMode::ObserveOnly;
        assert_eq!(
            status_of(&object, &after, PlanSummary::default()).last_plan,
            Some(PlanSummary::default()),
            "observe-only: what it would do now"
        );
    }
}

/// `Ready`, `Synced`, and `Stalled` / `Reconciling` present only while true.
#[cfg(test)]
mod condition_tests {
    use super::bound_tests::{findings, now, object};
    use super::*;
    use crate::api::{Drift, DriftKind};
    use crate::reconcile::validate::Problem;

    fn conditions(object: &AccessObject, after: &ObjectPlan) -> Vec<(String, String, String)> {
        let status = access_status(findings(object, after), now());
        let mut found: Vec<(String, String, String)> = status
            .conditions
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect();
        found.sort();
        found
    }

    fn row(type_: &str, status: &str, reason: Reason) -> (String, String, String) {
        (type_.into(), status.into(), reason.as_str().into())
    }

    #[test]
    fn each_verdict_sets_its_conditions_and_clears_the_abnormal_ones_that_ended() {
        let mut object = object();
        let invalid = ObjectPlan {
            problems: vec![Problem::new("spec.members[0].email", "is not an email")],
            ..ObjectPlan::default()
        };
        assert_eq!(
            conditions(&object, &invalid),
            [
                row("Ready", "False", Reason::InvalidSpec),
                row("Stalled", "True", Reason::InvalidSpec),
                row("Synced", "Unknown", Reason::InvalidSpec),
            ]
        );

        let drifting = ObjectPlan {
            drift: vec![Drift {
                email: "a@acme.example".into(),
                kind: DriftKind::Missing,
                desired: Some("user".into()),
                actual: None,
            }],
            ..ObjectPlan::default()
        };
        assert_eq!(
            conditions(&object, &drifting),
            [
                row("Ready", "False", Reason::Progressing),
                row("Reconciling", "True", Reason::Progressing),
                row("Synced", "False", Reason::Drift),
            ]
        );

        // Both abnormal conditions set by earlier syncs, then in sync: both go.
        let mut previous = access_status(findings(&object, &invalid), now());
        previous.conditions.extend(
            access_status(findings(&object, &drifting), now())
                .conditions
                .into_iter()
                .filter(|c| c.type_ == "Reconciling"),
        );
        object.status = Some(previous);
        assert_eq!(
            conditions(&object, &ObjectPlan::default()),
            [
                row("Ready", "True", Reason::Synced),
                row("Synced", "True", Reason::InSync),
            ]
        );
    }

    #[test]
    fn a_handled_allowance_is_remembered_with_the_one_it_replaces() {
        assert_eq!(handled(vec![], Some("old"), None), Vec::<String>::new());
        assert_eq!(handled(vec![], None, Some("new")), ["new"]);
        assert_eq!(handled(vec![], Some("old"), Some("new")), ["old", "new"]);
        assert_eq!(handled(vec![], Some("same"), Some("same")), ["same"]);
    }
}

/// A connector's status after a sync that read Expensify, one that failed, and a
/// suspended one.
#[cfg(test)]
mod connector_tests {
    use super::bound_tests::now;
    use super::*;
    use crate::reconcile::validate::tests::connector;

    fn policy(id: &str) -> PolicyInfo {
        PolicyInfo {
            id: id.into(),
            name: format!("Policy {id}"),
            plan: "corporate".into(),
            owner: "cfo@acme.example".into(),
            employee_count: 3,
        }
    }

    fn earlier() -> Timestamp {
        "2026-05-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_sync_that_read_expensify_is_connected_and_counts_what_it_saw() {
        let mut acme = connector("finance", &[]);
        acme.generation = Some(4);
        acme.spec.owners = vec![" CFO@acme.example".into()];
        acme.annotations
            .insert(RECONCILE_REQUESTED_AT.into(), "2026-06-01T00:00:00Z".into());
        let found = ConnectorFindings {
            policies: vec![policy("P1"), policy("P2")],
            user_count: 7,
            mass_revocation_used: Some("once".into()),
            ..ConnectorFindings::default()
        };
        let status = connector_status(&acme, found, now());
        assert_eq!(status.phase, ConnectorPhase::Connected);
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.last_sync_time, Some(Time(now())));
        assert_eq!(status.last_successful_sync_time, Some(Time(now())));
        assert_eq!(
            status.last_handled_reconcile_at.as_deref(),
            Some("2026-06-01T00:00:00Z")
        );
        assert_eq!(status.last_handled_mass_revocation.as_deref(), Some("once"));
        assert_eq!(status.handled_mass_revocations, ["once"]);
        assert_eq!((status.user_count, status.policy_count), (Some(7), Some(2)));
        assert_eq!(status.policies.len(), 2);
        assert_eq!(status.owners, ["cfo@acme.example"]);
        assert_eq!(status.message.as_deref(), Some("2 policies, 7 people"));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Synced")
        );
    }

    #[test]
    fn a_failed_sync_keeps_no_stale_counts_and_a_suspended_one_keeps_its_last_sync_time() {
        let mut acme = connector("finance", &[]);
        acme.status = Some(ExpensifyConnectorStatus {
            last_sync_time: Some(Time(earlier())),
            user_count: Some(7),
            policy_count: Some(2),
            last_handled_reconcile_at: Some("before".into()),
            ..ExpensifyConnectorStatus::default()
        });
        let failed = ConnectorFindings {
            problem: Some((Reason::ExpensifyError, "HTTP 500".into())),
            ..ConnectorFindings::default()
        };
        let status = connector_status(&acme, failed, now());
        assert_eq!(status.phase, ConnectorPhase::Error);
        assert_eq!((status.user_count, status.policy_count), (None, None));
        assert_eq!(status.message.as_deref(), Some("HTTP 500"));
        assert_eq!(status.last_sync_time, Some(Time(now())));
        assert_eq!(status.last_handled_reconcile_at.as_deref(), Some("before"));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ExpensifyError")
        );

        let suspended = ConnectorFindings {
            suspended: true,
            ..ConnectorFindings::default()
        };
        let status = connector_status(&acme, suspended, now());
        assert_eq!(status.last_sync_time, Some(Time(earlier())));
        assert_eq!(
            status.message.as_deref(),
            Some("suspended: nothing is read or written")
        );
        assert_eq!(status.conditions[0].reason, "Suspended");
    }
}
