//! `controller`: cluster mode.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
        short = 'n',
        long = "namespaces",
        alias = "namespace",
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
    /// The ValidatingAdmissionPolicy that proves who creates access requests and
    /// decisions; while it (or its binding) is missing, every request is refused.
    #[arg(
        long,
        value_name = "NAME",
        default_value = cluster::admission::DEFAULT_POLICY_NAME,
        env = "EXPENSIFY_OPERATOR_ADMISSION_POLICY_NAME"
    )]
    pub admission_policy_name: String,
    /// The ValidatingAdmissionPolicyBinding that enforces it (with `Deny`).
    #[arg(
        long,
        value_name = "NAME",
        default_value = cluster::admission::DEFAULT_BINDING_NAME,
        env = "EXPENSIFY_OPERATOR_ADMISSION_BINDING_NAME"
    )]
    pub admission_binding_name: String,
    /// The prefix the API server puts on usernames and groups (e.g. `oidc:`), stripped
    /// before they are compared with requesters, deciders and approvers; the same as the
    /// chart's admission policy.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        env = "EXPENSIFY_OPERATOR_USERNAME_PREFIX"
    )]
    pub username_prefix: String,
    /// Kubeconfig file to use [default: in-cluster config, else KUBECONFIG, else
    /// ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use [default: the kubeconfig's current-context].
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub notify: super::common::NotifyArgs,
}

/// Why no Kubernetes client could be made from a kubeconfig. Each names the file (or
/// where it was looked for) and the context.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read kubeconfig {file}: {reason}")]
    Read { file: String, reason: String },
    #[error("context {context:?} is not in kubeconfig {file}; its contexts: {available}")]
    UnknownContext {
        context: String,
        file: String,
        available: String,
    },
    #[error("kubeconfig {file}, context {context}: cannot use it")]
    Config {
        file: String,
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {file}, context {context}: cannot make a Kubernetes client")]
    Client {
        file: String,
        context: String,
        #[source]
        source: kube::Error,
    },
}

/// Where the default kubeconfig is read from, for messages: `KUBECONFIG`, else the home
/// directory's.
fn default_kubeconfig_name() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(value) if !value.is_empty() => format!("{value} (KUBECONFIG)"),
        _ => "~/.kube/config".to_string(),
    }
}

/// The kubeconfig `file` (or the default one), at `context` (or its current context).
pub async fn kubeconfig_client(
    file: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, KubeconfigError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let name = file.map_or_else(default_kubeconfig_name, |f| f.display().to_string());
    let kubeconfig = match file {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|source| KubeconfigError::Read {
        file: name.clone(),
        // The reader's own message repeats the path, quoted; the file is named once.
        reason: match source {
            kube::config::KubeconfigError::ReadConfig(io, _) => io.to_string(),
            other => other.to_string(),
        },
    })?;
    if let Some(context) = context
        && !kubeconfig.contexts.iter().any(|c| c.name == context)
    {
        let available: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(KubeconfigError::UnknownContext {
            context: context.to_string(),
            file: name,
            available: if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            },
        });
    }
    let context_name = context
        .map(str::to_string)
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_else(|| "(none)".to_string());
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| KubeconfigError::Config {
            file: name.clone(),
            context: context_name.clone(),
            source,
        })?;
    kube::Client::try_from(config).map_err(|source| KubeconfigError::Client {
        file: name,
        context: context_name,
        source,
    })
}

/// The Kubernetes client: from `--kubeconfig` / `--context` when given, else the usual
/// search (in-cluster config, then KUBECONFIG or ~/.kube/config).
async fn client(args: &ControllerArgs) -> anyhow::Result<kube::Client> {
    if args.kubeconfig.is_none() && args.context.is_none() {
        return kube::Client::try_default().await.context(
            "connecting to Kubernetes (in-cluster config, or KUBECONFIG / ~/.kube/config)",
        );
    }
    Ok(kubeconfig_client(args.kubeconfig.as_deref(), args.context.as_deref()).await?)
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
        admission: cluster::admission::AdmissionSettings {
            policy_name: args.admission_policy_name.clone(),
            binding_name: args.admission_binding_name.clone(),
            username_prefix: args.username_prefix.clone(),
        },
        allowed_webhooks: Some(args.notify.allowed()?),
    };
    let client = client(&args).await?;
    let clients = args.client.clients()?;
    tracing::info!(
        allowed_endpoints = %clients.settings().allowed_endpoints,
        watch_secrets = settings.watch_secrets,
        "credentials go only to the allowed endpoints"
    );
    cluster::run(client, settings, clients, super::shutdown_signal()).await?;
    Ok(0)
}
