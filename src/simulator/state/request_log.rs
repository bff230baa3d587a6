//! The request log and counters, read at `/admin`: what each request was, never a secret.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::SimState;
use super::job::{JobInfo, RosterChange};
use super::wire::Outcome;
use crate::simulator::faults::ScriptedFault;

/// One line of the request log, readable at `GET /admin/requests`. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    /// When the request was taken in, on the wall clock: microseconds since the Unix
    /// epoch. What a latency measurement (`bench latency`) ends on.
    pub received_at_micros: u64,
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
    /// When the request was taken in (what the rate windows count); not in `/admin`.
    #[serde(skip)]
    pub received_at: Instant,
    /// Each roster entry the request changed, in order; not in `/admin`.
    #[serde(skip)]
    pub changes: Vec<RosterChange>,
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

/// Microseconds since the Unix epoch, now; 0 on a clock set before 1970.
pub(super) fn wall_clock_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Requests kept in the log; older ones are dropped first (counters keep counting).
const LOG_LIMIT: usize = 100_000;

impl SimState {
    pub(super) fn record(
        &mut self,
        received_at_micros: u64,
        info: JobInfo,
        outcome: &Outcome,
        fault: Option<&ScriptedFault>,
        received_at: Instant,
    ) {
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
            received_at_micros,
            job: info.job,
            partner_user_id: info.partner_user_id,
            http_status,
            response_code,
            fault: fault.map(|f| f.label().to_string()),
            items: info.items,
            dry_run: info.dry_run,
            received_at,
            changes: info.changes,
        });
        self.next_seq += 1;
    }
}
