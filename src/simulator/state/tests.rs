use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::simulator::faults::{FaultConfig, ScriptedFault};
use crate::simulator::seed::Seed;

const SEED: &str = r#"
accounts:
  - {partnerUserID: admin_id, partnerUserSecret: admin-secret, email: admin@acme.com}
  - {partnerUserID: plain_id, partnerUserSecret: plain-secret, email: plain@acme.com, domainAdmin: false}
rateLimits: {enabled: false}
policies:
  - id: "P1"
    name: Finance
    owner: cfo@acme.com
    employees:
      - {email: admin@acme.com, role: admin}
      - {email: bob@acme.com, role: user, employeeID: E-1}
  - id: "P2"
    name: Sales
    owner: admin@acme.com
    employees:
      - {email: plain@acme.com, role: auditor}
"#;

fn state() -> SimState {
    SimState::from_seed(&Seed::parse(SEED, "test").unwrap())
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "callers hand over json! values"
)]
fn send(state: &mut SimState, job: Value, data: Option<Value>) -> (u16, Value) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("requestJobDescription", &job.to_string());
    if let Some(data) = data {
        form.append_pair("data", &data.to_string());
    }
    match state.receive(form.finish().as_bytes(), Instant::now()) {
        Outcome::Respond(r) | Outcome::Stall(r, _) => (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)),
        ),
        other => panic!("{other:?}"),
    }
}

fn creds(id: &str, secret: &str) -> Value {
    json!({"partnerUserID": id, "partnerUserSecret": secret})
}

fn update(data: Value) -> (Value, Option<Value>) {
    (
        json!({"type": "update", "credentials": creds("admin_id", "admin-secret"),
               "inputSettings": {"type": "employees", "entity": "generic"},
               "dataSource": "request", "shouldFixApprovalChains": false}),
        Some(data),
    )
}

