//! Issue 20 item 5, the soak: cluster mode (two controller replicas sharing a Lease, the
//! API server double) against the Expensify simulator, on tokio's paused clock, so an hour
//! of operation takes minutes. Seeded random churn of PolicyAccess objects (create, edit,
//! delete with `Revoke` and `Orphan`, move to another policy, suspend the connector) under
//! faults: watch streams dropped and answered `410 Gone`, 5 % of status writes failing, the
//! Lease moving between the replicas every few minutes, Expensify answering 429 / body 503
//! / 500 to 10 % of requests.
//!
//! Judged after every step from the simulator's request log: nobody the operator did not
//! add is revoked, protected people are never touched, no request beyond Expensify's
//! windows (5 per 10 s, 20 per 60 s). At the end (faults off, a settle period): Expensify
//! is the desired state and every ledger entry matches it.
//!
//! The short run is part of `cargo test`; the long one: `SOAK_MINUTES=60 cargo test
//! --release --test soak -- --nocapture` (`SOAK_SEED` picks the churn; see
//! docs/development.md, "Soak").
//!
//! Timing: the controller schedules with `tokio::time`, so the paused clock jumps over
//! every wait. The lease manager compares `renewTime` with the wall clock, so a Lease
//! only moves when its holder hands it over (a replica stopped and replaced), never by
//! expiring; the churn's seed fixes what is done, not how the replicas interleave.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use expensify_operator::api::{ExpensifyConnector, PolicyAccess};
use expensify_operator::cluster::{self, ControllerSettings, LeaseSettings};
use expensify_operator::expensify::{ClientSettings, ExpensifyClients, Pacing, WindowLog};
use expensify_operator::simulator::{FaultConfig, SimulatorHandle};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::apiserver::{ApiServerDouble, FaultCounts, Kind};
use support::controller::{Running, run_controller};
use support::*;
use tokio::time::Instant;

const NAMESPACE: &str = "finance";
const SALES: &str = "F005BA11000099999";
const MARKETING: &str = "BA5EBA1187654321";
/// The policies the example seed's credentials administer.
const POLICIES: [&str; 5] = [FINANCE, ENGINEERING, SALES, CONTRACTORS, MARKETING];
/// Policy owners, the connector's `adminEmail` and its `protectedEmails`: never touched.
const PROTECTED: [&str; 6] = [
    "cfo@acme.example",
    "cto@acme.example",
    "vp-sales@acme.example",
    "cmo@acme.example",
    "it-admin@acme.example",
    "ceo@acme.example",
];
/// People already on the seed's policies whom the churn may ask for (their roles are
/// raised and given back).
const SEED_PEOPLE: [&str; 8] = [
    "alice@acme.example",
    "bob@acme.example",
    "mallory@acme.example",
    "readonly@acme.example",
    "dave@acme.example",
    "erin@acme.example",
    "frank@acme.example",
    "grace@acme.example",
];
/// People nobody has yet.
const NEW_PEOPLE: usize = 16;
const MAX_OBJECTS: usize = 12;
const LEASE: &str = "expensify-operator";

/// What a run is: its churn seed and how long it operates (simulated).
#[derive(Debug, Clone, Copy)]
struct SoakSettings {
    seed: u64,
    minutes: u64,
}

impl SoakSettings {
    /// `SOAK_SEED` and `SOAK_MINUTES` when set, else these.
    fn from_env(seed: u64, minutes: u64) -> Self {
        let read = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map_or(default, |v| v.parse().expect("a whole number"))
        };
        Self {
            seed: read("SOAK_SEED", seed),
            minutes: read("SOAK_MINUTES", minutes),
        }
    }
}

/// The people the churn may ask for.
fn pool() -> Vec<String> {
    (0..NEW_PEOPLE)
        .map(|i| format!("p{i:02}@acme.example"))
        .chain(SEED_PEOPLE.iter().map(|e| (*e).to_string()))
        .collect()
}

/// Each person is always asked for with the same role, so two objects asking for one
/// person never conflict; some differ from the seed's, so roles are raised and restored.
fn role_of(email: &str) -> &'static str {
    let sum: usize = email.bytes().map(usize::from).sum();
    ["user", "auditor", "admin", "user"][sum % 4]
}

