//! Helpers shared by the integration tests: a simulator on loopback and clients for it.
#![allow(dead_code)]

use std::time::Duration;

use expensify_operator::expensify::{
    ClientSettings, Credentials, ExpensifyClient, ExpensifyClients, Pacing,
};
use expensify_operator::simulator::{self, Seed, SimulatorHandle};

pub const ADMIN_ID: &str = "aa_it_admin_acme_example";
pub const ADMIN_SECRET: &str = "simulator-only-not-a-real-secret";
pub const READONLY_ID: &str = "aa_readonly_acme_example";
pub const READONLY_SECRET: &str = "simulator-only-readonly";

/// The seed shipped in `examples/`, so the tests exercise what users run.
pub fn example_seed() -> Seed {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/simulator-seed.yaml");
    Seed::load(std::path::Path::new(path)).expect("the example seed is valid")
}

/// The example seed without the simulator's rate limits.
pub fn unlimited_seed() -> Seed {
    let mut seed = example_seed();
    seed.rate_limits.enabled = false;
    seed
}

pub async fn start(seed: &Seed) -> SimulatorHandle {
    simulator::start(seed, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Settings for tests: no client pacing unless asked, and a request timeout long enough
/// that tokio's paused clock (which jumps to the next timer whenever the runtime parks)
/// does not fire it while a loopback answer is in flight.
pub fn test_settings() -> ClientSettings {
    ClientSettings {
        pacing: Pacing::unlimited(),
        request_timeout: Duration::from_secs(24 * 3600),
        ..ClientSettings::default()
    }
}

pub fn client_with(
    sim: &SimulatorHandle,
    settings: ClientSettings,
    id: &str,
    secret: &str,
) -> ExpensifyClient {
    ExpensifyClients::new(settings)
        .unwrap()
        .client(&sim.endpoint(), Credentials::new(id, secret).unwrap())
        .unwrap()
}

pub fn admin_client(sim: &SimulatorHandle) -> ExpensifyClient {
    client_with(sim, test_settings(), ADMIN_ID, ADMIN_SECRET)
}
