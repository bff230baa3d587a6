//! The Integration Server wire format: job descriptions out, lenient responses in.
//!
//! Everything here is pure: it builds JSON and classifies bytes, so the recorded real
//! responses in `tests/fixtures/` can be parsed byte for byte without a server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::credentials::Credentials;
use super::error::ErrorKind;

/// The form field that carries the job description.
pub const JOB_FIELD: &str = "requestJobDescription";
/// The form field that carries the employee feed.
pub const DATA_FIELD: &str = "data";

/// A policy role as Expensify's employee updater accepts it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Default,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Auditor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses a wire role; `None` for anything Expensify may grow that we do not manage.
    pub fn parse(text: &str) -> Option<Role> {
        // Compared in place: the planner parses a role per roster row.
        let text = text.trim();
        [Role::User, Role::Auditor, Role::Admin]
            .into_iter()
            .find(|role| text.eq_ignore_ascii_case(role.as_str()))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `policyList`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    #[serde(deserialize_with = "lenient_string")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// The plan: `team`, `corporate`, `free`, … (wire `type`).
    #[serde(rename = "type", default, deserialize_with = "lenient_string")]
    pub plan: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub owner: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub output_currency: String,
    /// The caller's own role on this policy (wire `role`).
    #[serde(rename = "role", default, deserialize_with = "lenient_string")]
    pub caller_role: String,
}

/// One entry of `policyInfo.<id>.employees`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RosterEntry {
    #[serde(deserialize_with = "lenient_string")]
    pub email: String,
    /// Kept raw: a role this client does not know must be reported, not dropped.
    #[serde(default, deserialize_with = "lenient_string")]
    pub role: String,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub submits_to: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub forwards_to: Option<String>,
    #[serde(
        rename = "employeeID",
        default,
        deserialize_with = "lenient_opt_string"
    )]
    pub employee_id: Option<String>,
}

impl RosterEntry {
    pub fn known_role(&self) -> Option<Role> {
        Role::parse(&self.role)
    }
}

/// One record of the employee updater feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeRecord {
    pub employee_email: String,
    pub manager_email: String,
    #[serde(rename = "policyID")]
    pub policy_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(rename = "employeeID", skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_terminated: bool,
}

impl EmployeeRecord {
    /// Add `email` to `policy_id` with `role`, or change their role there.
    pub fn grant(
        email: impl Into<String>,
        policy_id: impl Into<String>,
        role: Role,
        manager_email: impl Into<String>,
        employee_id: Option<String>,
    ) -> Self {
        Self {
            employee_email: email.into(),
            manager_email: manager_email.into(),
            policy_id: policy_id.into(),
            role: Some(role),
            employee_id,
            is_terminated: false,
        }
    }

    /// Remove `email` from `policy_id` only (`isTerminated`, never
    /// `shouldRemoveFromUnassignedPolicies`).
    pub fn revoke(
        email: impl Into<String>,
        policy_id: impl Into<String>,
        manager_email: impl Into<String>,
        employee_id: Option<String>,
    ) -> Self {
        Self {
            employee_email: email.into(),
            manager_email: manager_email.into(),
            policy_id: policy_id.into(),
            role: None,
            employee_id,
            is_terminated: true,
        }
    }
}

/// A record Expensify did not apply, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SkippedEmployee {
    #[serde(default, deserialize_with = "lenient_string")]
    pub email: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: String,
}

/// What one or more updater calls answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOutcome {
    pub dry_run: bool,
    pub updated_employees_count: i64,
    /// policy id → emails added (`diff.diffToAdd`).
    pub added: BTreeMap<String, Vec<String>>,
    /// policy id → emails removed (`diff.diffToRemove`).
    pub removed: BTreeMap<String, Vec<String>>,
    pub skipped: Vec<SkippedEmployee>,
    /// Undocumented; recorded on successful adds too, so it is reported, not trusted.
    pub failed_policies: Vec<String>,
}

impl UpdateOutcome {
    pub fn merge(&mut self, other: UpdateOutcome) {
        self.dry_run |= other.dry_run;
        self.updated_employees_count += other.updated_employees_count;
        for (policy, emails) in other.added {
            self.added.entry(policy).or_default().extend(emails);
        }
        for (policy, emails) in other.removed {
            self.removed.entry(policy).or_default().extend(emails);
        }
        self.skipped.extend(other.skipped);
        self.failed_policies.extend(other.failed_policies);
    }
}

