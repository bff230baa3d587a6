use std::time::{Duration, Instant};

use super::*;
use crate::api::{
    ConnectorRef, PolicyAccess, PolicyAccessSpec, PolicyAccessStatus, PolicySelector,
};
use crate::reconcile::digest;

fn team() -> PolicyAccess {
    let mut access = PolicyAccess::new(
        "team",
        PolicyAccessSpec {
            requests: None,
            connector_ref: ConnectorRef {
                name: "acme".into(),
                namespace: None,
            },
            policy: PolicySelector {
                id: Some("P1".into()),
                name: None,
            },
            mode: Default::default(),
            deletion_policy: Default::default(),
            allow_from: Vec::new(),
            suspend: false,
            members: vec![],
        },
    );
    access.metadata.namespace = Some("finance".into());
    access
}

#[test]
fn round_trips_and_lists_objects() {
    let dir = tempfile::tempdir().unwrap();
    let status_dir = StatusDir::new(dir.path().join("status"));
    let mut access = team();
    access.status = Some(PolicyAccessStatus {
        managed_members: vec![crate::api::ManagedMember {
            policy_id: "P1".into(),
            email: "a@acme.example".into(),
            added: true,
            previous_role: None,
            role: Some("user".into()),
            pending: true,
            prior_role: None,
            connector: None,
        }],
        ..Default::default()
    });
    let key = ObjectKey::new("finance", "team");
    status_dir.write(&key, &access).unwrap();
    let read: PolicyAccess = status_dir.read(&key).unwrap().unwrap();
    assert_eq!(
        read.status.unwrap().managed_members,
        access.status.unwrap().managed_members
    );
    assert_eq!(status_dir.list::<PolicyAccess>().unwrap().objects.len(), 1);
    status_dir.remove::<PolicyAccess>(&key).unwrap();
    assert!(status_dir.read::<PolicyAccess>(&key).unwrap().is_none());
}

#[tokio::test]
async fn a_second_holder_waits_then_fails_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let status_dir = StatusDir::new(dir.path().join("status"));
    let first = status_dir.lock("watch", Duration::ZERO).await.unwrap();
    let started = Instant::now();
    let error = status_dir
        .lock("apply", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    let message = error.to_string();
    assert!(
        message.contains("`watch` (pid ") && message.contains(&std::process::id().to_string()),
        "{message}"
    );
    drop(first);
    let second = status_dir.lock("apply", Duration::ZERO).await.unwrap();
    drop(second);
}

#[tokio::test]
async fn a_writer_that_wrote_nothing_leaves_no_directory_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("status");
    let status_dir = StatusDir::new(&root);
    drop(status_dir.lock("apply", Duration::ZERO).await.unwrap());
    assert!(!root.exists(), "created and left empty: removed");

    // A directory that was there stays, and so does one written into.
    std::fs::create_dir(&root).unwrap();
    drop(status_dir.lock("apply", Duration::ZERO).await.unwrap());
    assert!(root.join(LOCK_FILE).exists());
    std::fs::remove_dir_all(&root).unwrap();
    let lock = status_dir.lock("apply", Duration::ZERO).await.unwrap();
    std::fs::write(root.join("kept"), "").unwrap();
    drop(lock);
    assert!(root.join("kept").exists());
}

#[tokio::test]
async fn a_waiter_locks_the_directory_made_again_after_the_holder_removed_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("status");
    let status_dir = StatusDir::new(&root);
    let first = status_dir.lock("apply", Duration::ZERO).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(first);
    });
    let second = status_dir
        .lock("watch", Duration::from_secs(5))
        .await
        .unwrap();
    release.await.unwrap();
    // Its lock is on the lock file that is there, so a third process waits for it.
    let holder = std::fs::read_to_string(root.join(LOCK_FILE)).unwrap();
    assert!(holder.starts_with("`watch` (pid "), "{holder}");
    assert!(status_dir.lock("apply", Duration::ZERO).await.is_err());
    drop(second);
}

#[tokio::test]
async fn no_wait_is_said_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let status_dir = StatusDir::new(dir.path());
    let _first = status_dir.lock("watch", Duration::ZERO).await.unwrap();
    let message = status_dir
        .lock("apply", Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("--lock-timeout 0: did not wait") && !message.contains("0ns"),
        "{message}"
    );
}

#[tokio::test]
async fn a_waiter_gets_the_lock_once_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let status_dir = StatusDir::new(dir.path());
    let first = status_dir.lock("apply", Duration::ZERO).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(first);
    });
    let _second = status_dir
        .lock("watch", Duration::from_secs(5))
        .await
        .unwrap();
    release.await.unwrap();
    let holder = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    assert!(holder.starts_with("`watch` (pid "), "{holder}");
}

