//! Every real response recorded in `shared/research/expensify-api.md`, parsed byte for
//! byte as recorded (the files in `tests/fixtures/recorded/` are copied from it verbatim).

use expensify_operator::expensify::ErrorKind;
use expensify_operator::expensify::wire::{
    classify, decode_policy_list, decode_rosters, decode_update,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/recorded/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn documented_policy_list() {
    let body = classify(200, None, &fixture("doc-policy-list.json")).unwrap();
    let policies = decode_policy_list(body).unwrap();
    assert_eq!(policies.len(), 3);
    assert_eq!(policies[0].id, "DEADBEEF12345678");
    assert_eq!(policies[0].owner, "admin@acmecorp.com");
    assert_eq!(policies[0].caller_role, "user");
    assert_eq!(policies[1].output_currency, "EUR");
    assert_eq!(
        policies[2].id, "F005BA11000099999",
        "17-character ids are kept as they are"
    );
    assert_eq!(policies[2].plan, "corporate");
}

#[test]
fn recorded_policy_list_with_odd_types() {
    let body = classify(200, None, &fixture("nango-list-policies.json")).unwrap();
    let policies = decode_policy_list(body).unwrap();
    assert_eq!(policies.len(), 1);
    let policy = &policies[0];
    assert_eq!(policy.id, "50AB41C04076CFCD");
    assert_eq!(policy.name, "Nango's Workspace");
    assert_eq!(policy.plan, "team");
    assert_eq!(policy.owner, "khaliq@nango.dev");
    assert_eq!(policy.output_currency, "ILS");
    assert_eq!(policy.caller_role, "admin");
}

#[test]
fn recorded_roster() {
    let body = classify(200, None, &fixture("nango-roster.json")).unwrap();
    let rosters = decode_rosters(&body, &["50AB41C04076CFCD".to_string()]).unwrap();
    let roster = &rosters["50AB41C04076CFCD"];
    assert_eq!(roster.len(), 6);
    assert_eq!(roster[0].email, "khaliq@nango.dev");
    assert_eq!(roster[0].role, "admin", "the owner appears as admin");
    assert_eq!(
        roster[0].forwards_to, None,
        "empty forwardsTo is no approver"
    );
    assert_eq!(roster[4].employee_id.as_deref(), Some("aabbcc"));
    assert_eq!(roster[5].submits_to.as_deref(), Some("khaliq@nango.dev"));
    assert!(roster.iter().all(|e| e.known_role().is_some()));
}

#[test]
fn documented_updater_answer() {
    let body = classify(200, None, &fixture("doc-employee-updater.json")).unwrap();
    let outcome = decode_update(body).unwrap();
    assert!(!outcome.dry_run);
    assert_eq!(outcome.updated_employees_count, 3);
    assert_eq!(
        outcome.added["0123456789ABCDEF"],
        vec!["employee1@domain.com", "employee2@domain.com"]
    );
    assert_eq!(
        outcome.removed["B1C7903C636F4A51"],
        vec!["terminatedEmployee@domain.com"]
    );
    assert_eq!(outcome.skipped.len(), 2);
    assert_eq!(
        outcome.skipped[1].reason,
        "Invalid manager email address 'manager@domain '"
    );
}

#[test]
fn recorded_add_with_failed_policies() {
    let body = classify(200, None, &fixture("nango-create-user.json")).unwrap();
    let outcome = decode_update(body).unwrap();
    assert_eq!(outcome.updated_employees_count, 1);
    assert!(outcome.added.is_empty());
    assert_eq!(outcome.failed_policies, vec!["50AB41C04076CFCD"]);
}

#[test]
fn recorded_removal() {
    let body = classify(200, None, &fixture("nango-disable-user.json")).unwrap();
    let outcome = decode_update(body).unwrap();
    assert_eq!(
        outcome.removed["50AB41C04076CFCD"],
        vec!["johndoe@test.com"]
    );
}

#[test]
fn recorded_errors_classify() {
    assert!(matches!(
        classify(200, None, &fixture("amp-labs-error-auth.json")),
        Err(ErrorKind::CredentialsRejected { code: 407, ref message }) if message == "Authentication failed"
    ));
    assert!(matches!(
        classify(429, None, &fixture("airbyte-rate-limited.json")),
        Err(ErrorKind::RateLimited { ref message, .. }) if message == "Too many requests. Please try again later"
    ));
    assert!(matches!(
        classify(200, None, &fixture("doc-csv-updater-error.json")),
        Err(ErrorKind::Refused { code: 500, .. })
    ));
    assert!(classify(200, None, &fixture("xrl-create-expense-rules.json")).is_ok());
}

/// When the research file is beside the checkout (as in CI), every fixture must still be
/// in it verbatim.
#[test]
fn fixtures_match_the_research_file() {
    let research = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/research/expensify-api.md"
    );
    let Ok(text) = std::fs::read_to_string(research) else {
        eprintln!("{research} not present; skipping the verbatim check");
        return;
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/recorded");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let fixture = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&fixture),
            "{} is not verbatim in the research file",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 10);
}
