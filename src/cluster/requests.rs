//! Access requests in a cluster, the parts that need no Kubernetes call: which connector
//! a request or a decision wakes, which requests hold the `release` finalizer, and the
//! phase transitions a sync made (each an Event and a log line).

use crate::api::{AccessDecision, AccessRequest, AccessRequestStatus, RequestPhase};
use crate::reconcile::{AccessObject, ObjectKey};

/// The PolicyAccess whose rules a request is under: `accessRef`, in its own namespace.
pub fn access_of_request(request: &AccessRequest) -> ObjectKey {
    let namespace = ObjectKey::of(&request.metadata).namespace;
    ObjectKey::new(namespace, request.spec.access_ref.name.clone())
}

/// The request a decision decides: `requestRef`, in its own namespace.
pub fn request_of_decision(decision: &AccessDecision) -> ObjectKey {
    let namespace = ObjectKey::of(&decision.metadata).namespace;
    ObjectKey::new(namespace, decision.spec.request_ref.name.clone())
}

/// The connector a request's sync runs on: that of its PolicyAccess. While that does not
/// exist: the connector that holds what the request was granted (it must take it back),
/// else the one that answers the namespace (`answering`, see
/// [`crate::reconcile::requests::connector_answering`]), so
/// that the request's status says why nothing happens.
pub fn connector_of_request(
    request: &AccessRequest,
    access: impl Fn(&ObjectKey) -> Option<AccessObject>,
    answering: impl FnOnce(&str) -> Option<ObjectKey>,
) -> Option<ObjectKey> {
    if let Some(access) = access(&access_of_request(request)) {
        return Some(access.connector_key());
    }
    holder_of(request).or_else(|| answering(&ObjectKey::of(&request.metadata).namespace))
}

/// The connector that wrote a ledger entry the request holds, if it holds one.
pub fn holder_of(request: &AccessRequest) -> Option<ObjectKey> {
    let status = request.status.as_ref()?;
    status
        .managed_members
        .iter()
        .find_map(|entry| entry.connector.as_deref().and_then(ObjectKey::parse))
}

/// Whether a request holds access, or may be given some by the next write: it then
/// carries the `release` finalizer, so deleting it releases first.
pub fn holds_access(status: Option<&AccessRequestStatus>) -> bool {
    status.is_some_and(|s| s.phase == RequestPhase::Active)
        || crate::reconcile::requests::holds_entries(status)
}

/// One phase change of a request, as its Event and log line tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseChange {
    pub from: RequestPhase,
    pub to: RequestPhase,
    pub reason: String,
    /// Whose decision caused it, if anyone's.
    pub by: Option<String>,
    pub message: Option<String>,
}

impl PhaseChange {
    /// The Event's note: what changed, why, and by whom.
    pub fn note(&self) -> String {
        let mut note = format!("{} -> {} ({})", self.from, self.to, self.reason);
        if let Some(by) = &self.by {
            note.push_str(&format!(" by {by}"));
        }
        if let Some(message) = &self.message {
            note.push_str(&format!(": {message}"));
        }
        note
    }

    /// Warnings for what asks someone to look: an invalid request.
    pub fn is_warning(&self) -> bool {
        self.to == RequestPhase::Error
    }
}

