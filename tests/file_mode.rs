//! File mode end to end against the simulator, through the library entry points.

mod support;

use expensify_operator::api::{AccessPhase, ConnectorPhase, PolicyAccess};
use expensify_operator::files::Run;
use expensify_operator::reconcile::ObjectKey;
use expensify_operator::simulator::{FaultConfig, ScriptedFault};
use support::*;

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("finance", name)
}

fn phase(report: &expensify_operator::files::PassReport, name: &str) -> AccessPhase {
    report.syncs[0].statuses[&key(name)].phase
}

fn has(roster: &[(String, String)], email: &str, role: &str) -> bool {
    roster.iter().any(|(e, r)| e == email && r == role)
}

#[tokio::test]
async fn each_mode_grants_changes_and_revokes_as_it_should() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    // Authoritative on Finance: mallory is revoked; cfo (owner) and it-admin stay.
    repo.access("finance", FINANCE, "Authoritative", "    - {email: alice@acme.example}\n    - {email: bob@acme.example}\n    - {email: readonly@acme.example, role: auditor}\n    - {email: zoe@acme.example, role: admin}\n");
    // Additive on Engineering: dave demoted, henry granted, erin (not listed) left alone.
    repo.access("engineering", ENGINEERING, "Additive", "    - {email: dave@acme.example, role: user}\n    - {email: henry@acme.example, role: auditor}\n");
    // ObserveOnly on Contractors: nothing written.
    repo.access(
        "observer",
        CONTRACTORS,
        "ObserveOnly",
        "    - {email: nobody@acme.example}\n",
    );
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{report:#?}");
    let finance = roster(&sim, FINANCE);
    assert!(has(&finance, "zoe@acme.example", "admin"));
    assert!(!finance.iter().any(|(e, _)| e == "mallory@acme.example"));
    assert!(
        has(&finance, "cfo@acme.example", "admin")
            && has(&finance, "it-admin@acme.example", "admin")
    );
    let engineering = roster(&sim, ENGINEERING);
    assert!(has(&engineering, "dave@acme.example", "user"));
    assert!(has(&engineering, "henry@acme.example", "auditor"));
    assert!(
        has(&engineering, "erin@acme.example", "user"),
        "Additive leaves unlisted people alone"
    );
    assert_eq!(
        roster(&sim, CONTRACTORS).len(),
        1,
        "ObserveOnly wrote nothing"
    );
    assert_eq!(updates(&sim), 1, "all changes in one updater call");
    assert_eq!(
        report.syncs[0].connector_status.phase,
        ConnectorPhase::Connected
    );
    assert_eq!(phase(&report, "finance"), AccessPhase::Synced);
    let observer = &report.syncs[0].statuses[&key("observer")];
    assert_eq!(observer.drift.len(), 1);

    // The status directory holds what was granted; the second sync writes nothing.
    let status: PolicyAccess = repo
        .mode()
        .status_dir
        .read(&key("engineering"))
        .unwrap()
        .unwrap();
    let ledger = status.status.unwrap().managed_members;
    let owned: Vec<(&str, bool, bool)> = ledger
        .iter()
        .map(|e| (e.email.as_str(), e.added, e.pending))
        .collect();
    // henry was added; dave's role was changed (he was on the policy before).
    assert_eq!(
        owned,
        [
            ("dave@acme.example", false, false),
            ("henry@acme.example", true, false)
        ]
    );
    let again = repo.mode().pass(Run::Apply).await.unwrap();
    assert_eq!(again.pending_changes(), 0);
    assert_eq!(updates(&sim), 1, "idempotent: no second write");
}

