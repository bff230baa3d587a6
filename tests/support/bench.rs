//! What the end-to-end benchmarks share: a simulator in its own process, ports, memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use expensify_operator::api::{
    AccessMode, ConnectorRef, DeletionPolicy, ExpensifyConnectorSpec, MemberSpec, PolicyAccessSpec,
    PolicyAccessStatus, PolicySelector, SecretRef,
};
use expensify_operator::expensify::{PolicySummary, RosterEntry};
use expensify_operator::reconcile::{
    AccessObject, ConnectorObject, ObjectKey, Observed, PlanInput, Requests, Scope,
};
use k8s_openapi::jiff::Timestamp;

pub const BIN: &str = env!("CARGO_BIN_EXE_expensify-operator");

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Peak resident memory (VmHWM) of a process, in KiB; `self` for this one.
pub fn peak_rss_kib(pid: &str) -> u64 {
    memory_kib(pid, "VmHWM:")
}

/// Resident memory now (VmRSS) of a process, in KiB; `self` for this one.
pub fn rss_kib(pid: &str) -> u64 {
    memory_kib(pid, "VmRSS:")
}

/// A `/proc/PID/status` memory line (`VmHWM:`, `VmRSS:`), in KiB; 0 when unreadable.
fn memory_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Writes a simulator seed: one account (`id`, `secret`, admin@bench.example) and
/// `policies` policies with ids `<prefix><hex>`, each owned by owner@bench.example with
/// only the admin on it; no rate limits (the benchmarks measure calls, not pacing).
pub fn write_seed(path: &Path, id: &str, secret: &str, prefix: &str, policies: usize) {
    use std::fmt::Write as _;
    let mut seed = format!(
        "accounts:\n  - {{partnerUserID: {id}, partnerUserSecret: {secret}, email: admin@bench.example}}\nrateLimits: {{enabled: false}}\npolicies:\n"
    );
    for p in 0..policies {
        let _ = writeln!(
            seed,
            "  - {{id: \"{prefix}{p:014X}\", name: \"Policy {p}\", owner: owner@bench.example, employees: [{{email: admin@bench.example, role: admin}}]}}"
        );
    }
    std::fs::write(path, seed).expect("the seed is written");
}

/// Starts the simulator binary on `port` from `seed`.
pub fn spawn_simulator(seed: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args([
            "simulator",
            "--seed",
            seed.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts")
}

/// Waits until something listens on `port`.
pub async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// The planner's input for a [`planner_world`] at `now`: everything in scope, no requests.
pub fn world_input<'a>(
    connector: &'a ConnectorObject,
    accesses: &'a [AccessObject],
    observed: &'a Observed,
    now: Timestamp,
) -> PlanInput<'a> {
    PlanInput {
        connector,
        connectors: std::slice::from_ref(connector),
        accesses,
        observed,
        now,
        inventory_complete: true,
        scope: Scope::Everything,
        unverified: &[],
        requests: Requests::NONE,
    }
}

/// The planner's input for `policies` x `members` people: Expensify has half the desired
/// people, a few with another role, and three extras per policy; half the objects are
/// Authoritative.
pub fn planner_world(
    policies: usize,
    members: usize,
) -> (ConnectorObject, Vec<AccessObject>, Observed) {
    let connector = ConnectorObject {
        key: ObjectKey::new("bench", "acme"),
        generation: Some(1),
        annotations: BTreeMap::new(),
        spec: ExpensifyConnectorSpec {
            credentials_secret_ref: SecretRef {
                name: "creds".into(),
                user_id_key: "partnerUserID".into(),
                user_secret_key: "partnerUserSecret".into(),
            },
            endpoint: expensify_operator::expensify::DEFAULT_ENDPOINT.into(),
            admin_email: "admin@bench.example".into(),
            owners: Vec::new(),
            sync_interval: "10m".into(),
            max_revocations_per_sync: 100_000,
            protected_emails: vec![],
            allowed_namespaces: vec![],
            tenants: vec![],
            suspend: false,
            notifications: None,
        },
        status: None,
    };
    let mut observed = Observed::default();
    let mut accesses = Vec::new();
    for p in 0..policies {
        let id = format!("BE{p:014X}");
        observed.policies.push(PolicySummary {
            id: id.clone(),
            name: format!("Policy {p}"),
            plan: "corporate".into(),
            owner: "owner@bench.example".into(),
            output_currency: "USD".into(),
            caller_role: "admin".into(),
        });
        // Expensify has half the desired people, a few with another role, and some extras.
        let mut roster = vec![
            entry("owner@bench.example", "admin"),
            entry("admin@bench.example", "admin"),
        ];
        for m in 0..members {
            if m % 2 == 0 {
                roster.push(entry(
                    &format!("person{m}.{p}@bench.example"),
                    if m % 6 == 0 { "auditor" } else { "user" },
                ));
            }
        }
        for x in 0..3 {
            roster.push(entry(&format!("extra{x}.{p}@bench.example"), "user"));
        }
        observed.rosters.insert(id.clone(), roster);
        let wanted = (0..members)
            .map(|m| MemberSpec {
                email: format!("person{m}.{p}@bench.example"),
                role: Some("user".into()),
                submits_to: None,
                employee_id: None,
                expires_at: None,
            })
            .collect();
        accesses.push(AccessObject {
            key: ObjectKey::new("bench", format!("policy-{p}")),
            generation: Some(1),
            created: None,
            annotations: BTreeMap::new(),
            spec: PolicyAccessSpec {
                requests: None,
                connector_ref: ConnectorRef {
                    name: "acme".into(),
                    namespace: None,
                },
                policy: PolicySelector {
                    id: Some(id),
                    name: None,
                },
                mode: if p % 2 == 0 {
                    AccessMode::Authoritative
                } else {
                    AccessMode::Additive
                },
                deletion_policy: DeletionPolicy::Revoke,
                allow_from: Vec::new(),
                suspend: false,
                members: wanted,
            },
            deleting: false,
            status: Some(PolicyAccessStatus::default()),
        });
    }
    (connector, accesses, observed)
}

