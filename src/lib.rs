//! expensify-operator: keeps Expensify policy membership where git says it should be.
//!
//! The crate is one library with a thin binary: `main.rs` parses arguments and calls into
//! [`commands`]. The rules are the pure [`reconcile`]; [`sync`] runs them against Expensify,
//! which is reached only through [`expensify`]; [`simulator`] is the
//! loopback double of the Integration Server used by tests, benchmarks and the demo.

pub mod api;
pub mod cluster;
pub mod commands;
pub mod email;
pub mod expensify;
pub mod files;
pub mod names;
pub mod notify;
pub mod reconcile;
pub mod sanitize;
pub mod simulator;
pub mod suggest;
pub mod sync;
pub mod telemetry;