#[tokio::test]
async fn manifests_are_never_modified() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example}\n",
    );
    let read_all = || {
        let mut files: Vec<(String, Vec<u8>)> = ["connector.yaml", "finance.yaml"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(repo.path().join(f)).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = read_all();
    repo.mode().pass(Run::Apply).await.unwrap();
    assert_eq!(before, read_all());
    assert!(
        repo.path()
            .join(".expensify-status/policyaccess/finance/finance.yaml")
            .exists()
    );
    assert!(
        repo.path()
            .join(".expensify-status/expensifyconnector/finance/acme.yaml")
            .exists()
    );
}

#[tokio::test]
async fn an_expired_member_is_revoked_and_the_next_expiry_reported() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access("jit", CONTRACTORS, "Additive", "    - {email: temp@acme.example, expiresAt: \"2099-01-01T00:00:00Z\"}\n    - {email: later@acme.example, expiresAt: \"2098-01-01T00:00:00Z\"}\n");
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(has(&roster(&sim, CONTRACTORS), "temp@acme.example", "user"));
    assert_eq!(
        report.next_expiry(),
        Some("2098-01-01T00:00:00Z".parse().unwrap())
    );
    // Time passes (the entry now lies in the past): what it granted is revoked.
    repo.access("jit", CONTRACTORS, "Additive", "    - {email: temp@acme.example, expiresAt: \"2020-01-01T00:00:00Z\"}\n    - {email: later@acme.example, expiresAt: \"2098-01-01T00:00:00Z\"}\n");
    repo.mode().pass(Run::Apply).await.unwrap();
    assert!(
        !roster(&sim, CONTRACTORS)
            .iter()
            .any(|(e, _)| e == "temp@acme.example")
    );
    assert!(has(
        &roster(&sim, CONTRACTORS),
        "later@acme.example",
        "user"
    ));
}

#[tokio::test]
async fn protected_people_block_instead_of_being_demoted() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: cfo@acme.example, role: user}\n    - {email: new@acme.example}\n",
    );
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(has(&roster(&sim, FINANCE), "cfo@acme.example", "admin"));
    assert!(
        has(&roster(&sim, FINANCE), "new@acme.example", "user"),
        "the rest still syncs"
    );
    let status = &report.syncs[0].statuses[&key("finance")];
    assert_eq!(status.phase, AccessPhase::Blocked);
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("cfo@acme.example is protected")
    );
    assert!(report.has_blocked());
}

#[tokio::test]
async fn conflicting_objects_leave_the_person_alone() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "one",
        FINANCE,
        "Additive",
        "    - {email: alice@acme.example, role: admin}\n",
    );
    repo.access(
        "two",
        FINANCE,
        "Additive",
        "    - {email: alice@acme.example, role: auditor}\n",
    );
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(has(&roster(&sim, FINANCE), "alice@acme.example", "user"));
    for name in ["one", "two"] {
        let status = &report.syncs[0].statuses[&key(name)];
        assert_eq!(status.phase, AccessPhase::Blocked);
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "Conflict")
        );
    }
    assert_eq!(updates(&sim), 0);
}

#[tokio::test]
async fn the_revocation_limit_blocks_removals_until_allowed_once() {
    let mut seed = unlimited_seed();
    let finance = seed.policies.iter_mut().find(|p| p.id == FINANCE).unwrap();
    for i in 0..12 {
        finance
            .employees
            .push(expensify_operator::simulator::SeedEmployee {
                email: format!("old{i}@acme.example"),
                role: expensify_operator::expensify::Role::User,
                submits_to: None,
                employee_id: None,
            });
    }
    let sim = start(&seed).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access("finance", FINANCE, "Authoritative", "    - {email: alice@acme.example}\n    - {email: bob@acme.example}\n    - {email: readonly@acme.example, role: auditor}\n    - {email: mallory@acme.example, role: admin}\n    - {email: new@acme.example}\n");
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    let status = &report.syncs[0].statuses[&key("finance")];
    assert_eq!(status.phase, AccessPhase::Blocked);
    let message = status.message.as_deref().unwrap();
    assert!(
        message.contains("12 removals") && message.contains("allow-mass-revocation"),
        "{message}"
    );
    assert!(
        has(&roster(&sim, FINANCE), "new@acme.example", "user"),
        "grants still go ahead"
    );
    assert_eq!(
        roster(&sim, FINANCE)
            .iter()
            .filter(|(e, _)| e.starts_with("old"))
            .count(),
        12
    );

    repo.connector("  # lifted once\n");
    let annotated = std::fs::read_to_string(repo.path().join("connector.yaml"))
        .unwrap()
        .replace("metadata: {name: acme, namespace: finance}", "metadata:\n  name: acme\n  namespace: finance\n  annotations: {expensify.gitops.dev/allow-mass-revocation: \"ticket-4711\"}");
    repo.write("connector.yaml", &annotated);
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert_eq!(
        roster(&sim, FINANCE)
            .iter()
            .filter(|(e, _)| e.starts_with("old"))
            .count(),
        0
    );
    assert_eq!(
        report.syncs[0]
            .connector_status
            .last_handled_mass_revocation
            .as_deref(),
        Some("ticket-4711")
    );
    assert_eq!(phase(&report, "finance"), AccessPhase::Synced);
}

