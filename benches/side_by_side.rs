//! Side by side with the anchor: the connector this project grows from reads one policy
//! roster per call; ours reads rosters in chunks. Both read the same simulated
//! organisation (50, 500 and 2,000 policies x 20 members) under Expensify's published
//! limits (5 requests per 10 s, 20 per 60 s), enforced by the simulator and respected by
//! the client's pacing, on a paused clock: the simulated wall time is what a real sync
//! would wait, the run itself takes seconds. `cargo bench --bench side_by_side`.
//!
//! Printed: Expensify calls per full read, simulated wall time, and the ratios. Nothing
//! is asserted about time (figures are measured, not tested); a 429 served by the
//! simulator, which would mean the pacing failed, stops the bench.

use std::time::Duration;

use expensify_operator::expensify::{ClientSettings, ExpensifyClient, Pacing, Role};
use expensify_operator::simulator::{Seed, SeedAccount, SeedEmployee, SeedPolicy};

#[path = "../tests/support/mod.rs"]
mod support;

const MEMBERS: usize = 20;
const SIZES: [usize; 3] = [50, 500, 2_000];

fn organisation(policies: usize) -> Seed {
    let mut seed = support::example_seed();
    seed.accounts
        .retain(|a| a.partner_user_id == support::ADMIN_ID);
    let admin: &SeedAccount = &seed.accounts[0];
    let admin_email = admin.email.clone();
    seed.policies = (0..policies)
        .map(|p| SeedPolicy {
            id: format!("SB{p:014X}"),
            name: format!("Policy {p}"),
            plan: "corporate".into(),
            owner: admin_email.clone(),
            output_currency: "USD".into(),
            employees: (0..MEMBERS)
                .map(|m| SeedEmployee {
                    email: format!("person{m}.{p}@bench.example"),
                    role: [Role::User, Role::Auditor, Role::Admin][m % 3],
                    submits_to: None,
                    employee_id: None,
                })
                .collect(),
        })
        .collect();
    // The published limits, enforced by the simulator on the same (paused) clock.
    seed.rate_limits = Default::default();
    seed
}

/// One full read, and what it cost: calls and simulated time.
struct Read {
    calls: u64,
    simulated: Duration,
    rosters: usize,
}

async fn read_all(client: &ExpensifyClient, per_policy: bool) -> Read {
    let start = tokio::time::Instant::now();
    let before = client.counts().total();
    let policies = client.list_policies(true).await.expect("policy list");
    let ids: Vec<String> = policies.iter().map(|p| p.id.clone()).collect();
    let mut rosters = 0;
    if per_policy {
        for id in &ids {
            rosters += client
                .read_rosters(std::slice::from_ref(id))
                .await
                .expect("roster read")
                .len();
        }
    } else {
        rosters = client.read_rosters(&ids).await.expect("roster read").len();
    }
    Read {
        calls: client.counts().total() - before,
        simulated: start.elapsed(),
        rosters,
    }
}

fn minutes(d: Duration) -> String {
    if d < Duration::from_secs(120) {
        format!("{:.0} s", d.as_secs_f64())
    } else {
        format!("{:.1} min", d.as_secs_f64() / 60.0)
    }
}

/// How many times longer theirs takes; "no wait" when ours never waited for pacing.
fn time_ratio(theirs: Duration, ours: Duration) -> String {
    if ours < Duration::from_secs(1) {
        "ours: no wait".to_string()
    } else {
        format!("{:.0}x", theirs.as_secs_f64() / ours.as_secs_f64())
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("side_by_side: bench");
        return;
    }
    println!(
        "| policies x members | per-policy reader: calls | its simulated time | ours: calls | our simulated time | calls ratio | time ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for policies in SIZES {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let sim = support::start(&organisation(policies)).await;
            let settings = ClientSettings {
                pacing: Pacing::default(),
                ..support::test_settings()
            };
            let mut reads = Vec::new();
            for per_policy in [true, false] {
                // A fresh client per reader: each starts with an empty pacing window.
                let client = support::client_with(
                    &sim,
                    settings.clone(),
                    support::ADMIN_ID,
                    support::ADMIN_SECRET,
                );
                tokio::time::advance(Duration::from_secs(120)).await;
                let read = read_all(&client, per_policy).await;
                assert_eq!(read.rosters, policies, "every roster read");
                assert_eq!(
                    sim.state().counters().rate_limited,
                    0,
                    "no 429 served: pacing held"
                );
                reads.push(read);
            }
            let (theirs, ours) = (&reads[0], &reads[1]);
            println!(
                "| {policies} x {MEMBERS} | {} | {} | {} | {} | {:.0}x | {} |",
                theirs.calls,
                minutes(theirs.simulated),
                ours.calls,
                minutes(ours.simulated),
                theirs.calls as f64 / ours.calls as f64,
                time_ratio(theirs.simulated, ours.simulated),
            );
        });
    }
}
