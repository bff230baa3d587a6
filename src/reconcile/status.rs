//! From what a sync found to the status objects get: pure functions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::model::{AccessObject, ConnectorObject};
use super::plan::ObjectPlan;
use super::validate::describe;
use crate::api::{
    AccessMode, AccessPhase, ConditionStatus, ConnectorPhase, ExpensifyConnectorStatus,
    ManagedMember, MemberFailure, PlanSummary, PolicyAccessStatus, PolicyInfo,
    RECONCILE_REQUESTED_AT, STATUS_LIST_CAP, set_condition,
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
    reason: &'static str,
    message: String,
    stalled: bool,
}

fn verdict(f: &AccessFindings<'_>) -> Verdict {
    let after = f.after;
    let failed = |phase, reason, message: String, stalled| Verdict {
        phase,
        ready: ConditionStatus::False,
        reason,
        message,
        stalled,
    };
    if let Some(problem) = f
        .connector_problem
        .as_ref()
        .filter(|_| f.connector_suspended)
    {
        return failed(
            AccessPhase::Pending,
            "ConnectorSuspended",
            problem.clone(),
            false,
        );
    }
    if let Some(problem) = &f.connector_problem {
        return failed(
            AccessPhase::Error,
            "ConnectorNotReady",
            problem.clone(),
            false,
        );
    }
    if !after.problems.is_empty() {
        return failed(
            AccessPhase::Error,
            "InvalidSpec",
            describe(&after.problems),
            true,
        );
    }
    if f.object.deleting && !after.notes.is_empty() {
        return failed(
            AccessPhase::Error,
            "CannotSettle",
            format!(
                "deletion waits: {} ledger entr(ies) cannot be settled: {}",
                f.managed.len(),
                after.notes.join("; ")
            ),
            true,
        );
    }
    if f.object.deleting && after.blocks.is_empty() {
        return failed(
            AccessPhase::Syncing,
            "Deleting",
            format!(
                "{} ledger entr(ies) still to take back or hand off before deletion completes",
                f.managed.len()
            ),
            false,
        );
    }
    if !f.failures.is_empty() {
        let shown: Vec<String> = f
            .failures
            .iter()
            .take(3)
            .map(|m| format!("{}: {}", m.email, m.reason))
            .collect();
        return failed(
            AccessPhase::Error,
            "PartialFailure",
            format!(
                "{} member change(s) failed and are retried next sync: {}",
                f.failures.len(),
                shown.join("; ")
            ),
            false,
        );
    }
    if let Some(block) = after.blocks.first() {
        let mut message = block.message().to_string();
        if after.blocks.len() > 1 {
            message.push_str(&format!(" (and {} more)", after.blocks.len() - 1));
        }
        return failed(AccessPhase::Blocked, block.reason(), message, true);
    }
    if f.object.spec.suspend {
        return failed(
            AccessPhase::Pending,
            "Suspended",
            format!(
                "suspended: nothing is written; {} difference(s) from Expensify",
                after.drift.len()
            ),
            false,
        );
    }
    if f.object.spec.mode == AccessMode::ObserveOnly {
        return Verdict {
            phase: AccessPhase::Synced,
            ready: ConditionStatus::True,
            reason: "Observed",
            message: format!(
                "observe-only: {} difference(s) from Expensify, nothing written",
                after.drift.len()
            ),
            stalled: false,
        };
    }
    if !after.drift.is_empty() || after.planned != PlanSummary::default() {
        return failed(
            AccessPhase::Syncing,
            "Progressing",
            format!(
                "{} difference(s) from Expensify remain",
                after.drift.len().max(1)
            ),
            false,
        );
    }
    Verdict {
        phase: AccessPhase::Synced,
        ready: ConditionStatus::True,
        reason: "Synced",
        message: format!("{} of {} member(s) in sync", after.in_sync, after.desired),
        stalled: false,
    }
}

