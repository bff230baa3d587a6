//! The connector reconcile: one sync per connector for every PolicyAccess that uses it,
//! then status, events and finalizers written back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};

use super::context::{Context, FinalizerChange, LastSync};
use super::kube_io::{self, FINALIZER, IN_USE_FINALIZER, KubeCallError, SecretLookup};
use super::leadership::LeadershipGuard;
use crate::api::{
    ALLOW_MASS_REVOCATION, AccessPhase, ConnectorPhase, DeletionPolicy, ExpensifyConnector,
    ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus, RECONCILE_REQUESTED_AT,
};
use crate::expensify::Credentials;
use crate::reconcile::digest;
use crate::reconcile::{AccessObject, ChangeKind, ConnectorObject, ObjectKey, Scope};
use crate::sync::{
    ChangeResult, Store, SyncReport, SyncRequest, WriteAhead, WriteRefused, jitter, next_sync,
    reads_credentials,
};
use futures::future::BoxFuture;

/// How often a standby replica checks whether it became the leader.
pub const STANDBY_RECHECK: Duration = Duration::from_secs(5);
/// How long a sync waits for the watches' first complete lists before trying later.
pub const CACHES_LISTED_WAIT: Duration = Duration::from_secs(30);

/// A reconcile that failed on a Kubernetes call; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("syncing connector {connector}: {source}")]
    Kube {
        connector: String,
        #[source]
        source: KubeCallError,
    },
}

impl ReconcileError {
    /// What failed, for the failures metric (a small, fixed set of values).
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Kube { source, .. } => source.category(),
        }
    }
}

/// The status without the fields that change on every sync, to decide whether to write.
fn comparable<T: Serialize>(status: &T) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("lastSyncTime");
        object.remove("lastSuccessfulSyncTime");
        if let Some(conditions) = object.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for condition in conditions {
                if let Some(condition) = condition.as_object_mut() {
                    condition.remove("lastTransitionTime");
                }
            }
        }
    }
    value
}

/// Whether `new` differs from `old` in anything but timestamps.
pub fn status_changed<T: Serialize>(old: Option<&T>, new: &T) -> bool {
    old.is_none_or(|old| comparable(old) != comparable(new))
}

/// What decides whether a sync is needed: specs, annotations, deletions and the Secret
/// version, never status (so our own status writes do not cause syncs).
fn fingerprint(
    connector: &ExpensifyConnector,
    attached: &[&PolicyAccess],
    secret_version: &str,
) -> String {
    let annotations = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let all = meta.annotations.clone().unwrap_or_default();
        [RECONCILE_REQUESTED_AT, ALLOW_MASS_REVOCATION].map(|k| all.get(k).cloned())
    };
    let objects: Vec<_> = attached
        .iter()
        .map(|pa| {
            (
                ObjectKey::of(&pa.metadata).to_string(),
                &pa.spec,
                pa.metadata.deletion_timestamp.is_some(),
                annotations(&pa.metadata),
            )
        })
        .collect();
    digest(&(
        &connector.spec,
        annotations(&connector.metadata),
        objects,
        secret_version,
    ))
}

/// What a connector sync starts from: every PolicyAccess as cached (with the statuses
/// written in this term), and the connector's Secret (read only for a valid, allowed,
/// unsuspended connector).
struct Inputs {
    all: Vec<PolicyAccess>,
    connectors: Vec<ConnectorObject>,
    secret: Option<SecretLookup>,
}

impl Inputs {
    fn attached(&self, key: &ObjectKey) -> Vec<&PolicyAccess> {
        self.all
            .iter()
            .filter(|pa| &AccessObject::from_resource(pa).connector_key() == key)
            .collect()
    }

    fn secret_version(&self) -> &str {
        match &self.secret {
            Some(SecretLookup::Found {
                resource_version, ..
            }) => resource_version,
            _ => "",
        }
    }
}

async fn read_inputs(ctx: &Context, object: &ConnectorObject) -> Result<Inputs, KubeCallError> {
    let all = ctx.accesses();
    // The endpoint allowlist and the spec are checked before the Secret is read.
    let secret = if reads_credentials(object, &ctx.expensify) {
        let reference = &object.spec.credentials_secret_ref;
        Some(kube_io::read_secret(&ctx.client, &object.key.namespace, reference).await?)
    } else {
        None
    };
    Ok(Inputs {
        all,
        connectors: ctx.connectors(),
        secret,
    })
}

