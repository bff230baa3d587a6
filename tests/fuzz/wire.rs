//! (d) The Expensify response decoder over mutated real answers: every body recorded in
//! `tests/fixtures/recorded/` (policy lists, rosters, updater answers, errors), with the
//! HTTP statuses Expensify sends. `tests/wire_properties.rs` covers arbitrary bytes and
//! arbitrary JSON; this adds what is near a real answer, where decoders go deepest.

use std::sync::OnceLock;

use std::collections::VecDeque;

use expensify_operator::expensify::wire::{
    classify, decode_policy_list, decode_rosters, decode_update,
};
use expensify_operator::expensify::{EmployeeRecord, ErrorKind, Role};
use expensify_operator::simulator::{FaultConfig, ScriptedFault};
use proptest::prelude::*;

use super::mutate::{case, config, mutated};
use super::seeds;
use crate::support::{ADMIN_ID, ADMIN_SECRET, client_with, start, test_settings, unlimited_seed};

pub fn answer_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| seeds::files("tests/fixtures/recorded", "json"))
}

/// The policy ids the recorded rosters hold, and one no answer has.
const REQUESTED: [&str; 3] = ["50AB41C04076CFCD", "DEADBEEF12345678", "P1"];

fn said(kind: &ErrorKind) -> Result<(), TestCaseError> {
    prop_assert!(!kind.to_string().trim().is_empty(), "{:?}", kind);
    Ok(())
}

/// Classifies and runs every decoder on what is accepted; each returns a value or a
/// kind of error that says something.
pub fn decode_everything(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    let value = match classify(status, None, body) {
        Ok(value) => value,
        Err(kind) => return said(&kind),
    };
    let requested: Vec<String> = REQUESTED.iter().map(ToString::to_string).collect();
    for id in [&requested[..1], &requested[1..2], &requested[..]] {
        if let Err(kind) = decode_rosters(&value, id) {
            said(&kind)?;
        }
    }
    if let Err(kind) = decode_policy_list(value.clone()) {
        said(&kind)?;
    }
    if let Err(kind) = decode_update(value) {
        said(&kind)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn wire_mutated_answers_never_panic(
        (seed, changes) in case(answer_seeds().len(), 8),
        status in prop_oneof![Just(200u16), Just(207), Just(401), Just(429), Just(500), Just(503)],
    ) {
        let seeds = answer_seeds();
        decode_everything(status, &mutated(&seeds[seed], &changes, seeds))?;
    }
}

/// A decoder's error quotes the value at fault, which can be the whole body: the client
/// gives it scrubbed, then cut like a server's message. The secret sits where a cut made
/// before scrubbing would leave its first half behind.
#[tokio::test]
async fn wire_client_errors_about_huge_values_are_bounded_and_scrubbed() {
    let sim = start(&unlimited_seed()).await;
    let client = client_with(&sim, test_settings(), ADMIN_ID, ADMIN_SECRET);
    let (half, _) = ADMIN_SECRET.split_at(ADMIN_SECRET.len() / 2);
    let value = format!(
        "{}{ADMIN_SECRET}{}",
        "x".repeat(250),
        "y".repeat(1024 * 1024)
    );
    let bodies = [
        format!("{{\"responseCode\":200,\"policyList\":\"{value}\"}}"),
        format!("{{\"responseCode\":200,\"policyInfo\":{{\"P1\":{{\"employees\":\"{value}\"}}}}}}"),
        format!("{{\"responseCode\":200,\"skippedEmployees\":[\"{value}\"]}}"),
    ];
    let record = EmployeeRecord::grant("a@acme.example", "P1", Role::User, "b@acme.example", None);
    for (i, body) in bodies.into_iter().enumerate() {
        sim.state().set_faults(FaultConfig {
            script: VecDeque::from([ScriptedFault::Respond { status: 200, body }]),
            ..FaultConfig::default()
        });
        let error = match i {
            0 => client.list_policies(false).await.unwrap_err(),
            1 => client.read_rosters(&["P1".to_string()]).await.unwrap_err(),
            _ => {
                client
                    .update_employees(std::slice::from_ref(&record), false)
                    .await
                    .failed
                    .remove(0)
                    .error
            }
        };
        assert!(
            matches!(error.kind, ErrorKind::Undecodable { .. }),
            "case {i}: {error:?}"
        );
        let shown = error.to_string();
        assert!(
            shown.chars().count() <= 500,
            "case {i}: an error of {} characters",
            shown.chars().count()
        );
        assert!(!shown.contains(half), "case {i}: {shown}");
    }
}
