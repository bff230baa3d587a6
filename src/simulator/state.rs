//! The simulator's in-memory Expensify: accounts, policies, rosters, and the job handlers.
//!
//! Strict where Expensify is strict (see `shared/research/expensify-api.md`): a client
//! that passes against this is right against Expensify, as far as the evidence goes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::faults::{FaultConfig, Faults, ScriptedFault};
use super::seed::{Seed, SeedAccount, SeedEmployee, SeedPolicy};
use crate::email;
use crate::expensify::{Pacing, Role, WindowLog};

/// An answer to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimResponse {
    pub status: u16,
    pub body: String,
}

/// What the server does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Respond(SimResponse),
    /// Close the connection without answering.
    Drop,
    /// Send this answer only after the delay.
    Stall(SimResponse, std::time::Duration),
    /// Answer in a way no real server should (hostile-server tests).
    Hostile(HostileAnswer),
}

/// The hostile answers, which the HTTP side builds (they are headers and streams, not a
/// status and a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostileAnswer {
    /// HTTP 429 with this `Retry-After` value.
    RetryAfter(String),
    /// HTTP 200 and a body without end.
    EndlessBody,
    /// HTTP 200 and one byte per interval, without end.
    SlowDrip(std::time::Duration),
}

impl HostileAnswer {
    pub fn status(&self) -> u16 {
        match self {
            HostileAnswer::RetryAfter(_) => 429,
            HostileAnswer::EndlessBody | HostileAnswer::SlowDrip(_) => 200,
        }
    }
}

