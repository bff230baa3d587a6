//! Issue 20 item 7: Expensify answering the roster read with something a sync must not
//! act on (an error, an empty roster, a truncated body, a policy gone between the list
//! and the read). Through the real sync path (file mode against the simulator): nothing is
//! revoked on such an answer, nothing the operator owns is forgotten, and the next sync on
//! a sound answer converges (the release it had planned is made, and nothing else).

mod support;

use expensify_operator::files::Run;
use expensify_operator::reconcile::ChangeKind;
use expensify_operator::simulator::{FaultConfig, ScriptedFault, SimulatorHandle};
use support::*;

/// The next requests answered as scripted (then normally).
fn script(sim: &SimulatorHandle, faults: Vec<ScriptedFault>) {
    sim.state().set_faults(FaultConfig {
        script: faults.into_iter().collect(),
        ..FaultConfig::default()
    });
}

fn respond(body: &str) -> ScriptedFault {
    ScriptedFault::Respond {
        status: 200,
        body: body.to_string(),
    }
}

/// The policies the example seed's credentials can see (the roster read asks for all).
const VISIBLE: [&str; 5] = [
    FINANCE,
    ENGINEERING,
    "F005BA11000099999",
    CONTRACTORS,
    "BA5EBA1187654321",
];

/// A roster-read answer as the simulator would give it now, with `finance` in place of
/// Finance's `employees` (`None`: Finance left out).
fn rosters_with(sim: &SimulatorHandle, finance: Option<&serde_json::Value>) -> ScriptedFault {
    let mut info = serde_json::Map::new();
    for id in VISIBLE {
        let employees = if id == FINANCE {
            match finance {
                Some(value) => value.clone(),
                None => continue,
            }
        } else {
            roster(sim, id)
                .into_iter()
                .map(|(email, role)| serde_json::json!({"email": email, "role": role}))
                .collect()
        };
        info.insert(id.to_string(), serde_json::json!({"employees": employees}));
    }
    respond(&serde_json::json!({"responseCode": 200, "policyInfo": info}).to_string())
}

/// Every person on every policy, sorted: what "nothing changed" is checked against.
fn everything(sim: &SimulatorHandle) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for policy in [FINANCE, ENGINEERING, CONTRACTORS] {
        for (email, role) in roster(sim, policy) {
            all.push((policy.to_string(), email, role));
        }
    }
    all.sort();
    all
}

/// temp@ granted by the operator on Finance, then dropped from the manifest: the next
/// sync would revoke temp@. That sync gets `hostile` as the answer to its roster read (the request after
/// the policy list). Then a sound sync must revoke temp@ and change nothing else.
async fn roster_read_answered_with(hostile: impl FnOnce(&SimulatorHandle) -> Vec<ScriptedFault>) {
    let sim = start(&unlimited_seed()).await;
    let repo = Repo::new(&sim);
    repo.connector("");
    repo.access(
        "temp",
        FINANCE,
        "Additive",
        "    - {email: temp@acme.example}\n",
    );
    let first = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!first.has_errors(), "{first:#?}");
    assert!(
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "temp@acme.example")
    );
    repo.access("temp", FINANCE, "Additive", "    []\n");
    let before = everything(&sim);

    let mut script_with = vec![ScriptedFault::Pass];
    script_with.extend(hostile(&sim));
    script(&sim, script_with);
    let hostile = repo.mode().pass(Run::Apply).await.unwrap();
    sim.state().set_faults(FaultConfig::default());
    assert_eq!(
        everything(&sim),
        before,
        "nothing changes on a roster read that cannot be trusted: {:#?}",
        hostile
            .syncs
            .iter()
            .map(|s| &s.plan.changes)
            .collect::<Vec<_>>()
    );

    let sound = repo.mode().pass(Run::Apply).await.unwrap();
    assert!(!sound.has_errors(), "{sound:#?}");
    let changes: Vec<(ChangeKind, String)> = sound
        .syncs
        .iter()
        .flat_map(|s| &s.plan.changes)
        .map(|c| (c.kind, c.email.clone()))
        .collect();
    assert_eq!(
        changes,
        [(ChangeKind::Revoke, "temp@acme.example".to_string())],
        "the ledger survived the hostile answer: the planned release is made, nothing else"
    );
    let mut expected = before;
    expected.retain(|(policy, email, _)| !(policy == FINANCE && email == "temp@acme.example"));
    assert_eq!(everything(&sim), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roster_read_that_answers_an_error_revokes_nobody() {
    roster_read_answered_with(|_| {
        vec![respond(
            r#"{"responseCode": 404, "responseMessage": "Could not load policy"}"#,
        )]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roster_read_that_answers_rate_limited_until_the_retries_end_revokes_nobody() {
    roster_read_answered_with(|_| vec![ScriptedFault::Body503; 8]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_roster_body_revokes_nobody() {
    roster_read_answered_with(|_| {
        vec![respond(
            r#"{"responseCode": 200, "policyInfo": {"F1E2D3C4B5A69788": {"employees": [{"email": "te"#,
        )]
    })
    .await;
}

/// Expensify lists every policy's owner as admin: a roster without anybody is not a
/// roster, and must not read as "everyone left".
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_roster_revokes_nobody_and_forgets_nothing() {
    roster_read_answered_with(|sim| vec![rosters_with(sim, Some(&serde_json::json!([])))]).await;
}

/// A roster without its owner (who is always listed, as admin) cannot be the whole roster.
#[tokio::test(flavor = "multi_thread")]
async fn a_roster_without_its_owner_revokes_nobody_and_forgets_nothing() {
    roster_read_answered_with(|sim| {
        let rest: Vec<serde_json::Value> = roster(sim, FINANCE)
            .into_iter()
            .filter(|(email, _)| email != "temp@acme.example" && email != "cfo@acme.example")
            .map(|(email, role)| serde_json::json!({"email": email, "role": role}))
            .collect();
        vec![rosters_with(sim, Some(&serde_json::Value::Array(rest)))]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_gone_between_the_list_and_the_read_revokes_nobody() {
    roster_read_answered_with(|sim| vec![rosters_with(sim, None)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roster_answered_as_something_else_revokes_nobody() {
    roster_read_answered_with(|sim| {
        vec![rosters_with(
            sim,
            Some(&serde_json::json!({"email": "temp@acme.example"})),
        )]
    })
    .await;
}
