//! A Kubernetes API server double for the controller's end-to-end tests and benchmark:
//! list and watch (with resourceVersion), get, create, merge patches, server-side apply of
//! the status subresource, finalizers and deletionTimestamp, for the kinds the controller
//! uses (ExpensifyConnector, PolicyAccess, Secret incl. metadata-only, Event). In memory,
//! on 127.0.0.1. Deliberately small: it is strict about what the controller sends and
//! answers what a real API server would, not every API server feature.
//!
//! Faults a real API server has, on demand (the soak uses them): watch streams dropped,
//! history compacted (a watch from before it is answered `410 Gone`), status writes
//! failing at random.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::Timestamp;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

/// A kind the double serves: (group path prefix, plural, Kind, has status subresource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Connector,
    Access,
    Request,
    Decision,
    Secret,
    Event,
    Lease,
}

impl Kind {
    fn from_path(prefix: &str, plural: &str) -> Option<Kind> {
        match (prefix, plural) {
            ("/apis/expensify.gitops.dev/v1alpha1", "expensifyconnectors") => Some(Kind::Connector),
            ("/apis/expensify.gitops.dev/v1alpha1", "policyaccesses") => Some(Kind::Access),
            ("/apis/expensify.gitops.dev/v1alpha1", "accessrequests") => Some(Kind::Request),
            ("/apis/expensify.gitops.dev/v1alpha1", "accessdecisions") => Some(Kind::Decision),
            ("/api/v1", "secrets") => Some(Kind::Secret),
            ("/apis/events.k8s.io/v1", "events") => Some(Kind::Event),
            ("/apis/coordination.k8s.io/v1", "leases") => Some(Kind::Lease),
            _ => None,
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::Connector | Kind::Access | Kind::Request | Kind::Decision => {
                "expensify.gitops.dev/v1alpha1"
            }
            Kind::Secret => "v1",
            Kind::Event => "events.k8s.io/v1",
            Kind::Lease => "coordination.k8s.io/v1",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Kind::Connector => "ExpensifyConnector",
            Kind::Access => "PolicyAccess",
            Kind::Request => "AccessRequest",
            Kind::Decision => "AccessDecision",
            Kind::Secret => "Secret",
            Kind::Event => "Event",
            Kind::Lease => "Lease",
        }
    }
}

type Key = (Kind, String, String);

#[derive(Default)]
struct Store {
    resource_version: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change, for watches that start from an older resourceVersion.
    log: Vec<(u64, Kind, &'static str, Value)>,
    events: Vec<Value>,
    /// Server-side apply ownership of a Lease's holderIdentity: lease key -> field manager.
    lease_holders: BTreeMap<Key, String>,
    requests: u64,
    status_writes: u64,
    /// `(method, path?query)` of every request, in order.
    seen: Vec<(String, String)>,
    /// Lease writes answered 503, as when this replica cannot reach the API server.
    refuse_lease_writes: bool,
    /// Watches from a resourceVersion below this are answered `410 Gone` (etcd compacted).
    compacted_below: u64,
    /// Status writes answered 500 with this probability, drawn from this seeded source.
    status_failures: Option<(f64, SmallRng)>,
    faults: FaultCounts,
    /// When set, objects created are stamped with this time instead of now (a test that
    /// needs an object older than it can wait for, as a cluster restored from a backup has).
    created_at: Option<Timestamp>,
}

/// The faults the double has injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Open watch streams ended by [`ApiServerDouble::drop_watches`].
    pub watches_dropped: u64,
    /// Watches answered `410 Gone` (their resourceVersion was compacted).
    pub watches_gone: u64,
    /// Status writes answered 500.
    pub status_writes_failed: u64,
}

