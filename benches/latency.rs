//! Latency: from a manifest edit to the write reaching Expensify (the simulator), median
//! and 95th percentile over 50 edits, in both modes:
//! - file mode: the real binary's `watch` over a temporary directory (no git);
//! - cluster mode: the real binary's `controller` on the Kubernetes API server double, the
//!   edit a merge patch of one PolicyAccess through the double.
//!
//! The simulator runs in this process on 127.0.0.1 without rate limits, and both binaries
//! run with `--pacing none`: what is measured is the operator's own path (file events or
//! watch events, the 500 ms debounce, loading, reading rosters, planning, the write-ahead
//! save), not Expensify's windows. Each edit grants one new person on one policy (one
//! employee-updater call); the next edit waits until the operator is idle again (file
//! mode: `watch` logs that it waits; cluster mode: the object's status is Synced at its new
//! generation). Time runs from just before the edit (the file written, the patch sent) to
//! the simulator's log entry for the updater call (`receivedAtMicros`, the same wall clock).
//!
//! `cargo bench --bench latency` (both modes, 10 and 500 policies x 20 members), or
//! `cargo bench --bench latency -- files` / `-- cluster` for one mode. Figures are
//! printed, never asserted.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use expensify_operator::api::PolicyAccess;
use expensify_operator::expensify::Role;
use expensify_operator::simulator::{Seed, SeedEmployee, SeedPolicy, SimulatorHandle};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[path = "../tests/support/mod.rs"]
mod support;
use support::apiserver::{ApiServerDouble, Kind};
use support::bench::{
    connector_manifest, create_connector, median_and_p95, spawn_controller, wall_clock_micros,
    write_kubeconfig,
};

const EDITS: usize = 50;
const MEMBERS: usize = 20;
const SIZES: [usize; 2] = [10, 500];
/// The admin account of the example seed, which the connector acts as.
const ADMIN_EMAIL: &str = "it-admin@acme.example";
/// Longest wait for one edit's write, or for the operator to be idle again.
const PATIENCE: Duration = Duration::from_secs(120);
const UPDATER_JOB: &str = "update/employees";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("latency: bench");
        return;
    }
    let only = |mode: &str| {
        !args.iter().any(|a| a == "files" || a == "cluster") || args.iter().any(|a| a == mode)
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("| mode | policies x members | edits | median | p95 | fastest | slowest |");
    println!("|---|---|---|---|---|---|---|");
    for policies in SIZES {
        if only("files") {
            let samples = runtime.block_on(file_mode(policies));
            report("file mode (`watch`)", policies, &samples);
        }
        if only("cluster") {
            let samples = runtime.block_on(cluster_mode(policies));
            report("cluster mode (`controller`)", policies, &samples);
        }
    }
    println!("(both modes debounce 500 ms; pacing off, simulator on loopback without limits)");
}

fn report(mode: &str, policies: usize, samples: &[Duration]) {
    let (median, p95) = median_and_p95(samples);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "| {mode} | {policies} x {MEMBERS} | {} | {} | {} | {} | {} |",
        samples.len(),
        ms(median),
        ms(p95),
        ms(*samples.iter().min().expect("samples")),
        ms(*samples.iter().max().expect("samples")),
    );
}

fn policy_id(p: usize) -> String {
    format!("LA{p:014X}")
}

fn person(p: usize, m: usize) -> String {
    format!("person{m}.{p}@bench.example")
}

const ROLES: [Role; 3] = [Role::User, Role::Auditor, Role::Admin];

/// The simulator's organisation already as the manifests want it, so the only writes are
/// the edits': the example seed's admin account, `policies` x 20 members, no limits.
fn seed(policies: usize) -> Seed {
    let mut seed = support::unlimited_seed();
    seed.accounts
        .retain(|a| a.partner_user_id == support::ADMIN_ID);
    seed.policies = (0..policies)
        .map(|p| SeedPolicy {
            id: policy_id(p),
            name: format!("Policy {p}"),
            plan: "corporate".into(),
            owner: ADMIN_EMAIL.into(),
            output_currency: "USD".into(),
            employees: (0..MEMBERS)
                .map(|m| SeedEmployee {
                    email: person(p, m),
                    role: ROLES[m % 3],
                    submits_to: None,
                    employee_id: None,
                })
                .collect(),
        })
        .collect();
    seed
}

/// Policy `p`'s members: the seeded ones, then one `user` per edit made to it so far.
fn members(p: usize, added: &[String]) -> Vec<Value> {
    (0..MEMBERS)
        .map(|m| json!({"email": person(p, m), "role": ROLES[m % 3].as_str()}))
        .chain(
            added
                .iter()
                .map(|email| json!({"email": email, "role": "user"})),
        )
        .collect()
}

/// Edit `e`: which policy it touches, and the person it grants there.
fn edit(e: usize, policies: usize) -> (usize, String) {
    // Spread over the policies, so a large repository's edits are not all in one file.
    let p = (e * 7) % policies;
    (p, format!("edit{e}.{p}@bench.example"))
}

