//! Access requests that can never be granted, and request text from outside, in `plan`
//! and `validate` (found by review 6).

mod support;

use std::process::Output;

use expensify_operator::simulator::SimulatorHandle;
use support::*;

async fn run(sim: &SimulatorHandle, args: &[&str]) -> Output {
    binary(&sim.endpoint(), args, ADMIN_SECRET)
        .output()
        .await
        .unwrap()
}

fn books(repo: &Repo, rules: &str) {
    repo.write(
        "books.yaml",
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: books, namespace: finance}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"{FINANCE}\"}}\n  mode: Additive\n  members: [{{email: alice@acme.example, role: user}}]\n{rules}"
        ),
    );
}

/// A request in a namespace no connector serves, naming a PolicyAccess that does not
/// exist: it can never be granted. `validate` fails it; `plan` (the pull-request check)
/// must fail it too ("a request that can never be granted fails the check"). Nobody
/// answers the namespace (`connector_answering` is `None`), so nobody judges it: it stays
/// `Pending` and the plan passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_can_judge_fails_plan_as_it_fails_validate() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(
        &repo,
        "  requests: {maxDuration: 8h, roles: [user, admin]}\n",
    );
    repo.write(
        "requests/legal.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessRequest\nmetadata: {name: r9, namespace: legal}\nspec:\n  accessRef: {name: nothing}\n  email: henry@acme.example\n  role: admin\n  duration: 4h\n  reason: month end\n  requester: henry@acme.example\n",
    );
    let dir = repo.path().to_str().unwrap();
    let validated = run(&sim, &["validate", dir]).await;
    assert_eq!(validated.status.code(), Some(1), "{}", printed(&validated));
    let planned = run(&sim, &["plan", dir]).await;
    assert_eq!(
        planned.status.code(),
        Some(1),
        "validate fails legal/r9, plan passes it: {}",
        printed(&planned)
    );
}

/// `validate` judges requests now, and a PolicyAccess's requests go in a directory of their
/// own (the one CODEOWNERS guards): `validate requests/` of a fine request still fails,
/// "no ExpensifyConnector or PolicyAccess manifest below this directory"
/// (`nothing_below` counts no AccessRequest).
#[tokio::test(flavor = "multi_thread")]
async fn validate_of_a_requests_directory_passes_a_fine_request() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(
        &repo,
        "  requests: {maxDuration: 8h, roles: [user, admin]}\n",
    );
    repo.write(
        "requests/r1.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessRequest\nmetadata: {name: r1, namespace: finance}\nspec:\n  accessRef: {name: books}\n  email: henry@acme.example\n  role: admin\n  duration: 4h\n  reason: month end\n  requester: henry@acme.example\n",
    );
    let file = repo.path().join("requests/r1.yaml");
    let alone = run(&sim, &["validate", file.to_str().unwrap()]).await;
    assert_eq!(alone.status.code(), Some(0), "{}", printed(&alone));
    let dir = repo.path().join("requests");
    let validated = run(&sim, &["validate", dir.to_str().unwrap()]).await;
    assert_eq!(
        validated.status.code(),
        Some(0),
        "the file passes, its directory fails: {}",
        printed(&validated)
    );
}

/// A PolicyAccess in file mode naming 3,000 approvers (20 at most: it is invalid, but its
/// requests are still judged with every approver it names) makes each of its requests'
/// `approvers:` line, Markdown cell and JSON array 3,000 long: the pull-request comment
/// (GitHub caps it at 65,536 characters) is unbounded.
#[tokio::test(flavor = "multi_thread")]
async fn plan_bounds_the_approvers_a_request_shows() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    let approvers: Vec<String> = (0..3000)
        .map(|i| format!("approver-number-{i:05}@acme.example"))
        .collect();
    books(
        &repo,
        &format!(
            "  requests: {{maxDuration: 8h, roles: [user, admin], approvers: [{}]}}\n",
            approvers.join(", ")
        ),
    );
    repo.write(
        "requests/r1.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessRequest\nmetadata: {name: r1, namespace: finance}\nspec:\n  accessRef: {name: books}\n  email: henry@acme.example\n  role: admin\n  duration: 4h\n  reason: month end\n  requester: henry@acme.example\n",
    );
    let dir = repo.path().to_str().unwrap();
    for format in ["text", "markdown"] {
        let output = run(&sim, &["plan", dir, "-o", format]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.len() < 20_000,
            "plan -o {format} is {} bytes: {}",
            stdout.len(),
            &stdout.chars().take(600).collect::<String>()
        );
    }
}
