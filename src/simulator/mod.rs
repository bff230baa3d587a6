//! A loopback double of the Expensify Integration Server, faithful to
//! `shared/research/expensify-api.md`: used by the tests, the benchmarks and `demo`.

mod faults;
mod seed;
mod server;
mod state;

pub use faults::{FaultConfig, ScriptedFault};
pub use seed::{
    LoadSeedError, Seed, SeedAccount, SeedEmployee, SeedPolicy, SeedRateLimits, SeedWindow,
};
pub use server::{ENDPOINT_PATH, SimulatorHandle, StartSimulatorError, start};
pub use state::{Counters, RequestRecord, RosterChange, SimState};