/// Why no sync looked at an object.
#[derive(Debug, Clone)]
pub enum NotSynced {
    /// The object itself is invalid before any connector is involved.
    Invalid(Vec<super::validate::Problem>),
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
        key: Some(object.key.clone()),
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
    let generation = f.object.generation;
    let verdict = verdict(&f);
    let mut conditions = previous.conditions.clone();
    set_condition(
        &mut conditions,
        "Ready",
        verdict.ready,
        verdict.reason,
        &verdict.message,
        generation,
        now,
    );
    let (synced, synced_reason, synced_message) =
        if f.connector_problem.is_some() || !f.after.problems.is_empty() {
            (
                ConditionStatus::Unknown,
                verdict.reason,
                verdict.message.clone(),
            )
        } else if f.after.drift.is_empty() {
            (
                ConditionStatus::True,
                "InSync",
                "Expensify matches the spec".to_string(),
            )
        } else {
            (
                ConditionStatus::False,
                "Drift",
                format!("{} difference(s) from Expensify", f.after.drift.len()),
            )
        };
    set_condition(
        &mut conditions,
        "Synced",
        synced,
        synced_reason,
        &synced_message,
        generation,
        now,
    );
    // kstatus "abnormal-true" conditions: present only while true.
    conditions.retain(|c| c.type_ != "Stalled" && c.type_ != "Reconciling");
    if verdict.stalled {
        set_condition(
            &mut conditions,
            "Stalled",
            ConditionStatus::True,
            verdict.reason,
            &verdict.message,
            generation,
            now,
        );
    }
    if verdict.phase == AccessPhase::Syncing {
        set_condition(
            &mut conditions,
            "Reconciling",
            ConditionStatus::True,
            verdict.reason,
            &verdict.message,
            generation,
            now,
        );
    }
    let mut failures = f.failures.clone();
    failures.truncate(STATUS_LIST_CAP);
    let mut drift = f.after.drift.clone();
    drift.truncate(STATUS_LIST_CAP);
    let connector_down = f.connector_problem.is_some();
    PolicyAccessStatus {
        phase: verdict.phase,
        observed_generation: generation,
        conditions,
        policy_id: f.after.policy_id.clone().or(previous.policy_id),
        policy_name: f.after.policy_name.clone().or(previous.policy_name),
        desired_members: i32::try_from(f.after.desired).unwrap_or(i32::MAX),
        in_sync_members: i32::try_from(f.after.in_sync).unwrap_or(i32::MAX),
        managed_members: if connector_down {
            previous.managed_members
        } else {
            f.managed
        },
        last_sync_time: Some(Time(now)),
        last_plan: Some(f.attempted),
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
        last_handled_mass_revocation: f
            .mass_revocation_used
            .or(previous.last_handled_mass_revocation),
    }
}

/// What a connector's sync saw, for its status.
#[derive(Debug, Clone, Default)]
pub struct ConnectorFindings {
    pub policies: Vec<PolicyInfo>,
    pub user_count: usize,
    /// The error that stopped the sync, if any.
    pub problem: Option<(String, String)>,
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
        last_handled_mass_revocation: f
            .mass_revocation_used
            .or(previous.last_handled_mass_revocation.clone()),
        ..previous.clone()
    };
    if f.suspended {
        status.message = Some("suspended: nothing is read or written".into());
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "Suspended",
            "suspended",
            generation,
            now,
        );
        status.conditions = conditions;
        status.last_sync_time = previous.last_sync_time;
        return status;
    }
    match f.problem {
        Some((reason, message)) => {
            status.phase = ConnectorPhase::Error;
            set_condition(
                &mut conditions,
                "Ready",
                ConditionStatus::False,
                &reason,
                &message,
                generation,
                now,
            );
            status.message = Some(message);
        }
        None => {
            status.phase = ConnectorPhase::Connected;
            let message = format!("{} policies, {} people", f.policies.len(), f.user_count);
            set_condition(
                &mut conditions,
                "Ready",
                ConditionStatus::True,
                "Synced",
                &message,
                generation,
                now,
            );
            status.last_successful_sync_time = Some(Time(now));
            status.user_count = Some(i64::try_from(f.user_count).unwrap_or(i64::MAX));
            status.policy_count = Some(i64::try_from(f.policies.len()).unwrap_or(i64::MAX));
            let mut policies = f.policies;
            policies.truncate(STATUS_LIST_CAP);
            status.policies = policies;
            status.message = Some(message);
        }
    }
    status.conditions = conditions;
    status
}
