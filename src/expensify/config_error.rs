//! Why a client could not be built (its settings, its endpoint, the allowlist): refused
//! before any credential is sent. Its own room, since the endpoint rules and the error
//! classes both name it.

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