#[tokio::test]
async fn a_broken_file_fails_itself_and_holds_authoritative_removals() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "finance",
        FINANCE,
        "Authoritative",
        "    - {email: alice@acme.example}\n    - {email: new@acme.example}\n",
    );
    repo.write("broken.yaml", "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: broken, namespace: finance\n");
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(report.has_errors());
    assert!(
        report.manifests.problems[0]
            .to_string()
            .contains("broken.yaml")
    );
    assert!(
        has(&roster(&sim, FINANCE), "new@acme.example", "user"),
        "good objects still sync"
    );
    assert!(
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "mallory@acme.example"),
        "removals held while a manifest is unreadable"
    );
    let status = &report.syncs[0].statuses[&key("finance")];
    assert_eq!(status.phase, AccessPhase::Blocked);

    let strict = expensify_operator::files::FileMode {
        strict: true,
        ..repo.mode()
    };
    let err = strict.pass(Run::Apply).await.unwrap_err();
    assert!(err.to_string().contains("broken.yaml"), "{err}");
}

#[tokio::test]
async fn an_invalid_object_is_an_error_and_others_still_sync() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "good",
        ENGINEERING,
        "Additive",
        "    - {email: henry@acme.example}\n",
    );
    repo.access(
        "bad",
        FINANCE,
        "Additive",
        "    - {email: x@acme.example, role: owner}\n    - {email: not-an-email}\n",
    );
    repo.write("elsewhere.yaml", "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: stray, namespace: marketing}\nspec:\n  connectorRef: {name: acme, namespace: finance}\n  policy: {name: Marketing}\n  members: [{email: y@acme.example}]\n");
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(has(
        &roster(&sim, ENGINEERING),
        "henry@acme.example",
        "user"
    ));
    let bad = &report.syncs[0].statuses[&key("bad")];
    assert_eq!(bad.phase, AccessPhase::Error);
    let message = bad.message.as_deref().unwrap();
    assert!(
        message.contains("spec.members[0].role") && message.contains("spec.members[1].email"),
        "{message}"
    );
    assert!(
        !roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "x@acme.example")
    );
    let stray = &report.unattached[0];
    assert_eq!(stray.key, ObjectKey::new("marketing", "stray"));
    assert!(
        stray
            .status
            .message
            .as_deref()
            .unwrap()
            .contains("does not allow namespace \"marketing\"")
    );
}

#[tokio::test]
async fn an_auth_failure_puts_the_connector_in_error_without_the_secret() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example}\n",
    );
    let secret = "wrong-secret-value-123";
    let report = repo.mode_with(secret).pass(Run::Apply).await.unwrap();
    let connector = &report.syncs[0].connector_status;
    assert_eq!(connector.phase, ConnectorPhase::Error);
    assert!(
        connector
            .conditions
            .iter()
            .any(|c| c.reason == "AuthenticationFailed")
    );
    assert!(
        connector
            .message
            .as_deref()
            .unwrap()
            .contains("credentials rejected")
    );
    assert_eq!(phase(&report, "finance"), AccessPhase::Error);
    let written = std::fs::read_to_string(
        repo.path()
            .join(".expensify-status/expensifyconnector/finance/acme.yaml"),
    )
    .unwrap();
    let everything = format!("{report:?}{written}");
    assert!(!everything.contains(secret));
}

#[tokio::test]
async fn transient_faults_converge_after_retries() {
    let sim = start(&unlimited_seed()).await;
    sim.state().set_faults(FaultConfig {
        script: [
            ScriptedFault::Http500,
            ScriptedFault::Drop,
            ScriptedFault::Body503,
            ScriptedFault::Pass,
            ScriptedFault::Pass,
            ScriptedFault::Http429,
            ScriptedFault::DropAfterApply,
        ]
        .into_iter()
        .collect(),
        ..FaultConfig::default()
    });
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example, role: admin}\n",
    );
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{report:#?}");
    assert!(has(&roster(&sim, FINANCE), "new@acme.example", "admin"));
    assert_eq!(phase(&report, "finance"), AccessPhase::Synced);
    assert!(report.syncs[0].calls.retries >= 4);
}