fn credentials_json(credentials: &Credentials) -> Value {
    json!({
        "partnerUserID": credentials.partner_user_id(),
        "partnerUserSecret": credentials.expose_secret(),
    })
}

/// `get` / `policyList`.
pub fn policy_list_job(credentials: &Credentials, admin_only: bool) -> String {
    json!({
        "type": "get",
        "credentials": credentials_json(credentials),
        "inputSettings": {"type": "policyList", "adminOnly": admin_only},
    })
    .to_string()
}

/// `get` / `policy` with the employee roster of every id given.
pub fn roster_job(credentials: &Credentials, policy_ids: &[String]) -> String {
    json!({
        "type": "get",
        "credentials": credentials_json(credentials),
        "inputSettings": {"type": "policy", "fields": ["employees"], "policyIDList": policy_ids},
    })
    .to_string()
}

/// `update` / `employees`; `dataSource`, `dry-run` and `shouldFixApprovalChains` are
/// siblings of `inputSettings` (nested, Expensify silently ignores them).
pub fn employee_update_job(credentials: &Credentials, dry_run: bool) -> String {
    json!({
        "type": "update",
        "credentials": credentials_json(credentials),
        "inputSettings": {"type": "employees", "entity": "generic"},
        "dataSource": "request",
        "dry-run": dry_run,
        "shouldFixApprovalChains": false,
    })
    .to_string()
}

/// The `data` field: a bare JSON array, the shape of the current documentation.
pub fn employee_feed(records: &[EmployeeRecord]) -> String {
    // Serializing plain strings and bools cannot fail; an empty array is the safe fallback.
    serde_json::to_string(records).unwrap_or_else(|_| "[]".to_string())
}

/// Longest stretch of a server message kept in an error.
const MESSAGE_LIMIT: usize = 300;

/// A scrubber for server text: removes the secret, in every encoding, before anything
/// is cut (a cut made first could leave a prefix of the secret behind).
pub type Scrub<'a> = &'a dyn Fn(&str) -> String;

/// `text` scrubbed, then cut to [`MESSAGE_LIMIT`] characters.
pub(super) fn short(text: &str, scrub: Scrub<'_>) -> String {
    let scrubbed = scrub(text);
    let text = scrubbed.trim();
    if text.chars().count() <= MESSAGE_LIMIT {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MESSAGE_LIMIT).collect();
        format!("{cut}…")
    }
}