#[tokio::test]
async fn readers_share_the_lock_but_not_with_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let missing = StatusDir::new(dir.path().join("status"));
    assert!(missing.lock_shared(Duration::ZERO).await.unwrap().is_none());
    assert!(
        !dir.path().join("status").exists(),
        "a reader creates nothing"
    );

    let status_dir = StatusDir::new(dir.path());
    let first = status_dir.lock_shared(Duration::ZERO).await.unwrap();
    let second = status_dir.lock_shared(Duration::ZERO).await.unwrap();
    assert!(first.is_some() && second.is_some());
    let writer = status_dir.lock("apply", Duration::from_millis(150)).await;
    assert!(writer.unwrap_err().to_string().contains("a `plan`"));
    drop((first, second));

    let writer = status_dir.lock("apply", Duration::ZERO).await.unwrap();
    let reader = status_dir.lock_shared(Duration::from_millis(150)).await;
    assert!(reader.unwrap_err().to_string().contains("`apply` (pid "));
    drop(writer);
    let holder = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    assert_eq!(holder, "", "the name goes with the lock");
}

#[test]
fn writes_leave_no_temporary_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let status_dir = StatusDir::new(dir.path());
    let access = team();
    let key = ObjectKey::new("finance", "team");
    status_dir.write(&key, &access).unwrap();
    status_dir.write(&key, &access).unwrap();
    let entries: Vec<String> = std::fs::read_dir(dir.path().join("policyaccess/finance"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(entries, vec!["team.yaml"]);
}

#[test]
fn digest_is_stable_and_sensitive() {
    assert_eq!(digest(&"a"), digest(&"a"));
    assert_ne!(digest(&"a"), digest(&"b"));
}

#[test]
fn keys_that_would_leave_the_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let status_dir = StatusDir::new(dir.path().join("status"));
    for key in [
        ObjectKey::new("finance", "../../x"),
        ObjectKey::new("..", "x"),
        ObjectKey::new("finance", "a/b"),
    ] {
        let err = status_dir.read::<PolicyAccess>(&key).unwrap_err();
        assert!(matches!(err, StatusDirError::BadName { .. }), "{err}");
        assert!(status_dir.remove::<PolicyAccess>(&key).is_err());
    }
}

/// The status directory at `root` as a run signing with the test key opens it.
fn signed_at(root: &std::path::Path) -> StatusDir {
    StatusDir::signed(
        root,
        crate::files::status_signing::StatusKey::new(&[7u8; 32]).unwrap(),
        false,
    )
}

/// A crash right after the first signed file of a fresh directory (before the pass writes
/// the index) must leave a directory the next run trusts.
#[test]
fn the_first_signed_file_finds_an_index_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("status");
    let signed = || signed_at(&root);
    let key = ObjectKey::new("finance", "team");
    // No `flush_index`: the process dies after this write.
    signed().write(&key, &team()).unwrap();
    assert!(root.join(INDEX_FILE).exists());
    let next_run = signed();
    assert_eq!(next_run.distrusted(), None);
    assert!(next_run.read::<PolicyAccess>(&key).unwrap().is_some());
}

/// A crash during a removal, before or after the file goes, must leave a directory the
/// next run trusts, with the object's status gone; an older file put back stays refused.
#[test]
fn a_removal_cut_short_leaves_the_status_gone_not_held() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("status");
    let signed = || signed_at(&root);
    let key = ObjectKey::new("finance", "team");
    let path = root.join("policyaccess/finance/team.yaml");
    let first = signed();
    first.write(&key, &team()).unwrap();
    first.flush_index().unwrap();
    let older = std::fs::read_to_string(&path).unwrap();
    let second = signed();
    second.write(&key, &team()).unwrap();
    second.flush_index().unwrap();
    let last = std::fs::read_to_string(&path).unwrap();

    // No `flush_index` after the removal: the process dies right after it.
    signed().remove::<PolicyAccess>(&key).unwrap();
    let after_removal = signed().list::<PolicyAccess>().unwrap();
    assert!(after_removal.objects.is_empty() && after_removal.unverified.is_empty());

    // Dead between recording the removal and deleting the file: the file is still there.
    std::fs::write(&path, &last).unwrap();
    let next_run = signed();
    assert!(next_run.read::<PolicyAccess>(&key).unwrap().is_none());
    assert!(
        next_run
            .list::<PolicyAccess>()
            .unwrap()
            .unverified
            .is_empty()
    );

    std::fs::write(&path, &older).unwrap();
    assert!(matches!(
        signed().read::<PolicyAccess>(&key),
        Err(StatusDirError::Unverified { .. })
    ));
}
