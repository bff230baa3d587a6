//! Arguments several commands share, and how they become settings.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::parse_duration;
use crate::expensify::{
    AllowedEndpoints, ClientSettings, DEFAULT_ENDPOINT, ExpensifyClients, Pacing, PacingWindow,
    RetryPolicy,
};
use crate::files::credentials::{STATUS_KEY_FILE, STATUS_KEY_SECRET, find_status_key};
use crate::files::notifications::FileNotifications;
use crate::files::render::Style;
use crate::files::status_dir::StatusDirLock;
use crate::files::{CredentialSource, FileMode, PassReport, Selection, StatusDir, Target};
use crate::notify::{
    AllowedWebhooks, DEFAULT_ALLOWED_WEBHOOKS, Notifier, NotifierSettings, NotifyCounters,
};

/// How the Expensify client behaves.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Pacing windows per credential, as REQUESTS/PERIOD pairs (Expensify publishes 5/10s,20/60s).
    #[arg(long, value_name = "WINDOWS", default_value = "5/10s,20/60s", value_parser = pacing_arg)]
    pub pacing: Pacing,
    /// Policies per roster read.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub roster_chunk_size: usize,
    /// Records per employee-updater call.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub update_batch_size: usize,
    /// Per-request timeout.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_arg)]
    pub request_timeout: Duration,
    /// Attempts per request, the first included (transient errors only).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_attempts: u32,
    /// URL prefixes credentials may be sent to, comma-separated (scheme, host, port and
    /// whole path segments must match). A connector aimed anywhere else is an error and
    /// its Secret is never read.
    #[arg(
        long,
        value_name = "URLS",
        env = "EXPENSIFY_ALLOWED_ENDPOINTS",
        default_value = DEFAULT_ENDPOINT
    )]
    pub allowed_endpoints: String,
    /// Largest response body accepted from Expensify, in bytes; a longer answer fails
    /// the call.
    #[arg(long, value_name = "BYTES", default_value_t = crate::expensify::DEFAULT_MAX_BODY_BYTES)]
    pub max_response_bytes: usize,
}

/// Where notifications may go (`apply`, `watch`, `controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct NotifyArgs {
    /// URL prefixes notification webhooks may be posted to, comma-separated (scheme, host,
    /// port and whole path segments must match; https only, except on loopback). A
    /// connector whose webhook URL is elsewhere gets no notification, and its URL is
    /// never contacted.
    #[arg(
        long,
        value_name = "URLS",
        env = "EXPENSIFY_ALLOWED_WEBHOOKS",
        default_value = DEFAULT_ALLOWED_WEBHOOKS
    )]
    pub allowed_webhooks: String,
}

impl NotifyArgs {
    /// The allowlist, or why the flag is unusable.
    pub fn allowed(&self) -> anyhow::Result<AllowedWebhooks> {
        AllowedWebhooks::parse(&self.allowed_webhooks)
            .map_err(|e| anyhow::anyhow!("--allowed-webhooks: {e}"))
    }

    /// Starts the sender (on the current runtime) with the default timeout and retries.
    pub fn notifier(&self, counters: NotifyCounters) -> anyhow::Result<Notifier> {
        Ok(Notifier::start(
            NotifierSettings::new(self.allowed()?),
            counters,
        )?)
    }
}

