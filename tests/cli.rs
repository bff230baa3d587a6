//! The real binary, as a user runs it, against the simulator.

mod support;

use std::process::Output;
use std::time::Duration;

use support::*;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_expensify-operator");

fn command(allowed: &str, args: &[&str], secret: &str) -> Command {
    binary(allowed, args, secret)
}

async fn run(allowed: &str, args: &[&str]) -> Output {
    command(allowed, args, ADMIN_SECRET).output().await.unwrap()
}

fn text(output: &Output) -> String {
    printed(output)
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_exit_codes_follow_the_contract() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();

    let pending = run(&sim.endpoint(), &["plan", dir]).await;
    assert_eq!(pending.status.code(), Some(2), "{}", text(&pending));
    let shown = String::from_utf8_lossy(&pending.stdout);
    assert!(
        shown.contains("+ new@acme.example") && shown.contains("by finance/finance"),
        "{shown}"
    );
    assert!(
        shown.contains("Plan: 1 to grant, 0 to change, 0 to revoke."),
        "{shown}"
    );
    assert_eq!(updates(&sim), 0, "plan writes nothing");
    assert!(
        !repo.path().join(".expensify-status").exists(),
        "plan writes no status"
    );

    let json = run(&sim.endpoint(), &["plan", dir, "-o", "json"]).await;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["pendingChanges"], 1);
    assert_eq!(
        value["connectors"][0]["changes"][0]["email"],
        "new@acme.example"
    );

    let applied = run(&sim.endpoint(), &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    assert!(String::from_utf8_lossy(&applied.stdout).contains("Applied 1 change(s), 0 failed."));
    assert!(
        String::from_utf8_lossy(&applied.stderr).contains("access changed"),
        "the audit line is logged"
    );

    let in_sync = run(&sim.endpoint(), &["plan", dir]).await;
    assert_eq!(in_sync.status.code(), Some(0), "{}", text(&in_sync));
    assert!(String::from_utf8_lossy(&in_sync.stdout).contains("No changes."));

    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example, role: owner}\n",
    );
    let invalid = run(&sim.endpoint(), &["plan", dir]).await;
    assert_eq!(invalid.status.code(), Some(1), "{}", text(&invalid));
    assert!(String::from_utf8_lossy(&invalid.stdout).contains("spec.members[0].role"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_secret_fails_apply_and_never_shows() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let secret = "wrong-secret-never-print-me";
    let output = command(
        &sim.endpoint(),
        &[
            "apply",
            repo.path().to_str().unwrap(),
            "--log-level",
            "trace",
        ],
        secret,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    assert!(all.contains("credentials rejected"), "{all}");
    assert!(!all.contains(secret), "the secret leaked");
    let status = std::fs::read_to_string(
        repo.path()
            .join(".expensify-status/expensifyconnector/finance/acme.yaml"),
    )
    .unwrap();
    assert!(
        status.contains("phase: Error") && !status.contains(secret),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_name_where_they_were_looked_for() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let output = Command::new(BIN)
        .args(["plan", repo.path().to_str().unwrap()])
        .env("EXPENSIFY_ALLOWED_ENDPOINTS", sim.endpoint())
        .env_remove("EXPENSIFY_PARTNER_USER_ID")
        .env_remove("EXPENSIFY_PARTNER_USER_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("Secret \"expensify-credentials\" not found"),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_plan_is_in_sync() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    let file = repo.path().join("exported.yaml");
    let exported = run(
        &sim.endpoint(),
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
            "--connector-name",
            "acme",
            "-n",
            "finance",
            "--output-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert!(
        yaml.contains("kind: ExpensifyConnector") && yaml.contains("mode: Authoritative"),
        "{yaml}"
    );
    let planned = run(&sim.endpoint(), &["plan", repo.path().to_str().unwrap()]).await;
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_to_a_directory_writes_one_file_per_policy_then_plan_is_in_sync() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    let out = repo.path().join("expensify");
    let exported = run(
        &sim.endpoint(),
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
            "--connector-name",
            "acme",
            "--namespace",
            "finance",
            "--output-dir",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(
        files.contains(&"expensify-connector.yaml".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&format!("policy-{}.yaml", FINANCE.to_ascii_lowercase())),
        "{files:?}"
    );
    assert_eq!(
        files.len(),
        6,
        "the connector and one file per visible policy: {files:?}"
    );
    let planned = run(&sim.endpoint(), &["plan", repo.path().to_str().unwrap()]).await;
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    let bad_name = run(
        &sim.endpoint(),
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
            "--namespace",
            "../x",
            "--output-dir",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(bad_name.status.code(), Some(1), "{}", text(&bad_name));
    assert!(
        text(&bad_name).contains("--namespace"),
        "{}",
        text(&bad_name)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn review_lists_every_access_in_each_format() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    repo.connector("  owners: [IT-Admin@acme.example, sec-lead@acme.example]\n");
    let dir = repo.path().to_str().unwrap();
    let csv = run(&sim.endpoint(), &["review", dir, "-o", "csv"]).await;
    assert_eq!(csv.status.code(), Some(0), "{}", text(&csv));
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    assert!(
        csv.starts_with(
            "connector,policyID,policyName,email,role,managedBy,note,connectorOwners,requests,requestReasons,requestApprovers,requestDecidedBy,requestEnds\n"
        ),
        "{csv}"
    );
    assert!(
        csv.contains(
            "finance/acme,F1E2D3C4B5A69788,Finance,cfo@acme.example,admin,unmanaged,owner,it-admin@acme.example sec-lead@acme.example,,,,,\n"
        ),
        "{csv}"
    );
    // `--format` is the old name of `-o/--output`, kept for old scripts.
    let json = run(&sim.endpoint(), &["review", dir, "--format", "json"]).await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.len(), csv.lines().count() - 1);
    let markdown = run(&sim.endpoint(), &["review", dir]).await;
    assert!(String::from_utf8_lossy(&markdown.stdout).contains("| connector | policyID |"));
}

/// `spec.owners`: shown in the plan, warned about by `validate` when absent, refused
/// when not emails.
#[tokio::test(flavor = "multi_thread")]
async fn connector_owners_are_shown_in_the_plan_and_checked_by_validate() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let validate = run(&sim.endpoint(), &["validate", dir]).await;
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate));
    assert!(
        text(&validate).contains("spec.owners") && text(&validate).contains("is empty"),
        "{}",
        text(&validate)
    );

    repo.connector("  owners: [it-admin@acme.example, sec-lead@acme.example]\n");
    let plan = run(&sim.endpoint(), &["plan", dir]).await;
    assert!(
        String::from_utf8_lossy(&plan.stdout)
            .contains("owners: it-admin@acme.example, sec-lead@acme.example"),
        "{}",
        text(&plan)
    );
    let json = run(&sim.endpoint(), &["plan", dir, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        json["connectors"][0]["status"]["owners"],
        serde_json::json!(["it-admin@acme.example", "sec-lead@acme.example"]),
        "{json}"
    );

    repo.connector("  owners: [not-an-email]\n");
    let validate = run(&sim.endpoint(), &["validate", dir]).await;
    assert_eq!(validate.status.code(), Some(1), "{}", text(&validate));
    assert!(
        text(&validate).contains("spec.owners[0]"),
        "{}",
        text(&validate)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_syncs_on_change_and_stops_cleanly() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    // Fast pacing: the simulator here enforces no limit, and the test should not wait 10 s.
    let mut child = command(
        &sim.endpoint(),
        &["watch", repo.path().to_str().unwrap(), "--pacing", "100/1s"],
        ADMIN_SECRET,
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let until = |what: &'static str, check: Box<dyn Fn() -> bool + Send>| async move {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    };
    let sim_for_first = std::sync::Arc::new(sim);
    let first = sim_for_first.clone();
    until(
        "the first sync",
        Box::new(move || {
            roster(&first, FINANCE)
                .iter()
                .any(|(e, _)| e == "new@acme.example")
        }),
    )
    .await;
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example, role: auditor}\n    - {email: second@acme.example}\n",
    );
    let second = sim_for_first.clone();
    until(
        "the sync after the edit",
        Box::new(move || {
            roster(&second, FINANCE)
                .iter()
                .any(|(e, _)| e == "second@acme.example")
        }),
    )
    .await;
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_from_any_directory_and_leaves_nothing_behind() {
    // Not the checkout: the examples are built into the binary (as after `cargo install`).
    let elsewhere = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("demo")
        .current_dir(elsewhere.path())
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing written where it ran"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("the built-in examples"), "{stdout}");
    assert!(!text(&output).contains("skipped"), "{}", text(&output));
    for step in [
        "1. plan",
        "2. apply",
        "3. plan again",
        "No changes.",
        "4. review",
        "5. a request",
        "6. its end",
        "7. what Expensify saw",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    // The request: merged, granted with its end, then taken back at that end, alone.
    let (granted, ended) = stdout
        .split_once("6. its end")
        .unwrap_or_else(|| panic!("{stdout}"));
    let granted = granted.split_once("5. a request").unwrap().1;
    assert!(
        granted.contains("+ dana@acme.example")
            && granted.contains("by finance/request:finance-team-dana-q4-close"),
        "the grant lands: {granted}"
    );
    assert!(
        granted.contains("Applied 1 change(s), 0 failed."),
        "nothing but the grant: {granted}"
    );
    assert!(
        granted.contains("finance/finance-team-dana-q4-close: dana@acme.example asks admin on Finance for 4h: Active (Approved), ends 20"),
        "{granted}"
    );
    let ended = ended.split_once("7. what Expensify saw").unwrap().0;
    assert!(
        ended.contains("- dana@acme.example") && ended.contains("Applied 1 change(s), 0 failed."),
        "dana alone is taken back: {ended}"
    );
    assert!(ended.contains("Expired (Ended)"), "{ended}");
    assert!(
        ended.contains("Expensify is as it was before the request: dana is taken back, nobody else was touched."),
        "{ended}"
    );
    assert!(
        !std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/.expensify-status"
        ))
        .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_a_directory_given_with_examples() {
    let output = Command::new(BIN)
        .args([
            "demo",
            "--examples",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
        ])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(concat!(
            "manifests:  ",
            env!("CARGO_MANIFEST_DIR"),
            "/examples"
        )),
        "{stdout}"
    );
    assert!(
        !std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/.expensify-status"
        ))
        .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_refuses_other_than_loopback() {
    let output = run(
        expensify_operator::expensify::DEFAULT_ENDPOINT,
        &[
            "simulator",
            "--seed",
            concat!(env!("CARGO_MANIFEST_DIR"), "/extras/simulator-seed.yaml"),
            "--listen",
            "0.0.0.0:0",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("loopback only"), "{}", text(&output));
}

/// Cosmetics a user sees (issue 17 item 15): a seed parse error names its file, not
/// `<input>`; a missing kubeconfig is named once, unquoted; `plan -o json` spells
/// `policyID` as the CRD status does.
#[tokio::test(flavor = "multi_thread")]
async fn messages_name_files_once_and_spell_policy_id_one_way() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("broken-seed.yaml");
    std::fs::write(&seed, "accounts: [\n  - x: 1\npolicies: 3\n").unwrap();
    let endpoint = expensify_operator::expensify::DEFAULT_ENDPOINT;
    let output = run(endpoint, &["simulator", "--seed", seed.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("--> {}:2:3", seed.display()))
            && !text(&output).contains("<input>"),
        "{}",
        text(&output)
    );

    let missing = dir.path().join("no-such-kubeconfig");
    let output = run(
        endpoint,
        &[
            "controller",
            "--kubeconfig",
            missing.to_str().unwrap(),
            "--probes-addr",
            "127.0.0.1:0",
        ],
    )
    .await;
    assert_eq!(
        text(&output).matches(missing.to_str().unwrap()).count(),
        1,
        "{}",
        text(&output)
    );

    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let planned = run(
        &sim.endpoint(),
        &["plan", repo.path().to_str().unwrap(), "-o", "json"],
    )
    .await;
    let json = String::from_utf8_lossy(&planned.stdout);
    assert!(
        json.contains("\"policyID\"") && !json.contains("policyId"),
        "{json}"
    );
}

// ---------------------------------------------------------------------------------------
// Colour.

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

#[tokio::test(flavor = "multi_thread")]
async fn colour_follows_color_no_color_and_the_no_color_variable() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    // A file that is skipped with an info line: something on stderr to colour.
    repo.write("README.md", "notes");
    let dir = repo.path().to_str().unwrap();
    // Forced on (no NO_COLOR): both streams coloured, so the test can see colour at all.
    let mut forced = command(
        &sim.endpoint(),
        &["plan", dir, "--color", "always"],
        ADMIN_SECRET,
    );
    let forced = forced.env_remove("NO_COLOR").output().await.unwrap();
    assert!(
        has_escape(&forced.stdout) && has_escape(&forced.stderr),
        "{}",
        text(&forced)
    );
    // NO_COLOR (set by `binary`) wins over --color always, on stdout and stderr.
    let quiet = run(&sim.endpoint(), &["plan", dir, "--color", "always"]).await;
    assert_eq!(quiet.status.code(), Some(2), "{}", text(&quiet));
    assert!(
        !has_escape(&quiet.stdout) && !has_escape(&quiet.stderr),
        "{}",
        text(&quiet)
    );
    // So does --no-color.
    let mut flagged = command(
        &sim.endpoint(),
        &["plan", dir, "--color", "always", "--no-color"],
        ADMIN_SECRET,
    );
    let flagged = flagged.env_remove("NO_COLOR").output().await.unwrap();
    assert!(
        !has_escape(&flagged.stdout) && !has_escape(&flagged.stderr),
        "{}",
        text(&flagged)
    );
    // An empty NO_COLOR counts as unset.
    let mut empty = command(
        &sim.endpoint(),
        &["plan", dir, "--color", "always"],
        ADMIN_SECRET,
    );
    let empty = empty.env("NO_COLOR", "").output().await.unwrap();
    assert!(has_escape(&empty.stdout), "{}", text(&empty));
}

// ---------------------------------------------------------------------------------------
// Completions.

#[tokio::test(flavor = "multi_thread")]
async fn completions_for_each_shell_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(
            expensify_operator::expensify::DEFAULT_ENDPOINT,
            &["completions", shell],
        )
        .await;
        assert_eq!(output.status.code(), Some(0), "{shell}: {}", text(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(!script.trim().is_empty(), "{shell}");
        for subcommand in [
            "plan",
            "apply",
            "validate",
            "review",
            "export",
            "controller",
            "completions",
        ] {
            assert!(
                script.contains(subcommand),
                "{shell} script lacks {subcommand}"
            );
        }
        assert!(script.contains("expensify-operator"), "{shell}");
    }
}

// ---------------------------------------------------------------------------------------
// controller: kubeconfig and context.

#[tokio::test(flavor = "multi_thread")]
async fn controller_names_a_missing_kubeconfig_or_an_unknown_context() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let endpoint = expensify_operator::expensify::DEFAULT_ENDPOINT;
    let probes = ["--probes-addr", "127.0.0.1:0"];
    let mut args = vec!["controller", "--kubeconfig", missing.to_str().unwrap()];
    args.extend(probes);
    let output = run(endpoint, &args).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("cannot read kubeconfig {}", missing.display())),
        "{}",
        text(&output)
    );
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: dev, context: {cluster: c, user: u}}]\ncurrent-context: dev\n",
    )
    .unwrap();
    let mut args = vec![
        "controller",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        "prod",
    ];
    args.extend(probes);
    let output = run(endpoint, &args).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(&format!(
            "context \"prod\" is not in kubeconfig {}; its contexts: dev",
            kubeconfig.display()
        )),
        "{}",
        text(&output)
    );
}

