//! Kubernetes conditions that change their transition time only on a real transition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// The condition types this operator sets (kstatus: `Ready`; `Stalled` and `Reconciling`
/// only while true).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    Ready,
    Synced,
    Stalled,
    Reconciling,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Synced => "Synced",
            ConditionType::Stalled => "Stalled",
            ConditionType::Reconciling => "Reconciling",
        }
    }
}

/// Every reason a condition of ours can give: one vocabulary for both kinds and both modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    // Both kinds.
    Synced,
    Suspended,
    InvalidSpec,
    // PolicyAccess: asks for a policy or role its namespace is not granted (spec.tenants).
    NotGranted,
    // ExpensifyConnector.
    AuthenticationFailed,
    PermissionDenied,
    RateLimited,
    ExpensifyError,
    SecretNotFound,
    // PolicyAccess.
    Observed,
    Progressing,
    PartialFailure,
    ConnectorNotReady,
    ConnectorSuspended,
    Deleting,
    CannotSettle,
    Conflict,
    RevocationLimit,
    Protected,
    RemovalsHeld,
    // The `Synced` condition.
    InSync,
    Drift,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Synced => "Synced",
            Reason::Suspended => "Suspended",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::NotGranted => "NotGranted",
            Reason::AuthenticationFailed => "AuthenticationFailed",
            Reason::PermissionDenied => "PermissionDenied",
            Reason::RateLimited => "RateLimited",
            Reason::ExpensifyError => "ExpensifyError",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::Observed => "Observed",
            Reason::Progressing => "Progressing",
            Reason::PartialFailure => "PartialFailure",
            Reason::ConnectorNotReady => "ConnectorNotReady",
            Reason::ConnectorSuspended => "ConnectorSuspended",
            Reason::Deleting => "Deleting",
            Reason::CannotSettle => "CannotSettle",
            Reason::Conflict => "Conflict",
            Reason::RevocationLimit => "RevocationLimit",
            Reason::Protected => "Protected",
            Reason::RemovalsHeld => "RemovalsHeld",
            Reason::InSync => "InSync",
            Reason::Drift => "Drift",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition to set.
#[derive(Debug, Clone, Copy)]
pub struct ConditionUpdate<'a> {
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: &'a str,
    pub observed_generation: Option<i64>,
}

/// Sets (or replaces) the condition of `update.type_` in `conditions`. `lastTransitionTime`
/// moves only when the status changes, so writing the same state twice is a no-op.
pub fn set_condition(conditions: &mut Vec<Condition>, update: ConditionUpdate<'_>, now: Timestamp) {
    let ConditionUpdate {
        type_,
        status,
        reason,
        message,
        observed_generation,
    } = update;
    let (type_, reason) = (type_.as_str(), reason.as_str());
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status.as_str())
        .map_or(Time(now), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(
        status: ConditionStatus,
        reason: Reason,
        message: &str,
        generation: i64,
    ) -> ConditionUpdate<'_> {
        ConditionUpdate {
            type_: ConditionType::Ready,
            status,
            reason,
            message,
            observed_generation: Some(generation),
        }
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t1 = Timestamp::from_second(1_000).unwrap();
        let t2 = Timestamp::from_second(2_000).unwrap();
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(ConditionStatus::True, Reason::Synced, "ok", 1),
            t1,
        );
        set_condition(
            &mut conditions,
            ready(ConditionStatus::True, Reason::Synced, "still ok", 2),
            t2,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t1));
        assert_eq!(conditions[0].message, "still ok");
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, Reason::ExpensifyError, "bad", 2),
            t2,
        );
        assert_eq!(conditions[0].last_transition_time, Time(t2));
        assert_eq!(conditions[0].reason, "ExpensifyError");
    }
}
