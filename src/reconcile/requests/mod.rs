//! Access requests, decided without I/O: given a request, the decisions on it, its
//! PolicyAccess and connector, the mode's [`Approval`] and the clock, where the request
//! stands ([`Verdict`]) and whether each decision counted ([`DecisionVerdict`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::model::{
    AccessObject, Approval, ConnectorObject, DecisionObject, ObjectKey, RequestObject,
};
use super::validate::{connector_allows, describe, owners, validate_access, validate_request};
use crate::api::{
    APPROVERS_CAP, AccessMode, DecisionKind, DecisionRecord, RequestPhase, RequestRules,
    parse_duration,
};
use crate::email;

/// How long an unanswered request waits when its rules set no `pendingTimeout`: the
/// CRD's documented default, [`crate::api::DEFAULT_PENDING_TIMEOUT`] (a test keeps them equal).
const DEFAULT_PENDING: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests;

/// What a request sees of the world at one sync.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The PolicyAccess its `accessRef` names, if it exists (same namespace).
    pub access: Option<&'a AccessObject>,
    /// That PolicyAccess's connector, if it exists.
    pub connector: Option<&'a ConnectorObject>,
    /// The policy's owner as the roster shows it (never granted through a request).
    pub policy_owner: Option<&'a str>,
    pub approval: Approval<'a>,
    pub now: Timestamp,
}

/// Where a request stands after this sync's evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub phase: RequestPhase,
    /// Machine-readable: `Approved`, `Ended`, `NotApproved`, `Protected`, ...
    pub reason: String,
    pub message: String,
    /// The approvers its rules name (normalized emails and `group:NAME`).
    pub approvers: Vec<String>,
    pub approvals_required: i32,
    /// The approvals that counted, in order.
    pub approvals: Vec<DecisionRecord>,
    /// The decision that denied or revoked it.
    pub denial: Option<DecisionRecord>,
    /// Who caused the phase change, when a decision did.
    pub by: Option<String>,
    /// The next moment the request needs a sync (its pending timeout or its expiry).
    pub next_sync: Option<Timestamp>,
}

/// Whether one decision counted, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionVerdict {
    pub counted: bool,
    pub message: String,
}

/// The reason a request against a PolicyAccess that does not (or no longer) take requests
/// carries, `None` when its rules apply.
fn ineligible(request: &RequestObject, context: &RequestContext<'_>) -> Option<String> {
    let Some(access) = context.access else {
        return Some(format!(
            "PolicyAccess {} does not exist in namespace {}",
            request.spec.access_ref.name, request.key.namespace
        ));
    };
    let name = &access.key;
    if access.spec.requests.is_none() {
        return Some(format!(
            "PolicyAccess {name} takes no requests (spec.requests is not set)"
        ));
    }
    if access.spec.mode == AccessMode::ObserveOnly {
        return Some(format!("PolicyAccess {name} is ObserveOnly"));
    }
    if access.spec.suspend {
        return Some(format!("PolicyAccess {name} is suspended"));
    }
    if access.deleting {
        return Some(format!("PolicyAccess {name} is being deleted"));
    }
    match context.connector {
        None => Some(format!(
            "connector {} of PolicyAccess {name} does not exist",
            access.spec.connector_ref.name
        )),
        Some(connector) if !connector_allows(connector, &access.key.namespace) => Some(format!(
            "connector {} does not allow namespace {}",
            connector.key, access.key.namespace
        )),
        Some(connector) if connector.spec.suspend => {
            Some(format!("connector {} is suspended", connector.key))
        }
        Some(connector) => {
            invalid(access, connector).or_else(|| beyond_tenancy(request, access, connector))
        }
    }
}

/// What the request's namespace may not get through the connector (`spec.tenants`): a
/// role above its `maxRole`, or a policy it does not list. The planner would refuse the
/// grant anyway; the request says why instead of standing Active for nothing.
fn beyond_tenancy(
    request: &RequestObject,
    access: &AccessObject,
    connector: &ConnectorObject,
) -> Option<String> {
    use super::tenancy::{offline_policy_refusal, reach};
    let reach = reach(connector, &access.key.namespace)?;
    let asked = crate::expensify::Role::parse(request.spec.role.as_deref().unwrap_or("user"))?;
    let most = reach.max_role();
    if super::plan::rank(asked) > super::plan::rank(most) {
        return Some(format!(
            "namespace {} may grant at most {most} through connector {} (spec.tenants maxRole): {asked} cannot be requested",
            access.key.namespace, connector.key
        ));
    }
    offline_policy_refusal(connector, access).map(|problem| problem.to_string())
}

