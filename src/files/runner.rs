//! One pass of file mode: load manifests and statuses, sync every connector, and (unless
//! planning) write the status directory. Shared by `plan`, `apply`, `watch`, `review` and
//! `demo`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use tracing::info;

use super::credentials::CredentialSource;
use super::loader::{self, LoadManifestsError, LoadProblem, Manifests};
use super::notifications::{FileNotifications, SETTLE_WAIT};
use super::status_dir::{SOURCE, SPEC_DIGEST, StatusDir, StatusDirError};
use crate::reconcile::digest;
use kube::core::object::{HasSpec, HasStatus};

pub use super::report::{MissingLedger, PassReport, UnattachedAccess};
use super::saved_plan::SavedPlan;
use crate::api::{
    AccessRequest, AccessRequestStatus, ExpensifyConnectorStatus, PolicyAccess, PolicyAccessStatus,
};
use crate::expensify::{Credentials, ExpensifyClients};
use crate::reconcile::reviewed::ReviewedConnector;
use crate::reconcile::status::{NotSynced, unsynced_status};
use crate::reconcile::{
    AccessObject, ConnectorObject, ObjectKey, Scope, stranded_deletion, validate_access,
};
use crate::sync::{Store, SyncReport, SyncRequest, WriteAhead, WriteRefused, sync};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct FileMode {
    pub dir: PathBuf,
    pub status_dir: StatusDir,
    pub credentials: CredentialSource,
    pub clients: Arc<ExpensifyClients>,
    /// Replaces every connector's endpoint (the demo points them at its simulator).
    pub endpoint_override: Option<String>,
    /// Any manifest problem fails the whole pass.
    pub strict: bool,
    /// Where an apply pass's notifications go (none: nothing is sent).
    pub notifications: Option<Arc<FileNotifications>>,
}

