//! Notifications end to end against a webhook receiver on loopback: each sent once
//! across a restart, retried on 5xx and 429, never holding up a sync, refused (and never
//! contacted) outside the allowlist, and the URL never shown in logs or status.

mod support;

use std::time::Duration;

use expensify_operator::api::{ConnectorPhase, DeliveryOutcome, ExpensifyConnector};
use expensify_operator::files::notifications::FileNotifications;
use expensify_operator::files::{FileMode, Run, StatusDir};
use expensify_operator::notify::{AllowedWebhooks, Notifier, NotifierSettings, NotifyCounters};
use expensify_operator::reconcile::ObjectKey;
use support::webhook::{Answer, Webhook};
use support::*;

const NOTIFY: &str =
    "  owners: [it-admin@acme.example]\n  notifications: {webhookSecretRef: {name: notify}}\n";

/// File mode over `repo` with a notifier allowed to post to `hook`, fast retries, and a
/// request timeout no test reaches.
fn notifying(
    repo: &Repo,
    hook: &Webhook,
    secrets: &tempfile::TempDir,
    partner_secret: &str,
) -> FileMode {
    let settings = NotifierSettings {
        request_timeout: Duration::from_secs(3600),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        ..NotifierSettings::new(AllowedWebhooks::parse(&hook.prefix).unwrap())
    };
    FileMode {
        notifications: Some(std::sync::Arc::new(FileNotifications {
            notifier: Notifier::start(settings, NotifyCounters::default()).unwrap(),
            secrets_dir: Some(secrets.path().to_path_buf()),
        })),
        ..repo.mode_with(partner_secret)
    }
}

fn connector_status(repo: &Repo) -> expensify_operator::api::ExpensifyConnectorStatus {
    StatusDir::new(repo.path().join(".expensify-status"))
        .read::<ExpensifyConnector>(&ObjectKey::new("finance", "acme"))
        .unwrap()
        .expect("the connector's status file")
        .status
        .unwrap()
}

/// Every file under the status directory, as text.
fn status_files(repo: &Repo) -> String {
    let mut text = String::new();
    let mut dirs = vec![repo.path().join(".expensify-status")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
}

#[tokio::test]
async fn each_notification_is_delivered_once_across_a_restart() {
    let sim = start(&unlimited_seed()).await;
    let hook = Webhook::start(Vec::new()).await;
    let secrets = hook.secrets_dir();
    let repo = Repo::new(&sim);
    repo.connector(NOTIFY);
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let soon = k8s_openapi::jiff::Timestamp::from_second(now + 1800).unwrap();
    let later = k8s_openapi::jiff::Timestamp::from_second(now + 3 * 3600).unwrap();
    repo.access(
        "temps",
        FINANCE,
        "Additive",
        &format!(
            "    - {{email: soon@acme.example, expiresAt: \"{soon}\"}}\n    - {{email: later@acme.example, expiresAt: \"{later}\"}}\n"
        ),
    );
    let dir = repo.path().display().to_string();
    let secrets_dir = secrets.path().display().to_string();
    for run in ["first", "second (a restart)"] {
        let output = binary(
            &sim.endpoint(),
            &["apply", &dir, "--secrets-dir", &secrets_dir],
            ADMIN_SECRET,
        )
        .env("EXPENSIFY_ALLOWED_WEBHOOKS", &hook.prefix)
        .output()
        .await
        .unwrap();
        let printed = printed(&output);
        assert!(output.status.success(), "{run} run: {printed}");
        assert!(!printed.contains(Webhook::TOKEN), "{run} run: {printed}");
    }
    let bodies = hook.bodies();
    assert_eq!(
        bodies.len(),
        1,
        "sent once, not again after the restart: {bodies:?}"
    );
    assert_eq!(bodies[0]["event"], "AccessExpiring");
    assert_eq!(bodies[0]["object"]["kind"], "PolicyAccess");
    assert_eq!(bodies[0]["object"]["name"], "temps");
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("soon@acme.example") && text.contains(&soon.to_string()),
        "{text}"
    );
    assert!(
        text.contains(&format!("Finance ({FINANCE})")),
        "the policy's name: {text}"
    );
    let sent = connector_status(&repo).notifications.unwrap().sent;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].key.starts_with("AccessExpiring:finance/temps:"),
        "{sent:?}"
    );
    assert_eq!(sent[0].outcome, DeliveryOutcome::Delivered);
    assert!(!status_files(&repo).contains(Webhook::TOKEN));
}

