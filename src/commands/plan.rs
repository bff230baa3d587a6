//! `plan PATH`: what `apply` would change. Exit 0 in sync, 2 changes pending, 1 on error,
//! when anything would be Blocked or when an AccessRequest is in `Error` (a pull-request
//! check must not go green then).
//!
//! PATH is the repository, or one manifest file of it (a connector, PolicyAccess or
//! AccessRequest file: the repository around it is planned, and only what the file's
//! objects ask for is shown); `-n` shows one namespace.
//! The exit code follows what is shown.

use crate::files::select::EmptyNamespace;
use crate::files::{Run, SavedPlan, failures, markdown, render};

use super::common::{FileArgs, LockArgs, NamespaceArgs, selection, stdout_style};

/// Arguments of `plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// `text` (a diff like terraform plan), `json`, or `markdown` (a pull-request comment).
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum, default_value_t = PlanFormat::Text)]
    pub output: PlanFormat,
    /// Also save the plan to FILE, for `apply --plan FILE` to apply exactly it. Covers the
    /// whole repository, so it takes no manifest file and no `-n`.
    #[arg(long, value_name = "FILE", conflicts_with = "namespace")]
    pub out: Option<std::path::PathBuf>,
    /// Fail (exit 1, nothing read from Expensify) when the status directory holds no
    /// status while Additive or Authoritative objects exist, as `apply --require-status`:
    /// without their ledger, removals of what they granted cannot be planned.
    #[arg(long)]
    pub require_status: bool,
}

/// Output formats of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    /// GitHub-flavoured Markdown for a pull-request comment.
    Markdown,
}

/// The first line of a Markdown plan made without the status signing key.
const UNVERIFIED_NOTE: &str = "> **Recorded state unverified**: this plan ran without the status signing key, so it took the status directory (the ledger of what the operator added) on trust. `apply` verifies it and ignores, with an error, any status file that was edited or put back from history.";

/// Exit codes of `plan`.
pub const IN_SYNC: i32 = 0;
pub const FAILED: i32 = 1;
pub const CHANGES_PENDING: i32 = 2;

pub async fn run(args: PlanArgs) -> anyhow::Result<i32> {
    let target = match args.out {
        Some(_) => args.files.whole_repository("plan", " --out FILE")?,
        None => args.files.target()?,
    };
    let mode = args.files.mode(&target)?;
    // Held until the command ends: no writer changes the status while it is read.
    let _lock = args.files.lock_shared(&target, &args.lock).await?;
    if args.require_status
        && let Some(missing) = mode.missing_ledger()?
    {
        discard_saved(args.out.as_deref(), "the status directory is missing");
        return Ok(refuse(args.output, &missing));
    }
    let report = mode.pass(Run::Plan).await?;
    if let Some(namespace) = &args.namespace.namespace
        && let Some(empty) = EmptyNamespace::in_pass(&report, namespace)
    {
        return Ok(refuse(args.output, &empty.to_string()));
    }
    if let Some(path) = &args.out {
        if report.has_errors() {
            discard_saved(Some(path), "the plan failed");
        } else {
            SavedPlan::of(&report).save(path)?;
            tracing::info!(path = %path.display(), "plan saved; `apply --plan` applies exactly it");
        }
    }
    let report = selection(&target, &args.namespace, &mode, &report)?.narrow(report);
    match args.output {
        PlanFormat::Text => {
            // Each failure once: objects point at their connector's message.
            let shown = failures::without_repeats(report.clone());
            out!("{}", render::plan_text(&shown, stdout_style()));
        }
        PlanFormat::Markdown => {
            let shown = failures::without_repeats(report.clone());
            // A pull-request comment says when what it read as the ledger is unchecked.
            if !mode.status_dir.verifies() && mode.status_dir.root().is_dir() {
                outln!("{UNVERIFIED_NOTE}\n");
            }
            out!("{}", markdown::plan_markdown(&shown));
        }
        PlanFormat::Json => outln!("{}", render::json(&report, Run::Plan)),
    }
    Ok(exit_code(&report))
}

/// The exit code of a plan (`plan`, `kubectl expensify diff`): what failed, else whether
/// changes are pending.
pub fn exit_code(report: &crate::files::PassReport) -> i32 {
    if report.fails() {
        FAILED
    } else if report.pending_changes() > 0 {
        CHANGES_PENDING
    } else {
        IN_SYNC
    }
}

/// `plan --out` that saves nothing, because `why`: a failed plan shows less than apply
/// would do (an unreachable connector plans nothing), and saved it would read as "nothing
/// to do". A plan left there by an earlier run goes too, so a pipeline cannot apply it by
/// mistake.
fn discard_saved(out: Option<&std::path::Path>, why: &str) {
    let Some(path) = out else {
        return;
    };
    let removed = std::fs::remove_file(path).is_ok();
    eprintln!(
        "error: plan --out: {why}, so it was not saved to {}{}",
        path.display(),
        if removed {
            " (the plan that was there is removed)"
        } else {
            ""
        }
    );
}

/// A plan that could not be made (`--require-status`, `-n` selecting nothing): said on
/// stdout in the format asked for, so a pull-request comment or a CI log shows why (JSON on
/// stdout stays JSON; the message goes to stderr too). Exit code 1.
fn refuse(output: PlanFormat, why: &str) -> i32 {
    match output {
        PlanFormat::Text => outln!("error: {why}"),
        PlanFormat::Markdown => outln!("**Failed:** {}", crate::sanitize::markdown(why)),
        PlanFormat::Json => {
            eprintln!("error: {why}");
            let refusal = serde_json::json!({ "planned": false, "refused": why });
            outln!("{refusal:#}");
        }
    }
    FAILED
}