fn response_code(body: &Value) -> Option<u16> {
    match body.get("responseCode")? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn response_message(body: &Value, scrub: Scrub<'_>) -> String {
    match body.get("responseMessage") {
        Some(Value::String(s)) => short(s, scrub),
        Some(other) if !other.is_null() => short(&other.to_string(), scrub),
        _ => "(no message)".to_string(),
    }
}

/// Decides what an answer means: the body's `responseCode` first, the HTTP status
/// second, the content type never. `Ok` carries the decoded JSON body of a success.
/// For text that holds no secret (recorded fixtures); the client uses [`classify_scrubbed`].
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Value, ErrorKind> {
    classify_scrubbed(status, retry_after, body, &|text: &str| text.to_string())
}

/// [`classify`], with every server message passed through `scrub` before it is cut.
pub fn classify_scrubbed(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    scrub: Scrub<'_>,
) -> Result<Value, ErrorKind> {
    let parsed: Option<Value> = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(serde_json::Value::is_object);
    if let Some(json) = parsed
        && let Some(code) = response_code(&json)
    {
        let message = response_message(&json, scrub);
        return match code {
            200 | 207 => Ok(json),
            401 | 407 => Err(ErrorKind::CredentialsRejected { code, message }),
            403 => Err(ErrorKind::PermissionDenied { message }),
            404 | 410 => Err(ErrorKind::InvalidRequest { code, message }),
            429 | 503 => Err(ErrorKind::RateLimited {
                message,
                retry_after,
            }),
            _ if (500..600).contains(&status) => Err(ErrorKind::Server { status, message }),
            _ => Err(ErrorKind::Refused { code, message }),
        };
    }
    let text = String::from_utf8_lossy(body);
    let message = if text.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        short(&text, scrub)
    };
    match status {
        401 => Err(ErrorKind::CredentialsRejected { code: 401, message }),
        403 => Err(ErrorKind::PermissionDenied { message }),
        400 | 404 | 410 => Err(ErrorKind::InvalidRequest {
            code: status,
            message,
        }),
        429 => Err(ErrorKind::RateLimited {
            message,
            retry_after,
        }),
        500..=599 => Err(ErrorKind::Server { status, message }),
        _ => Err(ErrorKind::Undecodable {
            message: format!("HTTP {status} without a JSON responseCode: {message}"),
        }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyListBody {
    policy_list: Vec<PolicySummary>,
}

/// Decodes a successful `policyList` answer.
pub fn decode_policy_list(body: Value) -> Result<Vec<PolicySummary>, ErrorKind> {
    serde_json::from_value::<PolicyListBody>(body)
        .map(|decoded| decoded.policy_list)
        .map_err(|e| ErrorKind::Undecodable {
            message: format!("policyList: {e}"),
        })
}

/// Decodes a successful `policy` answer into policy id → roster, insisting that every
/// requested id is present with an `employees` list: a missing roster is an error,
/// never an empty policy (an empty read must not look like "everyone left").
pub fn decode_rosters(
    body: &Value,
    requested: &[String],
) -> Result<BTreeMap<String, Vec<RosterEntry>>, ErrorKind> {
    let Some(info) = body.get("policyInfo").and_then(Value::as_object) else {
        return Err(ErrorKind::Undecodable {
            message: "policy getter answer has no policyInfo object".to_string(),
        });
    };
    let mut rosters = BTreeMap::new();
    for id in requested {
        let employees = info
            .get(id)
            .and_then(|policy| policy.get("employees"))
            .ok_or_else(|| ErrorKind::Undecodable {
                message: format!("policyInfo has no employees for requested policy {id}"),
            })?;
        let roster: Vec<RosterEntry> =
            serde_json::from_value(employees.clone()).map_err(|e| ErrorKind::Undecodable {
                message: format!("employees of policy {id}: {e}"),
            })?;
        rosters.insert(id.clone(), roster);
    }
    Ok(rosters)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateDiff {
    #[serde(default, deserialize_with = "lenient_email_map")]
    diff_to_add: BTreeMap<String, Vec<String>>,
    #[serde(default, deserialize_with = "lenient_email_map")]
    diff_to_remove: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    #[serde(rename = "dry-run", default, deserialize_with = "lenient_bool")]
    dry_run: bool,
    #[serde(default, deserialize_with = "lenient_i64")]
    updated_employees_count: i64,
    #[serde(default, deserialize_with = "lenient_diff")]
    diff: UpdateDiff,
    #[serde(default, deserialize_with = "lenient_vec")]
    skipped_employees: Vec<SkippedEmployee>,
    #[serde(default, deserialize_with = "lenient_string_vec")]
    failed_policies: Vec<String>,
}

/// Decodes a successful employee updater answer.
pub fn decode_update(body: Value) -> Result<UpdateOutcome, ErrorKind> {
    let decoded: UpdateBody = serde_json::from_value(body).map_err(|e| ErrorKind::Undecodable {
        message: format!("employee updater answer: {e}"),
    })?;
    Ok(UpdateOutcome {
        dry_run: decoded.dry_run,
        updated_employees_count: decoded.updated_employees_count,
        added: decoded.diff.diff_to_add,
        removed: decoded.diff.diff_to_remove,
        skipped: decoded.skipped_employees,
        failed_policies: decoded.failed_policies,
    })
}

// Lenient decoders: real answers carry numbers as strings, strings as numbers, empty
// maps as `[]` and nulls where a value is expected.

fn scalar_to_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(scalar_to_string(Value::deserialize(d)?).unwrap_or_default())
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(scalar_to_string(Value::deserialize(d)?).filter(|s| !s.is_empty()))
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::String(s) => matches!(s.trim(), "true" | "1"),
        Value::Number(n) => n.as_i64() == Some(1),
        _ => false,
    })
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().unwrap_or_default(),
        Value::String(s) => s.trim().parse().unwrap_or_default(),
        _ => 0,
    })
}

