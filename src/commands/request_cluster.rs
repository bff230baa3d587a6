//! `request`, `approve`, `deny`, `revoke` and `requests` against a cluster, as the user of
//! the kubeconfig: who they are comes from a `SelfSubjectReview` (the API server's own
//! answer, which admission enforces too), never from a flag.

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use rand::Rng;

use crate::api::{
    AccessDecision, AccessDecisionSpec, AccessRequest, AccessRequestSpec, DecisionKind, LocalRef,
    REASON_MAX_CHARS, RequestPhase,
};

/// Why the caller's identity cannot sign a request or a decision.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadIdentityError {
    #[error("asking the API server who you are (SelfSubjectReview) failed: {0}")]
    Review(String),
    #[error("the API server did not say who you are (SelfSubjectReview has no username)")]
    NoUsername,
    #[error(
        "you are the service account {0}: requests and decisions are signed by people; use your own kubeconfig"
    )]
    ServiceAccount(String),
    #[error(
        "your username {0:?} is not an email address: requests and decisions name people by email (if your cluster prefixes usernames, pass --username-prefix)"
    )]
    NotAnEmail(String),
}

/// The caller's email from the API server's answer: `username` without
/// `username_prefix`, refused for a service account or anything that is not an email.
pub fn identity_from_review(
    review: &SelfSubjectReview,
    username_prefix: Option<&str>,
) -> Result<String, ReadIdentityError> {
    let username = review
        .status
        .as_ref()
        .and_then(|s| s.user_info.as_ref())
        .and_then(|u| u.username.clone())
        .filter(|u| !u.is_empty())
        .ok_or(ReadIdentityError::NoUsername)?;
    if username.starts_with("system:serviceaccount:") {
        return Err(ReadIdentityError::ServiceAccount(username));
    }
    let email = username_prefix
        .and_then(|prefix| username.strip_prefix(prefix))
        .unwrap_or(&username);
    let email = crate::email::normalize(email);
    let looks_like_email = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c == ':');
    if !looks_like_email {
        return Err(ReadIdentityError::NotAnEmail(username));
    }
    Ok(email)
}

/// Who the kubeconfig's user is, as an email (see [`identity_from_review`]).
pub async fn whoami(
    client: &Client,
    username_prefix: Option<&str>,
) -> Result<String, ReadIdentityError> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| ReadIdentityError::Review(e.to_string()))?;
    identity_from_review(&review, username_prefix)
}

/// Most characters of the decider's local part in a decision's name.
const NAME_PART_MAX: usize = 30;
/// Random characters that keep two decisions by one person apart.
const NAME_SUFFIX_LEN: usize = 5;

/// `text` as a piece of a Kubernetes name: lowercase letters, digits and single `-`.
fn name_part(text: &str, max: usize) -> String {
    let mut part = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (part.is_empty() || part.ends_with('-'))) {
            part.push(c);
        }
        if part.len() >= max {
            break;
        }
    }
    part.trim_end_matches('-').to_string()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..NAME_SUFFIX_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `<first>-<local part of email>-<random>`, a valid name of at most 253 characters.
fn object_name(first: &str, email: &str, suffix: &str) -> String {
    let local = email.split('@').next().unwrap_or_default();
    let first = name_part(first, 253 - NAME_PART_MAX - NAME_SUFFIX_LEN - 2);
    let local = name_part(local, NAME_PART_MAX);
    [first.as_str(), local.as_str(), suffix]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("-")
}

/// A fresh name for a request on `access` for `email`: `<access>-<local part>-<random>`.
pub fn request_name(access: &str, email: &str) -> String {
    object_name(access, email, &random_suffix())
}

/// `request`: what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestArgs {
    pub namespace: String,
    /// The PolicyAccess whose rules apply.
    pub access: String,
    /// Who gets access; default: the caller.
    pub email: Option<String>,
    pub role: Option<String>,
    pub duration: String,
    pub reason: Option<String>,
    pub username_prefix: Option<String>,
}

