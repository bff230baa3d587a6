//! The Integration Server client: typed calls over one paced, retrying request path.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, warn};
use url::Url;

use super::credentials::Credentials;
use super::error::{Call, ClientConfigError, ErrorKind, ExpensifyError};
use super::pacing::{Pacing, RateLimiter};
use super::retry::RetryPolicy;
use super::wire::{self, EmployeeRecord, PolicySummary, RosterEntry, UpdateOutcome};

/// Expensify's one endpoint for every job.
pub const DEFAULT_ENDPOINT: &str =
    "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations";

/// Process-wide client settings (flags of the operator, not per connector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub request_timeout: Duration,
    /// Policies per roster read (`policyIDList` length).
    pub roster_chunk_size: usize,
    /// Records per employee updater call.
    pub update_batch_size: usize,
    pub retry: RetryPolicy,
    pub pacing: Pacing,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            roster_chunk_size: 100,
            update_batch_size: 500,
            retry: RetryPolicy::default(),
            pacing: Pacing::default(),
        }
    }
}

/// Builds clients and makes every client of one credential share one rate limiter, so
/// all connectors using that credential together stay within Expensify's limits.
#[derive(Debug)]
pub struct ExpensifyClients {
    http: reqwest::Client,
    settings: ClientSettings,
    limiters: Mutex<HashMap<(String, String), Arc<RateLimiter>>>,
}

