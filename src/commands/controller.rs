//! `controller`: cluster mode.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use super::common::{ClientArgs, duration_arg};
use crate::cluster::{self, ControllerSettings, LeaseSettings};

/// Arguments of `controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:8080",
        env = "EXPENSIFY_OPERATOR_PROBES_ADDR"
    )]
    pub probes_addr: SocketAddr,
    /// Hold a Lease so that only one replica writes (run two or more replicas with it).
    #[arg(long, env = "EXPENSIFY_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, value_name = "NAME", default_value = "expensify-operator")]
    pub lease_name: String,
    /// Namespace of the Lease [default: POD_NAMESPACE, else default].
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease lasts without renewal.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = duration_arg)]
    pub lease_duration: Duration,
    /// Watch only these namespaces (comma-separated, or repeat the flag); default: all.
    #[arg(
        long = "namespaces",
        value_name = "NS,...",
        value_delimiter = ',',
        env = "EXPENSIFY_OPERATOR_NAMESPACES"
    )]
    pub namespaces: Vec<String>,
    /// Quiet time that folds a burst of changes into one sync.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = duration_arg)]
    pub debounce: Duration,
    /// Re-sync as soon as a credentials Secret changes. Needs `list` and `watch` on
    /// Secrets (which return every Secret's data); without it a rotation is used at the
    /// next sync.
    #[arg(long, env = "EXPENSIFY_OPERATOR_WATCH_SECRETS")]
    pub watch_secrets: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<i32> {
    let lease = if args.leader_election {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("expensify-operator-{}", std::process::id()));
        Some(LeaseSettings {
            name: args.lease_name.clone(),
            namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            identity,
            duration: args.lease_duration,
        })
    } else {
        None
    };
    let settings = ControllerSettings {
        probes_addr: args.probes_addr,
        lease,
        debounce: args.debounce,
        scope: cluster::Scope::from_list(&args.namespaces),
        watch_secrets: args.watch_secrets,
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config, or KUBECONFIG / ~/.kube/config)")?;
    let clients = args.client.clients()?;
    tracing::info!(
        allowed_endpoints = %clients.settings().allowed_endpoints,
        watch_secrets = settings.watch_secrets,
        "credentials go only to the allowed endpoints"
    );
    cluster::run(client, settings, clients, super::shutdown_signal()).await?;
    Ok(0)
}
