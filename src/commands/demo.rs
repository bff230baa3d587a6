//! `demo`: the simulator and `examples/` end to end, in one process, with no setup. The
//! examples are built into the binary, so it runs from any directory and after `cargo
//! install`; `--examples DIR` runs another set. Nothing is left behind: the examples and
//! the status go to temporary directories.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;

use super::common::stdout_style;
use super::review::{ReviewFormat, render, review_rows};
use crate::expensify::{AllowedEndpoints, ClientSettings, Credentials, ExpensifyClients, Pacing};
use crate::files::failures::without_repeats;
use crate::files::render::{apply_text, plan_text, requests_text};
use crate::files::{CredentialSource, FileMode, Run, StatusDir};
use crate::simulator::{self, Seed};

/// Arguments of `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Manifests to apply [default: the examples built into the binary].
    #[arg(long, value_name = "DIR")]
    pub examples: Option<PathBuf>,
    /// Simulator seed [default: <examples>/simulator-seed.yaml when there is one, else the
    /// built-in seed].
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
}

/// The repository's `examples/` as built into the binary: the manifests a GitOps tool
/// would apply.
const BUILT_IN_EXAMPLES: [(&str, &str); 5] = [
    (
        "connector.yaml",
        include_str!("../../examples/connector.yaml"),
    ),
    (
        "finance-team.yaml",
        include_str!("../../examples/finance-team.yaml"),
    ),
    (
        "engineering-team.yaml",
        include_str!("../../examples/engineering-team.yaml"),
    ),
    (
        "contractors-jit.yaml",
        include_str!("../../examples/contractors-jit.yaml"),
    ),
    (
        "sales-observe.yaml",
        include_str!("../../examples/sales-observe.yaml"),
    ),
];

/// The request the demo makes with the built-in examples: Dana asks to be admin on the
/// Finance policy for four hours. It lives apart from `examples/` (people create requests,
/// a GitOps tool never applies them), so it is written in only for step 5.
const BUILT_IN_REQUEST: (&str, &str) = (
    "finance-team-dana-q4-close.yaml",
    include_str!("../../extras/requests/access-request.yaml"),
);

/// The simulator's seed for the built-in examples.
const BUILT_IN_SEED: &str = include_str!("../../extras/simulator-seed.yaml");

/// Where the demo's manifests and seed are.
struct Examples {
    manifests: PathBuf,
    seed: PathBuf,
    /// How the manifests are named in the demo's first lines.
    shown: String,
    /// Whether these are the built-in examples, which the demo's request is for.
    built_in: bool,
    /// Holds the temporary directory of the built-in examples or seed until the demo ends.
    _built_in: Option<tempfile::TempDir>,
}

/// The directory given, or the built-in examples written to a temporary directory; the seed
/// of `--seed`, else the one beside the manifests, else the built-in one.
fn examples(args: &DemoArgs) -> anyhow::Result<Examples> {
    let temporary = tempfile::tempdir().context("creating a directory for the examples")?;
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text)
            .with_context(|| format!("writing the built-in example {}", path.display()))
    };
    // The shipped examples keep their seed in extras/, beside examples/ (nothing but
    // manifests there): a directory without one runs on the built-in seed.
    let beside = args
        .examples
        .as_ref()
        .map(|dir| dir.join("simulator-seed.yaml"))
        .filter(|seed| seed.is_file());
    let seed = if let Some(seed) = args.seed.clone().or(beside) {
        seed
    } else {
        let seed = temporary.path().join("simulator-seed.yaml");
        write(seed.clone(), BUILT_IN_SEED)?;
        seed
    };
    if let Some(dir) = &args.examples {
        return Ok(Examples {
            manifests: dir.clone(),
            seed,
            shown: dir.display().to_string(),
            built_in: false,
            _built_in: Some(temporary),
        });
    }
    let manifests = temporary.path().join("manifests");
    std::fs::create_dir(&manifests).with_context(|| format!("creating {}", manifests.display()))?;
    for (name, text) in BUILT_IN_EXAMPLES {
        write(manifests.join(name), text)?;
    }
    Ok(Examples {
        shown: format!(
            "the built-in examples (in {}; --examples DIR for your own)",
            manifests.display()
        ),
        manifests,
        seed,
        built_in: true,
        _built_in: Some(temporary),
    })
}

fn heading(text: &str) {
    outln!("\n==> {text}\n");
}

pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let examples = examples(&args)?;
    let seed_path = examples.seed.clone();
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
        dir: examples.manifests.clone(),
        status_dir: StatusDir::new(status.path()),
        credentials: CredentialSource::Fixed(Credentials::new(
            &account.partner_user_id,
            &account.partner_user_secret,
        )?),
        clients: Arc::new(clients),
        endpoint_override: Some(sim.endpoint()),
        strict: false,
        notifications: None,
    };
    let style = stdout_style();
    outln!("expensify-operator demo");
    outln!(
        "  simulator:  {} (seeded from {})",
        sim.endpoint(),
        seed_path.display()
    );
    outln!("  manifests:  {}", examples.shown);
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

    let request = if examples.built_in {
        Some(request_steps(&mode, &examples.manifests, &sim, style).await?)
    } else {
        None
    };

    heading("7. what Expensify saw");
    let counters = sim.state().counters().clone();
    for (job, count) in &counters.by_job {
        outln!("  {job:<18} {count} call(s)");
    }
    outln!("  records applied    {}", counters.records_applied);
    sim.shutdown().await;
    let request_failed = request.is_some_and(|r| !r.succeeded());
    Ok(i32::from(
        applied.has_errors() || again.pending_changes() > 0 || request_failed,
    ))
}

/// Every (policy, email, role) on the simulator, sorted.
fn access_on(sim: &simulator::SimulatorHandle) -> Vec<(String, String, String)> {
    let mut access: Vec<(String, String, String)> = sim
        .state()
        .policies()
        .into_iter()
        .flat_map(|policy| {
            policy
                .employees
                .into_iter()
                .map(move |e| (policy.id.clone(), e.email, e.role.to_string()))
        })
        .collect();
    access.sort();
    access
}

/// What the request steps showed, for the exit code.
struct RequestOutcome {
    failed: bool,
    /// Access on Expensify after the request ended that differs from before it.
    left_over: Vec<(String, String, String)>,
}

impl RequestOutcome {
    fn succeeded(&self) -> bool {
        !self.failed && self.left_over.is_empty()
    }
}

/// Steps 5 and 6: the built-in request is merged (written into the manifests), applied,
/// and taken back at its end, reached by moving the demo's clock past its `expiresAt`.
async fn request_steps(
    mode: &FileMode,
    manifests: &std::path::Path,
    sim: &simulator::SimulatorHandle,
    style: crate::files::render::Style,
) -> anyhow::Result<RequestOutcome> {
    let (name, text) = BUILT_IN_REQUEST;
    let before = access_on(sim);
    heading(
        "5. a request: dana asks to be admin on Finance for 4h (in git the merge is the approval)",
    );
    let path = manifests.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    outln!("  merged {name}\n");
    let granted = mode.pass(Run::Apply).await?;
    out!("{}", apply_text(&granted, style));
    outln!("");
    out!("{}", requests_text(&granted));
    let Some(expires) = granted
        .requests_seen()
        .iter()
        .find_map(|r| r.status.expires_at.clone())
    else {
        outln!("  the request was not granted: nothing to take back");
        return Ok(RequestOutcome {
            failed: true,
            left_over: Vec::new(),
        });
    };

    heading(&format!(
        "6. its end: the demo's clock jumps to {} (expiresAt)",
        crate::files::report::shown_time(&expires)
    ));
    let ended = mode.pass_at(Run::Apply, expires.0).await?;
    out!("{}", apply_text(&ended, style));
    outln!("");
    out!("{}", requests_text(&ended));
    let after = access_on(sim);
    let left_over: Vec<(String, String, String)> = after
        .iter()
        .filter(|a| !before.contains(a))
        .chain(before.iter().filter(|b| !after.contains(b)))
        .cloned()
        .collect();
    if left_over.is_empty() {
        outln!(
            "  Expensify is as it was before the request: dana is taken back, nobody else was touched."
        );
    } else {
        for (policy, email, role) in &left_over {
            outln!(
                "  ! differs from before the request: {} {} on {}",
                crate::sanitize::terminal(email),
                crate::sanitize::terminal(role),
                crate::sanitize::terminal(policy)
            );
        }
    }
    Ok(RequestOutcome {
        failed: granted.has_errors() || ended.has_errors(),
        left_over,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every manifest in `examples/` is built in, so `demo` shows what the repository ships.
    #[test]
    fn every_example_manifest_is_built_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let mut shipped: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|name| {
                std::path::Path::new(name)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("yaml"))
            })
            .collect();
        shipped.sort();
        let mut built_in: Vec<String> = BUILT_IN_EXAMPLES
            .iter()
            .map(|(name, _)| (*name).to_string())
            .collect();
        built_in.sort();
        assert_eq!(shipped, built_in);
    }
}
