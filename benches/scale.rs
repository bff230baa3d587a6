//! The scale curve: 1k, 10k, 100k and 1M memberships (10 to 10,000 policies x 100
//! members). For each size, in a process of its own so its peak memory is its own:
//! - planning alone (the pure planner, in memory, best of three);
//! - a full file-mode `plan` and then `apply` of an empty organisation against the
//!   simulator (in its own process): Expensify calls, the minimum simulated time at
//!   Expensify's published limits (paced to 90 %), wall time with pacing off, and peak RSS.
//!
//! `cargo bench --bench scale` (all sizes; 1M takes minutes), or
//! `cargo bench --bench scale -- 1000 10000` for some sizes. Figures are printed, never
//! asserted; the targets are in docs/development.md.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use expensify_operator::expensify::{
    AllowedEndpoints, CallCounts, ClientSettings, Credentials, ExpensifyClients, Pacing,
};
use expensify_operator::files::{CredentialSource, FileMode, Run, StatusDir};
use expensify_operator::reconcile::{PlanInput, Requests, plan};
use k8s_openapi::jiff::Timestamp;

#[path = "../tests/support/mod.rs"]
mod support;
use support::bench::{
    free_port, peak_rss_kib, planner_world, spawn_simulator, wait_for_port, write_seed,
};

const MEMBERS: usize = 100;
const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
const ID: &str = "aa_bench";
const SECRET: &str = "bench-only-secret";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("scale: bench");
        return;
    }
    if let [flag, what, size] = args.as_slice()
        && flag == "--child"
    {
        let size: usize = size.parse().expect("size");
        match what.as_str() {
            "planner" => planner(size),
            "files" => files(size),
            other => panic!("unknown child {other}"),
        }
        return;
    }
    let sizes: Vec<usize> = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect::<Vec<_>>();
    let sizes = if sizes.is_empty() {
        SIZES.to_vec()
    } else {
        sizes
    };
    for size in sizes {
        for what in ["planner", "files"] {
            let status = std::process::Command::new(std::env::current_exe().expect("self"))
                .args(["--child", what, &size.to_string()])
                .status()
                .expect("child runs");
            assert!(status.success(), "{what} at {size}: {status}");
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Planning alone: the pure planner over a world built in memory.
fn planner(memberships: usize) {
    let policies = memberships / MEMBERS;
    let (connector, accesses, observed) = planner_world(policies, MEMBERS);
    let built = peak_rss_kib("self");
    let input = PlanInput {
        connector: &connector,
        connectors: std::slice::from_ref(&connector),
        accesses: &accesses,
        observed: &observed,
        now: Timestamp::now(),
        inventory_complete: true,
        scope: expensify_operator::reconcile::Scope::Everything,
        unverified: &[],
        requests: Requests::NONE,
    };
    let mut best = Duration::MAX;
    let mut changes = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let planned = plan(input);
        best = best.min(started.elapsed());
        changes = planned.changes.len();
    }
    println!(
        "planner  {memberships:>9} memberships ({policies} policies): {:>8.1} ms, {changes} changes; peak RSS {} (input alone {})",
        best.as_secs_f64() * 1000.0,
        mib(peak_rss_kib("self")),
        mib(built),
    );
}

/// A repository of `policies` Authoritative objects x 100 members, and a connector.
fn write_repository(dir: &std::path::Path, endpoint: &str, policies: usize) {
    std::fs::create_dir_all(dir).expect("repository");
    std::fs::write(
        dir.join("connector.yaml"),
        format!("apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {{name: acme, namespace: bench}}\nspec:\n  credentialsSecretRef: {{name: creds}}\n  endpoint: {endpoint}\n  adminEmail: admin@bench.example\n  maxRevocationsPerSync: 100\n"),
    )
    .expect("connector");
    for p in 0..policies {
        let mut text = format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: policy-{p}, namespace: bench}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"SC{p:014X}\"}}\n  mode: Authoritative\n  members:\n"
        );
        for m in 0..MEMBERS {
            let _ = writeln!(
                text,
                "    - {{email: person{m}.{p}@bench.example, role: {}}}",
                ["user", "auditor", "admin"][m % 3]
            );
        }
        std::fs::write(dir.join(format!("policy-{p}.yaml")), text).expect("object");
    }
}

/// The least time these calls take at Expensify's published limits paced to 90 %:
/// 5 per 11.1 s and 20 per 66.7 s.
fn paced_minimum(calls: u64) -> Duration {
    let after_first = calls.saturating_sub(1) as f64;
    Duration::from_secs_f64((after_first / 20.0 * 66.7).max(after_first / 5.0 * 11.1))
}

fn describe(calls: &CallCounts) -> String {
    format!(
        "{} calls = {} list + {} roster reads + {} updater calls",
        calls.total(),
        calls.policy_list,
        calls.roster_reads,
        calls.employee_updates
    )
}

/// A full file-mode `plan` and `apply` of an empty organisation.
fn files(memberships: usize) {
    let policies = memberships / MEMBERS;
    let work = tempfile::tempdir().expect("temporary directory");
    write_seed(&work.path().join("seed.yaml"), ID, SECRET, "SC", policies);
    let port = free_port();
    let mut simulator = spawn_simulator(&work.path().join("seed.yaml"), port);
    let endpoint = format!("http://127.0.0.1:{port}/Integration-Server/ExpensifyIntegrations");
    let repository = work.path().join("repo");
    write_repository(&repository, &endpoint, policies);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        wait_for_port(port).await;
        let settings = ClientSettings {
            pacing: Pacing::unlimited(),
            allowed_endpoints: AllowedEndpoints::only(&endpoint).expect("endpoint"),
            request_timeout: Duration::from_secs(600),
            ..ClientSettings::default()
        };
        let mode = FileMode {
            dir: repository,
            status_dir: StatusDir::new(work.path().join("status")),
            credentials: CredentialSource::Fixed(Credentials::new(ID, SECRET).expect("credentials")),
            clients: Arc::new(ExpensifyClients::new(settings.clone()).expect("clients")),
            endpoint_override: None,
            strict: true,
            notifications: None,
        };
        for (name, run) in [("plan", Run::Plan), ("apply", Run::Apply)] {
            let started = Instant::now();
            let report = mode.pass(run).await.expect("pass");
            let elapsed = started.elapsed();
            let sync = &report.syncs[0];
            let minimum = 1
                + policies.div_ceil(settings.roster_chunk_size)
                + if run == Run::Apply {
                    memberships.div_ceil(settings.update_batch_size)
                        + policies.div_ceil(settings.roster_chunk_size)
                } else {
                    0
                };
            println!(
                "{name:<8} {memberships:>9} memberships: {} (minimum {minimum}); {} changes; {:.1} s with pacing off, at least {:.1} min at Expensify's limits; peak RSS so far {}",
                describe(&sync.calls),
                sync.plan.changes.len(),
                elapsed.as_secs_f64(),
                paced_minimum(sync.calls.total()).as_secs_f64() / 60.0,
                mib(peak_rss_kib("self")),
            );
        }
    });
    let _ = simulator.kill();
    let _ = simulator.wait();
}
