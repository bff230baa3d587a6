//! The binary's command line as a clap definition, in the library so tests can walk it
//! (`docs/commands.md` is checked against it) and `main.rs` only parses and dispatches.

use clap::{Parser, Subcommand};

use crate::telemetry::{ColourChoice, LogFormat};

/// Keeps Expensify policy membership where git says it should be.
#[derive(Debug, Parser)]
#[command(name = "expensify-operator", version, about)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "EXPENSIFY_OPERATOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `expensify_operator=debug` (overrides RUST_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// When to colour log lines (stderr) and results (stdout). NO_COLOR (any non-empty
    /// value) and --no-color turn colour off whatever this says.
    #[arg(long = "color", global = true, value_name = "WHEN", value_enum, default_value_t = ColourChoice::Auto)]
    pub color: ColourChoice,
    /// No colour on stderr or stdout (the same as NO_COLOR=1).
    #[arg(long = "no-color", global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster mode: watch ExpensifyConnector and PolicyAccess objects and keep Expensify in line.
    Controller(super::controller::ControllerArgs),
    /// File mode: print what apply would change (exit 0 in sync, 2 pending, 1 error).
    Plan(super::plan::PlanArgs),
    /// Check manifests without credentials or network (exit 0 clean, 1 with every problem).
    Validate(super::validate::ValidateArgs),
    /// File mode: one sync, then exit (non-zero if any object is Error or Blocked).
    Apply(super::apply::ApplyArgs),
    /// File mode: sync now, then on every change, every syncInterval and at each expiry.
    Watch(super::watch::WatchArgs),
    /// Current Expensify state as ready-to-commit manifests.
    Export(super::export::ExportArgs),
    /// Access review: every person, policy and role, and which object manages it.
    Review(super::review::ReviewArgs),
    /// Print the CustomResourceDefinitions.
    Crds(super::crds::CrdsArgs),
    /// Run the Expensify Integration Server simulator on loopback from a seed YAML.
    Simulator(super::simulator::SimulatorArgs),
    /// The simulator and examples/ end to end, in one process, with no setup.
    Demo(super::demo::DemoArgs),
    /// Print a shell completion script: `source <(expensify-operator completions bash)`.
    Completions(super::completions::CompletionsArgs),
}
