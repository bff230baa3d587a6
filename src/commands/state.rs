//! `state list|show|forget`: file mode's recorded state (the ledger: what the operator gave
//! and will take back), as `terraform state` shows and edits Terraform's. `forget` drops
//! one object's entries deliberately: the operator then never takes back what they
//! recorded. It is signed like every other write, refused without the key, asks on a
//! terminal, and leaves a line in the log and in the status directory's journal.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;

use crate::api::{ManagedMember, PolicyAccess};
use crate::files::StatusDir;
use crate::files::credentials::STATUS_KEY_SECRET;
use crate::files::status_dir::StatusDirError;
use crate::reconcile::ObjectKey;
use crate::sanitize::terminal;

use super::common::{LockArgs, OutputFormat, signed_status_dir, status_key_path};
use super::confirm::{Confirmation, Question, confirm, stdin_is_terminal};

/// Arguments of `state`.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum StateCommand {
    /// Every object with recorded state, and how many ledger entries it holds.
    List(ListArgs),
    /// One object's ledger entries: who, on which policy, what the operator set and what
    /// it takes back.
    Show(ShowArgs),
    /// Drop one object's ledger entries: the operator will never take back what they
    /// recorded. Signed, recorded in the log and in DIR/forgotten.log; asks on a terminal.
    Forget(ForgetArgs),
}

