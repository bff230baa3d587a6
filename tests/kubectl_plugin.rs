//! The binary as the kubectl plugin (`kubectl-expensify`, found by its file name), against
//! the API server double: `reconcile` annotates, `suspend` and `resume` patch
//! `spec.suspend`, and the controller syncs on the annotation.

mod support;
use support::apiserver::{ApiServerDouble, Kind};

use std::process::Output;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_expensify-operator");

/// A directory holding `kubectl-expensify` (a symlink to the binary, as krew installs it)
/// and a kubeconfig whose context is the double, namespace `finance`.
struct Plugin {
    dir: tempfile::TempDir,
}

impl Plugin {
    fn new(double: &ApiServerDouble) -> Self {
        Self::at(double.addr)
    }

    /// A plugin whose kubeconfig names the API server at `addr`.
    fn at(addr: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(BIN, dir.path().join("kubectl-expensify")).unwrap();
        std::fs::write(
            dir.path().join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"http://{addr}\"}}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context: {{cluster: double, user: test, namespace: finance}}\ncurrent-context: test\n"
            ),
        )
        .unwrap();
        Plugin { dir }
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(self.dir.path().join("kubectl-expensify"))
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    }
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn create(client: &kube::Client, path: &str, body: Value) {
    let request = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    client.request::<Value>(request).await.unwrap();
}

