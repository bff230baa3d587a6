//! The controller binary as the chart runs it (the Deployment's own arguments, read from
//! the rendered `manifests/install.yaml`), against the API server double: its probes.

#[path = "support/apiserver.rs"]
mod apiserver;
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{Value, json};

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
