//! Prometheus metrics: syncs, durations, Expensify calls, changes, blocked objects, drift.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::sync::SyncReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    pub connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `connector` or `policyaccess`.
    pub controller: String,
    /// What failed (see `ReconcileError::category`): a small, fixed set.
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub connector: String,
    /// `connected`, `error` or `skipped`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub connector: String,
    /// `get/policyList`, `get/policy`, `update/employees`.
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub connector: String,
    /// `grant`, `change role`, `change approver`, `revoke`.
    pub action: String,
    /// `applied` or `failed`.
    pub outcome: String,
}

/// Every metric the controller exports, under the prefix `expensify_operator`.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub syncs: Family<SyncLabels, Counter>,
    pub sync_duration: Family<ConnectorLabels, Histogram>,
    pub expensify_calls: Family<CallLabels, Counter>,
    pub expensify_retries: Family<ConnectorLabels, Counter>,
    pub changes: Family<ChangeLabels, Counter>,
    pub blocked_objects: Family<ConnectorLabels, Gauge>,
    pub error_objects: Family<ConnectorLabels, Gauge>,
    pub drift: Family<ConnectorLabels, Gauge>,
    pub reconcile_failures: Family<FailureLabels, Counter>,
    /// Deletions with `Revoke` that wait because the connector's Secret is gone and no
    /// earlier credentials are held.
    pub deletions_waiting_for_credentials: Family<ConnectorLabels, Gauge>,
    /// The notification sender's counters.
    pub notifications: crate::notify::NotifyCounters,
}

fn sync_duration_histogram() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("expensify_operator");
        let syncs = Family::<SyncLabels, Counter>::default();
        registry.register("syncs", "Connector syncs by outcome", syncs.clone());
        let sync_duration = Family::<ConnectorLabels, Histogram>::new_with_constructor(
            sync_duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of a connector sync",
            sync_duration.clone(),
        );
        let expensify_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "expensify_calls",
            "Requests sent to Expensify by job, retries included",
            expensify_calls.clone(),
        );
        let expensify_retries = Family::<ConnectorLabels, Counter>::default();
        registry.register(
            "expensify_retries",
            "Requests to Expensify retried after a transient error",
            expensify_retries.clone(),
        );
        let changes = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "changes",
            "Grants, role changes and revocations by outcome",
            changes.clone(),
        );
        let blocked_objects = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "blocked_objects",
            "PolicyAccess objects in phase Blocked",
            blocked_objects.clone(),
        );
        let error_objects = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "error_objects",
            "PolicyAccess objects in phase Error",
            error_objects.clone(),
        );
        let drift = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "drift",
            "Differences between the manifests and Expensify after the last sync",
            drift.clone(),
        );
        let reconcile_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciles that failed (and were retried with backoff), by controller and category",
            reconcile_failures.clone(),
        );
        let deletions_waiting_for_credentials = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "deletions_waiting_for_credentials",
            "PolicyAccess deletions (deletionPolicy Revoke) that wait because the connector's Secret is gone and no earlier credentials are held: restore the Secret, or set deletionPolicy Orphan",
            deletions_waiting_for_credentials.clone(),
        );
        let notifications = crate::notify::NotifyCounters::default();
        notifications.register(&mut registry);
        Self {
            registry,
            syncs,
            sync_duration,
            expensify_calls,
            expensify_retries,
            changes,
            blocked_objects,
            error_objects,
            drift,
            reconcile_failures,
            deletions_waiting_for_credentials,
            notifications,
        }
    }
}

impl Metrics {
    /// Records one sync of `connector`.
    pub fn record(&self, connector: &str, report: &SyncReport, seconds: f64) {
        use crate::api::{AccessPhase, ConnectorPhase};
        let labels = ConnectorLabels {
            connector: connector.to_string(),
        };
        let outcome = if report.connector_status.phase == ConnectorPhase::Error {
            "error"
        } else {
            "connected"
        };
        self.syncs
            .get_or_create(&SyncLabels {
                connector: connector.to_string(),
                outcome: outcome.into(),
            })
            .inc();
        self.sync_duration.get_or_create(&labels).observe(seconds);
        for (job, count) in [
            ("get/policyList", report.calls.policy_list),
            ("get/policy", report.calls.roster_reads),
            ("update/employees", report.calls.employee_updates),
        ] {
            self.expensify_calls
                .get_or_create(&CallLabels {
                    connector: connector.to_string(),
                    job: job.into(),
                })
                .inc_by(count);
        }
        self.expensify_retries
            .get_or_create(&labels)
            .inc_by(report.calls.retries);
        for result in &report.results {
            let outcome = if result.failure.is_none() {
                "applied"
            } else {
                "failed"
            };
            self.changes
                .get_or_create(&ChangeLabels {
                    connector: connector.to_string(),
                    action: result.change.kind.verb().into(),
                    outcome: outcome.into(),
                })
                .inc();
        }
        let count = |phase: AccessPhase| {
            let count = report
                .statuses
                .values()
                .filter(|s| s.phase == phase)
                .count();
            i64::try_from(count).unwrap_or(i64::MAX)
        };
        self.blocked_objects
            .get_or_create(&labels)
            .set(count(AccessPhase::Blocked));
        self.error_objects
            .get_or_create(&labels)
            .set(count(AccessPhase::Error));
        self.drift.get_or_create(&labels).set(
            report
                .statuses
                .values()
                .map(|s| s.drift.len())
                .sum::<usize>()
                .try_into()
                .unwrap_or(i64::MAX),
        );
    }

    /// The OpenMetrics text exposition.
    /// One reconcile failure of this controller, in this category.
    pub fn failed(&self, controller: &str, category: &str) {
        self.reconcile_failures
            .get_or_create(&FailureLabels {
                controller: controller.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