/// What a pass does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Read and plan; write nothing (not even status).
    Plan,
    /// Read, plan, write to Expensify and save statuses.
    Apply,
}

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum FilePassError {
    #[error(transparent)]
    Load(#[from] LoadManifestsError),
    #[error(transparent)]
    StatusDir(#[from] StatusDirError),
    #[error("--strict: {} manifest problem(s):\n  - {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
    Strict(Vec<LoadProblem>),
}

/// Objects as loaded, with generation and last status attached from the status directory.
struct Prepared {
    manifests: Manifests,
    /// Where each loaded PolicyAccess is in `manifests.accesses` (found once per object,
    /// not by a scan per object: ten thousand objects would be a hundred million compares).
    loaded_at: HashMap<ObjectKey, usize>,
    connectors: Vec<ConnectorObject>,
    accesses: Vec<AccessObject>,
    sources: BTreeMap<ObjectKey, String>,
    missing_ledger: Option<MissingLedger>,
    /// Every manifest was read and no status file of an object without a manifest failed
    /// verification: removals are held only where broken objects say.
    inventory_complete: bool,
    /// Objects whose status file failed verification: planned without it, as broken
    /// objects, and their status file is never written over.
    unverified: Vec<ObjectKey>,
    /// The AccessRequests, with their saved statuses.
    requests: Vec<crate::reconcile::RequestObject>,
    /// Requests whose status file failed verification: never written over.
    unverified_requests: Vec<ObjectKey>,
}

/// The PolicyAccess objects of a pass with their statuses, and those whose status file
/// failed verification (with the problem each is).
#[derive(Default)]
struct AttachedAccesses {
    objects: Vec<AccessObject>,
    unverified: Vec<ObjectKey>,
    problems: Vec<LoadProblem>,
}

/// Objects with a status file and no manifest: deleted, kept until their deletion is
/// settled.
fn deleted_objects(
    loaded_at: &HashMap<ObjectKey, usize>,
    listing: super::status_dir::Listing<PolicyAccess>,
    sources: &mut BTreeMap<ObjectKey, String>,
) -> Vec<AccessObject> {
    let mut deleted = Vec::new();
    for (key, object) in listing.objects {
        if loaded_at.contains_key(&key) {
            continue;
        }
        let mut object = AccessObject::from_resource(&object);
        object.key = key.clone();
        object.deleting = true;
        sources.insert(key, "(deleted)".to_string());
        deleted.push(object);
    }
    deleted
}

fn attach<K>(
    status_dir: &StatusDir,
    key: &ObjectKey,
    object: &mut K,
    source: &str,
) -> Result<(), StatusDirError>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned + HasSpec + HasStatus,
    K::Spec: serde::Serialize,
{
    let previous: Option<K> = status_dir.read(key)?;
    attach_previous(previous, object, source);
    Ok(())
}

/// Generation and last status from `previous` (the status file as read), and the
/// annotations that tie the status to the spec and the manifest.
fn attach_previous<K>(previous: Option<K>, object: &mut K, source: &str)
where
    K: kube::Resource<DynamicType = ()> + HasSpec + HasStatus,
    K::Spec: serde::Serialize,
{
    let spec_digest = digest(object.spec());
    let (generation, status) = match previous {
        Some(mut previous) => {
            let meta = previous.meta();
            let old_generation = meta.generation.unwrap_or(0);
            let same =
                meta.annotations.as_ref().and_then(|a| a.get(SPEC_DIGEST)) == Some(&spec_digest);
            let generation = if same {
                old_generation.max(1)
            } else {
                old_generation + 1
            };
            (generation, previous.status_mut().take())
        }
        None => (1, None),
    };
    let meta = object.meta_mut();
    meta.generation = Some(generation);
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(SPEC_DIGEST.to_string(), spec_digest);
    annotations.insert(SOURCE.to_string(), source.to_string());
    *object.status_mut() = status;
}

/// [`attach`], with a status file that fails verification left off (the object starts
/// from no status) and returned as a problem.
fn attach_verified<K>(
    status_dir: &StatusDir,
    key: &ObjectKey,
    object: &mut K,
    source: &str,
    kind: &str,
) -> Result<Option<LoadProblem>, StatusDirError>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned + HasSpec + HasStatus,
    K::Spec: serde::Serialize,
{
    match attach(status_dir, key, object, source) {
        Ok(()) => Ok(None),
        Err(error @ StatusDirError::Unverified { .. }) => Ok(Some(
            super::status_problem::status_problem(key, kind, &error),
        )),
        Err(error) => Err(error),
    }
}

impl FileMode {
    /// Directories never read as manifests: the status directory.
    fn excluded(&self) -> Vec<PathBuf> {
        vec![self.status_dir.root().to_path_buf()]
    }

    fn prepare(&self) -> Result<Prepared, FilePassError> {
        let mut manifests = loader::load(&self.dir, &self.excluded())?;
        if self.strict && !manifests.complete() {
            return Err(FilePassError::Strict(manifests.problems.clone()));
        }
        let mut loaded_at: HashMap<ObjectKey, usize> = HashMap::new();
        for (i, access) in manifests.accesses.iter().enumerate() {
            loaded_at.entry(access.key.clone()).or_insert(i);
        }
        let mut sources = BTreeMap::new();
        // Status files the key does not vouch for, whose object's policy is unknown: each
        // a problem that holds every removal, as an unreadable manifest does.
        let mut unverified = Vec::new();
        let connectors = self.connectors(&manifests, &mut sources, &mut unverified)?;
        let attached = self.accesses(&manifests, &mut sources)?;
        let mut accesses = attached.objects;
        let listing = self.status_dir.list::<PolicyAccess>()?;
        if listing.objects.is_empty() && listing.unverified.is_empty() {
            unverified.extend(self.distrusted_index());
        }
        let missing_ledger = lost_ledger(&manifests, &listing, &self.status_dir);
        for (key, error) in &listing.unverified {
            if !loaded_at.contains_key(key) {
                unverified.push(super::status_problem::status_problem(
                    key,
                    "PolicyAccess",
                    error,
                ));
            }
        }
        // An object with a status file but no manifest was deleted, unless some manifest
        // or status file could not be read (it may be that one).
        if manifests.complete() && unverified.is_empty() && attached.problems.is_empty() {
            accesses.extend(deleted_objects(&loaded_at, listing, &mut sources));
        }
        let requests = super::requests::file_requests(
            &manifests,
            &self.status_dir,
            manifests.complete() && unverified.is_empty() && attached.problems.is_empty(),
        )?;
        unverified.extend(requests.problems);
        let inventory_complete = manifests.complete() && unverified.is_empty();
        manifests.problems.extend(unverified);
        manifests.problems.extend(attached.problems);
        Ok(Prepared {
            manifests,
            loaded_at,
            connectors,
            accesses,
            sources,
            missing_ledger,
            inventory_complete,
            unverified: attached.unverified,
            requests: requests.objects,
            unverified_requests: requests.unverified,
        })
    }

    /// The connectors as loaded, each with its last status when the key vouches for it
    /// (a connector's status holds no ledger: an ignored one is only reported).
    fn connectors(
        &self,
        manifests: &Manifests,
        sources: &mut BTreeMap<ObjectKey, String>,
        unverified: &mut Vec<LoadProblem>,
    ) -> Result<Vec<ConnectorObject>, FilePassError> {
        let mut connectors = Vec::new();
        for loaded in &manifests.connectors {
            let mut object = loaded.object.clone();
            let source = relative(&self.dir, &loaded.source.path);
            unverified.extend(attach_verified(
                &self.status_dir,
                &loaded.key,
                &mut object,
                &source,
                "ExpensifyConnector",
            )?);
            if let Some(endpoint) = &self.endpoint_override {
                object.spec.endpoint.clone_from(endpoint);
            }
            sources.insert(loaded.key.clone(), source);
            connectors.push(ConnectorObject::from_resource(&object));
        }
        Ok(connectors)
    }

    /// The PolicyAccess objects as loaded, each with its last status. One whose status
    /// file the key does not vouch for is planned without it, as a broken object (it
    /// holds the removals on its policy, or of the people it lists), so nothing it granted
    /// is taken back or handed over on a forged say, and nothing is written for it (its
    /// file stays for a person to restore).
    fn accesses(
        &self,
        manifests: &Manifests,
        sources: &mut BTreeMap<ObjectKey, String>,
    ) -> Result<AttachedAccesses, FilePassError> {
        let mut attached = AttachedAccesses::default();
        for loaded in &manifests.accesses {
            let mut object = loaded.object.clone();
            let source = relative(&self.dir, &loaded.source.path);
            sources.insert(loaded.key.clone(), source.clone());
            if let Some(problem) = attach_verified(
                &self.status_dir,
                &loaded.key,
                &mut object,
                &source,
                "PolicyAccess",
            )? {
                attached.problems.push(problem);
                object.status = None;
                attached.unverified.push(loaded.key.clone());
            }
            attached.objects.push(AccessObject::from_resource(&object));
        }
        Ok(attached)
    }

    /// An index that cannot be trusted with no file left to fail on (the directory
    /// deleted while its anchor remembers it): still no ledger to believe.
    fn distrusted_index(&self) -> Option<LoadProblem> {
        let why = self.status_dir.distrusted()?;
        let index = self
            .status_dir
            .root()
            .join(super::status_signing::INDEX_FILE);
        let reason = super::status_signing::Unverified::Index(why);
        let message = format!(
            "the recorded state cannot be trusted: {reason}. Removals are held and nothing is taken for deleted; restore the status directory, or take it as it is once with `apply --adopt-unsigned-status`"
        );
        tracing::error!(file = %index.display(), "{message}");
        Some(LoadProblem {
            source: super::loader::Source {
                path: index,
                document: 1,
            },
            object: None,
            message,
        })
    }

    /// `apply --require-status`: why the status directory cannot be the ledger of these
    /// manifests, if it cannot. It holds what Additive and Authoritative objects added;
    /// when it is missing or empty while such objects exist (an evicted CI cache, a fresh
    /// runner), an apply would take nobody back that they added before.
    pub fn missing_ledger(&self) -> Result<Option<String>, FilePassError> {
        let manifests = loader::load(&self.dir, &self.excluded())?;
        let listing = self.status_dir.list::<PolicyAccess>()?;
        Ok(lost_ledger(&manifests, &listing, &self.status_dir).map(|m| m.refusal()))
    }

    /// Runs one pass: `Run::Plan` reads and plans only, and writes no status.
    /// After the last pass of a command: waits for its notifications to be delivered (a
    /// bounded wait) and records them in the connectors' status files.
    pub async fn settle_notifications(&self) -> Result<(), FilePassError> {
        if let Some(notifications) = &self.notifications {
            notifications.settle(&self.status_dir, SETTLE_WAIT).await?;
        }
        Ok(())
    }

    pub async fn pass(&self, run: Run) -> Result<PassReport, FilePassError> {
        self.pass_until(run, None).await
    }

    /// Runs one pass that stops early when `stop` turns true: the Expensify call in flight
    /// finishes and its statuses are saved, no further write starts.
    pub async fn pass_until(
        &self,
        run: Run,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<PassReport, FilePassError> {
        self.pass_with(run, stop, None, Timestamp::now()).await
    }

    /// One pass as if the clock read `now`: `demo` shows a request's end without waiting
    /// for it.
    pub async fn pass_at(&self, run: Run, now: Timestamp) -> Result<PassReport, FilePassError> {
        self.pass_with(run, None, None, now).await
    }

    /// `apply --plan`: an apply pass in which each connector writes only when its plan now
    /// is exactly the reviewed one (checked again right before its write).
    pub async fn pass_reviewed(
        &self,
        reviewed: &SavedPlan,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<PassReport, FilePassError> {
        self.pass_with(Run::Apply, stop, Some(reviewed), Timestamp::now())
            .await
    }

    async fn pass_with(
        &self,
        run: Run,
        stop: Option<&watch::Receiver<bool>>,
        reviewed: Option<&SavedPlan>,
        now: Timestamp,
    ) -> Result<PassReport, FilePassError> {
        let dry_run = run == Run::Plan;
        let unreviewed = ReviewedConnector::default();
        let prepared = self.prepare()?;
        let complete = prepared.inventory_complete;
        let stopped = || stop.is_some_and(|s| *s.borrow());
        let mut syncs = Vec::new();
        for connector in &prepared.connectors {
            let store = FileStore {
                mode: self,
                prepared: &prepared,
                connector: connector.key.clone(),
                stop,
            };
            if stopped() {
                info!(connector = %connector.key, "stop requested: not synced");
                continue;
            }
            let request = SyncRequest {
                requests: crate::reconcile::Requests {
                    requests: &prepared.requests,
                    // Not counted: in file mode the merge is the approval.
                    decisions: &[],
                    approval: crate::reconcile::Approval::Merge,
                },
                connector,
                connectors: &prepared.connectors,
                accesses: &prepared.accesses,
                now,
                inventory_complete: complete,
                scope: Scope::Everything,
                unverified: &prepared.unverified,
                dry_run,
                write_ahead: None,
                reviewed: reviewed
                    .map(|plan| plan.connector(&connector.key).unwrap_or(&unreviewed)),
            };
            let mut report = sync(request, &self.clients, &store).await;
            if !dry_run && let Some(notifications) = &self.notifications {
                notifications.hand_over(connector, &mut report);
            }
            // Saved at once: a stop after this connector loses nothing it wrote.
            if !dry_run {
                self.write_sync(&prepared, &report)?;
                self.status_dir.flush_index()?;
            }
            syncs.push(report);
        }
        let (unattached, let_go) = self.unattached(&prepared, now);
        if !dry_run {
            for u in &unattached {
                self.write_access_status(&prepared, &u.key, &u.status)?;
            }
            for key in &let_go {
                info!(object = %key, "deleted PolicyAccess of a missing connector held nothing; its status file is removed");
                self.status_dir.remove::<PolicyAccess>(key)?;
            }
            self.status_dir.adopt_unsigned()?;
            self.status_dir.flush_index()?;
        }
        let requests =
            super::requests::as_shown(&prepared.requests, &prepared.accesses, &prepared.connectors);
        // Moved, not copied: the manifests of a million memberships are hundreds of MiB.
        Ok(PassReport {
            manifests: prepared.manifests,
            syncs,
            unattached,
            sources: prepared.sources,
            stopped: stopped(),
            missing_ledger: prepared.missing_ledger,
            requests,
        })
    }

    /// The connector's status file: its manifest as loaded, with `status` set.
    fn write_connector_status(
        &self,
        prepared: &Prepared,
        key: &ObjectKey,
        status: &ExpensifyConnectorStatus,
    ) -> Result<(), StatusDirError> {
        let Some(loaded) = prepared.manifests.connectors.iter().find(|c| &c.key == key) else {
            return Ok(());
        };
        let mut object = loaded.object.clone();
        // An ignored status (reported when the pass began) is written over: a connector's
        // status holds no ledger.
        let previous = match self.status_dir.read(key) {
            Err(StatusDirError::Unverified { .. }) => None,
            read => read?,
        };
        attach_previous(previous, &mut object, &prepared.sources[key]);
        object.status = Some(status.clone());
        self.status_dir.write(key, &object)
    }

    /// PolicyAccess objects no connector took: their connector is missing or refuses them.
    /// A deleted one that still holds what it gave is among them (its deletion waits);
    /// other deleted ones are in `let_go`.
    fn unattached(
        &self,
        prepared: &Prepared,
        now: Timestamp,
    ) -> (Vec<UnattachedAccess>, Vec<ObjectKey>) {
        let mut unattached = Vec::new();
        let mut let_go = Vec::new();
        let orphaned = prepared.accesses.iter().filter(|a| {
            !prepared.connectors.iter().any(|c| {
                c.key == a.connector_key()
                    && crate::reconcile::connector_allows(c, &a.key.namespace)
            })
        });
        for access in orphaned {
            let problems = if access.deleting {
                let hint = format!(
                    "delete its status file under {} to leave them as they are",
                    self.status_dir.root().display()
                );
                if let Some(problem) = stranded_deletion(access, &hint) {
                    vec![problem]
                } else {
                    let_go.push(access.key.clone());
                    continue;
                }
            } else {
                validate_access(access, &prepared.connectors)
            };
            unattached.push(UnattachedAccess {
                key: access.key.clone(),
                status: unsynced_status(access, NotSynced::Invalid(problems), now),
            });
        }
        (unattached, let_go)
    }

    /// The connector's status, its objects' statuses, and the status files of deleted
    /// objects whose deletion finished.
    fn write_sync(&self, prepared: &Prepared, sync: &SyncReport) -> Result<(), StatusDirError> {
        self.write_connector_status(prepared, &sync.connector, &sync.connector_status)?;
        for (key, status) in sync.statuses_in_save_order() {
            self.write_access_status(prepared, key, status)?;
        }
        for key in &sync.finished_deletions {
            info!(object = %key, "deleted PolicyAccess finished; its status file is removed");
            self.status_dir.remove::<PolicyAccess>(key)?;
        }
        for (key, status) in &sync.request_statuses {
            self.write_request_status(prepared, key, status)?;
        }
        for key in &sync.finished_request_deletions {
            info!(request = %key, "AccessRequest ended and released; its status file is removed");
            self.status_dir.remove::<AccessRequest>(key)?;
        }
        Ok(())
    }

    /// One AccessRequest status file: the manifest as loaded, or for a request whose
    /// manifest is gone its last saved one, with `status` set. It is what carries the
    /// request's clock and ledger entries from one run to the next.
    fn write_request_status(
        &self,
        prepared: &Prepared,
        key: &ObjectKey,
        status: &AccessRequestStatus,
    ) -> Result<(), StatusDirError> {
        if prepared.unverified_requests.contains(key) {
            return Ok(());
        }
        let loaded = prepared.manifests.requests.iter().find(|r| &r.key == key);
        let mut object = match loaded {
            Some(loaded) => loaded.object.clone(),
            None => match self.status_dir.read::<AccessRequest>(key)? {
                Some(object) => object,
                None => return Ok(()),
            },
        };
        object.status = Some(status.clone());
        self.status_dir.write(key, &object)
    }

    /// One PolicyAccess status file: the manifest as loaded, or for a deleted object its
    /// last saved manifest, with `status` set.
    fn write_access_status(
        &self,
        prepared: &Prepared,
        key: &ObjectKey,
        status: &PolicyAccessStatus,
    ) -> Result<(), StatusDirError> {
        // A status file the key does not vouch for stays as it is, for a person to
        // restore (or forget): the sync never writes over it.
        if prepared.unverified.contains(key) {
            return Ok(());
        }
        let loaded = prepared
            .loaded_at
            .get(key)
            .map(|&i| &prepared.manifests.accesses[i]);
        let mut object = match loaded {
            Some(loaded) => {
                let mut object = loaded.object.clone();
                attach(&self.status_dir, key, &mut object, &prepared.sources[key])?;
                object
            }
            // Deleted objects keep their last manifest until their deletion finishes.
            None => match self.status_dir.read::<PolicyAccess>(key)? {
                Some(object) => object,
                None => return Ok(()),
            },
        };
        object.status = Some(status.clone());
        self.status_dir.write(key, &object)
    }
}

/// File mode's store: credentials from the secrets directory (or the fixed ones), and
/// status files. The write-ahead writes the status files of the objects whose ledger
/// changes before Expensify is written, and refuses once a stop was asked for.
struct FileStore<'a> {
    mode: &'a FileMode,
    prepared: &'a Prepared,
    connector: ObjectKey,
    stop: Option<&'a watch::Receiver<bool>>,
}

impl std::fmt::Debug for FileStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("status_dir", &self.mode.status_dir.root())
            .finish()
    }
}

impl WriteAhead for FileStore<'_> {
    fn save<'s>(
        &'s self,
        statuses: &'s BTreeMap<ObjectKey, PolicyAccessStatus>,
        requests: &'s BTreeMap<ObjectKey, AccessRequestStatus>,
        connector: Option<&'s ExpensifyConnectorStatus>,
    ) -> BoxFuture<'s, Result<(), WriteRefused>> {
        Box::pin(std::future::ready(
            self.save_now(statuses, requests, connector),
        ))
    }
}

