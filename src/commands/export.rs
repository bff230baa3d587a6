//! `export`: what Expensify has now, as manifests ready to commit: a connector and one
//! Authoritative PolicyAccess per policy. Applying them right after changes nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::api::ObjectMeta;
use tracing::info;

use super::common::ClientArgs;
use crate::api::{
    AccessMode, ConnectorRef, DeletionPolicy, ExpensifyConnector, ExpensifyConnectorSpec,
    MemberSpec, PolicyAccess, PolicyAccessSpec, PolicySelector, SecretRef,
};
use crate::email;
use crate::expensify::{DEFAULT_ENDPOINT, PolicySummary, RosterEntry};
use crate::files::CredentialSource;
use crate::names;
use crate::reconcile::Observed;
use crate::sanitize;

/// Arguments of `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// A repository with an ExpensifyConnector: endpoint, adminEmail, credentials Secret,
    /// name and namespace are taken from it (`--connector-name` / `-n` pick one of several).
    #[arg(value_name = "DIR", conflicts_with_all = ["admin_email", "endpoint", "secret_name"])]
    pub dir: Option<PathBuf>,
    /// The Expensify account behind the credentials (the connector's adminEmail).
    #[arg(long, value_name = "EMAIL", required_unless_present = "dir")]
    pub admin_email: Option<String>,
    /// Integration Server URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Name of the exported ExpensifyConnector.
    /// (default `expensify`; with DIR, picks the connector by name)
    #[arg(long, value_name = "NAME")]
    pub connector_name: Option<String>,
    /// Namespace written into every exported manifest (`metadata.namespace`).
    /// (default `default`; with DIR, picks the connector by namespace)
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Secret the connector refers to (and, with --secrets-dir, where credentials are read).
    #[arg(long, value_name = "NAME", default_value = "expensify-credentials")]
    pub secret_name: String,
    /// Secrets laid out as DIR/<secret name>/<key>; else EXPENSIFY_PARTNER_USER_ID/SECRET.
    #[arg(long, value_name = "DIR", env = "EXPENSIFY_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// `yaml` (multi-document manifests, ready to commit) or `json` (one `List`, as
    /// `kubectl get -o json` prints; for scripts).
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum, default_value_t = ExportFormat::Yaml)]
    pub output: ExportFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE", conflicts_with = "output_dir")]
    pub output_file: Option<PathBuf>,
    /// Write one file per policy (`policy-<id>.yaml`) plus `expensify-connector.yaml` into
    /// DIR, created if needed; existing files of those names are replaced. YAML only.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    #[default]
    Yaml,
    Json,
}

/// What the exported objects are named and where they point.
#[derive(Debug, Clone)]
pub struct ExportTarget {
    pub connector_name: String,
    pub namespace: String,
    pub secret: SecretRef,
    pub endpoint: String,
    pub admin_email: String,
}

/// A DNS-1123 name from a policy name.
fn object_name(policy_name: &str) -> String {
    let mut name = String::new();
    for c in policy_name.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_matches('-');
    let name: String = name.chars().take(50).collect();
    if name.is_empty() {
        "policy".to_string()
    } else {
        name.trim_end_matches('-').to_string()
    }
}

/// One exported manifest: the file it goes to with `--output-dir`, and its YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFile {
    /// A bare file name (`[a-z0-9-]` and `.yaml`), never a path.
    pub file_name: String,
    pub yaml: String,
}

/// One exported object, before it is written in a format.
struct ExportedObject {
    file_name: String,
    /// A YAML comment line naming the policy (server text, made safe).
    comment: Option<String>,
    object: Exported,
}

enum Exported {
    Connector(Box<ExpensifyConnector>),
    Access(Box<PolicyAccess>),
}

impl Exported {
    fn yaml(&self) -> anyhow::Result<String> {
        match self {
            Exported::Connector(c) => {
                serde_saphyr::to_string(c.as_ref()).context("serializing the connector")
            }
            Exported::Access(a) => {
                serde_saphyr::to_string(a.as_ref()).context("serializing a PolicyAccess")
            }
        }
    }

    fn json(&self) -> anyhow::Result<serde_json::Value> {
        match self {
            Exported::Connector(c) => {
                serde_json::to_value(c.as_ref()).context("serializing the connector")
            }
            Exported::Access(a) => {
                serde_json::to_value(a.as_ref()).context("serializing a PolicyAccess")
            }
        }
    }
}

