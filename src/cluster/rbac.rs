//! The Kubernetes permissions the controller needs: one list, checked by tests against the
//! chart's RBAC rules and against every request the controller makes in the mock tests.

/// `(API group, resource, verbs)` in every watched namespace (or cluster-wide).
pub const RULES: &[(&str, &str, &[&str])] = &[
    (
        "expensify.gitops.dev",
        "expensifyconnectors",
        // patch: the `in-use` finalizer.
        &["get", "list", "watch", "patch"],
    ),
    (
        "expensify.gitops.dev",
        "policyaccesses",
        &["get", "list", "watch", "patch"],
    ),
    (
        "expensify.gitops.dev",
        "expensifyconnectors/status",
        &["patch"],
    ),
    ("expensify.gitops.dev", "policyaccesses/status", &["patch"]),
    // Access requests: read through watches; patch for the `release` finalizer.
    (
        "expensify.gitops.dev",
        "accessrequests",
        &["get", "list", "watch", "patch"],
    ),
    ("expensify.gitops.dev", "accessrequests/status", &["patch"]),
    // Written explicitly: clusters with OwnerReferencesPermissionEnforcement check it.
    (
        "expensify.gitops.dev",
        "accessrequests/finalizers",
        &["patch"],
    ),
    (
        "expensify.gitops.dev",
        "accessdecisions",
        &["get", "list", "watch"],
    ),
    ("expensify.gitops.dev", "accessdecisions/status", &["patch"]),
    // `get` only: the Secret is read by name at every sync. `list` would return every
    // Secret's data in scope, so it comes only with the opt-in rotation watch below.
    ("", "secrets", &["get"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// With leader election, in the controller's own namespace.
pub const LEADER_ELECTION_RULES: &[(&str, &str, &[&str])] =
    &[("coordination.k8s.io", "leases", &["get", "create", "patch"])];

/// Cluster-wide whatever the namespaces watched, limited to the configured names by the
/// chart (`resourceNames`): the admission check (`super::admission`) reads the identity
/// policy and its binding.
pub const ADMISSION_RULES: &[(&str, &str, &[&str])] = &[
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        &["get"],
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        &["get"],
    ),
];

/// With `--watch-secrets` (chart `secretWatch.enabled`), in every watched namespace.
pub const SECRET_WATCH_RULES: &[(&str, &str, &[&str])] = &[("", "secrets", &["list", "watch"])];

/// The `(group, resource, verb)` a request needs, from its method and URI.
pub fn needed(method: &str, uri: &str) -> Option<(String, String, String)> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _namespace, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string()))
}

/// Whether `RULES`, `ADMISSION_RULES` (and, with leader election, `LEADER_ELECTION_RULES`) allow it.
pub fn allowed(method: &str, uri: &str, leader_election: bool) -> bool {
    allowed_with(method, uri, leader_election, false)
}

/// [`allowed`], plus `SECRET_WATCH_RULES` when the Secret watch is on.
pub fn allowed_with(method: &str, uri: &str, leader_election: bool, secret_watch: bool) -> bool {
    let Some((group, resource, verb)) = needed(method, uri) else {
        return false;
    };
    let optional = |on: bool, rules: &'static [(&str, &str, &[&str])]| if on { rules } else { &[] };
    RULES
        .iter()
        .chain(ADMISSION_RULES)
        .chain(optional(leader_election, LEADER_ELECTION_RULES))
        .chain(optional(secret_watch, SECRET_WATCH_RULES))
        .any(|(g, r, verbs)| *g == group && *r == resource && verbs.contains(&verb.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_requests_to_permissions() {
        assert_eq!(
            needed(
                "PATCH",
                "/apis/expensify.gitops.dev/v1alpha1/namespaces/f/policyaccesses/x/status?&force=true"
            ),
            Some((
                "expensify.gitops.dev".into(),
                "policyaccesses/status".into(),
                "patch".into()
            ))
        );
        assert_eq!(
            needed("GET", "/api/v1/namespaces/f/secrets/s"),
            Some((String::new(), "secrets".into(), "get".into()))
        );
        assert_eq!(
            needed("GET", "/api/v1/secrets?watch=true&resourceVersion=1"),
            Some((String::new(), "secrets".into(), "watch".into()))
        );
        assert!(allowed(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/f/events",
            false
        ));
        assert!(!allowed(
            "DELETE",
            "/apis/expensify.gitops.dev/v1alpha1/namespaces/f/policyaccesses/x",
            false
        ));
        assert!(!allowed(
            "PATCH",
            "/apis/coordination.k8s.io/v1/namespaces/f/leases/l",
            false
        ));
        assert!(allowed(
            "PATCH",
            "/apis/coordination.k8s.io/v1/namespaces/f/leases/l",
            true
        ));
        assert!(allowed(
            "GET",
            "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/p",
            false
        ));
        assert!(!allowed(
            "GET",
            "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings?",
            false
        ));
        assert!(allowed("GET", "/api/v1/namespaces/f/secrets/s", false));
        for listing in [
            "/api/v1/secrets?",
            "/api/v1/namespaces/f/secrets?watch=true",
        ] {
            assert!(!allowed("GET", listing, false), "{listing}");
            assert!(allowed_with("GET", listing, false, true), "{listing}");
        }
    }
}
