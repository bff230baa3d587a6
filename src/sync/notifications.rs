//! The notifications a sync's outcome calls for, as plain data on its report: the
//! adapters hand them to the sender and publish their Events. Only what the connector
//! sends (`spec.notifications.events`, all by default) and has not sent already (its
//! status's record) is listed.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::report::SyncReport;
use super::request::SyncRequest;
use crate::api::{ConditionType, ConnectorPhase, NotificationEvent};
use crate::notify::Notification;
use crate::reconcile::validate::connector_allows;
use crate::reconcile::{AccessObject, ObjectKey};

/// `expiringLead` of a connector without `spec.notifications`.
const DEFAULT_EXPIRING_LEAD: Duration = Duration::from_secs(3600);

/// Reasons of a connector not synced that need nobody's setup: it was told to stop, or
/// its phase could not even be recorded (leadership moved; the next sync says more).
const NO_SETUP_NEEDED: [&str; 2] = ["Suspended", "Progressing"];

/// Lists on `report` the notifications this sync's outcome calls for.
pub(super) fn collect(request: SyncRequest<'_>, report: &mut SyncReport) {
    let connector = request.connector;
    let spec = connector.spec.notifications.as_ref();
    let status = &mut report.connector_status;
    if status.phase == ConnectorPhase::Connected
        && let Some(record) = status.notifications.as_mut()
    {
        // Working again: the next time it needs setup is news again.
        record.sent.retain(|s| !s.key.starts_with("SetupNeeded:"));
    }
    let mut found = Vec::new();
    if matches!(
        status.phase,
        ConnectorPhase::Error | ConnectorPhase::NotConnected
    ) {
        let reason = status
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Ready.as_str())
            .map_or("NotConnected", |c| c.reason.as_str());
        if !NO_SETUP_NEEDED.contains(&reason) {
            found.push(Notification::setup_needed(
                &connector.key,
                &status.owners,
                reason,
                status.message.as_deref().unwrap_or_default(),
            ));
        }
    }
    let lead = spec.map_or(
        DEFAULT_EXPIRING_LEAD,
        crate::api::NotificationsSpec::expiring_lead,
    );
    for access in request.accesses.iter().filter(|a| {
        !a.deleting
            && a.connector_key() == connector.key
            && connector_allows(connector, &a.key.namespace)
    }) {
        found.extend(expiring(&connector.key, access, request.now, lead));
    }
    let sends = |event: NotificationEvent| spec.is_none_or(|s| s.sends(event));
    let record = status.notifications.as_ref();
    report.notifications = found
        .into_iter()
        .filter(|n| sends(n.event))
        .filter(|n| record.is_none_or(|r| !r.has(&n.dedup_key)))
        .collect();
}

/// `AccessExpiring` for each member of `access` whose `expiresAt` is ahead, within `lead`.
fn expiring(
    connector: &ObjectKey,
    access: &AccessObject,
    now: Timestamp,
    lead: Duration,
) -> Vec<Notification> {
    let lead = SignedDuration::try_from(lead).unwrap_or(SignedDuration::MAX);
    let policy = &access.spec.policy;
    let policy = policy
        .name
        .as_deref()
        .or(policy.id.as_deref())
        .unwrap_or_default();
    access
        .spec
        .members
        .iter()
        .filter_map(|member| {
            let text = member.expires_at.as_deref()?;
            let ends: Timestamp = text.parse().ok()?;
            let left = now.duration_until(ends);
            (left > SignedDuration::ZERO && left <= lead).then(|| {
                Notification::access_expiring(connector, &access.key, policy, &member.email, text)
            })
        })
        .collect()
}
