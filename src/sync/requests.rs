//! The access requests of one sync: judged before the plan (their verdicts and synthetic
//! holder objects, see [`crate::reconcile::requests`]), and their statuses made from the
//! plan after the write.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::request::SyncRequest;
use crate::api::{
    AccessDecisionStatus, AccessRequestStatus, HISTORY_CAP, PolicyAccessStatus, RequestPhase,
    RequestTransition,
};
use crate::email;
use crate::expensify::Role;
use crate::reconcile::requests::{
    DecisionVerdict, RequestContext, Verdict, access_of, connector_answering, decisions_on,
    evaluate, holder, holds_entries, orphan_decisions,
};
use crate::reconcile::{AccessObject, ObjectKey, Observed, RequestObject};

/// The requests on this connector's objects, judged at the start of a sync.
#[derive(Debug, Default)]
pub(super) struct Judged {
    /// Each request's verdict, by the request's own key.
    pub verdicts: BTreeMap<ObjectKey, Verdict>,
    pub decisions: BTreeMap<ObjectKey, DecisionVerdict>,
    /// The PolicyAccess objects and the synthetic holder objects of the requests.
    pub accesses: Vec<AccessObject>,
}

/// The owner Expensify shows for the policy a PolicyAccess selects.
fn policy_owner<'a>(access: &AccessObject, observed: &'a Observed) -> Option<&'a str> {
    let selector = &access.spec.policy;
    observed
        .policies
        .iter()
        .find(|p| {
            selector.id.as_deref() == Some(p.id.as_str())
                || (selector.id.is_none() && selector.name.as_deref() == Some(p.name.as_str()))
        })
        .map(|p| p.owner.as_str())
}

/// Judges the requests whose PolicyAccess is on this connector (or that hold ledger
/// entries on it), and adds their holder objects to the objects planned.
pub(super) fn judge(request: SyncRequest<'_>, observed: &Observed) -> Judged {
    let connector = request.connector;
    let mut judged = Judged {
        accesses: request.accesses.to_vec(),
        ..Judged::default()
    };
    for asked in request.requests.requests {
        let access = access_of(asked, request.accesses);
        let on_connector = match access {
            Some(access) => access.connector_key() == connector.key,
            // Its PolicyAccess is gone: what it holds through this connector is still
            // taken back (its holder asks for nobody); one that holds nothing is judged
            // (an `Error` naming the PolicyAccess) by the connector that answers its
            // namespace.
            None => {
                holds_through(asked, &connector.key)
                    || (!holds_entries(asked.status.as_ref())
                        && connector_answering(
                            &asked.key.namespace,
                            request.accesses.iter().cloned(),
                            request.connectors.iter().cloned(),
                        )
                        .as_ref()
                            == Some(&connector.key))
            }
        };
        if !on_connector {
            continue;
        }
        let context = RequestContext {
            access,
            connector: Some(connector),
            policy_owner: access.and_then(|a| policy_owner(a, observed)),
            approval: request.requests.approval,
            now: request.now,
        };
        let on = decisions_on(asked, request.requests.decisions);
        let (verdict, decisions) = evaluate(asked, &on, &context);
        judged.decisions.extend(decisions);
        judged
            .accesses
            .extend(holder(asked, &verdict, access, &connector.key, request.now));
        judged.verdicts.insert(asked.key.clone(), verdict);
    }
    let orphans = orphan_decisions(request.requests.requests, request.requests.decisions);
    judged.decisions.extend(orphans);
    judged
}

/// Whether `asked` holds ledger entries written through `connector`.
fn holds_through(asked: &RequestObject, connector: &crate::reconcile::ObjectKey) -> bool {
    let written_here = connector.to_string();
    asked.status.as_ref().is_some_and(|s| {
        s.managed_members
            .iter()
            .any(|e| e.connector.as_deref() == Some(written_here.as_str()))
    })
}

/// Whether the roster shows the person at the role asked for, or above it.
fn granted(asked: &RequestObject, policy_id: Option<&str>, observed: &Observed) -> bool {
    let person = email::normalize(&asked.spec.email);
    let wanted = Role::parse(asked.spec.role.as_deref().unwrap_or("user"));
    policy_id
        .and_then(|id| observed.rosters.get(id))
        .is_some_and(|roster| {
            roster.iter().any(|entry| {
                email::normalize(&entry.email) == person && Role::parse(&entry.role) >= wanted
            })
        })
}

