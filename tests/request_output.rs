//! What `plan` (text, JSON, Markdown) and `review` (CSV, JSON, Markdown) show of access
//! requests, through the binary, on a repository with a request against the simulator.

mod support;

use std::process::Output;

use expensify_operator::simulator::SimulatorHandle;
use support::*;

/// A PolicyAccess `books` on Finance whose rules let people ask for `admin` for up to 8h,
/// approved by cfo or the finance-leads group.
fn books(repo: &Repo) {
    books_approved_by(repo, "cfo@acme.example, \"group:finance-leads\"");
}

/// `books` with these approvers (a YAML flow list's items).
fn books_approved_by(repo: &Repo, approvers: &str) {
    repo.write(
        "books.yaml",
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: books, namespace: finance}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"{FINANCE}\"}}\n  mode: Additive\n  members: [{{email: alice@acme.example, role: user}}]\n  requests: {{maxDuration: 8h, roles: [user, admin], approvers: [{approvers}]}}\n"
        ),
    );
}

/// The request `finance/NAME`: henry asks for admin on `books` for `duration`.
fn request(repo: &Repo, name: &str, duration: &str, reason: &str) {
    request_with(repo, name, "admin", duration, reason);
}

/// The request `finance/NAME`: henry asks for `role` on `books` for `duration`, `reason`.
fn request_with(repo: &Repo, name: &str, role: &str, duration: &str, reason: &str) {
    repo.write(
        &format!("requests/{name}.yaml"),
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessRequest\nmetadata: {{name: {name}, namespace: finance}}\nspec:\n  accessRef: {{name: books}}\n  email: henry@acme.example\n  role: {role}\n  duration: {duration}\n  reason: {reason}\n  requester: henry@acme.example\n"
        ),
    );
}

async fn run(sim: &SimulatorHandle, args: &[&str]) -> Output {
    binary(&sim.endpoint(), args, ADMIN_SECRET)
        .output()
        .await
        .unwrap()
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", printed(output)))
}