// ---------------------------------------------------------------------------------------
// A file where a directory is taken, and -n.

/// A PolicyAccess manifest in `namespace` on `connector` (same namespace) and `policy`.
fn access_yaml(name: &str, namespace: &str, connector: &str, policy: &str, extra: &str) -> String {
    format!(
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  connectorRef: {{name: {connector}, namespace: finance}}\n  policy: {{id: \"{policy}\"}}\n{extra}"
    )
}

/// The binary with no credentials anywhere: no secrets dir, no environment.
fn without_credentials(allowed: &str, args: &[&str]) -> Command {
    let mut command = command(allowed, args, ADMIN_SECRET);
    command
        .env_remove("EXPENSIFY_PARTNER_USER_ID")
        .env_remove("EXPENSIFY_PARTNER_USER_SECRET")
        .env_remove("EXPENSIFY_SECRETS_DIR");
    command
}

/// A repository with two PolicyAccess files asking for one grant each, in two namespaces,
/// below a directory of its own (`teams/`), and a `.git` root.
fn two_team_repo(sim: &expensify_operator::simulator::SimulatorHandle) -> Repo {
    let repo = repo_with_a_pending_grant(sim, &sim.endpoint());
    std::fs::create_dir(repo.path().join(".git")).unwrap();
    repo.remove("finance.yaml");
    let member = |m: &str| format!("  members:\n    - {m}\n");
    repo.write(
        "teams/finance.yaml",
        &access_yaml(
            "finance",
            "finance",
            "acme",
            FINANCE,
            &member("{email: new@acme.example, role: auditor}"),
        ),
    );
    repo.write(
        "teams/eng.yaml",
        &access_yaml(
            "eng",
            "engineering",
            "acme",
            ENGINEERING,
            &member("{email: new2@acme.example}"),
        ),
    );
    repo
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_review_of_a_file_read_the_repository_and_show_the_files_objects() {
    let sim = start(&unlimited_seed()).await;
    let repo = two_team_repo(&sim);
    let eng = repo.path().join("teams/eng.yaml");
    let planned = run(&sim.endpoint(), &["plan", eng.to_str().unwrap()]).await;
    let shown = String::from_utf8_lossy(&planned.stdout).to_string();
    assert_eq!(planned.status.code(), Some(2), "{}", text(&planned));
    assert!(shown.contains("+ new2@acme.example"), "{shown}");
    assert!(
        !shown.contains("new@acme.example"),
        "the other file's grant is not shown: {shown}"
    );
    assert!(shown.contains("Plan: 1 to grant"), "{shown}");

    // -n: the namespace's objects only.
    let dir = repo.path().to_str().unwrap();
    let planned = run(
        &sim.endpoint(),
        &["plan", dir, "-n", "finance", "-o", "json"],
    )
    .await;
    let value: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    assert_eq!(value["pendingChanges"], 1, "{value}");
    assert_eq!(
        value["connectors"][0]["changes"][0]["email"],
        "new@acme.example"
    );

    // A namespace with nothing in it: a typo, so it fails saying so.
    let nothing = run(&sim.endpoint(), &["plan", dir, "-n", "sales"]).await;
    assert_eq!(nothing.status.code(), Some(1), "{}", text(&nothing));
    assert!(
        String::from_utf8_lossy(&nothing.stdout)
            .contains("namespace \"sales\" holds no ExpensifyConnector or PolicyAccess"),
        "{}",
        text(&nothing)
    );

    // The connector's own file shows everything on it.
    let connector = repo.path().join("connector.yaml");
    let planned = run(
        &sim.endpoint(),
        &["plan", connector.to_str().unwrap(), "-o", "json"],
    )
    .await;
    let value: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    assert_eq!(value["pendingChanges"], 2, "{value}");

    // review of a file: the rows of the policy its object selects.
    let reviewed = run(
        &sim.endpoint(),
        &["review", eng.to_str().unwrap(), "-o", "csv"],
    )
    .await;
    assert_eq!(reviewed.status.code(), Some(0), "{}", text(&reviewed));
    let csv = String::from_utf8_lossy(&reviewed.stdout).to_string();
    assert!(csv.contains(",Engineering,"), "{csv}");
    assert!(
        !csv.contains(",Finance,") && !csv.contains(",Marketing,"),
        "{csv}"
    );
    let reviewed = run(
        &sim.endpoint(),
        &["review", dir, "-n", "finance", "-o", "csv"],
    )
    .await;
    let csv = String::from_utf8_lossy(&reviewed.stdout).to_string();
    // The connector is in `finance`: every policy it sees.
    assert!(
        csv.contains(",Marketing,") && csv.contains(",Engineering,"),
        "{csv}"
    );

    // After apply (of the directory), the file plans in sync: status is the repository's.
    let applied = run(&sim.endpoint(), &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    let planned = run(&sim.endpoint(), &["plan", eng.to_str().unwrap()]).await;
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    assert!(!repo.path().join("teams/.expensify-status").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_a_file_shows_what_its_removed_objects_take_back() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let member = |m: &str| format!("  members:\n    - {m}\n");
    let temp = access_yaml(
        "temp",
        "finance",
        "acme",
        ENGINEERING,
        &member("{email: temp@acme.example}"),
    );
    let keep = access_yaml(
        "keep",
        "finance",
        "acme",
        ENGINEERING,
        &member("{email: keep@acme.example}"),
    );
    repo.write("team.yaml", &format!("{keep}---\n{temp}"));
    let dir = repo.path().to_str().unwrap();
    let applied = run(&sim.endpoint(), &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    repo.write("team.yaml", &keep);
    let team = repo.path().join("team.yaml");
    let planned = run(&sim.endpoint(), &["plan", team.to_str().unwrap()]).await;
    let shown = String::from_utf8_lossy(&planned.stdout).to_string();
    assert_eq!(planned.status.code(), Some(2), "{}", text(&planned));
    assert!(
        shown.contains("- temp@acme.example") && shown.contains("by finance/temp"),
        "{shown}"
    );
    let other = repo.path().join("finance.yaml");
    let planned = run(&sim.endpoint(), &["plan", other.to_str().unwrap()]).await;
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_and_watch_refuse_a_file() {
    let sim = start(&unlimited_seed()).await;
    let repo = two_team_repo(&sim);
    let eng = repo.path().join("teams/eng.yaml");
    for command in ["apply", "watch"] {
        let output = run(&sim.endpoint(), &[command, eng.to_str().unwrap()]).await;
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        let all = text(&output);
        assert!(
            all.contains(&format!("{command} takes a directory, not a file")),
            "{all}"
        );
        assert!(all.contains("the ledger") && all.contains("plan "), "{all}");
    }
    assert_eq!(
        sim.state().counters().requests,
        0,
        "nothing was read or written"
    );
    assert!(!repo.path().join(".expensify-status").exists());
    let notes = repo.path().join("notes.txt");
    std::fs::write(&notes, "x").unwrap();
    let output = run(&sim.endpoint(), &["plan", notes.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("is not a manifest"),
        "{}",
        text(&output)
    );
}

// ---------------------------------------------------------------------------------------
// validate: offline checks.

#[tokio::test(flavor = "multi_thread")]
async fn validate_lists_every_problem_without_credentials_or_network() {
    let sim = start(&unlimited_seed()).await;
    let attacker = Attacker::start().await;
    let mut repo = Repo::new(&sim);
    // The connector points at a listener that counts connections: validate must make none.
    repo.endpoint = attacker.endpoint.clone();
    repo.connector("  syncInterval: 5s\n");
    repo.write(
        "beta.yaml",
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {{name: beta, namespace: finance}}\nspec:\n  credentialsSecretRef: {{name: beta-credentials}}\n  endpoint: {}\n  adminEmail: it-admin@acme.example\n",
            sim.endpoint()
        ),
    );
    let member = |m: &str| format!("  members:\n    - {m}\n");
    let files = [
        (
            "expired",
            "acme",
            FINANCE,
            member("{email: old@acme.example, expiresAt: \"2020-01-01T00:00:00Z\"}"),
        ),
        (
            "badrole",
            "acme",
            FINANCE,
            member("{email: x@acme.example, role: owner}"),
        ),
        ("orphan", "nope", FINANCE, member("{email: y@acme.example}")),
        (
            "auth-a",
            "acme",
            CONTRACTORS,
            format!(
                "  mode: Authoritative\n{}",
                member("{email: a@acme.example}")
            ),
        ),
        (
            "auth-b",
            "acme",
            CONTRACTORS,
            format!(
                "  mode: Authoritative\n{}",
                member("{email: b@acme.example}")
            ),
        ),
        (
            "role-a",
            "acme",
            ENGINEERING,
            member("{email: erin@acme.example, role: admin}"),
        ),
        (
            "role-b",
            "acme",
            ENGINEERING,
            member("{email: erin@acme.example, role: user}"),
        ),
        (
            "on-beta",
            "beta",
            FINANCE,
            member("{email: z@acme.example}"),
        ),
    ];
    for (name, connector, policy, extra) in &files {
        repo.write(
            &format!("{name}.yaml"),
            &access_yaml(name, "finance", connector, policy, extra),
        );
    }
    let typo = access_yaml("typo", "finance", "acme", FINANCE, "  memebers: []\n");
    repo.write("typo.yaml", &typo);
    let dup = access_yaml(
        "dup",
        "finance",
        "acme",
        FINANCE,
        &member("{email: d@acme.example}"),
    );
    repo.write("dup-1.yaml", &dup);
    repo.write("dup-2.yaml", &dup);
    let dir = repo.path().to_str().unwrap();

    // Allowed: the simulator only, so the attacker's endpoint is refused.
    let output = without_credentials(&sim.endpoint(), &["validate", dir])
        .output()
        .await
        .unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    for expected in [
        "connector.yaml (document 1): ExpensifyConnector finance/acme: spec.syncInterval:",
        "ExpensifyConnector finance/acme: spec.endpoint:",
        "is not an allowed endpoint",
        "expired.yaml (document 1): PolicyAccess finance/expired: spec.members[0].expiresAt: 2020-01-01T00:00:00Z is in the past",
        "badrole.yaml (document 1): PolicyAccess finance/badrole: spec.members[0].role: \"owner\" is not one of user, auditor, admin",
        "PolicyAccess finance/orphan: spec.connectorRef: ExpensifyConnector finance/nope not found",
        "PolicyAccess finance/auth-b: spec.mode: PolicyAccess finance/auth-a is already Authoritative",
        "PolicyAccess finance/role-a: spec.members[0].role: erin@acme.example on policy 0A1B2C3D4E5F6071",
        "PolicyAccess finance/role-b: spec.members[0].role: erin@acme.example on policy 0A1B2C3D4E5F6071",
        "PolicyAccess finance/on-beta: spec.policy.id: policy F1E2D3C4B5A69788 is also named through connector finance/acme",
        "typo.yaml (document 1): PolicyAccess finance/typo: unknown field spec.memebers",
        "dup-1.yaml (document 1): PolicyAccess finance/dup: defined more than once",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(
        !all.contains("auth-a: spec.mode"),
        "the older one governs: {all}"
    );
    assert_eq!(attacker.connections(), 0, "validate made a connection");
    assert_eq!(
        sim.state().counters().requests,
        0,
        "validate called Expensify"
    );
    assert!(
        !repo.path().join(".expensify-status").exists(),
        "validate wrote status"
    );

    // JSON: the same problems, each with file, document, object and field.
    let output = without_credentials(&sim.endpoint(), &["validate", dir, "-o", "json"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let problems = value["problems"].as_array().unwrap();
    let badrole = problems
        .iter()
        .find(|p| p["object"] == "PolicyAccess finance/badrole")
        .unwrap();
    assert_eq!(badrole["field"], "spec.members[0].role");
    assert_eq!(badrole["document"], 1);
    assert!(badrole["file"].as_str().unwrap().ends_with("badrole.yaml"));

    // -n: only that namespace's objects; nothing of `engineering` is wrong.
    let eng = access_yaml(
        "eng",
        "engineering",
        "acme",
        ENGINEERING,
        &member("{email: e@acme.example}"),
    );
    repo.write("eng.yaml", &eng);
    let output = without_credentials(&sim.endpoint(), &["validate", dir, "-n", "engineering"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("OK: 0 ExpensifyConnector and 1 PolicyAccess"),
        "{}",
        text(&output)
    );
    // A namespace that selects nothing fails, said on stdout, so a typo in `-n` fails CI.
    let typo = without_credentials(&sim.endpoint(), &["validate", dir, "-n", "enginering"])
        .output()
        .await
        .unwrap();
    assert_eq!(typo.status.code(), Some(1), "{}", text(&typo));
    let said = String::from_utf8_lossy(&typo.stdout);
    assert!(
        said.contains("namespace \"enginering\" holds no ExpensifyConnector or PolicyAccess"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_a_clean_repository_needs_no_secret_and_no_reachable_endpoint() {
    let sim = start(&unlimited_seed()).await;
    let mut repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    // Nothing listens there; without an allowlist given only the URL's form is checked.
    repo.endpoint = "http://127.0.0.1:9/Integration-Server/ExpensifyIntegrations".into();
    repo.connector("");
    let mut validate = without_credentials(
        &sim.endpoint(),
        &["validate", repo.path().to_str().unwrap()],
    );
    validate.env_remove("EXPENSIFY_ALLOWED_ENDPOINTS");
    let output = validate.output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("OK: 1 ExpensifyConnector and 1 PolicyAccess"),
        "{}",
        text(&output)
    );
    // With an allowlist that does not list it, the endpoint is a problem.
    let output = without_credentials(
        &sim.endpoint(),
        &[
            "validate",
            repo.path().to_str().unwrap(),
            "--allowed-endpoints",
            &sim.endpoint(),
        ],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("spec.endpoint"), "{}", text(&output));
    assert_eq!(sim.state().counters().requests, 0);
    assert!(!repo.path().join(".expensify-status").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_a_file_checks_it_alone_with_its_repositorys_connectors() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    std::fs::create_dir(repo.path().join(".git")).unwrap();
    let member = "  members:\n    - {email: n@acme.example}\n";
    repo.write(
        "teams/eng.yaml",
        &access_yaml("eng", "engineering", "acme", ENGINEERING, member),
    );
    repo.write(
        "teams/lost.yaml",
        &access_yaml("lost", "finance", "gone", ENGINEERING, member),
    );
    // A problem elsewhere in the repository is not this file's.
    repo.write(
        "broken.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: x\n",
    );
    let file = repo.path().join("teams/eng.yaml");
    let output = without_credentials(&sim.endpoint(), &["validate", file.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("resolved against the manifests of"),
        "{}",
        text(&output)
    );
    let lost = repo.path().join("teams/lost.yaml");
    let output = without_credentials(
        &sim.endpoint(),
        &["validate", lost.to_str().unwrap(), "-o", "json"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let problems = value["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["field"], "spec.connectorRef");
    // The directory of the two files: both, and the connector is found above it.
    let output = without_credentials(
        &sim.endpoint(),
        &["validate", repo.path().join("teams").to_str().unwrap()],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("ExpensifyConnector finance/gone not found"));
    assert!(
        !text(&output).contains("PolicyAccess engineering/eng"),
        "{}",
        text(&output)
    );
}

// ---------------------------------------------------------------------------------------
// -o/--output on every command that prints a result.

/// The bash script completes past the subcommand: flags and their values.
#[tokio::test(flavor = "multi_thread")]
async fn bash_completion_completes_flags_of_subcommands() {
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source <({BIN} completions bash); COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _expensify__operator expensify-operator '{}' '{}'; echo \"${{COMPREPLY[*]}}\"",
            words.join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let output = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(complete("expensify-operator plan --ou"), "--output --out");
    assert_eq!(
        complete("expensify-operator plan -o "),
        "text json markdown"
    );
    assert!(complete("expensify-operator --co").contains("--color"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_output_formats_are_refused_with_the_list() {
    // A mistyped flag too; help is not an error.
    let typo = run(
        expensify_operator::expensify::DEFAULT_ENDPOINT,
        &["plan", ".", "--frobnicate"],
    )
    .await;
    assert_eq!(typo.status.code(), Some(1), "{}", text(&typo));
    let help = run(
        expensify_operator::expensify::DEFAULT_ENDPOINT,
        &["plan", "--help"],
    )
    .await;
    assert_eq!(help.status.code(), Some(0), "{}", text(&help));
    for (args, listed) in [
        (
            vec!["plan", ".", "-o", "yaml"],
            "[possible values: text, json, markdown]",
        ),
        (
            vec!["validate", ".", "-o", "csv"],
            "[possible values: text, json]",
        ),
        (
            vec!["apply", ".", "-o", "markdown"],
            "[possible values: text, json]",
        ),
        (
            vec!["review", ".", "-o", "yaml"],
            "[possible values: csv, json, markdown]",
        ),
        (
            vec!["export", "--admin-email", "a@b.example", "-o", "markdown"],
            "[possible values: yaml, json]",
        ),
        (vec!["crds", "-o", "csv"], "[possible values: yaml, json]"),
    ] {
        let output = run(expensify_operator::expensify::DEFAULT_ENDPOINT, &args).await;
        // 1, not clap's 2: `plan` exits 2 for "changes pending".
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains(listed),
            "{args:?}: {}",
            text(&output)
        );
    }
    let json = run(
        expensify_operator::expensify::DEFAULT_ENDPOINT,
        &["crds", "-o", "json"],
    )
    .await;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["items"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_prints_json_and_names_the_namespace_with_n() {
    let sim = start(&unlimited_seed()).await;
    let output = run(
        &sim.endpoint(),
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
            "-n",
            "finance",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["kind"], "List");
    let items = value["items"].as_array().unwrap();
    assert_eq!(items[0]["kind"], "ExpensifyConnector");
    assert!(
        items.len() > 1
            && items
                .iter()
                .all(|i| i["metadata"]["namespace"] == "finance"),
        "{value}"
    );
    let refused = run(
        &sim.endpoint(),
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
            "-o",
            "json",
            "--output-dir",
            "x",
        ],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("--output-dir writes YAML"),
        "{}",
        text(&refused)
    );
}

// ---------------------------------------------------------------------------------------
// One message per failure.

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_is_said_once_and_first() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    repo.access(
        "second",
        ENGINEERING,
        "Additive",
        "    - {email: x@acme.example}\n",
    );
    let dir = repo.path().to_str().unwrap();
    let detail = "EXPENSIFY_PARTNER_USER_ID / EXPENSIFY_PARTNER_USER_SECRET are not both set";
    for command in ["plan", "apply"] {
        let output = without_credentials(&sim.endpoint(), &[command, dir])
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let all = text(&output);
        assert_eq!(count(&all, detail), 1, "{command}:\n{all}");
        assert!(!all.contains("No changes were needed"), "{all}");
    }
    let output = without_credentials(&sim.endpoint(), &["apply", dir])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let headline =
        "Failed: Secret finance/expensify-credentials not found for connector finance/acme";
    assert!(stdout.starts_with(headline), "{stdout}");
    assert_eq!(count(&text(&output), headline), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_credential_is_said_once_and_first() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    repo.access(
        "second",
        ENGINEERING,
        "Additive",
        "    - {email: x@acme.example}\n",
    );
    let dir = repo.path().to_str().unwrap();
    for args in [
        vec!["plan", dir],
        vec!["plan", dir, "-o", "markdown"],
        vec!["apply", dir],
        vec!["apply", dir],
    ] {
        let output = command(&sim.endpoint(), &args, "unknown-partner-secret")
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let all = text(&output);
        assert_eq!(count(&all, "Authentication failed"), 1, "{args:?}:\n{all}");
        assert_eq!(count(&all, "code 407"), 1, "{args:?}:\n{all}");
        assert!(!all.contains("No changes were needed"), "{all}");
        if args.contains(&"markdown") {
            let stdout = String::from_utf8_lossy(&output.stdout).to_string();
            // Nothing could be planned, not "no changes"; without a status directory the
            // warning that the ledger is missing sits under the summary.
            assert!(
                stdout.starts_with("**Failed:** credentials rejected for connector finance/acme\n\nNothing could be planned: every object failed; see Problems.\n\n")
                    && stdout.contains("\n\n### Problems\n\n- **credentials rejected for connector finance/acme**: "),
                "{stdout}"
            );
        }
        if args[0] == "apply" {
            let stdout = String::from_utf8_lossy(&output.stdout).to_string();
            assert!(
                stdout.starts_with("Failed: credentials rejected for connector finance/acme\n"),
                "{stdout}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_whose_connector_is_missing_is_said_once_by_apply() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let member = "  members:\n    - {email: y@acme.example}\n";
    repo.write(
        "orphan.yaml",
        &access_yaml("orphan", "finance", "nope", FINANCE, member),
    );
    // An unreadable file, so apply lists its problems too.
    repo.write(
        "broken.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: x\n",
    );
    let output = run(&sim.endpoint(), &["apply", repo.path().to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    assert_eq!(
        count(&all, "ExpensifyConnector finance/nope not found"),
        1,
        "{all}"
    );
    assert!(
        all.contains("Problems:") && all.contains("broken.yaml"),
        "{all}"
    );
}

/// `plan --out` then `apply --plan`: a roster changed by hand since the plan makes the
/// apply refuse, name the change and write nothing; a fresh plan applies exactly, and
/// the next plan shows nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_is_applied_exactly_or_refused_naming_what_moved() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let plans = tempfile::tempdir().unwrap();
    let saved = plans.path().join("plan.json");
    let saved = saved.to_str().unwrap();

    let planned = run(&sim.endpoint(), &["plan", dir, "--out", saved]).await;
    assert_eq!(planned.status.code(), Some(2), "{}", text(&planned));
    // Someone adds a person to Finance by hand after the review.
    {
        let mut state = sim.state();
        let mut policies = state.policies();
        let finance = policies.iter_mut().find(|p| p.id == FINANCE).unwrap();
        finance.employees.push(
            serde_json::from_value(serde_json::json!({"email": "by-hand@acme.example"})).unwrap(),
        );
        state.replace_policies(policies);
    }
    let refused = run(&sim.endpoint(), &["apply", dir, "--plan", saved]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("the saved plan no longer matches; nothing was applied")
            && said.contains("the roster of Finance")
            && said.contains("changed in Expensify since the plan"),
        "{said}"
    );
    assert_eq!(updates(&sim), 0, "nothing was written");

    let again = run(&sim.endpoint(), &["plan", dir, "--out", saved]).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    let applied = run(&sim.endpoint(), &["apply", dir, "--plan", saved]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    assert!(
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "new@acme.example")
    );
    let after = run(&sim.endpoint(), &["plan", dir]).await;
    assert_eq!(after.status.code(), Some(0), "{}", text(&after));

    // A manifest edited after the review is named too.
    let stale = run(&sim.endpoint(), &["plan", dir, "--out", saved]).await;
    assert_eq!(stale.status.code(), Some(0), "{}", text(&stale));
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example, role: auditor}\n    - {email: late@acme.example}\n",
    );
    let moved = run(&sim.endpoint(), &["apply", dir, "--plan", saved]).await;
    assert_eq!(moved.status.code(), Some(1), "{}", text(&moved));
    let said = text(&moved);
    assert!(
        said.contains("PolicyAccess finance/finance (finance.yaml): changed since the plan")
            && said.contains("not in the reviewed plan: granted late@acme.example"),
        "{said}"
    );
}

/// A saved plan whose words were edited (a role in the text) is refused, naming what
/// the text says and what the change really is; `-o json` prints the refusal as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_with_edited_text_is_refused_and_json_says_so() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let plans = tempfile::tempdir().unwrap();
    let saved = plans.path().join("plan.json");
    let saved_path = saved.to_str().unwrap();
    let planned = run(&sim.endpoint(), &["plan", dir, "--out", saved_path]).await;
    assert_eq!(planned.status.code(), Some(2), "{}", text(&planned));
    let plan = std::fs::read_to_string(&saved).unwrap();
    assert!(plan.contains("as auditor"), "{plan}");
    std::fs::write(&saved, plan.replace("as auditor", "as admin")).unwrap();

    let refused = run(
        &sim.endpoint(),
        &["apply", dir, "--plan", saved_path, "-o", "json"],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("the plan's text does not match its content")
            && text(&refused).contains("as admin")
            && text(&refused).contains("as auditor"),
        "{}",
        text(&refused)
    );
    let json: serde_json::Value = serde_json::from_slice(&refused.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&refused)));
    assert_eq!(json["applied"], false);
    assert!(
        json["moved"][0].as_str().unwrap().contains("as admin"),
        "{json}"
    );
    assert_eq!(updates(&sim), 0, "nothing was written");

    // An unreadable plan is a JSON refusal too.
    std::fs::write(&saved, "not json").unwrap();
    let unreadable = run(
        &sim.endpoint(),
        &["apply", dir, "--plan", saved_path, "-o", "json"],
    )
    .await;
    assert_eq!(unreadable.status.code(), Some(1), "{}", text(&unreadable));
    let json: serde_json::Value = serde_json::from_slice(&unreadable.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&unreadable)));
    assert!(
        json["refused"].as_str().unwrap().contains("plan.json"),
        "{json}"
    );
}

/// `plan --out` after a plan that failed (credentials rejected: nothing could be read,
/// so nothing is planned) saves nothing, and removes an older plan at that path.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_plan_is_not_saved() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let plans = tempfile::tempdir().unwrap();
    let saved = plans.path().join("plan.json");
    let saved_path = saved.to_str().unwrap();
    std::fs::write(&saved, "an older plan").unwrap();
    let failed = command(
        &sim.endpoint(),
        &["plan", dir, "--out", saved_path],
        "not-the-secret",
    )
    .output()
    .await
    .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        text(&failed).contains("the plan failed, so it was not saved"),
        "{}",
        text(&failed)
    );
    assert!(!saved.exists(), "no plan is left to apply");
}

// ---------------------------------------------------------------------------------------
// `plan -o markdown`: the pull-request comment, against a golden file.

/// The shipped `examples/` manifests in a temporary repository, the connector pointed at
/// `sim` (the one change: `spec.endpoint`).
fn examples_repo(sim: &expensify_operator::simulator::SimulatorHandle) -> Repo {
    let repo = Repo::new(sim);
    let examples = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let yaml = path.extension().is_some_and(|e| e == "yaml");
        if !path.is_file() || !yaml || name == "simulator-seed.yaml" {
            continue;
        }
        let mut text = keep_future_expiries_future(&std::fs::read_to_string(&path).unwrap());
        if name == "connector.yaml" {
            text = text.replacen(
                "spec:\n",
                &format!("spec:\n  endpoint: {}\n", sim.endpoint()),
                1,
            );
        }
        repo.write(&name, &text);
    }
    repo
}

/// The examples' expiries in the future (from 2026 on; the expired one is 2025) moved ten
/// years after this year, so their plan, and the golden file, do not change when the
/// calendar reaches them.
fn keep_future_expiries_future(text: &str) -> String {
    use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
    let later = Timestamp::now().to_zoned(TimeZone::UTC).year() + 10;
    text.lines()
        .map(|line| {
            let Some((head, date)) = line.split_once("expiresAt: \"") else {
                return line.to_string();
            };
            match date.get(..4).and_then(|year| year.parse::<i16>().ok()) {
                Some(year) if year >= 2026 => format!("{head}expiresAt: \"{later}{}", &date[4..]),
                _ => line.to_string(),
            }
        })
        .map(|line| line + "\n")
        .collect()
}

#[test]
fn future_example_expiries_are_moved_and_past_ones_kept() {
    let moved = keep_future_expiries_future(
        "a:\n  expiresAt: \"2030-06-30T00:00:00Z\"\n  expiresAt: \"2025-01-31T00:00:00Z\"\n",
    );
    assert!(!moved.contains("2030-06-30"), "{moved}");
    assert!(moved.contains("-06-30T00:00:00Z"), "{moved}");
    assert!(moved.contains("\"2025-01-31T00:00:00Z\""), "{moved}");
}

/// Checks `actual` against `tests/golden/NAME`; `UPDATE_GOLDEN=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    let path =
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "`plan -o markdown` differs from {} (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

/// The examples with the shipped request merged: the pull-request comment a reviewer
/// approves a request from.
#[tokio::test(flavor = "multi_thread")]
async fn plan_markdown_of_a_merged_request_matches_the_golden_file() {
    let sim = start(&unlimited_seed()).await;
    let repo = examples_repo(&sim);
    repo.write(
        "requests/finance-team-dana-q4-close.yaml",
        include_str!("../extras/requests/access-request.yaml"),
    );
    let dir = repo.path().to_str().unwrap();
    let output = run(&sim.endpoint(), &["plan", dir, "-o", "markdown"]).await;
    let markdown = String::from_utf8_lossy(&output.stdout).replace(dir, "REPO");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        markdown
            .contains("| dana@acme.example | admin | finance/request:finance-team-dana-q4-close |"),
        "the grant is a change of the policy: {markdown}"
    );
    golden("plan-request.md", &markdown);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_markdown_of_the_examples_matches_the_golden_file() {
    let sim = start(&unlimited_seed()).await;
    let repo = examples_repo(&sim);
    let dir = repo.path().to_str().unwrap();
    let output = run(&sim.endpoint(), &["plan", dir, "-o", "markdown"]).await;
    let markdown = String::from_utf8_lossy(&output.stdout)
        .replace(&sim.endpoint(), "SIMULATOR_ENDPOINT")
        .replace(dir, "REPO");
    // Changes pending, nothing held: the exit code of the text plan.
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let first = markdown.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("**") && first.contains(" across "),
        "the summary line comes first:\n{markdown}"
    );
    assert!(markdown.contains("\n### "), "{markdown}");
    assert!(markdown.contains("|---|"), "{markdown}");
    for (i, _) in markdown.match_indices('<') {
        let rest = &markdown[i..];
        assert!(
            ["<details>", "</details>", "<summary>", "</summary>"]
                .iter()
                .any(|tag| rest.starts_with(tag)),
            "raw HTML other than <details> at {i}:\n{markdown}"
        );
    }
    golden("plan.md", &markdown);

    // A failure leads the comment, as it leads `apply`'s output.
    let rejected = command(
        &sim.endpoint(),
        &["plan", dir, "-o", "markdown"],
        "wrong-secret",
    )
    .output()
    .await
    .unwrap();
    assert_eq!(rejected.status.code(), Some(1), "{}", text(&rejected));
    let comment = String::from_utf8_lossy(&rejected.stdout);
    assert!(
        comment.starts_with("**Failed:** credentials rejected"),
        "{comment}"
    );

    // `-o json` says each change as the Markdown does.
    let json = run(&sim.endpoint(), &["plan", dir, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let changes = json["connectors"][0]["changes"].as_array().unwrap();
    let zoe = changes
        .iter()
        .find(|c| c["email"] == "zoe@acme.example")
        .unwrap_or_else(|| panic!("zoe's grant in {json:#}"));
    assert_eq!(zoe["detail"], "admin, submits to cfo@acme.example");
    assert_eq!(zoe["requestedBy"], "finance/finance-team");
}

/// Held removals and ObserveOnly drift, in each of `plan`'s formats: the revocation limit
/// holds an Authoritative object's removals, an ObserveOnly object misses someone.
#[tokio::test(flavor = "multi_thread")]
async fn every_plan_format_shows_held_removals_and_drift() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("  maxRevocationsPerSync: 1\n");
    repo.access(
        "finance",
        FINANCE,
        "Authoritative",
        "    - {email: alice@acme.example}\n",
    );
    repo.access(
        "watch",
        ENGINEERING,
        "ObserveOnly",
        &(0..10).fold(
            "    - {email: under_score@acme.example, role: admin}\n".to_string(),
            |members, i| format!("{members}    - {{email: m{i}@acme.example}}\n"),
        ),
    );
    let dir = repo.path().to_str().unwrap();
    let endpoint = sim.endpoint();

    let markdown = run(&endpoint, &["plan", dir, "-o", "markdown"]).await;
    assert_eq!(markdown.status.code(), Some(1), "{}", text(&markdown));
    let markdown = String::from_utf8_lossy(&markdown.stdout).to_string();
    assert!(markdown.starts_with("**"), "{markdown}");
    assert!(markdown.contains(" held** across "), "{markdown}");
    assert!(markdown.contains("\n### Held\n"), "{markdown}");
    assert!(
        markdown.contains("| finance/finance | Finance | "),
        "{markdown}"
    );
    assert!(markdown.contains("bob@acme.example"), "{markdown}");
    assert!(markdown.contains("allow-mass-revocation"), "{markdown}");
    assert!(
        markdown.contains(
            "| finance/watch | Engineering | under\\_score@acme.example | missing | admin | - |"
        ),
        "{markdown}"
    );
    // Eleven missing and the two on the policy nobody asked for: folded.
    assert!(
        markdown
            .contains("| finance/watch | Engineering | dave@acme.example | extra | - | admin |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("\n<details><summary>13 differences</summary>\n\n| Object |")
            && markdown.ends_with("|\n\n</details>\n"),
        "{markdown}"
    );

    let plain = run(&endpoint, &["plan", dir, "-o", "text"]).await;
    let plain = String::from_utf8_lossy(&plain.stdout).to_string();
    let line = plain
        .lines()
        .find(|l| l.contains("under_score@acme.example"))
        .unwrap_or_else(|| panic!("the drift is listed:\n{plain}"));
    assert!(
        line.contains("missing") && line.contains("asked admin"),
        "{plain}"
    );
    assert!(
        plain.contains("  ? finance/watch on Engineering: observe-only: 13 difference(s)"),
        "{plain}"
    );

    let json = run(&endpoint, &["plan", dir, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let objects = json["connectors"][0]["objects"].as_array().unwrap();
    let object = |name: &str| {
        objects
            .iter()
            .find(|o| o["object"] == name)
            .unwrap_or_else(|| panic!("{name} in {json:#}"))
    };
    let finance = object("finance/finance");
    assert_eq!(finance["status"]["phase"], "Blocked");
    assert!(
        finance["status"]["message"]
            .as_str()
            .unwrap()
            .contains("allow-mass-revocation"),
        "{finance:#}"
    );
    assert!(
        finance["held"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "bob@acme.example"),
        "{finance:#}"
    );
    let watch = object("finance/watch");
    assert_eq!(watch["mode"], "ObserveOnly");
    let drift = watch["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 13, "{watch:#}");
    assert!(
        drift
            .iter()
            .any(|d| d["email"] == "under_score@acme.example" && d["kind"] == "Missing"),
        "{watch:#}"
    );
}

/// `export DIR` takes the endpoint, the admin email, the credentials Secret, the name and
/// the namespace from the connector in DIR; without exactly one connector it says what
/// it found; a connector aimed outside the allowlist is refused before any credential.
#[tokio::test(flavor = "multi_thread")]
async fn export_of_a_directory_takes_everything_from_its_connector() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let exported = run(&sim.endpoint(), &["export", dir, "-o", "json"]).await;
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    let list: serde_json::Value = serde_json::from_slice(&exported.stdout).unwrap();
    let connector = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "ExpensifyConnector")
        .unwrap();
    assert_eq!(connector["metadata"]["name"], "acme");
    assert_eq!(connector["metadata"]["namespace"], "finance");
    assert_eq!(connector["spec"]["endpoint"], sim.endpoint());
    assert_eq!(connector["spec"]["adminEmail"], "it-admin@acme.example");
    assert_eq!(
        connector["spec"]["credentialsSecretRef"]["name"],
        "expensify-credentials"
    );

    let empty = tempfile::tempdir().unwrap();
    let none = run(&sim.endpoint(), &["export", empty.path().to_str().unwrap()]).await;
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    assert!(text(&none).contains("found none"), "{}", text(&none));

    let requests = sim.state().counters().requests;
    let elsewhere = run(
        "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
        &["export", dir],
    )
    .await;
    assert_eq!(elsewhere.status.code(), Some(1), "{}", text(&elsewhere));
    assert!(
        text(&elsewhere).contains("spec.endpoint"),
        "{}",
        text(&elsewhere)
    );
    assert_eq!(
        sim.state().counters().requests,
        requests,
        "nothing was sent"
    );
}

/// `apply --require-status` refuses, before reading anything, to run without the ledger
/// of the objects that keep one; once a status exists it applies.
#[tokio::test(flavor = "multi_thread")]
async fn apply_require_status_fails_loudly_without_the_ledger() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let refused = run(&sim.endpoint(), &["apply", dir, "--require-status"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("holds no PolicyAccess status") && said.contains("finance/finance"),
        "{said}"
    );
    assert_eq!(sim.state().counters().requests, 0, "nothing was read");
    let first = run(&sim.endpoint(), &["apply", dir]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let again = run(&sim.endpoint(), &["apply", dir, "--require-status"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

/// Long work says where it is on stderr: roster chunks and updater batches n/N, and
/// waits for the rate limit.
/// A pseudo-terminal: the terminal end for a child's stderr, and everything drawn on it,
/// read on a thread until the child and every copy of the terminal end are gone.
fn pseudo_terminal() -> (std::fs::File, std::thread::JoinHandle<String>) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use std::io::Read;
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&controller).unwrap();
    unlockpt(&controller).unwrap();
    let name = ptsname(&controller, Vec::new()).unwrap();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let mut controller = std::fs::File::from(controller);
    let drawn = std::thread::spawn(move || {
        let (mut seen, mut buffer) = (Vec::new(), [0u8; 4096]);
        // Linux answers EIO once the terminal end is closed everywhere: the end of output.
        while let Ok(n @ 1..) = controller.read(&mut buffer) {
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    (terminal, drawn)
}

#[tokio::test(flavor = "multi_thread")]
async fn long_work_shows_a_bar_on_a_terminal() {
    let sim = start(&unlimited_seed()).await;
    let repo = examples_repo(&sim);
    let dir = repo.path().to_str().unwrap();
    let (terminal, drawn) = pseudo_terminal();
    // Five roster calls, one per 1.5 s: longer than the 2 s before a bar shows, and each
    // wait long enough (a second or more) to be said.
    let output = command(
        &sim.endpoint(),
        &[
            "plan",
            dir,
            "--roster-chunk-size",
            "1",
            "--pacing",
            "1/1500ms",
        ],
        ADMIN_SECRET,
    )
    .env("TERM", "xterm")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::from(terminal))
    .spawn()
    .unwrap()
    // Not `output()`: it would take stderr back into a pipe.
    .wait_with_output()
    .await
    .unwrap();
    let drawn = tokio::task::spawn_blocking(move || drawn.join().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{drawn}");
    assert!(drawn.contains("rosters read ["), "a bar: {drawn}");
    assert!(drawn.contains("] 4/5"), "{drawn}");
    assert!(
        !drawn.contains("rosters read 1/5"),
        "no progress log lines beside the bar: {drawn}"
    );
    assert!(
        drawn.contains("for Expensify's rate window"),
        "a spinner for the wait: {drawn}"
    );
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(
        plan.starts_with("Connector ") && !plan.contains("rosters read"),
        "stdout is the plan alone: {plan}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn long_work_reports_its_progress_on_stderr() {
    let sim = start(&unlimited_seed()).await;
    let repo = examples_repo(&sim);
    let dir = repo.path().to_str().unwrap();
    let chunked = run(
        &sim.endpoint(),
        &["plan", dir, "--roster-chunk-size", "1", "--pacing", "none"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&chunked.stderr);
    assert!(stderr.contains("rosters read 1/"), "{stderr}");
    // One request per 2 s: the roster read after `policyList` waits for its slot.
    let paced = run(&sim.endpoint(), &["plan", dir, "--pacing", "1/2s"]).await;
    let stderr = String::from_utf8_lossy(&paced.stderr);
    assert!(stderr.contains("for Expensify's rate window"), "{stderr}");
    let applied = run(
        &sim.endpoint(),
        &["apply", dir, "--update-batch-size", "1", "--pacing", "none"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(stderr.contains("updater batches sent 1/"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_passes_the_shipped_examples_and_warns_of_an_expired_entry() {
    // The examples as shipped, in place: an expired just-in-time entry (2025) is the normal
    // end of that access, so it is named as a warning and validate still exits 0.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut validate = without_credentials("http://127.0.0.1:9", &["validate", examples]);
    validate.env_remove("EXPENSIFY_ALLOWED_ENDPOINTS");
    let output = validate.output().await.unwrap();
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(
        all.contains("warning: ")
            && all.contains("contractors-jit.yaml (document 1): PolicyAccess ")
            && all.contains("expiresAt: 2025-01-31T00:00:00Z is in the past"),
        "the expired entry is named: {all}"
    );
    assert!(
        all.contains("no problems (") && all.contains("warning(s): expired entries to remove)"),
        "{all}"
    );

    // JSON keeps the expired entry apart from the problems.
    let mut json = without_credentials("http://127.0.0.1:9", &["validate", examples, "-o", "json"]);
    json.env_remove("EXPENSIFY_ALLOWED_ENDPOINTS");
    let output = json.output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        value["problems"].as_array().map(Vec::len),
        Some(0),
        "{value}"
    );
    let warnings = value["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["field"] == "spec.members[1].expiresAt"
                && w["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("contractor-b@acme.example"))),
        "{value}"
    );
}

/// A secrets directory holding the status signing key at its documented place.
fn secrets_with_status_key(key: &str) -> tempfile::TempDir {
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().join("expensify-status-key");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), format!("{key}\n")).unwrap();
    secrets
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_signs_status_files_with_the_key_and_refuses_to_write_without_it() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let status = repo.path().join(".expensify-status");

    // No key, no --unsigned-status: refused before anything is written.
    let refused = command(&sim.endpoint(), &["apply", dir], ADMIN_SECRET)
        .env_remove("EXPENSIFY_UNSIGNED_STATUS")
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("needs the key: no file $EXPENSIFY_SECRETS_DIR/expensify-status-key/key")
            && said.contains("--unsigned-status"),
        "{said}"
    );
    assert_eq!(updates(&sim), 0, "nothing was written to Expensify");
    // `watch` too, at once rather than after its first sync.
    let watched = command(&sim.endpoint(), &["watch", dir], ADMIN_SECRET)
        .env_remove("EXPENSIFY_UNSIGNED_STATUS")
        .output();
    let watched = tokio::time::timeout(std::time::Duration::from_secs(30), watched)
        .await
        .expect("watch without the key stops at once")
        .unwrap();
    assert_eq!(watched.status.code(), Some(1), "{}", text(&watched));
    assert!(
        text(&watched).contains("watch signs the status files"),
        "{}",
        text(&watched)
    );
    assert_eq!(updates(&sim), 0, "nothing was written to Expensify");

    // With the key: applied, and every status file signed, with the index beside them.
    let key = "a-test-key-of-more-than-thirty-two-bytes-0123456789";
    let secrets = secrets_with_status_key(key);
    let secrets_dir = secrets.path().to_str().unwrap();
    let applied = command(
        &sim.endpoint(),
        &[
            "apply",
            dir,
            "--secrets-dir",
            secrets_dir,
            "--log-level",
            "trace",
        ],
        ADMIN_SECRET,
    )
    .env_remove("EXPENSIFY_UNSIGNED_STATUS")
    .output()
    .await
    .unwrap();
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    assert!(!text(&applied).contains(key), "the key is never printed");
    let file = std::fs::read_to_string(status.join("policyaccess/finance/finance.yaml")).unwrap();
    assert!(
        file.starts_with("# expensify-operator signature v1 seq="),
        "{file}"
    );
    assert!(status.join(".signatures").exists());

    // A plan with the key verifies; one without says the recorded state is unverified.
    let verified = run(
        &sim.endpoint(),
        &["plan", dir, "--secrets-dir", secrets_dir],
    )
    .await;
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(
        !text(&verified).contains("UNVERIFIED"),
        "{}",
        text(&verified)
    );
    let unverified = run(&sim.endpoint(), &["plan", dir]).await;
    assert_eq!(unverified.status.code(), Some(0), "{}", text(&unverified));
    assert!(
        text(&unverified).contains("the recorded state in")
            && text(&unverified).contains("is UNVERIFIED"),
        "{}",
        text(&unverified)
    );
    let comment = run(&sim.endpoint(), &["plan", dir, "-o", "markdown"]).await;
    assert!(
        String::from_utf8_lossy(&comment.stdout).starts_with("> **Recorded state unverified**"),
        "{}",
        text(&comment)
    );
    let checked = run(
        &sim.endpoint(),
        &["plan", dir, "-o", "markdown", "--secrets-dir", secrets_dir],
    )
    .await;
    assert!(!text(&checked).contains("unverified"), "{}", text(&checked));

    // Once signed, an apply without the key is refused even with --unsigned-status.
    let keyless = run(&sim.endpoint(), &["apply", dir, "--unsigned-status"]).await;
    assert_eq!(keyless.status.code(), Some(1), "{}", text(&keyless));
    assert!(text(&keyless).contains("is signed"), "{}", text(&keyless));

    // A key that is too short is refused, not used.
    let short = secrets_with_status_key("short");
    let output = run(
        &sim.endpoint(),
        &["plan", dir, "--secrets-dir", short.path().to_str().unwrap()],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("at least 32"), "{}", text(&output));
}

// --- issue 18, item 9: terraform habits ----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn terraform_spellings_get_a_tip_naming_the_flag() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();

    let out = run(&sim.endpoint(), &["plan", dir, "-out", "plan.json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("unexpected argument '-out' found"), "{said}");
    assert!(
        said.contains("tip: to save the plan for `apply --plan`, use '--out FILE'"),
        "{said}"
    );

    let saved = repo.path().join("plan.json");
    let saved = saved.to_str().unwrap();
    let plan_as_path = run(&sim.endpoint(), &["apply", saved]).await;
    assert_eq!(
        plan_as_path.status.code(),
        Some(1),
        "{}",
        text(&plan_as_path)
    );
    let said = String::from_utf8_lossy(&plan_as_path.stderr);
    assert!(
        said.contains(&format!("use `apply --plan {saved} DIR`")),
        "{said}"
    );
    assert_eq!(updates(&sim), 0, "nothing ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_usage_line_does_not_list_a_flag_set_by_its_variable() {
    // `binary` sets EXPENSIFY_ALLOWED_ENDPOINTS, as a CI job or a Helm value would.
    let missing_path = run("https://integrations.expensify.com/", &["apply"]).await;
    assert_eq!(missing_path.status.code(), Some(1));
    let said = String::from_utf8_lossy(&missing_path.stderr);
    assert!(
        said.contains("Usage: expensify-operator apply <PATH>"),
        "{said}"
    );
    assert!(!said.contains("--allowed-endpoints"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_without_a_terminal_applies_without_asking_and_says_so() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    // `binary` gives the child no terminal: stdin is /dev/null.
    let applied = run(&sim.endpoint(), &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    let said = String::from_utf8_lossy(&applied.stderr);
    assert!(
        said.contains("standard input is not a terminal: applying without asking"),
        "{said}"
    );
    assert!(!String::from_utf8_lossy(&applied.stdout).contains("Do you want"));
    assert_eq!(updates(&sim), 1);

    // --auto-approve asks nothing and says nothing about it.
    let again = run(&sim.endpoint(), &["apply", dir, "--auto-approve"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(!String::from_utf8_lossy(&again.stderr).contains("not a terminal"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_interrupt_exits_at_once() {
    use expensify_operator::simulator::{FaultConfig, ScriptedFault};
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    sim.state().set_faults(FaultConfig {
        script: vec![
            ScriptedFault::Pass,
            ScriptedFault::Pass,
            ScriptedFault::ApplyThenStall { ms: 30_000 },
        ]
        .into_iter()
        .collect(),
        ..FaultConfig::default()
    });
    let mut child = command(
        &sim.endpoint(),
        &["apply", repo.path().to_str().unwrap()],
        ADMIN_SECRET,
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    for _ in 0..500 {
        if sim.state().counters().faults.contains_key("applyThenStall") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().unwrap().to_string();
    let interrupt = || async {
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
    };
    interrupt().await;
    // The first interrupt waits for the stalled call (30 s); the second does not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first interrupt waits"
    );
    interrupt().await;
    let output = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("the second interrupt exits at once")
        .unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("interrupt again to exit without waiting"),
        "{said}"
    );
    assert!(
        said.contains("two interrupts: exiting without waiting"),
        "{said}"
    );
}
