//! Access requests in file mode, end to end against the simulator: the merge is the
//! approval, and the request's clock and ledger entries live in the status directory.

mod support;

use expensify_operator::api::{AccessRequest, RequestPhase};
use expensify_operator::files::Run;
use expensify_operator::reconcile::ObjectKey;
use support::requests::{Manifest, access, decision, request, rules};
use support::*;

/// A PolicyAccess `books` on Finance (alice listed) that allows requests.
fn books(repo: &Repo) {
    let books = access("books")
        .member("alice@acme.example", "user")
        .rules(rules("8h").approvals(0).roles(&["user"]));
    repo.write("books.yaml", &books.yaml());
}

/// `email` asks, for themselves, for `role` on `books` for `duration`.
fn asked(email: &str, role: &str, duration: &str) -> Manifest {
    request("r1", "books", email)
        .set("role", role)
        .set("duration", duration)
}

fn write(repo: &Repo, asked: &Manifest) {
    repo.write("requests/r1.yaml", &asked.yaml());
}

fn saved(repo: &Repo) -> AccessRequest {
    repo.mode()
        .status_dir
        .read(&ObjectKey::new("finance", "r1"))
        .unwrap()
        .unwrap()
}

fn listed(sim: &expensify_operator::simulator::SimulatorHandle, email: &str) -> bool {
    roster(sim, FINANCE).iter().any(|(e, _)| e == email)
}

#[tokio::test]
async fn a_merged_request_is_granted_and_its_clock_survives_runs() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
    write(&repo, &asked("henry@acme.example", "user", "4h"));
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{report:#?}");
    assert!(listed(&sim, "henry@acme.example"), "granted on apply");
    let status = saved(&repo).status.unwrap();
    assert_eq!(status.phase, RequestPhase::Active, "{status:#?}");
    let granted = status.granted_at.clone().expect("grantedAt saved");
    let expires = status.expires_at.clone().expect("expiresAt saved");
    assert_eq!(
        expires.0.duration_since(granted.0).as_secs(),
        4 * 3600,
        "expiresAt = grantedAt + duration"
    );
    assert!(!status.managed_members.is_empty(), "ledger entry saved");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!again.has_errors(), "{again:#?}");
    let status = saved(&repo).status.unwrap();
    assert_eq!(
        status.granted_at,
        Some(granted),
        "the clock did not restart"
    );
    assert_eq!(status.expires_at, Some(expires));
}

#[tokio::test]
async fn a_request_beyond_its_rules_grants_nothing_and_names_the_field() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
    // Over maxDuration (8h).
    write(&repo, &asked("henry@acme.example", "user", "9h"));
    repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!listed(&sim, "henry@acme.example"));
    let status = saved(&repo).status.unwrap();
    assert_ne!(status.phase, RequestPhase::Active, "{status:#?}");
    let said = format!("{:?} {:?}", status.reason, status.message);
    assert!(said.contains("uration"), "{said}");
}

#[tokio::test]
async fn a_request_for_someone_already_listed_takes_nothing_at_its_end() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
    write(
        &repo,
        &asked("alice@acme.example", "user", "4h").set("reason", "again"),
    );
    repo.mode().pass(Run::Apply).await.unwrap();
    assert!(listed(&sim, "alice@acme.example"));
    // The request ends (its file is removed): alice stays, PolicyAccess lists her.
    repo.remove("requests/r1.yaml");
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{report:#?}");
    assert!(listed(&sim, "alice@acme.example"));
}

#[tokio::test]
async fn an_unreadable_request_is_a_problem_not_an_end() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
    write(&repo, &asked("henry@acme.example", "user", "4h"));
    repo.mode().pass(Run::Apply).await.unwrap();
    assert!(listed(&sim, "henry@acme.example"));
    // A typo: the document cannot be read, so the request is not taken for ended.
    write(
        &repo,
        &asked("henry@acme.example", "user", "4h")
            .set("reason", serde_json::Value::Null)
            .set("reasn", "month end"),
    );
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    let problems: Vec<String> = report
        .manifests
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("requests/r1.yaml") && p.contains("spec.reasn")),
        "{problems:?}"
    );
    assert!(listed(&sim, "henry@acme.example"), "not revoked");
}

#[tokio::test]
async fn an_access_decision_changes_nothing() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
    repo.write(
        "decision.yaml",
        &decision("d1", "r1", "Revoke", "boss@acme.example").yaml(),
    );
    write(&repo, &asked("henry@acme.example", "user", "4h"));
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{report:#?}");
    assert_eq!(report.manifests.decisions.len(), 1, "read, not counted");
    assert!(
        listed(&sim, "henry@acme.example"),
        "the Revoke was not counted"
    );
    assert_eq!(saved(&repo).status.unwrap().phase, RequestPhase::Active);
}