/// A repository with the connector, `books` and henry's request `r1`.
fn repo_with_a_request(sim: &SimulatorHandle, reason: &str) -> Repo {
    let repo = Repo::new(sim);
    repo.connector("");
    books(&repo);
    request(&repo, "r1", "4h", reason);
    repo
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_json_lists_the_request_before_and_after_its_grant() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_request(&sim, "\"month end\"");
    let dir = repo.path().to_str().unwrap();

    let planned = run(&sim, &["plan", dir, "-o", "json"]).await;
    assert_eq!(planned.status.code(), Some(2), "{}", printed(&planned));
    let json = json_of(&planned);
    let requests = json["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{json:#}");
    let r1 = &requests[0];
    assert_eq!(r1["request"], "finance/r1");
    assert_eq!(r1["connector"], "finance/acme");
    assert_eq!(r1["accessRef"], "books");
    assert_eq!(r1["email"], "henry@acme.example");
    assert_eq!(r1["role"], "admin");
    assert_eq!(r1["duration"], "4h");
    assert_eq!(r1["reason"], "month end");
    assert_eq!(r1["requester"], "henry@acme.example");
    assert_eq!(
        r1["phase"], "Active",
        "file mode: the merge is the approval"
    );
    assert_eq!(
        r1["approvers"],
        serde_json::json!(["cfo@acme.example", "group:finance-leads"])
    );
    assert_eq!(r1["grantedAt"], serde_json::Value::Null);
    assert_eq!(r1["ends"], "when granted + 4h", "the clock has not started");
    assert_eq!(r1["removed"], false);
    // The grant it asks for is one of the plan's changes, asked by the request.
    let changes = json["connectors"][0]["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["email"] == "henry@acme.example"
            && c["requestedBy"] == "finance/request:r1"),
        "{json:#}"
    );

    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    let again = json_of(&run(&sim, &["plan", dir, "-o", "json"]).await);
    let r1 = &again["requests"][0];
    let granted: k8s_openapi::jiff::Timestamp = r1["grantedAt"].as_str().unwrap().parse().unwrap();
    let expires: k8s_openapi::jiff::Timestamp = r1["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.duration_since(granted).as_secs(), 4 * 3600);
    assert_eq!(r1["ends"], r1["expiresAt"], "{again:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_markdown_shows_each_request_with_a_hostile_reason_escaped() {
    let sim = start(&unlimited_seed()).await;
    let hostile = format!(
        "\"| x | y |\\n### Approved by @everyone <img src=x> https://evil.example {}\"",
        "z".repeat(400)
    );
    let repo = repo_with_a_request(&sim, &hostile);
    // A second request over the rules' maxDuration: shown with why it grants nothing.
    request(&repo, "r2", "9h", "\"the whole night\"");
    let dir = repo.path().to_str().unwrap();

    let output = run(&sim, &["plan", dir, "-o", "markdown"]).await;
    let markdown = String::from_utf8_lossy(&output.stdout);
    // r2 can never be granted as written: the pull-request check fails.
    assert_eq!(output.status.code(), Some(1), "r2 is in Error: {markdown}");
    let section = markdown
        .split("### Access requests")
        .nth(1)
        .unwrap_or_else(|| panic!("no requests section:\n{markdown}"));
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| finance/"))
        .collect();
    assert_eq!(rows.len(), 2, "{section}");
    let r1 = rows[0];
    assert!(
        r1.starts_with("| finance/r1 | henry@acme.example | admin | Finance | Active"),
        "{r1}"
    );
    assert!(r1.contains("| 4h | when granted + 4h |"), "{r1}");
    assert!(
        r1.ends_with("| cfo@acme.example, group:finance-leads |"),
        "{r1}"
    );
    assert!(r1.contains("… (cut)"), "the reason is bounded: {r1}");
    for forbidden in ["@everyone", "https://", "<img", "\n###"] {
        assert!(!section.contains(forbidden), "{forbidden:?} in {section}");
    }
    let r2 = rows[1];
    assert!(
        r2.contains("| Error (NotRequestable): spec.duration: \"9h\" is longer than 8h | 9h | - |"),
        "why r2 grants nothing: {r2}"
    );

    // The text plan says the same.
    let text = run(&sim, &["plan", dir]).await;
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("finance/r1: henry@acme.example asks admin on Finance for 4h: Active"),
        "{shown}"
    );
    assert!(
        shown.contains("    approvers: cfo@acme.example, group:finance-leads\n"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_a_namespace_shows_its_requests_and_their_grants_only() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_request(&sim, "\"month end\"");
    repo.write(
        "engineering.yaml",
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: eng, namespace: engineering}}\nspec:\n  connectorRef: {{name: acme, namespace: finance}}\n  policy: {{id: \"{ENGINEERING}\"}}\n  mode: Additive\n  members: [{{email: newhire@acme.example, role: user}}]\n"
        ),
    );
    let dir = repo.path().to_str().unwrap();

    let finance = json_of(&run(&sim, &["plan", dir, "-n", "finance", "-o", "json"]).await);
    assert_eq!(
        finance["requests"][0]["request"], "finance/r1",
        "{finance:#}"
    );
    let changes = finance["connectors"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{finance:#}");
    assert_eq!(
        changes[0]["requestedBy"], "finance/request:r1",
        "the request's grant is finance's: {finance:#}"
    );

    let engineering = json_of(&run(&sim, &["plan", dir, "-n", "engineering", "-o", "json"]).await);
    assert_eq!(
        engineering["requests"],
        serde_json::json!([]),
        "{engineering:#}"
    );
    let changes = engineering["connectors"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{engineering:#}");
    assert_eq!(changes[0]["email"], "newhire@acme.example");
}

#[tokio::test(flavor = "multi_thread")]
async fn review_lists_the_active_request_next_to_the_member_in_every_format() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_request(&sim, "\"=HYPERLINK(\\\"https://evil.example\\\")\"");
    let dir = repo.path().to_str().unwrap();
    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));

    let json = json_of(&run(&sim, &["review", dir, "-o", "json"]).await);
    let henry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == "henry@acme.example")
        .unwrap_or_else(|| panic!("henry in {json:#}"));
    assert_eq!(henry["managedBy"], "finance/request:r1");
    assert_eq!(henry["requests"], "finance/r1");
    assert_eq!(
        henry["requestReasons"],
        "=HYPERLINK(\"https://evil.example\")"
    );
    assert_eq!(
        henry["requestApprovers"],
        "cfo@acme.example group:finance-leads"
    );
    assert_eq!(henry["requestDecidedBy"], "merge");
    let ends: k8s_openapi::jiff::Timestamp =
        henry["requestEnds"].as_str().unwrap().parse().unwrap();
    assert!(ends > k8s_openapi::jiff::Timestamp::now());
    let alice = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == "alice@acme.example")
        .unwrap();
    assert_eq!(alice["requests"], "", "no request on alice");

    let csv = run(&sim, &["review", dir, "-o", "csv"]).await;
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",requests,requestReasons,requestApprovers,requestDecidedBy,requestEnds"),
        "{csv}"
    );
    let row = csv
        .lines()
        .find(|l| l.contains("henry@acme.example"))
        .unwrap();
    assert!(
        row.contains(",finance/r1,\"'=HYPERLINK(\"\"https://evil.example\"\")\",cfo@acme.example group:finance-leads,merge,"),
        "the reason cannot run in a spreadsheet: {row}"
    );

    let markdown = run(&sim, &["review", dir, "-o", "markdown"]).await;
    let markdown = String::from_utf8_lossy(&markdown.stdout);
    let row = markdown
        .lines()
        .find(|l| l.contains("henry@acme.example"))
        .unwrap();
    assert!(row.contains("| finance/r1 |"), "{row}");
    assert!(!row.contains("https://"), "no link: {row}");
}

