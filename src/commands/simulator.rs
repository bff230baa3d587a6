//! `expensify-operator simulator`: the Integration Server double, on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tracing::info;

use crate::simulator::{self, Seed};

/// Arguments of `simulator`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulatorArgs {
    /// Seed YAML: accounts, policies, rosters (see extras/simulator-seed.yaml).
    #[arg(long, value_name = "FILE")]
    pub seed: PathBuf,
    /// Loopback address to listen on; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
}

pub async fn run(args: SimulatorArgs) -> anyhow::Result<i32> {
    let seed = Seed::load(&args.seed)?;
    let handle = simulator::start(&seed, args.listen)
        .await
        .context("starting the simulator")?;
    info!(
        endpoint = %handle.endpoint(),
        admin = %handle.admin_url(),
        accounts = seed.accounts.len(),
        policies = seed.policies.len(),
        "simulator listening"
    );
    outln!("Expensify simulator listening");
    outln!("  endpoint: {}", handle.endpoint());
    // Credentials go only to allowed endpoints; say how to allow this one.
    outln!(
        "  to use it: EXPENSIFY_ALLOWED_ENDPOINTS={} (and that endpoint in the connector)",
        handle.endpoint()
    );
    outln!(
        "  admin:    {}/{{requests,counters,state,faults,reset}}",
        handle.admin_url()
    );
    super::shutdown_signal().await;
    info!("shutting down");
    handle.shutdown().await;
    Ok(0)
}
