//! What stops a connector before any credential is read: its spec, and the operator's
//! endpoint allowlist. The allowlist lives with the clients (it is the operator's
//! configuration, not a rule about objects), so it is checked here and not in the pure
//! [`crate::reconcile::validate`].

use crate::expensify::{ExpensifyClients, checked_endpoint};
use crate::reconcile::validate::validate_connector;
use crate::reconcile::{ConnectorObject, Problem};

/// What stops a connector before any credential is read: its spec, and the operator's
/// endpoint allowlist.
pub fn preflight(connector: &ConnectorObject, clients: &ExpensifyClients) -> Vec<Problem> {
    let mut problems = validate_connector(connector);
    problems.extend(validate_endpoint(connector, clients));
    problems
}

/// Whether a connector gets as far as reading its credentials.
pub fn reads_credentials(connector: &ConnectorObject, clients: &ExpensifyClients) -> bool {
    !connector.spec.suspend && preflight(connector, clients).is_empty()
}

/// The operator's endpoint allowlist applied to a connector. Called by both sync paths
/// before any Secret is read, so a connector aimed elsewhere is `Error` and its
/// credential is never loaded. Endpoints that are not acceptable URLs at all are
/// reported by [`validate_connector`] already.
pub fn validate_endpoint(
    connector: &ConnectorObject,
    clients: &ExpensifyClients,
) -> Option<Problem> {
    let endpoint = &connector.spec.endpoint;
    if checked_endpoint(endpoint).is_err() {
        return None;
    }
    clients
        .check_endpoint(endpoint)
        .err()
        .map(|e| Problem::new("spec.endpoint", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::validate::tests::connector;

    #[test]
    fn endpoints_outside_the_allowlist_are_a_problem() {
        use crate::expensify::{AllowedEndpoints, ClientSettings};
        let clients = ExpensifyClients::new(ClientSettings {
            allowed_endpoints: AllowedEndpoints::parse("https://expensify.example/api").unwrap(),
            ..ClientSettings::default()
        })
        .unwrap();
        let mut c = connector("finance", &[]);
        c.spec.endpoint = "https://expensify.example/api/v1".into();
        assert_eq!(validate_endpoint(&c, &clients), None);
        c.spec.endpoint = "https://expensify.example.evil.io/api".into();
        let problem = validate_endpoint(&c, &clients).unwrap();
        assert_eq!(problem.field, "spec.endpoint");
        assert!(
            problem.message.contains("not an allowed endpoint"),
            "{problem}"
        );
        // Reported once, by validate_connector, when the URL itself is unacceptable.
        c.spec.endpoint = "http://expensify.example/api".into();
        assert_eq!(validate_endpoint(&c, &clients), None);
    }
}