pub fn entry(email: &str, role: &str) -> RosterEntry {
    RosterEntry {
        email: email.into(),
        role: role.into(),
        submits_to: Some("owner@bench.example".into()),
        forwards_to: None,
        employee_id: None,
    }
}

/// The connector `bench/acme` as a file-mode manifest: Expensify at `endpoint`, acting as
/// `admin_email`.
pub fn connector_manifest(endpoint: &str, admin_email: &str) -> String {
    format!(
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {{name: acme, namespace: bench}}\nspec:\n  credentialsSecretRef: {{name: creds}}\n  endpoint: {endpoint}\n  adminEmail: {admin_email}\n  maxRevocationsPerSync: 100\n"
    )
}

/// A kubeconfig for the API server double at `addr`, namespace `bench`, written to `path`.
pub fn write_kubeconfig(path: &Path, addr: std::net::SocketAddr) {
    std::fs::write(
        path,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: double, cluster: {{server: \"http://{addr}\"}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: double, user: u, namespace: bench}}}}]\ncurrent-context: c\n"),
    )
    .expect("the kubeconfig is written");
}

/// Creates, through `client`, the Secret `bench/creds` holding `id` and `secret`, and the
/// connector `bench/acme` on Expensify at `endpoint` acting as `admin_email`.
pub async fn create_connector(
    client: &kube::Client,
    (id, secret): (&str, &str),
    endpoint: &str,
    admin_email: &str,
) {
    use base64::Engine as _;
    use expensify_operator::api::ExpensifyConnector;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    use serde_json::json;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "bench"}, "data": {"partnerUserID": b64(id), "partnerUserSecret": b64(secret)}})).expect("a Secret");
    Api::<Secret>::namespaced(client.clone(), "bench")
        .create(&PostParams::default(), &secret)
        .await
        .expect("the Secret is created");
    let connector: ExpensifyConnector = serde_json::from_value(json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector", "metadata": {"name": "acme", "namespace": "bench"},
        "spec": {"credentialsSecretRef": {"name": "creds"}, "endpoint": endpoint, "adminEmail": admin_email, "maxRevocationsPerSync": 100}})).expect("a connector");
    Api::<ExpensifyConnector>::namespaced(client.clone(), "bench")
        .create(&PostParams::default(), &connector)
        .await
        .expect("the connector is created");
}

/// The controller binary on the cluster of `kubeconfig`, Expensify at `endpoint` (its one
/// allowed endpoint), pacing off, warnings and errors on stderr.
pub fn spawn_controller(kubeconfig: &Path, endpoint: &str) -> Child {
    Command::new(BIN)
        .args([
            "controller",
            "--probes-addr",
            "127.0.0.1:0",
            "--pacing",
            "none",
            "--log-level",
            "warn",
        ])
        .env("EXPENSIFY_ALLOWED_ENDPOINTS", endpoint)
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the controller starts")
}

/// Now on the wall clock, as the simulator's request log stamps requests
/// (`receivedAtMicros`): microseconds since the Unix epoch.
pub fn wall_clock_micros() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_micros()).expect("microseconds fit")
}

/// Median and 95th percentile (nearest rank) of `samples`, which must not be empty.
pub fn median_and_p95(
    samples: &[std::time::Duration],
) -> (std::time::Duration, std::time::Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    let median = if n.is_multiple_of(2) {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    } else {
        sorted[n / 2]
    };
    let p95 = sorted[(n * 95).div_ceil(100) - 1];
    (median, p95)
}
