//! `crds/` and the chart's `crds/` hold exactly what the code generates. Regenerate with:
//! `UPDATE_CRDS=1 cargo test --test crds`.

use expensify_operator::commands::crds::crd_files;

#[test]
fn committed_crds_match_the_code() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    for (name, generated) in crd_files().unwrap() {
        let path = format!("{dir}/{name}");
        if std::env::var_os("UPDATE_CRDS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let chart_copy = format!(
            "{}/charts/expensify-operator/crds/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        if std::env::var_os("UPDATE_CRDS").is_some() {
            std::fs::write(&chart_copy, &generated).unwrap();
        }
        for copy in [&path, &chart_copy] {
            let committed = std::fs::read_to_string(copy).unwrap_or_default();
            assert!(
                committed == generated,
                "{copy} differs from the code; run `UPDATE_CRDS=1 cargo test --test crds` and commit"
            );
        }
    }
}

#[test]
fn crds_have_no_unsigned_formats_and_wait_friendly_columns() {
    for (_, text) in crd_files().unwrap() {
        assert!(
            !text.contains("format: uint"),
            "unsigned integer formats upset the API server"
        );
        assert!(
            text.contains("subresources:") && text.contains("status: {}"),
            "status subresource"
        );
    }
    let (_, access) = &crd_files().unwrap()[1];
    assert!(
        access.contains(".status.conditions[?(@.type==\"Ready\")].status"),
        "Ready column"
    );
}