fn lenient_string_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items.into_iter().filter_map(scalar_to_string).collect(),
        _ => Vec::new(),
    })
}

fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| serde_json::from_value(item).map_err(serde::de::Error::custom))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

fn lenient_email_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(map) => map
            .into_iter()
            .map(|(policy, emails)| {
                let emails = match emails {
                    Value::Array(items) => items.into_iter().filter_map(scalar_to_string).collect(),
                    _ => Vec::new(),
                };
                (policy, emails)
            })
            .collect(),
        _ => BTreeMap::new(),
    })
}

fn lenient_diff<'de, D: Deserializer<'de>>(d: D) -> Result<UpdateDiff, D::Error> {
    match Value::deserialize(d)? {
        value @ Value::Object(_) => serde_json::from_value(value).map_err(serde::de::Error::custom),
        _ => Ok(UpdateDiff::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials::new("aa_admin_acme_com", "topsecret").unwrap()
    }

    #[test]
    fn update_job_places_flags_beside_input_settings() {
        let job: Value = serde_json::from_str(&employee_update_job(&credentials(), true)).unwrap();
        assert_eq!(job["type"], "update");
        assert_eq!(
            job["inputSettings"],
            json!({"type": "employees", "entity": "generic"})
        );
        assert_eq!(job["dataSource"], "request");
        assert_eq!(job["dry-run"], true);
        assert_eq!(job["shouldFixApprovalChains"], false);
        assert!(job.get("shouldRemoveFromUnassignedPolicies").is_none());
    }

    #[test]
    fn feed_records_carry_only_what_is_set() {
        let feed = employee_feed(&[
            EmployeeRecord::grant("a@x.com", "P1", Role::Admin, "o@x.com", None),
            EmployeeRecord::revoke("b@x.com", "P1", "o@x.com", Some("E-1".into())),
        ]);
        let value: Value = serde_json::from_str(&feed).unwrap();
        assert_eq!(
            value,
            json!([
                {"employeeEmail": "a@x.com", "managerEmail": "o@x.com", "policyID": "P1", "role": "admin"},
                {"employeeEmail": "b@x.com", "managerEmail": "o@x.com", "policyID": "P1", "employeeID": "E-1", "isTerminated": true}
            ])
        );
    }

    #[test]
    fn body_code_wins_over_http_status() {
        let refused = classify(200, None, br#"{"responseCode":410,"responseMessage":"Required parameter 'policyIDList' is missing"}"#);
        assert!(
            matches!(refused, Err(ErrorKind::InvalidRequest { code: 410, ref message }) if message.contains("policyIDList"))
        );
        let ok = classify(200, None, br#"{"responseCode":"200","x":1}"#);
        assert!(ok.is_ok());
        let partial = classify(200, None, br#"{"responseCode":207}"#);
        assert!(partial.is_ok());
    }

    #[test]
    fn classifies_every_documented_code() {
        let case = |status: u16, body: &str| classify(status, None, body.as_bytes()).unwrap_err();
        assert!(matches!(
            case(
                200,
                r#"{"responseCode":401,"responseMessage":"Authentication error"}"#
            ),
            ErrorKind::CredentialsRejected { code: 401, .. }
        ));
        assert!(matches!(
            case(
                200,
                r#"{"responseCode":407,"responseMessage":"Authentication failed"}"#
            ),
            ErrorKind::CredentialsRejected { code: 407, .. }
        ));
        assert!(matches!(
            case(401, "Unauthorized"),
            ErrorKind::CredentialsRejected { code: 401, .. }
        ));
        assert!(matches!(
            case(200, r#"{"responseCode":403,"responseMessage":"no"}"#),
            ErrorKind::PermissionDenied { .. }
        ));
        assert!(matches!(
            case(403, "403 Forbidden"),
            ErrorKind::PermissionDenied { .. }
        ));
        assert!(matches!(
            case(
                200,
                r#"{"responseCode":404,"responseMessage":"Policy not found"}"#
            ),
            ErrorKind::InvalidRequest { code: 404, .. }
        ));
        assert!(matches!(
            case(
                429,
                r#"{"responseMessage":"Too many requests. Please try again later","responseCode":429}"#
            ),
            ErrorKind::RateLimited { .. }
        ));
        assert!(matches!(case(429, ""), ErrorKind::RateLimited { .. }));
        assert!(matches!(
            case(200, r#"{"responseCode":503}"#),
            ErrorKind::RateLimited { .. }
        ));
        assert!(matches!(
            case(502, "<html>Bad Gateway</html>"),
            ErrorKind::Server { status: 502, .. }
        ));
        assert!(matches!(
            case(500, "HTTP Status 500 - JSONObject text must begin with '{'"),
            ErrorKind::Server { status: 500, .. }
        ));
        assert!(matches!(
            case(
                200,
                r#"{"responseCode":500,"responseMessage":"Not authorized to authenticate as user x@y.com"}"#
            ),
            ErrorKind::Refused { code: 500, .. }
        ));
        assert!(matches!(
            case(500, r#"{"responseCode":500,"responseMessage":"boom"}"#),
            ErrorKind::Server { status: 500, .. }
        ));
        assert!(matches!(
            case(
                200,
                r#"{"responseCode":666,"responseMessage":"Rule already exists"}"#
            ),
            ErrorKind::Refused { code: 666, .. }
        ));
        assert!(matches!(
            case(200, "report.csv"),
            ErrorKind::Undecodable { .. }
        ));
        assert!(matches!(
            case(200, r#"{"policyList":[]}"#),
            ErrorKind::Undecodable { .. }
        ));
    }

    #[test]
    fn transient_classes_are_exactly_the_retryable_ones() {
        assert!(
            ErrorKind::RateLimited {
                message: String::new(),
                retry_after: None
            }
            .is_transient()
        );
        assert!(
            ErrorKind::Server {
                status: 503,
                message: String::new()
            }
            .is_transient()
        );
        assert!(ErrorKind::Timeout(Duration::from_secs(1)).is_transient());
        assert!(
            ErrorKind::Transport {
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !ErrorKind::CredentialsRejected {
                code: 401,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !ErrorKind::Refused {
                code: 500,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !ErrorKind::InvalidRequest {
                code: 410,
                message: String::new()
            }
            .is_transient()
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let long = format!(
            r#"{{"responseCode":500,"responseMessage":"{}"}}"#,
            "x".repeat(1000)
        );
        let ErrorKind::Refused { message, .. } = classify(200, None, long.as_bytes()).unwrap_err()
        else {
            panic!("expected Refused");
        };
        assert!(message.chars().count() <= MESSAGE_LIMIT + 1);
    }

    #[test]
    fn the_secret_is_scrubbed_before_the_cut() {
        let credentials = Credentials::new("id", "0123456789abcdef/secret").unwrap();
        let scrub = |text: &str| credentials.scrub(text);
        // An echoed request whose secret straddles the cut, raw and form-encoded.
        for secret in ["0123456789abcdef/secret", "0123456789abcdef%2Fsecret"] {
            for status in [200, 500] {
                let body = format!(
                    r#"{{"responseCode":500,"responseMessage":"{}{secret} and more"}}"#,
                    "x".repeat(MESSAGE_LIMIT - 8)
                );
                let kind = classify_scrubbed(status, None, body.as_bytes(), &scrub).unwrap_err();
                let shown = kind.to_string();
                assert!(!shown.contains("01234567"), "{shown}");
                let text = format!("{}{secret} and more", "y".repeat(MESSAGE_LIMIT - 5));
                let kind = classify_scrubbed(502, None, text.as_bytes(), &scrub).unwrap_err();
                assert!(!kind.to_string().contains("01234"), "{kind}");
            }
        }
    }

    #[test]
    fn missing_roster_is_an_error_not_an_empty_policy() {
        let body = json!({"responseCode": 200, "policyInfo": {"A": {"employees": []}}});
        let err = decode_rosters(&body, &["A".into(), "B".into()]).unwrap_err();
        assert!(matches!(err, ErrorKind::Undecodable { ref message } if message.contains('B')));
    }

    #[test]
    fn php_style_empty_arrays_decode_as_empty_maps() {
        let body =
            json!({"responseCode":200,"updatedEmployeesCount":"2","diff":[],"skippedEmployees":{}});
        let outcome = decode_update(body).unwrap();
        assert_eq!(outcome.updated_employees_count, 2);
        assert!(outcome.added.is_empty() && outcome.skipped.is_empty());
    }
}