/// The connector, then one Authoritative PolicyAccess per policy, sorted by policy name.
fn exported_objects(observed: &Observed, target: &ExportTarget) -> Vec<ExportedObject> {
    let mut objects = vec![ExportedObject {
        file_name: "expensify-connector.yaml".to_string(),
        comment: None,
        object: Exported::Connector(Box::new(connector(target))),
    }];
    let mut used_names = BTreeSet::new();
    let mut used_files = BTreeSet::new();
    let mut policies = observed.policies.clone();
    policies.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    for policy in policies {
        let Some(roster) = observed.rosters.get(&policy.id) else {
            continue;
        };
        let mut name = object_name(&policy.name);
        if !used_names.insert(name.clone()) {
            name = format!("{name}-{}", object_name(&policy.id));
            used_names.insert(name.clone());
        }
        // Named by policy ID, which stays when a policy is renamed; the ID is sanitized
        // like a name, and numbered in the unlikely case two IDs sanitize alike.
        let stem = format!("policy-{}", object_name(&policy.id));
        let mut file_name = format!("{stem}.yaml");
        let mut n = 1;
        while !used_files.insert(file_name.clone()) {
            n += 1;
            file_name = format!("{stem}-{n}.yaml");
        }
        // Server text: one line for every YAML parser, so a policy name cannot end the
        // comment and add YAML of its own.
        let comment = format!(
            "# {} ({}), owner {}",
            sanitize::yaml_comment(&policy.name),
            sanitize::yaml_comment(&policy.id),
            sanitize::yaml_comment(&policy.owner),
        );
        objects.push(ExportedObject {
            file_name,
            comment: Some(comment),
            object: Exported::Access(Box::new(policy_access(&name, &policy, roster, target))),
        });
    }
    objects
}

/// The connector, then one Authoritative PolicyAccess per policy, sorted by policy name,
/// each as a YAML file.
pub fn export_files(
    observed: &Observed,
    target: &ExportTarget,
) -> anyhow::Result<Vec<ExportedFile>> {
    exported_objects(observed, target)
        .into_iter()
        .map(|exported| {
            let yaml = exported.object.yaml()?;
            Ok(ExportedFile {
                file_name: exported.file_name,
                yaml: match exported.comment {
                    Some(comment) => format!("{comment}\n{yaml}"),
                    None => yaml,
                },
            })
        })
        .collect()
}

/// The same objects as one JSON `List` (`apiVersion: v1`, `kind: List`, `items`), the way
/// `kubectl get -o json` prints several objects.
pub fn export_json(observed: &Observed, target: &ExportTarget) -> anyhow::Result<String> {
    let items = exported_objects(observed, target)
        .iter()
        .map(|exported| exported.object.json())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    Ok(serde_json::to_string_pretty(&list).context("serializing the list")? + "\n")
}

fn meta(name: &str, target: &ExportTarget) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(target.namespace.clone()),
        ..ObjectMeta::default()
    }
}

fn connector(target: &ExportTarget) -> ExpensifyConnector {
    ExpensifyConnector {
        metadata: meta(&target.connector_name, target),
        spec: ExpensifyConnectorSpec {
            credentials_secret_ref: target.secret.clone(),
            endpoint: target.endpoint.clone(),
            admin_email: target.admin_email.clone(),
            owners: Vec::new(),
            sync_interval: crate::api::DEFAULT_SYNC_INTERVAL_TEXT.into(),
            max_revocations_per_sync: 10,
            protected_emails: Vec::new(),
            allowed_namespaces: Vec::new(),
            tenants: Vec::new(),
            suspend: false,
            notifications: None,
        },
        status: None,
    }
}

fn policy_access(
    name: &str,
    policy: &PolicySummary,
    roster: &[RosterEntry],
    target: &ExportTarget,
) -> PolicyAccess {
    let owner = email::normalize(&policy.owner);
    let mut members: Vec<MemberSpec> = roster
        .iter()
        .map(|entry| MemberSpec {
            email: email::normalize(&entry.email),
            role: Some(entry.role.clone()),
            submits_to: entry
                .submits_to
                .as_deref()
                .map(email::normalize)
                .filter(|m| *m != owner && *m != email::normalize(&entry.email)),
            employee_id: None,
            expires_at: None,
        })
        .collect();
    members.sort_by(|a, b| a.email.cmp(&b.email));
    PolicyAccess {
        metadata: meta(name, target),
        spec: PolicyAccessSpec {
            requests: None,
            connector_ref: ConnectorRef {
                name: target.connector_name.clone(),
                namespace: None,
            },
            policy: PolicySelector {
                id: Some(policy.id.clone()),
                name: None,
            },
            mode: AccessMode::Authoritative,
            deletion_policy: DeletionPolicy::Orphan,
            allow_from: Vec::new(),
            suspend: false,
            members,
        },
        status: None,
    }
}

