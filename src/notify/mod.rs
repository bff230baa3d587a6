//! Notifications: a Slack-compatible webhook told when a connector needs setup, access is
//! about to end, or (from the request and review controllers) a request waits, is decided
//! or a review is due.
//!
//! What is sent is decided by the sync, as plain data ([`Notification`], built by its
//! constructors, every piece of user text escaped in [`text`]); the adapters hand it to a
//! [`Notifier`], whose task posts it off the sync's path (a bounded queue, `try_send`),
//! with a timeout, retries and the webhook allowlist. Each notification has a dedup key;
//! the adapters record the keys whose delivery ended in the connector's status, so none
//! is sent twice, across restarts too.

mod notification;
mod sender;
pub mod text;
mod webhook;

pub use notification::{Notification, NotifiedObject};
pub use sender::{
    DEFAULT_QUEUE_CAPACITY, Notifier, NotifierSettings, NotifyCounters, StartNotifierError,
    record_finished,
};
pub use webhook::{AllowedWebhooks, DEFAULT_ALLOWED_WEBHOOKS, WebhookRefused, WebhookUrl};