/// Exit code and stdout of `plan ARGS -o FORMAT` for each format.
async fn plan_in_every_format(sim: &SimulatorHandle, args: &[&str]) -> Vec<(Option<i32>, String)> {
    let mut seen = Vec::new();
    for format in ["text", "json", "markdown"] {
        let mut all = args.to_vec();
        all.extend(["-o", format]);
        let output = run(sim, &all).await;
        seen.push((output.status.code(), printed(&output)));
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_a_request_file_shows_that_request_and_its_grant_only() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_request(&sim, "\"month end\"");
    // r2, over the rules' maxDuration (8h), in a file of its own: never granted.
    request(&repo, "r2", "9h", "\"the whole night\"");
    let r1 = repo.path().join("requests/r1.yaml");
    let r1 = r1.to_str().unwrap();

    let planned = run(&sim, &["plan", r1, "-o", "json"]).await;
    assert_eq!(
        planned.status.code(),
        Some(2),
        "r1's grant is pending; r2 is not shown, so not counted: {}",
        printed(&planned)
    );
    let json = json_of(&planned);
    let requests = json["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{json:#}");
    assert_eq!(requests[0]["request"], "finance/r1");
    let changes = json["connectors"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "only the grant r1 causes: {json:#}");
    assert_eq!(changes[0]["requestedBy"], "finance/request:r1");
    assert_eq!(changes[0]["email"], "henry@acme.example");

    let r2 = repo.path().join("requests/r2.yaml");
    for (code, said) in plan_in_every_format(&sim, &["plan", r2.to_str().unwrap()]).await {
        assert_eq!(code, Some(1), "r2 is in Error: {said}");
        assert!(said.contains("spec.duration"), "the field is named: {said}");
        assert!(!said.contains("finance/r1"), "only r2 is shown: {said}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_error_fails_plan_apply_and_validate_in_every_format() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_request(&sim, "\"month end\"");
    // A role the rules do not allow (user, admin).
    repo.write(
        "requests/r3.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessRequest\nmetadata: {name: r3, namespace: finance}\nspec:\n  accessRef: {name: books}\n  email: ivy@acme.example\n  role: auditor\n  duration: 1h\n  reason: audit\n  requester: ivy@acme.example\n",
    );
    let dir = repo.path().to_str().unwrap();
    for (code, said) in plan_in_every_format(&sim, &["plan", dir]).await {
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains("spec.role"), "{said}");
    }
    // The text and the Markdown say why the check fails, not only the row.
    let markdown = run(&sim, &["plan", dir, "-o", "markdown"]).await;
    let markdown = String::from_utf8_lossy(&markdown.stdout);
    assert!(
        markdown.starts_with("**Failed:** an access request cannot be granted as written"),
        "{markdown}"
    );
    let text = run(&sim, &["plan", dir]).await;
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("Failed: an access request cannot be granted as written"),
        "{}",
        printed(&text)
    );
    // -n counts only the requests of the namespace shown.
    repo.write(
        "engineering.yaml",
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: eng, namespace: engineering}}\nspec:\n  connectorRef: {{name: acme, namespace: finance}}\n  policy: {{id: \"{ENGINEERING}\"}}\n  mode: Additive\n  members: [{{email: newhire@acme.example, role: user}}]\n"
        ),
    );
    let engineering = run(&sim, &["plan", dir, "-n", "engineering"]).await;
    assert_eq!(
        engineering.status.code(),
        Some(2),
        "{}",
        printed(&engineering)
    );

    let validated = run(&sim, &["validate", dir]).await;
    assert_eq!(validated.status.code(), Some(1), "{}", printed(&validated));
    let said = printed(&validated);
    assert!(
        said.contains("requests/r3.yaml (document 1): AccessRequest finance/r3: spec.role: auditor may not be asked for here"),
        "{said}"
    );
    assert!(!said.contains("finance/r1"), "r1 is fine: {said}");
    // The file alone: its PolicyAccess is found in the repository around it.
    let alone = repo.path().join("requests/r3.yaml");
    let alone = run(&sim, &["validate", alone.to_str().unwrap(), "-o", "json"]).await;
    assert_eq!(alone.status.code(), Some(1), "{}", printed(&alone));
    let json = json_of(&alone);
    assert_eq!(json["problems"][0]["field"], "spec.role", "{json:#}");

    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(1), "{}", printed(&applied));
    let said = printed(&applied);
    assert!(
        said.contains("finance/r3") && said.contains("spec.role"),
        "{said}"
    );
    assert!(listed(&sim, "henry@acme.example"), "r1 was still granted");
    assert!(!listed(&sim, "ivy@acme.example"));
    let json = run(&sim, &["apply", dir, "-o", "json"]).await;
    assert_eq!(json.status.code(), Some(1), "{}", printed(&json));
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_names_a_request_against_a_policy_access_that_takes_none() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.write(
        "books.yaml",
        &format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: books, namespace: finance}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"{FINANCE}\"}}\n  mode: Additive\n  members: [{{email: alice@acme.example, role: user}}]\n"
        ),
    );
    request(&repo, "r1", "4h", "\"month end\"");
    let validated = run(&sim, &["validate", repo.path().to_str().unwrap()]).await;
    assert_eq!(validated.status.code(), Some(1), "{}", printed(&validated));
    let said = printed(&validated);
    assert!(
        said.contains("AccessRequest finance/r1: spec.accessRef.name: PolicyAccess finance/books takes no requests"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_a_decision_file_says_file_mode_does_not_count_decisions() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_request(&sim, "\"month end\"");
    repo.write(
        "decisions/d1.yaml",
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: AccessDecision\nmetadata: {name: d1, namespace: finance}\nspec:\n  requestRef: {name: r1}\n  decision: Approve\n  decidedBy: cfo@acme.example\n",
    );
    let path = repo.path().join("decisions/d1.yaml");
    let output = run(&sim, &["plan", path.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        printed(&output)
            .contains("holds only AccessDecision documents, which file mode does not count"),
        "{}",
        printed(&output)
    );
}

fn listed(sim: &SimulatorHandle, email: &str) -> bool {
    roster(sim, FINANCE).iter().any(|(e, _)| e == email)
}

/// A request whose `duration` (r1) or `role` (r2) is 20,000 characters: the Markdown row
/// (a pull-request comment, which GitHub caps at 65,536 characters) and the text plan
/// showed it whole, twice (the column and the error quoting it; found by review 5).
#[tokio::test(flavor = "multi_thread")]
async fn plan_bounds_a_hostile_duration_and_role_like_the_reason() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
    let long = "z".repeat(20_000);
    request_with(&repo, "r1", "admin", &format!("\"4h{long}\""), "month end");
    request_with(&repo, "r2", &format!("\"admin{long}\""), "4h", "month end");
    let dir = repo.path().to_str().unwrap();

    let output = binary(
        &sim.endpoint(),
        &["plan", dir, "-o", "markdown"],
        ADMIN_SECRET,
    )
    .output()
    .await
    .unwrap();
    let markdown = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = markdown
        .lines()
        .filter(|l| l.starts_with("| finance/r"))
        .collect();
    assert!(
        !rows.is_empty(),
        "the requests are shown: {}",
        printed(&output)
    );
    for row in &rows {
        assert!(
            row.chars().count() < 3_000,
            "a request row of {} characters: {}...",
            row.chars().count(),
            row.chars().take(300).collect::<String>()
        );
    }

    let text = binary(&sim.endpoint(), &["plan", dir], ADMIN_SECRET)
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&text.stdout);
    let longest = shown.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(longest < 3_000, "a text plan line of {longest} characters");
}

