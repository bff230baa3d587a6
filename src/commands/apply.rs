//! `apply DIR`: one sync, then exit. Non-zero when any object ends in Error or Blocked.
//! A single manifest file is refused: see [`super::common::WholeRepositoryOnly`].

use std::io::{BufRead, IsTerminal, Read, Write};

use crate::files::{PassReport, Run, SavedPlan, failures, render};

use super::common::{FileArgs, LockArgs, OutputFormat, SigningArgs, stdout_style};

/// Arguments of `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
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

/// Whether `apply` asks before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Print the plan and wait for `yes`.
    Ask,
    /// `--auto-approve`, or `--plan FILE` (a plan reviewed already).
    Approved,
    /// Nobody at a terminal to ask: applied without asking, and the log says so.
    NotInteractive,
}

impl Confirmation {
    pub fn decide(auto_approve: bool, reviewed: bool, stdin_is_terminal: bool) -> Self {
        if auto_approve || reviewed {
            Confirmation::Approved
        } else if stdin_is_terminal {
            Confirmation::Ask
        } else {
            Confirmation::NotInteractive
        }
    }
}

/// The question of `terraform apply`, after `plan` (what would change, and how many
/// changes that is): true only when the answer is `yes`. Nothing to change asks nothing.
/// An answer is read up to a bounded length; the end of input is a no.
pub fn confirm(
    plan: &str,
    pending: usize,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> std::io::Result<bool> {
    if pending == 0 {
        return Ok(true);
    }
    write!(
        output,
        "{plan}\nDo you want to apply these changes?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    )?;
    output.flush()?;
    let mut answer = String::new();
    input.take(MAX_ANSWER_BYTES).read_line(&mut answer)?;
    let approved = answer.trim() == "yes";
    if !approved {
        writeln!(output, "\nApply cancelled: nothing was written.")?;
    }
    Ok(approved)
}

/// The longest answer read: `yes` and a newline, with room for stray spaces.
const MAX_ANSWER_BYTES: u64 = 256;

pub async fn run(args: ApplyArgs) -> anyhow::Result<i32> {
    let target = args.files.whole_repository("apply", "")?;
    let mode = args.files.mode(&target)?;
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
    let reviewed = match Confirmation::decide(
        args.auto_approve,
        reviewed.is_some(),
        std::io::stdin().is_terminal(),
    ) {
        Confirmation::Approved => reviewed,
        Confirmation::NotInteractive => {
            tracing::info!(
                "standard input is not a terminal: applying without asking (as --auto-approve)"
            );
            None
        }
        Confirmation::Ask => {
            let shown = mode.pass(Run::Plan).await?;
            if !ask(&shown, args.output)? {
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
    match args.output {
        OutputFormat::Text => out!("{}", render::apply_text(&report, stdout_style())),
        OutputFormat::Json => outln!("{}", render::json(&report, Run::Apply)),
    }
    Ok(i32::from(report.has_errors() || report.has_blocked()))
}

/// Shows the plan on the terminal and asks (see [`confirm`]); with `-o json` the question
/// goes to stderr, so stdout stays one JSON document.
fn ask(shown: &PassReport, output: OutputFormat) -> anyhow::Result<bool> {
    let plan = render::plan_text(&failures::without_repeats(shown.clone()), stdout_style());
    let mut input = std::io::stdin().lock();
    let approved = match output {
        OutputFormat::Text => confirm(
            &plan,
            shown.pending_changes(),
            &mut input,
            &mut std::io::stdout(),
        )?,
        OutputFormat::Json => confirm(
            &plan,
            shown.pending_changes(),
            &mut input,
            &mut std::io::stderr(),
        )?,
    };
    Ok(approved)
}

/// `apply` refused before anything was written (`--plan`, `--require-status`): said on
/// stderr, and for `-o json` also as a JSON document on stdout (a pipeline parsing stdout
/// sees why). Exit code 1.
fn refuse(output: OutputFormat, why: &str, moved: &[String]) -> i32 {
    if moved.is_empty() {
        eprintln!("error: {why}");
    } else {
        eprintln!("error: {why}:\n  - {}", moved.join("\n  - "));
    }
    if output == OutputFormat::Json {
        let refusal = serde_json::json!({
            "applied": false,
            "refused": why,
            "moved": moved,
        });
        outln!("{refusal:#}");
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(typed: &str, pending: usize) -> (bool, String) {
        let mut shown = Vec::new();
        let approved = confirm(
            "+ new@acme.example\n",
            pending,
            &mut typed.as_bytes(),
            &mut shown,
        )
        .expect("in-memory I/O");
        (approved, String::from_utf8(shown).expect("UTF-8"))
    }

    #[test]
    fn only_yes_applies() {
        let (approved, shown) = answer("yes\n", 1);
        assert!(approved);
        assert!(
            shown.starts_with("+ new@acme.example\n"),
            "the plan comes first: {shown}"
        );
        assert!(
            shown.contains("Do you want to apply these changes?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "),
            "{shown}"
        );
        assert!(
            answer("  yes  \n", 1).0,
            "spaces around the answer are not part of it"
        );
        for no in ["y\n", "YES\n", "no\n", "\n", "", "yes please\n"] {
            let (approved, shown) = answer(no, 1);
            assert!(!approved, "{no:?} is not yes");
            assert!(
                shown.ends_with("Apply cancelled: nothing was written.\n"),
                "{shown}"
            );
        }
    }

    #[test]
    fn an_endless_answer_is_read_only_so_far() {
        let endless = "y".repeat(100_000);
        let mut input = endless.as_bytes();
        let approved = confirm("", 1, &mut input, &mut Vec::new()).expect("in-memory I/O");
        assert!(!approved);
        assert_eq!(
            input.len(),
            100_000 - MAX_ANSWER_BYTES as usize,
            "the rest is left unread"
        );
    }

    #[test]
    fn nothing_to_change_asks_nothing() {
        let (approved, shown) = answer("", 0);
        assert!(approved);
        assert_eq!(shown, "");
    }

    #[test]
    fn a_terminal_is_asked_unless_approved_already() {
        assert_eq!(Confirmation::decide(false, false, true), Confirmation::Ask);
        assert_eq!(
            Confirmation::decide(true, false, true),
            Confirmation::Approved
        );
        assert_eq!(
            Confirmation::decide(false, true, true),
            Confirmation::Approved
        );
        assert_eq!(
            Confirmation::decide(false, false, false),
            Confirmation::NotInteractive
        );
        assert_eq!(
            Confirmation::decide(true, false, false),
            Confirmation::Approved
        );
    }
}
