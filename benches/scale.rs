//! The scale curve: 1k, 10k, 100k and 1M memberships (10 to 10,000 policies x 100
//! members). For each size, in a process of its own so its peak memory is its own:
//! - planning alone (the pure planner, in memory, best of three);
//! - a full file-mode `plan` and then `apply` of an empty organisation against the
//!   simulator (in its own process): Expensify calls, the minimum simulated time at
//!   Expensify's published limits (paced to 90 %), wall time with pacing off, and peak RSS.
//!
//! `cargo bench --bench scale` (all sizes; 1M takes minutes), or
//! `cargo bench --bench scale -- 1000 10000` for some sizes; `-- memory [SIZES]` prints
//! instead where the planner's memory goes, per membership. Figures are printed, never
//! asserted; the targets are in docs/development.md.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use expensify_operator::expensify::{
    AllowedEndpoints, CallCounts, ClientSettings, Credentials, ExpensifyClients, Pacing,
};
use expensify_operator::files::{CredentialSource, FileMode, Run, StatusDir};
use expensify_operator::reconcile::plan;
use k8s_openapi::jiff::Timestamp;

#[path = "../tests/support/mod.rs"]
mod support;
use support::bench::{
    connector_manifest, free_port, peak_rss_kib, planner_world, rss_kib, spawn_simulator,
    wait_for_port, write_seed,
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
            "memory" => memory(size),
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
    // `memory`: only where the planner's memory goes, per membership.
    let children: &[&str] = if args.iter().any(|a| a == "memory") {
        &["memory"]
    } else {
        &["planner", "files"]
    };
    for size in sizes {
        for &what in children {
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
    let input = support::bench::world_input(&connector, &accesses, &observed, Timestamp::now());
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
        connector_manifest(endpoint, "admin@bench.example"),
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

/// What glibc's malloc takes for `n` bytes: an 8-byte header, 16-byte steps, 32 at least;
/// nothing when nothing is allocated.
fn malloc_chunk(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).next_multiple_of(16).max(32)
    }
}

fn text(s: &String) -> usize {
    malloc_chunk(s.capacity())
}

fn maybe(s: Option<&String>) -> usize {
    s.map_or(0, text)
}

/// A vector's own allocation (its elements inline), not what they point to.
fn slots<T>(v: &Vec<T>) -> usize {
    malloc_chunk(v.capacity() * std::mem::size_of::<T>())
}

fn entry_heap(m: &expensify_operator::api::ManagedMember) -> usize {
    text(&m.policy_id)
        + text(&m.email)
        + maybe(m.previous_role.as_ref())
        + maybe(m.role.as_ref())
        + maybe(m.prior_role.as_ref())
        + maybe(m.connector.as_ref())
}

/// Where the planner's memory goes at `memberships`: its input and its result counted
/// allocation by allocation (`malloc_chunk` of every string and vector), its working set
/// as the rest of the peak RSS that planning adds.
fn memory(memberships: usize) {
    use expensify_operator::api::{ManagedMember, MemberSpec};
    use expensify_operator::expensify::RosterEntry;
    use expensify_operator::reconcile::{Change, ObjectKey};
    use std::mem::size_of;
    let policies = memberships / MEMBERS;
    let per = |bytes: usize| bytes as f64 / memberships as f64;
    let kib_per = |kib: u64| kib as f64 * 1024.0 / memberships as f64;
    let before = rss_kib("self");
    let (connector, accesses, observed) = planner_world(policies, MEMBERS);
    let built = rss_kib("self");
    let desired: usize = accesses
        .iter()
        .map(|a| {
            slots(&a.spec.members)
                + a.spec
                    .members
                    .iter()
                    .map(|m| {
                        text(&m.email)
                            + maybe(m.role.as_ref())
                            + maybe(m.submits_to.as_ref())
                            + maybe(m.employee_id.as_ref())
                            + maybe(m.expires_at.as_ref())
                    })
                    .sum::<usize>()
        })
        .sum();
    let roster_rows: usize = observed.rosters.values().map(Vec::len).sum();
    let rosters: usize = observed
        .rosters
        .values()
        .map(|r| {
            slots(r)
                + r.iter()
                    .map(|e| {
                        text(&e.email)
                            + text(&e.role)
                            + maybe(e.submits_to.as_ref())
                            + maybe(e.forwards_to.as_ref())
                            + maybe(e.employee_id.as_ref())
                    })
                    .sum::<usize>()
        })
        .sum();
    let input = support::bench::world_input(&connector, &accesses, &observed, Timestamp::now());
    let planned = plan(input);
    let peak = peak_rss_kib("self");
    let changes: usize = slots(&planned.changes)
        + planned
            .changes
            .iter()
            .map(|c| {
                text(&c.policy_id)
                    + text(&c.policy_name)
                    + text(&c.email)
                    + maybe(c.old_role.as_ref())
                    + text(&c.manager_email)
                    + maybe(c.employee_id.as_ref())
                    + maybe(c.expect_submits_to.as_ref())
                    + maybe(c.old_submits_to.as_ref())
                    + maybe(c.old_employee_id.as_ref())
                    + text(&c.requested_by.namespace)
                    + text(&c.requested_by.name)
                    + text(&c.reason)
            })
            .sum::<usize>();
    let entries: usize = planned
        .objects
        .values()
        .map(|o| {
            slots(&o.new_entries)
                + slots(&o.ledger)
                + o.new_entries
                    .iter()
                    .chain(&o.ledger)
                    .map(entry_heap)
                    .sum::<usize>()
        })
        .sum();
    let result = changes + entries;
    let planning = usize::try_from(peak.saturating_sub(built) * 1024).expect("fits");
    println!(
        "memory   {memberships:>9} memberships ({policies} policies, {} changes, {roster_rows} roster rows): per membership, input {:.0} B (RSS) = desired {:.0} B + rosters {:.0} B counted; planning adds {:.0} B at its peak (RSS) = its result {:.0} B counted (changes {:.0} B, ledger entries {:.0} B) + working set {:.0} B; peak RSS {} (before the input {})",
        planned.changes.len(),
        kib_per(built.saturating_sub(before)),
        per(desired),
        per(rosters),
        per(planning),
        per(result),
        per(changes),
        per(entries),
        per(planning.saturating_sub(result)),
        mib(peak),
        mib(before),
    );
    println!(
        "memory   sizes inline: MemberSpec {} B, RosterEntry {} B, Change {} B, ManagedMember {} B, ObjectKey {} B, String {} B",
        size_of::<MemberSpec>(),
        size_of::<RosterEntry>(),
        size_of::<Change>(),
        size_of::<ManagedMember>(),
        size_of::<ObjectKey>(),
        size_of::<String>(),
    );
}
