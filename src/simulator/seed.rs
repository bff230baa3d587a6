//! The simulator's seed: accounts, policies and rosters, plus optional limits and faults.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::faults::FaultConfig;
use crate::email;
use crate::expensify::{Pacing, PacingWindow, Role};

/// A seed file as written by a person (see `extras/simulator-seed.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    pub accounts: Vec<SeedAccount>,
    #[serde(default)]
    pub policies: Vec<SeedPolicy>,
    /// Expensify's published limits unless given; `enabled: false` turns them off.
    #[serde(default)]
    pub rate_limits: SeedRateLimits,
    #[serde(default)]
    pub faults: FaultConfig,
}

/// A credential pair and the Expensify login it acts as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAccount {
    #[serde(rename = "partnerUserID")]
    pub partner_user_id: String,
    pub partner_user_secret: String,
    pub email: String,
    /// The employee updater needs a domain admin; `false` makes it answer 403.
    #[serde(default = "yes")]
    pub domain_admin: bool,
}

fn yes() -> bool {
    true
}

/// A policy (workspace) and its roster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedPolicy {
    pub id: String,
    pub name: String,
    #[serde(rename = "type", default = "corporate")]
    pub plan: String,
    pub owner: String,
    #[serde(default = "usd")]
    pub output_currency: String,
    /// The owner is added as `admin` when not listed.
    #[serde(default)]
    pub employees: Vec<SeedEmployee>,
}

fn corporate() -> String {
    "corporate".to_string()
}

fn usd() -> String {
    "USD".to_string()
}

/// One roster entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedEmployee {
    pub email: String,
    #[serde(default)]
    pub role: Role,
    /// Defaults to the policy owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submits_to: Option<String>,
    #[serde(
        rename = "employeeID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub employee_id: Option<String>,
}

/// The simulator's own enforcement of Expensify's rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRateLimits {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "published_windows")]
    pub windows: Vec<SeedWindow>,
}

impl Default for SeedRateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            windows: published_windows(),
        }
    }
}

impl SeedRateLimits {
    pub fn pacing(&self) -> Pacing {
        if !self.enabled {
            return Pacing::unlimited();
        }
        Pacing {
            windows: self
                .windows
                .iter()
                .map(|w| PacingWindow {
                    max_requests: w.max_requests,
                    period: std::time::Duration::from_secs(w.period_seconds),
                })
                .collect(),
        }
    }
}

/// At most `maxRequests` in `periodSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedWindow {
    pub max_requests: u32,
    pub period_seconds: u64,
}

fn published_windows() -> Vec<SeedWindow> {
    Pacing::default()
        .windows
        .iter()
        .map(|w| SeedWindow {
            max_requests: w.max_requests,
            period_seconds: w.period.as_secs(),
        })
        .collect()
}

/// Why a seed could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadSeedError {
    #[error("cannot read seed file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("seed file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("seed file {path} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

impl Seed {
    /// Reads, parses and validates a seed file.
    pub fn load(path: &Path) -> Result<Seed, LoadSeedError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadSeedError::Read {
            path: shown.clone(),
            source,
        })?;
        Seed::parse(&text, &shown)
    }

    /// Parses and validates seed text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Seed, LoadSeedError> {
        let seed: Seed = serde_saphyr::from_str(text).map_err(|e| LoadSeedError::Parse {
            path: origin.to_string(),
            // The reader calls every text `<input>`; this one has a name.
            message: e
                .to_string()
                .replace("--> <input>:", &format!("--> {origin}:")),
        })?;
        let problems = seed.problems();
        if problems.is_empty() {
            Ok(seed)
        } else {
            Err(LoadSeedError::Invalid {
                path: origin.to_string(),
                problems,
            })
        }
    }

    /// Every problem found, each naming its field.
    fn account_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.accounts.is_empty() {
            problems.push("accounts: at least one account is needed".to_string());
        }
        let mut ids = HashSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            if account.partner_user_id.trim().is_empty() {
                problems.push(format!("accounts[{i}].partnerUserID is empty"));
            }
            if account.partner_user_secret.trim().is_empty() {
                problems.push(format!("accounts[{i}].partnerUserSecret is empty"));
            }
            if !ids.insert(account.partner_user_id.as_str()) {
                problems.push(format!(
                    "accounts[{i}].partnerUserID {:?} is listed twice",
                    account.partner_user_id
                ));
            }
            if !email::is_valid(&account.email) {
                problems.push(format!(
                    "accounts[{i}].email {:?} is not an email address",
                    account.email
                ));
            }
        }
        problems
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.account_problems();
        let mut policy_ids = HashSet::new();
        for (p, policy) in self.policies.iter().enumerate() {
            let at = format!("policies[{p}] ({})", policy.name);
            if policy.id.trim().is_empty() {
                problems.push(format!("{at}.id is empty"));
            }
            if !policy_ids.insert(policy.id.as_str()) {
                problems.push(format!("{at}.id {:?} is used by another policy", policy.id));
            }
            if !email::is_valid(&policy.owner) {
                problems.push(format!(
                    "{at}.owner {:?} is not an email address",
                    policy.owner
                ));
            }
            problems.extend(employee_problems(&at, policy));
        }
        if self.rate_limits.enabled {
            for (w, window) in self.rate_limits.windows.iter().enumerate() {
                if window.max_requests == 0 || window.period_seconds == 0 {
                    problems.push(format!(
                        "rateLimits.windows[{w}]: maxRequests and periodSeconds must be at least 1"
                    ));
                }
            }
        }
        problems.extend(
            self.faults
                .problems()
                .into_iter()
                .map(|p| format!("faults.{p}")),
        );
        problems
    }
}

