//! A request in: the scripted fault drawn for it, the form and job read as strictly as
//! Expensify reads them, the rate-limit windows, the credentials, and the job's handler.

use std::collections::HashMap;

use serde_json::Value;
use tokio::time::Instant;

use super::SimState;
use super::job::{JobInfo, describe};
use super::request_log::wall_clock_micros;
use super::wire::{HostileAnswer, Outcome, RATE_LIMIT_MESSAGE, SimResponse, answer};
use crate::expensify::WindowLog;
use crate::simulator::faults::ScriptedFault;

impl SimState {
    /// Handles one request body (form-encoded) arriving at `now`.
    pub fn receive(&mut self, body: &[u8], now: Instant) -> Outcome {
        // Taken first: the log says when the request arrived, not when it was answered.
        let received_at_micros = wall_clock_micros();
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
        self.record(received_at_micros, info, &outcome, fault.as_ref(), now);
        outcome
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
}
