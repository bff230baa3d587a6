//! The Integration Server client: typed calls over one paced, retrying request path.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, warn};
use url::Url;

use super::config_error::ClientConfigError;
use super::credentials::Credentials;
use super::endpoints::AllowedEndpoints;
use super::error::{Call, ErrorKind, ExpensifyError};
use super::pacing::{Pacing, RateLimiter};
use super::retry::RetryPolicy;
use super::wire::{self, EmployeeRecord, PolicySummary, RosterEntry, UpdateOutcome};
use crate::telemetry::progress::{self, Steps};

/// Expensify's one endpoint for every job.
pub const DEFAULT_ENDPOINT: &str =
    "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations";

/// The default cap on a response body. The largest real answer (a roster read of 100
/// policies) is a few MB; the cap only stops a hostile or broken server from filling memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The longest `Retry-After` honoured; a server asking for more is waited this long (the
/// retry budget then usually ends the call instead).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

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
    /// Where credentials may be sent; no client is built for any other endpoint.
    pub allowed_endpoints: AllowedEndpoints,
    /// Largest response body read; a longer one fails the call while streaming.
    pub max_body_bytes: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            roster_chunk_size: 100,
            update_batch_size: 500,
            retry: RetryPolicy::default(),
            pacing: Pacing::default(),
            allowed_endpoints: AllowedEndpoints::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Asked right before every write leaves for Expensify: before each employee-updater
/// batch, after each pacing wait, before each retry. Cluster mode hands in its leadership
/// term, so a replica that lost the Lease mid-sync sends nothing more.
pub trait WriteGate: Send + Sync + std::fmt::Debug {
    /// `Ok` when a write may go out now; otherwise why not (a message for status).
    fn may_write(&self) -> Result<(), String>;
}

/// The rate limiter of each credential, by (endpoint, `partnerUserID`).
type Limiters = HashMap<(String, String), Arc<RateLimiter>>;

/// Builds clients and makes every client of one credential share one rate limiter, so
/// all connectors using that credential together stay within Expensify's limits.
#[derive(Debug, Clone)]
pub struct ExpensifyClients {
    http: reqwest::Client,
    settings: ClientSettings,
    limiters: Arc<Mutex<Limiters>>,
    /// When another process last may have used these credentials (see
    /// [`ExpensifyClients::hold_after_handover`]); limiters made later hold too.
    handover_at: Arc<Mutex<Option<Instant>>>,
    write_gate: Option<Arc<dyn WriteGate>>,
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
        if settings.max_body_bytes == 0 {
            return Err(ClientConfigError::ZeroSetting {
                setting: "maximum response size",
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
            limiters: Arc::new(Mutex::new(HashMap::new())),
            handover_at: Arc::new(Mutex::new(None)),
            write_gate: None,
        })
    }

    /// Another process may have called Expensify with these credentials until now (this
    /// replica just took the Lease over): no call goes out until one longest rate window
    /// has passed, so that process's calls and ours never share a window. Every limiter,
    /// including those made later, holds.
    pub fn hold_after_handover(&self) {
        let now = Instant::now();
        *self
            .handover_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
        let limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for limiter in limiters.values() {
            limiter.hold_from(now);
        }
    }