/// Parses `5/10s,20/60s`; `none` disables pacing (simulator only).
pub fn parse_pacing(text: &str) -> anyhow::Result<Pacing> {
    if text.trim() == "none" {
        return Ok(Pacing::unlimited());
    }
    let windows = text
        .split(',')
        .map(|part| {
            let (count, period) = part.trim().split_once('/').with_context(|| {
                format!("--pacing: {part:?} is not REQUESTS/PERIOD, e.g. 5/10s")
            })?;
            let max_requests: u32 =
                count
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| {
                        format!("--pacing: {count:?} is not a positive number of requests")
                    })?;
            let period = parse_duration(period).context("--pacing")?;
            Ok(PacingWindow {
                max_requests,
                period,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Pacing { windows })
}

impl ClientArgs {
    pub fn settings(&self) -> anyhow::Result<ClientSettings> {
        Ok(ClientSettings {
            request_timeout: self.request_timeout,
            roster_chunk_size: self.roster_chunk_size,
            update_batch_size: self.update_batch_size,
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                ..RetryPolicy::default()
            },
            pacing: self.pacing.clone(),
            allowed_endpoints: AllowedEndpoints::parse(&self.allowed_endpoints)
                .context("--allowed-endpoints")?,
            max_body_bytes: self.max_response_bytes,
        })
    }

    pub fn clients(&self) -> anyhow::Result<Arc<ExpensifyClients>> {
        Ok(Arc::new(ExpensifyClients::new(self.settings()?)?))
    }
}

/// Where file mode reads manifests, status and credentials.
#[derive(Debug, Clone, clap::Args)]
pub struct FileArgs {
    /// Directory of manifests (read recursively; never modified). `plan` and `review` also
    /// take one manifest file of it: the whole repository is read, that file's objects are
    /// shown.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Where status files go [default: <repository>/.expensify-status].
    #[arg(long, value_name = "DIR")]
    pub status_dir: Option<PathBuf>,
    /// Secrets laid out as a mounted Secret volume: DIR/<secret name>/<key>. Without it, or
    /// when the files are absent: EXPENSIFY_PARTNER_USER_ID and EXPENSIFY_PARTNER_USER_SECRET.
    #[arg(long, value_name = "DIR", env = "EXPENSIFY_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Fail the whole run when any manifest cannot be read.
    #[arg(long)]
    pub strict: bool,
    /// The Secret under --secrets-dir holding the key that signs status files, in its file
    /// `key` (at least 32 bytes): DIR/NAME/key. With it, status files are verified and
    /// `apply` signs what it writes; without it `plan` says the recorded state is
    /// unverified and `apply` refuses unless --unsigned-status.
    #[arg(long, value_name = "NAME", default_value = STATUS_KEY_SECRET)]
    pub status_key_secret: String,
    /// Take the status directory as it is (unsigned files written by a version before
    /// signing, or an index that is missing or fails verification) and sign it. Once,
    /// after a person has checked the directory: an attacker can make a directory look
    /// unsigned. Needs the key.
    #[arg(long)]
    pub adopt_unsigned_status: bool,
    /// A file outside the repository where the status index's generation is remembered
    /// (MAC'd with the status key), so a rollback of the whole status directory to an
    /// older commit (every file with its index) is noticed and nothing is taken back on
    /// its word. Keep it where every run of the writer sees it (a volume, not a cache
    /// that can be evicted). Needs the key.
    #[arg(long, value_name = "FILE", env = "EXPENSIFY_STATUS_ANCHOR")]
    pub status_anchor: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `apply` and `watch`: whether they may write status files without the signing key.
#[derive(Debug, Clone, clap::Args)]
pub struct SigningArgs {
    /// Write status files unsigned when there is no signing key (see
    /// --status-key-secret). Anyone who can edit them can then make `apply` take back
    /// access it never gave; refused once the status directory is signed.
    #[arg(long, env = "EXPENSIFY_UNSIGNED_STATUS")]
    pub unsigned_status: bool,
}

impl SigningArgs {
    /// Refuses a writer that would write the status directory without the key, unless
    /// `--unsigned-status` says so and the directory was never signed.
    pub fn check(&self, files: &FileArgs, mode: &FileMode, command: &str) -> anyhow::Result<()> {
        if mode.status_dir.verifies() {
            return Ok(());
        }
        let key_path = files.status_key_path();
        if !self.unsigned_status {
            anyhow::bail!(
                "{command} signs the status files it writes and needs the key: no file {key_path} (create it with e.g. `openssl rand -base64 48`, kept where only {command} runs). To write unsigned status files anyway, pass --unsigned-status: anyone who can edit them can then make {command} take back access it never gave"
            );
        }
        if mode.status_dir.is_signed() {
            anyhow::bail!(
                "the status directory {} is signed; {command} without its key ({key_path}) would write over it unverified: give --secrets-dir the key",
                mode.status_dir.root().display()
            );
        }
        tracing::warn!(
            "--unsigned-status: status files are written UNSIGNED and read unverified; anyone who can edit {} can make {command} take back access it never gave. Put a key at {key_path}",
            mode.status_dir.root().display()
        );
        Ok(())
    }
}

/// `--status-anchor`, checked to be outside everything a pull request or a checkout can
/// roll back with the status directory it guards (an anchor rolled back with it guards
/// nothing): the repository at `root`, the git work tree around it, and the status
/// directory itself. As an absolute path.
fn outside_repository(anchor: &Path, root: &Path, status_dir: &Path) -> anyhow::Result<PathBuf> {
    let name = anchor
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("--status-anchor {}: names no file", anchor.display()))?;
    let parent = match anchor.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|e| {
        anyhow::anyhow!(
            "--status-anchor {}: its directory cannot be used ({e})",
            anchor.display()
        )
    })?;
    let absolute = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let root = absolute(root);
    // The git work tree holding the repository: the nearest ancestor with `.git`.
    let work_tree = root.ancestors().find(|dir| dir.join(".git").exists());
    let guarded = [
        ("the repository", Some(root.clone())),
        ("the git work tree", work_tree.map(Path::to_path_buf)),
        ("the status directory", Some(absolute(status_dir))),
    ];
    for (what, dir) in guarded {
        if let Some(dir) = dir.filter(|dir| parent.starts_with(dir)) {
            anyhow::bail!(
                "--status-anchor {} is inside {what} {}: it would be rolled back with the status directory it guards; keep it outside (a volume of the runner)",
                anchor.display(),
                dir.display()
            );
        }
    }
    Ok(parent.join(name))
}

