//! Cluster mode against the API server double: the binary as the chart runs it (the
//! Deployment's own arguments, read from the rendered `manifests/install.yaml`) turns ready;
//! a replica that loses the Lease mid-sync writes nothing more.

mod support;
use support::apiserver;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use expensify_operator::cluster::{self, ControllerSettings, LeaseSettings};
use expensify_operator::expensify::ExpensifyClients;
use expensify_operator::simulator::FaultConfig;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_expensify-operator");

/// The controller container's arguments in the rendered chart.
fn chart_args() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/install.yaml"
    ))
    .unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let deployment = documents
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the container has args");
    args.iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A kubeconfig pointing at the double.
fn kubeconfig(dir: &std::path::Path, double: &apiserver::ApiServerDouble) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"http://{}\"}}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context: {{cluster: double, user: test, namespace: default}}\ncurrent-context: test\n",
            double.addr
        ),
    )
    .unwrap();
    path
}

/// Creates the credentials Secret, the connector and one PolicyAccess through the API.
async fn create_objects(client: &kube::Client, endpoint: &str) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let post = |path: &'static str, body: Value| {
        let client = client.clone();
        async move {
            let request = http::Request::post(path)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
            client.request::<Value>(request).await.unwrap();
        }
    };
    post(
        "/api/v1/namespaces/finance/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "expensify-credentials", "namespace": "finance"},
            "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(ADMIN_SECRET)}}),
    )
    .await;
    post(
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/expensifyconnectors",
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
            "metadata": {"name": "acme", "namespace": "finance"},
            "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "endpoint": endpoint, "adminEmail": "it-admin@acme.example"}}),
    )
    .await;
    post(
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/policyaccesses",
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
            "metadata": {"name": "team", "namespace": "finance"},
            "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": FINANCE}, "members": [{"email": "new@acme.example"}]}}),
    )
    .await;
}