/// The phase changes from `old` to `new`: the transitions `new.history` gained, in order;
/// a phase that changed without one (history capped away, or not kept) is one change too.
pub fn phase_changes(
    old: Option<&AccessRequestStatus>,
    new: &AccessRequestStatus,
) -> Vec<PhaseChange> {
    let old_phase = old.map_or(RequestPhase::Pending, |s| s.phase);
    let old_history = old.map(|s| s.history.as_slice()).unwrap_or_default();
    let mut from = old_phase;
    let mut changes = Vec::new();
    for transition in new.history.iter().filter(|t| !old_history.contains(t)) {
        changes.push(PhaseChange {
            from,
            to: transition.phase,
            reason: transition.reason.clone(),
            by: transition.by.clone(),
            message: transition.message.clone(),
        });
        from = transition.phase;
    }
    if changes.is_empty() && old.is_some_and(|s| s.phase != new.phase) {
        changes.push(PhaseChange {
            from: old_phase,
            to: new.phase,
            reason: new.reason.clone().unwrap_or_else(|| new.phase.to_string()),
            by: None,
            message: new.message.clone(),
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessDecisionSpec, AccessRequestSpec, RequestTransition};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn request(namespace: &str, access: &str) -> AccessRequest {
        let spec: AccessRequestSpec = serde_json::from_value(serde_json::json!({
            "accessRef": {"name": access}, "email": "a@acme.example", "duration": "1h",
            "requester": "a@acme.example"
        }))
        .unwrap();
        let mut request = AccessRequest::new("r1", spec);
        request.metadata.namespace = Some(namespace.into());
        request
    }

    fn transition(
        second: i64,
        phase: RequestPhase,
        reason: &str,
        by: Option<&str>,
    ) -> RequestTransition {
        RequestTransition {
            at: Time(Timestamp::from_second(second).unwrap()),
            phase,
            reason: reason.into(),
            by: by.map(str::to_string),
            message: None,
        }
    }

    #[test]
    fn a_request_and_a_decision_lead_to_the_connector_of_the_policy_access() {
        let request = request("finance", "team");
        assert_eq!(
            access_of_request(&request),
            ObjectKey::new("finance", "team")
        );
        let access: crate::api::PolicyAccess = serde_json::from_value(serde_json::json!({
            "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
            "metadata": {"name": "team", "namespace": "finance"},
            "spec": {"connectorRef": {"name": "acme", "namespace": "shared"}, "policy": {"id": "P1"}, "members": []}
        }))
        .unwrap();
        let lookup = |key: &ObjectKey| {
            (*key == ObjectKey::of(&access.metadata)).then(|| AccessObject::from_resource(&access))
        };
        let nobody = |_: &str| None;
        assert_eq!(
            connector_of_request(&request, lookup, nobody),
            Some(ObjectKey::new("shared", "acme"))
        );
        assert_eq!(
            connector_of_request(&self::request("finance", "other"), lookup, nobody),
            None
        );
        // Its PolicyAccess gone: the connector that holds its grant, else the one that
        // answers the namespace.
        let answers = |namespace: &str| Some(ObjectKey::new(namespace, "answers"));
        let mut orphan = self::request("finance", "other");
        assert_eq!(
            connector_of_request(&orphan, lookup, answers),
            Some(ObjectKey::new("finance", "answers"))
        );
        orphan.status = Some(AccessRequestStatus {
            managed_members: vec![
                serde_json::from_value(serde_json::json!({
                    "email": "a@acme.example", "policyID": "P1", "role": "user", "added": true,
                    "connector": "shared/holder"
                }))
                .unwrap(),
            ],
            ..AccessRequestStatus::default()
        });
        assert_eq!(
            connector_of_request(&orphan, lookup, answers),
            Some(ObjectKey::new("shared", "holder"))
        );

        let spec: AccessDecisionSpec = serde_json::from_value(serde_json::json!({
            "requestRef": {"name": "r1"}, "decision": "Approve", "decidedBy": "b@acme.example"
        }))
        .unwrap();
        let mut decision = AccessDecision::new("r1-b-x1", spec);
        decision.metadata.namespace = Some("finance".into());
        assert_eq!(
            request_of_decision(&decision),
            ObjectKey::new("finance", "r1")
        );
    }

    #[test]
    fn only_a_request_that_is_active_or_holds_entries_keeps_the_finalizer() {
        assert!(!holds_access(None));
        let mut status = AccessRequestStatus::default();
        assert!(!holds_access(Some(&status)), "pending");
        status.phase = RequestPhase::Active;
        assert!(holds_access(Some(&status)));
        status.phase = RequestPhase::Expired;
        assert!(!holds_access(Some(&status)), "ended and released");
        status.managed_members = vec![
            serde_json::from_value(serde_json::json!({
                "email": "a@acme.example", "policyID": "P1", "role": "user", "added": true
            }))
            .unwrap(),
        ];
        assert!(holds_access(Some(&status)), "ended, release still waiting");
    }

    #[test]
    fn each_new_history_entry_is_one_phase_change_in_order() {
        let approved = transition(
            10,
            RequestPhase::Active,
            "Approved",
            Some("boss@acme.example"),
        );
        let old = AccessRequestStatus {
            phase: RequestPhase::Pending,
            history: vec![transition(1, RequestPhase::Pending, "Created", None)],
            ..Default::default()
        };
        let mut new = old.clone();
        new.phase = RequestPhase::Expired;
        new.history.push(approved);
        new.history
            .push(transition(20, RequestPhase::Expired, "Ended", None));
        let changes = phase_changes(Some(&old), &new);
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.from, c.to, c.reason.as_str(), c.by.as_deref()))
                .collect::<Vec<_>>(),
            [
                (
                    RequestPhase::Pending,
                    RequestPhase::Active,
                    "Approved",
                    Some("boss@acme.example")
                ),
                (RequestPhase::Active, RequestPhase::Expired, "Ended", None),
            ]
        );
        assert_eq!(
            changes[0].note(),
            "Pending -> Active (Approved) by boss@acme.example"
        );
        assert!(phase_changes(Some(&new), &new).is_empty(), "nothing new");
    }

    #[test]
    fn a_phase_change_without_history_is_still_told() {
        let old = AccessRequestStatus::default();
        let new = AccessRequestStatus {
            phase: RequestPhase::Error,
            reason: Some("AdmissionNotInForce".into()),
            message: Some("the admission policy check is not wired".into()),
            ..Default::default()
        };
        let changes = phase_changes(Some(&old), &new);
        assert_eq!(changes.len(), 1);
        assert!(changes[0].is_warning());
        assert_eq!(
            changes[0].note(),
            "Pending -> Error (AdmissionNotInForce): the admission policy check is not wired"
        );
    }
}
