//! `state list|show|forget` through the binary: the recorded state of file mode, as a
//! person reads and deliberately edits it.

mod support;

use std::process::Output;

use expensify_operator::simulator::SimulatorHandle;
use support::*;

/// The binary with the signing key (status files are signed and verified).
async fn signed(sim: &SimulatorHandle, secrets: &tempfile::TempDir, args: &[&str]) -> Output {
    signed_binary(sim, secrets, args).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A repository whose finance/finance added new@acme.example to Finance, recorded signed.
async fn applied(sim: &SimulatorHandle, secrets: &tempfile::TempDir) -> Repo {
    let repo = repo_with_a_pending_grant(sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let applied = signed(sim, secrets, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    assert!(
        roster(sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "new@acme.example")
    );
    repo
}

#[tokio::test(flavor = "multi_thread")]
async fn state_list_and_show_say_what_each_object_owns() {
    let sim = start(&unlimited_seed()).await;
    let secrets = secrets_with_status_key();
    let repo = applied(&sim, &secrets).await;
    let dir = repo.path().to_str().unwrap();

    let listed = signed(&sim, &secrets, &["state", "list", dir]).await;
    assert_eq!(listed.status.code(), Some(0), "{}", printed(&listed));
    let shown = stdout(&listed);
    assert!(
        shown.contains("OBJECT           ENTRIES  PENDING  POLICIES"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("finance/finance        1        0  {FINANCE}")),
        "{shown}"
    );

    let one = signed(&sim, &secrets, &["state", "show", "finance/finance", dir]).await;
    assert_eq!(one.status.code(), Some(0), "{}", printed(&one));
    assert_eq!(
        stdout(&one),
        format!(
            "PolicyAccess finance/finance: 1 ledger entry\n  new@acme.example on {FINANCE} via finance/acme: added as auditor: revoked on release\n"
        )
    );

    let json = signed(&sim, &secrets, &["state", "list", dir, "-o", "json"]).await;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["objects"][0]["object"], "finance/finance");
    assert_eq!(
        value["objects"][0]["entries"][0]["email"],
        "new@acme.example"
    );
    assert_eq!(value["objects"][0]["entries"][0]["added"], true);

    let unknown = signed(&sim, &secrets, &["state", "show", "finance/nobody", dir]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        printed(&unknown).contains("no recorded state for PolicyAccess finance/nobody"),
        "{}",
        printed(&unknown)
    );
    assert_eq!(
        updates(&sim),
        1,
        "state reads nothing from Expensify and writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn state_forget_drops_the_entries_signed_and_recorded_and_nothing_is_taken_back() {
    let sim = start(&unlimited_seed()).await;
    let secrets = secrets_with_status_key();
    let repo = applied(&sim, &secrets).await;
    let dir = repo.path().to_str().unwrap();
    let status = repo.path().join(".expensify-status");

    // Without the key: refused, nothing written.
    let before = std::fs::read_to_string(status.join("policyaccess/finance/finance.yaml")).unwrap();
    let refused = binary(
        &sim.endpoint(),
        &["state", "forget", "finance/finance", dir],
        ADMIN_SECRET,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", printed(&refused));
    assert!(
        printed(&refused)
            .contains("state forget signs the status file it writes and needs the key"),
        "{}",
        printed(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(status.join("policyaccess/finance/finance.yaml")).unwrap(),
        before
    );

    // With it, and no terminal: done without asking, and said.
    let forgot = signed(&sim, &secrets, &["state", "forget", "finance/finance", dir]).await;
    assert_eq!(forgot.status.code(), Some(0), "{}", printed(&forgot));
    assert_eq!(
        stdout(&forgot),
        "Forgot 1 ledger entry of finance/finance.\n"
    );
    let said = String::from_utf8_lossy(&forgot.stderr);
    assert!(said.contains("forgetting without asking"), "{said}");
    assert!(
        said.contains("ledger entry forgotten") && said.contains("new@acme.example"),
        "the log names each entry: {said}"
    );
    let journal = std::fs::read_to_string(status.join("forgotten.log")).unwrap();
    assert!(
        journal.contains("\"object\":\"finance/finance\"") && journal.contains("new@acme.example"),
        "{journal}"
    );
    let file = std::fs::read_to_string(status.join("policyaccess/finance/finance.yaml")).unwrap();
    assert!(
        file.starts_with("# expensify-operator signature v1 seq="),
        "signed: {file}"
    );
    assert!(file.contains("state forget at"), "{file}");

    let shown = signed(&sim, &secrets, &["state", "show", "finance/finance", dir]).await;
    assert_eq!(
        shown.status.code(),
        Some(0),
        "verified: {}",
        printed(&shown)
    );
    assert_eq!(
        stdout(&shown),
        "PolicyAccess finance/finance: 0 ledger entries\n"
    );

    // The object goes: what was forgotten is not taken back.
    repo.remove("finance.yaml");
    let plan = signed(&sim, &secrets, &["plan", dir]).await;
    assert_eq!(plan.status.code(), Some(0), "{}", printed(&plan));
    let applied = signed(&sim, &secrets, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    assert!(
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "new@acme.example"),
        "a forgotten grant stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_forget_the_same_deletion_takes_the_grant_back() {
    // The control for the test above: the grant goes when its entry is still recorded.
    let sim = start(&unlimited_seed()).await;
    let secrets = secrets_with_status_key();
    let repo = applied(&sim, &secrets).await;
    let dir = repo.path().to_str().unwrap();
    repo.remove("finance.yaml");
    let applied = signed(&sim, &secrets, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    assert!(
        !roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "new@acme.example")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn state_forget_keeps_the_status_anchor_in_step() {
    let sim = start(&unlimited_seed()).await;
    let secrets = secrets_with_status_key();
    let outside = tempfile::tempdir().unwrap();
    let anchor = outside.path().join("anchor");
    let anchor_arg = anchor.to_str().unwrap();
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let applied = signed(
        &sim,
        &secrets,
        &["apply", dir, "--status-anchor", anchor_arg],
    )
    .await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    let before = std::fs::read_to_string(&anchor).unwrap();

    let forgot = signed(
        &sim,
        &secrets,
        &[
            "state",
            "forget",
            "finance/finance",
            dir,
            "--status-anchor",
            anchor_arg,
        ],
    )
    .await;
    assert_eq!(forgot.status.code(), Some(0), "{}", printed(&forgot));
    assert_ne!(
        std::fs::read_to_string(&anchor).unwrap(),
        before,
        "the anchor follows the index forget wrote"
    );
    let listed = signed(
        &sim,
        &secrets,
        &["state", "list", dir, "--status-anchor", anchor_arg],
    )
    .await;
    assert_eq!(listed.status.code(), Some(0), "{}", printed(&listed));
    assert!(
        stdout(&listed).contains("finance/finance        0        0"),
        "{}",
        printed(&listed)
    );
    let again = signed(
        &sim,
        &secrets,
        &["apply", dir, "--status-anchor", anchor_arg],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", printed(&again));
}
