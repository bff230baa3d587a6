//! Pure validation: every problem in an object at once, each naming its field.

use std::collections::HashMap;
use std::fmt;

use k8s_openapi::jiff::Timestamp;

use super::model::{AccessObject, ConnectorObject};
pub use super::problem::{Problem, describe};
use std::time::Duration;

use crate::api::{
    APPROVERS_CAP, AccessDecisionSpec, AccessRequestSpec, DECISION_GROUPS_CAP,
    MAX_REQUEST_DURATION, REASON_MAX_CHARS, RequestRules,
};
use crate::api::{AccessMode, PolicySelector, SecretRef, parse_duration};
use crate::email;
use crate::expensify::{Role, checked_endpoint};
use crate::names::{self, NameRule};
use crate::sanitize::shortened;

/// A deleted object (`deletionPolicy: Revoke`) holding ledger entries whose connector is
/// missing or no longer allows its namespace: nobody can take back what it gave, so its
/// deletion must wait rather than turn `Revoke` into `Orphan` silently. `how_to_let_go`
/// says how to leave the grants in place in this mode.
pub fn stranded_deletion(access: &AccessObject, how_to_let_go: &str) -> Option<Problem> {
    let entries = access.ledger_entries().len();
    let stranded = access.deleting
        && access.spec.deletion_policy == crate::api::DeletionPolicy::Revoke
        && entries > 0;
    stranded.then(|| {
        Problem::new(
            "spec.connectorRef",
            format!(
                "deleted, but ExpensifyConnector {} is missing or does not allow namespace {:?}: the {entries} access(es) it gave cannot be taken back. Restore the connector (or its allowedNamespaces) so they are, or {how_to_let_go}",
                access.connector_key(),
                access.key.namespace
            ),
        )
    })
}

/// Problems with a connector's spec.
pub fn validate_connector(connector: &ConnectorObject) -> Vec<Problem> {
    let spec = &connector.spec;
    let mut problems = secret_ref_problems(&spec.credentials_secret_ref);
    if let Err(e) = checked_endpoint(&spec.endpoint) {
        problems.push(Problem::new("spec.endpoint", e.to_string()));
    }
    if !email::is_valid(&spec.admin_email) {
        problems.push(Problem::new(
            "spec.adminEmail",
            format!("{:?} is not an email address", shortened(&spec.admin_email)),
        ));
    }
    if let Err(e) = spec.checked_sync_interval() {
        problems.push(Problem::new("spec.syncInterval", e.to_string()));
    }
    if spec.max_revocations_per_sync < 0 {
        problems.push(Problem::new(
            "spec.maxRevocationsPerSync",
            format!(
                "{} is negative; use 0 to forbid revocations",
                spec.max_revocations_per_sync
            ),
        ));
    }
    problems.extend(owner_problems(&spec.owners));
    for (i, protected) in spec.protected_emails.iter().enumerate() {
        if !email::is_valid(protected) {
            problems.push(Problem::new(
                format!("spec.protectedEmails[{i}]"),
                format!("{:?} is not an email address", shortened(protected)),
            ));
        }
    }
    for (i, namespace) in spec.allowed_namespaces.iter().enumerate() {
        if namespace.trim().is_empty() {
            problems.push(Problem::new(
                format!("spec.allowedNamespaces[{i}]"),
                "is empty",
            ));
        }
    }
    problems.extend(tenant_problems(connector));
    problems.extend(notification_problems(spec.notifications.as_ref()));
    problems
}

/// `spec.notifications`: the Secret's name and key are Kubernetes names (they become a
/// path), each event listed once, and `expiringLead` within 1m..168h.
fn notification_problems(notifications: Option<&crate::api::NotificationsSpec>) -> Vec<Problem> {
    let Some(notifications) = notifications else {
        return Vec::new();
    };
    let at = "spec.notifications";
    let secret = &notifications.webhook_secret_ref;
    let mut problems: Vec<Problem> = [
        ("name", NameRule::Subdomain, &secret.name),
        ("key", NameRule::SecretKey, &secret.key),
    ]
    .into_iter()
    .filter_map(|(field, rule, value)| {
        names::check(rule, value)
            .err()
            .map(|e| Problem::new(format!("{at}.webhookSecretRef.{field}"), e.to_string()))
    })
    .collect();
    for (i, event) in notifications.events.iter().enumerate() {
        if let Some(first) = notifications.events[..i].iter().position(|e| e == event) {
            problems.push(Problem::new(
                format!("{at}.events[{i}]"),
                format!("{event} is listed twice (also {at}.events[{first}])"),
            ));
        }
    }
    if let Err(e) = notifications.checked_expiring_lead() {
        problems.push(Problem::new(format!("{at}.expiringLead"), e.to_string()));
    }
    problems
}

/// Each `tenants` entry: a namespace (a Kubernetes name, listed once, not the connector's
/// own, which may touch everything anyway), policies by exactly one of id and name, and a
/// known `maxRole`.
fn tenant_problems(connector: &ConnectorObject) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, tenant) in connector.spec.tenants.iter().enumerate() {
        let at = format!("spec.tenants[{i}]");
        if let Err(e) = names::check(NameRule::Label, &tenant.namespace) {
            problems.push(Problem::new(format!("{at}.namespace"), e.to_string()));
        } else if tenant.namespace == connector.key.namespace {
            problems.push(Problem::new(
                format!("{at}.namespace"),
                "is the connector's own namespace, which may touch every policy; remove the entry",
            ));
        } else if let Some(first) = connector.spec.tenants[..i]
            .iter()
            .position(|t| t.namespace == tenant.namespace)
        {
            problems.push(Problem::new(
                format!("{at}.namespace"),
                format!(
                    "{:?} is listed twice (also spec.tenants[{first}])",
                    tenant.namespace
                ),
            ));
        }
        for (j, policy) in tenant.policies.iter().enumerate() {
            if let Some(problem) = selector_problem(&format!("{at}.policies[{j}]"), policy) {
                problems.push(problem);
            }
        }
        if let Some(role) = tenant
            .max_role
            .as_ref()
            .filter(|r| Role::parse(r).is_none())
        {
            problems.push(Problem::new(
                format!("{at}.maxRole"),
                format!("{:?} is not one of user, auditor, admin", shortened(role)),
            ));
        }
    }
    problems
}

