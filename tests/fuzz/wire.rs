//! (d) The Expensify response decoder over mutated real answers: every body recorded in
//! `tests/fixtures/recorded/` (policy lists, rosters, updater answers, errors), with the
//! HTTP statuses Expensify sends. `tests/wire_properties.rs` covers arbitrary bytes and
//! arbitrary JSON; this adds what is near a real answer, where decoders go deepest.

use std::sync::OnceLock;

use expensify_operator::expensify::ErrorKind;
use expensify_operator::expensify::wire::{
    classify, decode_policy_list, decode_rosters, decode_update,
};
use proptest::prelude::*;

use super::mutate::{case, config, mutated};
use super::seeds;

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
