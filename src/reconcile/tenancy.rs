//! Tenancy: which policies and roles a namespace may touch through a connector. Pure rules,
//! used by validation, by the planner (on the policies Expensify shows) and by `validate`
//! (on the manifests alone).
//!
//! - The connector's own namespace may touch every policy the credentials reach.
//! - A namespace in `spec.tenants` may name only the policies its entry lists and grant
//!   roles up to its `maxRole` (default `user`); a name-based entry that matches more than
//!   one policy allows none of them.
//! - A namespace only in `spec.allowedNamespaces` (or `*`) may touch anything: an
//!   unrestricted tenant, kept working but warned about.
//! - A namespace in both lists is read as its `tenants` entry (the narrower one).

use k8s_openapi::jiff::Timestamp;

use super::model::{AccessObject, ConnectorObject};
use super::plan::rank;
use super::problem::Problem;
use crate::api::{PolicySelector, TenantSpec};
use crate::email;
use crate::expensify::{PolicySummary, Role};

fn by_id(selector: &PolicySelector) -> Option<&str> {
    selector.id.as_deref().map(str::trim)
}

fn by_name(selector: &PolicySelector) -> Option<&str> {
    selector.name.as_deref().map(str::trim)
}

/// The field a policy refusal names.
pub const POLICY_FIELD: &str = "spec.policy";

/// What a namespace may touch through a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// The connector's own namespace, or an unrestricted tenant: any policy, any role.
    Everything,
    /// A `spec.tenants` entry (at `index`): its policies, roles up to its `maxRole`.
    Limited {
        index: usize,
        tenant: &'a TenantSpec,
    },
}

impl Reach<'_> {
    /// The highest role its objects may grant.
    pub fn max_role(&self) -> Role {
        match self {
            Reach::Everything => Role::Admin,
            // An unreadable maxRole puts the connector in Error; read it as the narrowest.
            Reach::Limited { tenant, .. } => tenant
                .max_role
                .as_deref()
                .and_then(Role::parse)
                .unwrap_or(Role::User),
        }
    }
}

/// What `namespace` may touch through `connector`, or `None` when it may not use it.
pub fn reach<'a>(connector: &'a ConnectorObject, namespace: &str) -> Option<Reach<'a>> {
    if connector.key.namespace == namespace {
        return Some(Reach::Everything);
    }
    let tenant = connector
        .spec
        .tenants
        .iter()
        .enumerate()
        .find(|(_, t)| t.namespace == namespace);
    if let Some((index, tenant)) = tenant {
        return Some(Reach::Limited { index, tenant });
    }
    connector
        .spec
        .allowed_namespaces
        .iter()
        .any(|allowed| allowed == "*" || allowed == namespace)
        .then_some(Reach::Everything)
}

/// Where a tenant entry is, for messages: `spec.tenants[0] of ExpensifyConnector fin/acme`.
fn entry_of(connector: &ConnectorObject, index: usize) -> String {
    format!(
        "spec.tenants[{index}] of ExpensifyConnector {}",
        connector.key
    )
}