/// The manifests, as one multi-document YAML text.
pub fn export_yaml(observed: &Observed, target: &ExportTarget) -> anyhow::Result<String> {
    let mut out = format!(
        "# Exported from Expensify by expensify-operator: {} policies.\n# Review, commit, then `plan` should report no changes.\n",
        observed.policies.len()
    );
    for file in export_files(observed, target)? {
        out.push_str("---\n");
        out.push_str(&file.yaml);
    }
    Ok(out)
}

/// Writes one file per manifest into `dir` (created if needed).
pub fn write_output_dir(dir: &Path, files: &[ExportedFile]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in files {
        // File names are built above from sanitized text; refuse anything else outright.
        if file.file_name.contains(['/', '\\']) || file.file_name.starts_with('.') {
            anyhow::bail!(
                "refusing to write {:?}: not a plain file name",
                file.file_name
            );
        }
        let path = dir.join(&file.file_name);
        std::fs::write(&path, &file.yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The exported objects' names must be ones the loader and the API server accept.
/// Where the export points, from the flags.
fn target_from_flags(args: &ExportArgs) -> anyhow::Result<ExportTarget> {
    let connector_name = args.connector_name.as_deref().unwrap_or("expensify");
    let namespace = args.namespace.as_deref().unwrap_or("default");
    names::check_subdomain(connector_name).context("--connector-name")?;
    names::check_label(namespace).context("-n/--namespace")?;
    names::check_subdomain(&args.secret_name).context("--secret-name")?;
    Ok(ExportTarget {
        connector_name: connector_name.to_string(),
        namespace: namespace.to_string(),
        secret: SecretRef {
            name: args.secret_name.clone(),
            user_id_key: "partnerUserID".into(),
            user_secret_key: "partnerUserSecret".into(),
        },
        endpoint: args.endpoint.clone(),
        admin_email: args.admin_email.clone().unwrap_or_default(),
    })
}

/// Where the export points, from the connector in `dir` (read strictly, as file mode
/// does, and checked before any credential is read).
fn target_from_dir(
    dir: &Path,
    args: &ExportArgs,
    clients: &crate::expensify::ExpensifyClients,
) -> anyhow::Result<ExportTarget> {
    let manifests = crate::files::loader::load_tree(dir, &[dir.join(".expensify-status")])?;
    let picked = |key: &crate::reconcile::ObjectKey| {
        args.connector_name.as_ref().is_none_or(|n| *n == key.name)
            && args.namespace.as_ref().is_none_or(|n| *n == key.namespace)
    };
    let chosen: Vec<_> = manifests
        .connectors
        .iter()
        .filter(|c| picked(&c.key))
        .collect();
    let [loaded] = chosen.as_slice() else {
        let found: Vec<String> = manifests
            .connectors
            .iter()
            .map(|c| c.key.to_string())
            .collect();
        anyhow::bail!(
            "{}: export needs exactly one ExpensifyConnector (pick one with --connector-name and -n); found {}",
            dir.display(),
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        );
    };
    let object = crate::reconcile::ConnectorObject::from_resource(&loaded.object);
    let problems = crate::sync::preflight(&object, clients);
    if !problems.is_empty() {
        anyhow::bail!(
            "{} ({}): {}",
            loaded.key,
            loaded.source.path.display(),
            crate::reconcile::validate::describe(&problems)
        );
    }
    let spec = &loaded.object.spec;
    Ok(ExportTarget {
        connector_name: loaded.key.name.clone(),
        namespace: loaded.key.namespace.clone(),
        secret: spec.credentials_secret_ref.clone(),
        endpoint: spec.endpoint.clone(),
        admin_email: spec.admin_email.clone(),
    })
}

pub async fn run(args: ExportArgs) -> anyhow::Result<i32> {
    if args.output == ExportFormat::Json && args.output_dir.is_some() {
        anyhow::bail!(
            "--output-dir writes YAML manifests (the files file mode reads); -o json goes to standard output or --output-file"
        );
    }
    let clients = args.client.clients()?;
    let target = match &args.dir {
        Some(dir) => target_from_dir(dir, &args, &clients)?,
        None => target_from_flags(&args)?,
    };
    // The allowlist first, so credentials are not even loaded for a refused endpoint.
    clients.check_endpoint(&target.endpoint)?;
    let credentials =
        CredentialSource::SecretsDir(args.secrets_dir.clone()).find(&target.secret)?;
    let client = clients.client(&target.endpoint, credentials)?;
    let policies = client.list_policies(true).await?;
    let ids: Vec<String> = policies.iter().map(|p| p.id.clone()).collect();
    let rosters = client.read_rosters(&ids).await?;
    let observed = Observed { policies, rosters };
    if let Some(dir) = &args.output_dir {
        let files = export_files(&observed, &target)?;
        write_output_dir(dir, &files)?;
        info!(
            files = files.len(),
            dir = %dir.display(),
            "exported one file per policy plus the connector"
        );
        return Ok(0);
    }
    let text = match args.output {
        ExportFormat::Yaml => export_yaml(&observed, &target)?,
        ExportFormat::Json => export_json(&observed, &target)?,
    };
    match args.output_file {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        None => out!("{text}"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(object_name("Sales EMEA"), "sales-emea");
        assert_eq!(object_name("Nango's Workspace"), "nango-s-workspace");
        assert_eq!(object_name("!!!"), "policy");
    }

    fn policy(id: &str, name: &str) -> PolicySummary {
        PolicySummary {
            id: id.into(),
            name: name.into(),
            plan: "corporate".into(),
            owner: "owner@acme.example".into(),
            output_currency: "USD".into(),
            caller_role: "admin".into(),
        }
    }

    fn target() -> ExportTarget {
        ExportTarget {
            connector_name: "acme".into(),
            namespace: "finance".into(),
            secret: SecretRef {
                name: "creds".into(),
                user_id_key: "partnerUserID".into(),
                user_secret_key: "partnerUserSecret".into(),
            },
            endpoint: DEFAULT_ENDPOINT.into(),
            admin_email: "it@acme.example".into(),
        }
    }

    /// The text as a YAML 1.1 parser (PyYAML, many CI tools) splits it into lines: NEL,
    /// U+2028 and U+2029 end a line as `\n` and `\r` do.
    fn as_yaml_1_1_lines(text: &str) -> String {
        text.replace(['\r', '\u{85}', '\u{2028}', '\u{2029}'], "\n")
    }

    /// A policy name that, were its line breaks honoured, ends the comment and adds a
    /// PolicyAccess of its own making the attacker an admin of the policy.
    fn injecting_name(line_break: char) -> String {
        [
            "Sales",
            "---",
            "apiVersion: expensify.gitops.dev/v1alpha1",
            "kind: PolicyAccess",
            "metadata: {name: injected, namespace: finance}",
            "spec:",
            "  connectorRef: {name: acme}",
            "  policy: {id: P1}",
            "  members: [{email: attacker@evil.example, role: admin}]",
            "---",
            "#",
        ]
        .join(&line_break.to_string())
    }

    #[test]
    fn a_policy_name_with_any_line_break_adds_no_document_for_any_yaml_parser() {
        for line_break in ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'] {
            let name = injecting_name(line_break);
            let policies = vec![policy("P1", &name)];
            let rosters = policies
                .iter()
                .map(|p| (p.id.clone(), Vec::new()))
                .collect();
            let observed = Observed { policies, rosters };
            let yaml = export_yaml(&observed, &target()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("exported.yaml");
            std::fs::write(&path, as_yaml_1_1_lines(&yaml)).unwrap();
            let manifests = crate::files::loader::load_file_alone(&path);
            let problems: Vec<String> =
                manifests.problems.iter().map(ToString::to_string).collect();
            assert!(problems.is_empty(), "{line_break:?}: {problems:?}\n{yaml}");
            let connectors: Vec<String> = manifests
                .connectors
                .iter()
                .map(|c| c.key.to_string())
                .collect();
            let accesses: Vec<String> = manifests
                .accesses
                .iter()
                .map(|a| a.key.to_string())
                .collect();
            assert_eq!(connectors, ["finance/acme"], "{line_break:?}\n{yaml}");
            let expected = format!("finance/{}", object_name(&name));
            assert_eq!(accesses, [expected], "{line_break:?}\n{yaml}");
            assert!(
                manifests.accesses[0].object.spec.members.is_empty(),
                "{yaml}"
            );
        }
    }

    #[test]
    fn hostile_policy_names_and_ids_never_reach_a_path_or_the_yaml() {
        let policies = vec![
            policy("../../etc/passwd", "Sales\nkind: Secret"),
            policy("../../ETC/passwd", "Sales"),
            policy("ABC123", ".."),
        ];
        let rosters = policies
            .iter()
            .map(|p| (p.id.clone(), Vec::new()))
            .collect();
        let files = export_files(&Observed { policies, rosters }, &target()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "expensify-connector.yaml",
                "policy-abc123.yaml",
                "policy-etc-passwd.yaml",
                "policy-etc-passwd-2.yaml"
            ]
        );
        for file in &files {
            crate::names::check_subdomain(file.file_name.trim_end_matches(".yaml")).unwrap();
            assert!(!file.yaml.contains("\nkind: Secret"), "{}", file.yaml);
        }
        let dir = tempfile::tempdir().unwrap();
        write_output_dir(&dir.path().join("out"), &files).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("out")).unwrap().count(),
            4
        );
    }
}
