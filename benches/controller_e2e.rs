//! PolicyAccess objects (1,000 on 200 policies, 5 members each, unless told otherwise)
//! through the real controller binary, against the API server double (in this process) and
//! the simulator (its own process). Reports the Expensify calls per full sync, the time
//! from an edit to the write reaching the simulator, and the controller's peak RSS against
//! the chart's memory limit. `cargo bench --bench controller_e2e [-- objects policies
//! members]`, e.g. `-- 2000 400 50` for issue 20's 2,000 objects x 50 members.

#[path = "../tests/support/mod.rs"]
mod support;
use std::time::{Duration, Instant};
use support::apiserver;
use support::bench::{
    create_connector, free_port, peak_rss_kib, spawn_controller, spawn_simulator, wait_for_port,
    write_kubeconfig, write_seed,
};

use expensify_operator::api::{ExpensifyConnector, PolicyAccess};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The chart's memory limit (`charts/expensify-operator/values.yaml`, resources.limits).
const CHART_MEMORY_LIMIT_MIB: f64 = 256.0;

/// How many objects, on how many policies, with how many members each.
#[derive(Clone, Copy)]
struct Shape {
    objects: usize,
    policies: usize,
    members: usize,
}

impl Shape {
    /// `objects policies members` from the arguments (cargo's own `--bench` is skipped).
    fn from_args() -> Shape {
        let numbers: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        match numbers[..] {
            [objects, policies, members] if objects > 7 && policies > 0 => Shape {
                objects,
                policies,
                members,
            },
            [] => Shape {
                objects: 1_000,
                policies: 200,
                members: 5,
            },
            _ => panic!("usage: controller_e2e [objects policies members] (more than 7 objects)"),
        }
    }
}
const ID: &str = "aa_bench";
const SECRET: &str = "bench-only-secret";

/// The field manager of the benchmark's own patches, left out of the controller's counts.
const BENCH_MANAGER: &str = "bench-annotator";