#[tokio::test]
async fn deleting_a_manifest_revokes_what_it_granted_or_orphans_it() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "revoking",
        CONTRACTORS,
        "Additive",
        "    - {email: gone-a@acme.example}\n",
    );
    repo.write(
        "orphaning.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: orphaning, namespace: finance}\nspec:\n  connectorRef: {name: acme}\n  policy: {id: \"C0FFEE0000000001\"}\n  deletionPolicy: Orphan\n  members: [{email: kept-b@acme.example}]\n",
    );
    repo.mode().pass(Run::Apply).await.unwrap();
    assert_eq!(roster(&sim, CONTRACTORS).len(), 3);
    repo.remove("revoking.yaml");
    repo.remove("orphaning.yaml");
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    let people = roster(&sim, CONTRACTORS);
    assert!(
        !people.iter().any(|(e, _)| e == "gone-a@acme.example"),
        "Revoke"
    );
    assert!(
        people.iter().any(|(e, _)| e == "kept-b@acme.example"),
        "Orphan"
    );
    assert_eq!(report.syncs[0].finished_deletions.len(), 2);
    assert!(
        !repo
            .path()
            .join(".expensify-status/policyaccess/finance/revoking.yaml")
            .exists()
    );
    assert!(
        !repo
            .path()
            .join(".expensify-status/policyaccess/finance/orphaning.yaml")
            .exists()
    );
}

#[tokio::test]
async fn export_then_apply_changes_nothing() {
    let sim = start(&unlimited_seed()).await;
    let client = admin_client(&sim);
    let policies = client.list_policies(true).await.unwrap();
    let ids: Vec<String> = policies.iter().map(|p| p.id.clone()).collect();
    let rosters = client.read_rosters(&ids).await.unwrap();
    let target = expensify_operator::commands::export::ExportTarget {
        connector_name: "acme".into(),
        namespace: "finance".into(),
        secret: expensify_operator::api::SecretRef {
            name: "expensify-credentials".into(),
            user_id_key: "partnerUserID".into(),
            user_secret_key: "partnerUserSecret".into(),
        },
        endpoint: sim.endpoint(),
        admin_email: "it-admin@acme.example".into(),
    };
    let yaml = expensify_operator::commands::export::export_yaml(
        &expensify_operator::reconcile::Observed { policies, rosters },
        &target,
    )
    .unwrap();
    let repo = Repo::new(&sim);
    repo.write("export.yaml", &yaml);
    let planned = repo.mode().pass(Run::Plan).await.unwrap();
    assert!(
        planned.manifests.problems.is_empty(),
        "{:?}",
        planned.manifests.problems
    );
    assert_eq!(
        planned.syncs[0].statuses.len(),
        5,
        "one object per visible policy"
    );
    assert_eq!(
        planned.pending_changes(),
        0,
        "{:#?}",
        planned.syncs[0].plan.changes
    );
    let applied = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!applied.has_errors() && !applied.has_blocked());
    assert_eq!(updates(&sim), 0);
}

#[tokio::test]
async fn a_suspended_connector_reads_and_writes_nothing() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("  suspend: true\n");
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example}\n",
    );
    let report = repo.mode().pass(Run::Apply).await.unwrap();
    assert_eq!(
        sim.state().counters().requests,
        0,
        "nothing read or written"
    );
    let status = &report.syncs[0].statuses[&key("finance")];
    assert_eq!(status.phase, AccessPhase::Pending);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.reason == "ConnectorSuspended")
    );
    assert!(!report.has_errors() && !report.has_blocked());
}

// Signed status files (issue 17 item 11): the status directory is the ledger, and a pull
// request can edit it.

fn status_key() -> expensify_operator::files::status_signing::StatusKey {
    expensify_operator::files::status_signing::StatusKey::new(&[42u8; 32]).unwrap()
}

/// File mode over `repo` with its status directory signed and verified.
fn signed(repo: &Repo, adopt: bool) -> expensify_operator::files::FileMode {
    let mut mode = repo.mode();
    mode.status_dir =
        expensify_operator::files::StatusDir::signed(mode.status_dir.root(), status_key(), adopt);
    mode
}

fn status_file(repo: &Repo, name: &str) -> std::path::PathBuf {
    repo.path().join(format!(
        ".expensify-status/policyaccess/finance/{name}.yaml"
    ))
}

