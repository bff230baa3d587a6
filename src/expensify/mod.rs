//! Expensify Integration Server client: wire types, errors, pacing and retries.
//!
//! Facts behind every choice here are in `shared/research/expensify-api.md`.

mod client;
mod config_error;
mod credentials;
mod endpoints;
mod error;
mod pacing;
mod retry;
pub mod wire;

pub use client::{
    CallCounts, ClientSettings, DEFAULT_ENDPOINT, DEFAULT_MAX_BODY_BYTES, ExpensifyClient,
    ExpensifyClients, FailedBatch, MAX_RETRY_AFTER, UpdateReport, WriteGate,
};
pub use config_error::ClientConfigError;
pub use credentials::{Credentials, CredentialsError};
pub use endpoints::{AllowedEndpoints, UrlPrefixes, checked_endpoint};
pub use error::{Call, ErrorKind, ExpensifyError};
pub use pacing::{
    BASE_MARGIN_PERCENT, MAX_DURATION, MAX_MARGIN_PERCENT, Pacing, PacingWindow, RateLimiter, Slot,
    WindowLog,
};
pub use retry::RetryPolicy;
pub use wire::{EmployeeRecord, PolicySummary, Role, RosterEntry, SkippedEmployee, UpdateOutcome};
