//! Planning 500 policies x 10,000 memberships (target < 50 ms). `cargo bench --bench plan`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use expensify_operator::reconcile::plan;
use k8s_openapi::jiff::Timestamp;

const POLICIES: usize = 500;
const MEMBERS: usize = 20;

#[path = "../tests/support/mod.rs"]
mod support;

fn benches(c: &mut Criterion) {
    let (connector, accesses, observed) = support::bench::planner_world(POLICIES, MEMBERS);
    let now = Timestamp::now();
    let input = support::bench::world_input(&connector, &accesses, &observed, now);
    let result = plan(input);
    eprintln!(
        "plan of {POLICIES} policies x {} desired memberships: {} changes ({:?})",
        POLICIES * MEMBERS,
        result.changes.len(),
        result.summary()
    );
    c.bench_function("plan_500_policies_10000_memberships", |b| {
        b.iter(|| black_box(plan(black_box(input))));
    });
}

criterion_group!(planning, benches);
criterion_main!(planning);
