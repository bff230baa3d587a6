//! `apply DIR`: one sync, then exit. Non-zero when any object ends in Error or Blocked.
//! A single manifest file is refused: see [`super::common::WholeRepositoryOnly`].

use crate::files::{Run, render};

use super::common::{FileArgs, LockArgs, OutputFormat, stdout_style};

/// Arguments of `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// `text` or `json`.
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<i32> {
    let target = args.files.whole_repository("apply")?;
    let mode = args.files.mode(&target)?;
    // Held until the command ends: one writer per status directory.
    let _lock = args.files.lock(&target, "apply", &args.lock).await?;
    // SIGTERM / Ctrl-C: the call in flight finishes and its statuses are saved; no further
    // write starts.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::warn!("stop requested; finishing the Expensify call in flight");
        let _ = stop_tx.send(true);
    });
    let report = mode.pass_until(Run::Apply, Some(&stop_rx)).await;
    signals.abort();
    let report = report?;
    match args.output {
        OutputFormat::Text => out!("{}", render::apply_text(&report, stdout_style())),
        OutputFormat::Json => outln!("{}", render::json(&report, Run::Apply)),
    }
    Ok(i32::from(report.has_errors() || report.has_blocked()))
}
