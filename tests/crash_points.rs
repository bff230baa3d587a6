//! Crash points (issue 20, item 6): the process dies at a named point of a sync, and the
//! next run converges with no lost ownership and no duplicate change.
//!
//! File mode runs the real binary (`apply`, status files signed, an anchor outside the
//! repository) with `FAILPOINTS=NAME=panic` (unwinding) or `NAME=return` (the process
//! exits at once, no destructor runs), then `apply` again without it. Cluster mode runs
//! the controller on the API server double; it panics at the point, and a fresh controller
//! on the same double takes over. After each crash and rerun:
//! - **converges**: Expensify shows what the manifests ask for, and a `plan` finds nothing;
//! - **no lost ownership**: every person the operator added or raised is in the ledger,
//!   confirmed, so deleting the PolicyAccess objects returns Expensify to where it began;
//! - **no duplicate change**: the simulator applied each change exactly once (one
//!   employee-updater call for the grants, one record per change).
//!
//! Needs the `failpoints` feature: `cargo test --features failpoints --test crash_points`.

mod support;

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use expensify_operator::api::{AccessPhase, ExpensifyConnector, ManagedMember, PolicyAccess};
use expensify_operator::cluster::{self, ControllerSettings};
use expensify_operator::files::StatusDir;
use expensify_operator::files::status_signing::StatusKey;
use expensify_operator::reconcile::ObjectKey;
use expensify_operator::simulator::SimulatorHandle;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::apiserver::ApiServerDouble;
use support::controller::{Running, eventually};
use support::*;

/// The points a sync passes once: each is hit by the first apply of a stage.
const SYNC_POINTS: [&str; 3] = [
    "sync-after-write-ahead",
    "sync-after-employee-updater",
    "sync-before-final-statuses",
];

/// The points of the signed status directory, each met several times in a pass.
const STATUS_DIR_POINTS: [&str; 4] = [
    "status-dir-after-file",
    "status-dir-before-index",
    "status-dir-before-anchor",
    "status-dir-before-file-removal",
];

/// Cluster mode's own points, around the status patches.
const CLUSTER_POINTS: [&str; 2] = [
    "cluster-after-write-ahead-patch",
    "cluster-before-final-status-patch",
];

/// What the manifests ask for: two grants and one role raised, on two policies, made by
/// two objects (so a pass writes several status files).
const WANTED: [(&str, &str, &str); 3] = [
    (FINANCE, "new@acme.example", "auditor"),
    (FINANCE, "alice@acme.example", "auditor"),
    (CONTRACTORS, "temp@acme.example", "user"),
];

/// Records the employee updater applies for the grants (and again for their release).
const CHANGES: u64 = WANTED.len() as u64;

type Rosters = BTreeMap<(String, String), String>;

/// Employee-updater calls made when the process died at `point` in `stage`, where the
/// point says it for sure: before the stage's write, or after it.
fn updates_at_crash(point: &str, stage: Stage) -> Option<u64> {
    let before = match stage {
        Stage::Grant => 0,
        Stage::Release => 1,
    };
    match point {
        "sync-after-write-ahead" | "cluster-after-write-ahead-patch" => Some(before),
        "sync-after-employee-updater"
        | "sync-before-final-statuses"
        | "cluster-before-final-status-patch" => Some(before + 1),
        _ => None,
    }
}

/// `(policy, email) -> role` of the two policies the objects touch.
fn rosters(sim: &SimulatorHandle) -> Rosters {
    [FINANCE, CONTRACTORS]
        .into_iter()
        .flat_map(|policy| {
            roster(sim, policy)
                .into_iter()
                .map(move |(email, role)| ((policy.to_string(), email), role))
        })
        .collect()
}

/// `original` with what the manifests ask for.
fn granted(original: &Rosters) -> Rosters {
    let mut wanted = original.clone();
    for (policy, email, role) in WANTED {
        wanted.insert((policy.to_string(), email.to_string()), role.to_string());
    }
    wanted
}

fn records_applied(sim: &SimulatorHandle) -> u64 {
    sim.state().counters().records_applied
}

/// Every entry the manifests' changes call for is in the ledger, confirmed: the added
/// people as added, alice with the role she had before.
fn assert_owned(ledger: &[ManagedMember], context: &str) {
    for (policy, email, role) in WANTED {
        let entry = ledger
            .iter()
            .find(|e| e.policy_id == policy && e.email == email)
            .unwrap_or_else(|| {
                panic!("{context}: {email} on {policy} is not in the ledger: {ledger:?}")
            });
        assert!(!entry.pending, "{context}: {entry:?} still pending");
        assert_eq!(entry.role.as_deref(), Some(role), "{context}: {entry:?}");
        if email == "alice@acme.example" {
            assert!(!entry.added, "{context}: {entry:?}");
            assert_eq!(entry.previous_role.as_deref(), Some("user"), "{context}");
        } else {
            assert!(entry.added, "{context}: {entry:?}");
        }
    }
}