/// The problems of one policy's employees (`at` names the policy).
fn employee_problems(at: &str, policy: &SeedPolicy) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (e, employee) in policy.employees.iter().enumerate() {
        let at = format!("{at}.employees[{e}]");
        if !email::is_valid(&employee.email) {
            problems.push(format!(
                "{at}.email {:?} is not an email address",
                employee.email
            ));
        }
        if !seen.insert(email::normalize(&employee.email)) {
            problems.push(format!("{at}.email {:?} is listed twice", employee.email));
        }
        if let Some(manager) = &employee.submits_to
            && !email::is_valid(manager)
        {
            problems.push(format!(
                "{at}.submitsTo {manager:?} is not an email address"
            ));
        }
        if email::normalize(&employee.email) == email::normalize(&policy.owner)
            && employee.role != Role::Admin
        {
            problems.push(format!("{at}: the policy owner must have role admin"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_seed_with_defaults() {
        let seed = Seed::parse(
            r#"
accounts:
  - partnerUserID: aa_admin_acme_com
    partnerUserSecret: not-a-real-secret
    email: admin@acme.com
policies:
  - id: "0123456789ABCDEF"
    name: Finance
    owner: admin@acme.com
    employees:
      - email: bob@acme.com
"#,
            "inline",
        )
        .unwrap();
        assert!(seed.accounts[0].domain_admin);
        assert_eq!(seed.policies[0].plan, "corporate");
        assert_eq!(seed.policies[0].output_currency, "USD");
        assert_eq!(seed.policies[0].employees[0].role, Role::User);
        assert_eq!(seed.rate_limits.pacing(), Pacing::default());
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let err = Seed::parse(
            r#"
accounts:
  - partnerUserID: a
    partnerUserSecret: ""
    email: nope
policies:
  - id: P
    name: One
    owner: owner@acme.com
    employees:
      - {email: owner@acme.com, role: user}
      - {email: x@acme.com, submitsTo: "bad manager"}
      - {email: X@acme.com}
  - id: P
    name: Two
    owner: owner@acme.com
"#,
            "seed.yaml",
        )
        .unwrap_err();
        let text = err.to_string();
        for expected in [
            "seed.yaml",
            "accounts[0].partnerUserSecret is empty",
            "accounts[0].email \"nope\"",
            "policies[0] (One).employees[0]: the policy owner must have role admin",
            "policies[0] (One).employees[1].submitsTo",
            "policies[0] (One).employees[2].email \"X@acme.com\" is listed twice",
            "policies[1] (Two).id \"P\" is used by another policy",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn unknown_fields_and_roles_are_parse_errors() {
        let err = Seed::parse("accounts: []\nextra: 1\n", "s.yaml").unwrap_err();
        assert!(matches!(err, LoadSeedError::Parse { .. }), "{err}");
        let err = Seed::parse(
            "accounts: []\npolicies:\n  - {id: P, name: N, owner: o@a.com, employees: [{email: e@a.com, role: owner}]}\n",
            "s.yaml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("s.yaml"), "{err}");
    }
}
