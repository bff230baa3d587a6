//! Cluster mode: the two controllers, the probes server, leader election and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kube_lease_manager::LeaseManager;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::cache::Caches;
use super::context::Context;
use super::kube_io::Scope;
use super::leadership::{self, LeadershipTerms, LeaseRenewals};
use super::metrics::Metrics;
use super::server::{self, Readiness};
use super::{access_controller, connector_controller};
use crate::api::{ExpensifyConnector, PolicyAccess};
use crate::expensify::ExpensifyClients;
use crate::reconcile::AccessObject;

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub probes_addr: SocketAddr,
    pub lease: Option<LeaseSettings>,
    /// Quiet time that folds a burst of changes into one sync.
    pub debounce: Duration,
    /// The namespaces watched.
    pub scope: Scope,
    /// Re-sync when a credentials Secret changes; needs `list`/`watch` on Secrets.
    pub watch_secrets: bool,
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunControllerError {
    #[error(
        "the expensify.gitops.dev CRDs are not installed or not readable ({0}); install them with `kubectl apply --server-side -f crds/`"
    )]
    CrdsMissing(#[source] kube::Error),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error("leader election: {0}")]
    Lease(String),
}

/// Connectors to sync when a Secret changes: those in its namespace that reference it.
fn connectors_using(
    store: &kube::runtime::reflector::Store<ExpensifyConnector>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<ExpensifyConnector>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|c| {
            c.namespace().as_deref() == Some(namespace.as_str())
                && c.spec.credentials_secret_ref.name == name
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Readiness from the watches' own streams: each reports its first complete list
/// (`InitDone`) once, and the last of them makes the replica ready and lets syncs read
/// the caches. Awaiting a store's `wait_until_ready` instead competes with the
/// controller, which awaits the same one-waker future: only one of the two is ever
/// woken, and readiness never came.
#[derive(Clone)]
struct InitialLists {
    pending: Arc<AtomicUsize>,
    readiness: Arc<Readiness>,
    listed: Arc<watch::Sender<bool>>,
}

impl InitialLists {
    fn new(watches: usize, readiness: Arc<Readiness>) -> Self {
        let (listed, _) = watch::channel(watches == 0);
        if watches == 0 {
            readiness.set_ready();
        }
        Self {
            pending: Arc::new(AtomicUsize::new(watches)),
            readiness,
            listed: Arc::new(listed),
        }
    }

    /// Turns true once every watch listed everything.
    fn listed(&self) -> watch::Receiver<bool> {
        self.listed.subscribe()
    }

    /// Called with every event of one watch; counts that watch's first `InitDone` only.
    fn tracker<K>(&self) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
        let lists = self.clone();
        let mut listed = false;
        move |event| {
            if listed || !matches!(event, watcher::Event::InitDone) {
                return;
            }
            listed = true;
            if lists.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                info!("every watch has listed everything once; ready");
                lists.readiness.set_ready();
                lists.listed.send_replace(true);
            }
        }
    }
}

/// A controller over a reflector of our own, so its first full list is seen and its
/// store is the cache syncs read from.
fn cached_controller<K>(
    api: Api<K>,
    watch_config: watcher::Config,
    lists: &InitialLists,
) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let mut listed = lists.tracker();
    let objects = reflector(writer, watcher(api, watch_config).default_backoff())
        .inspect_ok(move |event| listed(event))
        .applied_objects();
    Controller::for_stream(objects, reader)
}

type LeaseTask = tokio::task::JoinHandle<kube_lease_manager::Result<LeaseManager>>;

/// Leader election as started: the lease manager's "leading" flag, its task, and the
/// renewals seen. Without election: leading from the start, no task, no renewals.
struct Election {
    leader: watch::Receiver<bool>,
    task: Option<LeaseTask>,
    renewals: Option<LeaseRenewals>,
}