/// Whether the person asked for is never granted through a request: the policy owner, the
/// connector's adminEmail, or one of its protectedEmails.
fn protected(person: &str, context: &RequestContext<'_>) -> Option<&'static str> {
    if context
        .policy_owner
        .is_some_and(|owner| email::normalize(owner) == person)
    {
        return Some("the policy owner");
    }
    let connector = context.connector?;
    if email::normalize(&connector.spec.admin_email) == person {
        return Some("the connector's adminEmail");
    }
    connector
        .spec
        .protected_emails
        .iter()
        .any(|p| email::normalize(p) == person)
        .then_some("one of the connector's protectedEmails")
}

/// Why a PolicyAccess's rules cannot be trusted: it is invalid (its own status names the
/// problems), so nothing is granted under them.
fn invalid(access: &AccessObject, connector: &ConnectorObject) -> Option<String> {
    let problems = validate_access(access, std::slice::from_ref(connector));
    let first = problems.first()?;
    Some(format!(
        "PolicyAccess {} is invalid ({} problem(s), the first: {first}); nothing is granted under its rules",
        access.key,
        problems.len()
    ))
}

/// The approvers the rules name, normalized; the connector's owners when they name none.
pub fn approvers(rules: &RequestRules, connector: Option<&ConnectorObject>) -> Vec<String> {
    if rules.approvers.is_empty() {
        return connector.map(owners).unwrap_or_default();
    }
    // More than the cap makes the PolicyAccess invalid (and its requests refused); the
    // list a request's status shows stays bounded all the same.
    rules
        .approvers
        .iter()
        .take(APPROVERS_CAP)
        .map(|a| match a.strip_prefix("group:") {
            Some(group) => format!("group:{group}"),
            None => email::normalize(a),
        })
        .collect()
}

/// Whether `decision`'s author is one of `approvers` (by email, or a group they claim).
fn is_approver(decision: &DecisionObject, by: &str, approvers: &[String]) -> bool {
    approvers.iter().any(|a| match a.strip_prefix("group:") {
        Some(group) => decision.spec.groups.iter().any(|g| g == group),
        None => a == by,
    })
}

fn record(decision: &DecisionObject, by: &str) -> DecisionRecord {
    DecisionRecord {
        by: by.to_string(),
        at: Time(decision.created.unwrap_or_default()),
        decision: decision.key.name.clone(),
        comment: decision.spec.comment.clone(),
    }
}

fn later(at: Timestamp, by: Duration) -> Option<Timestamp> {
    let by = k8s_openapi::jiff::SignedDuration::try_from(by).ok()?;
    at.checked_add(by).ok()
}

/// The decisions that are about `request`: same namespace, its name; oldest first (ties
/// by name), so "the first valid Deny" is well defined.
pub fn decisions_on<'a>(
    request: &RequestObject,
    decisions: &'a [DecisionObject],
) -> Vec<&'a DecisionObject> {
    let mut on: Vec<&DecisionObject> = decisions
        .iter()
        .filter(|d| {
            d.key.namespace == request.key.namespace && d.spec.request_ref.name == request.key.name
        })
        .collect();
    on.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
    on
}

/// The PolicyAccess a request names: `accessRef`, in the request's own namespace.
pub fn access_of<'a>(
    request: &RequestObject,
    accesses: &'a [AccessObject],
) -> Option<&'a AccessObject> {
    accesses.iter().find(|a| {
        a.key.namespace == request.key.namespace && a.key.name == request.spec.access_ref.name
    })
}

/// Whether a request's status holds ledger entries (what it was granted, or is taking
/// back): the connector that wrote them judges it, whatever became of its PolicyAccess.
pub fn holds_entries(status: Option<&crate::api::AccessRequestStatus>) -> bool {
    status.is_some_and(|s| !s.managed_members.is_empty())
}

/// The connector that answers an object no PolicyAccess routes to a sync (a decision whose
/// request does not exist, a request whose PolicyAccess does not), so that its status can
/// say it counts for nothing: one that accepts `namespace` (a tenant's connector, never one
/// a PolicyAccess merely names), that of the first PolicyAccess (by name) in the namespace
/// if it does, else the first (by key); `None` when no connector serves the namespace.
/// Such a sync only writes the object's status: nothing is granted or revoked for it.
pub fn connector_answering(
    namespace: &str,
    accesses: impl IntoIterator<Item = AccessObject>,
    connectors: impl IntoIterator<Item = ConnectorObject>,
) -> Option<ObjectKey> {
    let accepting: BTreeSet<ObjectKey> = connectors
        .into_iter()
        .filter(|c| connector_allows(c, namespace))
        .map(|c| c.key)
        .collect();
    let of_first_access = accesses
        .into_iter()
        .filter(|a| a.key.namespace == namespace && accepting.contains(&a.connector_key()))
        .min_by(|a, b| a.key.cmp(&b.key))
        .map(|a| a.connector_key());
    of_first_access.or_else(|| accepting.into_iter().next())
}

