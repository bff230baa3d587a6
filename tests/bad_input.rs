//! The bad-input corpus. Each file in `tests/bad_input/` is one broken manifest; its
//! `# expect:` lines are what the error must say. Every case is loaded next to a good
//! connector and a good PolicyAccess: the case must fail alone, naming its file and
//! document, and the good objects must still load. Cases too big to commit (a 50 MB file,
//! 200,000-deep nesting, 10,000 documents or members, invalid UTF-8) are made here.
//! A few cases also run through the binary against the simulator: nothing is revoked
//! because of a broken manifest.

mod support;

use std::path::Path;
use std::process::Output;

use expensify_operator::files::loader::{self, Manifests};
use support::*;
use tokio::process::Command;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad_input");

const CONNECTOR: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {name: acme, namespace: finance}\nspec:\n  credentialsSecretRef: {name: expensify-credentials}\n  adminEmail: it-admin@acme.example\n";
const GOOD: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: good, namespace: finance}\nspec:\n  connectorRef: {name: acme}\n  policy: {id: \"0A1B2C3D4E5F6071\"}\n  members: [{email: dave@acme.example}]\n";

/// Loads `case` (written as `file`) beside a good connector and a good PolicyAccess.
fn load_beside_good_objects(file: &str, case: &[u8]) -> (tempfile::TempDir, Manifests) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("connector.yaml"), CONNECTOR).unwrap();
    std::fs::write(dir.path().join("good.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join(file), case).unwrap();
    let manifests = loader::load(dir.path(), &[]).unwrap();
    (dir, manifests)
}

/// The case failed, alone, with its file, a document number and every expected text.
fn assert_fails_alone(file: &str, manifests: &Manifests, expected: &[String]) {
    let problems: Vec<String> = manifests.problems.iter().map(ToString::to_string).collect();
    assert!(!problems.is_empty(), "{file}: no problem reported");
    assert!(!manifests.complete(), "{file}");
    for problem in &problems {
        assert!(
            problem.contains(&format!("{file} (document ")),
            "{file}: a problem not naming the file and document: {problem}"
        );
    }
    for text in expected {
        assert!(
            problems.iter().any(|p| p.contains(text.as_str())),
            "{file}: expected {text:?} in {problems:#?}"
        );
    }
    assert!(
        manifests.connectors.iter().any(|c| c.key.name == "acme"),
        "{file}: the good connector was not loaded"
    );
    assert!(
        manifests.accesses.iter().any(|a| a.key.name == "good"),
        "{file}: the good PolicyAccess was not loaded"
    );
}

#[test]
fn every_corpus_case_fails_alone_naming_file_document_and_field() {
    let mut cases: Vec<_> = std::fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "the corpus is in {CORPUS}");
    for path in cases {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(!expected.is_empty(), "{file} has no `# expect:` line");
        let (_dir, manifests) = load_beside_good_objects(file, text.as_bytes());
        assert_fails_alone(file, &manifests, &expected);
    }
}

#[test]
fn invalid_utf8_is_a_yaml_error_of_its_file() {
    let mut bytes = GOOD.replace("good", "broken").into_bytes();
    bytes.extend_from_slice(b"  mode: \xff\xfe\n");
    let (_dir, manifests) = load_beside_good_objects("utf8.yaml", &bytes);
    assert_fails_alone("utf8.yaml", &manifests, &["not valid YAML".to_string()]);
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let mut text = GOOD.replace("good", "broken");
    text.push_str("  deep: ");
    text.push_str(&"[".repeat(200_000));
    text.push_str(&"]".repeat(200_000));
    text.push('\n');
    let (_dir, manifests) = load_beside_good_objects("deep.yaml", text.as_bytes());
    assert_fails_alone(
        "deep.yaml",
        &manifests,
        &["not valid YAML: recursion limit exceeded".to_string()],
    );
}

#[test]
fn a_50_mb_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("connector.yaml"), CONNECTOR).unwrap();
    std::fs::write(dir.path().join("good.yaml"), GOOD).unwrap();
    // Sparse: the size is what is checked, so the test writes nothing.
    let big = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
    big.set_len(50 * 1024 * 1024).unwrap();
    let manifests = loader::load(dir.path(), &[]).unwrap();
    assert_fails_alone(
        "big.yaml",
        &manifests,
        &["more than the 32 MiB a manifest file may have".to_string()],
    );
}

fn many_members(count: usize) -> String {
    let mut text = GOOD
        .replace("good", "big")
        .replace("  members: [{email: dave@acme.example}]\n", "  members:\n");
    for i in 0..count {
        text.push_str(&format!(
            "    - {{email: person{i}@acme.example, role: user}}\n"
        ));
    }
    text
}

#[test]
fn an_object_with_10000_members_loads() {
    let (_dir, manifests) = load_beside_good_objects("big.yaml", many_members(10_000).as_bytes());
    assert!(manifests.complete(), "{:?}", manifests.problems);
    let big = manifests
        .accesses
        .iter()
        .find(|a| a.key.name == "big")
        .unwrap();
    assert_eq!(big.object.spec.members.len(), 10_000);
}