/// Starts leader election when asked.
async fn elect(
    client: &Client,
    lease: Option<&LeaseSettings>,
) -> Result<Election, RunControllerError> {
    let Some(lease) = lease else {
        return Ok(Election {
            leader: watch::channel(true).1,
            task: None,
            renewals: None,
        });
    };
    // The lease manager counts in whole seconds.
    let seconds = lease.duration.as_secs().max(1);
    let renewals = LeaseRenewals::new(Duration::from_secs(seconds));
    let lease_client = renewals.observe(client.clone(), &lease.namespace, &lease.name);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(lease_client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(seconds)
        .with_grace(seconds.max(2) / 2)
        .build()
        .await
        .map_err(|e| RunControllerError::Lease(e.to_string()))?;
    let (leader, task) = manager.watch().await;
    info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election on; waiting for the lease");
    Ok(Election {
        leader,
        task: Some(task),
        renewals: Some(renewals),
    })
}

/// Follows the lease manager and the renewals: a term lasts while the manager says this
/// replica holds the Lease and its last renewal is recent enough. When either fails the
/// term ends at once (every write after it is refused, mid-sync included); a new term
/// syncs everything once.
fn follow_leadership(
    mut leader: watch::Receiver<bool>,
    renewals: Option<LeaseRenewals>,
    terms: LeadershipTerms,
    ctx: Arc<Context>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leading = terms.leading();
        loop {
            let held = *leader.borrow_and_update();
            let deadline = renewals.as_ref().and_then(LeaseRenewals::deadline);
            let in_time = renewals.as_ref().is_none_or(|r| r.in_time(Instant::now()));
            if (held && in_time) != leading {
                leading = held && in_time;
                // Forgotten before the term starts: no sync of the new term reads what
                // the last one wrote.
                if leading {
                    ctx.forget_all();
                }
                terms.set(leading);
                if leading {
                    info!("this replica holds the lease now; syncing everything once");
                } else if held {
                    warn!("the lease was not renewed in time; no writes until it is");
                } else {
                    warn!("the lease is lost; no more writes from this replica");
                }
            }
            let expiry = async {
                match deadline {
                    Some(deadline) if leading => tokio::time::sleep_until(deadline).await,
                    _ => std::future::pending().await,
                }
            };
            let renewed = async {
                match &renewals {
                    Some(renewals) => renewals.renewed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { break },
                () = renewed => {}
                () = expiry => {}
            }
        }
    })
}

/// With every receiver gone the lease task returns its manager: hand the lease over now
/// instead of letting it expire.
async fn release_lease(task: Option<LeaseTask>) {
    let Some(task) = task else {
        return;
    };
    if let Ok(Ok(Ok(manager))) = tokio::time::timeout(Duration::from_secs(5), task).await {
        if let Err(e) = manager.release().await {
            warn!(error = %e, "releasing the lease failed; it expires by itself");
        }
    } else {
        warn!("the lease could not be released; it expires by itself");
    }
}

/// One connector controller per watched scope; each hears every watched PolicyAccess (a
/// reference may cross namespaces) and, opted in, the Secrets of its own scope.
fn connector_controllers(
    client: &Client,
    settings: &ControllerSettings,
    lists: &InitialLists,
) -> Vec<Controller<ExpensifyConnector>> {
    let config = controller::Config::default().debounce(settings.debounce);
    let watch_config = watcher::Config::default().any_semantic();
    let mut controllers = Vec::new();
    for connectors_api in settings.scope.apis::<ExpensifyConnector>(client) {
        let mut connectors = cached_controller(connectors_api.clone(), watch_config.clone(), lists)
            .with_config(config.clone());
        let store = connectors.store();
        for accesses_api in settings.scope.apis::<PolicyAccess>(client) {
            connectors = connectors.watches(accesses_api, watch_config.clone(), |pa| {
                let key = AccessObject::from_resource(&pa).connector_key();
                Some(ObjectRef::new(&key.name).within(&key.namespace))
            });
        }
        // Opt-in: listing Secrets returns their data, so by default they are only read by
        // name at each sync and a rotation is picked up by the next one.
        if settings.watch_secrets {
            let secrets_api: Api<PartialObjectMeta<Secret>> = match connectors_api.namespace() {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            };
            let secret_store = store.clone();
            connectors = connectors.watches(secrets_api, watch_config.clone(), move |secret| {
                connectors_using(&secret_store, &secret)
            });
        }
        controllers.push(connectors);
    }
    controllers
}

