//! Pure validation: every problem in an object at once, each naming its field.

use std::collections::HashMap;
use std::fmt;

use k8s_openapi::jiff::Timestamp;

use super::model::{AccessObject, ConnectorObject};
pub use super::problem::{Problem, describe};
use crate::api::{AccessMode, PolicySelector, SecretRef};
use crate::email;
use crate::expensify::{Role, checked_endpoint};
use crate::names::{self, NameRule};

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
            format!("{:?} is not an email address", spec.admin_email),
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
                format!("{protected:?} is not an email address"),
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
                format!("{role:?} is not one of user, auditor, admin"),
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
                format!("{owner:?} is not an email address"),
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
            format!("{:?} is not an email address", member.email),
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
            format!("{role:?} is not one of user, auditor, admin"),
        );
    }
    if let Some(manager) = member.submits_to.as_ref().filter(|m| !email::is_valid(m)) {
        problem("submitsTo", format!("{manager:?} is not an email address"));
    }
    if let Some(expires) = member
        .expires_at
        .as_ref()
        .filter(|e| e.parse::<Timestamp>().is_err())
    {
        problem(
            "expiresAt",
            format!("{expires:?} is not an RFC 3339 time such as 2026-12-31T00:00:00Z"),
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
}
