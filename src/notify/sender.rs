//! The sender: a task posting notifications one after another from a bounded queue. A
//! sync only ever `try_send`s to it, so a slow or hanging webhook never delays a sync; a
//! full queue drops the notification with a warning and a metric (not recorded, so a
//! later sync offers it again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rand::Rng;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{info, warn};

use super::notification::Notification;
use super::webhook::{AllowedWebhooks, WebhookUrl};
use crate::api::{DeliveryOutcome, ExpensifyConnectorStatus, SentNotification};
use crate::reconcile::ObjectKey;

/// Notifications waiting to be posted, at most; more are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// How the sender posts.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    pub allowed: AllowedWebhooks,
    pub queue_capacity: usize,
    /// Per request: a receiver that does not answer in time counts as a network error.
    pub request_timeout: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl NotifierSettings {
    /// A 5 s timeout, 4 attempts, backoff from 1 s up to 30 s.
    pub fn new(allowed: AllowedWebhooks) -> Self {
        Self {
            allowed,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            request_timeout: Duration::from_secs(5),
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The wait before attempt `attempt + 1` (`attempt` counts from 1): exponential, with
    /// "equal jitter" (at least half the ceiling).
    fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let half = ceiling / 2;
        let most = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half.saturating_add(Duration::from_millis(rng.random_range(0..=most)))
    }
}

/// The sender's counters (Prometheus), registered by the cluster's metrics.
#[derive(Debug, Clone, Default)]
pub struct NotifyCounters {
    pub delivered: Counter,
    /// Given up on after the last attempt (or refused by the receiver).
    pub failed: Counter,
    /// Dropped because the queue was full.
    pub dropped: Counter,
    pub retried: Counter,
}

impl NotifyCounters {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications_delivered",
            "Notifications the webhook accepted",
            self.delivered.clone(),
        );
        registry.register(
            "notifications_failed",
            "Notifications given up on after their last attempt (recorded, not sent again)",
            self.failed.clone(),
        );
        registry.register(
            "notifications_dropped",
            "Notifications dropped because the sender's queue was full (offered again by a later sync)",
            self.dropped.clone(),
        );
        registry.register(
            "notifications_retried",
            "Webhook posts retried after a network error, a 5xx or a 429",
            self.retried.clone(),
        );
    }
}

/// Why the sender could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartNotifierError {
    #[error("could not build the webhook HTTP client: {0}")]
    Http(String),
}

struct Delivery {
    webhook: WebhookUrl,
    notification: Notification,
}