/// The Secret name becomes part of an API path (cluster mode) or a file path (file mode),
/// and the keys file names: they must be Kubernetes names, checked before either is built.
pub fn secret_ref_problems(secret: &SecretRef) -> Vec<Problem> {
    [
        ("name", NameRule::Subdomain, &secret.name),
        ("userIDKey", NameRule::SecretKey, &secret.user_id_key),
        (
            "userSecretKey",
            NameRule::SecretKey,
            &secret.user_secret_key,
        ),
    ]
    .into_iter()
    .filter_map(|(field, rule, value)| {
        names::check(rule, value)
            .err()
            .map(|e| Problem::new(format!("spec.credentialsSecretRef.{field}"), e.to_string()))
    })
    .collect()
}

/// The most owners a connector may name (the CRD says so too).
pub const MAX_OWNERS: usize = 20;

/// `spec.owners`: emails, each once, at most [`MAX_OWNERS`].
fn owner_problems(owners: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if owners.len() > MAX_OWNERS {
        problems.push(Problem::new(
            "spec.owners",
            format!("{} owners; at most {MAX_OWNERS}", owners.len()),
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, owner) in owners.iter().enumerate().take(MAX_OWNERS) {
        let at = format!("spec.owners[{i}]");
        if !email::is_valid(owner) {
            problems.push(Problem::new(
                at,
                format!("{:?} is not an email address", shortened(owner)),
            ));
        } else if let Some(first) = seen.insert(email::normalize(owner), i) {
            problems.push(Problem::new(
                at,
                format!("{owner} is listed twice (also spec.owners[{first}])"),
            ));
        }
    }
    problems
}

/// A connector without owners (`validate` warns; nothing stops): nobody is named to
/// approve access requests on its policies or to be told when it needs setup.
pub fn owner_warnings(connector: &ConnectorObject) -> Vec<Problem> {
    if connector.spec.owners.is_empty() {
        vec![Problem::new(
            "spec.owners",
            "is empty: name the people answerable for this connector (the default approvers of access requests on its policies, told when it needs setup)",
        )]
    } else {
        Vec::new()
    }
}

/// The connector's owners, normalized, in the order given (for status and output).
pub fn owners(connector: &ConnectorObject) -> Vec<String> {
    connector
        .spec
        .owners
        .iter()
        .take(MAX_OWNERS)
        .map(|o| email::normalize(o))
        .collect()
}

/// Whether a connector accepts PolicyAccess objects from `namespace` (its own, a
/// `tenants` entry, or `allowedNamespaces`); what they may touch is [`super::tenancy`]'s.
pub fn connector_allows(connector: &ConnectorObject, namespace: &str) -> bool {
    super::tenancy::reach(connector, namespace).is_some()
}

/// What a connector's spec allows that it should not need to: unrestricted tenants
/// (`validate` and the connector's status warn; nothing stops).
pub fn connector_warnings(connector: &ConnectorObject) -> Vec<Problem> {
    super::tenancy::unrestricted_tenants(connector)
}

/// `spec.members[i]`, formatted only when a problem is found.
#[derive(Clone, Copy)]
struct MemberPath(usize);

impl fmt::Display for MemberPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spec.members[{}]", self.0)
    }
}

/// Problems with a PolicyAccess's spec, given the connectors that exist.
pub fn validate_access(access: &AccessObject, connectors: &[ConnectorObject]) -> Vec<Problem> {
    let mut problems: Vec<Problem> = connector_ref_problem(access, connectors)
        .into_iter()
        .chain(policy_problem(access))
        .chain(allow_from_problems(access))
        .chain(access.spec.requests.iter().flat_map(request_rules_problems))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, member) in access.spec.members.iter().enumerate() {
        problems.extend(member_problems(MemberPath(i), member, &mut seen));
    }
    problems
}

/// The connector must exist and allow the object's namespace.
fn connector_ref_problem(access: &AccessObject, connectors: &[ConnectorObject]) -> Option<Problem> {
    if access.spec.connector_ref.name.trim().is_empty() {
        return Some(Problem::new("spec.connectorRef.name", "is empty"));
    }
    let connector_key = access.connector_key();
    match connectors.iter().find(|c| c.key == connector_key) {
        None => Some(Problem::new(
            "spec.connectorRef",
            format!("ExpensifyConnector {connector_key} not found"),
        )),
        Some(connector) if !connector_allows(connector, &access.key.namespace) => {
            Some(Problem::new(
                "spec.connectorRef",
                format!(
                    "ExpensifyConnector {connector_key} does not allow namespace {:?}; add it to the connector's spec.tenants (with the policies and maxRole it may use)",
                    access.key.namespace
                ),
            ))
        }
        Some(_) => None,
    }
}