/// Which run of a world the crash hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The first apply: the grants and the role raised.
    Grant,
    /// The apply after both manifests are deleted: the releases.
    Release,
}

const STAGES: [Stage; 2] = [Stage::Grant, Stage::Release];

// ---------------------------------------------------------------- file mode

/// A repository with the connector and two PolicyAccess objects, status files signed with
/// a key from a secrets directory, the anchor in a directory of its own.
struct FileWorld {
    sim: SimulatorHandle,
    repo: Repo,
    secrets: tempfile::TempDir,
    anchor: tempfile::TempDir,
    original: Rosters,
}

impl FileWorld {
    async fn new() -> Self {
        let sim = start(&unlimited_seed()).await;
        let repo = Repo::new(&sim);
        repo.connector("");
        repo.access(
            "team",
            FINANCE,
            "Additive",
            "    - {email: new@acme.example, role: auditor}\n    - {email: alice@acme.example, role: auditor}\n",
        );
        repo.access(
            "crew",
            CONTRACTORS,
            "Additive",
            "    - {email: temp@acme.example}\n",
        );
        let original = rosters(&sim);
        FileWorld {
            sim,
            repo,
            secrets: secrets_with_status_key(),
            anchor: tempfile::tempdir().unwrap(),
            original,
        }
    }

    /// `command` on the repository, with `failpoints` set when given.
    async fn run(&self, command: &str, failpoints: Option<&str>) -> Output {
        let anchor = self.anchor.path().join("status-anchor");
        let args = [
            command,
            self.repo.path().to_str().unwrap(),
            "--secrets-dir",
            self.secrets.path().to_str().unwrap(),
            "--status-anchor",
            anchor.to_str().unwrap(),
        ];
        let mut binary = binary(&self.sim.endpoint(), &args, ADMIN_SECRET);
        binary
            .env_remove("EXPENSIFY_UNSIGNED_STATUS")
            .env_remove("FAILPOINTS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(failpoints) = failpoints {
            binary.env("FAILPOINTS", failpoints);
        }
        tokio::time::timeout(Duration::from_secs(120), binary.output())
            .await
            .expect("the command ends")
            .unwrap()
    }

    /// `apply` without crash points: it must succeed.
    async fn apply(&self, context: &str) {
        let applied = self.run("apply", None).await;
        assert_eq!(
            applied.status.code(),
            Some(0),
            "{context}: {}",
            printed(&applied)
        );
    }

    /// `apply` with `failpoints`: whether it died at the point (and not otherwise).
    async fn apply_crashing(&self, point: &str, failpoints: &str) -> bool {
        let crashed = self.run("apply", Some(failpoints)).await;
        match crashed.status.code() {
            Some(0) => false,
            // `return`: the point exits the process at once.
            Some(70) => true,
            // `panic`: the fail crate's message names the point.
            Some(101) => {
                let text = printed(&crashed);
                assert!(
                    text.contains(&format!("failpoint {point} panic")),
                    "{failpoints}: died elsewhere: {text}"
                );
                true
            }
            other => panic!("{failpoints}: exit {other:?}: {}", printed(&crashed)),
        }
    }

    /// The ledger of both objects as their status files hold it, verified with the key.
    fn ledger(&self) -> Vec<ManagedMember> {
        let key_file = self.secrets.path().join("expensify-status-key/key");
        let key = StatusKey::new(&std::fs::read(key_file).unwrap()).unwrap();
        let status_dir = StatusDir::signed(self.repo.path().join(".expensify-status"), key, false);
        ["team", "crew"]
            .into_iter()
            .filter_map(|name| {
                status_dir
                    .read::<PolicyAccess>(&ObjectKey::new("finance", name))
                    .unwrap_or_else(|e| panic!("the status of {name} verifies: {e}"))
            })
            .flat_map(|object| object.status.unwrap_or_default().managed_members)
            .collect()
    }

    fn delete_accesses(&self) {
        self.repo.remove("team.yaml");
        self.repo.remove("crew.yaml");
    }

    /// A `plan` finds nothing left to do (exit 0).
    async fn assert_in_sync(&self, context: &str) {
        let planned = self.run("plan", None).await;
        assert_eq!(
            planned.status.code(),
            Some(0),
            "{context}: {}",
            printed(&planned)
        );
    }

    /// Expensify shows the grants, each applied once, and the ledger owns them.
    async fn assert_granted(&self, context: &str) {
        assert_eq!(rosters(&self.sim), granted(&self.original), "{context}");
        assert_eq!(updates(&self.sim), 1, "{context}: employee-updater calls");
        assert_eq!(records_applied(&self.sim), CHANGES, "{context}: records");
        assert_owned(&self.ledger(), context);
        self.assert_in_sync(context).await;
    }

