//! Cluster mode: the Kubernetes adapter around the one connector sync of `reconcile`.
//!
//! - `connector_controller`: one reconcile per `ExpensifyConnector` syncs every PolicyAccess
//!   that uses it (read inputs from the caches, prepare finalizers, the shared
//!   `sync::sync` with the cluster as its store, write changed statuses back, Events,
//!   finalizers);
//! - `access_controller`: PolicyAccess objects no connector takes (missing or not allowing
//!   their namespace), and their deletions;
//! - `kube_io`: every Kubernetes call, one function each, checked against `rbac`;
//! - `cache`: the watch caches syncs read (never a LIST per sync), and the statuses this
//!   replica wrote in its term (read-your-writes over a lagging cache);
//! - `leadership`, `backoff`, `context`: what the reconciles share;
//! - `metrics`, `server`: `/metrics`, `/healthz`, `/readyz`;
//! - `run`: watches, controllers, leader election and shutdown.
//!
//! Cluster mode never imports file mode.

pub mod access_controller;
pub mod backoff;
pub mod cache;
pub mod connector_controller;
pub mod context;
pub mod kube_io;
pub mod leadership;
pub mod metrics;
pub mod run;
pub mod server;

pub use kube_io::Scope;
pub use run::{ControllerSettings, LeaseSettings, RunControllerError, run};
pub mod rbac;
