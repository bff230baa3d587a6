//! Client + simulator on loopback: round trips per second, and what a read of 500
//! policies costs in calls and time. Run with `cargo bench --bench client`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use expensify_operator::expensify::{
    AllowedEndpoints, ClientSettings, Credentials, ExpensifyClient, ExpensifyClients, Pacing, Role,
};
use expensify_operator::simulator::{
    self, Seed, SeedAccount, SeedEmployee, SeedPolicy, SimulatorHandle,
};

const ID: &str = "aa_bench";
const SECRET: &str = "bench-only-secret";

/// 500 policies of 20 people each, owned and administered by the bench account.
fn seed() -> Seed {
    let policies = (0..500)
        .map(|p| SeedPolicy {
            id: format!("BE{p:014X}"),
            name: format!("Policy {p}"),
            plan: "corporate".into(),
            owner: "owner@bench.example".into(),
            output_currency: "USD".into(),
            employees: std::iter::once(SeedEmployee {
                email: "admin@bench.example".into(),
                role: Role::Admin,
                submits_to: None,
                employee_id: None,
            })
            .chain((0..19).map(|e| SeedEmployee {
                email: format!("person{e}@bench.example"),
                role: Role::User,
                submits_to: None,
                employee_id: None,
            }))
            .collect(),
        })
        .collect();
    let mut seed = Seed {
        accounts: vec![SeedAccount {
            partner_user_id: ID.into(),
            partner_user_secret: SECRET.into(),
            email: "admin@bench.example".into(),
            domain_admin: true,
        }],
        policies,
        ..Seed::default()
    };
    seed.rate_limits.enabled = false;
    seed
}

fn setup(rt: &tokio::runtime::Runtime) -> (SimulatorHandle, ExpensifyClient) {
    rt.block_on(async {
        let sim = simulator::start(&seed(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let settings = ClientSettings {
            pacing: Pacing::unlimited(),
            allowed_endpoints: AllowedEndpoints::only(&sim.endpoint()).unwrap(),
            ..ClientSettings::default()
        };
        let client = ExpensifyClients::new(settings)
            .unwrap()
            .client(&sim.endpoint(), Credentials::new(ID, SECRET).unwrap())
            .unwrap();
        (sim, client)
    })
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sim, client) = setup(&rt);

    let mut group = c.benchmark_group("loopback_round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("policy_list_500", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(client.list_policies(false).await.unwrap()) });
    });
    let one = vec!["BE00000000000000".to_string()];
    group.bench_function("roster_read_1_policy", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(client.read_rosters(&one).await.unwrap()) });
    });
    group.finish();

    // The calls a full read takes: 1 list + ceil(500 / chunk) roster reads.
    let before = client.counts();
    let ids: Vec<String> = rt.block_on(async {
        let ids: Vec<String> = client
            .list_policies(true)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        client.read_rosters(&ids).await.unwrap();
        ids
    });
    let after = client.counts();
    eprintln!(
        "read of {} policies: {} policyList call(s) + {} roster call(s) = {} calls (chunk {})",
        ids.len(),
        after.policy_list - before.policy_list,
        after.roster_reads - before.roster_reads,
        after.total() - before.total(),
        ClientSettings::default().roster_chunk_size,
    );

    let mut group = c.benchmark_group("full_read");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("list_and_rosters_500_policies_x_20", |b| {
        b.to_async(&rt).iter(|| async {
            let ids: Vec<String> = client
                .list_policies(true)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.id)
                .collect();
            black_box(client.read_rosters(&ids).await.unwrap())
        });
    });
    group.finish();
    drop(sim);
}

criterion_group!(client, benches);
criterion_main!(client);