    /// Expensify is back where it began, each release applied once, the ledger empty.
    async fn assert_released(&self, context: &str) {
        assert_eq!(rosters(&self.sim), self.original, "{context}");
        assert_eq!(
            records_applied(&self.sim),
            2 * CHANGES,
            "{context}: records"
        );
        assert!(self.ledger().is_empty(), "{context}: {:?}", self.ledger());
        self.assert_in_sync(context).await;
    }
}

/// A fresh world whose `stage` apply runs with `failpoints`; then `apply` again without,
/// and the end state checked. Whether the process died at `point`.
async fn file_crash(stage: Stage, point: &str, failpoints: &str) -> bool {
    let world = FileWorld::new().await;
    let context = format!("{stage:?} stage, FAILPOINTS={failpoints}");
    if stage == Stage::Release {
        world.apply(&context).await;
        world.assert_granted(&context).await;
        world.delete_accesses();
    }
    let crashed = world.apply_crashing(point, failpoints).await;
    if let Some(expected) = updates_at_crash(point, stage) {
        assert_eq!(updates(&world.sim), expected, "{context}: died elsewhere");
    }
    world.apply(&context).await;
    match stage {
        Stage::Grant => {
            world.assert_granted(&context).await;
            // No lost ownership: the ledger takes back everything it gave.
            world.delete_accesses();
            world.apply(&context).await;
            world.assert_released(&context).await;
        }
        Stage::Release => world.assert_released(&context).await,
    }
    crashed
}

/// Each point, both ways of dying, in each of `stages`: the crash happens, the rerun
/// converges.
async fn file_points(points: &[&str], stages: &[Stage]) {
    for point in points {
        for &stage in stages {
            for action in ["panic", "return"] {
                let failpoints = format!("{point}={action}");
                assert!(
                    file_crash(stage, point, &failpoints).await,
                    "{stage:?}: {failpoints} was never reached"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn file_mode_converges_after_a_crash_at_each_sync_point() {
    file_points(&SYNC_POINTS, &STAGES).await;
}

/// Each status-directory point at its 1st, 2nd, ... hit in an apply (`N*off->ACTION`),
/// both ways of dying, both stages, until an apply no longer meets it: between two status
/// files, between a file and the signed index (the index written before the first file of
/// a fresh directory, and at the end of each connector's pass), between the index and its
/// anchor, and between a removal recorded in the index and its file deleted.
#[tokio::test(flavor = "multi_thread")]
async fn file_mode_converges_after_a_crash_at_every_status_directory_write() {
    for point in STATUS_DIR_POINTS {
        for stage in STAGES {
            let mut crashes = 0;
            for action in ["panic", "return"] {
                for hits_before in 0..30 {
                    let failpoints = format!("{point}={hits_before}*off->{action}");
                    if !file_crash(stage, point, &failpoints).await {
                        break;
                    }
                    crashes += 1;
                    assert!(hits_before < 29, "{point}: never stopped firing");
                }
            }
            println!("{point}, {stage:?} stage: {crashes} crashes");
            // Removals happen only when objects go.
            if point != "status-dir-before-file-removal" || stage == Stage::Release {
                assert!(
                    crashes > 0,
                    "{point} was never reached in the {stage:?} stage"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- cluster mode

fn secret(namespace: &str) -> Secret {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "expensify-credentials", "namespace": namespace},
        "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(ADMIN_SECRET)}
    }))
    .unwrap()
}

fn spawn_controller(client: &kube::Client, sim: &SimulatorHandle) -> Running {
    support::controller::spawn_controller(client, sim, settings())
}

fn settings() -> ControllerSettings {
    ControllerSettings {
        probes_addr: "127.0.0.1:0".parse().unwrap(),
        lease: None,
        debounce: Duration::from_millis(100),
        scope: cluster::Scope::AllNamespaces,
        watch_secrets: true,
        admission: Default::default(),
        allowed_webhooks: None,
    }
}

fn access(name: &str, policy: &str, members: &serde_json::Value) -> PolicyAccess {
    serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": name, "namespace": "finance"},
        "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": policy}, "members": members}
    }))
    .unwrap()
}

/// The connector, its Secret and the two PolicyAccess objects, on the double.
async fn create_objects(client: &kube::Client, sim: &SimulatorHandle) {
    Api::<Secret>::namespaced(client.clone(), "finance")
        .create(&PostParams::default(), &secret("finance"))
        .await
        .unwrap();
    let connector: ExpensifyConnector = serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": "finance"},
        "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "endpoint": sim.endpoint(), "adminEmail": "it-admin@acme.example"}
    }))
    .unwrap();
    Api::<ExpensifyConnector>::namespaced(client.clone(), "finance")
        .create(&PostParams::default(), &connector)
        .await
        .unwrap();
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), "finance");
    let team = access(
        "team",
        FINANCE,
        &json!([{"email": "new@acme.example", "role": "auditor"}, {"email": "alice@acme.example", "role": "auditor"}]),
    );
    let crew = access(
        "crew",
        CONTRACTORS,
        &json!([{"email": "temp@acme.example"}]),
    );
    for object in [team, crew] {
        accesses
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }
}