/// Decisions whose request does not exist in their namespace: none counts.
pub fn orphan_decisions(
    requests: &[RequestObject],
    decisions: &[DecisionObject],
) -> BTreeMap<ObjectKey, DecisionVerdict> {
    let known: BTreeSet<(&str, &str)> = requests
        .iter()
        .map(|r| (r.key.namespace.as_str(), r.key.name.as_str()))
        .collect();
    decisions
        .iter()
        .filter(|d| !known.contains(&(d.key.namespace.as_str(), d.spec.request_ref.name.as_str())))
        .map(|d| {
            (
                d.key.clone(),
                DecisionVerdict {
                    counted: false,
                    message: format!(
                        "no AccessRequest {} in namespace {}",
                        d.spec.request_ref.name, d.key.namespace
                    ),
                },
            )
        })
        .collect()
}

/// Moves the verdict to `phase` for `reason`.
fn end(verdict: &mut Verdict, phase: RequestPhase, reason: &str, message: String) {
    verdict.phase = phase;
    verdict.reason = reason.to_string();
    verdict.message = message;
}

/// Evaluates one request at `context.now`, with the decisions on it (see [`decisions_on`]).
/// Every decision gets a verdict: one the request's state kept from being weighed (its
/// rules withdrawn, approval unverifiable, a protected person...) says so.
pub fn evaluate(
    request: &RequestObject,
    decisions: &[&DecisionObject],
    context: &RequestContext<'_>,
) -> (Verdict, BTreeMap<ObjectKey, DecisionVerdict>) {
    let (verdict, mut counted) = weigh(request, decisions, context);
    for d in decisions {
        counted
            .entry(d.key.clone())
            .or_insert_with(|| DecisionVerdict {
                counted: false,
                message: format!("the request is {}: {}", verdict.phase, verdict.message),
            });
    }
    (verdict, counted)
}

