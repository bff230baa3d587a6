//! `kubectl expensify`: the binary answers as a kubectl plugin when it is invoked as
//! `kubectl-expensify` (a symlink, or krew's install), with the everyday cluster-mode
//! verbs of `flux`: `reconcile` (a sync now), `suspend`, `resume` and `diff`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::de::DeserializeOwned;

use crate::api::{
    ExpensifyConnector, ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus,
    RECONCILE_REQUESTED_AT,
};
use crate::cluster::kube_io::{SecretLookup, read_secret};
use crate::expensify::Credentials;
use crate::files::loader::Manifests;
use crate::files::{PassReport, failures, render};
use crate::reconcile::{AccessObject, ConnectorObject, ObjectKey, Scope};
use crate::sync::{Store, SyncRequest, WriteAhead, WriteRefused, sync};

use super::cli::GlobalArgs;
use super::common::{ClientArgs, stdout_style};
use super::controller::kubeconfig_client;
use super::plan;

/// The name kubectl finds a plugin by (`kubectl expensify ...` runs `kubectl-expensify`).
pub const PLUGIN_NAME: &str = "kubectl-expensify";

/// Whether the process was started as the kubectl plugin: argv[0]'s file name, without
/// a Windows `.exe`.
pub fn invoked_as_plugin(argv0: Option<&OsStr>) -> bool {
    argv0
        .map(Path::new)
        .and_then(|path| path.file_name())
        .and_then(OsStr::to_str)
        .is_some_and(|name| name == PLUGIN_NAME || name == format!("{PLUGIN_NAME}.exe"))
}

/// `kubectl expensify`: cluster-mode objects from a person's terminal.
#[derive(Debug, clap::Parser)]
#[command(
    name = "kubectl expensify",
    bin_name = "kubectl expensify",
    version,
    about
)]
pub struct PluginCli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Namespace of the object [default: the kubeconfig context's namespace].
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig file to use [default: KUBECONFIG, else ~/.kube/config].
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use [default: the kubeconfig's current-context].
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Ask the controller for a sync now: sets the `expensify.gitops.dev/reconcile-requested-at`
    /// annotation (as `flux reconcile` does); the controller syncs the object's connector.
    Reconcile(ObjectArgs),
    /// Freeze the object: `spec.suspend: true` (nothing is written for it, nothing it holds
    /// is released).
    Suspend(ObjectArgs),
    /// Undo `suspend`: `spec.suspend: false`.
    Resume(ObjectArgs),
    /// What the controller would change now, as `plan` prints it (as `flux diff`): reads the
    /// connectors, every PolicyAccess and each connector's Secret with your kubeconfig, and
    /// Expensify; writes nothing to Expensify or to the cluster. Exit 0 in sync, 2 changes
    /// pending, 1 on error or when anything would be Blocked.
    Diff(DiffArgs),
}

/// Arguments of `diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The connectors of every namespace, not only of --namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One cluster object: its kind and name.
#[derive(Debug, Clone, clap::Args)]
pub struct ObjectArgs {
    /// `connector` (ExpensifyConnector) or `policyaccess`.
    #[arg(value_enum, value_name = "KIND")]
    pub kind: ObjectKind,
    /// The object's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// The kinds the plugin acts on, by the names a person types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectKind {
    #[value(alias = "expensifyconnector", alias = "connectors")]
    Connector,
    #[value(alias = "policyaccesses", alias = "pa")]
    Policyaccess,
}

impl ObjectKind {
    fn kind(self) -> &'static str {
        match self {
            ObjectKind::Connector => "ExpensifyConnector",
            ObjectKind::Policyaccess => "PolicyAccess",
        }
    }
}

pub async fn run(cli: PluginCli) -> anyhow::Result<i32> {
    let client = kubeconfig_client(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    crate::names::check_label(&namespace).context("--namespace")?;
    let (object, patch, done) = match &cli.command {
        PluginCommand::Diff(args) => {
            let only = (!args.all_namespaces).then_some(namespace.as_str());
            return diff(&client, only, args).await;
        }
        PluginCommand::Reconcile(object) => {
            let at = Timestamp::now().to_string();
            let patch =
                serde_json::json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: at}}});
            (
                object,
                patch,
                format!("sync requested ({RECONCILE_REQUESTED_AT}={at})"),
            )
        }
        PluginCommand::Suspend(object) => (
            object,
            serde_json::json!({"spec": {"suspend": true}}),
            "suspended".to_string(),
        ),
        PluginCommand::Resume(object) => (
            object,
            serde_json::json!({"spec": {"suspend": false}}),
            "resumed".to_string(),
        ),
    };
    crate::names::check_subdomain(&object.name).context("NAME")?;
    let what = format!("{} {namespace}/{}", object.kind.kind(), object.name);
    match object.kind {
        ObjectKind::Connector => {
            merge_patch::<ExpensifyConnector>(&client, &namespace, &object.name, &patch)
                .await
                .map(drop)
        }
        ObjectKind::Policyaccess => {
            merge_patch::<PolicyAccess>(&client, &namespace, &object.name, &patch)
                .await
                .map(drop)
        }
    }
    .map_err(|e| match e {
        kube::Error::Api(status) if status.code == 404 => {
            anyhow::anyhow!("{what} not found")
        }
        e => anyhow::Error::new(e).context(format!("patching {what}")),
    })?;
    outln!("{what}: {done}");
    Ok(0)
}

