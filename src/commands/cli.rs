//! The binary's command line as a clap definition, in the library so tests can walk it
//! (`docs/commands.md` is checked against it) and `main.rs` only parses and dispatches.

use std::ffi::OsString;
use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

use crate::telemetry::{ColourChoice, LogFormat};

/// Keeps Expensify policy membership where git says it should be.
#[derive(Debug, Parser)]
#[command(name = "expensify-operator", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, the kubectl plugin's too: how logs and results look.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
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
    /// File mode's recorded state (the ledger): list it, show an object's, forget an object's.
    State(super::state::StateArgs),
    /// Ask for temporary access (an AccessRequest): in a cluster with your kubeconfig, or
    /// with --dir as a document in the repository, approved by the merge.
    Request(super::people::RequestCommand),
    /// Approve an AccessRequest (an AccessDecision signed as you; cluster only).
    Approve(super::people::DecideCommand),
    /// Deny a pending AccessRequest, for good (cluster only).
    Deny(super::people::DecideCommand),
    /// End an active AccessRequest early (its approvers or its requester; cluster only).
    Revoke(super::people::DecideCommand),
    /// Access requests: what is pending for whom, what is active and when it ends.
    Requests(super::people::ListCommand),
    /// File mode: CODEOWNERS lines making each PolicyAccess's request approvers the
    /// required reviewers of its file and of its requests directory.
    Codeowners(super::codeowners::CodeownersArgs),
    /// Print the CustomResourceDefinitions.
    Crds(super::crds::CrdsArgs),
    /// Run the Expensify Integration Server simulator on loopback from a seed YAML.
    Simulator(super::simulator::SimulatorArgs),
    /// The simulator and examples/ end to end, in one process, with no setup.
    Demo(super::demo::DemoArgs),
    /// Print a shell completion script: `source <(expensify-operator completions bash)`.
    Completions(super::completions::CompletionsArgs),
}

/// Parses the command line as [`Cli::try_parse_from`] does, with what clap alone gets
/// wrong for this program: terraform's `-out` and `apply plan.json` are refused with a tip
/// naming `--out` / `--plan`, and the usage line of an error shows only what was typed
/// (clap lists an option set from its environment variable, e.g. `--allowed-endpoints`
/// from `EXPENSIFY_ALLOWED_ENDPOINTS`, as if it were required).
pub fn parse(args: &[OsString]) -> Result<Cli, clap::Error> {
    let parsed = Cli::try_parse_from(args).map_err(|e| usage_as_typed(e, args));
    if let Some(typed) = single_dash_out(args) {
        let subcommand = subcommand_of(args);
        let tip = if subcommand.as_deref() == Some("plan") {
            "to save the plan for `apply --plan`, use '--out FILE' (two dashes: '-out' reads as '-o ut')".to_string()
        } else {
            "save a plan with `plan --out FILE` and apply it with `apply --plan FILE` (two dashes)"
                .to_string()
        };
        return Err(hint(
            ErrorKind::UnknownArgument,
            &[(ContextKind::InvalidArg, typed)],
            tip,
            subcommand.and_then(|name| usage_of(&name)),
        ));
    }
    let cli = parsed?;
    if let Command::Apply(apply) = &cli.command
        && looks_like_a_saved_plan(&apply.files.path)
    {
        let path = apply.files.path.display().to_string();
        return Err(hint(
            ErrorKind::InvalidValue,
            &[
                (ContextKind::InvalidArg, "<PATH>".to_string()),
                (ContextKind::InvalidValue, path.clone()),
            ],
            format!(
                "apply takes the repository; to apply the plan saved in {path}, use `apply --plan {path} DIR`"
            ),
            usage_of("apply"),
        ));
    }
    Ok(cli)
}

const BIN: &str = "expensify-operator";

/// The usage line of `subcommand`, as clap prints it when its required arguments are
/// missing (none for a subcommand that requires nothing).
fn usage_of(subcommand: &str) -> Option<ContextValue> {
    let bare = [OsString::from(BIN), OsString::from(subcommand)];
    let error = without_env(Cli::command())
        .try_get_matches_from(bare)
        .err()?;
    error.get(ContextKind::Usage).cloned()
}

