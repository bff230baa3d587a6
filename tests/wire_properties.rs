//! Property tests of the Expensify response decoder over arbitrary bytes and arbitrary
//! JSON: it never panics, it always gives a value or an error, and no error message
//! ever holds the secret. Runs `PROPTEST_CASES` cases per property (proptest's default,
//! 256, in `cargo test`); the long run is
//! `PROPTEST_CASES=200000 cargo test --release --test wire_properties`.

use std::time::Duration;

use expensify_operator::expensify::Credentials;
use expensify_operator::expensify::wire::{
    classify, classify_scrubbed, decode_policy_list, decode_rosters, decode_update,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys the decoders look for, so generated objects reach past the first check.
const KEYS: &[&str] = &[
    "responseCode",
    "responseMessage",
    "policyList",
    "policyInfo",
    "employees",
    "email",
    "role",
    "id",
    "name",
    "owner",
    "type",
    "submitsTo",
    "P1",
    "dry-run",
    "updatedEmployeesCount",
    "diff",
    "diffToAdd",
    "diffToRemove",
    "skippedEmployees",
    "failedPolicies",
    "reason",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(200u16),
            Just(207),
            Just(401),
            Just(429),
            Just(503),
            Just(666)
        ]
        .prop_map(|c| json!(c.to_string())),
        "\\PC{0,20}".prop_map(Value::String),
        // JSON inside a string, as Expensify sometimes sends.
        Just(json!("[\"a@b.c\"]")),
        Just(json!("{\"P1\":[]}")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A body that looks like an answer: an object with a response code and random fields.
fn answer() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(json!(200)),
            Just(json!("200")),
            Just(json!(207)),
            scalar()
        ],
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..6),
    )
        .prop_map(|(code, fields)| {
            let mut map: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            map.insert("responseCode".into(), code);
            Value::Object(map)
        })
}

/// Runs every decoder on whatever `classify` accepted; each must return.
fn decode_all(body: Value) {
    let _ = decode_policy_list(body.clone());
    let _ = decode_rosters(&body, &["P1".to_string(), "P2".to_string()]);
    let _ = decode_update(body);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        status in 0u16..1000,
        retry in proptest::option::of(any::<u64>()),
        body in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        if let Ok(value) = classify(status, retry.map(Duration::from_secs), &body) {
            decode_all(value);
        }
    }

    #[test]
    fn arbitrary_answers_never_panic(status in 100u16..600, body in answer()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(value) = classify(status, None, &bytes) {
            decode_all(value);
        }
        // The decoders also see what classify would have refused.
        decode_all(body);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 100usize..5000, open in prop_oneof![Just("["), Just("{\"a\":")]) {
        let body = open.repeat(depth);
        prop_assert!(classify(200, None, body.as_bytes()).is_err());
    }

    #[test]
    fn errors_never_hold_the_secret(
        secret in "[A-Z0-9][a-zA-Z0-9/+=&%]{7,30}",
        before in "\\PC{0,400}",
        after in "\\PC{0,40}",
        status in prop_oneof![Just(200u16), Just(401), Just(500), Just(502)],
        code in prop_oneof![Just(401u16), Just(500), Just(666)],
        encoding in 0usize..3,
    ) {
        let credentials = Credentials::new("id", secret.as_str()).unwrap();
        let secret = secret.trim().to_string();
        let echoed = match encoding {
            0 => secret.clone(),
            1 => form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            _ => {
                let json = serde_json::to_string(&secret).unwrap();
                json[1..json.len() - 1].to_string()
            }
        };
        let message = format!("{before}{echoed}{after}");
        let scrub = |text: &str| credentials.scrub(text);
        for body in [
            serde_json::to_vec(&json!({"responseCode": code, "responseMessage": message})).unwrap(),
            message.clone().into_bytes(),
        ] {
            if let Err(kind) = classify_scrubbed(status, None, &body, &scrub) {
                let shown = kind.to_string();
                prop_assert!(!shown.contains(&secret), "{}", shown);
                prop_assert!(!shown.contains(&echoed), "{}", shown);
            }
        }
    }
}
