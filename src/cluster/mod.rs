//! Cluster mode: the Kubernetes adapter around the one connector sync (`crate::sync`).
//!
//! - `connector_controller`: one reconcile per `ExpensifyConnector` syncs every PolicyAccess
//!   that uses it, a pipeline of steps with a file each (read inputs from the caches, hold
//!   finalizers, the shared `crate::sync` with the cluster as its store, Events,
//!   changed statuses, release finalizers);
//! - `admission`: the fail-closed check that the identity admission policy is enforced,
//!   which access requests wait on;
//! - `access_controller`: PolicyAccess objects no connector takes (missing or not allowing
//!   their namespace), and their deletions;
//! - `context`: what the reconciles share, and their one door to the cluster (every
//!   Kubernetes call of a reconcile is a method there);
//! - `kube_io`: every Kubernetes call, one function each, checked against `rbac`;
//! - `cache`: the watch caches syncs read (never a LIST per sync), and the statuses this
//!   replica wrote in its term (read-your-writes over a lagging cache);
//! - `watches`: the watches behind the caches and the controllers' triggers;
//! - `election`, `leadership`: the Lease, and the terms every write checks;
//! - `requests`: access requests without Kubernetes calls (which connector they wake,
//!   their finalizer, their phase changes);
//! - `backoff`: retries of failed reconciles;
//! - `metrics`, `server`: `/metrics`, `/healthz`, `/readyz`;
//! - `run`: the controllers wired to the watches, leader election and shutdown.
//!
//! Cluster mode never imports file mode; no two of these files import each other
//! (`tests/module_graph.rs`).

pub mod access_controller;
pub mod admission;
pub mod backoff;
pub mod cache;
pub mod connector_controller;
pub mod context;
mod election;
pub mod kube_io;
pub mod leadership;
pub mod metrics;
pub mod requests;
pub mod run;
pub mod server;
mod watches;

pub use kube_io::Scope;
pub use run::{
    ControllerSettings, LeaseSettings, RunControllerError, run, run_with_requests_admission,
};
pub mod rbac;