/// Exactly one of `policy.id` and `policy.name`, not empty.
fn policy_problem(access: &AccessObject) -> Option<Problem> {
    selector_problem("spec.policy", &access.spec.policy)
}

/// A policy selector at `at`: exactly one of `id` and `name`, not empty.
fn selector_problem(at: &str, selector: &PolicySelector) -> Option<Problem> {
    match (&selector.id, &selector.name) {
        (Some(_), Some(_)) | (None, None) => {
            Some(Problem::new(at, "give exactly one of id and name"))
        }
        (Some(id), None) if id.trim().is_empty() => {
            Some(Problem::new(format!("{at}.id"), "is empty"))
        }
        (None, Some(name)) if name.trim().is_empty() => {
            Some(Problem::new(format!("{at}.name"), "is empty"))
        }
        _ => None,
    }
}

/// `spec.allowFrom`: namespaces (Kubernetes names).
fn allow_from_problems(access: &AccessObject) -> Vec<Problem> {
    access
        .spec
        .allow_from
        .iter()
        .enumerate()
        .filter_map(|(i, namespace)| {
            names::check(NameRule::Label, namespace)
                .err()
                .map(|e| Problem::new(format!("spec.allowFrom[{i}]"), e.to_string()))
        })
        .collect()
}

/// What a PolicyAccess asks for that does nothing (`validate` warns and still exits 0):
/// members already expired, and `spec.allowFrom` on an object that does not govern its
/// policy (only an Authoritative object closes a policy, so only it can open one).
pub fn access_warnings(access: &AccessObject, now: Timestamp) -> Vec<Problem> {
    let mut warnings = expired_members(access, now);
    if !access.spec.allow_from.is_empty() && access.spec.mode != AccessMode::Authoritative {
        warnings.push(Problem::new(
            "spec.allowFrom",
            format!(
                "has no effect in mode {:?}: only an Authoritative object closes its policy to other namespaces, so only it can open it; remove the field or set spec.mode: Authoritative",
                access.spec.mode
            ),
        ));
    }
    warnings
}

/// Members whose `expiresAt` has passed at `now`: they grant nothing any more (a sync
/// treats them as absent), so the entry is only noise to remove: a warning for `validate`
/// (which still exits 0), since expiry is the ordinary end of just-in-time access.
pub fn expired_members(access: &AccessObject, now: Timestamp) -> Vec<Problem> {
    access
        .spec
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, member)| {
            let expires = member.expires_at.as_deref()?;
            let at = expires.parse::<Timestamp>().ok().filter(|at| *at <= now)?;
            Some(Problem::new(
                format!("{}.expiresAt", MemberPath(i)),
                format!(
                    "{at} is in the past: {} is not granted (and is revoked if the operator granted them); remove the entry",
                    member.email
                ),
            ))
        })
        .collect()
}

/// One member entry: email (valid, listed once), role, approver, expiry, employeeID.
fn member_problems(
    at: MemberPath,
    member: &crate::api::MemberSpec,
    seen: &mut HashMap<String, usize>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem::new(format!("{at}.{field}"), message));
    };
    if !email::is_valid(&member.email) {
        problem(
            "email",
            format!("{:?} is not an email address", shortened(&member.email)),
        );
    } else if let Some(first) = seen.insert(email::normalize(&member.email), at.0) {
        seen.insert(email::normalize(&member.email), first);
        problem(
            "email",
            format!(
                "{} is listed twice (also spec.members[{first}])",
                member.email
            ),
        );
    }
    if let Some(role) = member.role.as_ref().filter(|r| Role::parse(r).is_none()) {
        problem(
            "role",
            format!("{:?} is not one of user, auditor, admin", shortened(role)),
        );
    }
    if let Some(manager) = member.submits_to.as_ref().filter(|m| !email::is_valid(m)) {
        problem(
            "submitsTo",
            format!("{:?} is not an email address", shortened(manager)),
        );
    }
    if let Some(expires) = member
        .expires_at
        .as_ref()
        .filter(|e| e.parse::<Timestamp>().is_err())
    {
        problem(
            "expiresAt",
            format!(
                "{:?} is not an RFC 3339 time such as 2026-12-31T00:00:00Z",
                shortened(expires)
            ),
        );
    }
    if member
        .employee_id
        .as_deref()
        .is_some_and(|id| id.trim().is_empty())
    {
        problem("employeeID", "is empty; omit it instead".to_string());
    }
    problems
}

/// The shortest duration a request, its rules' `maxDuration` or `pendingTimeout` may say:
/// anything shorter ends before a sync could see it.
const MIN_REQUEST_DURATION: Duration = Duration::from_secs(60);

/// The longest: [`MAX_REQUEST_DURATION`] (`30d`).
fn max_request_duration() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// A duration within `min..=max`, or the problem with it.
fn bounded_duration(text: &str, max: Duration, max_text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text).map_err(|e| e.to_string())?;
    if duration < MIN_REQUEST_DURATION {
        Err(format!("{:?} is shorter than 1m", shortened(text)))
    } else if duration > max {
        Err(format!(
            "{:?} is longer than {}",
            shortened(text),
            shortened(max_text)
        ))
    } else {
        Ok(duration)
    }
}