impl ExpensifyClients {
    pub fn new(settings: ClientSettings) -> Result<Self, ClientConfigError> {
        if settings.roster_chunk_size == 0 {
            return Err(ClientConfigError::ZeroSetting {
                setting: "roster chunk size",
            });
        }
        if settings.update_batch_size == 0 {
            return Err(ClientConfigError::ZeroSetting {
                setting: "update batch size",
            });
        }
        if settings.retry.max_attempts == 0 {
            return Err(ClientConfigError::ZeroSetting {
                setting: "retry attempts",
            });
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("expensify-operator/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.request_timeout)
            // Redirects could carry a POST body elsewhere; Expensify never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientConfigError::Http(e.to_string()))?;
        Ok(Self {
            http,
            settings,
            limiters: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// A client for `endpoint` with `credentials`. The endpoint is checked before any
    /// credential could be sent to it.
    pub fn client(
        &self,
        endpoint: &str,
        credentials: Credentials,
    ) -> Result<ExpensifyClient, ClientConfigError> {
        let endpoint = checked_endpoint(endpoint)?;
        let key = (
            endpoint.to_string(),
            credentials.partner_user_id().to_string(),
        );
        let limiter = {
            let mut limiters = self
                .limiters
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            limiters
                .entry(key)
                .or_insert_with(|| Arc::new(RateLimiter::new(&self.settings.pacing)))
                .clone()
        };
        Ok(ExpensifyClient {
            http: self.http.clone(),
            endpoint,
            credentials,
            limiter,
            settings: self.settings.clone(),
            stats: Arc::new(CallStats::default()),
        })
    }
}

/// Accepts `https`, and plain `http` only on loopback.
pub fn checked_endpoint(endpoint: &str) -> Result<Url, ClientConfigError> {
    let url = Url::parse(endpoint).map_err(|e| ClientConfigError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(ClientConfigError::InsecureEndpoint {
            endpoint: endpoint.to_string(),
        }),
        other => Err(ClientConfigError::UnsupportedScheme {
            endpoint: endpoint.to_string(),
            scheme: other.to_string(),
        }),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Counts of what one client sent, for reports and benchmarks.
#[derive(Debug, Default)]
pub struct CallStats {
    requests: [AtomicU64; 3],
    retries: AtomicU64,
    failures: AtomicU64,
}

/// A snapshot of [`CallStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub policy_list: u64,
    pub roster_reads: u64,
    pub employee_updates: u64,
    pub retries: u64,
    pub failures: u64,
}

impl CallCounts {
    /// Every HTTP request sent, retries included.
    pub fn total(&self) -> u64 {
        self.policy_list + self.roster_reads + self.employee_updates
    }
}

impl CallStats {
    fn index(call: Call) -> usize {
        match call {
            Call::ListPolicies => 0,
            Call::ReadRosters => 1,
            Call::UpdateEmployees => 2,
        }
    }

    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            policy_list: self.requests[0].load(Ordering::Relaxed),
            roster_reads: self.requests[1].load(Ordering::Relaxed),
            employee_updates: self.requests[2].load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// Records that Expensify did not take, because their batch failed.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedBatch {
    pub records: Vec<EmployeeRecord>,
    pub error: ExpensifyError,
}

/// The result of writing a feed in batches: what was answered, and what failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateReport {
    pub outcome: UpdateOutcome,
    pub failed: Vec<FailedBatch>,
}

/// A client bound to one endpoint and one credential.
#[derive(Debug, Clone)]
pub struct ExpensifyClient {
    http: reqwest::Client,
    endpoint: Url,
    credentials: Credentials,
    limiter: Arc<RateLimiter>,
    settings: ClientSettings,
    stats: Arc<CallStats>,
}

impl ExpensifyClient {
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// What this client (and its clones) has sent so far.
    pub fn counts(&self) -> CallCounts {
        self.stats.snapshot()
    }

    /// `get` / `policyList`: one call, the whole list (the API has no pagination).
    pub async fn list_policies(
        &self,
        admin_only: bool,
    ) -> Result<Vec<PolicySummary>, ExpensifyError> {
        let job = wire::policy_list_job(&self.credentials, admin_only);
        let (body, attempts) = self.send(Call::ListPolicies, job, None).await?;
        wire::decode_policy_list(body)
            .map_err(|kind| self.failed(Call::ListPolicies, attempts, kind))
    }

    /// `get` / `policy` with `fields: ["employees"]`, in chunks of `roster_chunk_size`
    /// policies per call. Every requested policy is in the answer or the call fails.
    pub async fn read_rosters(
        &self,
        policy_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<RosterEntry>>, ExpensifyError> {
        let mut rosters = BTreeMap::new();
        for chunk in policy_ids.chunks(self.settings.roster_chunk_size) {
            let job = wire::roster_job(&self.credentials, chunk);
            let (body, attempts) = self.send(Call::ReadRosters, job, None).await?;
            let decoded = wire::decode_rosters(body, chunk)
                .map_err(|kind| self.failed(Call::ReadRosters, attempts, kind))?;
            rosters.extend(decoded);
        }
        Ok(rosters)
    }

    /// The employee updater, `update_batch_size` records per call. A failed batch does
    /// not stop later ones, except when the credential itself is refused: then every
    /// remaining batch is reported failed with that error, unsent.
    pub async fn update_employees(
        &self,
        records: &[EmployeeRecord],
        dry_run: bool,
    ) -> UpdateReport {
        let mut report = UpdateReport::default();
        let mut fatal: Option<ExpensifyError> = None;
        for batch in records.chunks(self.settings.update_batch_size) {
            if let Some(error) = &fatal {
                report.failed.push(FailedBatch {
                    records: batch.to_vec(),
                    error: error.clone(),
                });
                continue;
            }
            let job = wire::employee_update_job(&self.credentials, dry_run);
            let feed = wire::employee_feed(batch);
            let result = match self.send(Call::UpdateEmployees, job, Some(feed)).await {
                Ok((body, attempts)) => wire::decode_update(body)
                    .map_err(|kind| self.failed(Call::UpdateEmployees, attempts, kind)),
                Err(error) => Err(error),
            };
            match result {
                Ok(outcome) => report.outcome.merge(outcome),
                Err(error) => {
                    if matches!(
                        error.kind,
                        ErrorKind::CredentialsRejected { .. } | ErrorKind::PermissionDenied { .. }
                    ) {
                        fatal = Some(error.clone());
                    }
                    report.failed.push(FailedBatch {
                        records: batch.to_vec(),
                        error,
                    });
                }
            }
        }
        report
    }

    fn failed(&self, call: Call, attempts: u32, kind: ErrorKind) -> ExpensifyError {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        ExpensifyError {
            call,
            attempts,
            kind: self.scrubbed(kind),
        }
    }

    /// Sends one job, paced and retried. Returns the successful body and the attempts used.
    async fn send(
        &self,
        call: Call,
        job: String,
        data: Option<String>,
    ) -> Result<(Value, u32), ExpensifyError> {
        let mut form: Vec<(&str, String)> = vec![(wire::JOB_FIELD, job)];
        if let Some(data) = data {
            form.push((wire::DATA_FIELD, data));
        }
        let first_attempt = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let waited = self.limiter.acquire().await;
            self.stats.requests[CallStats::index(call)].fetch_add(1, Ordering::Relaxed);
            let sent_at = Instant::now();
            let result = self.send_once(&form).await;
            let elapsed_ms = sent_at.elapsed().as_millis() as u64;
            let kind = match result {
                Ok(body) => {
                    debug!(
                        job = call.job(),
                        attempt,
                        elapsed_ms,
                        paced_ms = waited.as_millis() as u64,
                        "expensify call succeeded"
                    );
                    return Ok((body, attempt));
                }
                Err(kind) => kind,
            };
            let delay = self.settings.retry.delay_after(
                attempt,
                first_attempt.elapsed(),
                &kind,
                &mut rand::rng(),
            );
            match delay {
                Some(delay) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(job = call.job(), attempt, error_class = kind.category(), error = %self.scrubbed(kind), retry_in_ms = delay.as_millis() as u64, "transient Expensify error, retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(self.failed(call, attempt, kind)),
            }
        }
    }

    async fn send_once(&self, form: &[(&str, String)]) -> Result<Value, ErrorKind> {
        let response = self
            .http
            .post(self.endpoint.clone())
            .form(form)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        wire::classify(status, retry_after, &body)
    }

    fn transport_error(&self, error: reqwest::Error) -> ErrorKind {
        if error.is_timeout() {
            return ErrorKind::Timeout(self.settings.request_timeout);
        }
        // reqwest's Display names the URL, never the body; walk the sources for the cause.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        ErrorKind::Transport { message }
    }

    fn scrubbed(&self, kind: ErrorKind) -> ErrorKind {
        let scrub = |text: String| self.credentials.scrub(&text);
        match kind {
            ErrorKind::CredentialsRejected { code, message } => ErrorKind::CredentialsRejected {
                code,
                message: scrub(message),
            },
            ErrorKind::PermissionDenied { message } => ErrorKind::PermissionDenied {
                message: scrub(message),
            },
            ErrorKind::InvalidRequest { code, message } => ErrorKind::InvalidRequest {
                code,
                message: scrub(message),
            },
            ErrorKind::RateLimited {
                message,
                retry_after,
            } => ErrorKind::RateLimited {
                message: scrub(message),
                retry_after,
            },
            ErrorKind::Server { status, message } => ErrorKind::Server {
                status,
                message: scrub(message),
            },
            ErrorKind::Refused { code, message } => ErrorKind::Refused {
                code,
                message: scrub(message),
            },
            ErrorKind::Transport { message } => ErrorKind::Transport {
                message: scrub(message),
            },
            ErrorKind::Undecodable { message } => ErrorKind::Undecodable {
                message: scrub(message),
            },
            timeout @ ErrorKind::Timeout(_) => timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        assert!(checked_endpoint(DEFAULT_ENDPOINT).is_ok());
        for loopback in [
            "http://127.0.0.1:8080/Integration-Server/ExpensifyIntegrations",
            "http://127.5.6.7/x",
            "http://[::1]:9000/x",
            "http://localhost:1/x",
        ] {
            assert!(checked_endpoint(loopback).is_ok(), "{loopback}");
        }
        for insecure in [
            "http://integrations.expensify.com/x",
            "http://10.0.0.1/x",
            "http://[::2]/x",
        ] {
            assert!(
                matches!(
                    checked_endpoint(insecure),
                    Err(ClientConfigError::InsecureEndpoint { .. })
                ),
                "{insecure}"
            );
        }
        assert!(matches!(
            checked_endpoint("ftp://x/"),
            Err(ClientConfigError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            checked_endpoint("not a url"),
            Err(ClientConfigError::InvalidEndpoint { .. })
        ));
    }

    #[test]
    fn clients_of_one_credential_share_a_limiter() {
        let clients = ExpensifyClients::new(ClientSettings::default()).unwrap();
        let a = clients
            .client(DEFAULT_ENDPOINT, Credentials::new("id1", "s").unwrap())
            .unwrap();
        let b = clients
            .client(DEFAULT_ENDPOINT, Credentials::new("id1", "s").unwrap())
            .unwrap();
        let c = clients
            .client(DEFAULT_ENDPOINT, Credentials::new("id2", "s").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a.limiter, &b.limiter));
        assert!(!Arc::ptr_eq(&a.limiter, &c.limiter));
    }

    #[test]
    fn zero_settings_are_refused() {
        let settings = ClientSettings {
            update_batch_size: 0,
            ..ClientSettings::default()
        };
        assert!(matches!(
            ExpensifyClients::new(settings),
            Err(ClientConfigError::ZeroSetting { .. })
        ));
    }
}