/// Why `access` may not name the policy `policy_id` (as Expensify shows it in `visible`),
/// if it may not.
pub fn policy_refusal(
    connector: &ConnectorObject,
    access: &AccessObject,
    policy_id: &str,
    visible: &[PolicySummary],
) -> Option<Problem> {
    let Some(Reach::Limited { index, tenant }) = reach(connector, &access.key.namespace) else {
        return None;
    };
    let mut ambiguous = None;
    for (j, listed) in tenant.policies.iter().enumerate() {
        match (listed.id.as_deref(), listed.name.as_deref()) {
            (Some(id), None) if id.trim() == policy_id => return None,
            (None, Some(name)) => {
                let named: Vec<&str> = visible
                    .iter()
                    .filter(|p| p.name == name.trim())
                    .map(|p| p.id.as_str())
                    .collect();
                match named.as_slice() {
                    [only] if *only == policy_id => return None,
                    many if many.len() > 1 && many.contains(&policy_id) => {
                        ambiguous = Some((j, name, many.len()));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let policy = visible.iter().find(|p| p.id == policy_id).map_or_else(
        || policy_id.to_string(),
        |p| format!("{:?} ({policy_id})", p.name),
    );
    let namespace = &access.key.namespace;
    let why = match ambiguous {
        Some((j, name, count)) => format!(
            "spec.tenants[{index}].policies[{j}] of ExpensifyConnector {} names {name:?}, which {count} policies are called, so it allows none of them; list the policy by id",
            connector.key
        ),
        None => format!(
            "it is not among the policies {} lists",
            entry_of(connector, index)
        ),
    };
    Some(Problem::new(
        POLICY_FIELD,
        format!("namespace {namespace:?} may not touch policy {policy}: {why}"),
    ))
}

/// Why `access` may not name its policy, judged from the manifests alone: only when no
/// entry of its tenant could match it whatever Expensify shows (an entry by name may be the
/// policy an object names by id, and the other way round).
pub fn offline_policy_refusal(
    connector: &ConnectorObject,
    access: &AccessObject,
) -> Option<Problem> {
    let Some(Reach::Limited { index, tenant }) = reach(connector, &access.key.namespace) else {
        return None;
    };
    let asked = &access.spec.policy;
    let could_match = |listed: &PolicySelector| match (by_id(asked), by_name(asked)) {
        (Some(id), None) => by_name(listed).is_some() || by_id(listed) == Some(id),
        (None, Some(name)) => by_id(listed).is_some() || by_name(listed) == Some(name),
        // Neither or both: a problem of its own, not a tenancy one.
        _ => true,
    };
    if tenant.policies.iter().any(could_match) {
        return None;
    }
    let named = by_id(asked).or(by_name(asked)).unwrap_or_default();
    Some(Problem::new(
        POLICY_FIELD,
        format!(
            "namespace {:?} may not touch policy {named:?}: it is not among the policies {} lists",
            access.key.namespace,
            entry_of(connector, index)
        ),
    ))
}

/// The members of `access` that ask for a role above what its namespace may grant (members
/// whose email, role and `expiresAt` are readable and not past at `now`: the others ask for
/// nothing).
pub fn role_refusals(
    connector: &ConnectorObject,
    access: &AccessObject,
    now: Timestamp,
) -> Vec<Problem> {
    let Some(reach @ Reach::Limited { index, .. }) = reach(connector, &access.key.namespace) else {
        return Vec::new();
    };
    let max = reach.max_role();
    access
        .spec
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| email::is_valid(&m.email))
        .filter(|(_, m)| {
            m.expires_at
                .as_deref()
                .is_none_or(|at| at.parse::<Timestamp>().is_ok_and(|at| at > now))
        })
        .filter_map(|(i, m)| {
            let role = m.role.as_deref().map_or(Some(Role::User), Role::parse)?;
            (rank(role) > rank(max)).then(|| {
                Problem::new(
                    format!("spec.members[{i}].role"),
                    format!(
                        "{role} for {} is above the highest role namespace {:?} may grant ({max}, {}.maxRole)",
                        m.email,
                        access.key.namespace,
                        entry_of(connector, index)
                    ),
                )
            })
        })
        .collect()
}

/// `allowedNamespaces` entries that reach everything: namespaces without a `tenants`
/// entry, and `*`. Each is a warning (`validate`, the connector's status).
pub fn unrestricted_tenants(connector: &ConnectorObject) -> Vec<Problem> {
    let spec = &connector.spec;
    spec.allowed_namespaces
        .iter()
        .enumerate()
        .filter(|(_, ns)| {
            *ns != &connector.key.namespace
                && !ns.trim().is_empty()
                && !spec.tenants.iter().any(|t| &t.namespace == *ns)
        })
        .map(|(i, ns)| {
            let who = if ns == "*" {
                "every namespace without a spec.tenants entry".to_string()
            } else {
                format!("namespace {ns:?}")
            };
            Problem::new(
                format!("spec.allowedNamespaces[{i}]"),
                format!(
                    "unrestricted tenant: {who} may grant any role on any policy the credentials reach; list it in spec.tenants with its policies and maxRole"
                ),
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "tenancy_tests.rs"]
mod tests;