fn problems(report: &expensify_operator::files::PassReport) -> String {
    report
        .manifests
        .problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The attack: erin was on Engineering before the operator; a hand-edited status
/// file claims the operator added her, and the pull request drops her from the manifest.
/// Returns whether erin is still on Engineering after the apply, and the report.
async fn forged_ledger_attack(
    mode: fn(&Repo) -> expensify_operator::files::FileMode,
) -> (bool, expensify_operator::files::PassReport) {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "engineering",
        ENGINEERING,
        "Additive",
        "    - {email: erin@acme.example}\n    - {email: henry@acme.example}\n",
    );
    let first = mode(&repo).pass(Run::Apply).await.unwrap();
    assert!(!first.has_errors(), "{first:#?}");
    let path = status_file(&repo, "engineering");
    let text = std::fs::read_to_string(&path).unwrap();
    // Erin was there before: the ledger has no entry for her. The forger adds one.
    let forged = text.replace(
        "  managedMembers:\n",
        "  managedMembers:\n  - policyID: 0A1B2C3D4E5F6071\n    email: erin@acme.example\n    added: true\n    role: user\n",
    );
    assert_ne!(forged, text);
    std::fs::write(&path, &forged).unwrap();
    repo.access(
        "engineering",
        ENGINEERING,
        "Additive",
        "    - {email: henry@acme.example}\n",
    );
    let report = mode(&repo).pass(Run::Apply).await.unwrap();
    let erin_stays = roster(&sim, ENGINEERING)
        .iter()
        .any(|(e, _)| e == "erin@acme.example");
    if report.has_errors() {
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            forged,
            "an ignored status file is left for a person to restore"
        );
    }
    (erin_stays, report)
}

#[tokio::test]
async fn a_hand_edited_status_file_is_ignored_and_takes_nobody_back() {
    // Unsigned, the forged entry revokes erin: the attack is real.
    let (erin_stays, _) = forged_ledger_attack(Repo::mode).await;
    assert!(
        !erin_stays,
        "without signing the forged ledger drives a revocation"
    );
    // Signed, the file fails verification: ignored with an error, nothing revoked.
    let (erin_stays, report) = forged_ledger_attack(|repo| signed(repo, false)).await;
    assert!(erin_stays, "the forged ledger revoked someone");
    assert!(report.has_errors());
    let problems = problems(&report);
    assert!(
        problems.contains("PolicyAccess finance/engineering")
            && problems.contains("signature does not verify")
            && problems.contains("git log --"),
        "{problems}"
    );
}

#[tokio::test]
async fn an_older_signed_file_put_back_is_refused_even_after_its_object_is_gone() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "temp",
        CONTRACTORS,
        "Additive",
        "    - {email: temp@acme.example}\n",
    );
    repo.access(
        "other",
        CONTRACTORS,
        "Additive",
        "    - {email: other@acme.example}\n",
    );
    assert!(
        !signed(&repo, false)
            .pass(Run::Apply)
            .await
            .unwrap()
            .has_errors()
    );
    let path = status_file(&repo, "temp");
    let old = std::fs::read_to_string(&path).unwrap();
    assert!(
        old.starts_with("# expensify-operator signature v1 seq="),
        "{old}"
    );
    assert!(repo.path().join(".expensify-status/.signatures").exists());

    // A second apply signs a newer file; the old one put back is refused as replayed.
    assert!(
        !signed(&repo, false)
            .pass(Run::Apply)
            .await
            .unwrap()
            .has_errors()
    );
    let newest = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &old).unwrap();
    let report = signed(&repo, false).pass(Run::Plan).await.unwrap();
    assert!(
        problems(&report).contains("older than the status last written"),
        "{}",
        problems(&report)
    );
    // Restored, it verifies again.
    std::fs::write(&path, &newest).unwrap();
    assert!(
        !signed(&repo, false)
            .pass(Run::Apply)
            .await
            .unwrap()
            .has_errors()
    );

    // The object goes (temp@ revoked, file removed); its old file put back would make a
    // deleted object revoke again: the index remembers it.
    repo.remove("temp.yaml");
    let report = signed(&repo, false).pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{}", problems(&report));
    assert!(!path.exists());
    std::fs::write(&path, &old).unwrap();
    let report = signed(&repo, false).pass(Run::Plan).await.unwrap();
    assert!(
        problems(&report).contains("older than the status last written"),
        "{}",
        problems(&report)
    );
    assert_eq!(report.pending_changes(), 0, "{report:#?}");
}