/// Each request's new status: its verdict, its part of the ledger (from the holder
/// object's status), its clock, and one history entry per phase change.
pub(super) fn request_statuses(
    request: SyncRequest<'_>,
    judged: &Judged,
    holder_statuses: &BTreeMap<ObjectKey, PolicyAccessStatus>,
    policy_ids: &BTreeMap<ObjectKey, Option<String>>,
    observed: &Observed,
) -> BTreeMap<ObjectKey, AccessRequestStatus> {
    let now = request.now;
    request
        .requests
        .requests
        .iter()
        .filter_map(|asked| {
            let verdict = judged.verdicts.get(&asked.key)?;
            let holder_key = ObjectKey::for_request(asked.key.namespace.clone(), &asked.key.name);
            let previous = asked.status.clone().unwrap_or_default();
            let mut status = previous.clone();
            status.observed_generation = asked.generation;
            status.reason = Some(verdict.reason.clone()).filter(|r| !r.is_empty());
            status.message = Some(verdict.message.clone()).filter(|m| !m.is_empty());
            status.approvers.clone_from(&verdict.approvers);
            status.approvals_required = Some(verdict.approvals_required);
            status.approvals.clone_from(&verdict.approvals);
            status.denial.clone_from(&verdict.denial);
            if let Some(held) = holder_statuses.get(&holder_key) {
                status.managed_members.clone_from(&held.managed_members);
                // Its holder's Ready says whether its grant (or release) settled, and why not.
                let ready = crate::api::ConditionType::Ready.as_str();
                status.conditions.retain(|c| c.type_ != ready);
                status
                    .conditions
                    .extend(held.conditions.iter().filter(|c| c.type_ == ready).cloned());
                if held.policy_name.is_some() {
                    status.policy_name.clone_from(&held.policy_name);
                }
            }
            let policy_id = policy_ids.get(&holder_key).cloned().flatten();
            if verdict.phase == RequestPhase::Active
                && status.granted_at.is_none()
                && granted(asked, policy_id.as_deref(), observed)
            {
                status.granted_at = Some(Time(now));
                status.expires_at = expiry(asked, now).map(Time);
            }
            if policy_id.is_some() {
                status.policy_id = policy_id;
            }
            transition(
                &mut status,
                previous.phase,
                verdict,
                now,
                asked.status.is_none(),
            );
            Some((asked.key.clone(), status))
        })
        .collect()
}

fn expiry(asked: &RequestObject, granted_at: Timestamp) -> Option<Timestamp> {
    let duration = crate::api::parse_duration(&asked.spec.duration).ok()?;
    let duration = k8s_openapi::jiff::SignedDuration::try_from(duration).ok()?;
    granted_at.checked_add(duration).ok()
}

/// Records a phase change (or the first phase of a new request) in the history.
fn transition(
    status: &mut AccessRequestStatus,
    from: RequestPhase,
    verdict: &Verdict,
    now: Timestamp,
    new: bool,
) {
    status.phase = verdict.phase;
    if verdict.phase == from && !new {
        return;
    }
    status.history.push(RequestTransition {
        at: Time(now),
        phase: verdict.phase,
        reason: verdict.reason.clone(),
        by: verdict.by.clone(),
        message: Some(verdict.message.clone()).filter(|m| !m.is_empty()),
    });
    let excess = status.history.len().saturating_sub(HISTORY_CAP);
    status.history.drain(..excess);
}

/// Whether each decision counted, as its status says.
pub(super) fn decision_statuses(judged: &Judged) -> BTreeMap<ObjectKey, AccessDecisionStatus> {
    judged
        .decisions
        .iter()
        .map(|(key, verdict)| {
            (
                key.clone(),
                AccessDecisionStatus {
                    counted: Some(verdict.counted),
                    message: Some(verdict.message.clone()),
                },
            )
        })
        .collect()
}

/// The request keys behind holder keys.
pub(super) fn request_keys(holders: Vec<ObjectKey>) -> Vec<ObjectKey> {
    holders
        .into_iter()
        .filter_map(|key| {
            let name = key.request_name()?.to_string();
            Some(ObjectKey::new(key.namespace, name))
        })
        .collect()
}

/// The write-ahead's request statuses: the holder objects' statuses (whose ledger the
/// plan changes) split out of the PolicyAccess ones, as the requests' own.
pub(super) fn split_write_ahead(
    request: SyncRequest<'_>,
    statuses: &BTreeMap<ObjectKey, PolicyAccessStatus>,
) -> (
    BTreeMap<ObjectKey, PolicyAccessStatus>,
    BTreeMap<ObjectKey, AccessRequestStatus>,
) {
    let mut accesses = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for (key, status) in statuses {
        match key.request_name() {
            None => {
                accesses.insert(key.clone(), status.clone());
            }
            Some(name) => {
                let own = ObjectKey::new(key.namespace.clone(), name);
                let asked = request.requests.requests.iter().find(|r| r.key == own);
                let mut saved = asked.and_then(|r| r.status.clone()).unwrap_or_default();
                saved.managed_members.clone_from(&status.managed_members);
                requests.insert(own, saved);
            }
        }
    }
    (accesses, requests)
}