fn numbered_access(i: usize) -> String {
    GOOD.replace("name: good", &format!("name: team-{i}"))
}

/// 10,000 documents across 10,000 files are read by `benches/loader.rs` (a few seconds
/// unoptimised); here 1,000 files show the layout works.
#[test]
fn ten_thousand_documents_load_in_one_file_and_many_across_files() {
    let one_file: String = (0..10_000)
        .map(|i| format!("---\n{}", numbered_access(i)))
        .collect();
    let (_dir, manifests) = load_beside_good_objects("all.yaml", one_file.as_bytes());
    assert!(manifests.complete(), "{:?}", manifests.problems.first());
    assert_eq!(manifests.accesses.len(), 10_001);
    assert_eq!(
        manifests
            .accesses
            .iter()
            .find(|a| a.key.name == "team-9999")
            .unwrap()
            .source
            .document,
        10_000
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("connector.yaml"), CONNECTOR).unwrap();
    for i in 0..1_000 {
        let sub = dir.path().join(format!("team-{}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("{i}.yaml")), numbered_access(i)).unwrap();
    }
    let manifests = loader::load(dir.path(), &[]).unwrap();
    assert!(manifests.complete(), "{:?}", manifests.problems.first());
    assert_eq!(manifests.accesses.len(), 1_000);
}

fn command(endpoint: &str, args: &[&str]) -> Command {
    binary(endpoint, args, ADMIN_SECRET)
}

async fn run(endpoint: &str, args: &[&str]) -> Output {
    command(endpoint, args).output().await.unwrap()
}

fn text(output: &Output) -> String {
    printed(output)
}

fn corpus_case(name: &str, endpoint: &str) -> String {
    let text = std::fs::read_to_string(Path::new(CORPUS).join(name)).unwrap();
    text.replace("name: broken,", "name: broken-case,").replace(
        "adminEmail:",
        &format!("endpoint: {endpoint}\n  adminEmail:"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typo_revokes_nobody_and_other_objects_still_sync() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    let dir = repo.path().to_str().unwrap();
    repo.connector("");
    repo.access(
        "team",
        ENGINEERING,
        "Additive",
        "    - {email: new@acme.example}\n",
    );
    let first = run(&sim.endpoint(), &["apply", dir]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let finance = roster(&sim, FINANCE);
    let engineering = roster(&sim, ENGINEERING);
    assert!(engineering.iter().any(|(e, _)| e == "new@acme.example"));

    // The object that granted new@ is now of a misspelled kind: it must not read as
    // deleted. An Authoritative object with `memebers:` must not read as "nobody".
    let team = std::fs::read_to_string(repo.path().join("team.yaml")).unwrap();
    repo.write(
        "team.yaml",
        &team.replace("kind: PolicyAccess", "kind: PolicyAcess"),
    );
    repo.write(
        "typo.yaml",
        &corpus_case("unknown-field-spec.yaml", &sim.endpoint()),
    );
    // Another object still syncs beside the broken ones.
    repo.access(
        "contractors",
        CONTRACTORS,
        "Additive",
        "    - {email: later@acme.example}\n",
    );
    let plan = run(&sim.endpoint(), &["plan", dir]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    let shown = text(&plan);
    for expected in [
        "team.yaml (document 1): PolicyAcess finance/team: kind \"PolicyAcess\" does not exist",
        "typo.yaml (document 1): PolicyAccess finance/broken-case: unknown field spec.memebers",
        "+ later@acme.example",
    ] {
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
    let applied = run(&sim.endpoint(), &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(1), "{}", text(&applied));
    assert_eq!(roster(&sim, FINANCE), finance, "nobody revoked on Finance");
    assert_eq!(
        roster(&sim, ENGINEERING),
        engineering,
        "nobody revoked on Engineering"
    );
    assert!(
        roster(&sim, CONTRACTORS)
            .iter()
            .any(|(e, _)| e == "later@acme.example"),
        "the good object synced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_ref_outside_the_secrets_dir_is_refused() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.write(
        "connector.yaml",
        &corpus_case("secret-name-escapes.yaml", &sim.endpoint()),
    );
    let secrets = tempfile::tempdir().unwrap();
    let output = run(
        &sim.endpoint(),
        &[
            "plan",
            repo.path().to_str().unwrap(),
            "--secrets-dir",
            secrets.path().to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("spec.credentialsSecretRef.name: \"/etc\" is not a valid"),
        "{}",
        text(&output)
    );
    assert_eq!(
        sim.state().counters().by_job.values().sum::<u64>(),
        0,
        "nothing was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn skipped_files_are_noted_and_a_directory_without_a_connector_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "# team\n").unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("good.yaml"), GOOD).unwrap();
    let output = run(
        "https://unused.example/",
        &["plan", dir.path().to_str().unwrap()],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    for expected in [
        "README.md: skipped (not a .yaml or .yml file)",
        "config.yaml (document 1): ConfigMap x skipped",
        "no ExpensifyConnector in",
        "1 PolicyAccess and 1 document(s) of other kinds, and 1 other file(s)",
    ] {
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
    assert!(!shown.contains("No changes"), "{shown}");
}