/// Both objects Synced, their ledgers (confirmed entries only) together.
async fn synced_ledger(accesses: &Api<PolicyAccess>) -> Option<Vec<ManagedMember>> {
    let mut ledger = Vec::new();
    for name in ["team", "crew"] {
        let status = accesses.get(name).await.ok()?.status?;
        if status.phase != AccessPhase::Synced || status.managed_members.iter().any(|e| e.pending) {
            return None;
        }
        ledger.extend(status.managed_members);
    }
    Some(ledger)
}

async fn delete_accesses(accesses: &Api<PolicyAccess>) {
    for name in ["team", "crew"] {
        accesses
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// Starts a controller that dies at `point` (its callback panics there); returns once it
/// did, its task ended or aborted.
async fn controller_dying_at(client: &kube::Client, sim: &SimulatorHandle, point: &'static str) {
    let reached = Arc::new(AtomicBool::new(false));
    let flag = reached.clone();
    fail::cfg_callback(point, move || {
        flag.store(true, Ordering::SeqCst);
        panic!("crash point {point}");
    })
    .unwrap();
    let (stop, mut task) = spawn_controller(client, sim);
    eventually(&format!("the controller to reach {point}"), || {
        let reached = reached.clone();
        async move { reached.load(Ordering::SeqCst) }
    })
    .await;
    fail::remove(point);
    // The panic ends the controller's task (the reconciles run inside it); were it still
    // running, it is aborted, so only the fresh instance acts from here on.
    if let Ok(ended) = tokio::time::timeout(Duration::from_secs(5), &mut task).await {
        assert!(
            ended.as_ref().is_err_and(tokio::task::JoinError::is_panic),
            "{point}: the controller ended without the panic: {ended:?}"
        );
    } else {
        task.abort();
        let _ = task.await;
    }
    drop(stop);
}

/// The controller dies at `point` in `stage`; a fresh one on the same double converges.
async fn cluster_crash(stage: Stage, point: &'static str) {
    let double = ApiServerDouble::start().await;
    let client = double.client();
    let sim = start(&unlimited_seed()).await;
    let original = rosters(&sim);
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), "finance");
    create_objects(&client, &sim).await;
    let context = format!("{stage:?} stage, {point}");
    if stage == Stage::Release {
        let running = spawn_controller(&client, &sim);
        eventually("the grants", || async {
            synced_ledger(&accesses).await.is_some() && rosters(&sim) == granted(&original)
        })
        .await;
        running.0.send(()).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), running.1).await;
        delete_accesses(&accesses).await;
    }
    controller_dying_at(&client, &sim, point).await;
    if let Some(expected) = updates_at_crash(point, stage) {
        assert_eq!(updates(&sim), expected, "{context}: died elsewhere");
    }
    let (stop, task) = spawn_controller(&client, &sim);
    if stage == Stage::Grant {
        eventually(&format!("{context}: convergence"), || async {
            synced_ledger(&accesses).await.is_some() && rosters(&sim) == granted(&original)
        })
        .await;
        assert_owned(
            &synced_ledger(&accesses).await.unwrap_or_default(),
            &context,
        );
        assert_eq!(updates(&sim), 1, "{context}: employee-updater calls");
        assert_eq!(records_applied(&sim), CHANGES, "{context}: records");
        delete_accesses(&accesses).await;
    }
    // No lost ownership: the deletions (Revoke) take back everything, each once.
    eventually(&format!("{context}: the deletions to finish"), || async {
        accesses.get_opt("team").await.ok().flatten().is_none()
            && accesses.get_opt("crew").await.ok().flatten().is_none()
    })
    .await;
    assert_eq!(rosters(&sim), original, "{context}");
    assert_eq!(records_applied(&sim), 2 * CHANGES, "{context}: records");
    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Each point of a cluster sync, both stages. The fail-point registry is the process's:
/// one scenario at a time (the scenario lock), so no other test's controller meets it.
async fn cluster_points(points: &[&'static str]) {
    let scenario = fail::FailScenario::setup();
    for point in points {
        for stage in STAGES {
            cluster_crash(stage, point).await;
        }
    }
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_mode_converges_after_a_crash_at_each_sync_point() {
    cluster_points(&SYNC_POINTS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_mode_converges_after_a_crash_around_the_status_patches() {
    cluster_points(&CLUSTER_POINTS).await;
}