fn roster(state: &mut SimState, id: &str) -> Vec<Value> {
    let job = json!({"type": "get", "credentials": creds("admin_id", "admin-secret"),
                     "inputSettings": {"type": "policy", "fields": ["employees"], "policyIDList": [id]}});
    let (_, body) = send(state, job, None);
    body["policyInfo"][id]["employees"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn policy_list_shows_the_callers_role_and_honours_admin_only() {
    let mut state = state();
    let job = json!({"type": "get", "credentials": creds("plain_id", "plain-secret"),
                     "inputSettings": {"type": "policyList", "adminOnly": false}});
    let (status, body) = send(&mut state, job.clone(), None);
    assert_eq!(status, 200);
    assert_eq!(body["policyList"].as_array().unwrap().len(), 1);
    assert_eq!(body["policyList"][0]["role"], "auditor");
    let mut admin_only = job;
    admin_only["inputSettings"]["adminOnly"] = json!(true);
    let (_, body) = send(&mut state, admin_only, None);
    assert_eq!(body["policyList"], json!([]));
}

#[tokio::test]
async fn apply_then_stall_applies_the_job_and_delays_the_answer() {
    let mut state = state();
    state.set_faults(FaultConfig {
        script: [ScriptedFault::ApplyThenStall { ms: 1500 }]
            .into_iter()
            .collect(),
        ..FaultConfig::default()
    });
    let (job, data) = update(
        json!([{"employeeEmail": "late@acme.com", "managerEmail": "admin@acme.com", "policyID": "P1", "role": "user"}]),
    );
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("requestJobDescription", &job.to_string());
    form.append_pair("data", &data.unwrap().to_string());
    match state.receive(form.finish().as_bytes(), Instant::now()) {
        Outcome::Stall(answer, delay) => {
            assert_eq!(delay, std::time::Duration::from_millis(1500));
            assert!(
                answer.body.contains("\"updatedEmployeesCount\":1"),
                "{}",
                answer.body
            );
        }
        other => panic!("expected a stalled answer, got {other:?}"),
    }
    assert!(
        roster(&mut state, "P1")
            .iter()
            .any(|e| e["email"] == "late@acme.com"),
        "the job landed before the answer"
    );
    assert_eq!(state.counters().faults.get("applyThenStall"), Some(&1));
}

#[tokio::test]
async fn wrong_secret_is_refused_with_407() {
    let mut state = state();
    let job = json!({"type": "get", "credentials": creds("admin_id", "wrong"),
                     "inputSettings": {"type": "policyList"}});
    assert_eq!(send(&mut state, job, None).1["responseCode"], 407);
}

#[tokio::test]
async fn roster_read_needs_ids_and_fields_and_known_policies() {
    let mut state = state();
    let base = |settings: Value| json!({"type": "get", "credentials": creds("admin_id", "admin-secret"), "inputSettings": settings});
    let (_, body) = send(
        &mut state,
        base(json!({"type": "policy", "fields": ["employees"]})),
        None,
    );
    assert_eq!(
        body["responseMessage"],
        "Required parameter 'policyIDList' is missing"
    );
    let (_, body) = send(
        &mut state,
        base(json!({"type": "policy", "policyIDList": ["P1"]})),
        None,
    );
    assert_eq!(body["responseCode"], 410);
    let (_, body) = send(
        &mut state,
        base(json!({"type": "policy", "fields": ["employees"], "policyIDList": ["P1", "nope"]})),
        None,
    );
    assert_eq!(body["responseCode"], 410);
    let (_, body) = send(
        &mut state,
        base(json!({"type": "policy", "fields": ["tags"], "policyIDList": ["P1"]})),
        None,
    );
    assert_eq!(
        body["policyInfo"]["P1"],
        json!({"tags": {}}),
        "only the requested sections"
    );
    let employees = roster(&mut state, "P1");
    let cfo = employees
        .iter()
        .find(|e| e["email"] == "cfo@acme.com")
        .unwrap();
    assert_eq!(cfo["role"], "admin", "the owner is listed as admin");
    let bob = employees
        .iter()
        .find(|e| e["email"] == "bob@acme.com")
        .unwrap();
    assert_eq!(bob["employeeID"], "E-1");
    assert_eq!(bob["customField1"], "E-1");
}

#[tokio::test]
async fn updater_adds_changes_and_removes_from_one_policy_only() {
    let mut state = state();
    let (job, data) = update(json!([
        {"employeeEmail": "carol@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "auditor"},
        {"employeeEmail": "carol@acme.com", "managerEmail": "admin@acme.com", "policyID": "P2", "role": "user"},
        {"employeeEmail": "bob@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "admin", "employeeID": "E-1"}
    ]));
    let (_, body) = send(&mut state, job, data);
    assert_eq!(body["updatedEmployeesCount"], 3);
    assert_eq!(
        body["diff"]["diffToAdd"],
        json!({"P1": ["carol@acme.com"], "P2": ["carol@acme.com"]})
    );
    let (job, data) = update(json!({"Employees": [
        {"employeeEmail": "carol@acme.com", "policyID": "P1", "isTerminated": true}
    ]}));
    let (_, body) = send(&mut state, job, data);
    assert_eq!(
        body["diff"]["diffToRemove"],
        json!({"P1": ["carol@acme.com"]})
    );
    assert!(
        roster(&mut state, "P1")
            .iter()
            .all(|e| e["email"] != "carol@acme.com")
    );
    assert!(
        roster(&mut state, "P2")
            .iter()
            .any(|e| e["email"] == "carol@acme.com"),
        "still on P2"
    );
    let bob = roster(&mut state, "P1")
        .into_iter()
        .find(|e| e["email"] == "bob@acme.com")
        .unwrap();
    assert_eq!(bob["role"], "admin");
}

#[tokio::test]
async fn owner_and_caller_cannot_be_demoted_or_removed() {
    let mut state = state();
    let (job, data) = update(json!([
        {"employeeEmail": "cfo@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "user"},
        {"employeeEmail": "admin@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "isTerminated": true},
        {"employeeEmail": "x@acme.com", "managerEmail": "cfo@acme.com", "policyID": "NOPE"},
        {"employeeEmail": "y@acme.com", "managerEmail": "not an email", "policyID": "P1"},
        {"employeeEmail": "z@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "owner"}
    ]));
    let (_, body) = send(&mut state, job, data);
    assert_eq!(body["updatedEmployeesCount"], 0);
    let reasons: Vec<&str> = body["skippedEmployees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].contains("cannot have their role demoted"));
    assert!(reasons[1].contains("cannot be removed"));
    assert_eq!(reasons[2], "No policy found for 'NOPE'");
    assert_eq!(reasons[3], "Invalid manager email address 'not an email'");
    assert_eq!(reasons[4], "Invalid role 'owner'");
}

#[tokio::test]
async fn request_level_validation_mirrors_expensify() {
    let mut state = state();
    let (job, _) = update(json!([]));
    let (_, body) = send(&mut state, job.clone(), None);
    assert_eq!(body["responseCode"], 410);
    let (_, body) = send(
        &mut state,
        job.clone(),
        Some(json!([{"employeeEmail": "bad", "managerEmail": "a@b.com", "policyID": "P1"}])),
    );
    assert_eq!(
        body["responseMessage"],
        "'employeeEmail' parameter is missing or malformed"
    );
    let (_, body) = send(
        &mut state,
        job.clone(),
        Some(json!([{"employeeEmail": "a@b.com", "policyID": "P1"}])),
    );
    assert_eq!(
        body["responseMessage"],
        "'managerEmail' parameter is missing or malformed"
    );
    let mut nested = job.clone();
    nested.as_object_mut().unwrap().remove("dataSource");
    nested["inputSettings"]["dataSource"] = json!("request");
    let (_, body) = send(
        &mut state,
        nested,
        Some(
            json!([{"employeeEmail": "a@b.com", "managerEmail": "cfo@acme.com", "policyID": "P1"}]),
        ),
    );
    assert_eq!(
        body["responseMessage"],
        "Argument 'dataSource' is missing or malformed"
    );
    let mut plain = job;
    plain["credentials"] = creds("plain_id", "plain-secret");
    let (_, body) = send(
        &mut state,
        plain,
        Some(
            json!([{"employeeEmail": "a@b.com", "managerEmail": "cfo@acme.com", "policyID": "P2"}]),
        ),
    );
    assert_eq!(body["responseCode"], 403);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_approval_chains_are_fixed_by_default() {
    let mut state = state();
    let (mut job, data) = update(
        json!([{"employeeEmail": "dan@acme.com", "managerEmail": "eve@acme.com", "policyID": "P1"}]),
    );
    job["dry-run"] = json!(true);
    let (_, body) = send(&mut state, job.clone(), data.clone());
    assert_eq!(body["dry-run"], true);
    assert_eq!(body["updatedEmployeesCount"], 1);
    assert!(
        roster(&mut state, "P1")
            .iter()
            .all(|e| e["email"] != "dan@acme.com")
    );
    job.as_object_mut().unwrap().remove("dry-run");
    job.as_object_mut()
        .unwrap()
        .remove("shouldFixApprovalChains");
    send(&mut state, job, data);
    let emails: Vec<Value> = roster(&mut state, "P1")
        .into_iter()
        .map(|e| e["email"].clone())
        .collect();
    assert!(
        emails.contains(&json!("eve@acme.com")),
        "manager invited: {emails:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_windows_answer_429() {
    let seed = SEED.replace(
        "rateLimits: {enabled: false}",
        "rateLimits: {windows: [{maxRequests: 2, periodSeconds: 10}]}",
    );
    let mut state = SimState::from_seed(&Seed::parse(&seed, "t").unwrap());
    let job = json!({"type": "get", "credentials": creds("admin_id", "admin-secret"), "inputSettings": {"type": "policyList"}});
    assert_eq!(send(&mut state, job.clone(), None).0, 200);
    assert_eq!(send(&mut state, job.clone(), None).0, 200);
    let (status, body) = send(&mut state, job.clone(), None);
    assert_eq!((status, body["responseCode"].clone()), (429, json!(429)));
    tokio::time::advance(std::time::Duration::from_secs(10)).await;
    assert_eq!(send(&mut state, job, None).0, 200);
    assert_eq!(state.counters().rate_limited, 1);
}

#[tokio::test]
async fn log_and_counters_never_hold_secrets() {
    let mut state = state();
    let job = json!({"type": "get", "credentials": creds("admin_id", "admin-secret"), "inputSettings": {"type": "policyList"}});
    send(&mut state, job, None);
    let shown = serde_json::to_string(&(state.requests(), state.counters())).unwrap();
    assert!(!shown.contains("admin-secret"));
    assert_eq!(state.requests()[0].job, "get/policyList");
    assert_eq!(state.counters().by_job["get/policyList"], 1);
}

/// The log keeps, for tests that judge every change (the soak), when each request came in
/// and each roster entry it changed; dry runs and reads change nothing.
#[tokio::test(start_paused = true)]
async fn the_log_records_arrival_times_and_roster_changes() {
    let mut state = state();
    let (job, data) = update(json!([
        {"employeeEmail": "carol@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "auditor"},
        {"employeeEmail": "bob@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "user"}
    ]));
    let arrived = Instant::now();
    send(&mut state, job, data);
    tokio::time::advance(std::time::Duration::from_secs(7)).await;
    let (job, data) = update(json!([
        {"employeeEmail": "carol@acme.com", "policyID": "P1", "isTerminated": true}
    ]));
    let mut dry = job.clone();
    dry["dry-run"] = json!(true);
    send(&mut state, dry, data.clone());
    send(&mut state, job, data);
    roster(&mut state, "P1");
    let log: Vec<&RequestRecord> = state.requests().iter().collect();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].received_at, arrived);
    assert_eq!(
        log[2].received_at.duration_since(arrived).as_secs(),
        7,
        "the paused clock's time"
    );
    let change = |email: &str, before: Option<Role>, after: Option<Role>| RosterChange {
        policy_id: "P1".into(),
        email: email.into(),
        before,
        after,
    };
    // Bob's record changed nothing (already a user): no change logged for him.
    assert_eq!(
        log[0].changes,
        vec![change("carol@acme.com", None, Some(Role::Auditor))]
    );
    assert_eq!(log[1].changes, vec![], "a dry run changes nothing");
    assert_eq!(
        log[2].changes,
        vec![change("carol@acme.com", Some(Role::Auditor), None)]
    );
    assert_eq!(log[3].changes, vec![], "a read changes nothing");
    // Neither is in what `/admin/requests` shows.
    let shown = serde_json::to_value(log[0]).unwrap();
    assert!(shown.get("changes").is_none() && shown.get("receivedAt").is_none());
}

#[tokio::test]
async fn each_logged_request_says_when_it_arrived_on_the_wall_clock() {
    let micros = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    };
    let mut state = state();
    let job = json!({"type": "get", "credentials": creds("admin_id", "admin-secret"), "inputSettings": {"type": "policyList"}});
    let before = micros();
    send(&mut state, job, None);
    let after = micros();
    let at = u128::from(state.requests()[0].received_at_micros);
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    let shown = serde_json::to_value(&state.requests()[0]).unwrap();
    assert_eq!(
        shown["receivedAtMicros"],
        json!(state.requests()[0].received_at_micros)
    );
}
