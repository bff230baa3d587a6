//! `apply DIR`: one sync, then exit. Non-zero when any object (AccessRequests included)
//! ends in Error, or any is Blocked.
//! A single manifest file is refused: see [`super::common::WholeRepositoryOnly`].

use crate::files::{PassReport, Run, SavedPlan, failures, render};

use super::common::{FileArgs, LockArgs, OutputFormat, SigningArgs, stdout_style};
use super::confirm::{Confirmation, Question, confirm, stdin_is_terminal};

/// Arguments of `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub notify: super::common::NotifyArgs,
    /// `text` or `json`.
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Apply exactly the plan `plan --out FILE` saved: nothing is written, and the command
    /// exits 1 naming what moved, if the manifests, the changes or the rosters they touch
    /// differ from it now.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<std::path::PathBuf>,
    /// Fail (exit 1, nothing read or written) when the status directory holds no status
    /// while Additive or Authoritative objects exist: their ledger is lost (an evicted CI
    /// cache, a fresh runner). For every apply of a pipeline except the very first.
    #[arg(long)]
    pub require_status: bool,
    /// Apply without asking. On a terminal, `apply` prints the plan first and applies it
    /// only after `yes`; when standard input is not a terminal (CI) it never asks.
    #[arg(long)]
    pub auto_approve: bool,
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<i32> {
    let target = args.files.whole_repository("apply", "")?;
    let mut mode = args.files.mode(&target)?;
    mode.notifications = Some(args.files.notifications(&args.notify)?);
    // Held until the command ends: one writer per status directory.
    let _lock = args.files.lock(&target, "apply", &args.lock).await?;
    args.signing.check(&args.files, &mode, "apply")?;
    if args.require_status
        && let Some(missing) = mode.missing_ledger()?
    {
        return Ok(refuse(args.output, &missing, &[]));
    }
    let reviewed = match &args.plan {
        Some(path) => match SavedPlan::load(path) {
            Ok(plan) => Some(plan),
            Err(e) => return Ok(refuse(args.output, &e.to_string(), &[])),
        },
        None => None,
    };
    // All or nothing: the whole plan is checked before any connector writes (each
    // connector checks its part again right before its write).
    if let Some(reviewed) = &reviewed {
        let now = mode.pass(Run::Plan).await?;
        let moved = reviewed.moved(&now);
        if !moved.is_empty() {
            let why =
                "the saved plan no longer matches; nothing was applied. Plan again and review";
            return Ok(refuse(args.output, why, &moved));
        }
    }
    let reviewed =
        match Confirmation::decide(args.auto_approve, reviewed.is_some(), stdin_is_terminal()) {
            Confirmation::Approved => reviewed,
            Confirmation::NotInteractive => {
                APPLY.not_asked();
                None
            }
            Confirmation::Ask => {
                let shown = mode.pass(Run::Plan).await?;
                if !ask(&shown, args.output)? {
                    // The terminal was told; a pipeline reading stdout is told too.
                    refusal_document(args.output, "not approved at the prompt", &[]);
                    return Ok(1);
                }
                // What is written is exactly what was shown: anything that moved since is
                // refused, as with `--plan`.
                (shown.pending_changes() > 0).then(|| SavedPlan::of(&shown))
            }
        };
    // SIGTERM / Ctrl-C: the call in flight finishes and its statuses are saved; no further
    // write starts. A second one exits at once.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(super::stop_on_signals(
        stop_tx,
        "finishing the Expensify call in flight",
    ));
    let report = match &reviewed {
        Some(reviewed) => mode.pass_reviewed(reviewed, Some(&stop_rx)).await,
        None => mode.pass_until(Run::Apply, Some(&stop_rx)).await,
    };
    signals.abort();
    let report = report?;
    mode.settle_notifications().await?;
    match args.output {
        OutputFormat::Text => {
            out!("{}", render::apply_text(&report, stdout_style()));
            // A request in Error fails the apply: the reader is told which and why.
            if report.has_failed_requests() {
                out!("\n{}", render::requests_text(&report));
            }
        }
        OutputFormat::Json => outln!("{}", render::json(&report, Run::Apply)),
    }
    Ok(i32::from(report.fails()))
}

/// Shows the plan on the terminal and asks (see [`confirm`]); nothing to change asks
/// nothing.
fn ask(shown: &PassReport, output: OutputFormat) -> anyhow::Result<bool> {
    if shown.pending_changes() == 0 {
        return Ok(true);
    }
    let plan = render::plan_text(&failures::without_repeats(shown.clone()), stdout_style());
    Ok(confirm(&APPLY, &plan, output == OutputFormat::Json)?)
}

/// The question of `terraform apply`.
const APPLY: Question = Question {
    ask: "Do you want to apply these changes?",
    cancelled: "Apply cancelled: nothing was written.",
    unasked: "standard input is not a terminal: applying without asking (as --auto-approve)",
};

/// `apply` refused before anything was written (`--plan`, `--require-status`): said on
/// stderr, and for `-o json` also as a JSON document on stdout (a pipeline parsing stdout
/// sees why). Exit code 1.
fn refuse(output: OutputFormat, why: &str, moved: &[String]) -> i32 {
    if moved.is_empty() {
        eprintln!("error: {why}");
    } else {
        eprintln!("error: {why}:\n  - {}", moved.join("\n  - "));
    }
    refusal_document(output, why, moved);
    1
}

/// For `-o json`, why nothing was applied, as a JSON document on stdout.
fn refusal_document(output: OutputFormat, why: &str, moved: &[String]) {
    if output == OutputFormat::Json {
        let refusal = serde_json::json!({
            "applied": false,
            "refused": why,
            "moved": moved,
        });
        outln!("{refusal:#}");
    }
}