fn weigh(
    request: &RequestObject,
    decisions: &[&DecisionObject],
    context: &RequestContext<'_>,
) -> (Verdict, BTreeMap<ObjectKey, DecisionVerdict>) {
    let status = request.status.clone().unwrap_or_default();
    let was = status.phase;
    let rules = context.access.and_then(|a| a.spec.requests.as_ref());
    let mut verdict = Verdict {
        phase: was,
        reason: status.reason.clone().unwrap_or_default(),
        message: status.message.clone().unwrap_or_default(),
        approvers: rules
            .map(|r| approvers(r, context.connector))
            .unwrap_or_default(),
        approvals_required: rules.and_then(|r| r.approvals).unwrap_or(1),
        approvals: status.approvals.clone(),
        denial: status.denial.clone(),
        by: None,
        next_sync: None,
    };
    let mut counted: BTreeMap<ObjectKey, DecisionVerdict> = BTreeMap::new();
    let mut say = |d: &DecisionObject, ok: bool, message: String| {
        counted.insert(
            d.key.clone(),
            DecisionVerdict {
                counted: ok,
                message,
            },
        );
    };
    // Over for good: nothing more counts; the entry is released by the planner.
    if was.is_final() {
        for d in decisions {
            say(d, false, format!("the request is already {was}"));
        }
        return (verdict, counted);
    }
    if request.deleting {
        let phase = if was == RequestPhase::Active {
            RequestPhase::Revoked
        } else {
            RequestPhase::Error
        };
        end(
            &mut verdict,
            phase,
            "Deleted",
            "the AccessRequest is being deleted".into(),
        );
        return (verdict, counted);
    }
    // A request that was granted and whose rules are gone ends; one never granted is an
    // error the requester can read.
    let withdrawn = |verdict: &mut Verdict, why: String| {
        if was == RequestPhase::Active {
            end(verdict, RequestPhase::Revoked, "RulesWithdrawn", why);
        } else {
            end(verdict, RequestPhase::Error, "NotRequestable", why);
        }
    };
    if let Some(why) = ineligible(request, context) {
        withdrawn(&mut verdict, why);
        return (verdict, counted);
    }
    let Some(rules) = rules else {
        return (verdict, counted);
    };
    if let Approval::Decisions(Err(reason)) = context.approval {
        end(
            &mut verdict,
            RequestPhase::Error,
            "ApprovalUnverified",
            reason.to_string(),
        );
        return (verdict, counted);
    }
    let problems = validate_request(&request.spec, Some(rules));
    if !problems.is_empty() {
        withdrawn(&mut verdict, describe(&problems));
        return (verdict, counted);
    }
    let person = email::normalize(&request.spec.email);
    if let Some(who) = protected(&person, context) {
        let why = format!("{person} is {who}: never granted or taken through a request");
        if was == RequestPhase::Active {
            end(&mut verdict, RequestPhase::Revoked, "Protected", why);
        } else {
            end(&mut verdict, RequestPhase::Error, "Protected", why);
        }
        return (verdict, counted);
    }
    let requester = email::normalize(&request.spec.requester);
    let mut phase = if was == RequestPhase::Error {
        RequestPhase::Pending
    } else {
        was
    };
    let mut approvals: Vec<DecisionRecord> = Vec::new();
    let mut deciders: BTreeSet<String> = BTreeSet::new();
    match context.approval {
        Approval::Merge => {
            for d in decisions {
                say(
                    d,
                    false,
                    "in file mode the merge approves; AccessDecision documents are not counted"
                        .into(),
                );
            }
            if phase == RequestPhase::Pending {
                phase = RequestPhase::Active;
                verdict.reason = "Approved".into();
                verdict.message = "approved by the merge".into();
            }
        }
        Approval::Decisions(_) => {
            for d in decisions {
                let by = email::normalize(&d.spec.decided_by);
                let approver = is_approver(d, &by, &verdict.approvers);
                // Decisions name their request only by name: one made before this request
                // existed was about another (deleted) one, or approved a name in advance.
                let older = matches!((d.created, request.created), (Some(made), Some(asked)) if made < asked);
                let refusal = match d.spec.decision {
                    _ if older => Some(
                        "made before this request was created: a decision counts only for the request it answers"
                            .to_string(),
                    ),
                    DecisionKind::Revoke => {
                        if phase != RequestPhase::Active {
                            Some(
                                "Revoke ends an active request; this one is not active".to_string(),
                            )
                        } else if !approver && by != requester {
                            Some(format!("{by} is neither an approver nor the requester"))
                        } else {
                            None
                        }
                    }
                    _ if !email::is_valid(&d.spec.decided_by) => {
                        Some(format!("{:?} is not an email address", d.spec.decided_by))
                    }
                    _ if by == requester => {
                        Some(format!("{by} made the request and cannot decide it"))
                    }
                    _ if by == person => Some(format!(
                        "{by} is the person who gets access and cannot decide it"
                    )),
                    _ if !approver => Some(format!("{by} is not one of the approvers")),
                    _ if deciders.contains(&by) => {
                        Some(format!("{by} already decided this request"))
                    }
                    DecisionKind::Deny if phase == RequestPhase::Active => Some(
                        "the request is already Active: a Deny does nothing, Revoke ends it"
                            .to_string(),
                    ),
                    DecisionKind::Approve if phase == RequestPhase::Active => {
                        Some("the request is already Active".to_string())
                    }
                    _ => None,
                };
                if let Some(why) = refusal {
                    say(d, false, why);
                    continue;
                }
                deciders.insert(by.clone());
                match d.spec.decision {
                    DecisionKind::Approve => {
                        approvals.push(record(d, &by));
                        say(d, true, "counted as an approval".into());
                    }
                    DecisionKind::Deny => {
                        verdict.denial = Some(record(d, &by));
                        verdict.by = Some(by.clone());
                        say(d, true, "denied the request".into());
                        end(
                            &mut verdict,
                            RequestPhase::Denied,
                            "Denied",
                            format!("denied by {by}"),
                        );
                        verdict.approvals = approvals;
                        return (verdict, counted);
                    }
                    DecisionKind::Revoke => {
                        verdict.denial = Some(record(d, &by));
                        verdict.by = Some(by.clone());
                        say(d, true, "revoked the request".into());
                        end(
                            &mut verdict,
                            RequestPhase::Revoked,
                            "Revoked",
                            format!("revoked by {by}"),
                        );
                        verdict.approvals.clone_from(&status.approvals);
                        return (verdict, counted);
                    }
                }
            }
            if phase == RequestPhase::Pending {
                verdict.approvals.clone_from(&approvals);
                let needed = usize::try_from(verdict.approvals_required).unwrap_or(0);
                if approvals.len() >= needed {
                    phase = RequestPhase::Active;
                    verdict.reason = "Approved".into();
                    verdict.by = approvals.last().map(|a| a.by.clone());
                    verdict.message = format!("approved ({} of {needed})", approvals.len());
                } else {
                    verdict.reason = "AwaitingApproval".into();
                    verdict.message = format!("{} of {needed} approvals", approvals.len());
                }
            }
        }
    }
    verdict.phase = phase;
    match phase {
        RequestPhase::Pending => {
            let timeout = rules
                .pending_timeout
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
                .unwrap_or(DEFAULT_PENDING);
            let deadline = request.created.and_then(|c| later(c, timeout));
            match deadline {
                Some(at) if at <= context.now => {
                    end(
                        &mut verdict,
                        RequestPhase::Expired,
                        "NotApproved",
                        "not approved within pendingTimeout".into(),
                    );
                }
                _ => verdict.next_sync = deadline,
            }
        }
        RequestPhase::Active => {
            let expires = status.expires_at.as_ref().map(|t| t.0);
            match expires {
                Some(at) if at <= context.now => {
                    end(
                        &mut verdict,
                        RequestPhase::Expired,
                        "Ended",
                        "its duration ended".into(),
                    );
                }
                _ => verdict.next_sync = expires,
            }
        }
        _ => {}
    }
    (verdict, counted)
}

