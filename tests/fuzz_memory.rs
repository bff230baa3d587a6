//! Memory stays bounded on hostile input at scale: YAML alias bombs, 100 MB files,
//! 10,000-member objects and 100,000 documents, for the manifest loader, the status
//! directory, the saved plan and the Expensify decoder. Each test asserts the limit or
//! error it meets and a generous bound on the peak memory it adds (the process's
//! `VmHWM`, reset before each case; a bound that catches a blow-up, not a target), and
//! prints what it measured (`cargo test --test fuzz_memory -- --nocapture`).
//!
//! The peak is the process's, and an allocator keeps what earlier cases freed: so each
//! test runs again alone in a child process of its own ([`measured_in_child`]), where
//! the measurement and the assertions are made.

use std::path::Path;

use expensify_operator::api::PolicyAccess;
use expensify_operator::expensify::wire::{classify, decode_rosters};
use expensify_operator::files::SavedPlan;
use expensify_operator::files::StatusDir;
use expensify_operator::files::loader::{self, MAX_DOCUMENTS_PER_FILE};
use expensify_operator::reconcile::ObjectKey;

/// Set in the child process a test runs itself in.
const CHILD: &str = "FUZZ_MEMORY_CHILD";

/// In the child: true, run the case. In the test runner: runs `test` alone in a child
/// process (this binary, filtered to it), fails if it fails, and returns false.
fn measured_in_child(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    // "1 passed": the filter found the test, so a child that ran nothing cannot pass.
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} in its own process:\n{stdout}\n{stderr}"
    );
    false
}

const MIB: u64 = 1024 * 1024;

