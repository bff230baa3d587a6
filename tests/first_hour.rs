//! What a person hits in their first hour, as they would hit it (issue 18): the binary
//! against the simulator, no silent no-ops, tables that tell the truth, and examples a
//! GitOps tool may apply as they are.

mod support;

use std::path::Path;
use std::process::Output;

use support::*;

async fn run(sim: &expensify_operator::simulator::SimulatorHandle, args: &[&str]) -> Output {
    binary(&sim.endpoint(), args, ADMIN_SECRET)
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PolicyAccess in `finance` naming its policy by name.
fn access_by_name(repo: &Repo, name: &str, policy: &str, extra: &str) {
    repo.write(
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: {name}, namespace: finance}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{name: {policy}}}\n  mode: Additive\n  members:\n    - {{email: new@acme.example, role: auditor}}\n{extra}"
        ),
    );
}

/// The row of `object` in the status table `apply` prints, split into its columns.
fn row(printed: &str, object: &str) -> Vec<String> {
    printed
        .lines()
        .find(|line| line.starts_with(&format!("{object} ")))
        .unwrap_or_else(|| panic!("no row for {object} in:\n{printed}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------
// `examples/` holds only what a GitOps tool may apply.

#[tokio::test(flavor = "multi_thread")]
async fn the_examples_hold_only_manifests_and_nothing_is_skipped() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut validate = binary("http://127.0.0.1:9", &["validate", examples], "unused");
    validate.env_remove("EXPENSIFY_ALLOWED_ENDPOINTS");
    let output = validate.output().await.unwrap();
    let all = printed(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(
        !all.contains("skipped"),
        "nothing to skip in examples/: {all}"
    );
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            path.is_file() && path.extension().is_some_and(|e| e == "yaml"),
            "{}: only manifests belong in examples/",
            path.display()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("kind: ExpensifyConnector") || text.contains("kind: PolicyAccess"),
            "{}",
            path.display()
        );
        assert!(!text.contains("kind: Secret"), "{}", path.display());
    }
}

#[test]
fn the_example_pipelines_install_a_pinned_release_with_its_checksum() {
    let pipelines = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/extras/pipelines"));
    for name in ["github-actions.yaml", "gitlab-ci.yml"] {
        let text = std::fs::read_to_string(pipelines.join(name)).unwrap();
        let commands = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        assert!(
            !commands.into_iter().any(|l| l.contains("cargo install")),
            "{name}: builds at HEAD"
        );
        // One place pins the version; every job uses it.
        assert_eq!(
            text.matches("EXPENSIFY_OPERATOR_VERSION: \"").count(),
            1,
            "{name}"
        );
        assert!(
            text.contains("SHA256SUMS") && text.contains("sha256sum -c -"),
            "{name}: the binary is checked"
        );
        assert!(
            text.contains("plan access/ --strict --require-status")
                || text.contains("plan \"$ACCESS_DIR\" --strict --require-status"),
            "{name}: plan fails without its ledger"
        );
        let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert!(value.is_object(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// `plan` without its ledger.

#[tokio::test(flavor = "multi_thread")]
async fn plan_without_its_ledger_says_so_and_require_status_fails() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    let planned = run(&sim, &["plan", dir]).await;
    assert!(
        !stdout(&planned).contains("no recorded state"),
        "{}",
        printed(&planned)
    );

    // The ledger is lost (an evicted cache, a fresh runner): Expensify matches the
    // manifests, but a removal would not be planned.
    std::fs::remove_dir_all(repo.path().join(".expensify-status")).unwrap();
    let said = "no recorded state for 1 object: removals of what they granted cannot be planned";
    let text = run(&sim, &["plan", dir]).await;
    assert_eq!(text.status.code(), Some(0), "{}", printed(&text));
    assert!(stdout(&text).contains(said), "{}", printed(&text));
    let markdown = run(&sim, &["plan", dir, "-o", "markdown"]).await;
    assert!(stdout(&markdown).contains(said), "{}", printed(&markdown));
    let json = run(&sim, &["plan", dir, "-o", "json"]).await;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        value["warnings"][0].as_str().unwrap().contains(said),
        "{value}"
    );

    // --require-status refuses before Expensify is read, as apply does.
    let before = sim.state().counters().requests;
    let refused = run(&sim, &["plan", dir, "--require-status"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", printed(&refused));
    assert!(
        stdout(&refused).contains("holds no PolicyAccess status")
            && stdout(&refused).contains("finance/finance"),
        "{}",
        printed(&refused)
    );
    assert_eq!(sim.state().counters().requests, before, "nothing was read");
    let refused = run(&sim, &["plan", dir, "--require-status", "-o", "markdown"]).await;
    assert!(
        stdout(&refused).starts_with("**Failed:** --require-status"),
        "{}",
        printed(&refused)
    );
    // Nor is a plan saved, and one an earlier run left there goes.
    let saved = tempfile::tempdir().unwrap();
    let stale = saved.path().join("plan.json");
    std::fs::write(&stale, "{}").unwrap();
    let args = [
        "plan",
        dir,
        "--require-status",
        "--out",
        stale.to_str().unwrap(),
    ];
    let refused = run(&sim, &args).await;
    assert_eq!(refused.status.code(), Some(1), "{}", printed(&refused));
    assert!(!stale.exists(), "{}", printed(&refused));

    // With its ledger back, --require-status plans.
    run(&sim, &["apply", dir]).await;
    let planned = run(&sim, &["plan", dir, "--require-status"]).await;
    assert_eq!(planned.status.code(), Some(0), "{}", printed(&planned));
}

// ---------------------------------------------------------------------------------------
// A namespace that selects nothing.

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_that_selects_nothing_fails_plan_and_validate_naming_the_nearest() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let said = "namespace \"finanse\" holds no ExpensifyConnector or PolicyAccess; the repository's namespaces: finance. Did you mean \"finance\"?";
    let plan = run(&sim, &["plan", dir, "-n", "finanse"]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", printed(&plan));
    assert!(stdout(&plan).contains(said), "{}", printed(&plan));
    let validate = run(&sim, &["validate", dir, "-n", "finanse"]).await;
    assert_eq!(validate.status.code(), Some(1), "{}", printed(&validate));
    assert!(stdout(&validate).contains(said), "{}", printed(&validate));

    // Nothing near: the namespaces alone. The right one still works.
    let plan = run(&sim, &["plan", dir, "-n", "marketing"]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", printed(&plan));
    assert!(
        stdout(&plan).contains("namespaces: finance") && !stdout(&plan).contains("Did you mean"),
        "{}",
        printed(&plan)
    );
    let plan = run(&sim, &["plan", dir, "-n", "finance"]).await;
    assert_eq!(plan.status.code(), Some(2), "{}", printed(&plan));
    let validate = run(&sim, &["validate", dir, "-n", "finance"]).await;
    assert_eq!(validate.status.code(), Some(0), "{}", printed(&validate));
}

// ---------------------------------------------------------------------------------------
// Tables that tell the truth.

#[tokio::test(flavor = "multi_thread")]
async fn after_a_policy_name_typo_the_table_shows_what_was_asked_and_the_nearest_name() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    access_by_name(&repo, "team", "Finance", "");
    let dir = repo.path().to_str().unwrap();
    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    assert_eq!(
        row(&stdout(&applied), "PolicyAccess finance/team")[2],
        "Finance"
    );

    access_by_name(&repo, "team", "Fiannce", "");
    let typo = run(&sim, &["apply", dir]).await;
    assert_eq!(typo.status.code(), Some(1), "{}", printed(&typo));
    let columns = row(&stdout(&typo), "PolicyAccess finance/team");
    assert_eq!(&columns[2..4], ["Fiannce", "Error"], "{}", printed(&typo));
    assert!(
        stdout(&typo).contains("did you mean \"Finance\"?"),
        "{}",
        printed(&typo)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_rejected_credentials_the_connector_counts_nobody_and_nothing_is_planned() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let applied = run(&sim, &["apply", dir]).await;
    let columns = row(&stdout(&applied), "ExpensifyConnector finance/acme");
    assert!(columns[4].parse::<u32>().is_ok(), "{}", printed(&applied));

    let rejected = binary(&sim.endpoint(), &["apply", dir], "wrong-secret")
        .output()
        .await
        .unwrap();
    assert_eq!(rejected.status.code(), Some(1), "{}", printed(&rejected));
    let columns = row(&stdout(&rejected), "ExpensifyConnector finance/acme");
    assert_eq!(&columns[3..5], ["Error", "-"], "{}", printed(&rejected));

    for (format, must_not) in [
        (
            "markdown",
            "No changes for the objects that could be synced",
        ),
        ("text", "No changes"),
    ] {
        let plan = binary(
            &sim.endpoint(),
            &["plan", dir, "-o", format],
            "wrong-secret",
        )
        .output()
        .await
        .unwrap();
        assert_eq!(plan.status.code(), Some(1), "{}", printed(&plan));
        let said = stdout(&plan);
        assert!(
            said.contains("Nothing could be planned") && !said.contains(must_not),
            "{format}: {said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_with_an_unknown_field_keeps_its_row_in_error() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    access_by_name(&repo, "typo", "Finance", "  bogusField: 1\n");
    let dir = repo.path().to_str().unwrap();
    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(1), "{}", printed(&applied));
    let columns = row(&stdout(&applied), "PolicyAccess finance/typo");
    assert_eq!(columns[3], "Error", "{}", printed(&applied));
    // The object that could be read is synced beside it.
    assert_eq!(
        row(&stdout(&applied), "PolicyAccess finance/finance")[3],
        "Synced",
        "{}",
        printed(&applied)
    );
}

// ---------------------------------------------------------------------------------------
// The wrong directory.

#[tokio::test(flavor = "multi_thread")]
async fn running_from_the_wrong_directory_leaves_no_status_directory_behind() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    // The parent of two copies of the repository: everything is defined twice, so nothing
    // is used.
    let parent = tempfile::tempdir().unwrap();
    for copy in ["a", "b"] {
        let to = parent.path().join(copy);
        std::fs::create_dir(&to).unwrap();
        for file in ["connector.yaml", "finance.yaml"] {
            std::fs::copy(repo.path().join(file), to.join(file)).unwrap();
        }
    }
    let dir = parent.path().to_str().unwrap();
    let plan = run(&sim, &["plan", dir]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", printed(&plan));
    assert!(
        stdout(&plan).contains("Nothing could be planned"),
        "{}",
        printed(&plan)
    );
    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(1), "{}", printed(&applied));
    assert!(
        stdout(&applied).contains("defined more than once"),
        "{}",
        printed(&applied)
    );
    assert!(
        !parent.path().join(".expensify-status").exists(),
        "nothing was used, nothing is left behind"
    );
    assert_eq!(updates(&sim), 0, "{}", printed(&applied));
}

/// The example request and decision in `extras/requests/` are what the kinds accept: the
/// request within the rules of `examples/finance-team.yaml`, the decision by its approver.
#[test]
fn the_example_request_and_decision_hold_to_the_example_rules() {
    use expensify_operator::api::{AccessDecision, AccessRequest, PolicyAccess};
    use expensify_operator::reconcile::validate::{validate_decision, validate_request};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let access: PolicyAccess = serde_saphyr::from_str(&read("examples/finance-team.yaml")).unwrap();
    let rules = access
        .spec
        .requests
        .as_ref()
        .expect("the example has request rules");
    let request: AccessRequest =
        serde_saphyr::from_str(&read("extras/requests/access-request.yaml")).unwrap();
    assert_eq!(request.spec.access_ref.name, "finance-team");
    assert!(validate_request(&request.spec, Some(rules)).is_empty());
    let decision: AccessDecision =
        serde_saphyr::from_str(&read("extras/requests/access-decision.yaml")).unwrap();
    assert_eq!(
        decision.spec.request_ref.name,
        request.metadata.name.unwrap()
    );
    assert!(validate_decision(&decision.spec).is_empty());
    assert!(rules.approvers.contains(&decision.spec.decided_by));
}