/// Creates an AccessRequest signed by the caller; returns it as created.
pub async fn create_request(client: &Client, args: &RequestArgs) -> anyhow::Result<AccessRequest> {
    if args
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > REASON_MAX_CHARS)
    {
        anyhow::bail!("--reason is longer than {REASON_MAX_CHARS} characters");
    }
    crate::api::parse_duration(&args.duration)
        .map_err(|e| anyhow::anyhow!("--duration {:?}: {e}", args.duration))?;
    let requester = whoami(client, args.username_prefix.as_deref()).await?;
    let email = args
        .email
        .as_deref()
        .map_or_else(|| requester.clone(), crate::email::normalize);
    let spec = AccessRequestSpec {
        access_ref: LocalRef {
            name: args.access.clone(),
        },
        email: email.clone(),
        role: args.role.clone(),
        duration: args.duration.clone(),
        reason: args.reason.clone(),
        requester,
    };
    let name = object_name(&args.access, &email, &random_suffix());
    let mut request = AccessRequest::new(&name, spec);
    request.metadata.namespace = Some(args.namespace.clone());
    let api: Api<AccessRequest> = Api::namespaced(client.clone(), &args.namespace);
    api.create(&PostParams::default(), &request)
        .await
        .with_context(|| format!("creating AccessRequest {}/{name}", args.namespace))
}

/// `approve`, `deny`, `revoke`: the decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecideArgs {
    pub namespace: String,
    /// The AccessRequest.
    pub request: String,
    pub comment: Option<String>,
    /// Groups the caller decides as (checked at admission against theirs).
    pub groups: Vec<String>,
    pub username_prefix: Option<String>,
}

/// Creates an AccessDecision signed by the caller, named
/// `<request>-<caller's local part>-<random>`; returns it as created.
pub async fn decide(
    client: &Client,
    decision: DecisionKind,
    args: &DecideArgs,
) -> anyhow::Result<AccessDecision> {
    if args
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > REASON_MAX_CHARS)
    {
        anyhow::bail!("--comment is longer than {REASON_MAX_CHARS} characters");
    }
    let decided_by = whoami(client, args.username_prefix.as_deref()).await?;
    let name = object_name(&args.request, &decided_by, &random_suffix());
    let spec = AccessDecisionSpec {
        request_ref: LocalRef {
            name: args.request.clone(),
        },
        decision,
        decided_by,
        groups: args.groups.clone(),
        comment: args.comment.clone(),
    };
    let mut object = AccessDecision::new(&name, spec);
    object.metadata.namespace = Some(args.namespace.clone());
    let api: Api<AccessDecision> = Api::namespaced(client.clone(), &args.namespace);
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating AccessDecision {}/{name}", args.namespace))
}

/// How `requests` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

/// `requests`: every AccessRequest in `namespace` (every namespace when `None`).
pub async fn list_requests(
    client: &Client,
    namespace: Option<&str>,
    format: ListFormat,
) -> anyhow::Result<String> {
    let api: Api<AccessRequest> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .context("listing AccessRequests")?;
    let mut items = list.items;
    items.sort_by_key(|r| (r.namespace(), r.name_any()));
    Ok(match format {
        ListFormat::Table => requests_table(&items),
        ListFormat::Json => format!("{}\n", serde_json::to_string_pretty(&items)?),
        ListFormat::Yaml => serde_saphyr::to_string(&items)?,
    })
}

/// What a request waits for, or holds until when.
fn standing(request: &AccessRequest) -> String {
    let Some(status) = &request.status else {
        return "not seen by the controller yet".to_string();
    };
    match status.phase {
        RequestPhase::Pending => {
            let required = status.approvals_required.unwrap_or(1);
            let approvers = if status.approvers.is_empty() {
                "the connector's owners".to_string()
            } else {
                status.approvers.join(", ")
            };
            format!(
                "approvals {}/{required} from {approvers}",
                status.approvals.len()
            )
        }
        RequestPhase::Active => status
            .expires_at
            .as_ref()
            .map_or_else(|| "granting".to_string(), |t| format!("ends {}", t.0)),
        _ => status
            .message
            .clone()
            .or_else(|| status.reason.clone())
            .unwrap_or_default(),
    }
}