/// Reconciles one connector; a success resets its error backoff.
pub async fn reconcile_connector(
    connector: Arc<ExpensifyConnector>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = ObjectKey::of(&connector.metadata);
    let reconcile = sync_connector_once(connector, ctx.clone());
    ctx.connector_backoff.track(&key, reconcile).await
}

async fn sync_connector_once(
    connector: Arc<ExpensifyConnector>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // This sync's leadership term: every write it makes checks that the term still lasts.
    let Ok(term) = ctx.leadership().guard() else {
        return Ok(Action::requeue(STANDBY_RECHECK));
    };
    if !ctx.caches.wait_until_listed(CACHES_LISTED_WAIT).await {
        info!(connector = %connector.name_any(), "the watches have not listed everything yet; syncing later");
        return Ok(Action::requeue(STANDBY_RECHECK));
    }
    let connector = ctx.known(connector.as_ref());
    let object = ConnectorObject::from_resource(&connector);
    let key = object.key.clone();
    let kube_error = |source| ReconcileError::Kube {
        connector: key.to_string(),
        source,
    };
    let inputs = read_inputs(&ctx, &object).await.map_err(kube_error)?;
    let print = fingerprint(&connector, &inputs.attached(&key), inputs.secret_version());
    if let Some(last) = ctx.last_sync(&key) {
        let now = Instant::now();
        if last.fingerprint == print && now < last.due {
            return Ok(Action::requeue(last.due - now));
        }
    }
    if let Some(action) = prepare(&ctx, &connector, &inputs, &object)
        .await
        .map_err(kube_error)?
    {
        return Ok(action);
    }
    let credentials = choose_credentials(&ctx, &object, &inputs);
    let started = std::time::Instant::now();
    let mut report = sync(&ctx, &connector, &object, &credentials, &inputs, &term).await;
    after_credentials_used(&ctx, &object, credentials, &mut report);
    ctx.metrics
        .record(&key.to_string(), &report, started.elapsed().as_secs_f64());
    if term.ensure_leading().is_err() {
        // Leadership went during the sync: the new leader writes the statuses.
        warn!(connector = %key, "lost leadership during the sync; writing no status");
        return Ok(Action::requeue(STANDBY_RECHECK));
    }
    write_back(&ctx, &connector, &inputs.attached(&key), &report)
        .await
        .map_err(kube_error)?;
    let interval = object.spec.sync_interval();
    let wait = next_sync(
        interval,
        jitter(interval),
        report.next_expiry(),
        Timestamp::now(),
    );
    ctx.remember(
        key.clone(),
        LastSync {
            fingerprint: print,
            due: Instant::now() + wait,
        },
    );
    info!(
        connector = %key,
        objects = report.statuses.len(),
        changes = report.results.len(),
        next_sync_seconds = wait.as_secs(),
        detail = report.connector_status.message.as_deref().unwrap_or_default(),
        "next sync scheduled"
    );
    Ok(Action::requeue(wait))
}

/// Before a sync: the connector's `in-use` finalizer (or its release, ending here with
/// `Some`) and the objects' finalizers.
async fn prepare(
    ctx: &Context,
    connector: &ExpensifyConnector,
    inputs: &Inputs,
    object: &ConnectorObject,
) -> Result<Option<Action>, KubeCallError> {
    let attached = inputs.attached(&object.key);
    if let Some(action) = settle_in_use(ctx, connector, &attached).await? {
        // The connector is let go: nothing of it is kept.
        ctx.held_credentials.forget(&object.key);
        return Ok(Some(action));
    }
    for pa in attached
        .iter()
        .filter(|pa| pa.metadata.deletion_timestamp.is_none())
    {
        ctx.finalizer(*pa, FINALIZER, FinalizerChange::Ensure)
            .await?;
    }
    Ok(None)
}

/// The credentials a sync uses.
enum SyncCredentials {
    /// Read from the Secret for this sync.
    Secret(Credentials),
    /// The Secret is gone while `Revoke` deletions wait: the connector's last good
    /// credentials, held in memory.
    Held(Credentials),
    /// None: why, for status.
    Missing(String),
}

/// How many waiting objects a message names before "and N more".
const NAMED_UP_TO: usize = 5;

/// The attached objects being deleted with `Revoke` that still hold something to take back.
fn waiting_deletions(attached: &[&PolicyAccess]) -> Vec<ObjectKey> {
    attached
        .iter()
        .map(|pa| AccessObject::from_resource(pa))
        .filter(|a| {
            a.deleting
                && a.spec.deletion_policy == DeletionPolicy::Revoke
                && !a.ledger_entries().is_empty()
        })
        .map(|a| a.key)
        .collect()
}

