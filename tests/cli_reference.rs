//! `docs/commands.md` keeps in step with the binary's clap definition: every subcommand
//! and every long flag the parser knows is documented there (read from the definition,
//! not from help text).

use clap::CommandFactory;
use expensify_operator::commands::cli::Cli;
use expensify_operator::commands::plugin::PluginCli;

/// Every subcommand path (`state forget`) and every long flag of `command`, recursively.
fn names(command: &clap::Command, prefix: &str, found: &mut Vec<(String, String)>) {
    for arg in command.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        if let Some(long) = arg.get_long()
            && long != "help"
            && long != "version"
        {
            found.push((prefix.to_string(), format!("--{long}")));
        }
    }
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let path = format!("{prefix} {}", sub.get_name()).trim().to_string();
        found.push((path.clone(), format!("`{path}")));
        names(sub, &path, found);
    }
}

/// What `command`'s definition has that `doc` never mentions; subcommands are looked for
/// as `` `PREFIX NAME``.
fn undocumented(command: &clap::Command, prefix: &str, doc: &str) -> Vec<String> {
    let mut found = Vec::new();
    names(command, prefix, &mut found);
    found
        .into_iter()
        .filter(|(_, name)| !doc.contains(name.as_str()))
        .map(|(place, name)| format!("{name} (of `{place}`)"))
        .collect()
}

#[test]
fn every_subcommand_and_long_flag_is_in_docs_commands_md() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands.md"))
        .expect("docs/commands.md");
    let missing = undocumented(&Cli::command(), "", &doc);
    assert!(
        missing.is_empty(),
        "docs/commands.md does not mention: {}",
        missing.join(", ")
    );
}

#[test]
fn every_kubectl_plugin_verb_and_long_flag_is_in_docs_commands_md() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands.md"))
        .expect("docs/commands.md");
    let missing = undocumented(&PluginCli::command(), "kubectl expensify", &doc);
    assert!(
        missing.is_empty(),
        "docs/commands.md does not mention: {}",
        missing.join(", ")
    );
}

#[test]
fn an_undocumented_flag_or_subcommand_is_found() {
    let command = clap::Command::new("tool")
        .arg(clap::Arg::new("shown").long("shown"))
        .subcommand(
            clap::Command::new("state")
                .subcommand(clap::Command::new("forget").arg(clap::Arg::new("yes").long("yes"))),
        );
    assert_eq!(
        undocumented(&command, "", "`state` and `state forget`, --shown"),
        vec!["--yes (of `state forget`)".to_string()]
    );
    assert_eq!(
        undocumented(&command, "", "--shown --yes `state"),
        vec!["`state forget (of `state forget`)".to_string()]
    );
}