/// A file given where only a whole repository will do.
#[derive(Debug, thiserror::Error)]
#[error(
    "{command}{flag} takes a directory, not a file: {command}{flag} on the objects of {file} alone is refused, because what the operator gave and takes back (the ledger), hand-offs between objects and who is asked for by nobody any more are decided over every object of the repository, and a subset would decide them wrongly. Run `expensify-operator {command} {root}{flag}` (the repository of {file}: {found_by}), or `expensify-operator plan {file}` to see only what this file asks for"
)]
pub struct WholeRepositoryOnly {
    pub command: &'static str,
    /// The flag that asks for the whole repository (` --out FILE`), or nothing.
    pub flag: &'static str,
    pub file: String,
    pub root: String,
    pub found_by: String,
}

impl FileArgs {
    /// What PATH names: a directory, or a file in its repository.
    pub fn target(&self) -> anyhow::Result<Target> {
        Ok(Target::resolve(&self.path)?)
    }

    /// PATH for a command that writes (`apply`, `watch`): a directory only.
    pub fn whole_repository(
        &self,
        command: &'static str,
        flag: &'static str,
    ) -> anyhow::Result<Target> {
        let target = self.target()?;
        if target.file.is_some() {
            return Err(WholeRepositoryOnly {
                command,
                flag,
                file: self.path.display().to_string(),
                root: target.root.display().to_string(),
                found_by: target.found_by.map(|k| k.to_string()).unwrap_or_default(),
            }
            .into());
        }
        Ok(target)
    }

    /// The status directory of `target`'s repository.
    pub fn status_dir(&self, target: &Target) -> StatusDir {
        StatusDir::new(
            self.status_dir
                .clone()
                .unwrap_or_else(|| target.root.join(".expensify-status")),
        )
    }

    /// Where the status signing key is looked for, for messages.
    pub fn status_key_path(&self) -> String {
        status_key_path(self.secrets_dir.as_deref(), &self.status_key_secret)
    }

    /// The status directory of `target`'s repository, signed and verified when the key
    /// is there.
    fn signed_status_dir(&self, target: &Target) -> anyhow::Result<StatusDir> {
        signed_status_dir(
            self.status_dir(target),
            self.secrets_dir.as_deref(),
            &self.status_key_secret,
            self.adopt_unsigned_status,
            self.status_anchor.as_deref(),
            &target.root,
        )
    }