/// The Secret's credentials; while the Secret cannot be used (a namespace being deleted
/// takes it at once) and `Revoke` deletions wait, the last good ones held in memory; with
/// none held, the deletions keep their finalizers and the status, the log and the metric
/// `deletions_waiting_for_credentials` say what to do. `Revoke` never becomes `Orphan`.
fn choose_credentials(ctx: &Context, object: &ConnectorObject, inputs: &Inputs) -> SyncCredentials {
    let gauge = ctx.metrics.deletions_waiting_for_credentials.get_or_create(
        &super::metrics::ConnectorLabels {
            connector: object.key.to_string(),
        },
    );
    let unusable = match &inputs.secret {
        Some(SecretLookup::Found { credentials, .. }) => {
            gauge.set(0);
            return SyncCredentials::Secret(credentials.clone());
        }
        Some(SecretLookup::Unusable(message)) => message,
        None => return SyncCredentials::Missing("no Secret read".to_string()),
    };
    let waiting = waiting_deletions(&inputs.attached(&object.key));
    if waiting.is_empty() {
        gauge.set(0);
        return SyncCredentials::Missing(unusable.clone());
    }
    let spec = &object.spec;
    let held = ctx.held_credentials.get(
        &object.key,
        &spec.endpoint,
        &spec.credentials_secret_ref.name,
    );
    if let Some(credentials) = held {
        gauge.set(0);
        warn!(connector = %object.key, deletions = waiting.len(), problem = %unusable, "the credentials Secret cannot be used; settling the deletions that wait with the connector's last good credentials, held in memory");
        return SyncCredentials::Held(credentials);
    }
    gauge.set(i64::try_from(waiting.len()).unwrap_or(i64::MAX));
    let mut named: Vec<String> = waiting
        .iter()
        .take(NAMED_UP_TO)
        .map(ToString::to_string)
        .collect();
    if waiting.len() > NAMED_UP_TO {
        named.push(format!("and {} more", waiting.len() - NAMED_UP_TO));
    }
    warn!(connector = %object.key, deletions = waiting.len(), problem = %unusable, "the credentials Secret cannot be used and no earlier credentials are held: deletions with deletionPolicy Revoke wait; restore the Secret, or set their deletionPolicy to Orphan");
    SyncCredentials::Missing(format!(
        "{unusable}, and this replica holds no earlier credentials of the connector: {} deletion(s) with deletionPolicy Revoke wait to take back what they gave ({}). Restore the Secret, or set spec.deletionPolicy: Orphan on them to leave that access as it is",
        waiting.len(),
        named.join(", ")
    ))
}

/// After a sync: credentials read from the Secret that Expensify accepted become the
/// connector's last good ones; a sync on held credentials says so in the connector status.
fn after_credentials_used(
    ctx: &Context,
    object: &ConnectorObject,
    credentials: SyncCredentials,
    report: &mut SyncReport,
) {
    if report.connector_status.phase != ConnectorPhase::Connected {
        return;
    }
    match credentials {
        SyncCredentials::Secret(credentials) => ctx.held_credentials.remember(
            &object.key,
            &object.spec.endpoint,
            &object.spec.credentials_secret_ref.name,
            credentials,
        ),
        SyncCredentials::Held(_) => {
            let status = &mut report.connector_status;
            let said = status.message.take().unwrap_or_default();
            status.message = Some(format!(
                "{said}; the credentials Secret {} cannot be used: deletions were settled with the last good credentials held in memory, restore it for anything else",
                object.spec.credentials_secret_ref.name
            ));
        }
        SyncCredentials::Missing(_) => {}
    }
}

