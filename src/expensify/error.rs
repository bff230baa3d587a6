//! What can go wrong talking to Expensify, in classes a caller can act on.

use std::fmt;
use std::time::Duration;

/// The client call that failed; part of every error so a log line says what was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    ListPolicies,
    ReadRosters,
    UpdateEmployees,
}

impl Call {
    /// Whether the call changes anything in Expensify.
    pub fn writes(self) -> bool {
        self == Call::UpdateEmployees
    }

    /// Stable label for metrics and logs: the Integration Server job it sends.
    pub fn job(self) -> &'static str {
        match self {
            Call::ListPolicies => "get/policyList",
            Call::ReadRosters => "get/policy",
            Call::UpdateEmployees => "update/employees",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::ListPolicies => "list policies",
            Call::ReadRosters => "read policy rosters",
            Call::UpdateEmployees => "update employees",
        })
    }
}

/// A failed call to Expensify, after any retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{call} failed after {attempts} attempt(s): {kind}")]
pub struct ExpensifyError {
    pub call: Call,
    pub attempts: u32,
    #[source]
    pub kind: ErrorKind,
}

impl ExpensifyError {
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// The class of a failure. Messages come from Expensify (with the secret scrubbed), never
/// from the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    /// Body `responseCode` 401/407 or HTTP 401: the partner credentials were refused.
    #[error("credentials rejected by Expensify (code {code}): {message}")]
    CredentialsRejected { code: u16, message: String },
    /// Body 403 or HTTP 403: the account lacks a permission (e.g. not a domain admin).
    #[error("permission denied by Expensify: {message}")]
    PermissionDenied { message: String },
    /// Body 404/410 (or HTTP 400/404/410): bad input or an unknown policy.
    #[error("Expensify rejected the request as invalid (code {code}): {message}")]
    InvalidRequest { code: u16, message: String },
    /// HTTP 429, body 429, or body 503: too many requests for this credential.
    #[error("rate limited by Expensify: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx: Expensify or its edge failed; worth retrying.
    #[error("Expensify server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// Any other body `responseCode` (500 under HTTP 200, 666, …): a refusal that a retry
    /// will not change.
    #[error("Expensify refused the job (code {code}): {message}")]
    Refused { code: u16, message: String },
    /// The connection failed or was dropped before a full answer arrived.
    #[error("transport error: {message}")]
    Transport { message: String },
    /// No answer within the per-request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was longer than the client's cap (`--max-response-bytes`).
    #[error("response larger than the {limit}-byte limit; the call was abandoned")]
    ResponseTooLarge { limit: usize },
    /// An answer arrived but is not a response this client understands.
    #[error("undecodable response: {message}")]
    Undecodable { message: String },
    /// Not sent: the client's write gate was closed (cluster mode: this replica's
    /// leadership term ended).
    #[error("write not sent: {reason}")]
    WriteStopped { reason: String },
}

impl ErrorKind {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited { .. }
                | ErrorKind::Server { .. }
                | ErrorKind::Transport { .. }
                | ErrorKind::Timeout(_)
        )
    }

    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ErrorKind::CredentialsRejected { .. } => "credentials_rejected",
            ErrorKind::PermissionDenied { .. } => "permission_denied",
            ErrorKind::InvalidRequest { .. } => "invalid_request",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::Server { .. } => "server_error",
            ErrorKind::Refused { .. } => "refused",
            ErrorKind::Transport { .. } => "transport",
            ErrorKind::Timeout(_) => "timeout",
            ErrorKind::Undecodable { .. } => "undecodable",
            ErrorKind::ResponseTooLarge { .. } => "response_too_large",
            ErrorKind::WriteStopped { .. } => "write_stopped",
        }
    }
}

/// A client that could not be built: refused before any credential is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientConfigError {
    #[error("endpoint {endpoint:?} is not a valid URL: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error(
        "endpoint {endpoint:?} uses plain http; only https is allowed, except on loopback \
         addresses (127.0.0.0/8, ::1, localhost) where the simulator runs"
    )]
    InsecureEndpoint { endpoint: String },
    #[error(
        "endpoint {endpoint:?} has scheme {scheme:?}; only https (or http on loopback) is allowed"
    )]
    UnsupportedScheme { endpoint: String, scheme: String },
    #[error(
        "endpoint {endpoint:?} is not an allowed endpoint (allowed: {allowed}); the operator \
         sets them with --allowed-endpoints or EXPENSIFY_ALLOWED_ENDPOINTS"
    )]
    EndpointNotAllowed { endpoint: String, allowed: String },
    #[error(
        "allowed endpoint {entry:?} must be a plain URL prefix, without user, password, \
         query or fragment"
    )]
    InvalidAllowedEndpoint { entry: String },
    #[error("the list of allowed endpoints is empty")]
    EmptyAllowlist,
    #[error("{setting} must be at least 1")]
    ZeroSetting { setting: &'static str },
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}
