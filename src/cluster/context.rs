//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::events::Recorder;
use tokio::sync::watch;
use tokio::time::Instant;

use super::metrics::Metrics;
use crate::expensify::ExpensifyClients;
use crate::reconcile::ObjectKey;

/// The inputs of a connector's last sync, and when the next is due.
#[derive(Debug, Clone)]
pub struct LastSync {
    pub fingerprint: String,
    pub due: Instant,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    pub expensify: Arc<ExpensifyClients>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// True while this replica holds the lease (always true without leader election).
    pub leader: watch::Receiver<bool>,
    /// The namespaces watched.
    pub scope: super::kube_io::Scope,
    last: Mutex<HashMap<ObjectKey, LastSync>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        expensify: Arc<ExpensifyClients>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        leader: watch::Receiver<bool>,
        scope: super::kube_io::Scope,
    ) -> Self {
        Self {
            client,
            expensify,
            recorder,
            metrics,
            leader,
            scope,
            last: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    pub fn last_sync(&self, key: &ObjectKey) -> Option<LastSync> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn remember(&self, key: ObjectKey, last: LastSync) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, last);
    }

    /// Forgets every connector's last sync: a new leader syncs everything once.
    pub fn forget_all(&self) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
