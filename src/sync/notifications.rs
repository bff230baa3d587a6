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
use crate::reconcile::{AccessObject, ObjectKey, Observed};

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
        found.extend(expiring(
            &connector.key,
            access,
            &report.observed,
            request.now,
            lead,
        ));
    }
    found.extend(requests(request, report, lead));
    let status = &report.connector_status;
    let sends = |event: NotificationEvent| spec.is_none_or(|s| s.sends(event));
    let record = status.notifications.as_ref();
    report.notifications = found
        .into_iter()
        .filter(|n| sends(n.event))
        .filter(|n| record.is_none_or(|r| !r.has(&n.dedup_key)))
        .collect();
}

/// What the requests' new statuses call for telling: a request waiting for its approvers
/// (`RequestPending`, to the approvers its rules name), a decision that moved it
/// (`RequestDecided`), and an active grant ending within `lead` (`AccessExpiring`).
fn requests(request: SyncRequest<'_>, report: &SyncReport, lead: Duration) -> Vec<Notification> {
    use crate::api::RequestPhase;
    let connector = &request.connector.key;
    let lead = SignedDuration::try_from(lead).unwrap_or(SignedDuration::MAX);
    let mut found = Vec::new();
    for asked in request.requests.requests {
        let Some(status) = report.request_statuses.get(&asked.key) else {
            continue;
        };
        let spec = &asked.spec;
        let policy = status
            .policy_name
            .clone()
            .or_else(|| status.policy_id.clone())
            .unwrap_or_else(|| format!("of PolicyAccess {}", spec.access_ref.name));
        let role = spec.role.as_deref().unwrap_or("user");
        match status.phase {
            RequestPhase::Pending => found.push(Notification::request_pending(
                connector,
                &asked.key,
                &spec.requester,
                &policy,
                role,
                spec.reason.as_deref().unwrap_or_default(),
                &status.approvers,
            )),
            RequestPhase::Active | RequestPhase::Denied | RequestPhase::Revoked => {
                let (decision, by) = match status.phase {
                    RequestPhase::Active => {
                        ("approved", status.approvals.last().map(|a| a.by.as_str()))
                    }
                    RequestPhase::Denied => {
                        ("denied", status.denial.as_ref().map(|d| d.by.as_str()))
                    }
                    _ => ("revoked", status.denial.as_ref().map(|d| d.by.as_str())),
                };
                // Only a person's decision is news; a merge or the rules are not.
                if let Some(by) = by {
                    found.push(Notification::request_decided(
                        connector,
                        &asked.key,
                        &spec.requester,
                        &policy,
                        decision,
                        by,
                    ));
                }
            }
            _ => {}
        }
        if status.phase == RequestPhase::Active
            && let Some(ends) = &status.expires_at
        {
            let left = request.now.duration_until(ends.0);
            if left > SignedDuration::ZERO && left <= lead {
                found.push(Notification::access_expiring(
                    connector,
                    &asked.key,
                    &policy,
                    &spec.email,
                    &ends.0.to_string(),
                ));
            }
        }
    }
    found
}

/// The policy as people know it: its name (with its id, when Expensify was read), else
/// what the manifest names it by.
fn policy_label(access: &AccessObject, observed: &Observed) -> String {
    let selector = &access.spec.policy;
    if let Some(id) = &selector.id {
        return match observed.policies.iter().find(|p| &p.id == id) {
            Some(policy) if !policy.name.is_empty() => format!("{} ({id})", policy.name),
            _ => id.clone(),
        };
    }
    selector.name.clone().unwrap_or_default()
}

