//! What is told: one [`Notification`] per event, built by a constructor per event so
//! every piece of user text goes through [`super::text::escape`], and its JSON body.

use serde_json::json;

use super::text::{MAX_NAME, MAX_USER_TEXT, escape};
use crate::api::NotificationEvent;
use crate::reconcile::ObjectKey;

/// The object a notification is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NotifiedObject {
    /// `ExpensifyConnector`, `PolicyAccess`, `AccessRequest`, `AccessReview`.
    pub kind: &'static str,
    pub key: ObjectKey,
}

/// One event to tell. `text` is already escaped for the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: NotificationEvent,
    /// The connector whose webhook it goes to and whose status records it.
    pub connector: ObjectKey,
    pub object: NotifiedObject,
    pub text: String,
    /// Sent once per key: e.g. `SetupNeeded:<connector>:<reason>`.
    pub dedup_key: String,
}

/// Names, each escaped and bounded, joined by commas (at most `MAX_LISTED`, then "and N
/// more").
fn names(people: &[String]) -> String {
    const MAX_LISTED: usize = 10;
    let mut listed: Vec<String> = people
        .iter()
        .take(MAX_LISTED)
        .map(|p| escape(p, MAX_NAME))
        .collect();
    if people.len() > MAX_LISTED {
        listed.push(format!("and {} more", people.len() - MAX_LISTED));
    }
    listed.join(", ")
}

/// The longest dedup key kept as written; a longer one (a long policy name) keeps its
/// start and a digest of the whole, so status stays bounded and keys stay distinct.
const MAX_DEDUP_KEY: usize = 200;