    /// The same clients (the same rate limiters), whose writes each ask `gate` first.
    pub fn with_write_gate(&self, gate: Arc<dyn WriteGate>) -> ExpensifyClients {
        ExpensifyClients {
            write_gate: Some(gate),
            ..self.clone()
        }
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Whether credentials may be sent to `endpoint`: an acceptable URL that starts with
    /// an allowed prefix. Sync paths call this before reading any Secret, so a refused
    /// endpoint never even causes a credential to be loaded.
    pub fn check_endpoint(&self, endpoint: &str) -> Result<Url, ClientConfigError> {
        self.settings.allowed_endpoints.check(endpoint)
    }

    /// A client for `endpoint` with `credentials`. The endpoint is checked (allowlist
    /// included) before any credential could be sent to it.
    pub fn client(
        &self,
        endpoint: &str,
        credentials: Credentials,
    ) -> Result<ExpensifyClient, ClientConfigError> {
        let endpoint = self.check_endpoint(endpoint)?;
        let key = (
            endpoint.to_string(),
            credentials.partner_user_id().to_string(),
        );
        let limiter = {
            let mut limiters = self
                .limiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            limiters
                .entry(key)
                .or_insert_with(|| {
                    let limiter = RateLimiter::new(&self.settings.pacing);
                    let handover_at = *self
                        .handover_at
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(at) = handover_at {
                        limiter.hold_from(at);
                    }
                    Arc::new(limiter)
                })
                .clone()
        };
        Ok(ExpensifyClient {
            http: self.http.clone(),
            endpoint,
            credentials,
            limiter,
            settings: self.settings.clone(),
            stats: Arc::new(CallStats::default()),
            write_gate: self.write_gate.clone(),
        })
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
    write_gate: Option<Arc<dyn WriteGate>>,
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
        let chunks = policy_ids.chunks(self.settings.roster_chunk_size);
        let mut progress = Steps::start("rosters read", chunks.len());
        for chunk in chunks {
            let job = wire::roster_job(&self.credentials, chunk);
            let (body, attempts) = self.send(Call::ReadRosters, job, None).await?;
            let decoded = wire::decode_rosters(&body, chunk)
                .map_err(|kind| self.failed(Call::ReadRosters, attempts, kind))?;
            rosters.extend(decoded);
            progress.advance();
        }
        Ok(rosters)
    }

    /// The employee updater, `update_batch_size` records per call. A failed batch does
    /// not stop later ones, except when the credential itself is refused or the write gate
    /// closes: then every remaining batch is reported failed with that error, unsent.
    pub async fn update_employees(
        &self,
        records: &[EmployeeRecord],
        dry_run: bool,
    ) -> UpdateReport {
        let mut report = UpdateReport::default();
        let mut fatal: Option<ExpensifyError> = None;
        let batches = records.chunks(self.settings.update_batch_size);
        let mut progress = Steps::start("updater batches sent", batches.len());
        for batch in batches {
            if let Some(error) = &fatal {
                report.failed.push(FailedBatch {
                    records: batch.to_vec(),
                    error: error.clone(),
                });
                progress.advance();
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
                        ErrorKind::CredentialsRejected { .. }
                            | ErrorKind::PermissionDenied { .. }
                            | ErrorKind::WriteStopped { .. }
                    ) {
                        fatal = Some(error.clone());
                    }
                    report.failed.push(FailedBatch {
                        records: batch.to_vec(),
                        error,
                    });
                }
            }
            progress.advance();
        }
        report
    }

    /// Whether this attempt may be sent: reads always, writes when the gate allows.
    fn may_send(&self, call: Call, attempt: u32) -> Result<(), ExpensifyError> {
        let Some(gate) = self.write_gate.as_ref().filter(|_| call.writes()) else {
            return Ok(());
        };
        gate.may_write().map_err(|reason| ExpensifyError {
            call,
            attempts: attempt.saturating_sub(1),
            kind: ErrorKind::WriteStopped { reason },
        })
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
            // Before waiting for a slot, and again right before sending: a wait can outlast
            // the right to write (a lost leadership term).
            self.may_send(call, attempt)?;
            let (slot, waited) = self.limiter.acquire().await;
            if let Err(stopped) = self.may_send(call, attempt) {
                drop(slot);
                return Err(stopped);
            }
            self.stats.requests[CallStats::index(call)].fetch_add(1, Ordering::Relaxed);
            let sent_at = Instant::now();
            let result = self.send_once(&form).await;
            // The answer is in: the request takes its place in the windows now.
            drop(slot);
            let elapsed_ms = millis(sent_at.elapsed());
            if let Err(ErrorKind::RateLimited { retry_after, .. }) = &result {
                let margin = self.limiter.rate_limited(*retry_after);
                warn!(
                    job = call.job(),
                    attempt,
                    margin_percent = margin,
                    "Expensify refused a request as over its rate limit (429) although the client paced; holding this credential's requests and pacing further below the limit"
                );
            }
            let kind = match result {
                Ok(body) => {
                    debug!(
                        job = call.job(),
                        attempt,
                        elapsed_ms,
                        paced_ms = millis(waited),
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
                    let shown = format!(
                        "retrying {} in {} s ({})",
                        call.job(),
                        delay.as_secs().max(1),
                        kind.category()
                    );
                    warn!(job = call.job(), attempt, error_class = kind.category(), error = %self.scrubbed(kind), retry_in_ms = millis(delay), "transient Expensify error, retrying");
                    let _shown = progress::wait_quietly(&shown);
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
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = self.read_body(response).await?;
        wire::classify_scrubbed(status, retry_after, &body, &|text: &str| {
            self.credentials.scrub(text)
        })
    }

    /// The body, read chunk by chunk and refused as soon as it passes the cap, so an
    /// endless or huge answer never sits in memory. (A slow drip is ended by the
    /// request timeout, which covers the body too.)
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, ErrorKind> {
        let limit = self.settings.max_body_bytes;
        let too_large = || ErrorKind::ResponseTooLarge { limit };
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, error: &reqwest::Error) -> ErrorKind {
        ErrorKind::from_transport(error, &self.endpoint, self.settings.request_timeout)
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
            ErrorKind::Unreachable {
                endpoint,
                reason,
                message,
            } => ErrorKind::Unreachable {
                endpoint,
                reason,
                message: scrub(message),
            },
            // A decoder's error quotes the value at fault, which can be the whole body:
            // scrubbed first, then cut like a server's message (a cut made first could
            // leave a prefix of the secret behind).
            ErrorKind::Undecodable { message } => ErrorKind::Undecodable {
                message: wire::short(&message, &|text: &str| self.credentials.scrub(text)),
            },
            kind @ (ErrorKind::Timeout(_)
            | ErrorKind::ResponseTooLarge { .. }
            | ErrorKind::WriteStopped { .. }) => kind,
        }
    }
}

/// `Retry-After` in seconds, clamped to [`MAX_RETRY_AFTER`]. Any value a server sends
/// (`18446744073709551615`, a hundred digits) gives a bounded wait; an HTTP date or
/// garbage is ignored (the rate-limit floor applies).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = digits.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// A duration in whole milliseconds for logs (saturating; no log spans 584 million years).
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A replica that took the Lease over holds every credential for one longest window
    /// (60 s paced to 90 %), those it meets only later included.
    #[tokio::test(start_paused = true)]
    async fn after_a_handover_no_call_goes_out_for_one_longest_window() {
        let clients = ExpensifyClients::new(ClientSettings::default()).unwrap();
        let known = clients
            .client(DEFAULT_ENDPOINT, Credentials::new("id1", "s").unwrap())
            .unwrap();
        let started = Instant::now();
        clients.hold_after_handover();
        tokio::time::advance(Duration::from_secs(20)).await;
        let later = clients
            .client(DEFAULT_ENDPOINT, Credentials::new("id2", "s").unwrap())
            .unwrap();
        for client in [known, later] {
            drop(client.limiter.acquire().await);
            assert_eq!(
                started.elapsed().as_millis(),
                66_667,
                "{}",
                client.credentials.partner_user_id()
            );
        }
        // Without a hand-over, the first call goes at once.
        let fresh = ExpensifyClients::new(ClientSettings::default()).unwrap();
        let client = fresh
            .client(DEFAULT_ENDPOINT, Credentials::new("id1", "s").unwrap())
            .unwrap();
        assert_eq!(client.limiter.acquire().await.1, Duration::ZERO);
    }

    #[test]
    fn retry_after_is_clamped() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        for huge in ["18446744073709551615", "99999999999999999999999999", "3601"] {
            assert_eq!(parse_retry_after(huge), Some(MAX_RETRY_AFTER), "{huge}");
        }
        for ignored in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "+5"] {
            assert_eq!(parse_retry_after(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn clients_are_only_built_for_allowed_endpoints() {
        let clients = ExpensifyClients::new(ClientSettings::default()).unwrap();
        let credentials = || Credentials::new("id", "s").unwrap();
        assert!(clients.client(DEFAULT_ENDPOINT, credentials()).is_ok());
        assert!(matches!(
            clients.client("http://127.0.0.1:9/x", credentials()),
            Err(ClientConfigError::EndpointNotAllowed { .. })
        ));
        assert!(matches!(
            clients.client("https://integrations.expensify.com.evil.io/", credentials()),
            Err(ClientConfigError::EndpointNotAllowed { .. })
        ));
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