/// The synthetic holder object the planner sees for a request (see
/// [`ObjectKey::for_request`]): derived from its PolicyAccess (same connector, policy and
/// namespace; Additive, deletionPolicy Revoke, not suspended), asking for the person at
/// the role until `expiresAt` while the verdict is Active, and for nobody once it ended,
/// so the ordinary ledger rules release what it holds. `None` when it is not active and
/// holds nothing.
/// The spec of a holder whose PolicyAccess is gone, from the entries it holds.
fn orphan_spec(
    entries: &[crate::api::ManagedMember],
    connector: &ObjectKey,
) -> Option<crate::api::PolicyAccessSpec> {
    let policy_id = entries.first()?.policy_id.clone();
    Some(crate::api::PolicyAccessSpec {
        connector_ref: crate::api::ConnectorRef {
            name: connector.name.clone(),
            namespace: Some(connector.namespace.clone()),
        },
        policy: crate::api::PolicySelector {
            id: Some(policy_id),
            name: None,
        },
        mode: AccessMode::Additive,
        deletion_policy: crate::api::DeletionPolicy::Revoke,
        allow_from: Vec::new(),
        suspend: false,
        members: Vec::new(),
        requests: None,
    })
}

pub fn holder(
    request: &RequestObject,
    verdict: &Verdict,
    access: Option<&AccessObject>,
    connector: &ObjectKey,
    now: Timestamp,
) -> Option<AccessObject> {
    let status = request.status.clone().unwrap_or_default();
    let active = verdict.phase == RequestPhase::Active && !request.deleting;
    if !active && status.managed_members.is_empty() {
        return None;
    }
    let mut spec = match access {
        Some(access) => access.spec.clone(),
        // Its PolicyAccess is gone: a holder of what it holds, on the policy its entries
        // name, through the connector that wrote them, asking for nobody.
        None => orphan_spec(&status.managed_members, connector)?,
    };
    let active = active && access.is_some();
    spec.mode = AccessMode::Additive;
    spec.deletion_policy = crate::api::DeletionPolicy::Revoke;
    spec.suspend = false;
    spec.allow_from = Vec::new();
    spec.requests = None;
    spec.members = Vec::new();
    if active {
        let expires = status.expires_at.as_ref().map(|t| t.0).or_else(|| {
            let duration = parse_duration(&request.spec.duration).ok()?;
            later(now, duration)
        })?;
        spec.members.push(crate::api::MemberSpec {
            email: email::normalize(&request.spec.email),
            role: Some(request.spec.role.clone().unwrap_or_else(|| "user".into())),
            submits_to: None,
            employee_id: None,
            expires_at: Some(expires.to_string()),
        });
    }
    Some(AccessObject {
        key: ObjectKey::for_request(request.key.namespace.clone(), &request.key.name),
        generation: request.generation,
        created: request.created,
        annotations: BTreeMap::new(),
        spec,
        deleting: request.deleting,
        status: Some(crate::api::PolicyAccessStatus {
            managed_members: status.managed_members,
            ..Default::default()
        }),
    })
}
