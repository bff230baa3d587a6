//! End to end: apply 500 policies x 10,000 memberships to an empty org in the simulator
//! (a separate process), reporting Expensify calls, time and this process's peak memory.
//! `cargo bench --bench apply_e2e`. Targets: <= 1 + ceil(500/chunk) reads +
//! ceil(10,000/batch) writes + the verification reads; peak RSS < 100 MiB.

use expensify_operator::files::Run;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use expensify_operator::expensify::{
    AllowedEndpoints, ClientSettings, Credentials, ExpensifyClients, Pacing,
};
use expensify_operator::files::{CredentialSource, FileMode, StatusDir};

#[path = "../tests/support/mod.rs"]
mod support;
use support::bench::{
    connector_manifest, free_port, peak_rss_kib, spawn_simulator, wait_for_port, write_seed,
};

const POLICIES: usize = 500;
const MEMBERS: usize = 20;
const ID: &str = "aa_bench";
const SECRET: &str = "bench-only-secret";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("apply_500_policies_10000_memberships: bench");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    write_seed(&work.path().join("seed.yaml"), ID, SECRET, "BE", POLICIES);
    let port = free_port();
    let mut simulator = spawn_simulator(&work.path().join("seed.yaml"), port);
    let endpoint = format!("http://127.0.0.1:{port}/Integration-Server/ExpensifyIntegrations");

    let manifests = work.path().join("repo");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("connector.yaml"),
        connector_manifest(&endpoint, "admin@bench.example"),
    )
    .unwrap();
    for p in 0..POLICIES {
        let mut text = format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: policy-{p}, namespace: bench}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"BE{p:014X}\"}}\n  mode: Authoritative\n  members:\n"
        );
        for m in 0..MEMBERS {
            let _ = writeln!(
                text,
                "    - {{email: person{m}.{p}@bench.example, role: {}}}",
                ["user", "auditor", "admin"][m % 3]
            );
        }
        std::fs::write(manifests.join(format!("policy-{p}.yaml")), text).unwrap();
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        wait_for_port(port).await;
        let settings = ClientSettings {
            pacing: Pacing::unlimited(),
            allowed_endpoints: AllowedEndpoints::only(&endpoint).unwrap(),
            ..ClientSettings::default()
        };
        let mode = FileMode {
            dir: manifests.clone(),
            status_dir: StatusDir::new(work.path().join("status")),
            credentials: CredentialSource::Fixed(Credentials::new(ID, SECRET).unwrap()),
            clients: Arc::new(ExpensifyClients::new(settings.clone()).unwrap()),
            endpoint_override: None,
            strict: true,
            notifications: None,
        };
        let rss_before = peak_rss_kib("self");
        let started = Instant::now();
        let report = mode.pass(Run::Apply).await.expect("apply");
        let elapsed = started.elapsed();
        let sync = &report.syncs[0];
        let applied = sync.results.iter().filter(|r| r.failure.is_none()).count();
        let calls = sync.calls;
        let reads_target = 1 + POLICIES.div_ceil(settings.roster_chunk_size);
        let writes_target = (POLICIES * MEMBERS).div_ceil(settings.update_batch_size);
        println!("apply_500_policies_10000_memberships");
        println!("  changes applied:   {applied} of {}", sync.results.len());
        println!(
            "  expensify calls:   {} = {} policyList + {} roster reads + {} updater calls (target {} reads + {} writes + {} verification reads)",
            calls.total(),
            calls.policy_list,
            calls.roster_reads,
            calls.employee_updates,
            reads_target,
            writes_target,
            POLICIES.div_ceil(settings.roster_chunk_size)
        );
        let paced = ((calls.total() - 1) / 20 * 60).max((calls.total() - 1) / 5 * 10);
        println!("  wall time:         {:.2} s with pacing off; Expensify's 5/10 s and 20/60 s limits make these calls take at least {paced} s", elapsed.as_secs_f64());
        println!("  peak RSS:          {:.1} MiB (before the sync: {:.1} MiB)", peak_rss_kib("self") as f64 / 1024.0, rss_before as f64 / 1024.0);
        let started = Instant::now();
        let again = mode.pass(Run::Apply).await.expect("second apply");
        println!(
            "  second apply:      {} changes, {} calls, {:.2} s",
            again.pending_changes(),
            again.syncs[0].calls.total(),
            started.elapsed().as_secs_f64()
        );
    });
    let _ = simulator.kill();
    let _ = simulator.wait();
}
