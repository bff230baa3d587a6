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
use crate::cluster::admission::{
    AdmissionSettings, DEFAULT_BINDING_NAME, DEFAULT_POLICY_NAME, check_admission,
};
use crate::cluster::kube_io::{SecretLookup, read_secret};
use crate::expensify::Credentials;
use crate::files::loader::Manifests;
use crate::files::{PassReport, failures, render};
use crate::reconcile::{
    AccessObject, Approval, ConnectorObject, DecisionObject, ObjectKey, RequestObject, Requests,
    Scope,
};
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
    /// connectors, every PolicyAccess, AccessRequest and AccessDecision, the identity
    /// admission policy and each connector's Secret with your kubeconfig, and Expensify;
    /// writes nothing to Expensify or to the cluster. Exit 0 in sync, 2 changes pending, 1
    /// on error, when anything would be Blocked or an AccessRequest is in Error.
    Diff(DiffArgs),
}

/// Arguments of `diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The connectors of every namespace, not only of --namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// The ValidatingAdmissionPolicy the controller checks before it honours any access
    /// request (its `--admission-policy-name`): while it or its binding is missing, the
    /// diff shows every request refused, as the controller would.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_POLICY_NAME)]
    pub admission_policy_name: String,
    /// The ValidatingAdmissionPolicyBinding that enforces it (the controller's
    /// `--admission-binding-name`).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_BINDING_NAME)]
    pub admission_binding_name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl DiffArgs {
    /// What the admission check reads, as the controller's flags say it.
    fn admission(&self) -> AdmissionSettings {
        AdmissionSettings {
            policy_name: self.admission_policy_name.clone(),
            binding_name: self.admission_binding_name.clone(),
            ..AdmissionSettings::default()
        }
    }
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

/// Every object of kind `K` in the cluster, as the planner reads it; `what` names them in
/// the error.
async fn list_all<K, T>(
    client: &kube::Client,
    what: &str,
    read: fn(&K) -> T,
) -> anyhow::Result<Vec<T>>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing {what} in every namespace"))?
        .items
        .iter()
        .map(read)
        .collect())
}

/// `diff`: the connectors of `namespace` (all when `None`) planned as `plan` plans a
/// repository, over every connector, PolicyAccess, AccessRequest and AccessDecision in the
/// cluster, dry run. Requests are judged as the controller judges them: decisions count
/// only while the identity admission policy is in force.
async fn diff(
    client: &kube::Client,
    namespace: Option<&str>,
    args: &DiffArgs,
) -> anyhow::Result<i32> {
    let clients = args.client.clients()?;
    let Cluster {
        connectors,
        accesses,
        requests,
        decisions,
        admission,
    } = Cluster::read(client, args).await?;
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
            requests: Requests {
                requests: &requests,
                decisions: &decisions,
                approval: Approval::Decisions(admission.as_ref().copied().map_err(String::as_str)),
            },
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
        unattached: Vec::new(),
        sources: BTreeMap::new(),
        stopped: false,
        // The ledger is in the objects' statuses, read with them: never missing here.
        missing_ledger: None,
        // Those the connectors shown judged, and those of the namespace shown.
        requests: requests
            .into_iter()
            .filter(|r| {
                namespace.is_none_or(|ns| r.key.namespace == ns) || syncs_judged(&syncs, &r.key)
            })
            .collect(),
        syncs,
    };
    let shown = failures::without_repeats(report.clone());
    out!("{}", render::plan_text(&shown, stdout_style()));
    Ok(plan::exit_code(&report))
}

/// What `diff` plans from: every object of the operator in the cluster, and whether
/// decisions can count (the controller's admission check).
struct Cluster {
    connectors: Vec<ConnectorObject>,
    accesses: Vec<AccessObject>,
    requests: Vec<RequestObject>,
    decisions: Vec<DecisionObject>,
    admission: Result<(), String>,
}

impl Cluster {
    async fn read(client: &kube::Client, args: &DiffArgs) -> anyhow::Result<Self> {
        let connectors = list_all(
            client,
            "ExpensifyConnectors",
            ConnectorObject::from_resource,
        )
        .await?;
        let accesses =
            list_all(client, "PolicyAccess objects", AccessObject::from_resource).await?;
        let requests = list_all(client, "AccessRequests", RequestObject::from_resource).await?;
        let decisions = list_all(client, "AccessDecisions", DecisionObject::from_resource).await?;
        // As the controller: the admission policy is read only when there are requests.
        let admission = if requests.is_empty() {
            Ok(())
        } else {
            check_admission(client, &args.admission())
                .await
                .map_err(|refused| refused.to_string())
        };
        Ok(Self {
            connectors,
            accesses,
            requests,
            decisions,
            admission,
        })
    }
}

/// Whether one of `syncs` judged the request `key`.
fn syncs_judged(syncs: &[crate::sync::SyncReport], key: &ObjectKey) -> bool {
    syncs.iter().any(|s| s.request_statuses.contains_key(key))
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
