//! Objects defined more than once: none of the copies is used.

use std::collections::BTreeMap;

use super::manifests::{LoadProblem, Loaded, Manifests, Source};
use crate::reconcile::ObjectKey;

pub(super) fn reject_duplicates(manifests: &mut Manifests) {
    pub(super) fn duplicates<T>(
        items: &mut Vec<Loaded<T>>,
        kind: &str,
        problems: &mut Vec<LoadProblem>,
    ) {
        let mut seen: BTreeMap<ObjectKey, Vec<Source>> = BTreeMap::new();
        for item in items.iter() {
            seen.entry(item.key.clone())
                .or_default()
                .push(item.source.clone());
        }
        for (key, sources) in seen.iter().filter(|(_, s)| s.len() > 1) {
            let places = sources
                .iter()
                .map(Source::to_string)
                .collect::<Vec<_>>()
                .join(" and ");
            for source in sources {
                problems.push(LoadProblem {
                    source: source.clone(),
                    object: Some(format!("{kind} {key}")),
                    message: format!(
                        "defined more than once ({places}); none of the copies is used"
                    ),
                });
            }
        }
        items.retain(|item| seen[&item.key].len() == 1);
    }
    duplicates(
        &mut manifests.connectors,
        "ExpensifyConnector",
        &mut manifests.problems,
    );
    duplicates(
        &mut manifests.accesses,
        "PolicyAccess",
        &mut manifests.problems,
    );
    duplicates(
        &mut manifests.requests,
        "AccessRequest",
        &mut manifests.problems,
    );
    duplicates(
        &mut manifests.decisions,
        "AccessDecision",
        &mut manifests.problems,
    );
}
