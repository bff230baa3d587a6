//! `crds/` holds exactly what the code generates. Regenerate with:
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
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{path} differs from the code; run `UPDATE_CRDS=1 cargo test --test crds` and commit"
        );
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