/// `spec.requests` of a PolicyAccess: roles known and not empty, `maxDuration` and
/// `pendingTimeout` within 1m..30d, `approvals` 0..5, approvers emails or `group:NAME`.
pub fn request_rules_problems(rules: &RequestRules) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(roles) = &rules.roles {
        if roles.is_empty() {
            problems.push(Problem::new(
                "spec.requests.roles",
                "is empty: omit it (default [user]) or name the roles that may be asked for",
            ));
        }
        for (i, role) in roles
            .iter()
            .enumerate()
            .filter(|(_, r)| Role::parse(r).is_none())
        {
            problems.push(Problem::new(
                format!("spec.requests.roles[{i}]"),
                format!("{:?} is not one of user, auditor, admin", shortened(role)),
            ));
        }
    }
    if let Err(message) = bounded_duration(
        &rules.max_duration,
        max_request_duration(),
        MAX_REQUEST_DURATION,
    ) {
        problems.push(Problem::new("spec.requests.maxDuration", message));
    }
    if let Some(approvals) = rules.approvals.filter(|a| !(0..=5).contains(a)) {
        problems.push(Problem::new(
            "spec.requests.approvals",
            format!("{approvals} is outside 0..5"),
        ));
    }
    if rules.approvers.len() > APPROVERS_CAP {
        problems.push(Problem::new(
            "spec.requests.approvers",
            format!(
                "{} approvers; at most {APPROVERS_CAP}",
                rules.approvers.len()
            ),
        ));
    }
    for (i, approver) in rules.approvers.iter().enumerate().take(APPROVERS_CAP) {
        if let Err(message) = approver_problem(approver) {
            problems.push(Problem::new(
                format!("spec.requests.approvers[{i}]"),
                message,
            ));
        }
    }
    if let Some(timeout) = &rules.pending_timeout
        && let Err(message) =
            bounded_duration(timeout, max_request_duration(), MAX_REQUEST_DURATION)
    {
        problems.push(Problem::new("spec.requests.pendingTimeout", message));
    }
    problems
}

/// An approver is an email or `group:NAME`.
fn approver_problem(approver: &str) -> Result<(), String> {
    match approver.strip_prefix("group:") {
        Some(group) => group_problem(group),
        None if email::is_valid(approver) => Ok(()),
        None => Err(format!(
            "{:?} is neither an email address nor group:NAME",
            shortened(approver)
        )),
    }
}

/// Longest group name accepted (a Kubernetes group or a team slug is far shorter).
const MAX_GROUP_CHARS: usize = 253;

/// A group name: 1..253 printable characters, no spaces (it is compared, logged and shown).
fn group_problem(group: &str) -> Result<(), String> {
    let printable = group.chars().all(|c| c.is_ascii_graphic());
    if group.is_empty() || group.chars().count() > MAX_GROUP_CHARS || !printable {
        Err(format!(
            "{:?} is not a group name (1..{MAX_GROUP_CHARS} printable characters, no spaces)",
            group.chars().take(64).collect::<String>()
        ))
    } else {
        Ok(())
    }
}

/// Text bounded at [`REASON_MAX_CHARS`].
fn long_text_problem(field: &str, text: Option<&str>) -> Option<Problem> {
    let chars = text?.chars().count();
    (chars > REASON_MAX_CHARS).then(|| {
        Problem::new(
            field,
            format!("{chars} characters; at most {REASON_MAX_CHARS}"),
        )
    })
}

/// An AccessRequest's spec, against the rules of its PolicyAccess when they exist: email
/// and requester are emails, the role is known and allowed, the duration within 1m and the
/// rules' `maxDuration`, the reason present when required and at most 1,000 characters.
pub fn validate_request(spec: &AccessRequestSpec, rules: Option<&RequestRules>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.access_ref.name.trim().is_empty() {
        problems.push(Problem::new("spec.accessRef.name", "is empty"));
    }
    if !email::is_valid(&spec.email) {
        problems.push(Problem::new(
            "spec.email",
            format!("{:?} is not an email address", shortened(&spec.email)),
        ));
    }
    if !email::is_valid(&spec.requester) {
        problems.push(Problem::new(
            "spec.requester",
            format!("{:?} is not an email address", shortened(&spec.requester)),
        ));
    }
    let role = spec.role.as_deref().unwrap_or("user");
    if Role::parse(role).is_none() {
        problems.push(Problem::new(
            "spec.role",
            format!("{:?} is not one of user, auditor, admin", shortened(role)),
        ));
    } else if let Some(rules) = rules
        && !allowed_roles(rules)
            .iter()
            .any(|r| Role::parse(r) == Role::parse(role))
    {
        problems.push(Problem::new(
            "spec.role",
            format!(
                "{} may not be asked for here (spec.requests.roles: {})",
                shortened(role),
                allowed_roles(rules).join(", ")
            ),
        ));
    }
    // Rules whose maxDuration is itself invalid are reported on the PolicyAccess; the
    // request is then held to the hard cap.
    let (max, max_text) = match rules.map(|r| (parse_duration(&r.max_duration), r)) {
        Some((Ok(d), r)) if d <= max_request_duration() => (d, r.max_duration.as_str()),
        _ => (max_request_duration(), MAX_REQUEST_DURATION),
    };
    if let Err(message) = bounded_duration(&spec.duration, max, max_text) {
        problems.push(Problem::new("spec.duration", message));
    }
    let reason = spec.reason.as_deref().filter(|r| !r.trim().is_empty());
    if reason.is_none() && rules.is_some_and(|r| r.require_reason.unwrap_or(true)) {
        problems.push(Problem::new(
            "spec.reason",
            "is required by the rules (spec.requests.requireReason)",
        ));
    }
    problems.extend(long_text_problem("spec.reason", spec.reason.as_deref()));
    problems
}

/// The roles the rules let people ask for (default `[user]`).
pub fn allowed_roles(rules: &RequestRules) -> Vec<&str> {
    match &rules.roles {
        Some(roles) => roles.iter().map(String::as_str).collect(),
        None => vec!["user"],
    }
}

