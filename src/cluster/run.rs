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

/// A kind the controllers watch.
trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// One watch and its reflector: the store is the cache syncs read from, and the events
/// (each applied to the store before it is yielded) count towards readiness.
fn listed_reflector<K: Watched>(
    api: Api<K>,
    watch_config: watcher::Config,
    lists: &InitialLists,
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let mut listed = lists.tracker();
    let events = reflector(writer, watcher(api, watch_config).default_backoff())
        .inspect_ok(move |event| listed(event));
    (reader, events)
}

/// A controller over a reflector of our own, so its first full list is seen and its
/// store is the cache syncs read from.
fn cached_controller<K: Watched>(
    api: Api<K>,
    watch_config: watcher::Config,
    lists: &InitialLists,
) -> Controller<K> {
    let (reader, events) = listed_reflector(api, watch_config, lists);
    Controller::for_stream(events.applied_objects(), reader)
}

/// Triggers queued per controller before the shared watch waits for it.
const TRIGGER_BUFFER: usize = 1024;

/// A trigger stream fed by a [`SharedWatch`].
type Triggers<K> = futures::channel::mpsc::Receiver<Result<K, watcher::Error>>;

/// One watch of a kind in one scope, shared by every controller it triggers: its store is
/// the cache syncs read, and each object it touches reaches every controller only after
/// the store shows it. (With a watch per controller, a sync triggered by one could read a
/// cache fed by another that had not seen the change yet, and wait for the next trigger.)
struct SharedWatch<K: Watched> {
    reader: reflector::Store<K>,
    triggers: Vec<Triggers<K>>,
    /// Drives the watch and hands out the triggers; run it beside the controllers.
    driver: BoxFuture<'static, ()>,
}

impl<K: Watched> SharedWatch<K> {
    /// A watch that triggers `controllers` controllers.
    fn new(
        api: Api<K>,
        watch_config: watcher::Config,
        lists: &InitialLists,
        controllers: usize,
    ) -> Self {
        let (reader, events) = listed_reflector(api, watch_config, lists);
        let (senders, triggers): (Vec<_>, Vec<_>) = (0..controllers)
            .map(|_| futures::channel::mpsc::channel(TRIGGER_BUFFER))
            .unzip();
        Self {
            reader,
            triggers,
            driver: Box::pin(fan_out(events, senders)),
        }
    }

    /// The trigger stream of the next controller.
    fn triggers(&mut self) -> Triggers<K> {
        // `new` made one per controller; a missing one would be a wiring mistake, and an
        // empty stream then only means no triggers.
        self.triggers
            .pop()
            .unwrap_or_else(|| futures::channel::mpsc::channel(0).1)
    }
}

/// The objects a watch event touched, once the store shows them: an applied or deleted
/// object at once; a re-list's objects when it is complete (the store swaps them in then).
fn touched<K>(event: watcher::Event<K>, relisted: &mut Vec<K>) -> Vec<K> {
    match event {
        watcher::Event::Apply(object) | watcher::Event::Delete(object) => vec![object],
        watcher::Event::Init => {
            relisted.clear();
            Vec::new()
        }
        watcher::Event::InitApply(object) => {
            relisted.push(object);
            Vec::new()
        }
        watcher::Event::InitDone => std::mem::take(relisted),
    }
}

