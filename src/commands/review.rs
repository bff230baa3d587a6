//! `review PATH`: an access review of every person × policy × role, with the objects that
//! ask for it (or `unmanaged`), as CSV, JSON or Markdown. PATH is the repository or one
//! manifest file of it (only the policies its objects are about are shown); `-n` shows
//! the policies of one namespace's objects.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::common::{FileArgs, NamespaceArgs, selection};
use crate::api::RequestPhase;
use crate::email;
use crate::files::report::RequestSeen;
use crate::files::select::Picked;
use crate::files::{PassReport, Run};
use crate::reconcile::ObjectKey;
use crate::sanitize;
use crate::sync::SyncReport;

/// Arguments of `review`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    /// `markdown` (a table for a review ticket), `csv` (a spreadsheet) or `json`.
    /// `--format` is the old name, still accepted.
    #[arg(short = 'o', long, alias = "format", value_name = "FORMAT", value_enum, default_value_t = ReviewFormat::Markdown)]
    pub output: ReviewFormat,
}

/// Output formats of `review`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewFormat {
    Csv,
    Json,
    Markdown,
}

/// One person on one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRow {
    pub connector: String,
    /// `policyID` in every format, as in the CRD status.
    #[serde(rename = "policyID")]
    pub policy_id: String,
    pub policy_name: String,
    pub email: String,
    pub role: String,
    /// Objects that ask for this person on this policy, or `unmanaged`.
    pub managed_by: String,
    /// `owner`, `admin` (the connector's account), `protected`, or empty.
    pub note: String,
    /// The connector's owners (`spec.owners`), space-separated: who answers for this
    /// access in the review.
    pub connector_owners: String,
    /// The active AccessRequests that grant this access (`namespace/name`), space-separated;
    /// empty when none does. The `request*` fields below are theirs, `; `-separated.
    pub requests: String,
    /// Why each was asked for (cut to 200 characters).
    pub request_reasons: String,
    /// The approvers each one's rules name.
    pub request_approvers: String,
    /// Who approved each (`merge` in file mode: the merge is the approval).
    pub request_decided_by: String,
    /// When each ends (`expiresAt`).
    pub request_ends: String,
}

/// The active requests on one person and policy, as the review's `request*` fields.
#[derive(Debug, Default)]
struct ActiveRequests {
    keys: Vec<ObjectKey>,
    reasons: Vec<String>,
    approvers: Vec<String>,
    decided_by: Vec<String>,
    ends: Vec<String>,
}

impl ActiveRequests {
    fn add(&mut self, request: &RequestSeen) {
        self.keys.push(request.key.clone());
        self.reasons
            .push(request.shown_reason().unwrap_or_default());
        self.approvers.push(request.status.approvers.join(" "));
        self.decided_by.push(request.decided_by());
        self.ends.push(request.ends().unwrap_or_default());
    }
}

/// policy id -> email -> the active requests granting that person there.
fn active_requests(report: &PassReport) -> BTreeMap<(String, String), ActiveRequests> {
    let mut active: BTreeMap<(String, String), ActiveRequests> = BTreeMap::new();
    for request in report.requests_seen() {
        if request.status.phase != RequestPhase::Active {
            continue;
        }
        let Some(policy_id) = request.status.policy_id.clone() else {
            continue;
        };
        active
            .entry((policy_id, email::normalize(&request.spec.email)))
            .or_default()
            .add(&request);
    }
    active
}

