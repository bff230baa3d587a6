//! Step 5, notify: the deliveries that ended since the last sync recorded in the
//! connector's status (written by the next step), an Event for each notification not
//! offered before, and those handed to the sender when the connector has a webhook.

use kube::runtime::events::EventType;
use tracing::warn;

use super::inputs::Inputs;
use crate::api::NotificationEvent;
use crate::cluster::context::Context;
use crate::notify::{Notification, record_finished};
use crate::sync::SyncReport;

/// The longest note an Event may carry.
const MAX_EVENT_NOTE_BYTES: usize = 1024;

/// Records what ended, publishes the Events and queues the fresh notifications.
pub(super) async fn hand_over(ctx: &Context, inputs: &Inputs, report: &mut SyncReport) {
    let notifications = std::mem::take(&mut report.notifications);
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    record_finished(
        &mut report.connector_status,
        notifier.take_finished(inputs.key()),
    );
    let fresh = notifier.fresh(notifications);
    if fresh.is_empty() {
        return;
    }
    publish_events(ctx, inputs, &fresh).await;
    let Some(spec) = inputs.object.spec.notifications.as_ref() else {
        return;
    };
    let reference = &spec.webhook_secret_ref;
    let key = inputs.key();
    let url = match ctx
        .read_secret_value(&key.namespace, &reference.name, &reference.key)
        .await
    {
        Ok(Some(url)) => url,
        Ok(None) => {
            warn!(connector = %key, secret = %reference.name, secret_key = %reference.key, "spec.notifications.webhookSecretRef: no such Secret or key (or its value is not a URL of at most 4 KiB); no notification is sent");
            return;
        }
        Err(e) => {
            warn!(connector = %key, error = %e, "spec.notifications.webhookSecretRef could not be read; no notification is sent");
            return;
        }
    };
    match notifier.allowed().check(key, &url) {
        Ok(webhook) => notifier.send(&webhook, fresh),
        Err(refused) => warn!(connector = %key, "{refused}"),
    }
}

/// An Event on the object each notification is about (the connector for SetupNeeded).
async fn publish_events(ctx: &Context, inputs: &Inputs, fresh: &[Notification]) {
    let accesses = inputs.attached_by_key();
    for n in fresh {
        let type_ = match n.event {
            NotificationEvent::SetupNeeded => EventType::Warning,
            _ => EventType::Normal,
        };
        let reason = n.event.to_string();
        // The API server refuses an Event whose note is over 1 KiB.
        let note = crate::notify::text::cut_bytes(&n.text, MAX_EVENT_NOTE_BYTES);
        if n.object.kind == "PolicyAccess"
            && let Some(access) = accesses.get(&n.object.key)
        {
            ctx.publish(*access, type_, &reason, "Notify", note).await;
        } else if n.object.key == *inputs.key() {
            ctx.publish(&inputs.connector, type_, &reason, "Notify", note)
                .await;
        }
    }
}
