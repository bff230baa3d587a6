//! (c) The saved plan reader (`apply --plan FILE`): a plan as `plan --out` writes it,
//! mutated, or arbitrary bytes. A plan or an error naming the file; never a panic.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use expensify_operator::files::SavedPlan;
use expensify_operator::files::saved_plan::{ManifestDigest, SAVED_PLAN_VERSION};
use expensify_operator::reconcile::reviewed::{ReviewedChange, ReviewedConnector};
use proptest::prelude::*;

use super::mutate::{case, config, mutated};

const DIGEST: &str = "6cc43f858fbb763301637b5af970e2a46b46f461f27e5a0f41e009c59b827b25";

/// A plan with what a real one holds: digests of objects, changes and roster digests,
/// as written (pretty) and compact.
pub fn plan_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let plan = SavedPlan {
            version: SAVED_PLAN_VERSION,
            manifests: BTreeMap::from([
                (
                    "ExpensifyConnector finance/acme".to_string(),
                    ManifestDigest {
                        file: "connector.yaml".into(),
                        digest: DIGEST.into(),
                    },
                ),
                (
                    "PolicyAccess finance/team".to_string(),
                    ManifestDigest {
                        file: "teams/team.yaml".into(),
                        digest: DIGEST.into(),
                    },
                ),
            ]),
            connectors: vec![ReviewedConnector {
                connector: "finance/acme".into(),
                changes: vec![ReviewedChange {
                    change: "+ new@acme.example as user on Finance".into(),
                    requested_by: "finance/team".into(),
                    fingerprint: DIGEST.into(),
                }],
                rosters: BTreeMap::from([("0A1B2C3D4E5F6071".to_string(), DIGEST.to_string())]),
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        plan.save(&path).unwrap();
        assert_eq!(SavedPlan::load(&path).unwrap(), plan);
        vec![
            std::fs::read(&path).unwrap(),
            serde_json::to_vec(&plan).unwrap(),
        ]
    })
}

/// Loads `bytes` as a saved plan: a plan of this version, or an error naming the file.
pub fn check_plan(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, bytes).unwrap();
    check_loaded(&path)
}

fn check_loaded(path: &Path) -> Result<(), TestCaseError> {
    match SavedPlan::load(path) {
        Ok(plan) => prop_assert_eq!(plan.version, SAVED_PLAN_VERSION),
        Err(error) => {
            let shown = error.to_string();
            prop_assert!(shown.contains(&path.display().to_string()), "{}", shown);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn saved_plan_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_plan(&bytes)?;
    }

    #[test]
    fn saved_plan_mutated_plans_never_panic((seed, changes) in case(plan_seeds().len(), 8)) {
        let seeds = plan_seeds();
        check_plan(&mutated(&seeds[seed], &changes, seeds))?;
    }
}

/// JSON's own hard cases: duplicate keys, numbers past every integer type, deep nesting,
/// a byte-order mark, NUL and lone surrogates.
#[test]
fn saved_plan_hard_json_cases_are_errors_naming_the_file() {
    let valid = String::from_utf8(plan_seeds()[1].clone()).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        valid
            .replacen("{\"version\":2,", "{\"version\":2,\"version\":2,", 1)
            .into_bytes(),
        valid
            .replacen("\"version\":2", "\"version\":99999999999999999999999", 1)
            .into_bytes(),
        valid
            .replacen("\"version\":2", "\"version\":1e400", 1)
            .into_bytes(),
        valid
            .replacen("\"version\":2", "\"version\":-1", 1)
            .into_bytes(),
        valid
            .replacen("\"version\":2", "\"version\":2.0", 1)
            .into_bytes(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        format!("\u{feff}{valid}").into_bytes(),
        valid
            .replacen("connector.yaml", "connector\\u0000.yaml", 1)
            .into_bytes(),
        valid.replacen("connector.yaml", "\\ud800", 1).into_bytes(),
        valid
            .replacen("finance/acme", "finance\u{0}acme", 1)
            .into_bytes(),
        vec![0xff; 64],
        Vec::new(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, bytes).unwrap();
        // Duplicate keys and unusual-but-valid text may load; each case must either be
        // this version's plan or an error naming the file.
        if let Err(error) = SavedPlan::load(&path) {
            assert!(error.to_string().contains("plan.json"), "case {i}: {error}");
        }
    }
}