    /// File mode over `target`'s repository.
    pub fn mode(&self, target: &Target) -> anyhow::Result<FileMode> {
        Ok(FileMode {
            dir: target.root.clone(),
            status_dir: self.signed_status_dir(target)?,
            credentials: CredentialSource::SecretsDir(self.secrets_dir.clone()),
            clients: self.client.clients()?,
            endpoint_override: None,
            strict: self.strict,
            notifications: None,
        })
    }

    /// File mode's notifications: the sender, with webhook URLs read from --secrets-dir.
    pub fn notifications(&self, notify: &NotifyArgs) -> anyhow::Result<Arc<FileNotifications>> {
        Ok(Arc::new(FileNotifications {
            notifier: notify.notifier(NotifyCounters::default())?,
            secrets_dir: self.secrets_dir.clone(),
        }))
    }
}

/// Where the status signing key `key_secret` is looked for under `secrets_dir`, for
/// messages.
pub fn status_key_path(secrets_dir: Option<&Path>, key_secret: &str) -> String {
    let dir = secrets_dir.map_or_else(
        || "$EXPENSIFY_SECRETS_DIR".to_string(),
        |d| d.display().to_string(),
    );
    format!("{dir}/{key_secret}/{STATUS_KEY_FILE}")
}

/// `unsigned` signed and verified with the key `key_secret` under `secrets_dir` when it is
/// there, its index's generation also remembered in `anchor` (outside the repository at
/// `root`); without the key, as it is (with a warning when it holds recorded state);
/// `adopt` (`--adopt-unsigned-status`) and `anchor` need the key.
pub fn signed_status_dir(
    unsigned: StatusDir,
    secrets_dir: Option<&Path>,
    key_secret: &str,
    adopt: bool,
    anchor: Option<&Path>,
    root: &Path,
) -> anyhow::Result<StatusDir> {
    match find_status_key(secrets_dir, key_secret)? {
        Some(key) => {
            let signed = StatusDir::signed(unsigned.root(), key, adopt);
            Ok(match anchor {
                Some(anchor) => {
                    signed.with_anchor(outside_repository(anchor, root, unsigned.root())?)
                }
                None => signed,
            })
        }
        None if anchor.is_some() => anyhow::bail!(
            "--status-anchor is MAC'd with the status signing key: no file {}",
            status_key_path(secrets_dir, key_secret)
        ),
        None if adopt => anyhow::bail!(
            "--adopt-unsigned-status signs the status directory and needs the key: no file {}",
            status_key_path(secrets_dir, key_secret)
        ),
        None => {
            if unsigned.root().is_dir() {
                tracing::warn!(
                    "the recorded state in {} is UNVERIFIED: no status signing key at {}, so an edited or replayed status file cannot be told apart",
                    unsigned.root().display(),
                    status_key_path(secrets_dir, key_secret)
                );
            }
            Ok(unsigned)
        }
    }
}

