//! `validate PATH`: the checks that need no credentials and no network (see
//! [`crate::files::validate`]). Exit 0 when clean, 1 with every problem listed. Reads no
//! Secret, writes nothing, calls nothing: safe on untrusted branches and in pre-commit
//! hooks.

use std::path::PathBuf;

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;

use super::common::{NamespaceArgs, OutputFormat};
use crate::expensify::{AllowedEndpoints, ClientSettings, ExpensifyClients};
use crate::files::select::EmptyNamespace;
use crate::files::validate::{Checks, text, validate};

/// Arguments of `validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// A directory of manifests (everything below it) or one manifest file (that file
    /// alone; connector references it cannot resolve are looked up in its repository).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    /// Also check every connector's endpoint against these URL prefixes (comma-separated),
    /// as `plan` and `apply` would; without it only https (or http on loopback) is checked.
    #[arg(long, value_name = "URLS", env = "EXPENSIFY_ALLOWED_ENDPOINTS")]
    pub allowed_endpoints: Option<String>,
    /// A status directory inside PATH, never read as manifests (the default
    /// `.expensify-status` is hidden, so skipped anyway). Nothing is read from it.
    #[arg(long, value_name = "DIR")]
    pub status_dir: Option<PathBuf>,
    /// `text` (one line per problem) or `json`.
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<i32> {
    let allowlist = match &args.allowed_endpoints {
        Some(urls) => Some(ExpensifyClients::new(ClientSettings {
            allowed_endpoints: AllowedEndpoints::parse(urls).context("--allowed-endpoints")?,
            ..ClientSettings::default()
        })?),
        None => None,
    };
    let exclude: Vec<PathBuf> = args.status_dir.iter().cloned().collect();
    let validation = validate(
        &args.path,
        Checks {
            allowlist: allowlist.as_ref(),
            namespace: args.namespace.namespace.as_deref(),
            exclude: &exclude,
            now: Timestamp::now(),
        },
    )?;
    if let Some(namespace) = &args.namespace.namespace
        && !validation.namespaces.contains(namespace)
    {
        // As `plan -n`: a namespace that selects nothing fails, so a typo fails CI.
        let empty = EmptyNamespace {
            asked: namespace.clone(),
            existing: validation.namespaces.iter().cloned().collect(),
        };
        match args.output {
            OutputFormat::Text => outln!("error: {empty}"),
            OutputFormat::Json => {
                eprintln!("error: {empty}");
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&validation).context("serializing the result")?
                );
            }
        }
        return Ok(1);
    }
    match args.output {
        OutputFormat::Text => out!("{}", text(&validation)),
        OutputFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&validation).context("serializing the result")?
        ),
    }
    Ok(i32::from(!validation.is_clean()))
}