/// The sync itself (see [`crate::sync`]), with the cluster as its store.
async fn sync(
    ctx: &Context,
    connector: &ExpensifyConnector,
    object: &ConnectorObject,
    credentials: &SyncCredentials,
    inputs: &Inputs,
    term: &LeadershipGuard,
) -> SyncReport {
    // Every object: those of other connectors tell which policies they already govern.
    let objects: Vec<AccessObject> = inputs.all.iter().map(AccessObject::from_resource).collect();
    let store = ClusterStore {
        ctx,
        connector,
        term: term.clone(),
        credentials: match credentials {
            SyncCredentials::Secret(c) | SyncCredentials::Held(c) => Ok(c.clone()),
            SyncCredentials::Missing(message) => Err(message.clone()),
        },
        by_key: inputs
            .attached(&object.key)
            .into_iter()
            .map(|pa| (ObjectKey::of(&pa.metadata), pa))
            .collect(),
    };
    let request = SyncRequest {
        connector: object,
        connectors: &inputs.connectors,
        accesses: &objects,
        now: Timestamp::now(),
        inventory_complete: true,
        // Credentials held in memory while the Secret cannot be used settle deletions
        // and nothing else.
        scope: match credentials {
            SyncCredentials::Held(_) => Scope::DeletionsOnly,
            SyncCredentials::Secret(_) | SyncCredentials::Missing(_) => Scope::Everything,
        },
        dry_run: false,
        write_ahead: None,
        reviewed: None,
    };
    // Every Expensify write of this sync asks its term first, right before it is sent.
    let clients = ctx.expensify.with_write_gate(Arc::new(term.clone()));
    crate::sync::sync(request, &clients, &store).await
}

/// The connector's `in-use` finalizer: held while any PolicyAccess refers to it, so that
/// deleting the connector (or its namespace) waits until `Revoke` deletions are settled.
/// A connector being deleted that nobody refers to any more is let go: `Some` then.
async fn settle_in_use(
    ctx: &Context,
    connector: &ExpensifyConnector,
    attached: &[&PolicyAccess],
) -> Result<Option<Action>, KubeCallError> {
    let deleting = connector.metadata.deletion_timestamp.is_some();
    if attached.is_empty() {
        ctx.finalizer(connector, IN_USE_FINALIZER, FinalizerChange::Release)
            .await?;
        return Ok(deleting.then(Action::await_change));
    }
    if !deleting {
        ctx.finalizer(connector, IN_USE_FINALIZER, FinalizerChange::Ensure)
            .await?;
    }
    Ok(None)
}

/// Cluster mode's store: the Secret read for this sync, and status patches. Its
/// write-ahead patches the statuses carrying the entries about to be created before
/// Expensify is written; a replica that is no longer the leader writes nothing.
struct ClusterStore<'a> {
    ctx: &'a Context,
    connector: &'a ExpensifyConnector,
    term: LeadershipGuard,
    credentials: Result<Credentials, String>,
    by_key: BTreeMap<ObjectKey, &'a PolicyAccess>,
}

impl std::fmt::Debug for ClusterStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("objects", &self.by_key.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Store for ClusterStore<'_> {
    fn credentials<'s>(
        &'s self,
        _connector: &'s ConnectorObject,
    ) -> BoxFuture<'s, Result<Credentials, String>> {
        Box::pin(std::future::ready(self.credentials.clone()))
    }

    fn save_connector_status<'s>(
        &'s self,
        _connector: &'s ConnectorObject,
        status: &'s ExpensifyConnectorStatus,
    ) -> BoxFuture<'s, Result<(), String>> {
        Box::pin(async move {
            // This sync's term, not just any: a sync that outlived its term writes nothing.
            self.term
                .ensure_leading()
                .map_err(|lost| lost.to_string())?;
            self.ctx
                .write_status(self.connector, status)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl WriteAhead for ClusterStore<'_> {
    fn save<'s>(
        &'s self,
        statuses: &'s BTreeMap<ObjectKey, PolicyAccessStatus>,
        connector: Option<&'s ExpensifyConnectorStatus>,
    ) -> BoxFuture<'s, Result<(), WriteRefused>> {
        Box::pin(async move {
            self.term
                .ensure_leading()
                .map_err(|lost| WriteRefused(lost.to_string()))?;
            for (key, status) in statuses {
                let Some(pa) = self.by_key.get(key) else {
                    continue;
                };
                self.ctx
                    .write_status(*pa, status)
                    .await
                    .map_err(|e| WriteRefused(format!("saving the ledger first failed: {e}")))?;
            }
            if let Some(status) = connector {
                self.ctx
                    .write_status(self.connector, status)
                    .await
                    .map_err(|e| WriteRefused(format!("recording the allowance failed: {e}")))?;
            }
            // Once more, right before the employee-updater call that follows.
            self.term
                .ensure_leading()
                .map_err(|lost| WriteRefused(lost.to_string()))
        })
    }
}

/// Up to this many changes of one object in one sync get an Event each; more get one
/// Event that counts them (the structured log has one line per change either way).
pub const EVENT_PER_CHANGE_UP_TO: usize = 5;

