//! Findings of an independent review of the ledger and trust changes (round three): each
//! test failed before its fix.

mod support;

use support::{printed, repo_with_a_pending_grant, start, unlimited_seed};

use std::process::Output;

use expensify_operator::api::{ConnectorRef, PolicyAccess, PolicyAccessSpec, PolicySelector};
use expensify_operator::files::status_signing::StatusKey;
use expensify_operator::files::{Run, StatusDir};
use expensify_operator::reconcile::{ChangeKind, ObjectKey};
use expensify_operator::simulator::{FaultConfig, ScriptedFault, SimulatorHandle};

fn key() -> StatusKey {
    StatusKey::new(b"0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap()
}

fn team(policy: &str) -> PolicyAccess {
    let mut access = PolicyAccess::new(
        "team",
        PolicyAccessSpec {
            requests: None,
            connector_ref: ConnectorRef {
                name: "acme".into(),
                namespace: None,
            },
            policy: PolicySelector {
                id: Some(policy.into()),
                name: None,
            },
            mode: Default::default(),
            deletion_policy: Default::default(),
            allow_from: Vec::new(),
            suspend: false,
            members: vec![],
        },
    );
    access.metadata.namespace = Some("finance".into());
    access
}

/// One run of a writer: a fresh `StatusDir` over the same root (as `apply` builds one).
fn run(root: &std::path::Path) -> StatusDir {
    StatusDir::signed(root, key(), false)
}

/// Finding 1: a pull request that puts a status file with a forged header
/// `seq=18446744073709551615` makes the next `apply` sign that object's file at
/// `u64::MAX` (`next_sequence` takes the number on disk, unverified, and saturates), and
/// every later write of it again at `u64::MAX`: from then on any older signed version of
/// the file put back from git history verifies (`found < newest` is never true), so the
/// per-file replay protection is gone for good for that object, and the anchor does not
/// help (the index is not rolled back).
#[test]
fn review2_a_forged_huge_sequence_number_disables_replay_protection() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".expensify-status");
    let key_of = ObjectKey::new("finance", "team");
    let path = root.join("policyaccess/finance/team.yaml");

    // A first apply writes the object's status, signed.
    let first = run(&root);
    first.write(&key_of, &team("P0")).unwrap();
    first.flush_index().unwrap();

    // A pull request replaces the file with one whose header claims the largest number.
    let body = std::fs::read_to_string(&path).unwrap();
    let body = body.split_once('\n').unwrap().1;
    std::fs::write(
        &path,
        format!("# expensify-operator signature v1 seq=18446744073709551615 mac=00\n{body}"),
    )
    .unwrap();

    // The next apply refuses the forged file (good) and writes the object's new status.
    let second = run(&root);
    assert!(
        second.read::<PolicyAccess>(&key_of).is_err(),
        "forged file refused"
    );
    second.write(&key_of, &team("P1")).unwrap();
    second.flush_index().unwrap();
    let old_signed = std::fs::read_to_string(&path).unwrap();

    // A later apply writes a newer status.
    let third = run(&root);
    third.read::<PolicyAccess>(&key_of).unwrap();
    third.write(&key_of, &team("P2")).unwrap();
    third.flush_index().unwrap();

    // A pull request puts the older signed version back (from git history).
    std::fs::write(&path, &old_signed).unwrap();
    let fourth = run(&root);
    let replayed = fourth.read::<PolicyAccess>(&key_of);
    assert!(
        replayed.is_err(),
        "an older signed status file put back from history was taken as the ledger: {:?}",
        replayed.map(|o| o.map(|o| o.spec.policy.id))
    );
}

