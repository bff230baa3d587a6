//! The partner credential pair, kept out of every Debug, Display and log line.

use std::fmt;

/// `partnerUserID` / `partnerUserSecret`. The secret leaves this type only to be put
/// into a request body ([`Credentials::expose_secret`] is crate-private).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    partner_user_id: String,
    partner_user_secret: String,
}

/// Why a credential pair could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("partnerUserID is empty")]
    EmptyUserId,
    #[error("partnerUserSecret is empty")]
    EmptySecret,
}

impl Credentials {
    /// Builds a pair; surrounding whitespace (a trailing newline in a mounted Secret file)
    /// is trimmed.
    pub fn new(
        partner_user_id: impl Into<String>,
        partner_user_secret: impl Into<String>,
    ) -> Result<Self, CredentialsError> {
        let partner_user_id = partner_user_id.into().trim().to_string();
        let partner_user_secret = partner_user_secret.into().trim().to_string();
        if partner_user_id.is_empty() {
            return Err(CredentialsError::EmptyUserId);
        }
        if partner_user_secret.is_empty() {
            return Err(CredentialsError::EmptySecret);
        }
        Ok(Self {
            partner_user_id,
            partner_user_secret,
        })
    }

    /// The public half, used to key the per-credential rate limiter.
    pub fn partner_user_id(&self) -> &str {
        &self.partner_user_id
    }

    pub(crate) fn expose_secret(&self) -> &str {
        &self.partner_user_secret
    }

    /// Removes the secret from text that came back from the wire, in case a server or
    /// proxy ever echoes the request body into an error message.
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.partner_user_secret, "[redacted]")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("partner_user_id", &self.partner_user_id)
            .field("partner_user_secret", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let credentials = Credentials::new("aa_admin_acme_com", "s3cr3t-value").unwrap();
        let shown = format!("{credentials:?} {credentials:#?}");
        assert!(!shown.contains("s3cr3t-value"));
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn trims_and_rejects_empty_halves() {
        let credentials = Credentials::new(" id\n", "secret\n").unwrap();
        assert_eq!(credentials.partner_user_id(), "id");
        assert_eq!(credentials.expose_secret(), "secret");
        assert_eq!(
            Credentials::new(" ", "x").unwrap_err(),
            CredentialsError::EmptyUserId
        );
        assert_eq!(
            Credentials::new("x", "\n").unwrap_err(),
            CredentialsError::EmptySecret
        );
    }

    #[test]
    fn scrub_removes_every_occurrence() {
        let credentials = Credentials::new("id", "abc123").unwrap();
        assert_eq!(
            credentials.scrub("x abc123 y abc123"),
            "x [redacted] y [redacted]"
        );
    }
}
