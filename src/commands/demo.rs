//! `demo`: the simulator and `examples/` end to end, in one process, with no setup. The
//! checkout is left untouched: status goes to a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;

use super::common::stdout_style;
use super::review::{ReviewFormat, render, review_rows};
use crate::expensify::{AllowedEndpoints, ClientSettings, Credentials, ExpensifyClients, Pacing};
use crate::files::failures::without_repeats;
use crate::files::render::{apply_text, plan_text};
use crate::files::{CredentialSource, FileMode, Run, StatusDir};
use crate::simulator::{self, Seed};

/// Arguments of `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Manifests to apply.
    #[arg(long, value_name = "DIR", default_value = "examples")]
    pub examples: PathBuf,
    /// Simulator seed [default: <examples>/simulator-seed.yaml].
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
}

fn heading(text: &str) {
    outln!("\n==> {text}\n");
}

pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let seed_path = args
        .seed
        .clone()
        .unwrap_or_else(|| args.examples.join("simulator-seed.yaml"));
    let mut seed = Seed::load(&seed_path)?;
    // The demo goes fast: Expensify's pacing is shown by the tests and benchmarks.
    seed.rate_limits.enabled = false;
    let account = seed
        .accounts
        .first()
        .context("the seed has no account")?
        .clone();
    let sim = simulator::start(&seed, "127.0.0.1:0".parse()?).await?;
    let status = tempfile::tempdir().context("creating a temporary status directory")?;
    let clients = ExpensifyClients::new(ClientSettings {
        pacing: Pacing::unlimited(),
        // The demo's credentials go to its own simulator and nowhere else.
        allowed_endpoints: AllowedEndpoints::only(&sim.endpoint())?,
        ..ClientSettings::default()
    })?;
    let mode = FileMode {
        dir: args.examples.clone(),
        status_dir: StatusDir::new(status.path()),
        credentials: CredentialSource::Fixed(Credentials::new(
            &account.partner_user_id,
            &account.partner_user_secret,
        )?),
        clients: Arc::new(clients),
        endpoint_override: Some(sim.endpoint()),
        strict: false,
    };
    let style = stdout_style();
    outln!("expensify-operator demo");
    outln!(
        "  simulator:  {} (seeded from {})",
        sim.endpoint(),
        seed_path.display()
    );
    outln!("  manifests:  {}", args.examples.display());
    outln!("  status dir: {} (temporary)", status.path().display());

    heading("1. plan: what the manifests ask of Expensify");
    let planned = mode.pass(Run::Plan).await?;
    out!("{}", plan_text(&without_repeats(planned), style));

    heading("2. apply: one sync, batched writes, then a re-read");
    let applied = mode.pass(Run::Apply).await?;
    out!("{}", apply_text(&applied, style));

    heading("3. plan again: a second sync right after plans nothing");
    let again = mode.pass(Run::Plan).await?;
    out!("{}", plan_text(&without_repeats(again.clone()), style));

    heading("4. review: every person, policy and role, and who manages it");
    out!(
        "{}",
        render(
            &review_rows(&again, Timestamp::now()),
            ReviewFormat::Markdown
        )
    );

    heading("5. what Expensify saw");
    let counters = sim.state().counters().clone();
    for (job, count) in &counters.by_job {
        outln!("  {job:<18} {count} call(s)");
    }
    outln!("  records applied    {}", counters.records_applied);
    sim.shutdown().await;
    Ok(i32::from(
        applied.has_errors() || again.pending_changes() > 0,
    ))
}
