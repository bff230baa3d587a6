//! Command-line entry point: parses arguments and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use expensify_operator::api::DecisionKind;
use expensify_operator::commands;
use expensify_operator::commands::cli::{Cli, Command, GlobalArgs};
use expensify_operator::telemetry::{self, Colour, LogFormat, progress};

#[tokio::main]
async fn main() -> ExitCode {
    // Crash tests name the points to die at in FAILPOINTS (only with `--features failpoints`).
    #[cfg(feature = "failpoints")]
    let _crash_points = fail::FailScenario::setup();
    // A usage error exits 1, not clap's 2: for `plan`, 2 means "changes pending", and a
    // pipeline that accepts 2 must not take a mistyped flag for a plan.
    let arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Invoked as `kubectl-expensify`: the kubectl plugin's commands, not the operator's.
    if commands::plugin::invoked_as_plugin(arguments.first().map(std::ffi::OsString::as_os_str)) {
        let plugin = match commands::plugin::PluginCli::try_parse_from(&arguments) {
            Ok(plugin) => plugin,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(u8::from(e.use_stderr()));
            }
        };
        if let Err(code) = start_telemetry(&plugin.global, true) {
            return code;
        }
        return finish(commands::plugin::run(plugin).await);
    }
    let cli = match commands::cli::parse(&arguments) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    // The controller is a daemon whose syncs overlap: its progress stays in log lines.
    let interactive = !matches!(cli.command, Command::Controller(_));
    if let Err(code) = start_telemetry(&cli.global, interactive) {
        return code;
    }
    let result = match cli.command {
        Command::Controller(args) => commands::controller::run(args).await,
        Command::Plan(args) => commands::plan::run(args).await,
        Command::Validate(args) => commands::validate::run(&args),
        Command::Apply(args) => commands::apply::run(args).await,
        Command::Watch(args) => commands::watch::run(args).await,
        Command::Export(args) => commands::export::run(args).await,
        Command::Review(args) => commands::review::run(args).await,
        Command::State(args) => commands::state::run(args).await,
        Command::Request(args) => commands::people::request(args).await,
        Command::Approve(args) => commands::people::decide(DecisionKind::Approve, args).await,
        Command::Deny(args) => commands::people::decide(DecisionKind::Deny, args).await,
        Command::Revoke(args) => commands::people::decide(DecisionKind::Revoke, args).await,
        Command::Requests(args) => commands::people::list(args).await,
        Command::Codeowners(args) => commands::codeowners::run(&args),
        Command::Crds(args) => commands::crds::run(&args),
        Command::Simulator(args) => commands::simulator::run(args).await,
        Command::Demo(args) => commands::demo::run(args).await,
        Command::Completions(args) => commands::completions::run(&args, Cli::command()),
    };
    finish(result)
}

/// Colour, progress bars (for `interactive` commands) and logging, as the global flags say.
fn start_telemetry(global: &GlobalArgs, interactive: bool) -> Result<(), ExitCode> {
    telemetry::set_colour(Colour {
        choice: global.color,
        no_color_flag: global.no_color,
    });
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let ansi = telemetry::colour_for(stderr_is_terminal);
    if interactive
        && progress::bars_wanted(
            stderr_is_terminal,
            global.log_format == LogFormat::Human,
            std::env::var("TERM").ok().as_deref(),
        )
    {
        progress::install_bars();
    }
    telemetry::init_logging(global.log_format, global.log_level.as_deref(), ansi).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

/// The exit code of a command's result; an error is printed once, made safe for a terminal.
fn finish(result: anyhow::Result<i32>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // Many errors already spell out their causes; add only what is not said yet.
            let mut message = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            // Errors can carry Expensify's text and policy names: nothing a terminal or a
            // CI runner acts on.
            eprintln!(
                "error: {}",
                expensify_operator::sanitize::terminal_text(&message)
            );
            ExitCode::from(1)
        }
    }
}