/// The double; dropped, it stops serving.
pub struct ApiServerDouble {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    changes: broadcast::Sender<(u64, Kind, &'static str, Value)>,
    /// Bumped to end every open watch stream.
    drops: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServerDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status_error(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "message": message, "code": code}),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(entries) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().expect("object");
            for (key, value) in entries {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn as_metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

impl Store {
    fn bump(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn record(
        &mut self,
        kind: Kind,
        kind_of_change: &'static str,
        object: Value,
    ) -> (u64, Kind, &'static str, Value) {
        let entry = (self.resource_version, kind, kind_of_change, object);
        self.log.push(entry.clone());
        entry
    }
}

impl ApiServerDouble {
    pub async fn start() -> ApiServerDouble {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Arc::new(Mutex::new(Store::default()));
        let (changes, _) = broadcast::channel(65_536);
        let (drops, _) = watch::channel(0);
        let (task_store, task_changes, task_drops) =
            (store.clone(), changes.clone(), drops.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (store, changes, drops) =
                    (task_store.clone(), task_changes.clone(), task_drops.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(request, store.clone(), changes.clone(), drops.subscribe())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ApiServerDouble {
            addr,
            store,
            changes,
            drops,
            task,
        }
    }

    /// A kube client for this double.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// The object as stored, if any.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.store
            .lock()
            .unwrap()
            .objects
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Events published so far.
    pub fn events(&self) -> Vec<Value> {
        self.store.lock().unwrap().events.clone()
    }

    /// `(method, path?query)` of every request served so far.
    pub fn requests_seen(&self) -> Vec<(String, String)> {
        self.store.lock().unwrap().seen.clone()
    }

    /// While set, every write to a Lease fails (503): renewals cannot get through.
    pub fn refuse_lease_writes(&self, refuse: bool) {
        self.store.lock().unwrap().refuse_lease_writes = refuse;
    }

    /// Ends every watch stream open now, as an API server restart or an idle timeout on
    /// the way does; clients watch again from their last resourceVersion.
    pub fn drop_watches(&self) {
        let open = u64::try_from(self.drops.receiver_count()).unwrap_or(u64::MAX);
        self.store.lock().unwrap().faults.watches_dropped += open;
        self.drops.send_modify(|generation| *generation += 1);
    }

    /// Forgets the history so far, as etcd's compaction does: a watch from an older
    /// resourceVersion is answered `410 Gone` and the client has to list again.
    pub fn compact(&self) {
        let mut store = self.store.lock().unwrap();
        store.compacted_below = store.resource_version;
    }

    /// Answers each status write with a 500 with this probability (0 turns it off),
    /// drawn from `seed` so a run can be replayed.
    pub fn fail_status_writes(&self, probability: f64, seed: u64) {
        self.store.lock().unwrap().status_failures =
            (probability > 0.0).then(|| (probability.min(1.0), SmallRng::seed_from_u64(seed)));
    }

    /// Stamps every object created from now on `at` instead of the current time.
    pub fn stamp_creations_at(&self, at: Timestamp) {
        self.store.lock().unwrap().created_at = Some(at);
    }

    /// The faults injected so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.store.lock().unwrap().faults
    }

    /// Every object of `kind` stored now.
    pub fn list(&self, kind: Kind) -> Vec<Value> {
        self.store
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|((k, _, _), _)| *k == kind)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Requests served and status writes made, for the benchmark.
    pub fn counts(&self) -> (u64, u64) {
        let store = self.store.lock().unwrap();
        (store.requests, store.status_writes)
    }
}

/// The current time in whole seconds, as the API server writes timestamps.
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

fn reply(code: u16, body: &Value) -> Reply {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

async fn handle(
    request: Request<Incoming>,
    store: Arc<Mutex<Store>>,
    changes: broadcast::Sender<(u64, Kind, &'static str, Value)>,
    mut drops: watch::Receiver<u64>,
) -> Result<Reply, Infallible> {
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let path = request.uri().path().to_string();
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let metadata_only = request
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadata"));
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    {
        let mut store = store.lock().unwrap();
        store.requests += 1;
        store.seen.push((method.to_string(), uri));
    }

    // /api/v1/... or /apis/<group>/<version>/..., then [namespaces/<ns>/]<plural>[/<name>[/status]]
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match segments.first() {
        Some(&"api") if segments.len() >= 2 => (format!("/api/{}", segments[1]), &segments[2..]),
        Some(&"apis") if segments.len() >= 3 => (
            format!("/apis/{}/{}", segments[1], segments[2]),
            &segments[3..],
        ),
        _ => {
            return Ok(reply(
                404,
                &status_error(404, "NotFound", &format!("no route {path}")).1,
            ));
        }
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => {
            return Ok(reply(
                404,
                &status_error(404, "NotFound", &format!("no route {path}")).1,
            ));
        }
    };
    let Some(kind) = Kind::from_path(&prefix, plural) else {
        return Ok(reply(
            404,
            &status_error(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            )
            .1,
        ));
    };

    if method == Method::GET
        && name.is_none()
        && query.get("watch").is_some_and(|w| w == "true" || w == "1")
    {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let receiver = changes.subscribe();
        let mut locked = store.lock().unwrap();
        if from != 0 && from < locked.compacted_below {
            // What a real API server sends: one ERROR event, then the end of the stream.
            locked.faults.watches_gone += 1;
            let (_, gone) = status_error(
                410,
                "Expired",
                &format!(
                    "too old resource version: {from} ({})",
                    locked.compacted_below
                ),
            );
            let line = format!("{}\n", json!({"type": "ERROR", "object": gone}));
            return Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(line)).boxed())
                .unwrap());
        }
        let backlog: Vec<(u64, Kind, &'static str, Value)> = locked
            .log
            .iter()
            .filter(|(rv, k, _, _)| *rv > from && *k == kind)
            .cloned()
            .collect();
        drop(locked);
        // Only drops from now on end this stream.
        drops.borrow_and_update();
        let last_backlog = backlog.last().map_or(from, |(rv, ..)| *rv);
        let namespace_filter = namespace.clone();
        let to_line =
            move |(_, k, type_, object): (u64, Kind, &'static str, Value)| -> Option<Bytes> {
                if k != kind {
                    return None;
                }
                if let Some(ns) = &namespace_filter
                    && object["metadata"]["namespace"].as_str() != Some(ns)
                {
                    return None;
                }
                let object = if metadata_only {
                    as_metadata_only(&object)
                } else {
                    object
                };
                Some(Bytes::from(format!(
                    "{}\n",
                    json!({"type": type_, "object": object})
                )))
            };
        let to_line_live = to_line.clone();
        let backlog_stream = futures::stream::iter(backlog.into_iter().filter_map(to_line));
        let live = futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(change) => return Some((change, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |(rv, ..)| std::future::ready(*rv > last_backlog))
        .filter_map(move |change| std::future::ready(to_line_live(change)));
        let dropped = async move {
            let _ = drops.changed().await;
        };
        let stream = backlog_stream
            .chain(live)
            .take_until(dropped)
            .map(|line| Ok::<_, Infallible>(Frame::data(line)));
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap());
    }

    let mut guard = store.lock().unwrap();
    let store = &mut *guard;
    if kind == Kind::Lease && method != Method::GET && store.refuse_lease_writes {
        let (c, v) = status_error(503, "ServiceUnavailable", "lease writes refused");
        return Ok(reply(c, &v));
    }
    let (code, value, change) = match (method.clone(), name.clone(), subresource.as_deref()) {
        (Method::GET, None, None) => {
            let items: Vec<Value> = store
                .objects
                .iter()
                .filter(|((k, ns, _), _)| *k == kind && namespace.as_ref().is_none_or(|n| n == ns))
                .map(|(_, o)| {
                    if metadata_only {
                        as_metadata_only(o)
                    } else {
                        o.clone()
                    }
                })
                .collect();
            let (api_version, list_kind) = if metadata_only {
                (
                    "meta.k8s.io/v1".to_string(),
                    "PartialObjectMetadataList".to_string(),
                )
            } else {
                (
                    kind.api_version().to_string(),
                    format!("{}List", kind.kind()),
                )
            };
            (
                200,
                json!({"apiVersion": api_version, "kind": list_kind, "metadata": {"resourceVersion": store.resource_version.to_string()}, "items": items}),
                None,
            )
        }
        (Method::GET, Some(name), None) => {
            if let Some(object) =
                store
                    .objects
                    .get(&(kind, namespace.clone().unwrap_or_default(), name.clone()))
            {
                (200, object.clone(), None)
            } else {
                let (c, v) =
                    status_error(404, "NotFound", &format!("{plural} \"{name}\" not found"));
                (c, v, None)
            }
        }
        (Method::POST, None, None) => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                let (c, v) = status_error(400, "BadRequest", "body is not JSON");
                return Ok(reply(c, &v));
            };
            let ns = namespace.clone().unwrap_or_default();
            let object_name = object["metadata"]["name"].as_str().map_or_else(
                || {
                    let generated = format!(
                        "{}{}",
                        object["metadata"]["generateName"]
                            .as_str()
                            .unwrap_or("object-"),
                        store.resource_version + 1
                    );
                    generated
                },
                str::to_string,
            );
            if kind == Kind::Event {
                store.events.push(object.clone());
            }
            let key = (kind, ns.clone(), object_name.clone());
            if store.objects.contains_key(&key) {
                let (c, v) = status_error(
                    409,
                    "AlreadyExists",
                    &format!("{plural} \"{object_name}\" already exists"),
                );
                return Ok(reply(c, &v));
            }
            let rv = store.bump();
            let meta = &mut object["metadata"];
            meta["name"] = json!(object_name);
            meta["namespace"] = json!(ns);
            meta["uid"] = json!(format!("uid-{rv}"));
            meta["resourceVersion"] = json!(rv.to_string());
            meta["generation"] = json!(1);
            // As the API server: the server's clock, whole seconds; what the client sent
            // is ignored.
            meta["creationTimestamp"] = json!(store.created_at.unwrap_or_else(now).to_string());
            object["apiVersion"] = json!(kind.api_version());
            object["kind"] = json!(kind.kind());
            store.objects.insert(key, object.clone());
            let change = store.record(kind, "ADDED", object.clone());
            (201, object, Some(change))
        }
        (Method::PATCH, Some(name), sub) => {
            let key = (kind, namespace.clone().unwrap_or_default(), name.clone());
            let Some(current) = store.objects.get(&key).cloned() else {
                let (c, v) =
                    status_error(404, "NotFound", &format!("{plural} \"{name}\" not found"));
                return Ok(reply(c, &v));
            };
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                let (c, v) = status_error(400, "BadRequest", "patch is not JSON");
                return Ok(reply(c, &v));
            };
            // Preconditions, as the API server checks them for any update.
            for (field, what) in [("resourceVersion", "resourceVersion"), ("uid", "UID")] {
                if let Some(expected) = patch["metadata"][field].as_str()
                    && current["metadata"][field].as_str() != Some(expected)
                {
                    let (c, v) = status_error(
                        409,
                        "Conflict",
                        &format!("the object has been modified; {what} {expected} is stale"),
                    );
                    return Ok(reply(c, &v));
                }
            }
            let mut next = current.clone();
            if sub == Some("status") {
                if !content_type.starts_with("application/apply-patch")
                    && !content_type.starts_with("application/merge-patch")
                {
                    let (c, v) = status_error(415, "UnsupportedMediaType", &content_type);
                    return Ok(reply(c, &v));
                }
                if let Some((probability, rng)) = store.status_failures.as_mut()
                    && rng.random_bool(*probability)
                {
                    store.faults.status_writes_failed += 1;
                    let (c, v) =
                        status_error(500, "InternalError", "etcdserver: request timed out");
                    return Ok(reply(c, &v));
                }
                next["status"] = patch["status"].clone();
                store.status_writes += 1;
            } else {
                if kind == Kind::Lease && patch["spec"].get("holderIdentity").is_some() {
                    // Server-side apply ownership: a non-forced apply may not take a field
                    // another manager owns (what makes lease locking safe).
                    let manager = query.get("fieldManager").cloned().unwrap_or_default();
                    let apply = content_type.starts_with("application/apply-patch");
                    let forced = query.get("force").is_some_and(|f| f == "true");
                    let owner = store.lease_holders.get(&key).cloned();
                    let held = current["spec"]["holderIdentity"].is_string();
                    if apply && !forced && held && owner.as_ref().is_some_and(|o| *o != manager) {
                        let (c, v) = status_error(
                            409,
                            "Conflict",
                            &format!(
                                "Apply failed with 1 conflict: conflict with \"{}\": .spec.holderIdentity",
                                owner.unwrap_or_default()
                            ),
                        );
                        return Ok(reply(c, &v));
                    }
                    store.lease_holders.insert(key.clone(), manager);
                }
                let mut patch = patch.clone();
                if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                    meta.remove("uid");
                }
                if let Some(object) = patch.as_object_mut() {
                    object.remove("status");
                }
                merge(&mut next, &patch);
                if next["spec"] != current["spec"] || next["data"] != current["data"] {
                    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                    next["metadata"]["generation"] = json!(generation);
                }
            }
            let rv = store.bump();
            next["metadata"]["resourceVersion"] = json!(rv.to_string());
            let finalizers_empty = next["metadata"]["finalizers"]
                .as_array()
                .is_none_or(std::vec::Vec::is_empty);
            if next["metadata"]["deletionTimestamp"].is_string() && finalizers_empty {
                store.objects.remove(&key);
                let change = store.record(kind, "DELETED", next.clone());
                (200, next, Some(change))
            } else {
                store.objects.insert(key, next.clone());
                let change = store.record(kind, "MODIFIED", next.clone());
                (200, next, Some(change))
            }
        }
        (Method::DELETE, Some(name), None) => {
            let key = (kind, namespace.clone().unwrap_or_default(), name.clone());
            let Some(mut current) = store.objects.get(&key).cloned() else {
                let (c, v) =
                    status_error(404, "NotFound", &format!("{plural} \"{name}\" not found"));
                return Ok(reply(c, &v));
            };
            let rv = store.bump();
            current["metadata"]["resourceVersion"] = json!(rv.to_string());
            if current["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
            {
                current["metadata"]["deletionTimestamp"] = json!(now().to_string());
                store.objects.insert(key, current.clone());
                let change = store.record(kind, "MODIFIED", current.clone());
                (200, current, Some(change))
            } else {
                store.objects.remove(&key);
                let change = store.record(kind, "DELETED", current.clone());
                (200, current, Some(change))
            }
        }
        _ => {
            let (c, v) = status_error(405, "MethodNotAllowed", &format!("{method} {path}"));
            (c, v, None)
        }
    };
    if let Some(change) = change {
        let _ = changes.send(change);
    }
    drop(guard);
    Ok(reply(code, &value))
}