/// One PolicyAccess controller per watched scope, for the objects no connector takes.
/// Their stores are the PolicyAccess caches every connector sync reads.
fn access_controllers(
    client: &Client,
    settings: &ControllerSettings,
    lists: &InitialLists,
) -> Vec<Controller<PolicyAccess>> {
    let config = controller::Config::default().debounce(settings.debounce);
    let watch_config = watcher::Config::default().any_semantic();
    settings
        .scope
        .apis::<PolicyAccess>(client)
        .into_iter()
        .map(|api| cached_controller(api, watch_config.clone(), lists).with_config(config.clone()))
        .collect()
}

/// Runs the controllers until a stop is asked for; syncs in flight finish.
fn running(
    connectors: Vec<Controller<ExpensifyConnector>>,
    accesses: Vec<Controller<PolicyAccess>>,
    ctx: &Arc<Context>,
    stop_rx: &watch::Receiver<bool>,
) -> Vec<BoxFuture<'static, ()>> {
    let stopped = |stop_rx: &watch::Receiver<bool>| {
        let mut shutdown = stop_rx.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    };
    let mut running: Vec<BoxFuture<'static, ()>> = Vec::new();
    for controller in connectors {
        running.push(Box::pin(
            controller
                .graceful_shutdown_on(stopped(stop_rx))
                .run(
                    connector_controller::reconcile_connector,
                    connector_controller::error_policy,
                    ctx.clone(),
                )
                .for_each(|result| async move {
                    if let Err(e) = result {
                        warn!(error = %e, "connector controller");
                    }
                }),
        ));
    }
    for controller in accesses {
        running.push(Box::pin(
            controller
                .graceful_shutdown_on(stopped(stop_rx))
                .run(
                    access_controller::reconcile_access,
                    access_controller::error_policy,
                    ctx.clone(),
                )
                .for_each(|result| async move {
                    if let Err(e) = result {
                        warn!(error = %e, "PolicyAccess controller");
                    }
                }),
        ));
    }
    running
}

/// Fails early, with a clear error, when the CRDs are not installed.
async fn check_crds(
    client: &Client,
    scope: &super::kube_io::Scope,
) -> Result<(), RunControllerError> {
    for api in scope.apis::<ExpensifyConnector>(client) {
        api.list(&ListParams::default().limit(1))
            .await
            .map_err(RunControllerError::CrdsMissing)?;
    }
    for api in scope.apis::<PolicyAccess>(client) {
        api.list(&ListParams::default().limit(1))
            .await
            .map_err(RunControllerError::CrdsMissing)?;
    }
    Ok(())
}

/// Turns the caller's stop future into a channel every loop can watch.
fn stop_channel(
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        info!("stop requested; finishing the syncs in flight");
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Runs until `stop` resolves; syncs in flight finish first.
pub async fn run(
    client: Client,
    settings: ControllerSettings,
    expensify: Arc<ExpensifyClients>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunControllerError> {
    check_crds(&client, &settings.scope).await?;
    let stop_rx = stop_channel(stop);
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let (probes_addr, probes) = server::serve(
        settings.probes_addr,
        metrics.clone(),
        readiness.clone(),
        stop_rx.clone(),
    )
    .await?;
    info!(addr = %probes_addr, "serving /metrics, /healthz and /readyz");

    let election = elect(&client, settings.lease.as_ref()).await?;
    let (terms, leadership) = leadership::leadership(election.task.is_none());
    let reporter = Reporter {
        controller: "expensify-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let watches = settings.scope.apis::<ExpensifyConnector>(&client).len()
        + settings.scope.apis::<PolicyAccess>(&client).len();
    let lists = InitialLists::new(watches, readiness);
    let connectors = connector_controllers(&client, &settings, &lists);
    let accesses = access_controllers(&client, &settings, &lists);
    let caches = Caches::new(
        connectors.iter().map(Controller::store).collect(),
        accesses.iter().map(Controller::store).collect(),
        lists.listed(),
    );
    let ctx = Arc::new(Context::new(
        leadership::guarded_client(client.clone(), leadership.clone()),
        expensify,
        Recorder::new(client.clone(), reporter),
        metrics,
        leadership,
        caches,
    ));
    let controllers = running(connectors, accesses, &ctx, &stop_rx);

    let leadership_task = follow_leadership(election.leader, election.renewals, terms, ctx.clone());

    futures::future::join_all(controllers).await;
    leadership_task.abort();
    let _ = leadership_task.await;
    drop(ctx);
    release_lease(election.task).await;
    let _ = probes.await;
    info!("controller stopped");
    Ok(())
}