/// One line per request: who, what, where it stands.
pub fn requests_table(requests: &[AccessRequest]) -> String {
    let rows: Vec<[String; 6]> = requests
        .iter()
        .map(|r| {
            [
                format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()),
                r.status
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |s| s.phase.to_string()),
                r.spec.email.clone(),
                r.spec.role.clone().unwrap_or_else(|| "user".to_string()),
                r.spec.duration.clone(),
                standing(r),
            ]
        })
        // Every cell holds someone's text (an email, a reason in a message): nothing in it
        // may act on the reader's terminal.
        .map(|row: [String; 6]| row.map(|cell| crate::sanitize::terminal(&cell)))
        .collect();
    let header = [
        "REQUEST",
        "PHASE",
        "EMAIL",
        "ROLE",
        "DURATION",
        "WAITING FOR / ENDS",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.push('\n');
        text
    };
    let mut table = line(&header.map(str::to_string));
    for row in &rows {
        table.push_str(&line(row));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(username: &str) -> SelfSubjectReview {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}, "status": {"userInfo": {"username": username, "groups": ["system:authenticated"]}}
        }))
        .unwrap()
    }

    #[test]
    fn the_identity_is_an_email_without_the_prefix_and_never_a_service_account() {
        assert_eq!(
            identity_from_review(&review("oidc:Alice@Acme.Example"), Some("oidc:")),
            Ok("alice@acme.example".to_string())
        );
        assert_eq!(
            identity_from_review(&review("bob@acme.example"), Some("oidc:")),
            Ok("bob@acme.example".to_string())
        );
        assert!(matches!(
            identity_from_review(&review("system:serviceaccount:ops:ci"), None),
            Err(ReadIdentityError::ServiceAccount(_))
        ));
        assert!(matches!(
            identity_from_review(&review("kubernetes-admin"), None),
            Err(ReadIdentityError::NotAnEmail(_))
        ));
        assert!(matches!(
            identity_from_review(&review("oidc:alice@acme.example"), None),
            Err(ReadIdentityError::NotAnEmail(_))
        ));
        assert_eq!(
            identity_from_review(&SelfSubjectReview::default(), None),
            Err(ReadIdentityError::NoUsername)
        );
    }

    /// review3 (expected to FAIL): `requests` prints `spec.email` (any requester's text:
    /// the CRD gives it no pattern) into the approver's terminal as is, so escape sequences
    /// (an OSC 8 hyperlink, a screen clear, a line rewrite) reach it.
    #[test]
    fn review3_the_requests_table_prints_no_control_characters() {
        let request: AccessRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": "r1", "namespace": "finance"},
            "spec": {"accessRef": {"name": "books"},
                     "email": "\u{1b}[2J\u{1b}]8;;https://evil.example\u{7}approve-me\u{1b}]8;;\u{7}@acme.example",
                     "role": "admin", "duration": "4h", "reason": "x",
                     "requester": "mallory@acme.example"}
        }))
        .unwrap();
        let table = requests_table(&[request]);
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "control characters reach the terminal: {table:?}"
        );
    }

    #[test]
    fn names_are_valid_kubernetes_names() {
        assert_eq!(
            object_name("db-access", "Jane.Doe+ops@acme.example", "x1y2z"),
            "db-access-jane-doe-ops-x1y2z"
        );
        let long = object_name(
            &"a".repeat(400),
            &format!("{}@e.example", "b".repeat(99)),
            "x1y2z",
        );
        assert!(long.len() <= 253, "{}", long.len());
        assert!(long.ends_with(&format!("-{}-x1y2z", "b".repeat(NAME_PART_MAX))));
        assert_eq!(random_suffix().len(), NAME_SUFFIX_LEN);
    }
}