/// Review finding 3: a status file deleted by hand (or lost by a checkout) made the
/// operator forget what its object gave, silently: the people stayed for good. The index
/// marks the removals the operator makes, so any other is noticed.
#[tokio::test]
async fn a_status_file_deleted_by_hand_is_noticed_not_forgotten() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "temp",
        CONTRACTORS,
        "Additive",
        "    - {email: temp@acme.example}\n",
    );
    repo.access(
        "other",
        CONTRACTORS,
        "Additive",
        "    - {email: other@acme.example}\n",
    );
    let first = signed(&repo, false).pass(Run::Apply).await.unwrap();
    assert!(!first.has_errors(), "{}", problems(&first));
    let temp_there = || {
        roster(&sim, CONTRACTORS)
            .iter()
            .any(|(e, _)| e == "temp@acme.example")
    };
    assert!(temp_there());

    // The file goes, and the pull request drops temp@: without the ledger nobody would
    // ever take temp@ back. The pass says so and changes nothing.
    let path = status_file(&repo, "temp");
    let saved = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    repo.access("temp", CONTRACTORS, "Additive", "");
    let report = signed(&repo, false).pass(Run::Apply).await.unwrap();
    let said = problems(&report);
    assert!(report.has_errors());
    assert!(
        said.contains("PolicyAccess finance/temp")
            && said.contains("never removed it, and it is gone")
            && said.contains("state forget"),
        "{said}"
    );
    assert!(temp_there(), "nothing is taken back on a missing ledger");
    assert!(!path.exists(), "no new ledger is written over the loss");

    // Manifest and file both gone: still noticed (the object's grants are not orphaned
    // in silence).
    repo.remove("temp.yaml");
    let report = signed(&repo, false).pass(Run::Plan).await.unwrap();
    assert!(
        problems(&report).contains("finance/temp"),
        "{}",
        problems(&report)
    );

    // Restored from history, the ledger drives the release again.
    std::fs::write(&path, &saved).unwrap();
    let report = signed(&repo, false).pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{}", problems(&report));
    assert!(!temp_there(), "the deleted object's grant is taken back");
    assert!(!path.exists(), "the operator removed it, and marked so");
    let again = signed(&repo, false).pass(Run::Plan).await.unwrap();
    assert!(!again.has_errors(), "{}", problems(&again));

    // A person who says so (`--adopt-unsigned-status`) takes the loss once, for good.
    std::fs::remove_file(status_file(&repo, "other")).unwrap();
    assert!(
        signed(&repo, false)
            .pass(Run::Plan)
            .await
            .unwrap()
            .has_errors()
    );
    let adopted = signed(&repo, true).pass(Run::Apply).await.unwrap();
    assert!(!adopted.has_errors(), "{}", problems(&adopted));
    let after = signed(&repo, false).pass(Run::Plan).await.unwrap();
    assert!(!after.has_errors(), "{}", problems(&after));
}

#[tokio::test]
async fn an_unsigned_directory_is_taken_only_when_adopted_then_stays_signed() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "team",
        CONTRACTORS,
        "Additive",
        "    - {email: newbie@acme.example}\n",
    );
    // Written by an older version: no signatures.
    assert!(!repo.mode().pass(Run::Apply).await.unwrap().has_errors());
    let path = status_file(&repo, "team");
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("# expensify-operator signature")
    );

    // With the key, unsigned files are not taken on their word...
    let report = signed(&repo, false).pass(Run::Apply).await.unwrap();
    assert!(
        problems(&report).contains("--adopt-unsigned-status"),
        "{}",
        problems(&report)
    );
    // ...until a person adopts the directory once; it is then signed.
    let report = signed(&repo, true).pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{}", problems(&report));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("# expensify-operator signature v1 ")
    );
    let report = signed(&repo, false).pass(Run::Apply).await.unwrap();
    assert!(!report.has_errors(), "{}", problems(&report));
    let ledger: PolicyAccess = signed(&repo, false)
        .status_dir
        .read(&key("team"))
        .unwrap()
        .unwrap();
    assert!(
        ledger
            .status
            .unwrap()
            .managed_members
            .iter()
            .any(|m| m.email == "newbie@acme.example" && m.added),
        "the ledger came through adoption"
    );

    // Without its index a signed directory cannot tell a replayed file: nothing is taken.
    std::fs::remove_file(repo.path().join(".expensify-status/.signatures")).unwrap();
    let report = signed(&repo, false).pass(Run::Apply).await.unwrap();
    assert!(
        problems(&report).contains("is missing while status files are signed"),
        "{}",
        problems(&report)
    );
    assert!(
        !repo.path().join(".expensify-status/.signatures").exists(),
        "a distrusted index is not rebuilt from what is on disk"
    );
}
