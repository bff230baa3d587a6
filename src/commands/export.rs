//! `export`: what Expensify has now, as manifests ready to commit: a connector and one
//! Authoritative PolicyAccess per policy. Applying them right after changes nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use kube::api::ObjectMeta;

use super::common::ClientArgs;
use crate::api::{
    AccessMode, ConnectorRef, DeletionPolicy, ExpensifyConnector, ExpensifyConnectorSpec,
    MemberSpec, PolicyAccess, PolicyAccessSpec, PolicySelector, SecretRef,
};
use crate::email;
use crate::expensify::DEFAULT_ENDPOINT;
use crate::files::CredentialSource;
use crate::reconcile::Observed;

/// Arguments of `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The Expensify account behind the credentials (the connector's adminEmail).
    #[arg(long, value_name = "EMAIL")]
    pub admin_email: String,
    /// Integration Server URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Name of the exported ExpensifyConnector.
    #[arg(long, value_name = "NAME", default_value = "expensify")]
    pub connector_name: String,
    /// Namespace of every exported object.
    #[arg(long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Secret the connector refers to (and, with --secrets-dir, where credentials are read).
    #[arg(long, value_name = "NAME", default_value = "expensify-credentials")]
    pub secret_name: String,
    /// Secrets laid out as DIR/<secret name>/<key>; else EXPENSIFY_PARTNER_USER_ID/SECRET.
    #[arg(long, value_name = "DIR", env = "EXPENSIFY_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What the exported objects are named and where they point.
#[derive(Debug, Clone)]
pub struct ExportTarget {
    pub connector_name: String,
    pub namespace: String,
    pub secret_name: String,
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

/// The manifests, as one multi-document YAML text.
pub fn export_yaml(observed: &Observed, target: &ExportTarget) -> anyhow::Result<String> {
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(target.namespace.clone()),
        ..ObjectMeta::default()
    };
    let connector = ExpensifyConnector {
        metadata: meta(&target.connector_name),
        spec: ExpensifyConnectorSpec {
            credentials_secret_ref: SecretRef {
                name: target.secret_name.clone(),
                user_id_key: "partnerUserID".into(),
                user_secret_key: "partnerUserSecret".into(),
            },
            endpoint: target.endpoint.clone(),
            admin_email: target.admin_email.clone(),
            sync_interval: "10m".into(),
            max_revocations_per_sync: 10,
            protected_emails: Vec::new(),
            allowed_namespaces: Vec::new(),
            suspend: false,
        },
        status: None,
    };
    let mut out = format!(
        "# Exported from Expensify by expensify-operator: {} policies.\n# Review, commit, then `plan` should report no changes.\n---\n",
        observed.policies.len()
    );
    out.push_str(&serde_saphyr::to_string(&connector).context("serializing the connector")?);
    let mut used = BTreeSet::new();
    let mut policies = observed.policies.clone();
    policies.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    for policy in policies {
        let Some(roster) = observed.rosters.get(&policy.id) else {
            continue;
        };
        let mut name = object_name(&policy.name);
        if !used.insert(name.clone()) {
            name = format!("{name}-{}", policy.id.to_ascii_lowercase());
            used.insert(name.clone());
        }
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
        let access = PolicyAccess {
            metadata: meta(&name),
            spec: PolicyAccessSpec {
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
                suspend: false,
                members,
            },
            status: None,
        };
        out.push_str(&format!(
            "---\n# {} ({}), owner {}\n",
            policy.name, policy.id, policy.owner
        ));
        out.push_str(&serde_saphyr::to_string(&access).context("serializing a PolicyAccess")?);
    }
    Ok(out)
}

pub async fn run(args: ExportArgs) -> anyhow::Result<i32> {
    let clients = args.client.clients()?;
    // The allowlist first, so credentials are not even loaded for a refused endpoint.
    clients.check_endpoint(&args.endpoint)?;
    let credentials = CredentialSource::SecretsDir(args.secrets_dir.clone()).find(&SecretRef {
        name: args.secret_name.clone(),
        user_id_key: "partnerUserID".into(),
        user_secret_key: "partnerUserSecret".into(),
    })?;
    let client = clients.client(&args.endpoint, credentials)?;
    let policies = client.list_policies(true).await?;
    let ids: Vec<String> = policies.iter().map(|p| p.id.clone()).collect();
    let rosters = client.read_rosters(&ids).await?;
    let target = ExportTarget {
        connector_name: args.connector_name,
        namespace: args.namespace,
        secret_name: args.secret_name,
        endpoint: args.endpoint,
        admin_email: args.admin_email,
    };
    let yaml = export_yaml(&Observed { policies, rosters }, &target)?;
    match args.output {
        Some(path) => {
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?
        }
        None => out!("{yaml}"),
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
}