/// The Events an object's changes of one sync make: `(type, reason, note)`.
pub fn change_events(results: &[&ChangeResult]) -> Vec<(EventType, &'static str, String)> {
    if results.len() <= EVENT_PER_CHANGE_UP_TO {
        return results
            .iter()
            .map(|result| {
                let what = result.change.describe();
                match &result.failure {
                    None => (EventType::Normal, result.change.kind.event_reason(), what),
                    Some(failure) => (
                        EventType::Warning,
                        "ChangeFailed",
                        format!("could not {what}: {failure}"),
                    ),
                }
            })
            .collect();
    }
    let count = |kinds: &[ChangeKind]| {
        results
            .iter()
            .filter(|r| r.failure.is_none() && kinds.contains(&r.change.kind))
            .count()
    };
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let mut note = format!(
        "granted {}, changed {}, revoked {}",
        count(&[ChangeKind::Grant]),
        count(&[
            ChangeKind::RoleChange,
            ChangeKind::ApproverChange,
            ChangeKind::EmployeeIdChange
        ]),
        count(&[ChangeKind::Revoke])
    );
    if failed > 0 {
        note.push_str(&format!("; {failed} failed (see status.failures)"));
        return vec![(EventType::Warning, "ChangesFailed", note)];
    }
    vec![(EventType::Normal, "ChangesApplied", note)]
}

/// After a sync: Events, statuses (only when changed), the connector status, and the
/// finalizers of finished deletions.
async fn write_back(
    ctx: &Context,
    connector: &ExpensifyConnector,
    attached: &[&PolicyAccess],
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    let by_key: BTreeMap<ObjectKey, &PolicyAccess> = attached
        .iter()
        .map(|pa| (ObjectKey::of(&pa.metadata), *pa))
        .collect();
    publish_events(ctx, &by_key, report).await;
    write_statuses(ctx, &by_key, report).await?;
    write_connector_status(ctx, connector, report).await?;
    release_finalizers(ctx, &by_key, report).await
}

/// The Events of each object's changes (see [`change_events`]).
async fn publish_events(
    ctx: &Context,
    by_key: &BTreeMap<ObjectKey, &PolicyAccess>,
    report: &SyncReport,
) {
    let mut by_object: BTreeMap<&ObjectKey, Vec<&ChangeResult>> = BTreeMap::new();
    for result in &report.results {
        by_object
            .entry(&result.change.requested_by)
            .or_default()
            .push(result);
    }
    for (key, results) in by_object {
        let Some(pa) = by_key.get(key) else {
            continue;
        };
        for (type_, reason, note) in change_events(&results) {
            kube_io::publish(&ctx.recorder, *pa, type_, reason, "Sync", note).await;
        }
    }
}

/// Each changed status, gaining objects first; a Warning Event for a new block or error.
async fn write_statuses(
    ctx: &Context,
    by_key: &BTreeMap<ObjectKey, &PolicyAccess>,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    for (key, status) in report.statuses_in_save_order() {
        let Some(pa) = by_key.get(key) else { continue };
        // As this sync left it: its write-ahead included.
        let known = ctx.known(*pa);
        let previous: Option<&PolicyAccessStatus> = known.status.as_ref();
        if !status_changed(previous, status) {
            continue;
        }
        ctx.write_status(*pa, status).await?;
        let message_changed = previous.and_then(|p| p.message.as_ref()) != status.message.as_ref();
        if matches!(status.phase, AccessPhase::Blocked | AccessPhase::Error) && message_changed {
            let reason = status
                .conditions
                .iter()
                .find(|c| c.type_ == crate::api::ConditionType::Ready.as_str())
                .map_or_else(|| status.phase.to_string(), |c| c.reason.clone());
            let note = status.message.clone().unwrap_or_default();
            kube_io::publish(
                &ctx.recorder,
                *pa,
                EventType::Warning,
                &reason,
                "Sync",
                note,
            )
            .await;
        }
    }
    Ok(())
}

/// The connector's status, when it changed or is older than its `syncInterval`.
async fn write_connector_status(
    ctx: &Context,
    connector: &ExpensifyConnector,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    // As this sync left it: its own Syncing or allowance writes included.
    let connector = &ctx.known(connector);
    let interval = connector.spec.sync_interval();
    let stale = connector
        .status
        .as_ref()
        .and_then(|s| s.last_sync_time.as_ref())
        .is_none_or(|t| {
            Timestamp::now().as_second() - t.0.as_second()
                >= i64::try_from(interval.as_secs()).unwrap_or(i64::MAX)
        });
    let previous: Option<&ExpensifyConnectorStatus> = connector.status.as_ref();
    if stale || status_changed(previous, &report.connector_status) {
        ctx.write_status(connector, &report.connector_status)
            .await?;
    }
    Ok(())
}