/// Drives a watch and sends each object it touches to every controller's trigger stream.
async fn fan_out<K: Clone>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    mut senders: Vec<futures::channel::mpsc::Sender<Result<K, watcher::Error>>>,
) {
    use futures::SinkExt;
    let mut events = std::pin::pin!(events);
    let mut relisted = Vec::new();
    while let Some(event) = events.next().await {
        let objects = match event {
            Ok(event) => touched(event, &mut relisted),
            Err(e) => {
                // The watcher backs off and retries by itself.
                warn!(error = %e, "watch failed; retrying");
                continue;
            }
        };
        for object in objects {
            for sender in &mut senders {
                // A controller that stopped no longer listens.
                let _ = sender.send(Ok(object.clone())).await;
            }
        }
    }
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

/// One connector controller per watched scope; each hears every watched PolicyAccess (a
/// reference may cross namespaces) and, opted in, the Secrets of its own scope.
fn connector_controllers(
    client: &Client,
    settings: &ControllerSettings,
    lists: &InitialLists,
    accesses: &mut [SharedWatch<PolicyAccess>],
) -> Vec<Controller<ExpensifyConnector>> {
    let config = controller::Config::default().debounce(settings.debounce);
    let watch_config = watcher::Config::default().any_semantic();
    let mut controllers = Vec::new();
    for connectors_api in settings.scope.apis::<ExpensifyConnector>(client) {
        let mut connectors = cached_controller(connectors_api.clone(), watch_config.clone(), lists)
            .with_config(config.clone());
        let store = connectors.store();
        for access_watch in accesses.iter_mut() {
            connectors = connectors.watches_stream(access_watch.triggers(), |pa| {
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
    let mut access_watches = access_watches(&client, &settings, &lists);
    let connectors = connector_controllers(&client, &settings, &lists, &mut access_watches);
    let accesses = access_controllers(&settings, &mut access_watches);
    let caches = Caches::new(
        connectors.iter().map(Controller::store).collect(),
        access_watches.iter().map(|w| w.reader.clone()).collect(),
        lists.listed(),
    );
    let watch_drivers = access_watches.into_iter().map(|w| w.driver).collect();
    let ctx = Arc::new(Context::new(
        leadership::guarded_client(client.clone(), leadership.clone()),
        expensify,
        Recorder::new(client.clone(), reporter),
        metrics,
        leadership,
        caches,
    ));
    let controllers = running(watch_drivers, connectors, accesses, &ctx, &stop_rx);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PolicyAccessSpec;

    fn access(name: &str, version: &str) -> PolicyAccess {
        let spec: PolicyAccessSpec = serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"}, "policy": {"id": "P1"}, "members": []
        }))
        .unwrap();
        let mut object = PolicyAccess::new(name, spec);
        object.metadata.namespace = Some("finance".into());
        object.metadata.resource_version = Some(version.into());
        object
    }

    fn names(objects: &[PolicyAccess]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                format!(
                    "{}@{}",
                    o.name_any(),
                    o.resource_version().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn a_relist_triggers_only_once_the_store_holds_all_of_it() {
        let mut relisted = Vec::new();
        assert!(touched(watcher::Event::Init, &mut relisted).is_empty());
        assert!(touched(watcher::Event::InitApply(access("a", "1")), &mut relisted).is_empty());
        assert!(touched(watcher::Event::InitApply(access("b", "1")), &mut relisted).is_empty());
        let listed = touched(watcher::Event::InitDone, &mut relisted);
        assert_eq!(names(&listed), ["a@1", "b@1"]);
        assert_eq!(
            names(&touched(
                watcher::Event::Apply(access("a", "2")),
                &mut relisted
            )),
            ["a@2"]
        );
        assert_eq!(
            names(&touched(
                watcher::Event::Delete(access("b", "3")),
                &mut relisted
            )),
            ["b@3"],
            "a deletion triggers too"
        );
    }

    #[tokio::test]
    async fn one_watch_triggers_every_controller_after_its_store_has_the_change() {
        let events = vec![
            watcher::Event::Init,
            watcher::Event::InitApply(access("a", "1")),
            watcher::Event::InitDone,
            watcher::Event::Apply(access("a", "2")),
            watcher::Event::Delete(access("a", "3")),
        ];
        let (reader, writer) = reflector::store();
        let store = reader.clone();
        // What the store showed when each event left the reflector.
        let seen_by_store = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen_by_store.clone();
        let stream = reflector(
            writer,
            futures::stream::iter(events.into_iter().map(Ok::<_, watcher::Error>)),
        )
        .inspect_ok(move |_| {
            let shown = store
                .get(&ObjectRef::new("a").within("finance"))
                .and_then(|a| a.resource_version());
            record.lock().unwrap().push(shown);
        });
        let (first_tx, first) = futures::channel::mpsc::channel(TRIGGER_BUFFER);
        let (second_tx, second) = futures::channel::mpsc::channel(TRIGGER_BUFFER);
        fan_out(stream, vec![first_tx, second_tx]).await;
        for triggers in [first, second] {
            let received: Vec<PolicyAccess> =
                triggers.map(Result::unwrap).collect::<Vec<_>>().await;
            assert_eq!(names(&received), ["a@1", "a@2", "a@3"]);
        }
        let shown = seen_by_store.lock().unwrap().clone();
        // Init, InitApply (not yet in the store), InitDone, Apply, Delete.
        assert_eq!(
            shown,
            [None, None, Some("1".into()), Some("2".into()), None]
        );
        assert!(reader.is_empty(), "the deletion reached the store");
    }
}
