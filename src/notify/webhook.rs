//! The webhook URL: a secret (it carries the receiver's token), checked against the
//! operator's allowlist exactly as endpoints are, and never shown.

use std::fmt;

use url::Url;

use crate::expensify::{ClientConfigError, UrlPrefixes, checked_endpoint};
use crate::reconcile::ObjectKey;

/// `--allowed-webhooks` when not given: Slack's incoming webhooks.
pub const DEFAULT_ALLOWED_WEBHOOKS: &str = "https://hooks.slack.com/";

/// The URL prefixes notifications may be posted to (`--allowed-webhooks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedWebhooks {
    prefixes: UrlPrefixes,
}

impl AllowedWebhooks {
    /// Parses a comma-separated list of URL prefixes (https, or http on loopback).
    pub fn parse(list: &str) -> Result<Self, ClientConfigError> {
        Ok(Self {
            prefixes: UrlPrefixes::parse(list)?,
        })
    }

    /// The connector's webhook URL, read from its Secret, if it is an acceptable URL and
    /// starts with an allowed prefix. The error never holds the URL.
    pub fn check(&self, connector: &ObjectKey, url: &str) -> Result<WebhookUrl, WebhookRefused> {
        let refused = |why: String| WebhookRefused {
            connector: connector.clone(),
            why,
        };
        // The parser's own message would quote the URL: say what is wrong without it.
        let parsed = checked_endpoint(url.trim()).map_err(|e| {
            refused(match e {
                ClientConfigError::InsecureEndpoint { .. } => {
                    "it uses plain http (https only, except on loopback)".to_string()
                }
                ClientConfigError::UnsupportedScheme { scheme, .. } => {
                    format!("its scheme {scheme:?} is not https")
                }
                _ => "it is not a valid URL".to_string(),
            })
        })?;
        if !self.prefixes.covers(&parsed) {
            return Err(refused(format!(
                "it is not under an allowed webhook prefix (allowed: {}; the operator sets them with --allowed-webhooks or EXPENSIFY_ALLOWED_WEBHOOKS)",
                self.prefixes
            )));
        }
        Ok(WebhookUrl(parsed))
    }
}

impl fmt::Display for AllowedWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.prefixes.fmt(f)
    }
}

/// A webhook URL that passed the allowlist. Its Debug hides it, and it has no Display:
/// it can reach no log line, message or status.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    pub(super) fn url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookUrl(<redacted>)")
    }
}

/// A webhook URL that may not be used; nothing is posted to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "connector {connector}: the webhook URL in spec.notifications.webhookSecretRef is refused: {why}; no notification is sent"
)]
pub struct WebhookRefused {
    pub connector: ObjectKey,
    pub why: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectKey {
        ObjectKey::new("finance", "acme")
    }

    #[test]
    fn the_default_allows_slack_alone() {
        let allowed = AllowedWebhooks::parse(DEFAULT_ALLOWED_WEBHOOKS).unwrap();
        assert!(
            allowed
                .check(&key(), "https://hooks.slack.com/services/T0/B0/secret")
                .is_ok()
        );
        for refused in [
            "https://hooks.slack.com.evil.io/services/x",
            "https://hooks.slack.com@evil.io/services/x",
            "http://hooks.slack.com/services/x",
            "https://evil.io/hooks.slack.com/",
            "ftp://hooks.slack.com/x",
            "not a url",
        ] {
            assert!(allowed.check(&key(), refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_refusal_names_the_field_and_never_the_url() {
        let allowed = AllowedWebhooks::parse("https://hooks.example/").unwrap();
        for url in [
            "https://evil.io/T0/secret-token",
            "http://evil.io/T0/secret-token",
            "gopher://evil.io/T0/secret-token",
            "::secret-token",
        ] {
            let error = allowed.check(&key(), url).unwrap_err().to_string();
            assert!(
                error.contains("spec.notifications.webhookSecretRef"),
                "{error}"
            );
            assert!(error.contains("finance/acme"), "{error}");
            assert!(!error.contains("secret-token"), "{error}");
        }
        let ok = allowed
            .check(&key(), "https://hooks.example/T0/secret-token")
            .unwrap();
        assert_eq!(format!("{ok:?}"), "WebhookUrl(<redacted>)");
    }
}
