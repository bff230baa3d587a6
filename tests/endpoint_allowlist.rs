//! The operator's endpoint allowlist, through the real binary: a connector (or a pull
//! request editing one) aimed anywhere else gets an error, and the "attacker" listener
//! never sees a single connection, let alone the secret.

mod support;

use std::process::Output;

use support::*;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_expensify-operator");

/// `plan`/`apply`/`export` with the admin credentials in the environment; `allowed` is
/// `EXPENSIFY_ALLOWED_ENDPOINTS`, or unset for the default.
async fn run(allowed: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("EXPENSIFY_PARTNER_USER_ID", ADMIN_ID)
        .env("EXPENSIFY_PARTNER_USER_SECRET", ADMIN_SECRET)
        .env("EXPENSIFY_UNSIGNED_STATUS", "true")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("EXPENSIFY_ALLOWED_ENDPOINTS")
        .kill_on_drop(true);
    if let Some(allowed) = allowed {
        command.env("EXPENSIFY_ALLOWED_ENDPOINTS", allowed);
    }
    command.output().await.unwrap()
}

fn text(output: &Output) -> String {
    printed(output)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_aiming_the_connector_elsewhere_gets_no_secret() {
    let sim = start(&unlimited_seed()).await;
    let attacker = Attacker::start().await;
    let repo = repo_with_a_pending_grant(&sim, &attacker.endpoint);
    let dir = repo.path().to_str().unwrap();
    let look_alike = attacker
        .endpoint
        .replacen("http://", &format!("http://{}@", sim.addr()), 1);
    for (allowed, endpoint) in [
        (Some(sim.endpoint()), attacker.endpoint.clone()),
        (None, attacker.endpoint.clone()),
        (Some(sim.endpoint()), look_alike),
    ] {
        let repo = repo_with_a_pending_grant(&sim, &endpoint);
        for command in ["plan", "apply"] {
            let output = run(
                allowed.as_deref(),
                &[command, repo.path().to_str().unwrap()],
            )
            .await;
            let shown = text(&output);
            assert_eq!(output.status.code(), Some(1), "{shown}");
            assert!(shown.contains("not an allowed endpoint"), "{shown}");
            assert!(!shown.contains(ADMIN_SECRET), "{shown}");
        }
    }
    // `apply` records the refusal; the status file names the field.
    let output = run(Some(&sim.endpoint()), &["apply", dir]).await;
    assert_eq!(output.status.code(), Some(1));
    let status = std::fs::read_to_string(
        repo.path()
            .join(".expensify-status/expensifyconnector/finance/acme.yaml"),
    )
    .unwrap();
    assert!(
        status.contains("phase: Error") && status.contains("spec.endpoint"),
        "{status}"
    );
    assert_eq!(attacker.connections(), 0, "the attacker was contacted");
    assert_eq!(sim.state().counters().requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_is_refused_before_any_credential_is_looked_up() {
    let sim = start(&unlimited_seed()).await;
    let attacker = Attacker::start().await;
    let repo = repo_with_a_pending_grant(&sim, &attacker.endpoint);
    // No credentials anywhere: had the Secret been looked up first, this would say so.
    let output = Command::new(BIN)
        .args(["plan", repo.path().to_str().unwrap()])
        .env_remove("EXPENSIFY_PARTNER_USER_ID")
        .env_remove("EXPENSIFY_PARTNER_USER_SECRET")
        .env_remove("EXPENSIFY_ALLOWED_ENDPOINTS")
        .output()
        .await
        .unwrap();
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("not an allowed endpoint"), "{shown}");
    assert!(!shown.contains("not found"), "{shown}");
    assert_eq!(attacker.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_flag_allows_the_simulator_and_refuses_bad_lists() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let allowed = format!("https://integrations.expensify.com/, {}", sim.endpoint());
    let planned = run(None, &["plan", dir, "--allowed-endpoints", &allowed]).await;
    assert_eq!(planned.status.code(), Some(2), "{}", text(&planned));
    for bad in ["http://example.com/", "https://user@example.com/", ""] {
        let refused = run(None, &["plan", dir, "--allowed-endpoints", bad]).await;
        assert_eq!(refused.status.code(), Some(1), "{bad:?}");
        assert!(
            text(&refused).contains("--allowed-endpoints"),
            "{}",
            text(&refused)
        );
    }
    assert_eq!(updates(&sim), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_refuses_an_endpoint_outside_the_allowlist() {
    let attacker = Attacker::start().await;
    let output = run(
        None,
        &[
            "export",
            "--endpoint",
            &attacker.endpoint,
            "--admin-email",
            "it-admin@acme.example",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("not an allowed endpoint"),
        "{}",
        text(&output)
    );
    assert_eq!(attacker.connections(), 0);
}