#[derive(Debug, Clone)]
struct Object {
    policy: &'static str,
    members: BTreeSet<String>,
    orphan: bool,
    /// Asked to be deleted; gone from the model once the API server has it gone.
    deleted: bool,
}

/// What the churn asked for: the desired state.
#[derive(Debug, Default)]
struct Model {
    objects: BTreeMap<String, Object>,
    next_name: u32,
    suspended: bool,
    /// (policy, email) pairs an `Orphan` deletion let go of: the operator no longer owns
    /// them, so at the end they may be there or not.
    orphaned: BTreeSet<(String, String)>,
}

impl Model {
    /// (policy, email) -> role, for every live object.
    fn desired(&self) -> BTreeMap<(String, String), &'static str> {
        self.objects
            .values()
            .filter(|o| !o.deleted)
            .flat_map(|o| {
                o.members
                    .iter()
                    .map(|e| ((o.policy.to_string(), e.clone()), role_of(e)))
            })
            .collect()
    }
}

/// Tallies for the report.
#[derive(Debug, Default)]
struct Tally {
    steps: u64,
    actions: BTreeMap<&'static str, u64>,
    lease_moves: u64,
    compactions: u64,
    /// What each step did, printed when the run fails.
    history: Vec<String>,
}

/// One controller replica: its own Expensify clients (its own pacing, as a separate
/// process has), the chart's Lease settings.
fn start_replica(double: &ApiServerDouble, sim: &SimulatorHandle, identity: &str) -> Running {
    let settings = ControllerSettings {
        probes_addr: "127.0.0.1:0".parse().unwrap(),
        lease: Some(LeaseSettings {
            name: LEASE.into(),
            namespace: "default".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        }),
        debounce: Duration::from_millis(500),
        scope: cluster::Scope::AllNamespaces,
        watch_secrets: false,
        admission: Default::default(),
        allowed_webhooks: None,
    };
    let clients = ClientSettings {
        pacing: Pacing::default(),
        ..test_settings()
    };
    let expensify = Arc::new(ExpensifyClients::new(allowing(sim, clients)).unwrap());
    run_controller(&double.client(), settings, expensify)
}

async fn stop_replica((stop, task): Running) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the replica stops")
        .unwrap()
        .unwrap();
}

fn lease_holder(double: &ApiServerDouble) -> Option<String> {
    double
        .get(Kind::Lease, "default", LEASE)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Waits (simulated time) until `check` holds, at most `limit`.
async fn until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_connector(client: &kube::Client, endpoint: &str) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "expensify-credentials", "namespace": NAMESPACE},
        "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(ADMIN_SECRET)}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let connector: ExpensifyConnector = serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": NAMESPACE},
        "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "endpoint": endpoint,
                 "adminEmail": "it-admin@acme.example",
                 "protectedEmails": ["ceo@acme.example", "cfo@acme.example"],
                 "syncInterval": "2m",
                 // The churn deletes many objects at once now and then: not a mass
                 // revocation to block here.
                 "maxRevocationsPerSync": 1000}
    }))
    .unwrap();
    Api::<ExpensifyConnector>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &connector)
        .await
        .unwrap();
}

fn members_json(members: &BTreeSet<String>) -> Value {
    Value::Array(
        members
            .iter()
            .map(|e| json!({"email": e, "role": role_of(e)}))
            .collect(),
    )
}

fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn some_members(rng: &mut SmallRng, pool: &[String]) -> BTreeSet<String> {
    let count = rng.random_range(1..=5);
    (0..count).map(|_| pick(rng, pool).clone()).collect()
}

