//! Which endpoints a credential may be sent to: the operator's allowlist.
//!
//! A connector's `endpoint` is written by whoever can write the connector (a tenant in
//! cluster mode, any pull request in file mode); the allowlist is set by whoever runs the
//! operator. Matching is done on parsed URLs, never on strings, so
//! `https://integrations.expensify.com.evil.io/` or `https://integrations.expensify.com@evil/`
//! cannot pass for the real host.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use super::config_error::ClientConfigError;

/// Endpoints credentials may be sent to, as URL prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedEndpoints {
    prefixes: UrlPrefixes,
}

/// An allowlist of URL prefixes, matched on parsed URLs: the endpoints credentials may be
/// sent to, and the webhooks notifications may be posted to (`crate::notify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPrefixes {
    prefixes: Vec<Prefix>,
}

/// One allowed prefix, as the parts that are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    scheme: String,
    /// As the URL parser normalises it: lower case, IPv6 in brackets.
    host: String,
    port: Option<u16>,
    segments: Vec<String>,
}

impl Default for AllowedEndpoints {
    /// The Expensify Integration Server alone ([`crate::expensify::DEFAULT_ENDPOINT`]; a
    /// test checks they agree).
    fn default() -> Self {
        Self {
            prefixes: UrlPrefixes {
                prefixes: vec![Prefix {
                    scheme: "https".into(),
                    host: "integrations.expensify.com".into(),
                    port: Some(443),
                    segments: vec!["Integration-Server".into(), "ExpensifyIntegrations".into()],
                }],
            },
        }
    }
}

impl UrlPrefixes {
    /// Parses a comma-separated list of URL prefixes. Every entry must itself be an
    /// acceptable URL (https, or http on loopback), without credentials, query or fragment.
    pub fn parse(list: &str) -> Result<Self, ClientConfigError> {
        let prefixes = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(Prefix::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if prefixes.is_empty() {
            return Err(ClientConfigError::EmptyAllowlist);
        }
        Ok(Self { prefixes })
    }

    /// Whether `url` (already an acceptable URL, see [`checked_endpoint`]) starts with one
    /// of the prefixes.
    pub fn covers(&self, url: &Url) -> bool {
        self.prefixes.iter().any(|prefix| prefix.covers(url))
    }
}

impl AllowedEndpoints {
    /// Parses a comma-separated list of URL prefixes (the `--allowed-endpoints` flag).
    /// Every entry must itself be an acceptable endpoint (https, or http on loopback),
    /// without credentials, query or fragment.
    pub fn parse(list: &str) -> Result<Self, ClientConfigError> {
        Ok(Self {
            prefixes: UrlPrefixes::parse(list)?,
        })
    }

    /// This one prefix alone (e.g. a simulator's endpoint).
    pub fn only(prefix: &str) -> Result<Self, ClientConfigError> {
        Ok(Self {
            prefixes: UrlPrefixes {
                prefixes: vec![Prefix::parse(prefix)?],
            },
        })
    }

    /// The endpoint as a URL, if it is an acceptable endpoint at all and starts with an
    /// allowed prefix.
    pub fn check(&self, endpoint: &str) -> Result<Url, ClientConfigError> {
        let url = checked_endpoint(endpoint)?;
        if self.prefixes.covers(&url) {
            Ok(url)
        } else {
            Err(ClientConfigError::EndpointNotAllowed {
                endpoint: endpoint.to_string(),
                allowed: self.to_string(),
            })
        }
    }
}

impl fmt::Display for AllowedEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.prefixes.fmt(f)
    }
}

impl fmt::Display for UrlPrefixes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, prefix) in self.prefixes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}://{}", prefix.scheme, prefix.host)?;
            let default_port = if prefix.scheme == "https" { 443 } else { 80 };
            if let Some(port) = prefix.port.filter(|p| *p != default_port) {
                write!(f, ":{port}")?;
            }
            write!(f, "/{}", prefix.segments.join("/"))?;
        }
        Ok(())
    }
}

impl Prefix {
    fn parse(entry: &str) -> Result<Self, ClientConfigError> {
        let url = checked_endpoint(entry)?;
        if has_userinfo(&url) || url.query().is_some() || url.fragment().is_some() {
            return Err(ClientConfigError::InvalidAllowedEndpoint {
                entry: entry.to_string(),
            });
        }
        Ok(Self {
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_string(),
            port: url.port_or_known_default(),
            segments: segments(&url).into_iter().map(str::to_string).collect(),
        })
    }