impl Store for FileStore<'_> {
    fn credentials<'s>(
        &'s self,
        connector: &'s ConnectorObject,
    ) -> BoxFuture<'s, Result<Credentials, String>> {
        let found = self
            .mode
            .credentials
            .find(&connector.spec.credentials_secret_ref)
            .map_err(|e| e.to_string());
        Box::pin(std::future::ready(found))
    }

    fn save_connector_status<'s>(
        &'s self,
        connector: &'s ConnectorObject,
        status: &'s ExpensifyConnectorStatus,
    ) -> BoxFuture<'s, Result<(), String>> {
        let saved = self
            .mode
            .write_connector_status(self.prepared, &connector.key, status)
            .map_err(|e| e.to_string());
        Box::pin(std::future::ready(saved))
    }
}

impl FileStore<'_> {
    fn save_now(
        &self,
        statuses: &BTreeMap<ObjectKey, PolicyAccessStatus>,
        requests: &BTreeMap<ObjectKey, AccessRequestStatus>,
        connector: Option<&ExpensifyConnectorStatus>,
    ) -> Result<(), WriteRefused> {
        if self.stop.is_some_and(|s| *s.borrow()) {
            return Err(WriteRefused("a stop was requested".to_string()));
        }
        let failed =
            |e: StatusDirError| WriteRefused(format!("saving the ledger first failed: {e}"));
        for (key, status) in statuses {
            self.mode
                .write_access_status(self.prepared, key, status)
                .map_err(failed)?;
        }
        for (key, status) in requests {
            self.mode
                .write_request_status(self.prepared, key, status)
                .map_err(failed)?;
        }
        if let Some(status) = connector {
            let key = &self.connector;
            self.mode
                .write_connector_status(self.prepared, key, status)
                .map_err(failed)?;
        }
        Ok(())
    }
}

/// The objects of `manifests` that keep a ledger, when the listing of the status directory
/// holds no PolicyAccess status (not even one that failed verification).
fn lost_ledger<T>(
    manifests: &Manifests,
    listing: &super::status_dir::Listing<T>,
    status_dir: &StatusDir,
) -> Option<MissingLedger> {
    let objects: Vec<ObjectKey> = manifests
        .accesses
        .iter()
        .filter(|a| a.object.spec.mode != crate::api::AccessMode::ObserveOnly)
        .map(|a| a.key.clone())
        .collect();
    if objects.is_empty() || !listing.objects.is_empty() || !listing.unverified.is_empty() {
        return None;
    }
    Some(MissingLedger {
        status_dir: status_dir.root().display().to_string(),
        objects,
    })
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}