/// One line of the request log, readable at `GET /admin/requests`. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    /// `get/policyList`, `get/policy`, `update/employees`, or `invalid`.
    pub job: String,
    #[serde(rename = "partnerUserID", skip_serializing_if = "Option::is_none")]
    pub partner_user_id: Option<String>,
    /// `None` when the connection was dropped.
    pub http_status: Option<u16>,
    pub response_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Policies asked for (roster reads) or records sent (updates).
    pub items: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Totals since start (or the last reset), at `GET /admin/counters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub requests: u64,
    pub by_job: BTreeMap<String, u64>,
    pub by_response_code: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    pub rate_limited: u64,
    /// Records the employee updater applied (dry runs excluded).
    pub records_applied: u64,
}

#[derive(Debug, Clone)]
struct Member {
    role: Role,
    submits_to: String,
    employee_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Policy {
    id: String,
    name: String,
    plan: String,
    owner: String,
    output_currency: String,
    members: BTreeMap<String, Member>,
}

/// The whole simulated service.
#[derive(Debug)]
pub struct SimState {
    accounts: HashMap<String, SeedAccount>,
    policies: BTreeMap<String, Policy>,
    pacing: Pacing,
    windows: HashMap<String, WindowLog>,
    faults: Faults,
    log: VecDeque<RequestRecord>,
    counters: Counters,
    next_seq: u64,
}

/// Requests kept in the log; older ones are dropped first (counters keep counting).
const LOG_LIMIT: usize = 100_000;

const RATE_LIMIT_MESSAGE: &str = "Too many requests. Please try again later";

fn answer(code: u16, message: impl Into<String>) -> SimResponse {
    SimResponse {
        status: 200,
        body: json!({"responseMessage": message.into(), "responseCode": code}).to_string(),
    }
}

fn success(mut body: Map<String, Value>) -> SimResponse {
    body.insert("responseCode".to_string(), json!(200));
    SimResponse {
        status: 200,
        body: Value::Object(body).to_string(),
    }
}

/// What a request turned out to be, for the log.
#[derive(Debug, Default)]
struct JobInfo {
    job: String,
    partner_user_id: Option<String>,
    items: usize,
    dry_run: bool,
}

fn lenient_bool(value: Option<&Value>, default: bool) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.trim(), "true" | "1"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => default,
    }
}

impl SimState {
    pub fn from_seed(seed: &Seed) -> Self {
        let accounts = seed
            .accounts
            .iter()
            .map(|a| {
                let mut account = a.clone();
                account.email = email::normalize(&account.email);
                (account.partner_user_id.clone(), account)
            })
            .collect();
        let policies = seed
            .policies
            .iter()
            .map(|p| {
                let owner = email::normalize(&p.owner);
                let mut members: BTreeMap<String, Member> = p
                    .employees
                    .iter()
                    .map(|e| {
                        (
                            email::normalize(&e.email),
                            Member {
                                role: e.role,
                                submits_to: e
                                    .submits_to
                                    .as_deref()
                                    .map_or_else(|| owner.clone(), email::normalize),
                                employee_id: e.employee_id.clone(),
                            },
                        )
                    })
                    .collect();
                members.entry(owner.clone()).or_insert_with(|| Member {
                    role: Role::Admin,
                    submits_to: owner.clone(),
                    employee_id: None,
                });
                let policy = Policy {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    plan: p.plan.clone(),
                    owner,
                    output_currency: p.output_currency.clone(),
                    members,
                };
                (p.id.clone(), policy)
            })
            .collect();
        Self {
            accounts,
            policies,
            pacing: seed.rate_limits.pacing(),
            windows: HashMap::new(),
            faults: Faults::new(seed.faults.clone()),
            log: VecDeque::new(),
            counters: Counters::default(),
            next_seq: 1,
        }
    }

    /// Policies and rosters as they stand, in seed form.
    pub fn policies(&self) -> Vec<SeedPolicy> {
        self.policies
            .values()
            .map(|p| SeedPolicy {
                id: p.id.clone(),
                name: p.name.clone(),
                plan: p.plan.clone(),
                owner: p.owner.clone(),
                output_currency: p.output_currency.clone(),
                employees: p
                    .members
                    .iter()
                    .map(|(email, m)| SeedEmployee {
                        email: email.clone(),
                        role: m.role,
                        submits_to: Some(m.submits_to.clone()),
                        employee_id: m.employee_id.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Replaces the policies and rosters (accounts, limits and faults stay).
    pub fn replace_policies(&mut self, policies: Vec<SeedPolicy>) {
        let seed = Seed {
            accounts: Vec::new(),
            policies,
            ..Seed::default()
        };
        self.policies = SimState::from_seed(&seed).policies;
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> &VecDeque<RequestRecord> {
        &self.log
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn reset_log(&mut self) {
        self.log.clear();
        self.counters = Counters::default();
    }

    pub fn faults(&self) -> &FaultConfig {
        self.faults.config()
    }

    pub fn set_faults(&mut self, config: FaultConfig) {
        self.faults = Faults::new(config);
    }

    pub fn latency(&self) -> std::time::Duration {
        self.faults.latency()
    }

    /// How late the next request is taken in (fault `acceptDelayMs`).
    pub fn accept_delay(&mut self) -> std::time::Duration {
        self.faults.accept_delay()
    }

    /// Handles one request body (form-encoded) arriving at `now`.
    pub fn receive(&mut self, body: &[u8], now: Instant) -> Outcome {
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let fault = self.faults.draw();
        let (outcome, info) = match &fault {
            None | Some(ScriptedFault::Pass) => {
                let (response, info) = self.handle(&form, now);
                (Outcome::Respond(response), info)
            }
            Some(ScriptedFault::DropAfterApply) => {
                let (_, info) = self.handle(&form, now);
                (Outcome::Drop, info)
            }
            Some(ScriptedFault::ApplyThenStall { ms }) => {
                let (response, info) = self.handle(&form, now);
                let delay = std::time::Duration::from_millis(*ms);
                (Outcome::Stall(response, delay), info)
            }
            Some(ScriptedFault::RetryAfter { value }) => (
                Outcome::Hostile(HostileAnswer::RetryAfter(value.clone())),
                describe(&form),
            ),
            Some(ScriptedFault::EndlessBody) => (
                Outcome::Hostile(HostileAnswer::EndlessBody),
                describe(&form),
            ),
            Some(ScriptedFault::SlowDrip { interval_ms }) => (
                Outcome::Hostile(HostileAnswer::SlowDrip(std::time::Duration::from_millis(
                    *interval_ms,
                ))),
                describe(&form),
            ),
            Some(other) => {
                let response = match other {
                    ScriptedFault::Http429 => Some(SimResponse {
                        status: 429,
                        body: answer(429, RATE_LIMIT_MESSAGE).body,
                    }),
                    ScriptedFault::Body503 => Some(answer(503, "Service temporarily unavailable")),
                    ScriptedFault::Http500 => Some(SimResponse {
                        status: 500,
                        body: "HTTP Status 500 - Internal Server Error".to_string(),
                    }),
                    ScriptedFault::Respond { status, body } => Some(SimResponse {
                        status: *status,
                        body: body.clone(),
                    }),
                    _ => None,
                };
                let outcome = response.map_or(Outcome::Drop, Outcome::Respond);
                (outcome, describe(&form))
            }
        };
        self.record(info, &outcome, fault.as_ref());
        outcome
    }

    fn record(&mut self, info: JobInfo, outcome: &Outcome, fault: Option<&ScriptedFault>) {
        let (http_status, response_code) = match outcome {
            Outcome::Respond(r) | Outcome::Stall(r, _) => (
                Some(r.status),
                serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("responseCode").and_then(Value::as_u64))
                    .and_then(|c| u16::try_from(c).ok()),
            ),
            Outcome::Drop => (None, None),
            Outcome::Hostile(answer) => (Some(answer.status()), None),
        };
        let counters = &mut self.counters;
        counters.requests += 1;
        *counters.by_job.entry(info.job.clone()).or_default() += 1;
        let code_key = response_code
            .map(|c| c.to_string())
            .or_else(|| http_status.map(|s| format!("http{s}")))
            .unwrap_or_else(|| "dropped".to_string());
        *counters.by_response_code.entry(code_key).or_default() += 1;
        if let Some(fault) = fault.filter(|f| **f != ScriptedFault::Pass) {
            *counters
                .faults
                .entry(fault.label().to_string())
                .or_default() += 1;
        }
        if self.log.len() >= LOG_LIMIT {
            self.log.pop_front();
        }
        self.log.push_back(RequestRecord {
            seq: self.next_seq,
            job: info.job,
            partner_user_id: info.partner_user_id,
            http_status,
            response_code,
            fault: fault.map(|f| f.label().to_string()),
            items: info.items,
            dry_run: info.dry_run,
        });
        self.next_seq += 1;
    }

    fn handle(&mut self, form: &HashMap<String, String>, now: Instant) -> (SimResponse, JobInfo) {
        let mut info = describe(form);
        let Some(raw_job) = form.get("requestJobDescription") else {
            // Expensify's Tomcat answers a missing field with a bare HTTP 500 page.
            return (
                SimResponse {
                    status: 500,
                    body: "HTTP Status 500 - requestJobDescription is missing".to_string(),
                },
                info,
            );
        };
        let Ok(Value::Object(job)) = serde_json::from_str::<Value>(raw_job) else {
            return (
                SimResponse {
                    status: 500,
                    body: "HTTP Status 500 - JSONObject text must begin with '{'".to_string(),
                },
                info,
            );
        };
        let job_type = job.get("type").and_then(Value::as_str).unwrap_or_default();
        if !matches!(
            job_type,
            "get" | "update" | "create" | "file" | "download" | "reconciliation"
        ) {
            return (answer(410, "Argument 'type' is missing or malformed"), info);
        }
        let credentials = job.get("credentials").and_then(Value::as_object);
        let user_id = credentials
            .and_then(|c| c.get("partnerUserID"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let secret = credentials
            .and_then(|c| c.get("partnerUserSecret"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !user_id.is_empty() {
            let window = self
                .windows
                .entry(user_id.clone())
                .or_insert_with(|| WindowLog::new(&self.pacing));
            if !window.try_record(now) {
                self.counters.rate_limited += 1;
                return (
                    SimResponse {
                        status: 429,
                        body: answer(429, RATE_LIMIT_MESSAGE).body,
                    },
                    info,
                );
            }
        }
        let caller = match self.accounts.get(&user_id) {
            Some(account) if !secret.is_empty() && account.partner_user_secret == secret => {
                account.clone()
            }
            _ => return (answer(407, "Authentication failed"), info),
        };
        info.partner_user_id = Some(user_id);
        let settings = job.get("inputSettings").and_then(Value::as_object);
        let settings_type = settings
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let response = match (job_type, settings_type) {
            ("get", "policyList") => self.policy_list(&caller, settings),
            ("get", "policy") => self.policy_getter(&caller, settings, &mut info),
            ("update", "employees") => self.employee_updater(&caller, &job, form, &mut info),
            ("get" | "update", _) => {
                answer(410, "Argument 'inputSettings.type' is missing or malformed")
            }
            (other, _) => answer(
                500,
                format!("Job type '{other}' is not implemented by the simulator"),
            ),
        };
        (response, info)
    }

    fn policy_list(
        &self,
        caller: &SeedAccount,
        settings: Option<&Map<String, Value>>,
    ) -> SimResponse {
        let admin_only = lenient_bool(settings.and_then(|s| s.get("adminOnly")), false);
        if let Some(user) = settings
            .and_then(|s| s.get("userEmail"))
            .and_then(Value::as_str)
            && email::normalize(user) != caller.email
        {
            return answer(
                500,
                format!("Not authorized to authenticate as user {user}"),
            );
        }
        // Field order as in Expensify's documented sample; the shape sits where it is built.
        #[allow(clippy::items_after_statements)]
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Entry<'a> {
            output_currency: &'a str,
            owner: &'a str,
            role: &'static str,
            name: &'a str,
            id: &'a str,
            #[serde(rename = "type")]
            plan: &'a str,
        }
        let list: Vec<Entry> = self
            .policies
            .values()
            .filter_map(|p| {
                let role = p.members.get(&caller.email)?.role;
                (!admin_only || role == Role::Admin).then_some(Entry {
                    output_currency: &p.output_currency,
                    owner: &p.owner,
                    role: role.as_str(),
                    name: &p.name,
                    id: &p.id,
                    plan: &p.plan,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("policyList".to_string(), json!(list));
        success(body)
    }

    fn policy_getter(
        &self,
        caller: &SeedAccount,
        settings: Option<&Map<String, Value>>,
        info: &mut JobInfo,
    ) -> SimResponse {
        let Some(ids) = settings
            .and_then(|s| s.get("policyIDList"))
            .and_then(Value::as_array)
            .and_then(|ids| {
                ids.iter()
                    .map(|id| id.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
        else {
            return answer(410, "Required parameter 'policyIDList' is missing");
        };
        info.items = ids.len();
        let fields: Option<Vec<&str>> = settings
            .and_then(|s| s.get("fields"))
            .and_then(Value::as_array)
            .and_then(|f| f.iter().map(Value::as_str).collect());
        let fields = match fields {
            Some(fields)
                if !fields.is_empty()
                    && fields.iter().all(|f| {
                        matches!(
                            *f,
                            "employees" | "categories" | "tags" | "reportFields" | "tax"
                        )
                    }) =>
            {
                fields
            }
            _ => return answer(410, "Argument 'fields' is missing or malformed"),
        };
        let mut info_map = Map::new();
        for id in &ids {
            let Some(policy) = self.policies.get(id) else {
                return answer(410, format!("Could not load policy '{id}'"));
            };
            if policy.members.get(&caller.email).map(|m| m.role) != Some(Role::Admin) {
                return answer(403, format!("You are not an admin of policy '{id}'"));
            }
            let mut sections = Map::new();
            for field in &fields {
                let value = match *field {
                    "employees" => roster_json(policy),
                    "categories" | "reportFields" => json!([]),
                    _ => json!({}),
                };
                sections.insert((*field).to_string(), value);
            }
            info_map.insert(id.clone(), Value::Object(sections));
        }
        let mut body = Map::new();
        body.insert("policyInfo".to_string(), Value::Object(info_map));
        success(body)
    }

    fn employee_updater(
        &mut self,
        caller: &SeedAccount,
        job: &Map<String, Value>,
        form: &HashMap<String, String>,
        info: &mut JobInfo,
    ) -> SimResponse {
        let settings = job.get("inputSettings").and_then(Value::as_object);
        if settings
            .and_then(|s| s.get("entity"))
            .and_then(Value::as_str)
            != Some("generic")
        {
            return answer(410, "Argument 'entity' is missing or malformed");
        }
        // Only top-level keys count; nested under inputSettings they are ignored, as in Expensify.
        match job.get("dataSource").and_then(Value::as_str) {
            Some("request") => {}
            Some(other @ ("download" | "sftp")) => {
                return answer(
                    500,
                    format!("dataSource '{other}' is not implemented by the simulator"),
                );
            }
            _ => return answer(410, "Argument 'dataSource' is missing or malformed"),
        }
        let dry_run = lenient_bool(job.get("dry-run"), false);
        let fix_approval_chains = lenient_bool(job.get("shouldFixApprovalChains"), true);
        info.dry_run = dry_run;
        if !caller.domain_admin {
            return answer(403, "The employee updater requires a domain admin account");
        }
        let parsed = match feed_records(form, info) {
            Ok(parsed) => parsed,
            Err(refusal) => return refusal,
        };
        let mut working = if dry_run {
            Some(self.policies.clone())
        } else {
            None
        };
        let policies = working.as_mut().unwrap_or(&mut self.policies);
        let mut result = UpdateResult::default();
        for record in parsed {
            apply_record(policies, caller, record, fix_approval_chains, &mut result);
        }
        if !dry_run {
            self.counters.records_applied += result.updated;
        }
        let mut body = Map::new();
        body.insert("dry-run".to_string(), json!(dry_run));
        body.insert("updatedEmployeesCount".to_string(), json!(result.updated));
        body.insert(
            "diff".to_string(),
            json!({"diffToAdd": result.added, "diffToRemove": result.removed}),
        );
        body.insert("securityGroupEmployeesMap".to_string(), json!({}));
        body.insert("skippedEmployees".to_string(), json!(result.skipped));
        success(body)
    }
}

/// The `data` field of an employee-updater request, parsed record by record; or the
/// answer Expensify gives to a malformed feed.
fn feed_records(
    form: &HashMap<String, String>,
    info: &mut JobInfo,
) -> Result<Vec<ParsedRecord>, SimResponse> {
    let not_an_array = || {
        answer(
            410,
            "Invalid input data: 'data' must be an array of employees",
        )
    };
    let Some(data) = form.get("data") else {
        return Err(answer(
            410,
            "Invalid input data: the 'data' field is missing",
        ));
    };
    let records = match serde_json::from_str::<Value>(data) {
        Ok(Value::Array(records)) => records,
        Ok(Value::Object(mut wrapper)) => match wrapper.remove("Employees") {
            Some(Value::Array(records)) => records,
            _ => return Err(not_an_array()),
        },
        _ => return Err(not_an_array()),
    };
    info.items = records.len();
    if records.is_empty() {
        return Err(answer(410, "Invalid input data: employee data is missing"));
    }
    records
        .iter()
        .map(|record| parse_record(record).map_err(|message| answer(410, message)))
        .collect()
}

/// A feed record that passed the request-level checks.
struct ParsedRecord {
    email: String,
    manager: Option<String>,
    policy_id: String,
    role: Option<String>,
    employee_id: Option<String>,
    terminated: bool,
}

fn parse_record(record: &Value) -> Result<ParsedRecord, String> {
    let field = |name: &str| record.get(name).and_then(Value::as_str).map(str::trim);
    let email = field("employeeEmail")
        .filter(|e| email::is_valid(e))
        .ok_or("'employeeEmail' parameter is missing or malformed")?;
    let policy_id = field("policyID")
        .filter(|p| !p.is_empty())
        .ok_or("'policyID' parameter is missing or malformed")?;
    let terminated = lenient_bool(record.get("isTerminated"), false);
    let manager = field("managerEmail").map(str::to_string);
    if !terminated && manager.as_deref().is_none_or(str::is_empty) {
        return Err("'managerEmail' parameter is missing or malformed".to_string());
    }
    let employee_id = match record.get("employeeID") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(ParsedRecord {
        email: email::normalize(email),
        manager,
        policy_id: policy_id.to_string(),
        role: record
            .get("role")
            .map(|r| r.as_str().unwrap_or_default().to_string()),
        employee_id,
        terminated,
    })
}

#[derive(Default)]
struct UpdateResult {
    updated: u64,
    added: BTreeMap<String, Vec<String>>,
    removed: BTreeMap<String, Vec<String>>,
    skipped: Vec<Value>,
}

impl UpdateResult {
    fn skip(&mut self, email: &str, reason: &str) {
        self.skipped.push(json!({"email": email, "reason": reason}));
    }
}

fn apply_record(
    policies: &mut BTreeMap<String, Policy>,
    caller: &SeedAccount,
    record: ParsedRecord,
    fix_approval_chains: bool,
    result: &mut UpdateResult,
) {
    let email = record.email.clone();
    let Some(policy) = policies.get_mut(&record.policy_id) else {
        result.skip(
            &email,
            &format!("No policy found for '{}'", record.policy_id),
        );
        return;
    };
    if policy.members.get(&caller.email).map(|m| m.role) != Some(Role::Admin) {
        result.skip(
            &email,
            &format!("You are not an admin of policy '{}'", policy.id),
        );
        return;
    }
    let untouchable = email == policy.owner || email == caller.email;
    if record.terminated {
        terminate(policy, email, untouchable, result);
        return;
    }
    let Some((role, manager)) = checked_update(&record, untouchable, result) else {
        return;
    };
    upsert_member(policy, &email, role, &manager, record.employee_id, result);
    // Expensify's default: invite approvers who are not on the policy. A client that
    // forgets `shouldFixApprovalChains: false` sees people appear that nobody asked for.
    if fix_approval_chains && manager != email && !policy.members.contains_key(&manager) {
        policy.members.insert(
            manager.clone(),
            Member {
                role: Role::User,
                submits_to: policy.owner.clone(),
                employee_id: None,
            },
        );
        result
            .added
            .entry(policy.id.clone())
            .or_default()
            .push(manager);
    }
}

/// `isTerminated: true`: removes the person, except the owner and the caller.
fn terminate(policy: &mut Policy, email: String, untouchable: bool, result: &mut UpdateResult) {
    if untouchable {
        result.skip(
            &email,
            "Policy owners and the account running the request cannot be removed from the policy",
        );
    } else if policy.members.remove(&email).is_some() {
        result.updated += 1;
        result
            .removed
            .entry(policy.id.clone())
            .or_default()
            .push(email);
    }
}

/// The role and approver of a grant or update, or `None` once the record is skipped with
/// Expensify's reason.
fn checked_update(
    record: &ParsedRecord,
    untouchable: bool,
    result: &mut UpdateResult,
) -> Option<(Option<Role>, String)> {
    let email = &record.email;
    let role = match record.role.as_deref() {
        None => None,
        Some(text) => {
            if let Some(role) = Role::parse(text) {
                Some(role)
            } else {
                result.skip(email, &format!("Invalid role '{text}'"));
                return None;
            }
        }
    };
    let manager = record.manager.clone().unwrap_or_default();
    if !email::is_valid(&manager) {
        result.skip(email, &format!("Invalid manager email address '{manager}'"));
        return None;
    }
    if untouchable && role.is_some_and(|r| r != Role::Admin) {
        result.skip(
            email,
            "Policy owners and the account running the request cannot have their role demoted from admin",
        );
        return None;
    }
    Some((role, email::normalize(&manager)))
}

/// Adds the person, or updates role, approver and employeeID of someone already there.
fn upsert_member(
    policy: &mut Policy,
    email: &str,
    role: Option<Role>,
    manager: &str,
    employee_id: Option<String>,
    result: &mut UpdateResult,
) {
    if let Some(member) = policy.members.get_mut(email) {
        let mut changed = false;
        if let Some(role) = role.filter(|r| *r != member.role) {
            member.role = role;
            changed = true;
        }
        if member.submits_to != manager {
            member.submits_to = manager.to_string();
            changed = true;
        }
        if employee_id.is_some() && member.employee_id != employee_id {
            member.employee_id = employee_id;
            changed = true;
        }
        if changed {
            result.updated += 1;
        }
    } else {
        policy.members.insert(
            email.to_string(),
            Member {
                role: role.unwrap_or_default(),
                submits_to: manager.to_string(),
                employee_id,
            },
        );
        result.updated += 1;
        result
            .added
            .entry(policy.id.clone())
            .or_default()
            .push(email.to_string());
    }
}

fn roster_json(policy: &Policy) -> Value {
    // Key order as in the recorded roster answer.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry<'a> {
        role: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        custom_field1: Option<&'a str>,
        #[serde(rename = "employeeID", skip_serializing_if = "Option::is_none")]
        employee_id: Option<&'a str>,
        email: &'a str,
        submits_to: &'a str,
    }
    let entries: Vec<Entry> = policy
        .members
        .iter()
        .map(|(email, m)| Entry {
            role: m.role.as_str(),
            custom_field1: m.employee_id.as_deref(),
            employee_id: m.employee_id.as_deref(),
            email,
            submits_to: &m.submits_to,
        })
        .collect();
    json!(entries)
}

/// The job label and sizes of a request, from its form alone.
fn describe(form: &HashMap<String, String>) -> JobInfo {
    let job = form
        .get("requestJobDescription")
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok());
    let label = job.as_ref().and_then(|job| {
        let outer = job.get("type")?.as_str()?;
        let inner = job.get("inputSettings")?.get("type")?.as_str()?;
        Some(format!("{outer}/{inner}"))
    });
    JobInfo {
        job: label.unwrap_or_else(|| "invalid".to_string()),
        ..JobInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::seed::Seed;

    const SEED: &str = r#"
accounts:
  - {partnerUserID: admin_id, partnerUserSecret: admin-secret, email: admin@acme.com}
  - {partnerUserID: plain_id, partnerUserSecret: plain-secret, email: plain@acme.com, domainAdmin: false}
rateLimits: {enabled: false}
policies:
  - id: "P1"
    name: Finance
    owner: cfo@acme.com
    employees:
      - {email: admin@acme.com, role: admin}
      - {email: bob@acme.com, role: user, employeeID: E-1}
  - id: "P2"
    name: Sales
    owner: admin@acme.com
    employees:
      - {email: plain@acme.com, role: auditor}
"#;

    fn state() -> SimState {
        SimState::from_seed(&Seed::parse(SEED, "test").unwrap())
    }

    #[allow(
        clippy::needless_pass_by_value,
        reason = "callers hand over json! values"
    )]
    fn send(state: &mut SimState, job: Value, data: Option<Value>) -> (u16, Value) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("requestJobDescription", &job.to_string());
        if let Some(data) = data {
            form.append_pair("data", &data.to_string());
        }
        match state.receive(form.finish().as_bytes(), Instant::now()) {
            Outcome::Respond(r) | Outcome::Stall(r, _) => (
                r.status,
                serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)),
            ),
            other => panic!("{other:?}"),
        }
    }

    fn creds(id: &str, secret: &str) -> Value {
        json!({"partnerUserID": id, "partnerUserSecret": secret})
    }

    fn update(data: Value) -> (Value, Option<Value>) {
        (
            json!({"type": "update", "credentials": creds("admin_id", "admin-secret"),
                   "inputSettings": {"type": "employees", "entity": "generic"},
                   "dataSource": "request", "shouldFixApprovalChains": false}),
            Some(data),
        )
    }

    fn roster(state: &mut SimState, id: &str) -> Vec<Value> {
        let job = json!({"type": "get", "credentials": creds("admin_id", "admin-secret"),
                         "inputSettings": {"type": "policy", "fields": ["employees"], "policyIDList": [id]}});
        let (_, body) = send(state, job, None);
        body["policyInfo"][id]["employees"]
            .as_array()
            .unwrap()
            .clone()
    }

    #[tokio::test]
    async fn policy_list_shows_the_callers_role_and_honours_admin_only() {
        let mut state = state();
        let job = json!({"type": "get", "credentials": creds("plain_id", "plain-secret"),
                         "inputSettings": {"type": "policyList", "adminOnly": false}});
        let (status, body) = send(&mut state, job.clone(), None);
        assert_eq!(status, 200);
        assert_eq!(body["policyList"].as_array().unwrap().len(), 1);
        assert_eq!(body["policyList"][0]["role"], "auditor");
        let mut admin_only = job;
        admin_only["inputSettings"]["adminOnly"] = json!(true);
        let (_, body) = send(&mut state, admin_only, None);
        assert_eq!(body["policyList"], json!([]));
    }

    #[tokio::test]
    async fn apply_then_stall_applies_the_job_and_delays_the_answer() {
        let mut state = state();
        state.set_faults(FaultConfig {
            script: [ScriptedFault::ApplyThenStall { ms: 1500 }]
                .into_iter()
                .collect(),
            ..FaultConfig::default()
        });
        let (job, data) = update(
            json!([{"employeeEmail": "late@acme.com", "managerEmail": "admin@acme.com", "policyID": "P1", "role": "user"}]),
        );
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("requestJobDescription", &job.to_string());
        form.append_pair("data", &data.unwrap().to_string());
        match state.receive(form.finish().as_bytes(), Instant::now()) {
            Outcome::Stall(answer, delay) => {
                assert_eq!(delay, std::time::Duration::from_millis(1500));
                assert!(
                    answer.body.contains("\"updatedEmployeesCount\":1"),
                    "{}",
                    answer.body
                );
            }
            other => panic!("expected a stalled answer, got {other:?}"),
        }
        assert!(
            roster(&mut state, "P1")
                .iter()
                .any(|e| e["email"] == "late@acme.com"),
            "the job landed before the answer"
        );
        assert_eq!(state.counters().faults.get("applyThenStall"), Some(&1));
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_with_407() {
        let mut state = state();
        let job = json!({"type": "get", "credentials": creds("admin_id", "wrong"),
                         "inputSettings": {"type": "policyList"}});
        assert_eq!(send(&mut state, job, None).1["responseCode"], 407);
    }

    #[tokio::test]
    async fn roster_read_needs_ids_and_fields_and_known_policies() {
        let mut state = state();
        let base = |settings: Value| json!({"type": "get", "credentials": creds("admin_id", "admin-secret"), "inputSettings": settings});
        let (_, body) = send(
            &mut state,
            base(json!({"type": "policy", "fields": ["employees"]})),
            None,
        );
        assert_eq!(
            body["responseMessage"],
            "Required parameter 'policyIDList' is missing"
        );
        let (_, body) = send(
            &mut state,
            base(json!({"type": "policy", "policyIDList": ["P1"]})),
            None,
        );
        assert_eq!(body["responseCode"], 410);
        let (_, body) = send(
            &mut state,
            base(
                json!({"type": "policy", "fields": ["employees"], "policyIDList": ["P1", "nope"]}),
            ),
            None,
        );
        assert_eq!(body["responseCode"], 410);
        let (_, body) = send(
            &mut state,
            base(json!({"type": "policy", "fields": ["tags"], "policyIDList": ["P1"]})),
            None,
        );
        assert_eq!(
            body["policyInfo"]["P1"],
            json!({"tags": {}}),
            "only the requested sections"
        );
        let employees = roster(&mut state, "P1");
        let cfo = employees
            .iter()
            .find(|e| e["email"] == "cfo@acme.com")
            .unwrap();
        assert_eq!(cfo["role"], "admin", "the owner is listed as admin");
        let bob = employees
            .iter()
            .find(|e| e["email"] == "bob@acme.com")
            .unwrap();
        assert_eq!(bob["employeeID"], "E-1");
        assert_eq!(bob["customField1"], "E-1");
    }

    #[tokio::test]
    async fn updater_adds_changes_and_removes_from_one_policy_only() {
        let mut state = state();
        let (job, data) = update(json!([
            {"employeeEmail": "carol@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "auditor"},
            {"employeeEmail": "carol@acme.com", "managerEmail": "admin@acme.com", "policyID": "P2", "role": "user"},
            {"employeeEmail": "bob@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "admin", "employeeID": "E-1"}
        ]));
        let (_, body) = send(&mut state, job, data);
        assert_eq!(body["updatedEmployeesCount"], 3);
        assert_eq!(
            body["diff"]["diffToAdd"],
            json!({"P1": ["carol@acme.com"], "P2": ["carol@acme.com"]})
        );
        let (job, data) = update(json!({"Employees": [
            {"employeeEmail": "carol@acme.com", "policyID": "P1", "isTerminated": true}
        ]}));
        let (_, body) = send(&mut state, job, data);
        assert_eq!(
            body["diff"]["diffToRemove"],
            json!({"P1": ["carol@acme.com"]})
        );
        assert!(
            roster(&mut state, "P1")
                .iter()
                .all(|e| e["email"] != "carol@acme.com")
        );
        assert!(
            roster(&mut state, "P2")
                .iter()
                .any(|e| e["email"] == "carol@acme.com"),
            "still on P2"
        );
        let bob = roster(&mut state, "P1")
            .into_iter()
            .find(|e| e["email"] == "bob@acme.com")
            .unwrap();
        assert_eq!(bob["role"], "admin");
    }

    #[tokio::test]
    async fn owner_and_caller_cannot_be_demoted_or_removed() {
        let mut state = state();
        let (job, data) = update(json!([
            {"employeeEmail": "cfo@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "user"},
            {"employeeEmail": "admin@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "isTerminated": true},
            {"employeeEmail": "x@acme.com", "managerEmail": "cfo@acme.com", "policyID": "NOPE"},
            {"employeeEmail": "y@acme.com", "managerEmail": "not an email", "policyID": "P1"},
            {"employeeEmail": "z@acme.com", "managerEmail": "cfo@acme.com", "policyID": "P1", "role": "owner"}
        ]));
        let (_, body) = send(&mut state, job, data);
        assert_eq!(body["updatedEmployeesCount"], 0);
        let reasons: Vec<&str> = body["skippedEmployees"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].contains("cannot have their role demoted"));
        assert!(reasons[1].contains("cannot be removed"));
        assert_eq!(reasons[2], "No policy found for 'NOPE'");
        assert_eq!(reasons[3], "Invalid manager email address 'not an email'");
        assert_eq!(reasons[4], "Invalid role 'owner'");
    }

    #[tokio::test]
    async fn request_level_validation_mirrors_expensify() {
        let mut state = state();
        let (job, _) = update(json!([]));
        let (_, body) = send(&mut state, job.clone(), None);
        assert_eq!(body["responseCode"], 410);
        let (_, body) = send(
            &mut state,
            job.clone(),
            Some(json!([{"employeeEmail": "bad", "managerEmail": "a@b.com", "policyID": "P1"}])),
        );
        assert_eq!(
            body["responseMessage"],
            "'employeeEmail' parameter is missing or malformed"
        );
        let (_, body) = send(
            &mut state,
            job.clone(),
            Some(json!([{"employeeEmail": "a@b.com", "policyID": "P1"}])),
        );
        assert_eq!(
            body["responseMessage"],
            "'managerEmail' parameter is missing or malformed"
        );
        let mut nested = job.clone();
        nested.as_object_mut().unwrap().remove("dataSource");
        nested["inputSettings"]["dataSource"] = json!("request");
        let (_, body) = send(
            &mut state,
            nested,
            Some(
                json!([{"employeeEmail": "a@b.com", "managerEmail": "cfo@acme.com", "policyID": "P1"}]),
            ),
        );
        assert_eq!(
            body["responseMessage"],
            "Argument 'dataSource' is missing or malformed"
        );
        let mut plain = job;
        plain["credentials"] = creds("plain_id", "plain-secret");
        let (_, body) = send(
            &mut state,
            plain,
            Some(
                json!([{"employeeEmail": "a@b.com", "managerEmail": "cfo@acme.com", "policyID": "P2"}]),
            ),
        );
        assert_eq!(body["responseCode"], 403);
    }

    #[tokio::test]
    async fn dry_run_changes_nothing_and_approval_chains_are_fixed_by_default() {
        let mut state = state();
        let (mut job, data) = update(
            json!([{"employeeEmail": "dan@acme.com", "managerEmail": "eve@acme.com", "policyID": "P1"}]),
        );
        job["dry-run"] = json!(true);
        let (_, body) = send(&mut state, job.clone(), data.clone());
        assert_eq!(body["dry-run"], true);
        assert_eq!(body["updatedEmployeesCount"], 1);
        assert!(
            roster(&mut state, "P1")
                .iter()
                .all(|e| e["email"] != "dan@acme.com")
        );
        job.as_object_mut().unwrap().remove("dry-run");
        job.as_object_mut()
            .unwrap()
            .remove("shouldFixApprovalChains");
        send(&mut state, job, data);
        let emails: Vec<Value> = roster(&mut state, "P1")
            .into_iter()
            .map(|e| e["email"].clone())
            .collect();
        assert!(
            emails.contains(&json!("eve@acme.com")),
            "manager invited: {emails:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_windows_answer_429() {
        let seed = SEED.replace(
            "rateLimits: {enabled: false}",
            "rateLimits: {windows: [{maxRequests: 2, periodSeconds: 10}]}",
        );
        let mut state = SimState::from_seed(&Seed::parse(&seed, "t").unwrap());
        let job = json!({"type": "get", "credentials": creds("admin_id", "admin-secret"), "inputSettings": {"type": "policyList"}});
        assert_eq!(send(&mut state, job.clone(), None).0, 200);
        assert_eq!(send(&mut state, job.clone(), None).0, 200);
        let (status, body) = send(&mut state, job.clone(), None);
        assert_eq!((status, body["responseCode"].clone()), (429, json!(429)));
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        assert_eq!(send(&mut state, job, None).0, 200);
        assert_eq!(state.counters().rate_limited, 1);
    }

    #[tokio::test]
    async fn log_and_counters_never_hold_secrets() {
        let mut state = state();
        let job = json!({"type": "get", "credentials": creds("admin_id", "admin-secret"), "inputSettings": {"type": "policyList"}});
        send(&mut state, job, None);
        let shown = serde_json::to_string(&(state.requests(), state.counters())).unwrap();
        assert!(!shown.contains("admin-secret"));
        assert_eq!(state.requests()[0].job, "get/policyList");
        assert_eq!(state.counters().by_job["get/policyList"], 1);
    }
}
