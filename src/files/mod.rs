//! File mode: the same manifests as cluster mode, read from a directory (a git checkout),
//! with status kept in a separate status directory.

pub mod credentials;
pub mod failures;
pub mod loader;
pub mod markdown;
pub mod notifications;
pub mod render;
pub mod repo;
pub mod report;
mod requests;
pub mod runner;
pub mod saved_plan;
pub mod select;
pub mod status_dir;
mod status_problem;
pub mod status_signing;
pub mod validate;
pub mod watch;

pub use credentials::{CredentialSource, ENV_USER_ID, ENV_USER_SECRET};
pub use repo::Target;
pub use runner::{FileMode, FilePassError, PassReport, Run};
pub use saved_plan::SavedPlan;
pub use select::Selection;
pub use status_dir::StatusDir;