/// Where the recorded state is, and the key that verifies (and signs) it.
#[derive(Debug, Clone, clap::Args)]
pub struct StateDirArgs {
    /// The repository (directory of manifests) whose recorded state this is.
    #[arg(value_name = "DIR")]
    pub path: PathBuf,
    /// Where status files are [default: <repository>/.expensify-status].
    #[arg(long, value_name = "DIR")]
    pub status_dir: Option<PathBuf>,
    /// Secrets laid out as a mounted Secret volume: DIR/<secret name>/<key>.
    #[arg(long, value_name = "DIR", env = "EXPENSIFY_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// The Secret under --secrets-dir holding the status signing key (DIR/NAME/key).
    #[arg(long, value_name = "NAME", default_value = STATUS_KEY_SECRET)]
    pub status_key_secret: String,
    /// The file outside the repository where `apply` remembers the status index's
    /// generation (see `apply --status-anchor`): a rolled-back directory is then refused
    /// here too, and `forget` keeps it up to date. Needs the key.
    #[arg(long, value_name = "FILE", env = "EXPENSIFY_STATUS_ANCHOR")]
    pub status_anchor: Option<PathBuf>,
    #[command(flatten)]
    pub lock: LockArgs,
    /// `text` or `json`.
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub dir: StateDirArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The PolicyAccess, as NAMESPACE/NAME.
    #[arg(value_name = "OBJECT", value_parser = object_arg)]
    pub object: ObjectKey,
    #[command(flatten)]
    pub dir: StateDirArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ForgetArgs {
    /// The PolicyAccess, as NAMESPACE/NAME.
    #[arg(value_name = "OBJECT", value_parser = object_arg)]
    pub object: ObjectKey,
    #[command(flatten)]
    pub dir: StateDirArgs,
    /// Forget without asking.
    #[arg(long)]
    pub auto_approve: bool,
}

/// `NAMESPACE/NAME`, parsed by clap so a bad value is a usage error.
fn object_arg(text: &str) -> Result<ObjectKey, String> {
    let key = ObjectKey::parse(text)
        .ok_or_else(|| format!("{text:?} is not NAMESPACE/NAME, e.g. finance/finance"))?;
    crate::names::check_label(&key.namespace).map_err(|e| e.to_string())?;
    crate::names::check_subdomain(&key.name).map_err(|e| e.to_string())?;
    Ok(key)
}

/// The journal `state forget` appends to, in the status directory.
pub const FORGOTTEN_LOG: &str = "forgotten.log";

impl StateDirArgs {
    fn status_dir(&self) -> anyhow::Result<StatusDir> {
        let root = self
            .status_dir
            .clone()
            .unwrap_or_else(|| self.path.join(".expensify-status"));
        signed_status_dir(
            StatusDir::new(root),
            self.secrets_dir.as_deref(),
            &self.status_key_secret,
            false,
            self.status_anchor.as_deref(),
            &self.path,
        )
    }
}

pub async fn run(args: StateArgs) -> anyhow::Result<i32> {
    match args.command {
        StateCommand::List(args) => list(&args.dir).await,
        StateCommand::Show(args) => show(&args.dir, &args.object).await,
        StateCommand::Forget(args) => forget(&args).await,
    }
}

/// The recorded state of every PolicyAccess; files that fail verification are named.
async fn list(args: &StateDirArgs) -> anyhow::Result<i32> {
    let status_dir = args.status_dir()?;
    let _lock = status_dir.lock_shared(args.lock.lock_timeout).await?;
    let listing = status_dir.list::<PolicyAccess>()?;
    let unverified: Vec<String> = listing
        .unverified
        .iter()
        .map(|(key, e)| format!("{key}: {e}"))
        .collect();
    let objects: Vec<(ObjectKey, Vec<ManagedMember>)> = listing
        .objects
        .into_iter()
        .map(|(key, object)| (key, entries_of(&object)))
        .collect();
    match args.output {
        OutputFormat::Json => {
            let objects: Vec<_> = objects
                .iter()
                .map(|(key, entries)| serde_json::json!({"object": key.to_string(), "entries": entries}))
                .collect();
            outln!(
                "{:#}",
                serde_json::json!({"objects": objects, "unverified": unverified})
            );
        }
        OutputFormat::Text => out!("{}", list_text(status_dir.root(), &objects, &unverified)),
    }
    Ok(i32::from(!unverified.is_empty()))
}

/// One object's ledger entries.
async fn show(args: &StateDirArgs, object: &ObjectKey) -> anyhow::Result<i32> {
    let status_dir = args.status_dir()?;
    let _lock = status_dir.lock_shared(args.lock.lock_timeout).await?;
    let entries = recorded(&status_dir, object)?;
    match args.output {
        OutputFormat::Json => outln!(
            "{:#}",
            serde_json::json!({"object": object.to_string(), "entries": entries})
        ),
        OutputFormat::Text => out!("{}", entries_text(object, &entries)),
    }
    Ok(0)
}

/// What `state forget` asks.
const FORGET: Question = Question {
    ask: "Do you want to forget these entries? The operator will never take back what they recorded.",
    cancelled: "Forget cancelled: nothing was written.",
    unasked: "standard input is not a terminal: forgetting without asking (as --auto-approve)",
};

/// Drops `object`'s ledger entries: its status file is written again, signed, with none.
async fn forget(args: &ForgetArgs) -> anyhow::Result<i32> {
    let dir = &args.dir;
    let status_dir = signed_existing(dir)?;
    // Held until the command ends: one writer per status directory.
    let _lock = status_dir
        .lock("state forget", dir.lock.lock_timeout)
        .await?;
    let mut stored = match status_dir.read::<PolicyAccess>(&args.object) {
        Ok(Some(stored)) => stored,
        Ok(None) => return Err(anyhow::anyhow!(no_state(&status_dir, &args.object))),
        // The way out the unverified-file message names: what such a file says is not
        // believed, so nothing of it is kept; the file goes and its removal is marked.
        Err(StatusDirError::Unverified { path, reason }) => {
            return forget_unverified(args, &status_dir, &path, &reason.to_string());
        }
        Err(e) => return Err(e.into()),
    };
    let entries = entries_of(&stored);
    if entries.is_empty() {
        tracing::info!(object = %args.object, "no ledger entries to forget");
        if dir.output == OutputFormat::Json {
            outln!("{:#}", forgotten_json(&args.object, &[], false));
        } else {
            outln!(
                "{} holds no ledger entries: nothing to forget.",
                args.object
            );
        }
        return Ok(0);
    }
    let shown = entries_text(&args.object, &entries);
    if !approved(args, &shown)? {
        return Ok(1);
    }
    let now = Timestamp::now();
    // The journal first: what was forgotten is never lost with the entries.
    append_journal(status_dir.root(), &args.object, &entries, now)?;
    without_entries(&mut stored, entries.len(), now);
    status_dir.write(&args.object, &stored)?;
    status_dir.flush_index()?;
    log_forgotten(&args.object, &entries);
    match dir.output {
        OutputFormat::Json => outln!("{:#}", forgotten_json(&args.object, &entries, true)),
        OutputFormat::Text => outln!(
            "Forgot {} ledger entr{} of {}.",
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" },
            args.object
        ),
    }
    Ok(0)
}

/// The status directory `forget` writes: signed (it needs the key) and there.
fn signed_existing(dir: &StateDirArgs) -> anyhow::Result<StatusDir> {
    let status_dir = dir.status_dir()?;
    if !status_dir.verifies() {
        anyhow::bail!(
            "state forget signs the status file it writes and needs the key: no file {}",
            status_key_path(dir.secrets_dir.as_deref(), &dir.status_key_secret)
        );
    }
    if !status_dir.root().is_dir() {
        anyhow::bail!(
            "no recorded state: {} does not exist",
            status_dir.root().display()
        );
    }
    Ok(status_dir)
}

/// Whether to go ahead: `--auto-approve`, no terminal to ask on (said in the log), or
/// `yes` to the question after `shown`.
fn approved(args: &ForgetArgs, shown: &str) -> anyhow::Result<bool> {
    match Confirmation::decide(args.auto_approve, false, stdin_is_terminal()) {
        Confirmation::Approved => Ok(true),
        Confirmation::NotInteractive => {
            FORGET.not_asked();
            Ok(true)
        }
        Confirmation::Ask => Ok(confirm(
            &FORGET,
            shown,
            args.dir.output == OutputFormat::Json,
        )?),
    }
}

/// `stored` with no ledger entries, its message saying when and how many were dropped.
fn without_entries(stored: &mut PolicyAccess, dropped: usize, now: Timestamp) {
    let status = stored.status.get_or_insert_with(Default::default);
    status.managed_members.clear();
    status.message = Some(format!(
        "state forget at {now}: {dropped} ledger entr{} dropped; the operator will not take them back",
        if dropped == 1 { "y" } else { "ies" }
    ));
}

/// One warning per entry forgotten.
fn log_forgotten(object: &ObjectKey, entries: &[ManagedMember]) {
    for entry in entries {
        tracing::warn!(
            object = %object,
            email = %terminal(&entry.email),
            policy_id = %terminal(&entry.policy_id),
            owned = %terminal(&owned(entry)),
            "ledger entry forgotten: the operator will not take it back"
        );
    }
}

/// `state forget` of an object whose status file the key does not vouch for (edited,
/// replayed, or gone): nothing it says is believed, so there is nothing to show but the
/// file; it is removed, its removal marked in the index, and the journal says so. The
/// object then starts with no ledger: the people the operator gave access stay.
fn forget_unverified(
    args: &ForgetArgs,
    status_dir: &StatusDir,
    path: &str,
    reason: &str,
) -> anyhow::Result<i32> {
    let dir = &args.dir;
    let shown = format!(
        "{}: its status file {} is not vouched for ({}); it is removed and whatever it recorded is forgotten: the operator takes nobody back for it",
        args.object,
        terminal(path),
        terminal(reason)
    );
    if !approved(args, &shown)? {
        return Ok(1);
    }
    append_journal(status_dir.root(), &args.object, &[], Timestamp::now())?;
    status_dir.remove::<PolicyAccess>(&args.object)?;
    status_dir.flush_index()?;
    tracing::warn!(object = %args.object, file = %terminal(path), "unverified status file forgotten: the operator will take nothing back for this object");
    match dir.output {
        OutputFormat::Json => outln!("{:#}", forgotten_json(&args.object, &[], true)),
        OutputFormat::Text => outln!(
            "Forgot the unverified status file of {}: nothing it recorded will be taken back.",
            args.object
        ),
    }
    Ok(0)
}

/// What `state forget -o json` prints: the entries dropped, and whether the status file
/// was written.
fn forgotten_json(
    object: &ObjectKey,
    entries: &[ManagedMember],
    written: bool,
) -> serde_json::Value {
    serde_json::json!({"object": object.to_string(), "forgotten": entries, "written": written})
}

/// Appends one line (JSON) to the status directory's journal of forgotten entries, flushed
/// to disk before the status file loses them: what was forgotten is never lost with it.
fn append_journal(
    root: &Path,
    object: &ObjectKey,
    entries: &[ManagedMember],
    at: Timestamp,
) -> anyhow::Result<()> {
    let path = root.join(FORGOTTEN_LOG);
    let line = serde_json::json!({
        "at": at.to_string(),
        "object": object.to_string(),
        "kind": "PolicyAccess",
        "forgotten": entries,
    });
    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    journal
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| journal.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `object`'s entries as recorded; an object without a status file is an error naming
/// where it was looked for.
fn recorded(status_dir: &StatusDir, object: &ObjectKey) -> anyhow::Result<Vec<ManagedMember>> {
    let stored = status_dir
        .read::<PolicyAccess>(object)?
        .with_context(|| no_state(status_dir, object))?;
    Ok(entries_of(&stored))
}

fn no_state(status_dir: &StatusDir, object: &ObjectKey) -> String {
    format!(
        "no recorded state for PolicyAccess {object} in {}",
        status_dir.root().display()
    )
}

fn entries_of(object: &PolicyAccess) -> Vec<ManagedMember> {
    object
        .status
        .as_ref()
        .map(|s| s.managed_members.clone())
        .unwrap_or_default()
}

/// What the operator takes back for an entry when it is released.
fn owned(entry: &ManagedMember) -> String {
    let set = entry.role.as_deref().unwrap_or("?");
    let taken_back = if entry.added {
        format!("added as {set}: revoked on release")
    } else {
        match &entry.previous_role {
            Some(previous) => format!("set {set} (was {previous}): {previous} again on release"),
            None => format!("set {set}"),
        }
    };
    if entry.pending {
        format!("{taken_back} (pending: not yet seen in Expensify)")
    } else {
        taken_back
    }
}

fn list_text(
    root: &Path,
    objects: &[(ObjectKey, Vec<ManagedMember>)],
    unverified: &[String],
) -> String {
    let mut text = String::new();
    if objects.is_empty() && unverified.is_empty() {
        text.push_str(&format!("No recorded state in {}.\n", root.display()));
        return text;
    }
    let width = objects
        .iter()
        .map(|(key, _)| key.to_string().len())
        .chain(["OBJECT".len()])
        .max()
        .unwrap_or(0);
    text.push_str(&format!(
        "{:width$}  ENTRIES  PENDING  POLICIES\n",
        "OBJECT"
    ));
    for (key, entries) in objects {
        let mut policies: Vec<&str> = entries.iter().map(|e| e.policy_id.as_str()).collect();
        policies.sort_unstable();
        policies.dedup();
        let pending = entries.iter().filter(|e| e.pending).count();
        text.push_str(&format!(
            "{:width$}  {:>7}  {:>7}  {}\n",
            key.to_string(),
            entries.len(),
            pending,
            terminal(&policies.join(",")),
        ));
    }
    for line in unverified {
        text.push_str(&format!(
            "ignored (failed verification): {}\n",
            terminal(line)
        ));
    }
    text
}

fn entries_text(object: &ObjectKey, entries: &[ManagedMember]) -> String {
    let mut text = format!(
        "PolicyAccess {object}: {} ledger entr{}\n",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
    for entry in entries {
        text.push_str(&format!(
            "  {} on {} via {}: {}\n",
            terminal(&entry.email),
            terminal(&entry.policy_id),
            terminal(entry.connector.as_deref().unwrap_or("its connector")),
            terminal(&owned(entry)),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(email: &str, added: bool, previous: Option<&str>, pending: bool) -> ManagedMember {
        ManagedMember {
            policy_id: "F1E2D3C4B5A69788".into(),
            email: email.into(),
            added,
            previous_role: previous.map(str::to_string),
            role: Some("auditor".into()),
            pending,
            prior_role: None,
            connector: Some("finance/acme".into()),
        }
    }

    #[test]
    fn each_entry_says_what_release_takes_back() {
        let key = ObjectKey::new("finance", "finance");
        let shown = entries_text(
            &key,
            &[
                entry("a@acme.example", true, None, false),
                entry("b@acme.example", false, Some("user"), true),
            ],
        );
        assert_eq!(
            shown,
            "PolicyAccess finance/finance: 2 ledger entries\n  a@acme.example on F1E2D3C4B5A69788 via finance/acme: added as auditor: revoked on release\n  b@acme.example on F1E2D3C4B5A69788 via finance/acme: set auditor (was user): user again on release (pending: not yet seen in Expensify)\n"
        );
    }

    #[test]
    fn object_names_are_kubernetes_names() {
        assert!(object_arg("finance/finance").is_ok());
        assert!(object_arg("finance").is_err());
        assert!(object_arg("../etc/passwd").is_err());
        assert!(object_arg("Finance/x").is_err());
    }
}