/// `-n/--namespace` of the commands that show part of a repository (`plan`, `review`,
/// `validate`).
#[derive(Debug, Clone, clap::Args)]
pub struct NamespaceArgs {
    /// Show only objects of this namespace (the whole repository is still read and
    /// planned, so ownership and conflicts are decided as `apply` decides them).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// What `target` and `-n` select of a pass: the file's objects, those of the namespace.
/// A file that holds nothing of this operator is an error: nothing could be shown.
pub fn selection(
    target: &Target,
    namespace: &NamespaceArgs,
    mode: &FileMode,
    report: &PassReport,
) -> anyhow::Result<Selection> {
    let Some(file) = &target.file else {
        let selection = Selection {
            namespace: namespace.namespace.clone(),
            ..Selection::default()
        };
        if let Some(namespace) = &selection.namespace
            && selection.pick(report).is_empty()
        {
            tracing::warn!("no ExpensifyConnector or PolicyAccess in namespace {namespace:?}");
        }
        return Ok(selection);
    };
    let file_in_root = target.file_in_root().unwrap_or_default();
    let selection = Selection {
        file: Some(file.clone()),
        namespace: None,
        deleted_from_file: crate::files::select::deleted_from_file(
            report,
            &mode.status_dir,
            &file_in_root,
        ),
    };
    let in_file = |source: &crate::files::loader::Source| {
        source.path.canonicalize().is_ok_and(|p| &p == file)
    };
    let problem_in_file = report.manifests.problems.iter().any(|p| in_file(&p.source));
    if selection.pick(report).is_empty() && !problem_in_file {
        if report
            .manifests
            .decisions
            .iter()
            .any(|d| in_file(&d.source))
        {
            anyhow::bail!(
                "{} holds only AccessDecision documents, which file mode does not count (the merge of the AccessRequest is its approval): plan the AccessRequest file instead",
                file.display()
            );
        }
        anyhow::bail!(
            "{} holds no ExpensifyConnector, PolicyAccess or AccessRequest (read from the repository {})",
            file.display(),
            target.root.display()
        );
    }
    Ok(Selection {
        namespace: namespace.namespace.clone(),
        ..selection
    })
}

/// How long `apply`, `watch` and `plan` wait for another of them on the same status
/// directory.
#[derive(Debug, Clone, clap::Args)]
pub struct LockArgs {
    /// How long to wait for another apply, watch or plan using the same status directory
    /// before giving up (exit 1, naming it); 0 does not wait.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = wait_arg)]
    pub lock_timeout: Duration,
}

/// A duration flag (`500ms`, `90s`, `1h30m`), parsed by clap so a bad value is a usage
/// error naming the flag.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// `--pacing`, parsed by clap (see [`parse_pacing`]).
pub fn pacing_arg(text: &str) -> Result<Pacing, String> {
    parse_pacing(text).map_err(|e| format!("{e:#}"))
}

/// A wait flag (`90s`, `5m`, `1h30m`, or `0`/`0s` for no wait), parsed by clap so a bad
/// value is a usage error.
pub fn wait_arg(text: &str) -> Result<Duration, String> {
    let number = text.trim().trim_end_matches(['m', 's', 'h']);
    if !number.is_empty() && number.bytes().all(|b| b == b'0') {
        return Ok(Duration::ZERO);
    }
    parse_duration(text).map_err(|e| e.to_string())
}

impl FileArgs {
    /// The status directory, locked for writer `command` (see [`StatusDir::lock`]).
    pub async fn lock(
        &self,
        target: &Target,
        command: &str,
        lock: &LockArgs,
    ) -> anyhow::Result<StatusDirLock> {
        Ok(self
            .status_dir(target)
            .lock(command, lock.lock_timeout)
            .await?)
    }

    /// The status directory, locked for a reader (see [`StatusDir::lock_shared`]).
    pub async fn lock_shared(
        &self,
        target: &Target,
        lock: &LockArgs,
    ) -> anyhow::Result<Option<StatusDirLock>> {
        Ok(self
            .status_dir(target)
            .lock_shared(lock.lock_timeout)
            .await?)
    }
}

/// Output formats of `plan` and `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Colour on stdout as `--color`, `--no-color` and `NO_COLOR` say (see
/// [`crate::telemetry::colour_enabled`]): by default only on a terminal.
pub fn stdout_style() -> Style {
    Style {
        colour: crate::telemetry::colour_for(std::io::stdout().is_terminal()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_flag() {
        assert_eq!(parse_pacing("5/10s,20/60s").unwrap(), Pacing::default());
        assert_eq!(parse_pacing("none").unwrap(), Pacing::unlimited());
        assert!(parse_pacing("5").is_err());
        assert!(parse_pacing("0/10s").is_err());
        assert!(parse_pacing("5/soon").is_err());
    }

    #[test]
    fn lock_timeout_flag() {
        assert_eq!(wait_arg("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(wait_arg("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(wait_arg("0"), Ok(Duration::ZERO));
        assert_eq!(wait_arg("0ms"), Ok(Duration::ZERO));
        assert!(wait_arg("soon").is_err());
        assert!(wait_arg("").is_err());
        assert!(wait_arg("s").is_err());
    }
}