/// Finding 2: `--status-anchor` is checked against PATH (the manifest directory given),
/// not against the git work tree nor the status directory (`--status-dir`). A pipeline
/// that runs `apply deploy/expensify --status-anchor .expensify-anchor` from the root of
/// its checkout keeps the anchor in the very repository a pull request rolls back, and
/// it is taken without a word.
#[tokio::test(flavor = "multi_thread")]
async fn review2_an_anchor_inside_the_git_work_tree_is_refused() {
    let sim = support::start(&support::unlimited_seed()).await;
    let checkout = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(checkout.path().join(".git")).unwrap();
    let manifests = checkout.path().join("deploy");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("connector.yaml"),
        format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {{name: acme, namespace: finance}}\nspec:\n  credentialsSecretRef: {{name: expensify-credentials}}\n  endpoint: {}\n  adminEmail: it-admin@acme.example\n  protectedEmails: [ceo@acme.example, cfo@acme.example]\n  allowedNamespaces: [engineering]\n",
            sim.endpoint()
        ),
    )
    .unwrap();
    let secrets = support::secrets_with_status_key();
    let anchor = checkout.path().join(".expensify-anchor");
    let output = support::binary(
        &sim.endpoint(),
        &["apply", manifests.to_str().unwrap(), "--pacing", "none"],
        support::ADMIN_SECRET,
    )
    .env_remove("EXPENSIFY_UNSIGNED_STATUS")
    .env("EXPENSIFY_SECRETS_DIR", secrets.path())
    .env("EXPENSIFY_STATUS_ANCHOR", &anchor)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .output()
    .await
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "an anchor in the git work tree (rolled back with the status directory) was taken:\n{}",
        support::printed(&output)
    );
}

/// Finding 2b: with `--status-dir` outside the manifest directory, an anchor inside the
/// status directory itself is taken: it is rolled back with the directory it guards.
#[tokio::test(flavor = "multi_thread")]
async fn review2_an_anchor_inside_the_status_directory_is_refused() {
    let sim = support::start(&support::unlimited_seed()).await;
    let repo = support::Repo::new(&sim);
    repo.connector("");
    let secrets = support::secrets_with_status_key();
    let state = tempfile::tempdir().unwrap();
    let status = state.path().join("status");
    std::fs::create_dir_all(&status).unwrap();
    let anchor = status.join("anchor");
    let output = support::binary(
        &sim.endpoint(),
        &[
            "apply",
            repo.path().to_str().unwrap(),
            "--pacing",
            "none",
            "--status-dir",
            status.to_str().unwrap(),
        ],
        support::ADMIN_SECRET,
    )
    .env_remove("EXPENSIFY_UNSIGNED_STATUS")
    .env("EXPENSIFY_SECRETS_DIR", secrets.path())
    .env("EXPENSIFY_STATUS_ANCHOR", &anchor)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .output()
    .await
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "an anchor inside the status directory was taken:\n{}",
        support::printed(&output)
    );
}

fn respond(body: &serde_json::Value) -> ScriptedFault {
    ScriptedFault::Respond {
        status: 200,
        body: body.to_string(),
    }
}

/// A `policyList` answer naming `policy` (the caller an admin on it) without its `owner`
/// field: the field is optional on the wire (`#[serde(default)]`), so it reads as "".
fn policy_list_without_owner(sim: &SimulatorHandle, policy: &str) -> ScriptedFault {
    let name = sim
        .state()
        .policies()
        .into_iter()
        .find(|p| p.id == policy)
        .unwrap()
        .name;
    respond(&serde_json::json!({
        "responseCode": 200,
        "policyList": [{"outputCurrency": "USD", "role": "admin", "name": name, "id": policy, "type": "corporate"}]
    }))
}

/// Finding 3: the "a roster without its owner is not the whole roster" guard
/// (`World::new`) is skipped when the policy list carries no valid owner. Expensify
/// answering the policy list without `owner` and the roster read with `[]` makes the
/// operator drop every ledger entry on that policy (`verify` finds nobody): temp@, whom it
/// granted and whose grant then ended, keeps access for good.
#[tokio::test(flavor = "multi_thread")]
async fn review2_an_empty_roster_of_a_policy_listed_without_owner_forgets_nothing() {
    let sim = support::start(&support::unlimited_seed()).await;
    let repo = support::Repo::new(&sim);
    repo.connector("");
    repo.access(
        "temp",
        support::FINANCE,
        "Additive",
        "    - {email: temp@acme.example}\n",
    );
    let first = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!first.has_errors(), "{first:#?}");
    repo.access("temp", support::FINANCE, "Additive", "    []\n");
    let script = vec![
        policy_list_without_owner(&sim, support::FINANCE),
        respond(&serde_json::json!({
            "responseCode": 200,
            "policyInfo": {support::FINANCE: {"employees": []}}
        })),
    ];
    sim.state().set_faults(FaultConfig {
        script: script.into_iter().collect(),
        ..FaultConfig::default()
    });
    let _hostile = repo.mode().pass(Run::Apply).await.unwrap();
    sim.state().set_faults(FaultConfig::default());
    let sound = repo.mode().pass(Run::Apply).await.unwrap();
    let changes: Vec<(ChangeKind, String)> = sound
        .syncs
        .iter()
        .flat_map(|s| &s.plan.changes)
        .map(|c| (c.kind, c.email.clone()))
        .collect();
    assert_eq!(
        changes,
        [(ChangeKind::Revoke, "temp@acme.example".to_string())],
        "the ledger was forgotten on an empty roster of a policy listed without its owner"
    );
}

