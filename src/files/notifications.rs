//! File mode's side of notifications: the webhook URL read from `--secrets-dir` (laid out
//! as a mounted Secret, like the credentials), the sync's notifications handed to the
//! sender, and the deliveries that ended recorded in the connector's status file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use crate::api::{ExpensifyConnector, WebhookSecretRef};
use crate::notify::{Notifier, record_finished};
use crate::reconcile::{ConnectorObject, ObjectKey};
use crate::sync::SyncReport;

use super::credentials::read_secret_file;
use super::status_dir::{StatusDir, StatusDirError};

/// A webhook URL file larger than this is refused unread.
const MAX_WEBHOOK_URL_BYTES: u64 = 4096;

/// How long `apply` waits, at most, for the notifications of its pass to be delivered
/// before it records what ended and exits (the sender's retries fit within it).
pub const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// File mode's notifications: the sender and where webhook URLs are read.
#[derive(Debug, Clone)]
pub struct FileNotifications {
    pub notifier: Notifier,
    /// `--secrets-dir`: the URL is `DIR/<webhookSecretRef.name>/<webhookSecretRef.key>`.
    pub secrets_dir: Option<PathBuf>,
}

/// Why a webhook URL could not be read. Never carries the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadWebhookError {
    #[error("spec.notifications.webhookSecretRef: {0}")]
    BadName(#[source] crate::names::InvalidName),
    #[error(
        "no --secrets-dir (EXPENSIFY_SECRETS_DIR) given to read spec.notifications.webhookSecretRef from"
    )]
    NoSecretsDir,
    #[error("spec.notifications.webhookSecretRef: no file {path}")]
    NotFound { path: String },
    #[error("spec.notifications.webhookSecretRef: cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
}

/// The webhook URL of `reference`, read from `DIR/<name>/<key>` (bounded).
pub fn read_webhook_url(
    dir: Option<&Path>,
    reference: &WebhookSecretRef,
) -> Result<String, ReadWebhookError> {
    crate::names::check_subdomain(&reference.name).map_err(ReadWebhookError::BadName)?;
    crate::names::check_secret_key(&reference.key).map_err(ReadWebhookError::BadName)?;
    let dir = dir.ok_or(ReadWebhookError::NoSecretsDir)?;
    let path = dir.join(&reference.name).join(&reference.key);
    let shown = || path.display().to_string();
    let bytes = read_secret_file(&path, MAX_WEBHOOK_URL_BYTES)
        .map_err(|message| ReadWebhookError::Unreadable {
            path: shown(),
            message,
        })?
        .ok_or_else(|| ReadWebhookError::NotFound { path: shown() })?;
    let text = String::from_utf8(bytes).map_err(|_| ReadWebhookError::Unreadable {
        path: shown(),
        message: "not UTF-8".to_string(),
    })?;
    Ok(text.trim().to_string())
}

impl FileNotifications {
    /// After a connector's sync: the deliveries that ended since its last one recorded in
    /// its status, and this sync's notifications handed to the sender (when the
    /// connector has a webhook whose URL passes the allowlist; else a warning says why).
    pub fn hand_over(&self, connector: &ConnectorObject, report: &mut SyncReport) {
        let finished = self.notifier.take_finished(&connector.key);
        record_finished(&mut report.connector_status, finished);
        let fresh = self
            .notifier
            .fresh(std::mem::take(&mut report.notifications));
        let Some(spec) = connector.spec.notifications.as_ref() else {
            return;
        };
        if fresh.is_empty() {
            return;
        }
        let webhook = read_webhook_url(self.secrets_dir.as_deref(), &spec.webhook_secret_ref)
            .map_err(|e| format!("connector {}: {e}; no notification is sent", connector.key))
            .and_then(|url| {
                self.notifier
                    .allowed()
                    .check(&connector.key, &url)
                    .map_err(|e| e.to_string())
            });
        match webhook {
            Ok(webhook) => self.notifier.send(&webhook, fresh),
            Err(why) => warn!(connector = %connector.key, notifications = fresh.len(), "{why}"),
        }
    }

    /// Waits (at most `wait`) for the queued notifications, then records every delivery
    /// that ended in its connector's status file (a connector without one is skipped).
    pub async fn settle(
        &self,
        status_dir: &StatusDir,
        wait: Duration,
    ) -> Result<(), StatusDirError> {
        if !self.notifier.wait_idle(wait).await {
            warn!(
                waited_seconds = wait.as_secs(),
                "notifications still being delivered; those not finished are offered again by the next run"
            );
        }
        for key in self.notifier.connectors_with_finished() {
            record_in_status_file(status_dir, &key, self.notifier.take_finished(&key))?;
        }
        status_dir.flush_index()
    }
}

fn record_in_status_file(
    status_dir: &StatusDir,
    key: &ObjectKey,
    finished: Vec<crate::api::SentNotification>,
) -> Result<(), StatusDirError> {
    let Some(mut object) = status_dir.read::<ExpensifyConnector>(key)? else {
        return Ok(());
    };
    record_finished(object.status.get_or_insert_default(), finished);
    status_dir.write(key, &object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_read_from_the_mounted_secret_layout_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let reference = WebhookSecretRef {
            name: "notify".into(),
            key: "url".into(),
        };
        assert_eq!(
            read_webhook_url(None, &reference),
            Err(ReadWebhookError::NoSecretsDir)
        );
        assert!(matches!(
            read_webhook_url(Some(dir.path()), &reference),
            Err(ReadWebhookError::NotFound { .. })
        ));
        std::fs::create_dir(dir.path().join("notify")).unwrap();
        std::fs::write(dir.path().join("notify/url"), "https://hooks.slack.com/x\n").unwrap();
        assert_eq!(
            read_webhook_url(Some(dir.path()), &reference).unwrap(),
            "https://hooks.slack.com/x"
        );
        std::fs::write(dir.path().join("notify/url"), "h".repeat(5000)).unwrap();
        let error = read_webhook_url(Some(dir.path()), &reference).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
        let escaping = WebhookSecretRef {
            name: "..".into(),
            key: "url".into(),
        };
        assert!(matches!(
            read_webhook_url(Some(dir.path()), &escaping),
            Err(ReadWebhookError::BadName(_))
        ));
    }
}
