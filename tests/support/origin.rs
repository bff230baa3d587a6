//! The world the ownership property tests (`return_to_origin`, `whole_states`) start from
//! and judge against: three policies with people already on them, the connector that
//! protects some of them, a client paced to the simulator's rate windows, and snapshots of
//! Expensify to compare with the start.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use expensify_operator::expensify::{
    AllowedEndpoints, ClientSettings, ExpensifyClients, Pacing, PacingWindow, RetryPolicy,
};
use expensify_operator::simulator::{self, Seed, SimulatorHandle};

use super::{ADMIN_ID, ADMIN_SECRET};

/// The seed's policies: (id, name, owner).
pub const POLICIES: [(&str, &str, &str); 3] = [
    ("A1000000000000A1", "Alpha", "owner-a@corp.example"),
    ("B2000000000000B2", "Beta", "owner-b@corp.example"),
    ("C3000000000000C3", "Gamma", "it-admin@corp.example"),
];
/// The connector's `adminEmail` (and Gamma's owner).
pub const ADMIN_EMAIL: &str = "it-admin@corp.example";
/// The connector's one `protectedEmails` entry.
pub const PROTECTED: &str = "ceo@corp.example";
/// The connector (`corp`) lives in this namespace.
pub const CONNECTOR_NAMESPACE: &str = "ops";
/// The other namespace the connector allows.
pub const TENANT_NAMESPACE: &str = "team";
/// Requests per window the simulator accepts and the client paces itself to: far above
/// what a case sends, so a refusal means pacing is broken, not that the test is slow.
pub const WINDOW_REQUESTS: u32 = 400;
pub const WINDOW_SECONDS: u64 = 10;

pub fn seed_yaml() -> String {
    format!(
        r#"
accounts:
  - {{partnerUserID: {ADMIN_ID}, partnerUserSecret: {ADMIN_SECRET}, email: {ADMIN_EMAIL}}}
rateLimits:
  enabled: true
  windows: [{{maxRequests: {WINDOW_REQUESTS}, periodSeconds: {WINDOW_SECONDS}}}]
policies:
  - id: "A1000000000000A1"
    name: Alpha
    owner: owner-a@corp.example
    employees:
      - {{email: owner-a@corp.example, role: admin}}
      - {{email: {ADMIN_EMAIL}, role: admin}}
      - {{email: {PROTECTED}, role: user}}
      - {{email: pat@corp.example, role: user}}
      - {{email: aud@corp.example, role: auditor}}
      - {{email: adm@corp.example, role: admin}}
  - id: "B2000000000000B2"
    name: Beta
    owner: owner-b@corp.example
    employees:
      - {{email: owner-b@corp.example, role: admin}}
      - {{email: {ADMIN_EMAIL}, role: admin}}
      - {{email: bob@corp.example, role: user}}
      - {{email: pat@corp.example, role: auditor}}
      - {{email: carl@corp.example, role: admin}}
  - id: "C3000000000000C3"
    name: Gamma
    owner: {ADMIN_EMAIL}
    employees:
      - {{email: {ADMIN_EMAIL}, role: admin}}
      - {{email: {PROTECTED}, role: admin}}
      - {{email: carl@corp.example, role: user}}
      - {{email: aud@corp.example, role: user}}
"#
    )
}

/// The simulator with [`seed_yaml`], on loopback.
pub async fn start_simulator() -> SimulatorHandle {
    let seed = Seed::parse(&seed_yaml(), "ownership property seed").expect("the seed is valid");
    simulator::start(&seed, "127.0.0.1:0".parse().expect("loopback"))
        .await
        .expect("the simulator starts")
}

/// The connector `corp` in [`CONNECTOR_NAMESPACE`] as a manifest: it allows
/// [`TENANT_NAMESPACE`], protects [`PROTECTED`] and lifts the mass-removal guard out of
/// the way (the tests judge every removal themselves).
pub fn connector_yaml(endpoint: &str) -> String {
    format!(
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {{name: corp, namespace: {CONNECTOR_NAMESPACE}}}\nspec:\n  credentialsSecretRef: {{name: expensify-credentials}}\n  endpoint: {endpoint}\n  adminEmail: {ADMIN_EMAIL}\n  protectedEmails: [{PROTECTED}]\n  allowedNamespaces: [{TENANT_NAMESPACE}]\n  maxRevocationsPerSync: 100\n"
    )
}

/// One client set for a whole history, paced to the simulator's window (so its pacing
/// sees every request), with fast retries.
pub fn paced_clients(sim: &SimulatorHandle) -> Arc<ExpensifyClients> {
    let settings = ClientSettings {
        pacing: Pacing {
            windows: vec![PacingWindow {
                max_requests: WINDOW_REQUESTS,
                period: Duration::from_secs(WINDOW_SECONDS),
            }],
        },
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(10),
            rate_limited_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        request_timeout: Duration::from_secs(10),
        allowed_endpoints: AllowedEndpoints::only(&sim.endpoint()).expect("loopback endpoint"),
        ..ClientSettings::default()
    };
    Arc::new(ExpensifyClients::new(settings).expect("client settings"))
}