/// `AccessExpiring` for each member of `access` whose `expiresAt` is ahead, within `lead`.
fn expiring(
    connector: &ObjectKey,
    access: &AccessObject,
    observed: &Observed,
    now: Timestamp,
    lead: Duration,
) -> Vec<Notification> {
    let lead = SignedDuration::try_from(lead).unwrap_or(SignedDuration::MAX);
    let policy = policy_label(access, observed);
    access
        .spec
        .members
        .iter()
        .filter_map(|member| {
            let text = member.expires_at.as_deref()?;
            let ends: Timestamp = text.parse().ok()?;
            let left = now.duration_until(ends);
            (left > SignedDuration::ZERO && left <= lead).then(|| {
                Notification::access_expiring(connector, &access.key, &policy, &member.email, text)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        DeliveryOutcome, MemberSpec, NotificationsSpec, NotificationsStatus, Reason,
        SentNotification, WebhookSecretRef,
    };
    use crate::reconcile::ConnectorObject;
    use crate::reconcile::validate::tests::{access, connector};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn member(email: &str, ends_in_seconds: i64) -> MemberSpec {
        MemberSpec {
            email: email.into(),
            role: None,
            submits_to: None,
            employee_id: None,
            expires_at: Some(
                Timestamp::from_second(now().as_second() + ends_in_seconds)
                    .unwrap()
                    .to_string(),
            ),
        }
    }

    fn request<'a>(
        connector: &'a ConnectorObject,
        accesses: &'a [AccessObject],
    ) -> SyncRequest<'a> {
        SyncRequest {
            requests: crate::reconcile::Requests::NONE,
            connector,
            connectors: std::slice::from_ref(connector),
            accesses,
            now: now(),
            inventory_complete: true,
            scope: crate::reconcile::Scope::Everything,
            unverified: &[],
            dry_run: false,
            write_ahead: None,
            reviewed: None,
        }
    }

    /// The notifications of a sync that ended with `reason` (`None`: Connected).
    fn collected(
        connector: &ConnectorObject,
        accesses: &[AccessObject],
        reason: Option<Reason>,
    ) -> Vec<Notification> {
        let request = request(connector, accesses);
        let mut report = match reason {
            Some(reason) => super::super::unsynced(request, reason, "no Secret creds", false),
            None => super::super::unsynced(request, Reason::Synced, "", false),
        };
        if reason.is_none() {
            report.connector_status.phase = ConnectorPhase::Connected;
        }
        collect(request, &mut report);
        report.notifications
    }

    fn keys(notifications: &[Notification]) -> Vec<&str> {
        notifications.iter().map(|n| n.dedup_key.as_str()).collect()
    }

    #[test]
    fn a_connector_in_error_needs_setup_a_suspended_one_does_not() {
        let mut c = connector("finance", &[]);
        c.spec.owners = vec!["it@acme.example".into()];
        let found = collected(&c, &[], Some(Reason::SecretNotFound));
        assert_eq!(keys(&found), ["SetupNeeded:finance/acme:SecretNotFound"]);
        assert!(
            found[0].text.contains("no Secret creds"),
            "{}",
            found[0].text
        );
        let request = request(&c, &[]);
        let mut suspended = super::super::unsynced(request, Reason::Suspended, "suspended", true);
        collect(request, &mut suspended);
        assert!(suspended.notifications.is_empty());
        assert!(collected(&c, &[], None).is_empty(), "Connected");
    }

    #[test]
    fn access_expiring_within_the_lead_only() {
        let mut c = connector("finance", &[]);
        c.spec.notifications = Some(NotificationsSpec {
            webhook_secret_ref: WebhookSecretRef {
                name: "notify".into(),
                key: "url".into(),
            },
            events: NotificationEvent::ALL.to_vec(),
            expiring_lead: "2h".into(),
        });
        let accesses = [access(
            "finance",
            vec![
                member("soon@acme.example", 3600),
                member("edge@acme.example", 7200),
                member("later@acme.example", 7201),
                member("gone@acme.example", -1),
            ],
        )];
        let found = collected(&c, &accesses, None);
        let emails: Vec<bool> = ["soon@", "edge@", "later@", "gone@"]
            .iter()
            .map(|e| found.iter().any(|n| n.dedup_key.contains(e)))
            .collect();
        assert_eq!(emails, [true, true, false, false], "{:?}", keys(&found));
        assert!(
            found
                .iter()
                .all(|n| n.event == NotificationEvent::AccessExpiring)
        );
    }

    #[test]
    fn only_the_events_asked_for_and_not_sent_before() {
        let mut c = connector("finance", &[]);
        c.spec.notifications = Some(NotificationsSpec {
            webhook_secret_ref: WebhookSecretRef {
                name: "notify".into(),
                key: "url".into(),
            },
            events: vec![NotificationEvent::AccessExpiring],
            expiring_lead: "1h".into(),
        });
        let accesses = [access("finance", vec![member("soon@acme.example", 60)])];
        let found = collected(&c, &accesses, Some(Reason::AuthenticationFailed));
        assert_eq!(found.len(), 1, "no SetupNeeded: {:?}", keys(&found));
        let sent = SentNotification {
            key: found[0].dedup_key.clone(),
            outcome: DeliveryOutcome::Failed,
            at: Time(now()),
        };
        c.status = Some(crate::api::ExpensifyConnectorStatus {
            notifications: Some(NotificationsStatus { sent: vec![sent] }),
            ..Default::default()
        });
        assert!(collected(&c, &accesses, Some(Reason::AuthenticationFailed)).is_empty());
    }

    #[test]
    fn working_again_forgets_the_setup_needed_sent() {
        let mut c = connector("finance", &[]);
        let sent = |key: &str| SentNotification {
            key: key.into(),
            outcome: DeliveryOutcome::Delivered,
            at: Time(now()),
        };
        c.status = Some(crate::api::ExpensifyConnectorStatus {
            notifications: Some(NotificationsStatus {
                sent: vec![
                    sent("SetupNeeded:finance/acme:SecretNotFound"),
                    sent("AccessExpiring:finance/team:P1:a@acme.example:x"),
                ],
            }),
            ..Default::default()
        });
        assert!(collected(&c, &[], Some(Reason::SecretNotFound)).is_empty());
        let request = request(&c, &[]);
        let mut report = super::super::unsynced(request, Reason::Synced, "", false);
        report.connector_status.phase = ConnectorPhase::Connected;
        collect(request, &mut report);
        let kept = report.connector_status.notifications.unwrap().sent;
        assert_eq!(kept.len(), 1);
        assert!(kept[0].key.starts_with("AccessExpiring:"));
    }

    #[test]
    fn requests_tell_their_approvers_their_decision_and_their_end() {
        use crate::api::{
            AccessRequestSpec, AccessRequestStatus, DecisionRecord, LocalRef, RequestPhase,
        };
        use crate::reconcile::{Approval, RequestObject, Requests};
        let c = connector("finance", &[]);
        let asked = |name: &str| RequestObject {
            key: ObjectKey::new("finance", name),
            generation: Some(1),
            created: None,
            spec: AccessRequestSpec {
                access_ref: LocalRef {
                    name: "team".into(),
                },
                email: "temp@acme.example".into(),
                role: Some("admin".into()),
                duration: "4h".into(),
                reason: Some("<!channel> close".into()),
                requester: "temp@acme.example".into(),
            },
            deleting: false,
            status: None,
        };
        let requests = [asked("waiting"), asked("approved"), asked("merged")];
        let mut sync = request(&c, &[]);
        sync.requests = Requests {
            requests: &requests,
            decisions: &[],
            approval: Approval::Merge,
        };
        let mut report = super::super::unsynced(sync, Reason::Synced, "", false);
        report.connector_status.phase = ConnectorPhase::Connected;
        let at = Time(now());
        let ends = Time(Timestamp::from_second(now().as_second() + 1800).unwrap());
        report.request_statuses.insert(
            ObjectKey::new("finance", "waiting"),
            AccessRequestStatus {
                phase: RequestPhase::Pending,
                approvers: vec!["cfo@acme.example".into()],
                ..Default::default()
            },
        );
        report.request_statuses.insert(
            ObjectKey::new("finance", "approved"),
            AccessRequestStatus {
                phase: RequestPhase::Active,
                approvals: vec![DecisionRecord {
                    by: "cfo@acme.example".into(),
                    at: at.clone(),
                    decision: "yes".into(),
                    comment: None,
                }],
                expires_at: Some(ends.clone()),
                ..Default::default()
            },
        );
        report.request_statuses.insert(
            ObjectKey::new("finance", "merged"),
            AccessRequestStatus {
                phase: RequestPhase::Active,
                expires_at: Some(Time(
                    Timestamp::from_second(now().as_second() + 8 * 3600).unwrap(),
                )),
                ..Default::default()
            },
        );
        collect(sync, &mut report);
        let found = &report.notifications;
        let events: Vec<(NotificationEvent, String)> = found
            .iter()
            .map(|n| (n.event, n.object.key.name.clone()))
            .collect();
        assert_eq!(
            events,
            [
                (NotificationEvent::RequestPending, "waiting".to_string()),
                (NotificationEvent::RequestDecided, "approved".to_string()),
                (NotificationEvent::AccessExpiring, "approved".to_string()),
            ],
            "a merge is no decision and an end 8h away is not near"
        );
        assert!(
            found[0].text.contains("cfo@acme.example"),
            "{}",
            found[0].text
        );
        assert!(!found[0].text.contains("<!channel>"), "{}", found[0].text);
    }
}
