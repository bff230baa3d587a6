//! The simulator's in-memory Expensify: accounts, policies, rosters, and the job handlers.
//!
//! Strict where Expensify is strict (see `shared/research/expensify-api.md`): a client
//! that passes against this is right against Expensify, as far as the evidence goes.
//!
//! By concern: `wire` (the answers that go back), `requests` (a request in: faults, rate
//! limits, credentials, the job's routing), `job` (what a request's form says), `roster`
//! (policies and their members), `policies` (the two read jobs), `employee_updater` (the
//! one write job, record by record), `request_log` (the log and counters at `/admin`).
//! Only `roster` is imported here; every other part stands on this one.

mod employee_updater;
mod job;
mod policies;
mod request_log;
mod requests;
mod roster;
mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::faults::{FaultConfig, Faults};
use super::seed::{Seed, SeedAccount, SeedEmployee, SeedPolicy};
use crate::email;
use crate::expensify::{Pacing, Role, WindowLog};

pub use job::RosterChange;
pub use request_log::{Counters, RequestRecord};
pub use wire::{HostileAnswer, Outcome};

use roster::{Member, Policy};

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
}

#[cfg(test)]
mod tests;