/// `diff`: the connectors of `namespace` (all when `None`) planned as `plan` plans a
/// repository, over every connector and PolicyAccess in the cluster, dry run.
async fn diff(
    client: &kube::Client,
    namespace: Option<&str>,
    args: &DiffArgs,
) -> anyhow::Result<i32> {
    let clients = args.client.clients()?;
    let connectors: Vec<ConnectorObject> = Api::<ExpensifyConnector>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing ExpensifyConnectors in every namespace")?
        .items
        .iter()
        .map(ConnectorObject::from_resource)
        .collect();
    let accesses: Vec<AccessObject> = Api::<PolicyAccess>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing PolicyAccess objects in every namespace")?
        .items
        .iter()
        .map(AccessObject::from_resource)
        .collect();
    let store = ReadOnly {
        client: client.clone(),
    };
    let now = Timestamp::now();
    let mut syncs = Vec::new();
    for connector in connectors
        .iter()
        .filter(|c| namespace.is_none_or(|ns| c.key.namespace == ns))
    {
        let request = SyncRequest {
            requests: crate::reconcile::Requests::NONE,
            connector,
            connectors: &connectors,
            accesses: &accesses,
            now,
            inventory_complete: true,
            // As the controller plans with the Secret's credentials (not held ones).
            scope: Scope::Everything,
            unverified: &[],
            dry_run: true,
            write_ahead: None,
            reviewed: None,
        };
        syncs.push(sync(request, &clients, &store).await);
    }
    if syncs.is_empty() {
        anyhow::bail!(
            "no ExpensifyConnector in {}",
            namespace.map_or_else(
                || "any namespace".to_string(),
                |ns| format!("namespace {ns} (-A for every namespace)")
            )
        );
    }
    let report = PassReport {
        manifests: Manifests::default(),
        syncs,
        unattached: Vec::new(),
        sources: BTreeMap::new(),
        stopped: false,
        // The ledger is in the objects' statuses, read with them: never missing here.
        missing_ledger: None,
        // Requests are listed by `kubectl get accessrequests`.
        requests: Vec::new(),
    };
    let shown = failures::without_repeats(report.clone());
    out!("{}", render::plan_text(&shown, stdout_style()));
    Ok(if report.has_errors() || report.has_blocked() {
        plan::FAILED
    } else if report.pending_changes() > 0 {
        plan::CHANGES_PENDING
    } else {
        plan::IN_SYNC
    })
}

/// `diff`'s store: credentials from the connector's Secret; every write refused (a dry run
/// asks for none).
struct ReadOnly {
    client: kube::Client,
}

impl std::fmt::Debug for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadOnly")
    }
}

/// Why `diff` refuses a write: it never writes.
const READ_ONLY: &str = "kubectl expensify diff writes nothing";

impl WriteAhead for ReadOnly {
    fn save<'a>(
        &'a self,
        _statuses: &'a BTreeMap<ObjectKey, PolicyAccessStatus>,
        _requests: &'a BTreeMap<ObjectKey, crate::api::AccessRequestStatus>,
        _connector: Option<&'a ExpensifyConnectorStatus>,
    ) -> BoxFuture<'a, Result<(), WriteRefused>> {
        Box::pin(std::future::ready(Err(WriteRefused(READ_ONLY.to_string()))))
    }
}

impl Store for ReadOnly {
    fn credentials<'a>(
        &'a self,
        connector: &'a ConnectorObject,
    ) -> BoxFuture<'a, Result<Credentials, String>> {
        Box::pin(async move {
            match read_secret(
                &self.client,
                &connector.key.namespace,
                &connector.spec.credentials_secret_ref,
            )
            .await
            {
                Ok(SecretLookup::Found { credentials, .. }) => Ok(credentials),
                Ok(SecretLookup::Unusable(message)) => Err(message),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn save_connector_status<'a>(
        &'a self,
        _connector: &'a ConnectorObject,
        _status: &'a ExpensifyConnectorStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Err(READ_ONLY.to_string())))
    }
}

/// A JSON merge patch of one namespaced object (what `kubectl patch --type merge` sends).
async fn merge_patch<K>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<K, kube::Error>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_found_by_its_file_name() {
        assert!(invoked_as_plugin(Some(OsStr::new("kubectl-expensify"))));
        assert!(invoked_as_plugin(Some(OsStr::new(
            "/home/me/.krew/bin/kubectl-expensify"
        ))));
        assert!(invoked_as_plugin(Some(OsStr::new("kubectl-expensify.exe"))));
        assert!(!invoked_as_plugin(Some(OsStr::new("expensify-operator"))));
        assert!(!invoked_as_plugin(Some(OsStr::new(
            "kubectl-expensify-old"
        ))));
        assert!(!invoked_as_plugin(None));
    }
}
