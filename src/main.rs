//! Command-line entry point: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use expensify_operator::commands;
use expensify_operator::telemetry::{self, LogFormat};

/// Keeps Expensify policy membership where git says it should be.
#[derive(Debug, Parser)]
#[command(name = "expensify-operator", version, about)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "EXPENSIFY_OPERATOR_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `expensify_operator=debug` (overrides RUST_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Expensify Integration Server simulator on loopback from a seed YAML.
    Simulator(commands::simulator::SimulatorArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format, cli.log_level.as_deref())?;
    match cli.command {
        Command::Simulator(args) => commands::simulator::run(args).await,
    }
}
