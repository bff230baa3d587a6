//! Tenancy and bounded messages through the real binary, in file mode, against the
//! simulator: what a namespace may touch (`spec.tenants`, `spec.allowFrom`), the warning
//! for unrestricted tenants, and a plan of 5,000 conflicting objects that stays small.

mod support;

use std::process::Output;

use support::*;

async fn run(allowed: &str, args: &[&str]) -> Output {
    binary(allowed, args, ADMIN_SECRET).output().await.unwrap()
}

/// A PolicyAccess manifest of `namespace` on connector `finance/acme`.
fn access_yaml(name: &str, namespace: &str, policy: &str, extra: &str, members: &str) -> String {
    format!(
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  connectorRef: {{name: acme, namespace: finance}}\n  policy: {{id: \"{policy}\"}}\n{extra}  members:\n{members}"
    )
}

/// The object `namespace/name` of the first connector in `plan -o json` / `apply -o json`.
fn object<'a>(json: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    json["connectors"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == key)
        .unwrap_or_else(|| panic!("{key} in {json:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_touches_only_its_policies_and_roles_and_a_governed_policy_is_closed() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    // engineering is in allowedNamespaces (the fixture) and in tenants: tenants wins.
    repo.connector(&format!(
        "  tenants:\n    - namespace: engineering\n      policies: [{{id: \"{ENGINEERING}\"}}]\n"
    ));
    let write = |name: &str, policy: &str, extra: &str, members: &str| {
        repo.write(
            &format!("engineering/{name}.yaml"),
            &access_yaml(name, "engineering", policy, extra, members),
        );
    };
    write("grab", FINANCE, "", "    - {email: grab@acme.example}\n");
    write(
        "raise",
        ENGINEERING,
        "",
        "    - {email: raise@acme.example, role: admin}\n",
    );
    write("own", ENGINEERING, "", "    - {email: own@acme.example}\n");
    let dir = repo.path().to_str().unwrap();
    let endpoint = sim.endpoint();

    let validated = run(&endpoint, &["validate", dir]).await;
    let said = printed(&validated);
    assert_eq!(validated.status.code(), Some(1), "{said}");
    assert!(
        said.contains("PolicyAccess engineering/grab: spec.policy: namespace \"engineering\" may not touch policy")
            && said.contains("PolicyAccess engineering/raise: spec.members[0].role: admin for raise@acme.example is above the highest role"),
        "{said}"
    );
    assert!(!said.contains("engineering/own"), "{said}");

    let applied = run(&endpoint, &["apply", dir, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&applied.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", printed(&applied)));
    for refused in ["engineering/grab", "engineering/raise"] {
        let status = &object(&json, refused)["status"];
        assert_eq!(status["phase"], "Error", "{status:#}");
        assert_eq!(
            status["conditions"][0]["reason"], "NotGranted",
            "{status:#}"
        );
    }
    assert_eq!(
        object(&json, "engineering/own")["status"]["phase"],
        "Synced"
    );
    let finance = roster(&sim, FINANCE);
    let engineering = roster(&sim, ENGINEERING);
    assert!(!finance.iter().any(|(e, _)| e == "grab@acme.example"));
    assert!(!engineering.iter().any(|(e, _)| e == "raise@acme.example"));
    assert!(engineering.contains(&("own@acme.example".to_string(), "user".to_string())));

    // finance/gov governs Engineering: engineering/own is closed out, and what it granted
    // is taken back, since nobody that may ask for own@ asks any more.
    let members: String = engineering
        .iter()
        .filter(|(e, _)| e != "own@acme.example")
        .map(|(e, r)| format!("    - {{email: {e}, role: {r}}}\n"))
        .collect();
    repo.write(
        "gov.yaml",
        &access_yaml(
            "gov",
            "finance",
            ENGINEERING,
            "  mode: Authoritative\n",
            &members,
        ),
    );
    let planned = run(&endpoint, &["plan", dir, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    let own = &object(&json, "engineering/own")["status"];
    assert_eq!(own["phase"], "Blocked", "{own:#}");
    assert_eq!(own["conditions"][0]["reason"], "Conflict");
    assert!(
        own["message"].as_str().unwrap().contains("spec.allowFrom"),
        "{own:#}"
    );
    let changes = json["connectors"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["email"], "own@acme.example");
    assert_eq!(changes[0]["action"], "revoke");

    // Listing engineering in allowFrom opens the policy again: nothing to do.
    repo.write(
        "gov.yaml",
        &access_yaml(
            "gov",
            "finance",
            ENGINEERING,
            "  mode: Authoritative\n  allowFrom: [engineering]\n",
            &members,
        ),
    );
    let reopened = run(&endpoint, &["plan", dir, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&reopened.stdout).unwrap();
    assert_eq!(json["pendingChanges"], 0, "{json:#}");
    assert_eq!(
        object(&json, "engineering/own")["status"]["phase"],
        "Synced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrestricted_tenant_works_and_is_warned_about() {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.write(
        "engineering/team.yaml",
        &access_yaml(
            "team",
            "engineering",
            FINANCE,
            "",
            "    - {email: anyone@acme.example, role: admin}\n",
        ),
    );
    let dir = repo.path().to_str().unwrap();
    let validated = run(&sim.endpoint(), &["validate", dir]).await;
    let said = printed(&validated);
    assert_eq!(
        validated.status.code(),
        Some(0),
        "a warning, not a problem: {said}"
    );
    assert!(
        said.contains("warning: ")
            && said.contains(
                "spec.allowedNamespaces[0]: unrestricted tenant: namespace \"engineering\""
            ),
        "{said}"
    );
    let applied = run(&sim.endpoint(), &["apply", dir, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert!(
        json["connectors"][0]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("warning: unrestricted tenant"),
        "{json:#}"
    );
    assert!(
        roster(&sim, FINANCE).contains(&("anyone@acme.example".to_string(), "admin".to_string()))
    );
}

/// The peak resident set (`VmHWM`, in bytes) of process `pid` so far, if it still runs.
fn high_water_mark(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs the binary and samples its peak resident set every few milliseconds until it exits:
/// the highest sample (a lower bound of the true peak, close enough to catch a blow-up that
/// takes seconds to build) and what it printed.
async fn run_measured(allowed: &str, args: &[&str]) -> (Output, u64) {
    let mut command = binary(allowed, args, ADMIN_SECRET);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampling = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(now) = high_water_mark(pid) {
                    peak = peak.max(now);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let output = child.wait_with_output().await.unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    (output, sampling.await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_thousand_objects_asking_two_roles_for_one_person_plan_in_bounded_memory() {
    const OBJECTS: usize = 5_000;
    const MEMORY_BOUND: u64 = 200 * 1024 * 1024;
    const OUTPUT_BOUND: usize = 64 * 1024 * 1024;
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    let mut manifests = String::new();
    for i in 0..OBJECTS {
        let role = if i % 2 == 0 { "user" } else { "admin" };
        manifests.push_str(&format!(
            "---\n{}",
            access_yaml(
                &format!("team-{i:05}"),
                "finance",
                FINANCE,
                "",
                &format!("    - {{email: contested@acme.example, role: {role}}}\n"),
            )
        ));
    }
    repo.write("teams.yaml", &manifests);
    let (planned, peak) = run_measured(
        &sim.endpoint(),
        &["plan", repo.path().to_str().unwrap(), "-o", "json"],
    )
    .await;
    assert!(peak > 0, "the child's memory was sampled");
    let printed_bytes = planned.stdout.len() + planned.stderr.len();
    eprintln!(
        "plan -o json of {OBJECTS} conflicting objects: peak RSS {} KiB, {printed_bytes} bytes printed",
        peak / 1024
    );
    assert_eq!(planned.status.code(), Some(1), "blocked objects: exit 1");
    assert!(peak < MEMORY_BOUND, "peak RSS {peak} bytes");
    assert!(
        printed_bytes < OUTPUT_BOUND,
        "{printed_bytes} bytes printed"
    );
    let json: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    assert_eq!(json["pendingChanges"], 0);
    let first = &object(&json, "finance/team-00000")["status"];
    assert_eq!(first["phase"], "Blocked");
    let message = first["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("and {} more", OBJECTS - 10)),
        "{message}"
    );
}