/// What a step broke if the simulator refused any request for its rate windows so far.
pub fn rate_problem(sim: &SimulatorHandle) -> Option<String> {
    let refused = sim.state().counters().rate_limited;
    (refused > 0)
        .then(|| format!("the simulator refused {refused} request(s) for its rate windows"))
}

/// A property test's failure: what broke, the history that led there, and Expensify's
/// changes since the start.
pub fn failure_text(
    what: &str,
    problems: &[String],
    history: &dyn std::fmt::Display,
    origin: &State,
    now: &State,
) -> String {
    format!(
        "{what}:\n  - {}\nhistory:\n{history}changes since the start:\n{}",
        problems.join("\n  - "),
        diff(origin, now)
    )
}

/// The policy owner, the connector's `adminEmail` and `protectedEmails`: never changed.
pub fn is_protected(policy: usize, email: &str) -> bool {
    email == POLICIES[policy].2 || email == ADMIN_EMAIL || email == PROTECTED
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
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

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "auditor" => Some(Role::Auditor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Additive,
    Authoritative,
    ObserveOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Revoke,
    Orphan,
}

/// Policy index -> email -> role.
pub type State = BTreeMap<usize, BTreeMap<String, String>>;

/// Every policy's roster in the simulator now.
pub fn snapshot(sim: &SimulatorHandle) -> State {
    let policies = sim.state().policies();
    POLICIES
        .iter()
        .enumerate()
        .map(|(i, (id, _, _))| {
            let roster = policies
                .iter()
                .find(|p| p.id == *id)
                .map(|p| {
                    p.employees
                        .iter()
                        .map(|e| (e.email.clone(), e.role.as_str().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (i, roster)
        })
        .collect()
}

/// Lines `- email role` (only at the start) and `+ email role` (only now), per policy.
pub fn diff(origin: &State, now: &State) -> String {
    let mut out = String::new();
    for (policy, start) in origin {
        let empty = BTreeMap::new();
        let current = now.get(policy).unwrap_or(&empty);
        let mut lines = Vec::new();
        for (email, role) in start {
            if current.get(email) != Some(role) {
                lines.push(format!("      - {email} {role}"));
            }
        }
        for (email, role) in current {
            if start.get(email) != Some(role) {
                lines.push(format!("      + {email} {role}"));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "    {}:", POLICIES[*policy].1);
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    if out.is_empty() {
        out.push_str("    (none)\n");
    }
    out
}

/// What one sync changed, on one line: `Alpha: +new1 user, pat user->admin, -bob`.
pub fn changes(before: &State, now: &State) -> String {
    let mut policies = Vec::new();
    for (policy, was) in before {
        let empty = BTreeMap::new();
        let is = now.get(policy).unwrap_or(&empty);
        let mut people: Vec<&String> = was.keys().chain(is.keys()).collect();
        people.sort();
        people.dedup();
        let short = |email: &str| email.split('@').next().unwrap_or(email).to_string();
        let lines: Vec<String> = people
            .into_iter()
            .filter_map(|email| match (was.get(email), is.get(email)) {
                (None, Some(role)) => Some(format!("+{} {role}", short(email))),
                (Some(_), None) => Some(format!("-{}", short(email))),
                (Some(old), Some(new)) if old != new => {
                    Some(format!("{} {old}->{new}", short(email)))
                }
                _ => None,
            })
            .collect();
        if !lines.is_empty() {
            policies.push(format!("{}: {}", POLICIES[*policy].1, lines.join(", ")));
        }
    }
    if policies.is_empty() {
        "Expensify unchanged".to_string()
    } else {
        policies.join("; ")
    }
}

/// A number from the environment (case counts, shrink bounds), or `default`.
pub fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// People on policies: (policy index, email).
pub type People = BTreeSet<(usize, String)>;

/// Where Expensify differs from where it started, except people an Authoritative object
/// may have removed (`removable`) and what an `Orphan` deletion left (`orphaned`), each
/// as (policy index, email).
pub fn differences_from_origin(
    origin: &State,
    now: &State,
    (removable, orphaned): (&People, &People),
) -> Vec<String> {
    let mut problems = Vec::new();
    for (policy, start) in origin {
        let current = &now[policy];
        let name = POLICIES[*policy].1;
        let orphaned = |email: &str| orphaned.contains(&(*policy, email.to_string()));
        for (email, role) in start {
            match current.get(email) {
                Some(now_role) if now_role == role => {}
                Some(now_role) if !orphaned(email) => problems.push(format!(
                    "{email} on {name} is {now_role}, was {role} at the start"
                )),
                None if !removable.contains(&(*policy, email.clone())) => problems.push(format!(
                    "{email} on {name} is gone, was {role} at the start"
                )),
                _ => {}
            }
        }
        for (email, role) in current {
            if !start.contains_key(email) && !orphaned(email) {
                problems.push(format!(
                    "{email} on {name} ({role}) was added and is still there"
                ));
            }
        }
    }
    problems
}