/// The time from `edited_at` (wall clock, µs) to the first employee-updater call the
/// simulator logged after `after_seq`, once there is one.
async fn next_write(sim: &SimulatorHandle, after_seq: u64, edited_at: u64) -> Duration {
    let started = Instant::now();
    loop {
        let found = sim
            .state()
            .requests()
            .iter()
            .find(|r| r.seq > after_seq && r.job == UPDATER_JOB)
            .map(|r| r.received_at_micros);
        if let Some(at) = found {
            return Duration::from_micros(at.saturating_sub(edited_at));
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no write {PATIENCE:?} after an edit"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn last_seq(sim: &SimulatorHandle) -> u64 {
    sim.state().requests().back().map_or(0, |r| r.seq)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn write_access(dir: &Path, p: usize, added: &[String]) {
    let text = format!(
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: policy-{p}, namespace: bench}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"{}\"}}\n  mode: Authoritative\n  members: {}\n",
        policy_id(p),
        Value::Array(members(p, added)),
    );
    std::fs::write(dir.join(format!("policy-{p}.yaml")), text).expect("a manifest is written");
}

/// `watch` over a repository of `policies` objects: the latency of each of 50 edits.
async fn file_mode(policies: usize) -> Vec<Duration> {
    let sim = support::start(&seed(policies)).await;
    let repository = tempfile::tempdir().expect("a temporary directory");
    let dir = repository.path();
    std::fs::write(
        dir.join("connector.yaml"),
        connector_manifest(&sim.endpoint(), ADMIN_EMAIL),
    )
    .expect("the connector is written");
    let mut added: Vec<Vec<String>> = vec![Vec::new(); policies];
    for (p, none_yet) in added.iter().enumerate() {
        write_access(dir, p, none_yet);
    }
    let mut watch = support::binary(
        &sim.endpoint(),
        &[
            "watch",
            dir.to_str().expect("a UTF-8 path"),
            "--pacing",
            "none",
        ],
        support::ADMIN_SECRET,
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("watch starts");
    // `watch` says when a pass is over and it waits for the next change.
    let idle = Arc::new(AtomicU64::new(0));
    let last_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (counted, kept) = (idle.clone(), last_lines.clone());
    let mut lines = BufReader::new(watch.stderr.take().expect("stderr")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("waiting for a change") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            let mut kept = kept.lock().expect("lines");
            kept.push(line);
            let excess = kept.len().saturating_sub(20);
            kept.drain(..excess);
        }
    });
    let idle_after = |passes: u64| {
        let (idle, last_lines) = (&idle, &last_lines);
        move || {
            let done = idle.load(Ordering::SeqCst) >= passes;
            if !done
                && let Ok(lines) = last_lines.lock()
                && lines.iter().any(|l| l.contains("ERROR"))
            {
                panic!("watch failed:\n{}", lines.join("\n"));
            }
            done
        }
    };
    wait_until("the first pass", idle_after(1)).await;
    let first_pass_writes = support::updates(&sim);
    assert_eq!(
        first_pass_writes, 0,
        "the organisation starts as the manifests want it"
    );
    let mut samples = Vec::with_capacity(EDITS);
    for e in 0..EDITS {
        let (p, email) = edit(e, policies);
        added[p].push(email);
        let (seq, passes) = (last_seq(&sim), idle.load(Ordering::SeqCst));
        let edited_at = wall_clock_micros();
        write_access(dir, p, &added[p]);
        let latency = next_write(&sim, seq, edited_at).await;
        samples.push(latency);
        wait_until("the pass to finish", idle_after(passes + 1)).await;
    }
    assert_eq!(support::updates(&sim), EDITS as u64, "one write per edit");
    let _ = watch.kill().await;
    samples
}

/// Whether the double holds `name` Synced at its current generation.
fn synced(double: &ApiServerDouble, name: &str) -> bool {
    double.get(Kind::Access, "bench", name).is_some_and(|o| {
        o["status"]["phase"] == "Synced"
            && o["status"]["observedGeneration"] == o["metadata"]["generation"]
    })
}

/// The controller over `policies` PolicyAccess objects: the latency of each of 50 edits.
async fn cluster_mode(policies: usize) -> Vec<Duration> {
    let sim = support::start(&seed(policies)).await;
    let double = ApiServerDouble::start().await;
    let client = double.client();
    let work = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = work.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, double.addr);
    create_connector(
        &client,
        (support::ADMIN_ID, support::ADMIN_SECRET),
        &sim.endpoint(),
        ADMIN_EMAIL,
    )
    .await;
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), "bench");
    for p in 0..policies {
        let object: PolicyAccess = serde_json::from_value(json!({"apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess", "metadata": {"name": format!("policy-{p}"), "namespace": "bench"},
            "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": policy_id(p)}, "mode": "Authoritative", "members": members(p, &[])}}))
        .expect("a PolicyAccess");
        accesses
            .create(&PostParams::default(), &object)
            .await
            .expect("the object is created");
    }
    let mut controller = spawn_controller(&kubeconfig, &sim.endpoint());
    wait_until("every object Synced", || {
        (0..policies).all(|p| synced(&double, &format!("policy-{p}")))
    })
    .await;
    assert_eq!(
        support::updates(&sim),
        0,
        "the organisation starts as the objects want it"
    );
    let mut added: Vec<Vec<String>> = vec![Vec::new(); policies];
    let mut samples = Vec::with_capacity(EDITS);
    for e in 0..EDITS {
        let (p, email) = edit(e, policies);
        added[p].push(email);
        let name = format!("policy-{p}");
        let patch = json!({"spec": {"members": members(p, &added[p])}});
        let seq = last_seq(&sim);
        let edited_at = wall_clock_micros();
        accesses
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("the edit is patched");
        let latency = next_write(&sim, seq, edited_at).await;
        samples.push(latency);
        wait_until("the object Synced again", || synced(&double, &name)).await;
    }
    assert_eq!(support::updates(&sim), EDITS as u64, "one write per edit");
    let _ = controller.kill();
    let _ = controller.wait();
    samples
}
