pub mod backoff;
pub mod context;
pub mod kube_io;
pub mod leadership;
pub mod metrics;
pub mod reconciler;
pub mod run;
pub mod server;
pub mod unattached;

pub use kube_io::Scope;
pub use run::{ControllerSettings, LeaseSettings, RunControllerError, run};
pub mod rbac;