/// `-out` or `-out=FILE` before any `--`: terraform's spelling of `--out`.
fn single_dash_out(args: &[OsString]) -> Option<String> {
    args.iter()
        .skip(1)
        .map_while(|a| a.to_str().filter(|a| *a != "--"))
        .find(|a| *a == "-out" || a.starts_with("-out="))
        .map(str::to_string)
}

/// The first argument that names a subcommand.
fn subcommand_of(args: &[OsString]) -> Option<String> {
    let command = Cli::command();
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| command.find_subcommand(a).is_some())
        .map(str::to_string)
}

/// A PATH of `apply` that is a JSON file rather than a repository: what `plan --out`
/// writes.
fn looks_like_a_saved_plan(path: &Path) -> bool {
    !path.is_dir()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// A usage error with a tip, formatted as clap formats its own.
fn hint(
    kind: ErrorKind,
    context: &[(ContextKind, String)],
    tip: String,
    usage: Option<ContextValue>,
) -> clap::Error {
    let mut error = clap::Error::new(kind).with_cmd(&Cli::command());
    for (key, value) in context {
        error.insert(*key, ContextValue::String(value.clone()));
    }
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    if let Some(usage) = usage {
        error.insert(ContextKind::Usage, usage);
    }
    error
}

/// `error` with the usage line clap gives when no environment variable is set: the same
/// arguments parsed by a definition without `env` bindings fail the same way, and their
/// usage line names only what was typed.
fn usage_as_typed(mut error: clap::Error, args: &[OsString]) -> clap::Error {
    let Err(typed) = without_env(Cli::command()).try_get_matches_from(args) else {
        return error;
    };
    if typed.kind() == error.kind()
        && let Some(usage) = typed.get(ContextKind::Usage)
    {
        error.insert(ContextKind::Usage, usage.clone());
    }
    error
}

/// `command` with no argument read from the environment, at every level.
fn without_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| arg.env(None))
        .mut_subcommands(without_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn error(line: &str) -> String {
        match parse(&args(line)) {
            Ok(cli) => panic!("{line} parsed: {cli:?}"),
            Err(e) => e.render().to_string(),
        }
    }

    #[test]
    fn terraform_out_points_at_two_dashes() {
        let shown = error("expensify-operator plan -out plan.json repo");
        assert!(
            shown.contains("unexpected argument '-out' found"),
            "{shown}"
        );
        assert!(
            shown.contains("tip: to save the plan for `apply --plan`, use '--out FILE'"),
            "{shown}"
        );
        assert!(shown.contains("Usage: expensify-operator plan"), "{shown}");
        let shown = error("expensify-operator apply -out=plan.json repo");
        assert!(
            shown.contains("unexpected argument '-out=plan.json' found"),
            "{shown}"
        );
        assert!(shown.contains("`apply --plan FILE`"), "{shown}");
        // After `--`, `-out` is a value, not a flag.
        assert!(single_dash_out(&args("expensify-operator plan -- -out")).is_none());
    }

    #[test]
    fn apply_of_a_saved_plan_points_at_dash_dash_plan() {
        let shown = error("expensify-operator apply plan.json");
        assert!(
            shown.contains("invalid value 'plan.json' for '<PATH>'"),
            "{shown}"
        );
        assert!(shown.contains("tip: apply takes the repository; to apply the plan saved in plan.json, use `apply --plan plan.json DIR`"), "{shown}");
        assert!(shown.contains("Usage: expensify-operator apply"), "{shown}");
        assert!(parse(&args("expensify-operator apply repo")).is_ok());
        assert!(parse(&args("expensify-operator apply --plan plan.json repo")).is_ok());
    }

    #[test]
    fn the_definition_for_usage_lines_reads_no_environment() {
        fn envs(command: &clap::Command) -> usize {
            command
                .get_arguments()
                .filter(|a| a.get_env().is_some())
                .count()
                + command.get_subcommands().map(envs).sum::<usize>()
        }
        assert!(
            envs(&Cli::command()) > 0,
            "the real definition has env bindings"
        );
        assert_eq!(envs(&without_env(Cli::command())), 0);
    }
}