    /// Same scheme, host and port, no userinfo, and this prefix's path segments start the
    /// endpoint's path (`/a/b` covers `/a/b` and `/a/b/c`, not `/a/bc`).
    fn covers(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme
            || url.host_str() != Some(self.host.as_str())
            || url.port_or_known_default() != self.port
            || has_userinfo(url)
        {
            return false;
        }
        let actual = segments(url);
        actual.len() >= self.segments.len()
            && self
                .segments
                .iter()
                .zip(&actual)
                .all(|(want, got)| want == got)
    }
}

fn has_userinfo(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Path segments, without the empty one a trailing slash leaves.
fn segments(url: &Url) -> Vec<&str> {
    let mut segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    if segments.last() == Some(&"") {
        segments.pop();
    }
    segments
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

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expensify::DEFAULT_ENDPOINT;

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
    fn the_default_allows_the_integration_server_alone() {
        let allowed = AllowedEndpoints::default();
        assert_eq!(allowed, AllowedEndpoints::only(DEFAULT_ENDPOINT).unwrap());
        assert_eq!(allowed.to_string(), DEFAULT_ENDPOINT);
        assert!(allowed.check(DEFAULT_ENDPOINT).is_ok());
        // Host names are case-insensitive and the default port is the same port.
        assert!(
            allowed
                .check("https://INTEGRATIONS.expensify.com:443/Integration-Server/ExpensifyIntegrations")
                .is_ok()
        );
        for hostile in [
            "https://integrations.expensify.com.evil.io/Integration-Server/ExpensifyIntegrations",
            "https://integrations.expensify.com@evil.io/Integration-Server/ExpensifyIntegrations",
            "https://evil.io/https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
            "https://user:pw@integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
            "https://integrations.expensify.com:8443/Integration-Server/ExpensifyIntegrations",
            "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrationsX",
            "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations/../../x",
            "https://integrations.expensify.com/Integration-Server/ExpensifyIntegrations/%2e%2e/x",
            "https://integrations.expensify.com/",
            "http://127.0.0.1:1/Integration-Server/ExpensifyIntegrations",
        ] {
            assert!(
                matches!(
                    allowed.check(hostile),
                    Err(ClientConfigError::EndpointNotAllowed { .. })
                ),
                "{hostile}"
            );
        }
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        let allowed =
            AllowedEndpoints::parse(" https://proxy.internal/expensify/ , http://127.0.0.1:9000")
                .unwrap();
        for ok in [
            "https://proxy.internal/expensify",
            "https://proxy.internal/expensify/",
            "https://proxy.internal/expensify/Integration-Server?x=1",
            "http://127.0.0.1:9000/anything",
        ] {
            assert!(allowed.check(ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://proxy.internal/expensify-evil",
            "https://proxy.internal/",
            "http://127.0.0.1:9001/anything",
            "http://localhost:9000/anything",
            "https://127.0.0.1:9000/anything",
        ] {
            assert!(allowed.check(refused).is_err(), "{refused}");
        }
        // Unacceptable endpoints keep their own, more precise error.
        assert!(matches!(
            allowed.check("http://proxy.internal/expensify"),
            Err(ClientConfigError::InsecureEndpoint { .. })
        ));
    }

    #[test]
    fn bad_allowlists_are_refused() {
        for bad in [
            "",
            " , ",
            "http://example.com/",
            "https://u@example.com/",
            "https://example.com/?a=b",
            "https://example.com/#f",
            "example.com",
        ] {
            assert!(AllowedEndpoints::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever follows the real host in a connector's endpoint, an allowed URL goes
        /// to that host and port, with no user info, under the allowed path.
        #[test]
        fn look_alikes_never_reach_another_host(
            head in proptest::sample::select(vec![
                "",
                "/Integration-Server/ExpensifyIntegrations",
                ":443/Integration-Server/ExpensifyIntegrations",
                "/Integration-Server/",
            ]),
            tail in "[@:./%a-zA-Z0-9\\\\?#-]{0,40}",
        ) {
            let allowed = AllowedEndpoints::default();
            let endpoint = format!("https://integrations.expensify.com{head}{tail}");
            if let Ok(url) = allowed.check(&endpoint) {
                proptest::prop_assert_eq!(url.host_str(), Some("integrations.expensify.com"));
                proptest::prop_assert_eq!(url.port_or_known_default(), Some(443));
                proptest::prop_assert!(url.username().is_empty() && url.password().is_none());
                proptest::prop_assert!(
                    url.path() == "/Integration-Server/ExpensifyIntegrations"
                        || url.path().starts_with("/Integration-Server/ExpensifyIntegrations/"),
                    "{}", url
                );
            }
        }
    }
}
