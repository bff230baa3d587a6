//! The watches: one per kind and scope, each with the reflector store syncs read from,
//! readiness from their first complete lists, and the PolicyAccess watch shared by every
//! controller it triggers (each trigger sent once the store shows the change).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tracing::{info, warn};

use super::server::Readiness;

/// Readiness from the watches' own streams: each reports its first complete list
/// (`InitDone`) once, and the last of them makes the replica ready and lets syncs read
/// the caches. Awaiting a store's `wait_until_ready` instead competes with the
/// controller, which awaits the same one-waker future: only one of the two is ever
/// woken, and readiness never came.
#[derive(Clone)]
pub(super) struct InitialLists {
    pending: Arc<AtomicUsize>,
    readiness: Arc<Readiness>,
    listed: Arc<watch::Sender<bool>>,
}

impl InitialLists {
    pub(super) fn new(watches: usize, readiness: Arc<Readiness>) -> Self {
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
    pub(super) fn listed(&self) -> watch::Receiver<bool> {
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
pub(super) trait Watched:
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
pub(super) fn cached_controller<K: Watched>(
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
pub(super) type Triggers<K> = futures::channel::mpsc::Receiver<Result<K, watcher::Error>>;

/// One watch of a kind in one scope, shared by every controller it triggers: its store is
/// the cache syncs read, and each object it touches reaches every controller only after
/// the store shows it. (With a watch per controller, a sync triggered by one could read a
/// cache fed by another that had not seen the change yet, and wait for the next trigger.)
pub(super) struct SharedWatch<K: Watched> {
    pub reader: reflector::Store<K>,
    triggers: Vec<Triggers<K>>,
    /// Drives the watch and hands out the triggers; run it beside the controllers.
    pub driver: BoxFuture<'static, ()>,
}

impl<K: Watched> SharedWatch<K> {
    /// A watch that triggers `controllers` controllers.
    pub(super) fn new(
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
    pub(super) fn triggers(&mut self) -> Triggers<K> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PolicyAccess, PolicyAccessSpec};
    use kube::ResourceExt;
    use kube::runtime::reflector::ObjectRef;

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
