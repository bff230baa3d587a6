//! The employee updater, the one write job: request-level checks, then each record of the
//! feed applied (or skipped with Expensify's reason) on one policy, dry runs on a copy.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::SimState;
use super::job::{JobInfo, RosterChange, lenient_bool};
use super::roster::{Member, Policy};
use super::wire::{SimResponse, answer, success};
use crate::email;
use crate::expensify::Role;
use crate::simulator::seed::SeedAccount;

impl SimState {
    pub(super) fn employee_updater(
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
            let (policy_id, email) = (record.policy_id.clone(), record.email.clone());
            let role_of = |policies: &BTreeMap<String, Policy>| {
                policies
                    .get(&policy_id)
                    .and_then(|p| p.members.get(&email))
                    .map(|m| m.role)
            };
            let before = role_of(policies);
            apply_record(policies, caller, record, fix_approval_chains, &mut result);
            let after = role_of(policies);
            if !dry_run && before != after {
                info.changes.push(RosterChange {
                    policy_id,
                    email,
                    before,
                    after,
                });
            }
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