async fn probe(port: u16, path: &str) -> Option<u16> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// `helm install --wait` needs `/readyz` to turn 200: with the chart's arguments it must,
/// soon after the watches have listed and the first sync has run.
#[tokio::test(flavor = "multi_thread")]
async fn the_chart_s_pod_becomes_ready() {
    let double = apiserver::ApiServerDouble::start().await;
    let sim = start(&unlimited_seed()).await;
    create_objects(&double.client(), &sim.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args: Vec<String> = chart_args()
        .into_iter()
        .map(|arg| {
            if arg.starts_with("--probes-addr=") {
                format!("--probes-addr=127.0.0.1:{port}")
            } else {
                arg
            }
        })
        .collect();
    assert_eq!(args[0], "controller");
    let mut controller = tokio::process::Command::new(BIN)
        .args(&args)
        .env("KUBECONFIG", kubeconfig(dir.path(), &double))
        .env("POD_NAME", "expensify-operator-0")
        .env("POD_NAMESPACE", "expensify-system")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The first sync: the connector's status is written (whatever it says).
    let started = Instant::now();
    while double
        .get(apiserver::Kind::Connector, "finance", "acme")
        .is_none_or(|c| c["status"]["phase"].is_null())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no first sync within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(probe(port, "/healthz").await, Some(200));
    let synced = Instant::now();
    while probe(port, "/readyz").await != Some(200) {
        assert!(
            synced.elapsed() < Duration::from_secs(2),
            "/readyz still answers {:?} 2 s after the first sync",
            probe(port, "/readyz").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.kill().await.unwrap();
}

/// Readiness waits for every watched namespace's connector watch, and needs no connector
/// (nor any sync) at all. Each namespace's PolicyAccess objects are watched once.
#[tokio::test(flavor = "multi_thread")]
async fn ready_once_every_namespace_is_listed_even_with_nothing_to_sync() {
    let double = apiserver::ApiServerDouble::start().await;
    let port = free_port();
    let settings = ControllerSettings {
        probes_addr: format!("127.0.0.1:{port}").parse().unwrap(),
        lease: None,
        debounce: Duration::from_millis(100),
        scope: cluster::Scope::Namespaces(vec!["finance".into(), "sales".into()]),
        watch_secrets: false,
        admission: Default::default(),
        allowed_webhooks: None,
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(cluster::run(
        double.client(),
        settings,
        Arc::new(ExpensifyClients::new(test_settings()).unwrap()),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let started = Instant::now();
    while probe(port, "/readyz").await != Some(200) {
        assert!(
            // A bound for a loaded CI machine, not a timing target: the double lists at once.
            started.elapsed() < Duration::from_secs(20),
            "not ready 20 s after start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One PolicyAccess watch per namespace, shared by the PolicyAccess controller and both
    // connector controllers: their triggers never run ahead of the cache syncs read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for namespace in ["finance", "sales"] {
        let path =
            format!("/apis/expensify.gitops.dev/v1alpha1/namespaces/{namespace}/policyaccesses?");
        let watches = double
            .requests_seen()
            .iter()
            .filter(|(method, uri)| {
                method == "GET" && uri.starts_with(&path) && uri.contains("watch=true")
            })
            .count();
        assert_eq!(watches, 1, "PolicyAccess watches in {namespace}");
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("the controller stops")
        .unwrap()
        .unwrap();
}

/// The metadata.resourceVersion of an object in the double: any write changes it.
fn version(double: &apiserver::ApiServerDouble, kind: apiserver::Kind, name: &str) -> String {
    double.get(kind, "finance", name).unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lease_holder(double: &apiserver::ApiServerDouble) -> Option<String> {
    double
        .get(apiserver::Kind::Lease, "default", "expensify-operator")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Replica `replica-a` (a 2 s Lease) leading over the double and the simulator, after its
/// first sync, in the middle of a second sync that waits on a slow Expensify (2.5 s a call).
struct SyncInFlight {
    double: apiserver::ApiServerDouble,
    sim: expensify_operator::simulator::SimulatorHandle,
    stop: tokio::sync::oneshot::Sender<()>,
    controller: tokio::task::JoinHandle<Result<(), cluster::RunControllerError>>,
}

impl SyncInFlight {
    async fn start() -> SyncInFlight {
        let double = apiserver::ApiServerDouble::start().await;
        let client = double.client();
        let sim = start(&unlimited_seed()).await;
        let settings = ControllerSettings {
            probes_addr: "127.0.0.1:0".parse().unwrap(),
            lease: Some(LeaseSettings {
                name: "expensify-operator".into(),
                namespace: "default".into(),
                identity: "replica-a".into(),
                duration: Duration::from_secs(2),
            }),
            debounce: Duration::from_millis(100),
            scope: cluster::Scope::AllNamespaces,
            watch_secrets: false,
            admission: Default::default(),
            allowed_webhooks: None,
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(cluster::run(
            client.clone(),
            settings,
            Arc::new(ExpensifyClients::new(sim_settings(&sim)).unwrap()),
            async move {
                let _ = stop_rx.await;
            },
        ));
        until("replica-a to hold the lease", || {
            lease_holder(&double).as_deref() == Some("replica-a")
        })
        .await;
        create_objects(&client, &sim.endpoint()).await;
        until("the first sync", || {
            double
                .get(apiserver::Kind::Access, "finance", "team")
                .is_some_and(|a| a["status"]["phase"] == "Synced")
        })
        .await;

        sim.state().set_faults(FaultConfig {
            latency_ms: 2500,
            ..FaultConfig::default()
        });
        let before_edit = sim.state().counters().requests;
        edit_members(&client, &["new@acme.example", "late@acme.example"]).await;
        until("the sync to wait on Expensify", || {
            sim.state().counters().requests > before_edit
        })
        .await;
        SyncInFlight {
            double,
            sim,
            stop,
            controller,
        }
    }

    /// Lets the call in flight outlast the end of the term (at most 1.1 s after a takeover,
    /// 1.6 s after the last renewal), lets the rest of the sync run fast and waits until it
    /// is over (Expensify quiet for a second), then checks neither object was written since
    /// `versions` were taken.
    async fn assert_no_write_since(&self, versions: (String, String), why: &str) {
        tokio::time::sleep(Duration::from_millis(1700)).await;
        self.sim.state().set_faults(FaultConfig::default());
        let requests = || self.sim.state().counters().requests;
        let mut last = (requests(), Instant::now());
        while last.1.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if requests() != last.0 {
                last = (requests(), Instant::now());
            }
        }
        assert_eq!(
            version(&self.double, apiserver::Kind::Access, "team"),
            versions.0,
            "the PolicyAccess was written after {why}: {}",
            self.double
                .get(apiserver::Kind::Access, "finance", "team")
                .unwrap()["status"]
        );
        assert_eq!(
            version(&self.double, apiserver::Kind::Connector, "acme"),
            versions.1,
            "the connector was written after {why}"
        );
        // Nor Expensify: the grant the edit asked for was never sent.
        let people = roster(&self.sim, FINANCE);
        assert!(
            !people.iter().any(|(e, _)| e == "late@acme.example"),
            "Expensify was written after {why}: {people:?}"
        );
    }

    fn versions(&self) -> (String, String) {
        (
            version(&self.double, apiserver::Kind::Access, "team"),
            version(&self.double, apiserver::Kind::Connector, "acme"),
        )
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.controller)
            .await
            .expect("the controller stops")
            .unwrap()
            .unwrap();
    }
}

async fn edit_members(client: &kube::Client, emails: &[&str]) {
    let members: Vec<Value> = emails.iter().map(|e| json!({"email": e})).collect();
    Api::<expensify_operator::api::PolicyAccess>::namespaced(client.clone(), "finance")
        .patch(
            "team",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"members": members}})),
        )
        .await
        .unwrap();
}

/// Another holder takes the Lease while the leader's sync waits on Expensify (between its
/// read and its write): from then on the old leader patches no status and no finalizer.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_loses_the_lease_mid_sync_writes_no_more() {
    let sync = SyncInFlight::start().await;
    // Another replica takes the Lease (a forced server-side apply) and keeps renewing it.
    let leases = Api::<Lease>::namespaced(sync.double.client(), "default");
    let take = move || {
        let leases = leases.clone();
        async move {
            let now = format!("{:.6}", k8s_openapi::jiff::Timestamp::now());
            let taken: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "expensify-operator", "namespace": "default"},
                "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
                         "acquireTime": now, "renewTime": now}
            }))
            .unwrap();
            leases
                .patch(
                    "expensify-operator",
                    &PatchParams::apply("intruder").force(),
                    &Patch::Apply(&taken),
                )
                .await
                .unwrap();
        }
    };
    take().await;
    let intruder = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            take().await;
        }
    });
    let versions = sync.versions();
    sync.assert_no_write_since(versions, "the lease was lost")
        .await;
    intruder.abort();
    assert_eq!(lease_holder(&sync.double).as_deref(), Some("intruder"));
    sync.stop().await;
}

/// The leader cannot renew its Lease (the API server refuses the writes, as for a replica
/// cut off from it): past the renewal deadline it writes nothing, even though the lease
/// manager never saw another holder. (That a renewal after the deadline starts a new term
/// is a unit test of `LeaseRenewals`: here it would wait out the lease manager's backoff.)
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_cannot_renew_stops_writing_at_the_deadline() {
    let sync = SyncInFlight::start().await;
    sync.double.refuse_lease_writes(true);
    // The last renewal may have just got through: the deadline is at most 1.6 s away, and
    // the sync's Expensify call returns 2.5 s after it began.
    let versions = sync.versions();
    sync.assert_no_write_since(versions, "the renewal deadline")
        .await;
    // Let the lease be released on the way out.
    sync.double.refuse_lease_writes(false);
    sync.stop().await;
}