/// A writer the tracing subscriber logs into, for reading back what was logged.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_5xx_and_a_429_are_retried_until_delivered() {
    // The one test of this binary that sets the global subscriber (a scoped one can miss
    // events whose callsites another thread registered first); the other tests' lines land
    // here too, and none may show the URL either.
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    let sim = start(&unlimited_seed()).await;
    let hook = Webhook::start(vec![Answer::Status(500), Answer::Status(429)]).await;
    let secrets = hook.secrets_dir();
    let repo = Repo::new(&sim);
    repo.connector(NOTIFY);
    // Credentials Expensify rejects: the connector needs setup.
    let mode = notifying(&repo, &hook, &secrets, "not-the-partner-secret");
    mode.pass(Run::Apply).await.unwrap();
    mode.settle_notifications().await.unwrap();
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "the same post each time"
    );
    assert_eq!(bodies[0]["event"], "SetupNeeded");
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("finance/acme") && text.contains("Owners: it-admin@acme.example"),
        "{text}"
    );
    let status = connector_status(&repo);
    assert_eq!(status.phase, ConnectorPhase::Error);
    let sent = status.notifications.unwrap().sent;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].key.starts_with("SetupNeeded:finance/acme:"),
        "{sent:?}"
    );
    assert_eq!(sent[0].outcome, DeliveryOutcome::Delivered);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("the webhook answered 500") && logs.contains("the webhook answered 429"),
        "{logs}"
    );
    assert!(logs.contains("notification delivered"), "{logs}");
    assert!(
        !logs.contains(Webhook::TOKEN) && !logs.contains(&hook.url),
        "{logs}"
    );
}

#[tokio::test]
async fn a_hanging_webhook_does_not_hold_up_the_sync() {
    let sim = start(&unlimited_seed()).await;
    let hook = Webhook::start(vec![Answer::Hang]).await;
    let secrets = hook.secrets_dir();
    let repo = Repo::new(&sim);
    repo.connector(NOTIFY);
    let mode = notifying(&repo, &hook, &secrets, "not-the-partner-secret");
    let report = mode.pass(Run::Apply).await.unwrap();
    // The pass is over and its statuses saved; the webhook has not answered.
    assert_eq!(
        report.syncs[0].connector_status.phase,
        ConnectorPhase::Error
    );
    hook.wait_for(1).await;
    assert_eq!(hook.answered(), 0);
    assert_eq!(connector_status(&repo).phase, ConnectorPhase::Error);
    assert_eq!(
        connector_status(&repo).notifications,
        None,
        "not delivered yet"
    );
    // A second sync while the first post still hangs offers nothing again.
    mode.pass(Run::Apply).await.unwrap();
    assert_eq!(hook.bodies().len(), 1);
    hook.release();
    mode.settle_notifications().await.unwrap();
    assert_eq!(hook.answered(), 1);
    let sent = connector_status(&repo).notifications.unwrap().sent;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].outcome, DeliveryOutcome::Delivered);
}

#[tokio::test]
async fn a_webhook_outside_the_allowlist_is_refused_and_never_contacted() {
    let sim = start(&unlimited_seed()).await;
    let hook = Webhook::start(Vec::new()).await;
    let secrets = hook.secrets_dir();
    let repo = Repo::new(&sim);
    repo.connector(NOTIFY);
    let dir = repo.path().display().to_string();
    let secrets_dir = secrets.path().display().to_string();
    // The default allowlist: Slack alone.
    let output = binary(
        &sim.endpoint(),
        &["apply", &dir, "--secrets-dir", &secrets_dir],
        "not-the-partner-secret",
    )
    .env_remove("EXPENSIFY_ALLOWED_WEBHOOKS")
    .output()
    .await
    .unwrap();
    let printed = printed(&output);
    assert!(
        printed.contains("spec.notifications.webhookSecretRef") && printed.contains("finance/acme"),
        "{printed}"
    );
    assert!(printed.contains("https://hooks.slack.com/"), "{printed}");
    assert!(!printed.contains(Webhook::TOKEN), "{printed}");
    assert_eq!(hook.connections(), 0, "the webhook was contacted");
    assert_eq!(connector_status(&repo).notifications, None);
    assert!(!status_files(&repo).contains(Webhook::TOKEN));
}