/// One step of churn, through the Kubernetes API as a person (or GitOps) would.
async fn churn(rng: &mut SmallRng, double: &ApiServerDouble, model: &mut Model, tally: &mut Tally) {
    let client = &double.client();
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), NAMESPACE);
    let pool = pool();
    let live: Vec<String> = model
        .objects
        .iter()
        .filter(|(_, o)| !o.deleted)
        .map(|(n, _)| n.clone())
        .collect();
    let roll = rng.random_range(0..100);
    let action = match roll {
        _ if live.len() < 3 => "create",
        0..30 if live.len() < MAX_OBJECTS => "create",
        48..60 => "delete",
        60..75 => "move",
        75..84 => "deletion-policy",
        84..90 => "suspend",
        // 0..48 (and 90..100) edit.
        _ => "edit",
    };
    *tally.actions.entry(action).or_default() += 1;
    let patch = |name: String, body: Value| {
        let accesses = accesses.clone();
        async move {
            accesses
                .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
                .unwrap();
        }
    };
    let what = match action {
        "create" => {
            let name = format!("access-{}", model.next_name);
            model.next_name += 1;
            let object = Object {
                policy: POLICIES[rng.random_range(0..POLICIES.len())],
                members: some_members(rng, &pool),
                orphan: rng.random_bool(0.4),
                deleted: false,
            };
            let access: PolicyAccess = serde_json::from_value(json!({
                "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": object.policy},
                         "deletionPolicy": if object.orphan { "Orphan" } else { "Revoke" },
                         "members": members_json(&object.members)}
            }))
            .unwrap();
            accesses
                .create(&PostParams::default(), &access)
                .await
                .unwrap();
            let what = format!("{name} {object:?}");
            model.objects.insert(name, object);
            what
        }
        "edit" => {
            let name = pick(rng, &live).clone();
            let object = model.objects.get_mut(&name).unwrap();
            let mut members = object.members.clone();
            let person = pick(rng, &pool).clone();
            if !members.remove(&person) {
                members.insert(person);
            }
            if rng.random_bool(0.3) {
                members = some_members(rng, &pool);
            }
            if members.is_empty() {
                members.insert(pick(rng, &pool).clone());
            }
            object.members = members;
            let body = json!({"spec": {"members": members_json(&object.members)}});
            let what = format!("{name} {object:?}");
            patch(name, body).await;
            what
        }
        "delete" => {
            let name = pick(rng, &live).clone();
            let object = model.objects.get_mut(&name).unwrap();
            object.deleted = true;
            if object.orphan {
                // What it asks for, and every entry it still holds (a release that has
                // not been made yet, on a suspended connector say): all let go of.
                let held = double
                    .get(Kind::Access, NAMESPACE, &name)
                    .map(|o| o["status"]["managedMembers"].clone());
                let entries = held
                    .iter()
                    .flat_map(|e| e.as_array().cloned().unwrap_or_default());
                let pairs = entries
                    .map(|e| {
                        let field = |f: &str| e[f].as_str().unwrap_or_default().to_string();
                        (field("policyID"), field("email"))
                    })
                    .chain(
                        object
                            .members
                            .iter()
                            .map(|e| (object.policy.to_string(), e.clone())),
                    );
                model.orphaned.extend(pairs);
            }
            accesses
                .delete(&name, &DeleteParams::default())
                .await
                .unwrap();
            name
        }
        "move" => {
            let name = pick(rng, &live).clone();
            let object = model.objects.get_mut(&name).unwrap();
            object.policy = POLICIES[rng.random_range(0..POLICIES.len())];
            let body = json!({"spec": {"policy": {"id": object.policy}}});
            let what = format!("{name} to {}", object.policy);
            patch(name, body).await;
            what
        }
        "deletion-policy" => {
            let name = pick(rng, &live).clone();
            let object = model.objects.get_mut(&name).unwrap();
            object.orphan = !object.orphan;
            let policy = if object.orphan { "Orphan" } else { "Revoke" };
            let what = format!("{name} {policy}");
            patch(name, json!({"spec": {"deletionPolicy": policy}})).await;
            what
        }
        "suspend" => {
            model.suspended = !model.suspended;
            set_suspended(client, model.suspended).await;
            format!("{}", model.suspended)
        }
        other => unreachable!("{other}"),
    };
    tally
        .history
        .push(format!("step {}: {action} {what}", tally.steps));
}

async fn set_suspended(client: &kube::Client, suspended: bool) {
    Api::<ExpensifyConnector>::namespaced(client.clone(), NAMESPACE)
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": suspended}})),
        )
        .await
        .unwrap();
}