/// The finalizers of deleted objects that hold nothing any more.
async fn release_finalizers(
    ctx: &Context,
    by_key: &BTreeMap<ObjectKey, &PolicyAccess>,
    report: &SyncReport,
) -> Result<(), KubeCallError> {
    for key in &report.finished_deletions {
        if let Some(pa) = by_key.get(key) {
            info!(object = %key, "deletion finished; releasing the finalizer");
            ctx.finalizer(*pa, FINALIZER, FinalizerChange::Release)
                .await?;
        }
    }
    Ok(())
}

/// A failed reconcile is retried with per-connector exponential backoff and jitter, and
/// counted by category.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature kube's Controller::run takes"
)]
pub fn error_policy(
    connector: Arc<ExpensifyConnector>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let wait = ctx
        .connector_backoff
        .failed(&ObjectKey::of(&connector.metadata));
    ctx.metrics.failed("connector", error.category());
    warn!(
        connector = %connector.name_any(),
        error = %error,
        category = error.category(),
        retry_in_seconds = wait.as_secs(),
        "reconcile failed; retrying"
    );
    Action::requeue(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ConnectorPhase, Reason};

    fn result(kind: ChangeKind, email: &str, failure: Option<&str>) -> ChangeResult {
        ChangeResult {
            change: crate::reconcile::Change {
                kind,
                policy_id: "P1".into(),
                policy_name: "Finance".into(),
                email: email.into(),
                role: Some(crate::expensify::Role::User),
                old_role: None,
                manager_email: "cfo@acme.example".into(),
                employee_id: None,
                expect_submits_to: None,
                old_submits_to: None,
                old_employee_id: None,
                requested_by: ObjectKey::new("finance", "team"),
                reason: String::new(),
            },
            failure: failure.map(str::to_string),
        }
    }

    #[test]
    fn a_few_changes_get_an_event_each_many_get_one_that_counts_them() {
        let few: Vec<ChangeResult> = (0..EVENT_PER_CHANGE_UP_TO)
            .map(|i| result(ChangeKind::Grant, &format!("p{i}@acme.example"), None))
            .collect();
        let events = change_events(&few.iter().collect::<Vec<_>>());
        assert_eq!(events.len(), EVENT_PER_CHANGE_UP_TO);
        assert_eq!(events[0].1, "Granted");

        let mut many: Vec<ChangeResult> = (0..37)
            .map(|i| result(ChangeKind::Grant, &format!("p{i}@acme.example"), None))
            .collect();
        many.push(result(ChangeKind::Revoke, "gone@acme.example", None));
        many.push(result(ChangeKind::RoleChange, "r@acme.example", None));
        let events = change_events(&many.iter().collect::<Vec<_>>());
        assert_eq!(
            events,
            [(
                EventType::Normal,
                "ChangesApplied",
                "granted 37, changed 1, revoked 1".to_string()
            )]
        );
        many.push(result(ChangeKind::Grant, "x@acme.example", Some("skipped")));
        let events = change_events(&many.iter().collect::<Vec<_>>());
        assert_eq!(
            events,
            [(
                EventType::Warning,
                "ChangesFailed",
                "granted 37, changed 1, revoked 1; 1 failed (see status.failures)".to_string()
            )]
        );
    }

    #[test]
    fn timestamps_alone_do_not_count_as_a_change() {
        let now = Timestamp::from_second(1_000).unwrap();
        let later = Timestamp::from_second(2_000).unwrap();
        let mut old = ExpensifyConnectorStatus {
            phase: ConnectorPhase::Connected,
            last_sync_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            ..Default::default()
        };
        crate::api::set_condition(
            &mut old.conditions,
            crate::api::ConditionUpdate {
                type_: crate::api::ConditionType::Ready,
                status: crate::api::ConditionStatus::True,
                reason: Reason::Synced,
                message: "ok",
                observed_generation: Some(1),
            },
            now,
        );
        let mut new = old.clone();
        new.last_sync_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(later));
        new.conditions[0].last_transition_time =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(later);
        assert!(!status_changed(Some(&old), &new));
        new.user_count = Some(3);
        assert!(status_changed(Some(&old), &new));
        assert!(status_changed(None, &new));
    }
}