/// What the adapters and the sender's task share.
#[derive(Default)]
struct Shared {
    /// `(connector, dedup key)` offered in this process: each is offered once.
    seen: Mutex<BTreeSet<(ObjectKey, String)>>,
    /// Deliveries that ended, by connector, until an adapter records them in its status.
    finished: Mutex<BTreeMap<ObjectKey, Vec<SentNotification>>>,
    /// Queued or being posted.
    pending: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// The handle the adapters hold; cheap to clone. The task ends when every handle is gone.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    shared: Arc<Shared>,
    allowed: AllowedWebhooks,
    counters: NotifyCounters,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("allowed", &self.allowed.to_string())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the sender's task (on the current tokio runtime).
    pub fn start(
        settings: NotifierSettings,
        counters: NotifyCounters,
    ) -> Result<Self, StartNotifierError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            // A redirect could carry the body anywhere, past the allowlist.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartNotifierError::Http(e.without_url().to_string()))?;
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let shared = Arc::new(Shared::default());
        let allowed = settings.allowed.clone();
        tokio::spawn(post_all(
            receiver,
            http,
            settings,
            shared.clone(),
            counters.clone(),
        ));
        Ok(Self {
            queue,
            shared,
            allowed,
            counters,
        })
    }

    /// The allowlist a webhook URL must pass ([`AllowedWebhooks::check`]).
    pub fn allowed(&self) -> &AllowedWebhooks {
        &self.allowed
    }

    /// Those of `notifications` not offered before in this process (marked offered now):
    /// the ones to publish an Event for and to send.
    pub fn fresh(&self, notifications: Vec<Notification>) -> Vec<Notification> {
        let mut seen = self
            .shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        notifications
            .into_iter()
            .filter(|n| seen.insert((n.connector.clone(), n.dedup_key.clone())))
            .collect()
    }

    /// Queues each notification for `webhook`, never waiting: a full queue drops it with
    /// a warning and the `notifications_dropped` metric, and forgets it was offered.
    pub fn send(&self, webhook: &WebhookUrl, notifications: Vec<Notification>) {
        for notification in notifications {
            self.shared.pending.fetch_add(1, Ordering::SeqCst);
            let delivery = Delivery {
                webhook: webhook.clone(),
                notification,
            };
            if let Err(e) = self.queue.try_send(delivery) {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                self.shared.idle.notify_waiters();
                let (delivery, why) = match e {
                    TrySendError::Full(d) => (d, "the notification queue is full"),
                    TrySendError::Closed(d) => (d, "the notification sender has stopped"),
                };
                let n = &delivery.notification;
                self.counters.dropped.inc();
                warn!(connector = %n.connector, event = %n.event, key = %n.dedup_key, "{why}: notification dropped (offered again by the next sync)");
                self.shared
                    .seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(n.connector.clone(), n.dedup_key.clone()));
            }
        }
    }

    /// The deliveries of `connector` that ended since the last call, to record in its
    /// status.
    pub fn take_finished(&self, connector: &ObjectKey) -> Vec<SentNotification> {
        self.shared
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(connector)
            .unwrap_or_default()
    }

    /// The connectors with deliveries to record.
    pub fn connectors_with_finished(&self) -> Vec<ObjectKey> {
        self.shared
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Waits until nothing is queued or being posted, at most `timeout`; whether it is so.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// Records finished deliveries in a connector's status (the oldest dropped beyond the cap).
pub fn record_finished(status: &mut ExpensifyConnectorStatus, finished: Vec<SentNotification>) {
    if finished.is_empty() {
        return;
    }
    let record = status.notifications.get_or_insert_default();
    for sent in finished {
        record.record(sent);
    }
}

/// The sender's task: one delivery at a time, until every handle is dropped.
async fn post_all(
    mut receiver: mpsc::Receiver<Delivery>,
    http: reqwest::Client,
    settings: NotifierSettings,
    shared: Arc<Shared>,
    counters: NotifyCounters,
) {
    while let Some(delivery) = receiver.recv().await {
        let outcome = post(&http, &settings, &delivery, &counters).await;
        let n = &delivery.notification;
        shared
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(n.connector.clone())
            .or_default()
            .push(SentNotification {
                key: n.dedup_key.clone(),
                outcome,
                at: Time(Timestamp::now()),
            });
        shared.pending.fetch_sub(1, Ordering::SeqCst);
        shared.idle.notify_waiters();
    }
}

/// Posts one notification, retrying network errors, 5xx and 429 with backoff.
async fn post(
    http: &reqwest::Client,
    settings: &NotifierSettings,
    delivery: &Delivery,
    counters: &NotifyCounters,
) -> DeliveryOutcome {
    let n = &delivery.notification;
    let body = n.body();
    let attempts = settings.max_attempts.max(1);
    for attempt in 1..=attempts {
        let answer = http
            .post(delivery.webhook.url().clone())
            .json(&body)
            .send()
            .await;
        // Never the URL: reqwest's errors name it unless told not to.
        let problem = match answer {
            Ok(response) if response.status().is_success() => {
                counters.delivered.inc();
                info!(connector = %n.connector, event = %n.event, key = %n.dedup_key, "notification delivered");
                return DeliveryOutcome::Delivered;
            }
            Ok(response)
                if response.status().is_server_error()
                    || response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                format!("the webhook answered {}", response.status().as_u16())
            }
            Ok(response) => {
                counters.failed.inc();
                warn!(connector = %n.connector, event = %n.event, key = %n.dedup_key, status = response.status().as_u16(), "the webhook refused the notification; not sent again");
                return DeliveryOutcome::Failed;
            }
            Err(e) => e.without_url().to_string(),
        };
        if attempt == attempts {
            counters.failed.inc();
            warn!(connector = %n.connector, event = %n.event, key = %n.dedup_key, attempts, problem = %problem, "notification not delivered after its last attempt; not sent again");
            return DeliveryOutcome::Failed;
        }
        let wait = settings.backoff(attempt, &mut rand::rng());
        counters.retried.inc();
        warn!(connector = %n.connector, event = %n.event, key = %n.dedup_key, attempt, problem = %problem, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "notification not delivered; retrying");
        tokio::time::sleep(wait).await;
    }
    DeliveryOutcome::Failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let settings = NotifierSettings::new(
            AllowedWebhooks::parse(super::super::DEFAULT_ALLOWED_WEBHOOKS).unwrap(),
        );
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..100 {
            let first = settings.backoff(1, &mut rng);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let third = settings.backoff(3, &mut rng);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4));
            let late = settings.backoff(40, &mut rng);
            assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30));
        }
    }

    fn setup_needed(reason: &str) -> Notification {
        Notification::setup_needed(&ObjectKey::new("finance", "acme"), &[], reason, "")
    }

    /// A queue of one behind a webhook that accepts and never answers: one post in
    /// flight, one queued, the next dropped (counted, and offered again later), and the
    /// caller never waits.
    #[tokio::test]
    async fn a_full_queue_drops_without_waiting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let prefix = format!("http://{}/", listener.local_addr().unwrap());
        let (connected, mut first_connection) = mpsc::channel(1);
        let hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
                let _ = connected.try_send(());
            }
        });
        let settings = NotifierSettings {
            queue_capacity: 1,
            request_timeout: Duration::from_secs(3600),
            ..NotifierSettings::new(AllowedWebhooks::parse(&prefix).unwrap())
        };
        let counters = NotifyCounters::default();
        let notifier = Notifier::start(settings, counters.clone()).unwrap();
        let key = ObjectKey::new("finance", "acme");
        let webhook = notifier
            .allowed()
            .check(&key, &format!("{prefix}hook"))
            .unwrap();
        let offered = notifier.fresh(vec![
            setup_needed("A"),
            setup_needed("B"),
            setup_needed("C"),
        ]);
        assert_eq!(offered.len(), 3);
        let mut offered = offered.into_iter();
        notifier.send(&webhook, offered.next().into_iter().collect());
        first_connection.recv().await.unwrap();
        notifier.send(&webhook, offered.collect());
        assert_eq!(counters.dropped.get(), 1);
        // The dropped one is offered again by a later sync; the others are not.
        let again = notifier.fresh(vec![
            setup_needed("A"),
            setup_needed("B"),
            setup_needed("C"),
        ]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].dedup_key, "SetupNeeded:finance/acme:C");
        assert!(!notifier.wait_idle(Duration::from_millis(1)).await);
        hold.abort();
    }

    #[test]
    fn the_record_keeps_each_key_once_and_the_newest_two_hundred() {
        let mut status = ExpensifyConnectorStatus::default();
        let sent = |i: usize| SentNotification {
            key: format!("k{i}"),
            outcome: DeliveryOutcome::Delivered,
            at: Time(Timestamp::UNIX_EPOCH),
        };
        record_finished(&mut status, (0..250).map(sent).collect());
        record_finished(&mut status, vec![sent(249)]);
        let record = status.notifications.unwrap();
        assert_eq!(record.sent.len(), crate::api::MAX_SENT_NOTIFICATIONS);
        assert_eq!(record.sent[0].key, "k50");
        assert!(record.has("k249") && !record.has("k49"));
    }
}
