//! Cluster mode's wiring: the two controllers over the shared watches (`watches`), the
//! probes server, leader election (`election`) and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::cache::Caches;
use super::context::Context;
use super::election::{elect, follow_leadership, release_lease};
use super::kube_io::Scope;
use super::leadership;
use super::metrics::Metrics;
use super::server::{self, Readiness};
use super::watches::{InitialLists, SharedWatch, cached_controller};
use super::{access_controller, connector_controller};
use crate::api::{AccessDecision, AccessRequest, ExpensifyConnector, PolicyAccess};
use crate::expensify::ExpensifyClients;
use crate::reconcile::{AccessObject, ConnectorObject, ObjectKey};

pub use super::election::LeaseSettings;

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
    /// The identity admission policy access requests wait on, and the username prefix.
    pub admission: super::admission::AdmissionSettings,
    /// Where notification webhooks may be posted (`--allowed-webhooks`); `None` sends
    /// none (Events are still published).
    pub allowed_webhooks: Option<crate::notify::AllowedWebhooks>,
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
    #[error(transparent)]
    Notifier(#[from] crate::notify::StartNotifierError),
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

/// The PolicyAccess watches, one per watched scope, each triggering every connector
/// controller (one per scope) and the PolicyAccess controller of its scope.
fn access_watches(
    client: &Client,
    settings: &ControllerSettings,
    lists: &InitialLists,
) -> Vec<SharedWatch<PolicyAccess>> {
    let watch_config = watcher::Config::default().any_semantic();
    let connector_controllers = settings.scope.apis::<ExpensifyConnector>(client).len();
    settings
        .scope
        .apis::<PolicyAccess>(client)
        .into_iter()
        .map(|api| SharedWatch::new(api, watch_config.clone(), lists, connector_controllers + 1))
        .collect()
}

/// The AccessRequest and AccessDecision watches, one each per watched scope, each
/// triggering every connector controller.
struct RequestWatches {
    requests: Vec<SharedWatch<AccessRequest>>,
    decisions: Vec<SharedWatch<AccessDecision>>,
}

impl RequestWatches {
    fn new(client: &Client, settings: &ControllerSettings, lists: &InitialLists) -> Self {
        let watch_config = watcher::Config::default().any_semantic();
        let connector_controllers = settings.scope.apis::<ExpensifyConnector>(client).len();
        Self {
            requests: settings
                .scope
                .apis::<AccessRequest>(client)
                .into_iter()
                .map(|api| {
                    SharedWatch::new(api, watch_config.clone(), lists, connector_controllers)
                })
                .collect(),
            decisions: settings
                .scope
                .apis::<AccessDecision>(client)
                .into_iter()
                .map(|api| {
                    SharedWatch::new(api, watch_config.clone(), lists, connector_controllers)
                })
                .collect(),
        }
    }
}

/// Which connector a request or decision wakes, from the caches (see
/// [`super::requests::connector_of_request`]).
#[derive(Clone)]
struct RequestRouting {
    connectors: Vec<Store<ExpensifyConnector>>,
    accesses: Vec<Store<PolicyAccess>>,
    requests: Vec<Store<AccessRequest>>,
}

impl RequestRouting {
    fn access(&self, key: &ObjectKey) -> Option<AccessObject> {
        let reference = ObjectRef::new(&key.name).within(&key.namespace);
        self.accesses
            .iter()
            .find_map(|s| s.get(&reference))
            .map(|pa| AccessObject::from_resource(&pa))
    }

    /// The connector that answers `namespace` for objects nothing else routes.
    fn answering(&self, namespace: &str) -> Option<ObjectKey> {
        let accesses = self.accesses.iter().flat_map(Store::state);
        let connectors = self.connectors.iter().flat_map(Store::state);
        crate::reconcile::requests::connector_answering(
            namespace,
            accesses.map(|pa| AccessObject::from_resource(&pa)),
            connectors.map(|c| ConnectorObject::from_resource(&c)),
        )
    }

    fn of_request(&self, request: &AccessRequest) -> Option<ObjectRef<ExpensifyConnector>> {
        let key = super::requests::connector_of_request(
            request,
            |k| self.access(k),
            |namespace| self.answering(namespace),
        )?;
        Some(ObjectRef::new(&key.name).within(&key.namespace))
    }

    fn of_decision(&self, decision: &AccessDecision) -> Option<ObjectRef<ExpensifyConnector>> {
        let key = super::requests::request_of_decision(decision);
        let reference = ObjectRef::new(&key.name).within(&key.namespace);
        if let Some(request) = self.requests.iter().find_map(|s| s.get(&reference)) {
            return self.of_request(&request);
        }
        // No such request: the decision still gets a status saying so.
        let key = self.answering(&ObjectKey::of(&decision.metadata).namespace)?;
        Some(ObjectRef::new(&key.name).within(&key.namespace))
    }
}

/// One connector controller per watched scope; each hears every watched PolicyAccess,
/// AccessRequest and AccessDecision (a reference may cross namespaces) and, opted in, the
/// Secrets of its own scope.
fn connector_controllers(
    client: &Client,
    settings: &ControllerSettings,
    lists: &InitialLists,
    accesses: &mut [SharedWatch<PolicyAccess>],
    requests: &mut RequestWatches,
) -> Vec<Controller<ExpensifyConnector>> {
    let config = controller::Config::default().debounce(settings.debounce);
    let watch_config = watcher::Config::default().any_semantic();
    // Every scope's connector cache first: routing an object may need any of them.
    let scoped: Vec<_> = settings
        .scope
        .apis::<ExpensifyConnector>(client)
        .into_iter()
        .map(|api| {
            let controller = cached_controller(api.clone(), watch_config.clone(), lists)
                .with_config(config.clone());
            (api, controller)
        })
        .collect();
    let routing = RequestRouting {
        connectors: scoped.iter().map(|(_, c)| c.store()).collect(),
        accesses: accesses.iter().map(|w| w.reader.clone()).collect(),
        requests: requests.requests.iter().map(|w| w.reader.clone()).collect(),
    };
    let mut controllers = Vec::new();
    for (connectors_api, mut connectors) in scoped {
        let store = connectors.store();
        for access_watch in accesses.iter_mut() {
            connectors = connectors.watches_stream(access_watch.triggers(), |pa| {
                let key = AccessObject::from_resource(&pa).connector_key();
                Some(ObjectRef::new(&key.name).within(&key.namespace))
            });
        }
        for request_watch in &mut requests.requests {
            let routing = routing.clone();
            connectors = connectors
                .watches_stream(request_watch.triggers(), move |r| routing.of_request(&r));
        }
        for decision_watch in &mut requests.decisions {
            let routing = routing.clone();
            connectors = connectors
                .watches_stream(decision_watch.triggers(), move |d| routing.of_decision(&d));
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

/// One PolicyAccess controller per watched scope, for the objects no connector takes,
/// triggered by the scope's shared watch (whose store is the cache every sync reads).
fn access_controllers(
    settings: &ControllerSettings,
    accesses: &mut [SharedWatch<PolicyAccess>],
) -> Vec<Controller<PolicyAccess>> {
    let config = controller::Config::default().debounce(settings.debounce);
    accesses
        .iter_mut()
        .map(|watch| {
            // Only objects still there: the connector controllers hear of deletions.
            let present = watch.reader.clone();
            let triggers = watch.triggers().filter(move |object| {
                let keep = object
                    .as_ref()
                    .is_ok_and(|o| present.get(&ObjectRef::from_obj(o)).is_some());
                std::future::ready(keep)
            });
            Controller::for_stream(triggers, watch.reader.clone()).with_config(config.clone())
        })
        .collect()
}

/// Runs the shared watches and the controllers until a stop is asked for; syncs in
/// flight finish.
fn running(
    watches: Vec<BoxFuture<'static, ()>>,
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
    for driver in watches {
        let stop = stopped(stop_rx);
        running.push(Box::pin(async move {
            futures::future::select(driver, Box::pin(stop)).await;
        }));
    }
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
    for api in scope.apis::<AccessRequest>(client) {
        api.list(&ListParams::default().limit(1))
            .await
            .map_err(RunControllerError::CrdsMissing)?;
    }
    for api in scope.apis::<AccessDecision>(client) {
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
    run_with_requests_admission(client, settings, expensify, stop, None).await
}

/// [`run`], with the admission of access decisions settled to `admission` when `Some`
/// (tests: the real check needs a cluster's admission policies).
pub async fn run_with_requests_admission(
    client: Client,
    settings: ControllerSettings,
    expensify: Arc<ExpensifyClients>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    admission: Option<Result<(), String>>,
) -> Result<(), RunControllerError> {
    check_crds(&client, &settings.scope).await?;
    let stop_rx = stop_channel(stop);
    let metrics = Arc::new(Metrics::default());
    let notifier = start_notifier(&settings, &metrics)?;
    let readiness = Arc::new(Readiness::default());
    let (probes_addr, probes) = server::serve(
        settings.probes_addr,
        metrics.clone(),
        readiness.clone(),
        stop_rx.clone(),
    )
    .await?;
    info!(addr = %probes_addr, "serving /metrics, /healthz and /readyz");

    let election = elect(&client, settings.lease.as_ref())
        .await
        .map_err(|e| RunControllerError::Lease(e.to_string()))?;
    let (terms, leadership) = leadership::leadership(election.task.is_none());
    let reporter = Reporter {
        controller: "expensify-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let lists = InitialLists::new(watch_count(&client, &settings), readiness);
    let mut access_watches = access_watches(&client, &settings, &lists);
    let mut request_watches = RequestWatches::new(&client, &settings, &lists);
    let connectors = connector_controllers(
        &client,
        &settings,
        &lists,
        &mut access_watches,
        &mut request_watches,
    );
    let accesses = access_controllers(&settings, &mut access_watches);
    let (caches, watch_drivers) =
        caches_and_drivers(&connectors, access_watches, request_watches, &lists);
    let mut ctx = Context::new(
        leadership::guarded_client(client.clone(), leadership.clone()),
        expensify,
        Recorder::new(client.clone(), reporter),
        metrics,
        leadership,
        caches,
    )
    .with_admission(settings.admission.clone())
    .with_notifier(notifier);
    if let Some(admission) = admission {
        ctx = ctx.with_requests_admission(admission);
    }
    let ctx = Arc::new(ctx);
    let controllers = running(watch_drivers, connectors, accesses, &ctx, &stop_rx);

    let leadership_task = follow_leadership(
        election.leader,
        election.renewals,
        terms,
        ctx.clone(),
        settings.lease.clone(),
    );

    futures::future::join_all(controllers).await;
    leadership_task.abort();
    let _ = leadership_task.await;
    drop(ctx);
    release_lease(election.task).await;
    let _ = probes.await;
    info!("controller stopped");
    Ok(())
}

/// The notification sender, when webhooks are allowed at all.
fn start_notifier(
    settings: &ControllerSettings,
    metrics: &Metrics,
) -> Result<Option<crate::notify::Notifier>, RunControllerError> {
    Ok(settings
        .allowed_webhooks
        .clone()
        .map(|allowed| {
            crate::notify::Notifier::start(
                crate::notify::NotifierSettings::new(allowed),
                metrics.notifications.clone(),
            )
        })
        .transpose()?)
}

/// How many watches must list once before the controller is ready: per scope,
/// connectors, PolicyAccess, AccessRequest and AccessDecision.
fn watch_count(client: &Client, settings: &ControllerSettings) -> usize {
    settings.scope.apis::<ExpensifyConnector>(client).len()
        + settings.scope.apis::<PolicyAccess>(client).len()
        + settings.scope.apis::<AccessRequest>(client).len()
        + settings.scope.apis::<AccessDecision>(client).len()
}

/// The caches every read comes from, and the streams that drive the shared watches.
fn caches_and_drivers(
    connectors: &[Controller<ExpensifyConnector>],
    access_watches: Vec<SharedWatch<PolicyAccess>>,
    request_watches: RequestWatches,
    lists: &InitialLists,
) -> (Caches, Vec<BoxFuture<'static, ()>>) {
    let caches = Caches::new(
        connectors.iter().map(Controller::store).collect(),
        access_watches.iter().map(|w| w.reader.clone()).collect(),
        lists.listed(),
    )
    .with_requests(
        request_watches
            .requests
            .iter()
            .map(|w| w.reader.clone())
            .collect(),
        request_watches
            .decisions
            .iter()
            .map(|w| w.reader.clone())
            .collect(),
    );
    let watch_drivers = access_watches
        .into_iter()
        .map(|w| w.driver)
        .chain(request_watches.requests.into_iter().map(|w| w.driver))
        .chain(request_watches.decisions.into_iter().map(|w| w.driver))
        .collect();
    (caches, watch_drivers)
}