/// Objects whose deletion the API server has finished leave the model.
fn forget_deleted(double: &ApiServerDouble, model: &mut Model) {
    model
        .objects
        .retain(|name, o| !o.deleted || double.get(Kind::Access, NAMESPACE, name).is_some());
}

/// Judges every request the simulator took in, in order, as it is logged.
struct Judge {
    next_seq: u64,
    /// Expensify's published windows, as the simulator enforces them, over every request
    /// (faulted ones too: they were sent).
    windows: WindowLog,
    /// When the first request came in: times in messages count from there.
    origin: Option<Instant>,
    /// Who is on each policy because the operator added them.
    added: BTreeSet<(String, String)>,
    violations: Vec<String>,
}

impl Judge {
    fn new() -> Self {
        Self {
            next_seq: 1,
            windows: WindowLog::new(&Pacing::default()),
            origin: None,
            added: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    fn observe(&mut self, sim: &SimulatorHandle) {
        let state = sim.state();
        let log = state.requests();
        if log.front().is_some_and(|r| r.seq > self.next_seq) {
            self.violations
                .push("the simulator's log dropped requests before they were judged".into());
        }
        let from = self.next_seq;
        for record in log.iter().filter(|r| r.seq >= from) {
            self.next_seq = record.seq + 1;
            let at = record.received_at;
            let origin = *self.origin.get_or_insert(at);
            if !self.windows.try_record(at) {
                let recent: Vec<String> = log
                    .iter()
                    .filter(|r| r.seq <= record.seq)
                    .filter(|r| at.duration_since(r.received_at) < Duration::from_secs(60))
                    .map(|r| {
                        let t = r.received_at.duration_since(origin).as_secs_f64();
                        format!("#{} {} at {t:.1} s", r.seq, r.job)
                    })
                    .collect();
                self.violations.push(format!(
                    "request {} ({}) went beyond Expensify's windows; the last minute: {recent:?}",
                    record.seq, record.job
                ));
            }
            for change in &record.changes {
                let pair = (change.policy_id.clone(), change.email.clone());
                if PROTECTED.contains(&change.email.as_str()) {
                    self.violations
                        .push(format!("request {}: protected {change:?}", record.seq));
                }
                match (change.before, change.after) {
                    (None, Some(_)) => {
                        self.added.insert(pair);
                    }
                    (Some(_), None) if !self.added.remove(&pair) => {
                        self.violations.push(format!(
                            "request {}: revoked someone the operator did not add: {change:?}",
                            record.seq
                        ));
                    }
                    _ => {}
                }
            }
        }
    }

    fn assert_clean(&self, settings: SoakSettings, history: &[String]) {
        assert!(
            self.violations.is_empty(),
            "seed {}: {} violation(s): {:#?}\nhistory: {history:#?}",
            settings.seed,
            self.violations.len(),
            &self.violations[..self.violations.len().min(20)]
        );
    }
}

type Rosters = BTreeMap<String, BTreeMap<String, String>>;

fn rosters(sim: &SimulatorHandle) -> Rosters {
    POLICIES
        .iter()
        .map(|p| (p.to_string(), roster(sim, p).into_iter().collect()))
        .collect()
}

/// What is wrong with the end state, if anything: Expensify against the desired state,
/// and every ledger entry against Expensify.
fn end_state_problems(
    double: &ApiServerDouble,
    sim: &SimulatorHandle,
    model: &Model,
    seed: &Rosters,
) -> Vec<String> {
    let mut problems = Vec::new();
    let now = rosters(sim);
    let desired = model.desired();
    let on = |p: &str, e: &str| now.get(p).and_then(|r| r.get(e)).map(String::as_str);
    let in_seed = |p: &str, e: &str| seed.get(p).and_then(|r| r.get(e)).map(String::as_str);
    for ((policy, email), role) in &desired {
        if on(policy, email) != Some(role) {
            problems.push(format!(
                "{email} on {policy}: asked as {role}, Expensify has {:?}",
                on(policy, email)
            ));
        }
    }
    for (policy, people) in &now {
        for (email, role) in people {
            let pair = (policy.clone(), email.clone());
            if desired.contains_key(&pair) || model.orphaned.contains(&pair) {
                continue;
            }
            if in_seed(policy, email) != Some(role.as_str()) {
                problems.push(format!(
                    "{email} on {policy} as {role}: nobody asks, and the seed had {:?}",
                    in_seed(policy, email)
                ));
            }
        }
    }
    for (policy, people) in seed {
        for email in people.keys() {
            if on(policy, email).is_none() {
                problems.push(format!("{email} (seed) is gone from {policy}"));
            }
        }
    }
    let mut owned = BTreeSet::new();
    for object in double.list(Kind::Access) {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if object["metadata"]["deletionTimestamp"].is_string() {
            problems.push(format!("{name}: deletion not settled"));
        }
        let status = &object["status"];
        if status["observedGeneration"] != object["metadata"]["generation"]
            || status["phase"] != "Synced"
        {
            problems.push(format!(
                "{name}: {} at generation {} (observed {})",
                status["phase"], object["metadata"]["generation"], status["observedGeneration"]
            ));
        }
        let claimant = model.objects.get(name).filter(|o| !o.deleted);
        for entry in status["managedMembers"].as_array().into_iter().flatten() {
            let policy = entry["policyID"].as_str().unwrap_or_default();
            let email = entry["email"].as_str().unwrap_or_default();
            let pair = (policy.to_string(), email.to_string());
            if entry["pending"] == true {
                problems.push(format!("{name}: entry still pending: {entry}"));
            }
            if on(policy, email) != entry["role"].as_str() {
                problems.push(format!(
                    "{name}: entry {entry} but Expensify has {:?}",
                    on(policy, email)
                ));
            }
            if !claimant.is_some_and(|o| o.policy == policy && o.members.contains(email)) {
                problems.push(format!("{name} holds {entry} without asking for it"));
            }
            if entry["added"] == true && in_seed(policy, email).is_some() {
                problems.push(format!("{name}: {entry} says added, the seed had them"));
            }
            if let Some(previous) = entry["previousRole"].as_str()
                && in_seed(policy, email) != Some(previous)
                && !model.orphaned.contains(&pair)
            {
                problems.push(format!(
                    "{name}: {entry}, the seed had {:?}",
                    in_seed(policy, email)
                ));
            }
            if !owned.insert(pair) {
                problems.push(format!("{name}: a second entry for {policy}/{email}"));
            }
        }
    }
    for ((policy, email), role) in &desired {
        let pair = (policy.clone(), email.clone());
        if in_seed(policy, email) != Some(role)
            && !model.orphaned.contains(&pair)
            && !owned.contains(&pair)
        {
            problems.push(format!(
                "{email} on {policy} as {role}: the operator's change has no ledger entry"
            ));
        }
    }
    problems
}

/// Ten percent of Expensify's answers are faults, a third each of 429, body 503 and 500.
fn expensify_faults(seed: u64) -> FaultConfig {
    let third = 0.1 / 3.0;
    FaultConfig {
        rate_limit_probability: third,
        body503_probability: third,
        http500_probability: third,
        seed,
        ..FaultConfig::default()
    }
}

/// Moves the Lease to the other replica, as a rolling restart does: the leader stops (and
/// hands the Lease over), the other replica restarts and takes it, then the old leader's
/// replacement starts beside it. (A standby that kept running would only see the Lease
/// free once its cached expiry passed on the wall clock, which the paused clock never
/// reaches.)
async fn move_lease(
    double: &ApiServerDouble,
    sim: &SimulatorHandle,
    replicas: &mut BTreeMap<String, Running>,
) {
    let holder = lease_holder(double).expect("a replica holds the lease");
    let other = replicas
        .keys()
        .find(|k| **k != holder)
        .expect("two replicas")
        .clone();
    stop_replica(replicas.remove(&holder).expect("the holder runs")).await;
    stop_replica(replicas.remove(&other).expect("the standby runs")).await;
    replicas.insert(other.clone(), start_replica(double, sim, &other));
    until(
        "the other replica to take the lease",
        Duration::from_secs(120),
        || lease_holder(double).as_deref() == Some(other.as_str()),
    )
    .await;
    replicas.insert(holder.clone(), start_replica(double, sim, &holder));
}

/// Runs the soak and returns its report; panics with the seed on any violation.
async fn soak(settings: SoakSettings) -> String {
    let real_start = std::time::Instant::now();
    let started = Instant::now();
    let double = ApiServerDouble::start().await;
    let client = double.client();
    let sim = start(&example_seed()).await;
    let seed_rosters = rosters(&sim);
    let mut rng = SmallRng::seed_from_u64(settings.seed);
    let mut replicas = BTreeMap::new();
    for identity in ["replica-a", "replica-b"] {
        replicas.insert(identity.to_string(), start_replica(&double, &sim, identity));
    }
    until(
        "a replica to hold the lease",
        Duration::from_secs(120),
        || lease_holder(&double).is_some(),
    )
    .await;
    create_connector(&client, &sim.endpoint()).await;

    sim.state().set_faults(expensify_faults(settings.seed));
    double.fail_status_writes(0.05, settings.seed);
    let mut model = Model::default();
    let mut tally = Tally::default();
    let mut judge = Judge::new();
    let end = started + Duration::from_secs(settings.minutes * 60);
    let mut next_lease_move = Instant::now() + Duration::from_secs(rng.random_range(120..=300));
    while Instant::now() < end {
        tally.steps += 1;
        churn(&mut rng, &double, &mut model, &mut tally).await;
        if rng.random_bool(0.15) {
            double.drop_watches();
        }
        if rng.random_bool(0.08) {
            tally.compactions += 1;
            double.compact();
            double.drop_watches();
        }
        if Instant::now() >= next_lease_move {
            move_lease(&double, &sim, &mut replicas).await;
            tally.lease_moves += 1;
            tally.history.push(format!(
                "step {}: the lease moved to {:?} at {:.1} s",
                tally.steps,
                lease_holder(&double),
                Instant::now().duration_since(started).as_secs_f64()
            ));
            next_lease_move = Instant::now() + Duration::from_secs(rng.random_range(120..=300));
        }
        tokio::time::sleep(Duration::from_secs(rng.random_range(2..=40))).await;
        forget_deleted(&double, &mut model);
        judge.observe(&sim);
        judge.assert_clean(settings, &tally.history);
    }
    let churned = Instant::now();

    // Faults off, the connector running: everything settles.
    let counters_with_faults = sim.state().counters().clone();
    sim.state().set_faults(FaultConfig::default());
    double.fail_status_writes(0.0, 0);
    if model.suspended {
        model.suspended = false;
        set_suspended(&client, false).await;
    }
    let mut problems = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        forget_deleted(&double, &mut model);
        judge.observe(&sim);
        judge.assert_clean(settings, &tally.history);
        problems = end_state_problems(&double, &sim, &model, &seed_rosters);
        if problems.is_empty() {
            break;
        }
    }
    assert!(
        problems.is_empty(),
        "seed {}: not settled 30 minutes after the churn: {problems:#?}\nhistory: {:#?}",
        settings.seed,
        tally.history
    );
    let settled = Instant::now();
    for replica in std::mem::take(&mut replicas).into_values() {
        stop_replica(replica).await;
    }

    let counters = sim.state().counters().clone();
    let FaultCounts {
        watches_dropped,
        watches_gone,
        status_writes_failed,
    } = double.fault_counts();
    let (kube_requests, status_writes) = double.counts();
    format!(
        "soak seed {seed}: {steps} steps over {churn_min:.0} simulated minutes (+{settle_s:.0} s to settle), {real:.1} s real\n\
         churn: {actions:?}; objects at the end: {objects}\n\
         faults: Expensify {faults:?} of {faulted_total} requests; watches dropped {watches_dropped} (compactions {compactions}, 410 Gone answered {watches_gone}); status writes failed {status_writes_failed} of {status_total}; lease moves {lease_moves}\n\
         Expensify calls: {calls} {by_job:?}; Kubernetes API requests: {kube_requests}",
        seed = settings.seed,
        steps = tally.steps,
        churn_min = churned.duration_since(started).as_secs_f64() / 60.0,
        settle_s = settled.duration_since(churned).as_secs_f64(),
        real = real_start.elapsed().as_secs_f64(),
        actions = tally.actions,
        objects = model.objects.len(),
        faults = counters_with_faults.faults,
        faulted_total = counters_with_faults.requests,
        compactions = tally.compactions,
        status_total = status_writes + status_writes_failed,
        lease_moves = tally.lease_moves,
        calls = counters.requests,
        by_job = counters.by_job,
    )
}

/// The short soak, in every `cargo test`: fifteen simulated minutes (three or four Lease
/// moves). `SOAK_MINUTES` / `SOAK_SEED` make it the long one.
#[tokio::test(start_paused = true)]
async fn soak_under_churn_and_faults() {
    let report = soak(SoakSettings::from_env(7, 15)).await;
    println!("{report}");
}

/// A seed that finds a new leader calling Expensify at once after a Lease hand-over, in
/// the windows where the old leader's last calls still count (seeds 2, 4 and 6 of the
/// first six did, each on every run; 2 at its first move, ~210 s in). Fixed by holding a
/// new term's calls for one rate window when the Lease had another holder before
/// (`ExpensifyClients::hold_after_handover`).
#[tokio::test(start_paused = true)]
async fn soak_seed_2_a_new_leader_waits_out_the_old_leader_s_windows() {
    let report = soak(SoakSettings {
        seed: 2,
        minutes: 10,
    })
    .await;
    println!("{report}");
}

/// The judges catch what they are there for, so a green soak means something: a seed
/// member revoked, a protected person touched and a burst beyond the windows are
/// violations; an asked-for person missing and a grant without a ledger entry are
/// end-state problems.
#[tokio::test(start_paused = true)]
async fn the_judges_see_what_they_must() {
    use expensify_operator::expensify::{EmployeeRecord, Role};
    let double = ApiServerDouble::start().await;
    let sim = start(&unlimited_seed()).await;
    let seed = rosters(&sim);
    let admin = admin_client(&sim);
    let mut judge = Judge::new();
    let granted = admin
        .update_employees(
            &[
                EmployeeRecord::grant(
                    "p01@acme.example",
                    FINANCE,
                    Role::User,
                    "cfo@acme.example",
                    None,
                ),
                EmployeeRecord::revoke("p01@acme.example", FINANCE, "cfo@acme.example", None),
            ],
            false,
        )
        .await;
    assert!(granted.failed.is_empty());
    judge.observe(&sim);
    assert_eq!(
        judge.violations,
        Vec::<String>::new(),
        "the operator's own add, taken back"
    );
    admin
        .update_employees(
            &[
                EmployeeRecord::revoke("alice@acme.example", FINANCE, "cfo@acme.example", None),
                EmployeeRecord::grant(
                    "ceo@acme.example",
                    FINANCE,
                    Role::User,
                    "cfo@acme.example",
                    None,
                ),
            ],
            false,
        )
        .await;
    for _ in 0..4 {
        admin.list_policies(false).await.unwrap();
    }
    judge.observe(&sim);
    let found = judge.violations.join("\n");
    assert!(
        found.contains("did not add") && found.contains("alice@acme.example"),
        "{found}"
    );
    assert!(
        found.contains("protected") && found.contains("ceo@acme.example"),
        "{found}"
    );
    assert!(found.contains("beyond Expensify's windows"), "{found}");

    let mut model = Model::default();
    model.objects.insert(
        "access-0".into(),
        Object {
            policy: FINANCE,
            members: [
                "p02@acme.example".to_string(),
                "ceo@acme.example".to_string(),
            ]
            .into(),
            orphan: false,
            deleted: false,
        },
    );
    let problems = end_state_problems(&double, &sim, &model, &seed).join("\n");
    assert!(
        problems.contains("p02@acme.example on F1E2D3C4B5A69788: asked as"),
        "{problems}"
    );
    assert!(
        problems.contains("alice@acme.example (seed) is gone"),
        "{problems}"
    );
    assert!(
        problems.contains("ceo@acme.example on F1E2D3C4B5A69788 as user: the operator's change has no ledger entry"),
        "{problems}"
    );
}