/// The rows of a review, from a read-only pass.
pub fn review_rows(report: &PassReport, now: Timestamp) -> Vec<ReviewRow> {
    let mut rows = Vec::new();
    let active = active_requests(report);
    for sync in &report.syncs {
        let Some(connector) = report
            .manifests
            .connectors
            .iter()
            .find(|c| c.key == sync.connector)
        else {
            continue;
        };
        let askers = askers_by_policy(report, sync, now);
        let connector_owners = sync.connector_status.owners.join(" ");
        let admin = email::normalize(&connector.object.spec.admin_email);
        let protected: Vec<String> = connector
            .object
            .spec
            .protected_emails
            .iter()
            .map(|e| email::normalize(e))
            .collect();
        for policy in &sync.observed.policies {
            let owner = email::normalize(&policy.owner);
            for entry in sync.observed.rosters.get(&policy.id).into_iter().flatten() {
                let person = email::normalize(&entry.email);
                let requests = active.get(&(policy.id.clone(), person.clone()));
                let mut asking: Vec<String> = askers
                    .get(policy.id.as_str())
                    .and_then(|a| a.get(&person))
                    .cloned()
                    .unwrap_or_default();
                // A request asks for the person under its holder key, as `plan` says.
                asking.extend(
                    requests
                        .into_iter()
                        .flat_map(|r| &r.keys)
                        .map(|k| ObjectKey::for_request(k.namespace.clone(), &k.name).to_string()),
                );
                let managed_by = if asking.is_empty() {
                    "unmanaged".to_string()
                } else {
                    asking.join(" ")
                };
                let [keys, reasons, approvers, decided_by, ends] = request_cells(requests);
                rows.push(ReviewRow {
                    requests: keys,
                    request_reasons: reasons,
                    request_approvers: approvers,
                    request_decided_by: decided_by,
                    request_ends: ends,
                    connector: sync.connector.to_string(),
                    policy_id: policy.id.clone(),
                    policy_name: policy.name.clone(),
                    note: standing(&person, &owner, &admin, &protected).to_string(),
                    email: person,
                    role: entry.role.clone(),
                    managed_by,
                    connector_owners: connector_owners.clone(),
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        (&a.connector, &a.policy_name, &a.policy_id, &a.email).cmp(&(
            &b.connector,
            &b.policy_name,
            &b.policy_id,
            &b.email,
        ))
    });
    rows
}

/// Why a person on a policy is never changed: `owner`, `admin`, `protected`, or empty.
fn standing(person: &str, owner: &str, admin: &str, protected: &[String]) -> &'static str {
    if person == owner {
        "owner"
    } else if person == admin {
        "admin"
    } else if protected.iter().any(|p| p == person) {
        "protected"
    } else {
        ""
    }
}

/// The request columns of a row: the requests' keys, reasons, approvers, deciders and ends.
fn request_cells(requests: Option<&ActiveRequests>) -> [String; 5] {
    let joined = |field: fn(&ActiveRequests) -> &Vec<String>| {
        requests.map(|r| field(r).join("; ")).unwrap_or_default()
    };
    let keys = requests
        .map(|r| {
            let keys: Vec<String> = r.keys.iter().map(ToString::to_string).collect();
            keys.join(" ")
        })
        .unwrap_or_default();
    [
        keys,
        joined(|r| &r.reasons),
        joined(|r| &r.approvers),
        joined(|r| &r.decided_by),
        joined(|r| &r.ends),
    ]
}

/// policy id -> email -> the objects asking for that person now (expired entries left out).
fn askers_by_policy<'a>(
    report: &PassReport,
    sync: &'a SyncReport,
    now: Timestamp,
) -> BTreeMap<&'a str, BTreeMap<String, Vec<String>>> {
    let mut askers: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for loaded in &report.manifests.accesses {
        let Some(policy_id) = sync
            .plan
            .objects
            .get(&loaded.key)
            .and_then(|p| p.policy_id.as_deref())
        else {
            continue;
        };
        for member in &loaded.object.spec.members {
            let expired = member
                .expires_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| t <= now);
            if !expired {
                askers
                    .entry(policy_id)
                    .or_default()
                    .entry(email::normalize(&member.email))
                    .or_default()
                    .push(loaded.key.to_string());
            }
        }
    }
    askers
}