/// Finding 4: the policy owner is protected only as the policy list names them. A policy
/// list without `owner` leaves the real owner (cto@, on the roster as admin, not in
/// `protectedEmails`) unprotected: an Authoritative object plans to revoke them as an
/// extra.
#[tokio::test(flavor = "multi_thread")]
async fn review2_the_owner_stays_protected_when_the_policy_list_omits_owner() {
    let sim = support::start(&support::unlimited_seed()).await;
    let repo = support::Repo::new(&sim);
    repo.connector("");
    let members: String = support::roster(&sim, support::ENGINEERING)
        .into_iter()
        .filter(|(email, _)| email != "cto@acme.example")
        .map(|(email, role)| format!("    - {{email: {email}, role: {role}}}\n"))
        .collect();
    repo.access("eng", support::ENGINEERING, "Authoritative", &members);
    let script = vec![policy_list_without_owner(&sim, support::ENGINEERING)];
    sim.state().set_faults(FaultConfig {
        script: script.into_iter().collect(),
        ..FaultConfig::default()
    });
    let report = repo.mode().pass(Run::Plan).await.unwrap();
    let changes: Vec<(ChangeKind, String)> = report
        .syncs
        .iter()
        .flat_map(|s| &s.plan.changes)
        .map(|c| (c.kind, c.email.clone()))
        .collect();
    assert!(
        !changes.iter().any(|(_, email)| email == "cto@acme.example"),
        "the policy owner is planned to change: {changes:?}"
    );
}

/// Finding 5: a status file is opened through symlinks. A pull request that makes
/// `.expensify-status/policyaccess/finance/x.yaml` a symlink to a file of the runner (a
/// credentials file of the secrets directory, `/proc/self/environ`) gets its content in
/// the error `plan` prints when the directory is read unverified (no status key where
/// the pull request's plan runs, as the docs advise).
#[test]
fn review2_a_symlinked_status_file_does_not_print_what_it_points_at() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("partnerUserSecret");
    std::fs::write(&secret, "s3cr3t-partner-user-secret-value\n").unwrap();
    let root = dir.path().join(".expensify-status");
    std::fs::create_dir_all(root.join("policyaccess/finance")).unwrap();
    std::os::unix::fs::symlink(&secret, root.join("policyaccess/finance/x.yaml")).unwrap();
    let status_dir = StatusDir::new(&root);
    let said = match status_dir.list::<PolicyAccess>() {
        Ok(listing) => format!("{:?}", listing.unverified),
        Err(e) => e.to_string(),
    };
    assert!(
        !said.contains("s3cr3t"),
        "the content of the file a symlinked status file points at is printed: {said}"
    );
}

/// Finding 5, through the binary: `plan` (unverified, as on a pull request) with the
/// credentials in the secrets directory, on a repository where `where_` is a symlink to
/// the partnerUserSecret file, prints that secret in its error.
async fn plan_with_a_symlink_to_the_secret(where_: &str) -> String {
    let sim = support::start(&support::unlimited_seed()).await;
    let repo = support::Repo::new(&sim);
    repo.connector("");
    let secrets = tempfile::tempdir().unwrap();
    let creds = secrets.path().join("expensify-credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(
        creds.join("partnerUserID"),
        format!("{}\n", support::ADMIN_ID),
    )
    .unwrap();
    std::fs::write(
        creds.join("partnerUserSecret"),
        format!("{}\n", support::ADMIN_SECRET),
    )
    .unwrap();
    let link = repo.path().join(where_);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(creds.join("partnerUserSecret"), &link).unwrap();
    let output = support::binary(
        &sim.endpoint(),
        &["plan", repo.path().to_str().unwrap(), "--pacing", "none"],
        support::ADMIN_SECRET,
    )
    .env_remove("EXPENSIFY_PARTNER_USER_SECRET")
    .env_remove("EXPENSIFY_PARTNER_USER_ID")
    .env("EXPENSIFY_SECRETS_DIR", secrets.path())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .output()
    .await
    .unwrap();
    support::printed(&output)
}