fn bench_params() -> PatchParams {
    PatchParams {
        field_manager: Some(BENCH_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// The controller's requests by verb and resource: `LIST`, `WATCH`, `GET`, `PATCH`
/// (status or object), `POST`; the benchmark's own patches are left out.
fn by_verb(seen: &[(String, String)]) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for (method, uri) in seen {
        if uri.contains(BENCH_MANAGER) {
            continue;
        }
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let version_end = if segments.first() == Some(&"api") {
            2
        } else {
            3
        };
        let plural_at = match segments.get(version_end) {
            Some(&"namespaces") if segments.len() > version_end + 2 => version_end + 2,
            _ => version_end,
        };
        let resource = segments.get(plural_at).copied().unwrap_or("?");
        let named = segments.len() > plural_at + 1;
        let status = path.ends_with("/status");
        let verb = match method.as_str() {
            "GET" if query.contains("watch=true") || query.contains("watch=1") => "WATCH",
            "GET" if named => "GET",
            "GET" => "LIST",
            "PATCH" if status => "PATCH status",
            other => other,
        };
        *counts.entry(format!("{verb} {resource}")).or_insert(0) += 1;
    }
    counts
}

async fn counters(port: u16) -> Value {
    reqwest::get(format!("http://127.0.0.1:{port}/admin/counters"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn job(counters: &Value, job: &str) -> u64 {
    counters["byJob"][job].as_u64().unwrap_or(0)
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("controller_1000_objects_200_policies: bench");
        return;
    }
    let Shape {
        objects,
        policies,
        members,
    } = Shape::from_args();
    let work = tempfile::tempdir().unwrap();
    write_seed(&work.path().join("seed.yaml"), ID, SECRET, "CB", policies);
    let sim_port = free_port();
    let mut simulator = spawn_simulator(&work.path().join("seed.yaml"), sim_port);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let double = apiserver::ApiServerDouble::start().await;
        let client = double.client();
        let kubeconfig = work.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, double.addr);
        wait_for_port(sim_port).await;
        let endpoint = format!("http://127.0.0.1:{sim_port}/Integration-Server/ExpensifyIntegrations");
        create_connector(&client, (ID, SECRET), &endpoint, "admin@bench.example").await;
        let connectors = Api::<ExpensifyConnector>::namespaced(client.clone(), "bench");
        let accesses = Api::<PolicyAccess>::namespaced(client.clone(), "bench");
        for o in 0..objects {
            let policy = o % policies;
            let listed: Vec<Value> = (0..members).map(|m| json!({"email": format!("p{o}.{m}@bench.example"), "role": if m % 2 == 0 { "user" } else { "auditor" }})).collect();
            let object: PolicyAccess = serde_json::from_value(json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess", "metadata": {"name": format!("access-{o}"), "namespace": "bench"},
                "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": format!("CB{policy:014X}")}, "members": listed}})).unwrap();
            accesses.create(&PostParams::default(), &object).await.unwrap();
        }

        let started = Instant::now();
        let mut controller = spawn_controller(&kubeconfig, &endpoint);
        let pid = controller.id();
        let synced = || {
            let double = &double;
            async move {
                (0..objects).all(|o| {
                    double
                        .get(apiserver::Kind::Access, "bench", &format!("access-{o}"))
                        .and_then(|v| v["status"]["phase"].as_str().map(|p| p == "Synced"))
                        .unwrap_or(false)
                })
            }
        };
        wait_for("every object Synced", Duration::from_secs(1800), async || synced().await).await;
        let first = started.elapsed();
        let after_first = counters(sim_port).await;
        println!("controller: {objects} objects on {policies} policies x {members} members ({} memberships)", objects * members);
        println!("  first convergence:     {:.2} s, {} Expensify calls ({} policyList, {} roster reads, {} updater calls)",
            first.as_secs_f64(),
            after_first["requests"], job(&after_first, "get/policyList"), job(&after_first, "get/policy"), job(&after_first, "update/employees"));

        // One full sync, forced: what a periodic drift check costs.
        let annotate = json!({"metadata": {"annotations": {"expensify.gitops.dev/reconcile-requested-at": "bench-1"}}});
        connectors.patch("acme", &bench_params(), &Patch::Merge(&annotate)).await.unwrap();
        wait_for("the forced sync", Duration::from_secs(60), async || {
            double.get(apiserver::Kind::Connector, "bench", "acme").is_some_and(|c| c["status"]["lastHandledReconcileAt"] == "bench-1")
        })
        .await;
        let after_full = counters(sim_port).await;
        println!("  full sync, in sync:    {} Expensify calls ({} policyList + {} roster reads; target 1 + ceil({policies}/100), independent of the {objects} objects)",
            after_full["requests"].as_u64().unwrap() - after_first["requests"].as_u64().unwrap(),
            job(&after_full, "get/policyList") - job(&after_first, "get/policyList"),
            job(&after_full, "get/policy") - job(&after_first, "get/policy"));

        // Steady state: three more forced syncs with nothing to change, and every
        // Kubernetes API request the controller made for them, by verb.
        let from = double.requests_seen().len();
        for round in 2..5 {
            let mark = format!("bench-{round}");
            let annotate = json!({"metadata": {"annotations": {"expensify.gitops.dev/reconcile-requested-at": mark}}});
            connectors.patch("acme", &bench_params(), &Patch::Merge(&annotate)).await.unwrap();
            wait_for("a steady-state sync", Duration::from_secs(60), async || {
                double.get(apiserver::Kind::Connector, "bench", "acme").is_some_and(|c| c["status"]["lastHandledReconcileAt"] == mark.as_str())
            })
            .await;
        }
        // The last sync's writes land after its connector status; let them arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = double.requests_seen();
        println!("  API requests per steady-state sync (mean of 3, nothing to change):");
        for (verb, count) in by_verb(&seen[from..]) {
            println!("    {verb:<28} {:.1}", count as f64 / 3.0);
        }

        // Edit one object: how long until the write reaches Expensify.
        let mut latencies = Vec::new();
        for round in 0..5 {
            let before = job(&counters(sim_port).await, "update/employees");
            let edit = json!({"spec": {"members": [{"email": format!("edit{round}@bench.example")}]}});
            let edit_started = Instant::now();
            accesses.patch("access-7", &bench_params(), &Patch::Merge(&edit)).await.unwrap();
            wait_for("the edit's write", Duration::from_secs(30), async || job(&counters(sim_port).await, "update/employees") > before).await;
            latencies.push(edit_started.elapsed().as_secs_f64());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        latencies.sort_by(f64::total_cmp);
        println!("  edit -> write:         median {:.0} ms, worst {:.0} ms over 5 edits (debounce 500 ms; pacing off)", latencies[2] * 1000.0, latencies[4] * 1000.0);
        let peak = peak_rss_kib(&pid.to_string()) as f64 / 1024.0;
        println!("  controller peak RSS:   {peak:.1} MiB (the chart's limit: {CHART_MEMORY_LIMIT_MIB} MiB, {:.0} %)", peak / CHART_MEMORY_LIMIT_MIB * 100.0);
        let (requests, status_writes) = double.counts();
        println!("  API server:            {requests} requests, {status_writes} status writes");
        let _ = controller.kill();
        let _ = controller.wait();
    });
    let _ = simulator.kill();
    let _ = simulator.wait();
}