/// A request in a namespace no connector serves, naming a PolicyAccess that does not
/// exist, can never be granted: `plan` (the pull-request check) fails it, as `validate`
/// does. (Review 6: nobody judged it, so it stayed `Pending` and the plan passed.)
#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_can_judge_fails_plan_as_it_fails_validate() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
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

/// A directory holding only request files (the one CODEOWNERS guards) validates as its
/// files do. (Review 6: "no ExpensifyConnector or PolicyAccess manifest below this
/// directory".)
#[tokio::test(flavor = "multi_thread")]
async fn validate_of_a_requests_directory_passes_a_fine_request() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    books(&repo);
    request(&repo, "r1", "4h", "month end");
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

/// A PolicyAccess naming 3,000 approvers (at most 20: it is invalid) keeps each of its
/// requests' approvers bounded in the text and Markdown plans, a pull-request comment
/// GitHub caps at 65,536 characters. (Review 6: 3,000 approvers on every request.)
#[tokio::test(flavor = "multi_thread")]
async fn plan_bounds_the_approvers_a_request_shows() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    let approvers: Vec<String> = (0..3000)
        .map(|i| format!("approver-number-{i:05}@acme.example"))
        .collect();
    books_approved_by(&repo, &approvers.join(", "));
    request(&repo, "r1", "4h", "month end");
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