/// A connector `finance/acme` and a PolicyAccess `finance/team`.
async fn objects(double: &ApiServerDouble) {
    let client = double.client();
    create(
        &client,
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/expensifyconnectors",
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
            "metadata": {"name": "acme", "namespace": "finance"},
            "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "adminEmail": "it-admin@acme.example"}}),
    )
    .await;
    create(
        &client,
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/policyaccesses",
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
            "metadata": {"name": "team", "namespace": "finance"},
            "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": "F1E2D3C4B5A69788"}, "members": [{"email": "new@acme.example"}]}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_annotates_the_object_for_a_sync_now() {
    let double = ApiServerDouble::start().await;
    objects(&double).await;
    let plugin = Plugin::new(&double);

    let output = plugin.run(&["reconcile", "connector", "acme"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let connector = double.get(Kind::Connector, "finance", "acme").unwrap();
    let requested =
        connector["metadata"]["annotations"]["expensify.gitops.dev/reconcile-requested-at"]
            .as_str()
            .unwrap_or_else(|| panic!("annotated: {connector}"))
            .to_string();
    assert!(
        requested.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "{requested}"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "ExpensifyConnector finance/acme: sync requested (expensify.gitops.dev/reconcile-requested-at={requested})\n"
        )
    );
    assert_eq!(
        connector["spec"]["adminEmail"], "it-admin@acme.example",
        "nothing else changed"
    );

    let output = plugin
        .run(&["reconcile", "pa", "team", "-n", "finance"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    let access = double.get(Kind::Access, "finance", "team").unwrap();
    assert!(
        access["metadata"]["annotations"]["expensify.gitops.dev/reconcile-requested-at"]
            .is_string(),
        "{access}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_and_resume_patch_spec_suspend() {
    let double = ApiServerDouble::start().await;
    objects(&double).await;
    let plugin = Plugin::new(&double);

    let output = plugin.run(&["suspend", "policyaccess", "team"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "PolicyAccess finance/team: suspended\n"
    );
    let access = double.get(Kind::Access, "finance", "team").unwrap();
    assert_eq!(access["spec"]["suspend"], true);
    assert_eq!(access["spec"]["members"][0]["email"], "new@acme.example");

    let output = plugin.run(&["resume", "policyaccess", "team"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert_eq!(
        double.get(Kind::Access, "finance", "team").unwrap()["spec"]["suspend"],
        false
    );

    let output = plugin.run(&["suspend", "connector", "acme"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", said(&output));
    assert_eq!(
        double.get(Kind::Connector, "finance", "acme").unwrap()["spec"]["suspend"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_object_or_namespace_is_named() {
    let double = ApiServerDouble::start().await;
    objects(&double).await;
    let plugin = Plugin::new(&double);

    let output = plugin
        .run(&["suspend", "connector", "acme", "-n", "sales"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("ExpensifyConnector sales/acme not found"),
        "{}",
        said(&output)
    );
    let output = plugin.run(&["resume", "deployment", "acme"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "a usage error: {}",
        said(&output)
    );
    assert!(
        said(&output).contains("possible values: connector, policyaccess"),
        "{}",
        said(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn under_its_own_name_the_binary_has_no_plugin_verbs() {
    let output = tokio::process::Command::new(BIN)
        .args(["suspend", "connector", "acme"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        said(&output).contains("unrecognized subcommand 'suspend'"),
        "{}",
        said(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_plans_the_cluster_objects_and_writes_nothing() {
    use base64::Engine;
    use support::{ADMIN_ID, ADMIN_SECRET, FINANCE, start, unlimited_seed, updates};
    let sim = start(&unlimited_seed()).await;
    let double = ApiServerDouble::start().await;
    let client = double.client();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    create(
        &client,
        "/api/v1/namespaces/finance/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "expensify-credentials", "namespace": "finance"},
            "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(ADMIN_SECRET)}}),
    )
    .await;
    create(
        &client,
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/expensifyconnectors",
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
            "metadata": {"name": "acme", "namespace": "finance"},
            "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "endpoint": sim.endpoint(), "adminEmail": "it-admin@acme.example"}}),
    )
    .await;
    create(
        &client,
        "/apis/expensify.gitops.dev/v1alpha1/namespaces/finance/policyaccesses",
        json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
            "metadata": {"name": "team", "namespace": "finance"},
            "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": FINANCE}, "members": [{"email": "new@acme.example", "role": "auditor"}]}}),
    )
    .await;
    let plugin = Plugin::new(&double);
    let writes_before = double
        .requests_seen()
        .iter()
        .filter(|(method, _)| method != "GET")
        .count();

    let output = plugin
        .run(&["diff", "--allowed-endpoints", &sim.endpoint()])
        .await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "changes pending: {}",
        said(&output)
    );
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("+ new@acme.example") && shown.contains("by finance/team"),
        "{shown}"
    );
    assert!(
        shown.contains("Plan: 1 to grant, 0 to change, 0 to revoke."),
        "{shown}"
    );
    assert_eq!(updates(&sim), 0, "no Expensify write");
    assert_eq!(
        double
            .requests_seen()
            .iter()
            .filter(|(method, _)| method != "GET")
            .count(),
        writes_before,
        "no cluster write: {:?}",
        double.requests_seen()
    );
    assert!(
        !said(&output).contains(ADMIN_SECRET),
        "the secret is never printed"
    );

    // Another namespace's connectors only with -A; none in `sales`.
    let none = plugin
        .run(&[
            "diff",
            "-n",
            "sales",
            "--allowed-endpoints",
            &sim.endpoint(),
        ])
        .await;
    assert_eq!(none.status.code(), Some(1), "{}", said(&none));
    assert!(
        said(&none).contains("no ExpensifyConnector in namespace sales"),
        "{}",
        said(&none)
    );
    let every = plugin
        .run(&[
            "diff",
            "-n",
            "sales",
            "-A",
            "--allowed-endpoints",
            &sim.endpoint(),
        ])
        .await;
    assert_eq!(every.status.code(), Some(2), "{}", said(&every));
}

/// The double behind a front that also serves the chart's identity admission policy and
/// its binding (from manifests/install.yaml), as a cluster where the chart installed them:
/// the double has no admissionregistration API. Returns the front's address.
async fn with_admission_policy(double: &ApiServerDouble) -> std::net::SocketAddr {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use support::requests::admission::documents;

    let mut served = std::collections::BTreeMap::new();
    for document in documents() {
        let plural = match document["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => "validatingadmissionpolicies",
            Some("ValidatingAdmissionPolicyBinding") => "validatingadmissionpolicybindings",
            _ => continue,
        };
        let name = document["metadata"]["name"].as_str().unwrap().to_string();
        served.insert(
            format!("/apis/admissionregistration.k8s.io/v1/{plural}/{name}"),
            serde_json::to_vec(&document).unwrap(),
        );
    }
    assert_eq!(served.len(), 2, "the policy and its binding: {served:?}");
    let served = std::sync::Arc::new(served);
    let backend = double.addr;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let served = served.clone();
                    async move {
                        if let Some(body) = served.get(request.uri().path()) {
                            return Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body.clone())))
                                    .unwrap(),
                            );
                        }
                        let target = format!(
                            "http://{backend}{}",
                            request.uri().path_and_query().map_or("", |p| p.as_str())
                        );
                        let method = request.method().clone();
                        let body = request.into_body().collect().await?.to_bytes();
                        let answer = reqwest::Client::new()
                            .request(method, target)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        let status = answer.status();
                        let body = answer.bytes().await.unwrap();
                        Ok(hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .unwrap())
                    }
                },
            );
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_plans_access_requests_as_the_controller_does() {
    use expensify_operator::api::{AccessRequest, PolicyAccess, RequestPhase};
    use support::requests::{
        Controller, access, create, create_connector, request, rules, wait_for_phase,
    };
    use support::{FINANCE, roster, start, unlimited_seed};
    let sim = start(&unlimited_seed()).await;
    let double = ApiServerDouble::start().await;
    let client = double.client();
    create_connector(&client, &sim).await;
    // Authoritative: everyone on Finance now is listed; anyone else is revoked unless an
    // Active request asks for them.
    let members: Vec<Value> = roster(&sim, FINANCE)
        .into_iter()
        .map(|(email, role)| json!({"email": email, "role": role}))
        .collect();
    let team = access("team")
        .set("mode", "Authoritative")
        .set("members", members)
        .rules(rules("8h").approvals(0).roles(&["user"]));
    create::<PolicyAccess>(&client, &team.json()).await;
    let controller = Controller::start(&double, &sim, Some(Ok(())));
    let henry = request("r1", "team", "henry@acme.example")
        .set("role", "user")
        .set("duration", "4h")
        .set("reason", "month end");
    create::<AccessRequest>(&client, &henry.json()).await;
    wait_for_phase(&client, "r1", RequestPhase::Active).await;
    support::requests::eventually("henry is granted", || async {
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "henry@acme.example")
    })
    .await;
    controller.stop().await;

    let endpoint = sim.endpoint();
    let diff = ["diff", "--allowed-endpoints", endpoint.as_str()];
    let plugin = Plugin::at(with_admission_policy(&double).await);
    let output = plugin.run(&diff).await;
    let shown = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(0), "in sync: {}", said(&output));
    assert!(
        !shown.contains("- henry@acme.example"),
        "not revoked: {shown}"
    );
    assert!(
        shown.contains("finance/r1: henry@acme.example asks user on"),
        "the request is listed: {shown}"
    );

    // A request over the rules' maxDuration (8h) can never be granted: diff fails.
    let night = request("r2", "team", "ivy@acme.example")
        .set("role", "user")
        .set("duration", "400h")
        .set("reason", "the whole night");
    create::<AccessRequest>(&client, &night.json()).await;
    let output = plugin.run(&diff).await;
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(said(&output).contains("spec.duration"), "{}", said(&output));

    // Without the identity policy the controller refuses every request: so does diff.
    let output = Plugin::new(&double).run(&diff).await;
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output)
            .contains("ValidatingAdmissionPolicy expensify-access-identity is not installed"),
        "{}",
        said(&output)
    );
}