fn bounded_key(key: String) -> String {
    if key.len() <= MAX_DEDUP_KEY {
        return key;
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(key.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let mut end = MAX_DEDUP_KEY - hex.len() - 1;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}~{hex}", &key[..end])
}

fn key_text(key: &ObjectKey) -> String {
    escape(&key.to_string(), MAX_NAME)
}

impl Notification {
    /// The connector is in Error or NotConnected, or its credentials were rejected:
    /// `reason` is its Ready condition's reason, `message` what its status says.
    pub fn setup_needed(
        connector: &ObjectKey,
        owners: &[String],
        reason: &str,
        message: &str,
    ) -> Self {
        let what_to_do = match reason {
            "SecretNotFound" => {
                "create or fix its credentials Secret (partnerUserID and partnerUserSecret)"
            }
            "AuthenticationFailed" => {
                "Expensify rejected its credentials: issue new partner credentials and update its Secret"
            }
            "PermissionDenied" => {
                "its Expensify account lacks the rights it needs: make adminEmail an admin of the policies"
            }
            "InvalidSpec" => "fix its spec (see its status message)",
            _ => "see its status and the operator's log",
        };
        let addressed = if owners.is_empty() {
            "No owners are named (spec.owners).".to_string()
        } else {
            format!("Owners: {}.", names(owners))
        };
        Self {
            event: NotificationEvent::SetupNeeded,
            connector: connector.clone(),
            object: NotifiedObject {
                kind: "ExpensifyConnector",
                key: connector.clone(),
            },
            text: format!(
                "Expensify connector {} needs setup ({}): {}. To do: {what_to_do}. {addressed}",
                key_text(connector),
                escape(reason, MAX_NAME),
                escape(message, MAX_USER_TEXT),
            ),
            dedup_key: bounded_key(format!("SetupNeeded:{connector}:{reason}")),
        }
    }

    /// `email`'s access to `policy` (as people know it: its name, or its id), given by the
    /// PolicyAccess `access`, ends at `expires_at` (RFC 3339, as the manifest says it).
    pub fn access_expiring(
        connector: &ObjectKey,
        access: &ObjectKey,
        policy: &str,
        email: &str,
        expires_at: &str,
    ) -> Self {
        Self {
            event: NotificationEvent::AccessExpiring,
            connector: connector.clone(),
            object: NotifiedObject {
                kind: "PolicyAccess",
                key: access.clone(),
            },
            text: format!(
                "Access of {} to Expensify policy {} ends at {} (PolicyAccess {}); it is revoked then unless the manifest is changed.",
                escape(email, MAX_NAME),
                escape(policy, MAX_NAME),
                escape(expires_at, MAX_NAME),
                key_text(access),
            ),
            // A PolicyAccess names one policy: the key need not (its name may be unknown).
            dedup_key: bounded_key(format!("AccessExpiring:{access}:{email}:{expires_at}")),
        }
    }

    /// An access request waits for `approvers`.
    pub fn request_pending(
        connector: &ObjectKey,
        request: &ObjectKey,
        requester: &str,
        policy: &str,
        role: &str,
        reason: &str,
        approvers: &[String],
    ) -> Self {
        Self {
            event: NotificationEvent::RequestPending,
            connector: connector.clone(),
            object: NotifiedObject {
                kind: "AccessRequest",
                key: request.clone(),
            },
            text: format!(
                "{} asks for {} on Expensify policy {} (AccessRequest {}): \"{}\". Approvers: {}.",
                escape(requester, MAX_NAME),
                escape(role, MAX_NAME),
                escape(policy, MAX_NAME),
                key_text(request),
                escape(reason, MAX_USER_TEXT),
                names(approvers),
            ),
            dedup_key: bounded_key(format!("RequestPending:{request}")),
        }
    }

    /// An access request was decided (`decision`: e.g. `Approved`, `Denied`) by `by`.
    pub fn request_decided(
        connector: &ObjectKey,
        request: &ObjectKey,
        requester: &str,
        policy: &str,
        decision: &str,
        by: &str,
    ) -> Self {
        Self {
            event: NotificationEvent::RequestDecided,
            connector: connector.clone(),
            object: NotifiedObject {
                kind: "AccessRequest",
                key: request.clone(),
            },
            text: format!(
                "The request of {} for Expensify policy {} (AccessRequest {}) was {} by {}.",
                escape(requester, MAX_NAME),
                escape(policy, MAX_NAME),
                key_text(request),
                escape(decision, MAX_NAME),
                escape(by, MAX_NAME),
            ),
            dedup_key: bounded_key(format!("RequestDecided:{request}:{decision}")),
        }
    }

    /// An access review is due at `due` (RFC 3339), for `reviewers`.
    pub fn review_due(
        connector: &ObjectKey,
        review: &ObjectKey,
        reviewers: &[String],
        due: &str,
    ) -> Self {
        Self {
            event: NotificationEvent::ReviewDue,
            connector: connector.clone(),
            object: NotifiedObject {
                kind: "AccessReview",
                key: review.clone(),
            },
            text: format!(
                "Access review {} is due by {}. Reviewers: {}.",
                key_text(review),
                escape(due, MAX_NAME),
                names(reviewers),
            ),
            dedup_key: bounded_key(format!("ReviewDue:{review}:{due}")),
        }
    }

    /// The JSON body posted: `{"text": ..., "event": ..., "object": {...}}` (Slack reads
    /// `text`; other receivers may read the rest).
    pub fn body(&self) -> serde_json::Value {
        json!({
            "text": self.text,
            "event": self.event.to_string(),
            "object": {
                "kind": self.object.kind,
                "namespace": self.object.key.namespace,
                "name": self.object.key.name,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector() -> ObjectKey {
        ObjectKey::new("finance", "acme")
    }

    #[test]
    fn setup_needed_names_the_connector_the_reason_what_to_do_and_the_owners() {
        let n = Notification::setup_needed(
            &connector(),
            &["it@acme.example".into()],
            "SecretNotFound",
            "Secret \"creds\" not found <!channel>",
        );
        assert_eq!(n.dedup_key, "SetupNeeded:finance/acme:SecretNotFound");
        assert!(n.text.contains("finance/acme"), "{}", n.text);
        assert!(n.text.contains("credentials Secret"), "{}", n.text);
        assert!(n.text.contains("Owners: it@acme.example"), "{}", n.text);
        assert!(!n.text.contains("<!channel>"), "{}", n.text);
        let body = n.body();
        assert_eq!(body["event"], "SetupNeeded");
        assert_eq!(body["object"]["kind"], "ExpensifyConnector");
        assert_eq!(body["object"]["name"], "acme");
        assert_eq!(body["text"], n.text);
    }

    #[test]
    fn a_request_reason_is_escaped_and_bounded() {
        let reason = format!("@here <https://evil|click> {}", "x".repeat(5000));
        let n = Notification::request_pending(
            &connector(),
            &ObjectKey::new("finance", "req-1"),
            "ana@acme.example",
            "Travel",
            "user",
            &reason,
            &["boss@acme.example".into(), "<@U1>".into()],
        );
        assert!(
            !n.text.contains('<') && !n.text.contains("@here"),
            "{}",
            n.text
        );
        assert!(n.text.contains("&lt;@U1&gt;"));
        assert!(n.text.chars().count() < MAX_USER_TEXT + 400);
        assert_eq!(n.dedup_key, "RequestPending:finance/req-1");
    }

    #[test]
    fn a_long_dedup_key_is_bounded_and_stays_distinct() {
        let expiring = |expires_at: &str| {
            Notification::access_expiring(
                &connector(),
                &ObjectKey::new("finance", "team"),
                "Travel",
                "ana@acme.example",
                expires_at,
            )
            .dedup_key
        };
        let (a, b) = (
            expiring(&"é".repeat(400)),
            expiring(&format!("{}x", "é".repeat(399))),
        );
        assert!(a.len() <= MAX_DEDUP_KEY && b.len() <= MAX_DEDUP_KEY);
        assert_ne!(a, b);
        assert_eq!(
            expiring("2030-01-01T00:00:00Z"),
            "AccessExpiring:finance/team:ana@acme.example:2030-01-01T00:00:00Z"
        );
    }
}