const ACCESS: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: big, namespace: finance}\nspec:\n  connectorRef: {name: acme}\n  policy: {id: \"0A1B2C3D4E5F6071\"}\n";

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// Runs `case` and returns what it returned and how far the process's peak
/// resident memory rose above the resident memory before it (bytes).
fn peak_added<R>(what: &str, case: impl FnOnce() -> R) -> (R, u64) {
    // Writing 5 resets the peak to the current resident size (Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let result = case();
    let added = status_bytes("VmHWM:").saturating_sub(before);
    println!("{what}: peak +{:.1} MiB", added as f64 / MIB as f64);
    (result, added)
}

/// The classic "billion laughs": nine levels of ten aliases each, 10^9 leaves if expanded.
fn alias_bomb(leaf: &str) -> String {
    let mut text = format!("    - &l0 {leaf}\n");
    let mut bomb = String::from("l0");
    for level in 1..=9 {
        let aliases = vec![format!("*{bomb}"); 10].join(", ");
        bomb = format!("l{level}");
        text = format!("{text}    - &{bomb} [{aliases}]\n");
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_alias_bomb_in_a_manifest_is_refused_in_bounded_memory() {
    if !measured_in_child("an_alias_bomb_in_a_manifest_is_refused_in_bounded_memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{ACCESS}  members:\n{}",
        alias_bomb("{email: a@acme.example}")
    );
    let path = write(dir.path(), "bomb.yaml", &text);
    let (manifests, added) = peak_added("manifest alias bomb", || loader::load_file_alone(&path));
    let problems: Vec<String> = manifests.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("bomb.yaml (document 1)")
            && problems[0].contains("refused by the reader's limits"),
        "{problems:?}"
    );
    assert!(added < 64 * MIB, "{added}");
}

#[test]
fn an_alias_bomb_in_an_unsigned_status_file_is_refused_in_bounded_memory() {
    if !measured_in_child("an_alias_bomb_in_an_unsigned_status_file_is_refused_in_bounded_memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let place = dir.path().join("policyaccess/finance");
    std::fs::create_dir_all(&place).unwrap();
    let text = format!(
        "{ACCESS}  members:\n{}",
        alias_bomb("{email: a@acme.example}")
    );
    write(&place, "big.yaml", &text);
    // `plan` without the key reads what is there (and says it is unverified).
    let status = StatusDir::new(dir.path());
    let (read, added) = peak_added("status file alias bomb", || {
        status.read::<PolicyAccess>(&ObjectKey::new("finance", "big"))
    });
    let error = read.expect_err("an alias bomb is not a status").to_string();
    assert!(error.contains("big.yaml"), "{error}");
    assert!(added < 256 * MIB, "{added}");
}

/// A sparse file: its size is what a reader must check, so nothing is written.
fn sparse(dir: &Path, name: &str, bytes: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(bytes)
        .unwrap();
    path
}

#[test]
fn a_100_mb_manifest_is_refused_unread() {
    if !measured_in_child("a_100_mb_manifest_is_refused_unread") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = sparse(dir.path(), "big.yaml", 100 * 1000 * 1000);
    let (manifests, added) = peak_added("100 MB manifest", || loader::load_file_alone(&path));
    let problem = manifests.problems[0].to_string();
    assert!(
        problem.contains("big.yaml (document 1)")
            && problem.contains("more than the 32 MiB a manifest file may have"),
        "{problem}"
    );
    assert!(added < 8 * MIB, "{added}");
}

#[test]
fn a_100_mb_status_file_is_refused() {
    if !measured_in_child("a_100_mb_status_file_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let place = dir.path().join("policyaccess/finance");
    std::fs::create_dir_all(&place).unwrap();
    sparse(&place, "big.yaml", 100 * 1000 * 1000);
    let status = StatusDir::new(dir.path());
    let (read, added) = peak_added("100 MB status file", || {
        status.read::<PolicyAccess>(&ObjectKey::new("finance", "big"))
    });
    let error = read.expect_err("too large").to_string();
    assert!(
        error.contains("big.yaml") && error.contains("larger than 67108864 bytes"),
        "{error}"
    );
    assert!(added < 160 * MIB, "{added}");
}

#[test]
fn a_100_mb_saved_plan_is_refused() {
    if !measured_in_child("a_100_mb_saved_plan_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = sparse(dir.path(), "plan.json", 100 * 1000 * 1000);
    let (loaded, added) = peak_added("100 MB saved plan", || SavedPlan::load(&path));
    let error = loaded.expect_err("too large").to_string();
    assert!(
        error.contains("plan.json") && error.contains("larger than"),
        "{error}"
    );
    assert!(added < 160 * MIB, "{added}");
}

#[test]
fn a_10000_member_object_loads_in_bounded_memory() {
    if !measured_in_child("a_10000_member_object_loads_in_bounded_memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("{ACCESS}  members:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "    - {{email: person{i}@acme.example, role: user}}\n"
        ));
    }
    let path = write(dir.path(), "big.yaml", &text);
    let (manifests, added) = peak_added("10,000-member object", || loader::load_file_alone(&path));
    assert!(manifests.complete(), "{:?}", manifests.problems);
    assert_eq!(manifests.accesses[0].object.spec.members.len(), 10_000);
    assert!(added < 64 * MIB, "{added}");
}

#[test]
fn documents_past_100000_in_one_file_are_refused_in_bounded_memory() {
    if !measured_in_child("documents_past_100000_in_one_file_are_refused_in_bounded_memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Documents of other kinds: each is a skipped note, the cheapest a document can be.
    let text = "--- {kind: ConfigMap}\n".repeat(MAX_DOCUMENTS_PER_FILE + 1);
    let path = write(dir.path(), "many.yaml", &text);
    let (manifests, added) = peak_added("100,001 documents", || loader::load_file_alone(&path));
    assert_eq!(manifests.skipped.len(), MAX_DOCUMENTS_PER_FILE);
    let problems: Vec<String> = manifests.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [format!(
            "{} (document 100001): more than 100000 documents in one file; the rest is not read",
            path.display()
        )]
    );
    assert!(added < 128 * MIB, "{added}");
}

#[test]
fn a_100000_member_roster_decodes_in_bounded_memory() {
    if !measured_in_child("a_100000_member_roster_decodes_in_bounded_memory") {
        return;
    }
    let members: Vec<String> = (0..100_000)
        .map(|i| format!("{{\"email\":\"person{i}@acme.example\",\"role\":\"user\",\"submitsTo\":\"boss@acme.example\"}}"))
        .collect();
    let body = format!(
        "{{\"responseCode\":200,\"policyInfo\":{{\"P1\":{{\"employees\":[{}]}}}}}}",
        members.join(",")
    );
    println!(
        "100,000-member roster body: {:.1} MiB",
        body.len() as f64 / MIB as f64
    );
    let (rosters, added) = peak_added("100,000-member roster", || {
        let value = classify(200, None, body.as_bytes()).unwrap();
        decode_rosters(&value, &["P1".to_string()])
    });
    assert_eq!(rosters.unwrap()["P1"].len(), 100_000);
    assert!(added < 512 * MIB, "{added}");
}

/// 100,000 PolicyAccess documents in one file, all read (the budget's edge). Ten minutes in
/// a debug build, so in the long run only (docs/development.md "Fuzzing").
#[test]
#[ignore = "long run: 10 minutes unoptimised on a busy machine"]
fn a_100000_document_file_loads_in_bounded_memory() {
    if !measured_in_child("a_100000_document_file_loads_in_bounded_memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..MAX_DOCUMENTS_PER_FILE)
        .map(|i| {
            format!(
                "---\n{}  members: [{{email: p{i}@acme.example}}]\n",
                ACCESS.replace("name: big", &format!("name: team-{i}"))
            )
        })
        .collect();
    let path = write(dir.path(), "all.yaml", &text);
    println!(
        "100,000 documents: {:.1} MiB",
        text.len() as f64 / MIB as f64
    );
    drop(text);
    let (manifests, added) = peak_added("100,000 PolicyAccess documents", || {
        loader::load_file_alone(&path)
    });
    assert!(manifests.complete(), "{:?}", manifests.problems.first());
    assert_eq!(manifests.accesses.len(), MAX_DOCUMENTS_PER_FILE);
    assert!(added < 1024 * MIB, "{added}");
}
