//! `completions SHELL`: a completion script for the shell, generated from the same clap
//! definition the binary parses with, so it always knows every subcommand and flag.

/// Arguments of `completions`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

/// The script for `shell`, completing `command` (the binary's whole command line).
pub fn script(shell: clap_complete::Shell, mut command: clap::Command) -> String {
    let name = command.get_name().to_string();
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut command, name.clone(), &mut buffer);
    let script = String::from_utf8_lossy(&buffer).into_owned();
    if shell == clap_complete::Shell::Bash {
        // clap_complete 4.6 spells a hyphenated binary name two ways in the bash script: the
        // state it walks to (`expensify__operator__subcmd__plan`) and the case labels
        // (`expensify__subcmd__operator__subcmd__plan`), so nothing past the subcommand
        // name completed. One spelling, the state's.
        return script.replace(&name.replace('-', "__subcmd__"), &name.replace('-', "__"));
    }
    script
}

pub fn run(args: &CompletionsArgs, command: clap::Command) -> anyhow::Result<i32> {
    out!("{}", script(args.shell, command));
    Ok(0)
}
