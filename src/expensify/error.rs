//! What can go wrong talking to Expensify, in classes a caller can act on.

use std::fmt;
use std::time::Duration;

use url::Url;

use super::endpoints::is_loopback;

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
    /// A non-loopback endpoint whose name does not resolve or whose host refuses the
    /// connection: a wrong or unreachable endpoint, which retries in seconds do not fix.
    #[error("cannot reach {endpoint}: {reason} ({message})")]
    Unreachable {
        endpoint: String,
        reason: &'static str,
        message: String,
    },
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
            ErrorKind::Unreachable { .. } => "unreachable",
            ErrorKind::Timeout(_) => "timeout",
            ErrorKind::Undecodable { .. } => "undecodable",
            ErrorKind::ResponseTooLarge { .. } => "response_too_large",
            ErrorKind::WriteStopped { .. } => "write_stopped",
        }
    }
}

impl ErrorKind {
    /// The class of a failed request to `endpoint` that got no answer. A name that does not
    /// resolve or a refused connection is final off loopback; on loopback it stays
    /// transient, since the simulator there may still be starting.
    pub fn from_transport(error: &reqwest::Error, endpoint: &Url, timeout: Duration) -> Self {
        if error.is_timeout() {
            return ErrorKind::Timeout(timeout);
        }
        // reqwest's Display names the URL, never the body; walk the sources for the cause.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        let mut unreachable = None;
        while let Some(cause) = source {
            unreachable = unreachable.or_else(|| unreachable_reason(cause));
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        match unreachable {
            Some(reason) if error.is_connect() && !is_loopback(endpoint) => {
                ErrorKind::Unreachable {
                    endpoint: endpoint.to_string(),
                    reason,
                    message,
                }
            }
            _ => ErrorKind::Transport { message },
        }
    }
}

/// Why no connection could be made, when `cause` says the name did not resolve or the
/// connection was refused.
fn unreachable_reason(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(io) = cause.downcast_ref::<std::io::Error>()
        && io.kind() == std::io::ErrorKind::ConnectionRefused
    {
        return Some("the connection was refused");
    }
    // hyper-util's connector error is private; its text for a failed lookup is fixed.
    (cause.to_string() == "dns error").then_some("its name does not resolve")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A loopback address nothing listens on: bound, then released.
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    async fn classify(client: reqwest::ClientBuilder, endpoint: &str) -> ErrorKind {
        let endpoint = Url::parse(endpoint).unwrap();
        let client = client.no_proxy().build().unwrap();
        let error = client.post(endpoint.clone()).send().await.unwrap_err();
        ErrorKind::from_transport(&error, &endpoint, TIMEOUT)
    }

    #[tokio::test]
    async fn a_refused_connection_off_loopback_is_final_and_names_the_endpoint() {
        let port = closed_port();
        // The name leads to the closed loopback port: a real refusal, and no traffic
        // leaves the machine.
        let client = reqwest::Client::builder().resolve("expensify.example", port);
        let endpoint = format!(
            "http://expensify.example:{}/Integration-Server",
            port.port()
        );
        let kind = classify(client, &endpoint).await;
        assert!(
            matches!(
                kind,
                ErrorKind::Unreachable {
                    reason: "the connection was refused",
                    ..
                }
            ),
            "{kind:?}"
        );
        assert!(!kind.is_transient());
        assert!(
            kind.to_string().starts_with(&format!(
                "cannot reach {endpoint}: the connection was refused"
            )),
            "{kind}"
        );
    }

    struct NoSuchName;

    impl reqwest::dns::Resolve for NoSuchName {
        fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
            Box::pin(async { Err(std::io::Error::other("no such host").into()) })
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_final() {
        let client = reqwest::Client::builder().dns_resolver(Arc::new(NoSuchName));
        let endpoint = "https://expensify.example/Integration-Server";
        let kind = classify(client, endpoint).await;
        assert!(
            matches!(
                &kind,
                ErrorKind::Unreachable { endpoint: named, reason: "its name does not resolve", .. }
                    if named == endpoint
            ),
            "{kind:?}"
        );
        assert!(!kind.is_transient());
        assert_eq!(kind.category(), "unreachable");
    }

    #[tokio::test]
    async fn a_refused_connection_on_loopback_stays_transient() {
        // The simulator may still be starting there.
        for host in ["127.0.0.1", "localhost"] {
            let port = closed_port();
            let client = reqwest::Client::builder().resolve("localhost", port);
            let endpoint = format!("http://{host}:{}/", port.port());
            let kind = classify(client, &endpoint).await;
            assert!(
                matches!(kind, ErrorKind::Transport { .. }) && kind.is_transient(),
                "{host}: {kind:?}"
            );
        }
    }
}