/// An AccessDecision's spec: `decidedBy` an email, at most 20 valid groups, a comment of
/// at most 1,000 characters.
pub fn validate_decision(spec: &AccessDecisionSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.request_ref.name.trim().is_empty() {
        problems.push(Problem::new("spec.requestRef.name", "is empty"));
    }
    if !email::is_valid(&spec.decided_by) {
        problems.push(Problem::new(
            "spec.decidedBy",
            format!("{:?} is not an email address", shortened(&spec.decided_by)),
        ));
    }
    if spec.groups.len() > DECISION_GROUPS_CAP {
        problems.push(Problem::new(
            "spec.groups",
            format!(
                "{} groups; at most {DECISION_GROUPS_CAP}",
                spec.groups.len()
            ),
        ));
    }
    for (i, group) in spec.groups.iter().enumerate().take(DECISION_GROUPS_CAP) {
        if let Err(message) = group_problem(group) {
            problems.push(Problem::new(format!("spec.groups[{i}]"), message));
        }
    }
    problems.extend(long_text_problem("spec.comment", spec.comment.as_deref()));
    problems
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{
        ConnectorRef, ExpensifyConnectorSpec, MemberSpec, PolicyAccessSpec, PolicySelector,
        SecretRef,
    };
    use crate::reconcile::model::ObjectKey;

    pub(crate) fn connector(namespace: &str, allowed: &[&str]) -> ConnectorObject {
        ConnectorObject {
            key: ObjectKey::new(namespace, "acme"),
            generation: Some(1),
            annotations: Default::default(),
            spec: ExpensifyConnectorSpec {
                credentials_secret_ref: SecretRef {
                    name: "creds".into(),
                    user_id_key: "partnerUserID".into(),
                    user_secret_key: "partnerUserSecret".into(),
                },
                endpoint: crate::expensify::DEFAULT_ENDPOINT.into(),
                admin_email: "it@acme.example".into(),
                owners: Vec::new(),
                sync_interval: "10m".into(),
                max_revocations_per_sync: 10,
                protected_emails: vec![],
                allowed_namespaces: allowed
                    .iter()
                    .map(std::string::ToString::to_string)
                    .collect(),
                tenants: vec![],
                suspend: false,
                notifications: None,
            },
            status: None,
        }
    }

    fn member(email: &str) -> MemberSpec {
        MemberSpec {
            email: email.into(),
            role: None,
            submits_to: None,
            employee_id: None,
            expires_at: None,
        }
    }

    pub(crate) fn access(namespace: &str, members: Vec<MemberSpec>) -> AccessObject {
        AccessObject {
            key: ObjectKey::new(namespace, "team"),
            generation: Some(1),
            created: None,
            annotations: Default::default(),
            spec: PolicyAccessSpec {
                requests: None,
                connector_ref: ConnectorRef {
                    name: "acme".into(),
                    namespace: Some("finance".into()),
                },
                policy: PolicySelector {
                    id: Some("P1".into()),
                    name: None,
                },
                mode: Default::default(),
                deletion_policy: Default::default(),
                allow_from: vec![],
                suspend: false,
                members,
            },
            deleting: false,
            status: None,
        }
    }

    #[test]
    fn a_valid_object_has_no_problems() {
        let connectors = [connector("finance", &[])];
        assert!(
            validate_access(
                &access("finance", vec![member("a@acme.example")]),
                &connectors
            )
            .is_empty()
        );
        assert!(validate_connector(&connectors[0]).is_empty());
    }

    #[test]
    fn every_member_problem_is_reported_with_its_field() {
        let mut bad_role = member("b@acme.example");
        bad_role.role = Some("owner".into());
        let mut bad_expiry = member("c@acme.example");
        bad_expiry.expires_at = Some("next tuesday".into());
        let mut bad_manager = member("d@acme.example");
        bad_manager.submits_to = Some("boss".into());
        let members = vec![
            member("not-an-email"),
            bad_role,
            bad_expiry,
            bad_manager,
            member("B@acme.example"),
        ];
        let problems = validate_access(&access("finance", members), &[connector("finance", &[])]);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.members[0].email",
                "spec.members[1].role",
                "spec.members[2].expiresAt",
                "spec.members[3].submitsTo",
                "spec.members[4].email"
            ]
        );
        assert!(
            problems[4]
                .message
                .contains("listed twice (also spec.members[1])")
        );
    }

    #[test]
    fn notifications_name_their_secret_and_bound_their_lead() {
        use crate::api::{NotificationEvent, NotificationsSpec, WebhookSecretRef};
        let mut c = connector("finance", &[]);
        c.spec.notifications = Some(NotificationsSpec {
            webhook_secret_ref: WebhookSecretRef {
                name: "../etc".into(),
                key: "url".into(),
            },
            events: vec![
                NotificationEvent::SetupNeeded,
                NotificationEvent::SetupNeeded,
            ],
            expiring_lead: "30s".into(),
        });
        let problems = validate_connector(&c);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.notifications.webhookSecretRef.name",
                "spec.notifications.events[1]",
                "spec.notifications.expiringLead"
            ],
            "{problems:?}"
        );
        c.spec.notifications = Some(NotificationsSpec {
            webhook_secret_ref: WebhookSecretRef {
                name: "notify".into(),
                key: "url".into(),
            },
            events: vec![NotificationEvent::AccessExpiring],
            expiring_lead: "168h".into(),
        });
        assert!(validate_connector(&c).is_empty());
    }

    #[test]
    fn owners_are_emails_listed_once_and_at_most_twenty() {
        let mut c = connector("finance", &[]);
        assert_eq!(owner_warnings(&c).len(), 1, "none named: a warning");
        assert!(validate_connector(&c).is_empty());
        c.spec.owners = vec![
            "IT@Acme.example".into(),
            "not an email".into(),
            "it@acme.example".into(),
        ];
        let problems = validate_connector(&c);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["spec.owners[1]", "spec.owners[2]"], "{problems:?}");
        assert!(
            problems[1]
                .message
                .contains("listed twice (also spec.owners[0])")
        );
        assert!(owner_warnings(&c).is_empty());
        assert_eq!(owners(&c)[0], "it@acme.example");
        c.spec.owners = (0..21).map(|i| format!("o{i}@acme.example")).collect();
        let problems = validate_connector(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "spec.owners");
        assert_eq!(owners(&c).len(), MAX_OWNERS);
    }

    #[test]
    fn allow_from_warns_unless_the_object_is_authoritative() {
        let mut object = access("finance", vec![member("a@acme.example")]);
        object.spec.allow_from = vec!["sales".into()];
        let now = Timestamp::now();
        let warnings = access_warnings(&object, now);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "spec.allowFrom");
        assert!(warnings[0].message.contains("Authoritative"));
        object.spec.mode = AccessMode::ObserveOnly;
        assert_eq!(access_warnings(&object, now).len(), 1);
        object.spec.mode = AccessMode::Authoritative;
        assert!(access_warnings(&object, now).is_empty());
        object.spec.allow_from.clear();
        object.spec.mode = AccessMode::Additive;
        assert!(access_warnings(&object, now).is_empty());
    }

    #[test]
    fn expired_entries_are_named_with_their_field() {
        let mut past = member("old@acme.example");
        past.expires_at = Some("2020-01-01T00:00:00Z".into());
        let mut future = member("new@acme.example");
        future.expires_at = Some("2999-01-01T00:00:00Z".into());
        let mut unreadable = member("odd@acme.example");
        unreadable.expires_at = Some("soon".into());
        let object = access("finance", vec![future, past, unreadable]);
        let problems = expired_members(&object, Timestamp::now());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "spec.members[1].expiresAt");
        assert!(problems[0].message.contains("old@acme.example"));
    }

    #[test]
    fn policy_needs_exactly_one_selector() {
        let mut both = access("finance", vec![]);
        both.spec.policy.name = Some("Finance".into());
        let mut neither = access("finance", vec![]);
        neither.spec.policy.id = None;
        for object in [both, neither] {
            let problems = validate_access(&object, &[connector("finance", &[])]);
            assert_eq!(problems[0].field, "spec.policy");
        }
    }

    #[test]
    fn cross_namespace_needs_the_connectors_consent() {
        let refused = validate_access(&access("sales", vec![]), &[connector("finance", &[])]);
        assert!(
            refused[0]
                .message
                .contains("does not allow namespace \"sales\"")
        );
        assert!(
            validate_access(
                &access("sales", vec![]),
                &[connector("finance", &["sales"])]
            )
            .is_empty()
        );
        assert!(
            validate_access(&access("sales", vec![]), &[connector("finance", &["*"])]).is_empty()
        );
        let missing = validate_access(&access("finance", vec![]), &[]);
        assert!(missing[0].message.contains("not found"));
    }

    #[test]
    fn connector_problems() {
        let mut bad = connector("finance", &[""]);
        bad.spec.admin_email = "admin".into();
        bad.spec.sync_interval = "often".into();
        bad.spec.max_revocations_per_sync = -1;
        bad.spec.endpoint = "http://expensify.example/x".into();
        bad.spec.protected_emails = vec!["ceo".into()];
        let fields: Vec<String> = validate_connector(&bad)
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.endpoint",
                "spec.adminEmail",
                "spec.syncInterval",
                "spec.maxRevocationsPerSync",
                "spec.protectedEmails[0]",
                "spec.allowedNamespaces[0]"
            ]
        );
    }

    #[test]
    fn sync_interval_is_bounded() {
        let mut c = connector("finance", &[]);
        for ok in ["10s", "10m", "24h", "23h59m60s"] {
            c.spec.sync_interval = ok.into();
            assert!(validate_connector(&c).is_empty(), "{ok}");
        }
        for out in ["1ms", "9s", "9999ms", "24h1s", "9999999999999999999s"] {
            c.spec.sync_interval = out.into();
            let problems = validate_connector(&c);
            assert_eq!(problems.len(), 1, "{out}");
            assert_eq!(problems[0].field, "spec.syncInterval");
        }
    }

    #[test]
    fn secret_refs_are_kubernetes_names_so_no_path_can_be_built_from_them() {
        let mut c = connector("finance", &[]);
        c.spec.credentials_secret_ref = SecretRef {
            name: "../../namespaces/other/secrets/x".into(),
            user_id_key: String::new(),
            user_secret_key: "../key".into(),
        };
        let fields: Vec<String> = validate_connector(&c)
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.credentialsSecretRef.name",
                "spec.credentialsSecretRef.userIDKey",
                "spec.credentialsSecretRef.userSecretKey"
            ]
        );
    }

    fn rules(max_duration: &str) -> RequestRules {
        RequestRules {
            roles: None,
            max_duration: max_duration.to_string(),
            require_reason: None,
            approvals: None,
            approvers: Vec::new(),
            pending_timeout: None,
        }
    }

    /// Review 6: every validation message quotes outside values shortened, but an approver
    /// that is neither an email nor `group:NAME` is quoted whole.
    #[test]
    fn a_hostile_approver_is_quoted_shortened() {
        let mut with = rules("8h");
        with.approvers = vec!["x".repeat(20_000)];
        let problems = request_rules_problems(&with);
        assert_eq!(fields(&problems), ["spec.requests.approvers[0]"]);
        assert!(
            problems[0].message.chars().count() < 200,
            "{} characters",
            problems[0].message.chars().count()
        );
    }

    /// Review 6: the same for a member's `expiresAt` that is not a time.
    #[test]
    fn a_hostile_member_expiry_is_quoted_shortened() {
        let mut bad = member("c@acme.example");
        bad.expires_at = Some("9".repeat(20_000));
        let problems = validate_access(&access("finance", vec![bad]), &[connector("finance", &[])]);
        assert_eq!(fields(&problems), ["spec.members[0].expiresAt"]);
        assert!(
            problems[0].message.chars().count() < 200,
            "{} characters",
            problems[0].message.chars().count()
        );
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn valid_request_rules_have_no_problems() {
        let mut valid = rules("8h");
        valid.roles = Some(vec!["user".into(), "Admin".into()]);
        valid.approvals = Some(0);
        valid.approvers = vec!["carol@acme.com".into(), "group:finance-leads".into()];
        valid.pending_timeout = Some("30d".into());
        assert_eq!(request_rules_problems(&valid), vec![]);
    }

    #[test]
    fn every_request_rule_problem_is_reported_with_its_field() {
        let mut bad = rules("31d");
        bad.roles = Some(vec!["owner".into()]);
        bad.approvals = Some(6);
        bad.approvers = vec![
            "carol".into(),
            "group:".into(),
            "group:has space".into(),
            "dave@acme.com".into(),
        ];
        bad.pending_timeout = Some("30s".into());
        assert_eq!(
            fields(&request_rules_problems(&bad)),
            [
                "spec.requests.roles[0]",
                "spec.requests.maxDuration",
                "spec.requests.approvals",
                "spec.requests.approvers[0]",
                "spec.requests.approvers[1]",
                "spec.requests.approvers[2]",
                "spec.requests.pendingTimeout",
            ]
        );
        let mut empty = rules("59s");
        empty.roles = Some(vec![]);
        empty.approvals = Some(-1);
        empty.approvers = (0..21).map(|i| format!("a{i}@acme.com")).collect();
        assert_eq!(
            fields(&request_rules_problems(&empty)),
            [
                "spec.requests.roles",
                "spec.requests.maxDuration",
                "spec.requests.approvals",
                "spec.requests.approvers",
            ]
        );
        assert_eq!(
            fields(&request_rules_problems(&rules("soon"))),
            ["spec.requests.maxDuration"]
        );
    }

    #[test]
    fn a_policy_access_reports_its_request_rules() {
        let mut object = access("finance", vec![]);
        object.spec.requests = Some(rules("60d"));
        assert_eq!(
            fields(&validate_access(&object, &[connector("finance", &[])])),
            ["spec.requests.maxDuration"]
        );
    }

    fn request(email: &str, role: Option<&str>, duration: &str) -> AccessRequestSpec {
        AccessRequestSpec {
            access_ref: crate::api::LocalRef {
                name: "finance".into(),
            },
            email: email.into(),
            role: role.map(str::to_string),
            duration: duration.into(),
            reason: Some("close the books".into()),
            requester: email.into(),
        }
    }

    #[test]
    fn a_request_within_its_rules_has_no_problems() {
        let mut allowed = rules("8h");
        allowed.roles = Some(vec!["user".into(), "auditor".into()]);
        assert_eq!(
            validate_request(
                &request("ann@acme.com", Some("auditor"), "8h"),
                Some(&allowed)
            ),
            vec![]
        );
        assert_eq!(
            validate_request(&request("ann@acme.com", None, "1m"), Some(&rules("8h"))),
            vec![]
        );
    }

    #[test]
    fn every_request_problem_is_reported_with_its_field() {
        let mut bad = request("ann", Some("root"), "30s");
        bad.access_ref.name = " ".into();
        bad.requester = "someone".into();
        bad.reason = Some("x".repeat(REASON_MAX_CHARS + 1));
        assert_eq!(
            fields(&validate_request(&bad, Some(&rules("8h")))),
            [
                "spec.accessRef.name",
                "spec.email",
                "spec.requester",
                "spec.role",
                "spec.duration",
                "spec.reason",
            ]
        );
    }

    #[test]
    fn a_request_is_held_to_its_rules() {
        let eight_hours = rules("8h");
        // A role the rules do not offer (default: user only).
        let admin = request("ann@acme.com", Some("admin"), "1h");
        assert_eq!(
            fields(&validate_request(&admin, Some(&eight_hours))),
            ["spec.role"]
        );
        // Longer than maxDuration.
        let long = request("ann@acme.com", None, "8h1m");
        assert_eq!(
            fields(&validate_request(&long, Some(&eight_hours))),
            ["spec.duration"]
        );
        // A reason is required by default, and blank is no reason.
        let mut silent = request("ann@acme.com", None, "1h");
        silent.reason = Some("  ".into());
        assert_eq!(
            fields(&validate_request(&silent, Some(&eight_hours))),
            ["spec.reason"]
        );
        let mut optional = rules("8h");
        optional.require_reason = Some(false);
        assert_eq!(validate_request(&silent, Some(&optional)), vec![]);
        // Rules with a broken maxDuration still hold a request to the hard cap of 30d.
        let thirty_one = request("ann@acme.com", None, "31d");
        assert_eq!(
            fields(&validate_request(&thirty_one, Some(&rules("99d")))),
            ["spec.duration"]
        );
        assert_eq!(
            fields(&validate_request(&thirty_one, None)),
            ["spec.duration"]
        );
    }

    #[test]
    fn every_decision_problem_is_reported_with_its_field() {
        let valid = AccessDecisionSpec {
            request_ref: crate::api::LocalRef { name: "r1".into() },
            decision: crate::api::DecisionKind::Approve,
            decided_by: "carol@acme.com".into(),
            groups: vec!["finance-leads".into()],
            comment: Some("ok".into()),
        };
        assert_eq!(validate_decision(&valid), vec![]);
        let mut bad = valid.clone();
        bad.request_ref.name = String::new();
        bad.decided_by = "carol".into();
        bad.groups = vec![String::new(), "a b".into()];
        bad.comment = Some("y".repeat(REASON_MAX_CHARS + 1));
        assert_eq!(
            fields(&validate_decision(&bad)),
            [
                "spec.requestRef.name",
                "spec.decidedBy",
                "spec.groups[0]",
                "spec.groups[1]",
                "spec.comment",
            ]
        );
        let mut crowded = valid;
        crowded.groups = (0..21).map(|i| format!("g{i}")).collect();
        assert_eq!(fields(&validate_decision(&crowded)), ["spec.groups"]);
    }

    fn holding(entries: usize) -> AccessObject {
        let mut object = access("sales", vec![]);
        object.status = Some(crate::api::PolicyAccessStatus {
            managed_members: (0..entries)
                .map(|i| crate::api::ManagedMember::added_user("P1", &format!("p{i}@acme.example")))
                .collect(),
            ..Default::default()
        });
        object
    }

    /// Only a `Revoke` deletion that still holds entries is stranded; it names the
    /// connector, the namespace, how many it gave and how to let go.
    #[test]
    fn a_deletion_is_stranded_only_while_it_holds_what_it_gave() {
        let mut one = holding(1);
        one.deleting = true;
        let problem = stranded_deletion(&one, "switch to Orphan").expect("stranded");
        assert_eq!(problem.field, "spec.connectorRef");
        for part in [
            "finance/acme",
            "\"sales\"",
            "the 1 access(es)",
            "switch to Orphan",
        ] {
            assert!(
                problem.message.contains(part),
                "{part}: {}",
                problem.message
            );
        }
        let mut two = holding(2);
        two.deleting = true;
        assert!(
            stranded_deletion(&two, "x").is_some_and(|p| p.message.contains("the 2 access(es)"))
        );
        let mut orphan = two.clone();
        orphan.spec.deletion_policy = crate::api::DeletionPolicy::Orphan;
        assert_eq!(stranded_deletion(&orphan, "x"), None, "Orphan lets go");
        assert_eq!(
            stranded_deletion(&holding(2), "x"),
            None,
            "not being deleted"
        );
        let mut empty = holding(0);
        empty.deleting = true;
        assert_eq!(stranded_deletion(&empty, "x"), None, "nothing given");
    }

    /// Every bound accepts its limit and refuses one more.
    #[test]
    fn bounds_accept_their_limit_and_refuse_one_more() {
        let mut c = connector("finance", &[]);
        c.spec.max_revocations_per_sync = 0;
        assert_eq!(validate_connector(&c), vec![], "0 forbids revocations");
        c.spec.owners = (0..MAX_OWNERS)
            .map(|i| format!("o{i}@acme.example"))
            .collect();
        assert_eq!(validate_connector(&c), vec![]);

        let mut at_cap = rules("8h");
        at_cap.approvers = (0..APPROVERS_CAP)
            .map(|i| format!("a{i}@acme.com"))
            .collect();
        assert_eq!(request_rules_problems(&at_cap), vec![]);

        let longest = "g".repeat(MAX_GROUP_CHARS);
        assert_eq!(group_problem(&longest), Ok(()));
        assert!(group_problem(&format!("{longest}g")).is_err());
        assert_eq!(group_problem("g"), Ok(()));

        let reason = "r".repeat(REASON_MAX_CHARS);
        assert_eq!(long_text_problem("spec.reason", Some(&reason)), None);
        let over = format!("{reason}r");
        assert_eq!(
            long_text_problem("spec.reason", Some(&over)).map(|p| p.field),
            Some("spec.reason".to_string())
        );

        let decision = AccessDecisionSpec {
            request_ref: crate::api::LocalRef { name: "r1".into() },
            decision: crate::api::DecisionKind::Approve,
            decided_by: "carol@acme.com".into(),
            groups: (0..DECISION_GROUPS_CAP).map(|i| format!("g{i}")).collect(),
            comment: None,
        };
        assert_eq!(validate_decision(&decision), vec![]);
    }

    #[test]
    fn a_blank_policy_name_or_id_is_empty() {
        let mut named = access("finance", vec![]);
        named.spec.policy = PolicySelector {
            id: None,
            name: Some("  ".into()),
        };
        assert_eq!(
            fields(&validate_access(&named, &[connector("finance", &[])])),
            ["spec.policy.name"]
        );
        named.spec.policy.name = Some(" Finance ".into());
        assert_eq!(
            validate_access(&named, &[connector("finance", &[])]),
            vec![]
        );
        let mut blank_id = access("finance", vec![]);
        blank_id.spec.policy.id = Some(" ".into());
        assert_eq!(
            fields(&validate_access(&blank_id, &[connector("finance", &[])])),
            ["spec.policy.id"]
        );
    }
}
