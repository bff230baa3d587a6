//! (b) The status directory: a signed directory the operator wrote (PolicyAccess and
//! AccessRequest statuses with ledger entries, and the signed index), one of its files
//! mutated or replaced by arbitrary bytes, read back with the key (`apply`) and without
//! it (`plan` with no key). Never a panic; every error names its file; and with the key,
//! an object is taken only as it was written: an edited file or index is never believed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use expensify_operator::api::{AccessRequest, PolicyAccess};
use expensify_operator::files::StatusDir;
use expensify_operator::files::loader;
use expensify_operator::files::status_dir::Listing;
use expensify_operator::files::status_signing::StatusKey;
use expensify_operator::reconcile::ObjectKey;
use kube::Resource;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::mutate::{case, config, mutated};

fn key() -> StatusKey {
    StatusKey::new(&[7u8; 48]).unwrap()
}

/// A directory as the operator left it: every file (relative path, bytes), and what
/// each kind reads back as.
pub struct Pristine {
    pub files: Vec<(PathBuf, Vec<u8>)>,
    accesses: Vec<(ObjectKey, serde_json::Value)>,
    requests: Vec<(ObjectKey, serde_json::Value)>,
}

/// `object` with `status` put in, through JSON (the status types have no builder).
fn with_status<K: Serialize + DeserializeOwned>(object: &K, status: serde_json::Value) -> K {
    let mut value = serde_json::to_value(object).unwrap();
    value["status"] = status;
    serde_json::from_value(value).unwrap()
}

fn entry(policy: &str, email: &str) -> serde_json::Value {
    json!({"policyID": policy, "email": email, "added": true, "role": "user", "connector": "finance/acme"})
}

/// Every file under `root`, relative, with its bytes.
fn snapshot(root: &Path, dir: &Path, into: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            snapshot(root, &path, into);
        } else if !path.ends_with(expensify_operator::files::status_dir::LOCK_FILE) {
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            into.push((relative, std::fs::read(&path).unwrap()));
        }
    }
}

fn values<K: Serialize>(listing: &Listing<K>) -> Vec<(ObjectKey, serde_json::Value)> {
    listing
        .objects
        .iter()
        .map(|(key, object)| (key.clone(), serde_json::to_value(object).unwrap()))
        .collect()
}

pub fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let manifests = loader::load(&examples, &[]).unwrap();
        assert!(manifests.complete(), "{:?}", manifests.problems);
        let dir = tempfile::tempdir().unwrap();
        let status = StatusDir::signed(dir.path(), key(), false);
        for (i, access) in manifests.accesses.iter().enumerate() {
            let managed: Vec<_> = (0..=i)
                .map(|n| entry("C0FFEE0000000001", &format!("p{n}@acme.example")))
                .collect();
            let object = with_status(
                &access.object,
                json!({"phase": "Synced", "managedMembers": managed, "desiredMembers": 3}),
            );
            status.write(&access.key, &object).unwrap();
        }
        let request: AccessRequest = serde_saphyr::from_str(super::loader::REQUEST).unwrap();
        let request = with_status(
            &request,
            json!({"phase": "Active", "managedMembers": [entry("C0FFEE0000000001", "henry@acme.example")]}),
        );
        status.write(&ObjectKey::new("finance", "r1"), &request).unwrap();
        status.flush_index().unwrap();
        let mut files = Vec::new();
        snapshot(dir.path(), dir.path(), &mut files);
        files.sort();
        let fresh = StatusDir::signed(dir.path(), key(), false);
        let accesses = values(&fresh.list::<PolicyAccess>().unwrap());
        let requests = values(&fresh.list::<AccessRequest>().unwrap());
        assert_eq!(accesses.len(), manifests.accesses.len());
        assert_eq!(requests.len(), 1);
        Pristine {
            files,
            accesses,
            requests,
        }
    })
}

/// The pristine directory written out with file `target` replaced by `bytes`.
fn materialise(target: usize, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, (relative, original)) in pristine().files.iter().enumerate() {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, if i == target { bytes } else { original }).unwrap();
    }
    dir
}

/// Reads kind `K` with the key: whatever is taken is exactly what was written, and
/// every error names a file of the directory.
fn check_signed<K>(
    root: &Path,
    written: &[(ObjectKey, serde_json::Value)],
) -> Result<(), TestCaseError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Serialize,
{
    let shown = root.display().to_string();
    let status = StatusDir::signed(root, key(), false);
    let _ = status.distrusted();
    match status.list::<K>() {
        Ok(listing) => {
            for (key, object) in values(&listing) {
                let original = written.iter().find(|(k, _)| *k == key);
                prop_assert!(
                    original.is_some_and(|(_, o)| *o == object),
                    "{} was taken but is not what the operator wrote",
                    key
                );
            }
            for (_, error) in &listing.unverified {
                prop_assert!(error.to_string().contains(&shown), "{}", error);
            }
        }
        Err(error) => prop_assert!(error.to_string().contains(&shown), "{}", error),
    }
    Ok(())
}

/// Reads kind `K` without a key (`plan` without it): a value or an error naming a file.
fn check_unsigned<K>(root: &Path) -> Result<(), TestCaseError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let shown = root.display().to_string();
    if let Err(error) = StatusDir::new(root).list::<K>() {
        prop_assert!(error.to_string().contains(&shown), "{}", error);
    }
    Ok(())
}

fn check_all(root: &Path) -> Result<(), TestCaseError> {
    let pristine = pristine();
    check_signed::<PolicyAccess>(root, &pristine.accesses)?;
    check_signed::<AccessRequest>(root, &pristine.requests)?;
    check_unsigned::<PolicyAccess>(root)?;
    check_unsigned::<AccessRequest>(root)
}

fn file_count() -> usize {
    pristine().files.len()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn status_dir_mutated_files_are_never_believed((target, changes) in case(file_count(), 6)) {
        let seeds: Vec<Vec<u8>> = pristine().files.iter().map(|(_, b)| b.clone()).collect();
        let bytes = mutated(&seeds[target], &changes, &seeds);
        let dir = materialise(target, &bytes);
        check_all(dir.path())?;
    }

    #[test]
    fn status_dir_arbitrary_bytes_never_panic(
        target in 0..file_count(),
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let dir = materialise(target, &bytes);
        check_all(dir.path())?;
    }
}

#[test]
fn status_dir_pristine_directory_is_signed_and_indexed() {
    let names: Vec<String> = pristine()
        .files
        .iter()
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == ".signatures"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("accessrequest/")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .filter(|n| n.starts_with("policyaccess/"))
            .count()
            >= 4,
        "{names:?}"
    );
}