/// Renders the rows.
pub fn render(rows: &[ReviewRow], format: ReviewFormat) -> String {
    const HEADER: [&str; 13] = [
        "connector",
        "policyID",
        "policyName",
        "email",
        "role",
        "managedBy",
        "note",
        "connectorOwners",
        "requests",
        "requestReasons",
        "requestApprovers",
        "requestDecidedBy",
        "requestEnds",
    ];
    let fields = |r: &ReviewRow| {
        [
            r.connector.clone(),
            r.policy_id.clone(),
            r.policy_name.clone(),
            r.email.clone(),
            r.role.clone(),
            r.managed_by.clone(),
            r.note.clone(),
            r.connector_owners.clone(),
            r.requests.clone(),
            r.request_reasons.clone(),
            r.request_approvers.clone(),
            r.request_decided_by.clone(),
            r.request_ends.clone(),
        ]
    };
    match format {
        ReviewFormat::Json => serde_json::to_string_pretty(rows).unwrap_or_default() + "\n",
        ReviewFormat::Csv => {
            let mut out = HEADER.join(",") + "\n";
            for row in rows {
                out.push_str(
                    &fields(row)
                        .iter()
                        .map(|f| sanitize::csv_cell(f))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                out.push('\n');
            }
            out
        }
        ReviewFormat::Markdown => {
            let mut out = format!(
                "| {} |\n|{}\n",
                HEADER.join(" | "),
                " --- |".repeat(HEADER.len())
            );
            for row in rows {
                let cells: Vec<String> =
                    fields(row).iter().map(|f| sanitize::markdown(f)).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            let unmanaged = rows.iter().filter(|r| r.managed_by == "unmanaged").count();
            out.push_str(&format!(
                "\n{} access(es), {unmanaged} unmanaged.\n",
                rows.len()
            ));
            out
        }
    }
}

/// The rows a selection shows: every row of a connector picked itself (its manifest is the
/// file given, or it is in the namespace given), and the rows of the policies that the
/// PolicyAccess objects shown select.
pub fn selected_rows(rows: Vec<ReviewRow>, report: &PassReport, picked: &Picked) -> Vec<ReviewRow> {
    let connectors: BTreeSet<String> = picked.connectors.iter().map(ToString::to_string).collect();
    let mut policies: BTreeSet<(String, String)> = BTreeSet::new();
    for sync in &report.syncs {
        for key in &picked.accesses {
            if let Some(id) = sync.plan.objects.get(key).and_then(|p| p.policy_id.clone()) {
                policies.insert((sync.connector.to_string(), id));
            }
        }
    }
    rows.into_iter()
        .filter(|row| {
            connectors.contains(&row.connector)
                || policies.contains(&(row.connector.clone(), row.policy_id.clone()))
        })
        .collect()
}

pub async fn run(args: ReviewArgs) -> anyhow::Result<i32> {
    let target = args.files.target()?;
    let mode = args.files.mode(&target)?;
    let report = mode.pass(Run::Plan).await?;
    let selection = selection(&target, &args.namespace, &mode, &report)?;
    let rows = review_rows(&report, Timestamp::now());
    let rows = if selection.is_everything() {
        rows
    } else {
        selected_rows(rows, &report, &selection.pick(&report))
    };
    out!("{}", render(&rows, args.output));
    let shown = selection.narrow(report);
    for sync in shown
        .syncs
        .iter()
        .filter(|s| s.connector_status.phase == crate::api::ConnectorPhase::Error)
    {
        eprintln!(
            "connector {} could not be read: {}",
            sync.connector,
            sanitize::terminal(sync.connector_status.message.as_deref().unwrap_or_default())
        );
    }
    Ok(i32::from(shown.has_errors()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile_row() -> ReviewRow {
        ReviewRow {
            connector: "finance/acme".into(),
            policy_id: "P1".into(),
            policy_name: "=HYPERLINK(\"https://evil.example\",\"x\")|@everyone\u{202e}<b>\nx"
                .into(),
            email: "-2+3@acme.example".into(),
            role: "@SUM(A1)".into(),
            managed_by: "unmanaged".into(),
            note: String::new(),
            connector_owners: "=cmd@acme.example".into(),
            requests: "finance/r1".into(),
            request_reasons: "=HYPERLINK(\"https://evil.example\")\r\n| x |".into(),
            request_approvers: "@approver@acme.example".into(),
            request_decided_by: "merge".into(),
            request_ends: "2030-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_text() {
        let csv = render(&[hostile_row()], ReviewFormat::Csv);
        let row = csv.split_once('\n').unwrap().1;
        assert_eq!(
            row,
            "finance/acme,P1,\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"x\"\")|@everyone\\u{202e}<b>\\nx\",'-2+3@acme.example,'@SUM(A1),unmanaged,,'=cmd@acme.example,finance/r1,\"'=HYPERLINK(\"\"https://evil.example\"\")\\r\\n| x |\",'@approver@acme.example,merge,2030-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn markdown_cells_cannot_break_the_table_mention_or_link() {
        let markdown = render(&[hostile_row()], ReviewFormat::Markdown);
        let row = markdown.lines().nth(2).unwrap();
        let unescaped_pipes = row
            .match_indices('|')
            .filter(|(i, _)| !row[..*i].ends_with('\\'))
            .count();
        assert_eq!(unescaped_pipes, 14, "{row}");
        for forbidden in ["@everyone", "https://", "<b>", "\u{202e}"] {
            assert!(!markdown.contains(forbidden), "{forbidden:?} in {markdown}");
        }
        assert_eq!(markdown.lines().count(), 5, "{markdown}");
    }

    #[test]
    fn json_keeps_a_hostile_name_exactly() {
        let json = render(&[hostile_row()], ReviewFormat::Json);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(rows[0]["policyName"], hostile_row().policy_name);
    }

    #[test]
    fn every_format_names_the_policy_id_column_alike() {
        let row = ReviewRow {
            connector: "finance/acme".into(),
            policy_id: "P1".into(),
            policy_name: "Finance".into(),
            email: "a@acme.example".into(),
            role: "user".into(),
            managed_by: "finance/team".into(),
            note: String::new(),
            connector_owners: "it@acme.example".into(),
            requests: String::new(),
            request_reasons: String::new(),
            request_approvers: String::new(),
            request_decided_by: String::new(),
            request_ends: String::new(),
        };
        for format in [
            ReviewFormat::Json,
            ReviewFormat::Csv,
            ReviewFormat::Markdown,
        ] {
            let shown = render(std::slice::from_ref(&row), format);
            assert!(!shown.contains("policyId"), "{format:?}: {shown}");
        }
        let json = render(std::slice::from_ref(&row), ReviewFormat::Json);
        assert!(json.contains("\"policyID\": \"P1\""), "{json}");
    }
}