#[tokio::test(flavor = "multi_thread")]
async fn review2_plan_never_prints_the_secret_through_a_symlinked_status_file() {
    let said =
        plan_with_a_symlink_to_the_secret(".expensify-status/policyaccess/finance/x.yaml").await;
    assert!(!said.contains(support::ADMIN_SECRET), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn review2_plan_never_prints_the_secret_through_a_symlinked_manifest() {
    let said = plan_with_a_symlink_to_the_secret("leak.yaml").await;
    assert!(!said.contains(support::ADMIN_SECRET), "{said}");
}

/// Finding 9: `--status-anchor` remembers that generation N of the index was written, yet
/// a status directory deleted whole (index and files, e.g. by a pull request or a fresh
/// checkout that lost it) is taken as "no ledger": `load_index` trusts a missing index
/// when no signed file is left, the anchor is only compared when there is an index to
/// compare, and `missing()` has nothing to expect. The operator forgets what it gave
/// (carol@ keeps access after her grant ends) with only the missing-ledger warning, and
/// writes the empty ledger back.
#[tokio::test(flavor = "multi_thread")]
async fn review2_a_deleted_status_directory_is_refused_against_its_anchor() {
    let sim = support::start(&support::unlimited_seed()).await;
    let repo = support::Repo::new(&sim);
    repo.connector("");
    let secrets = support::secrets_with_status_key();
    let outside = tempfile::tempdir().unwrap();
    let anchor = outside.path().join("status.anchor");
    let apply = |repo: &support::Repo| {
        let mut command = support::binary(
            &sim.endpoint(),
            &["apply", repo.path().to_str().unwrap(), "--pacing", "none"],
            support::ADMIN_SECRET,
        );
        command
            .env_remove("EXPENSIFY_UNSIGNED_STATUS")
            .env("EXPENSIFY_SECRETS_DIR", secrets.path())
            .env("EXPENSIFY_STATUS_ANCHOR", &anchor)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    repo.access(
        "a",
        support::FINANCE,
        "Additive",
        "    - {email: carol@acme.example}\n",
    );
    let first = apply(&repo).output().await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", support::printed(&first));
    assert!(anchor.exists());
    std::fs::remove_dir_all(repo.path().join(".expensify-status")).unwrap();
    repo.access("a", support::FINANCE, "Additive", "    []\n");
    let second = apply(&repo).output().await.unwrap();
    let carol_stays = support::roster(&sim, support::FINANCE)
        .iter()
        .any(|(e, _)| e == "carol@acme.example");
    assert!(
        second.status.code() != Some(0) || !carol_stays,
        "a deleted status directory was taken as an empty ledger despite the anchor (exit {:?}, carol stays: {carol_stays}):\n{}",
        second.status.code(),
        support::printed(&second)
    );
}

async fn signed(sim: &SimulatorHandle, secrets: &tempfile::TempDir, args: &[&str]) -> Output {
    support::signed_binary(sim, secrets, args).await
}

/// Finding 7: the error for a status file that fails verification ends "or let the
/// operator forget what it recorded for this object with `state forget`", but `state
/// forget` reads the file verified and fails on the very same error: the remedy offered
/// does not work (`apply --adopt-unsigned-status` does not take a forged file either).
#[tokio::test(flavor = "multi_thread")]
async fn review2_state_forget_is_the_way_out_the_unverified_message_says_it_is() {
    let sim = start(&unlimited_seed()).await;
    let secrets = support::secrets_with_status_key();
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let applied = signed(&sim, &secrets, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    let file = repo
        .path()
        .join(".expensify-status/policyaccess/finance/finance.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("Written by", "Written bY", 1)).unwrap();

    let planned = signed(&sim, &secrets, &["plan", dir]).await;
    assert!(
        printed(&planned).contains("state forget"),
        "the message offers state forget: {}",
        printed(&planned)
    );
    let forgot = signed(
        &sim,
        &secrets,
        &["state", "forget", "finance/finance", dir, "--auto-approve"],
    )
    .await;
    assert_eq!(
        forgot.status.code(),
        Some(0),
        "state forget, as offered, fails: {}",
        printed(&forgot)
    );
}

/// File mode over `repo` with its status directory signed with [`key`].
fn signed_mode(repo: &support::Repo) -> expensify_operator::files::FileMode {
    let mut mode = repo.mode();
    mode.status_dir = StatusDir::signed(repo.path().join(".expensify-status"), key(), false);
    mode
}

/// Edits one byte of the body of `name`'s status file (in `finance`); returns its path
/// and the edited text.
fn edit_status_file(repo: &support::Repo, name: &str) -> (std::path::PathBuf, String) {
    let path = repo.path().join(format!(
        ".expensify-status/policyaccess/finance/{name}.yaml"
    ));
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("Written by", "Written bY", 1);
    std::fs::write(&path, &edited).unwrap();
    (path, edited)
}

/// Finding 8: one edited status file holds every removal on the connector. Object `a`
/// (Finance) has its status file edited; object `b` (Engineering, another policy) lets
/// temp@ go. `a`'s file can only have driven removals on Finance (its manifest names the
/// policy), yet temp@ keeps access on Engineering: a status file anyone can break in a
/// pull request freezes every other object's expiries (the contract: "the removals it
/// would have driven are held"; "one tenant's broken object never freezes another's").
#[tokio::test(flavor = "multi_thread")]
async fn review2_an_edited_status_file_holds_only_what_it_could_drive() {
    let sim = support::start(&support::unlimited_seed()).await;
    let repo = support::Repo::new(&sim);
    repo.connector("");
    repo.access(
        "a",
        support::FINANCE,
        "Additive",
        "    - {email: alice@acme.example}\n",
    );
    repo.access(
        "b",
        support::ENGINEERING,
        "Additive",
        "    - {email: temp@acme.example}\n",
    );
    let first = signed_mode(&repo).pass(Run::Apply).await.unwrap();
    assert!(!first.has_errors(), "{first:#?}");
    assert!(
        support::roster(&sim, support::ENGINEERING)
            .iter()
            .any(|(e, _)| e == "temp@acme.example")
    );
    // a's status file edited (one byte of its body).
    let (path, edited) = edit_status_file(&repo, "a");
    // b lets temp@ go.
    repo.access("b", support::ENGINEERING, "Additive", "    []\n");
    let second = signed_mode(&repo).pass(Run::Apply).await.unwrap();
    assert!(second.has_errors(), "the edited file is still said");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        edited,
        "the edited file is left for a person to restore"
    );
    assert!(
        !support::roster(&sim, support::ENGINEERING)
            .iter()
            .any(|(e, _)| e == "temp@acme.example"),
        "temp@ kept access on Engineering because a's status file on Finance was edited"
    );
}

/// And on its own policy the edited file still holds: a's ledger may be what gave
/// someone access there.
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_status_file_holds_the_removals_on_its_own_policy() {
    let sim = support::start(&support::unlimited_seed()).await;
    let repo = support::Repo::new(&sim);
    repo.connector("");
    repo.access(
        "a",
        support::FINANCE,
        "Additive",
        "    - {email: alice@acme.example}\n",
    );
    repo.access(
        "b",
        support::FINANCE,
        "Additive",
        "    - {email: temp@acme.example}\n",
    );
    assert!(
        !signed_mode(&repo)
            .pass(Run::Apply)
            .await
            .unwrap()
            .has_errors()
    );
    edit_status_file(&repo, "a");
    repo.access("b", support::FINANCE, "Additive", "    []\n");
    let second = signed_mode(&repo).pass(Run::Apply).await.unwrap();
    assert!(second.has_errors());
    assert!(
        support::roster(&sim, support::FINANCE)
            .iter()
            .any(|(e, _)| e == "temp@acme.example"),
        "held: the unverified object on Finance may be asking for temp@"
    );
}
