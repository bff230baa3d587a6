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
    /// proxy ever echoes the request body into an error message: as sent (form-encoded,
    /// inside a JSON string), percent-encoded either way, JSON-escaped, and raw.
    pub fn scrub(&self, text: &str) -> String {
        let mut scrubbed = text.to_string();
        for form in self.secret_forms() {
            if scrubbed.contains(&form) {
                scrubbed = scrubbed.replace(&form, "[redacted]");
            }
        }
        scrubbed
    }

    /// Every spelling of the secret an echo could contain, longest first so that no
    /// shorter form leaves part of a longer one behind.
    fn secret_forms(&self) -> Vec<String> {
        let secret = self.partner_user_secret.as_str();
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent = percent_encode_all(secret);
        let json = serde_json::to_string(secret).map_or_else(
            |_| secret.to_string(),
            |quoted| quoted[1..quoted.len() - 1].to_string(),
        );
        // PHP's json_encode (Expensify's stack) also escapes `/`, and non-ASCII unless
        // told not to.
        let slashes = json.replace('/', "\\/");
        let php = ascii_json(&slashes);
        let mut forms = vec![
            secret.to_string(),
            lower_hex(&form),
            form,
            lower_hex(&percent),
            percent,
            lower_unicode_escapes(&ascii_json(&json)),
            ascii_json(&json),
            json,
            lower_unicode_escapes(&php),
            php,
            slashes,
        ];
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        forms.dedup();
        forms
    }
}

/// Every byte but RFC 3986's unreserved ones as `%XX`.
fn percent_encode_all(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `%2F` → `%2f`: percent-encoding is case-insensitive in its hex digits.
fn lower_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending = 0;
    for c in text.chars() {
        if pending > 0 {
            out.push(c.to_ascii_lowercase());
            pending -= 1;
        } else {
            if c == '%' {
                pending = 2;
            }
            out.push(c);
        }
    }
    out
}

/// Non-ASCII characters as JSON `\uXXXX` escapes (UTF-16 units, upper-case hex).
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04X}"));
            }
        }
    }
    out
}

/// `\u00E9` → `\u00e9`: JSON escapes are case-insensitive in their hex digits.
fn lower_unicode_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lower = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if lower > 0 {
            out.push(c.to_ascii_lowercase());
            lower -= 1;
            continue;
        }
        out.push(c);
        if c == '\\' && chars.peek() == Some(&'u') {
            out.push('u');
            chars.next();
            lower = 4;
        }
    }
    out
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
    fn scrub_removes_encoded_forms() {
        let credentials = Credentials::new("id", "p@ss/w rd+\"é&=").unwrap();
        let secret = credentials.expose_secret().to_string();
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let json = serde_json::to_string(&secret).unwrap();
        let json = &json[1..json.len() - 1];
        for echoed in [
            secret.clone(),
            form.clone(),
            form.to_lowercase(),
            "p%40ss%2Fw%20rd%2B%22%C3%A9%26%3D".to_string(),
            "p%40ss%2fw%20rd%2b%22%c3%a9%26%3d".to_string(),
            json.to_string(),
            "p@ss\\/w rd+\\\"\\u00e9&=".to_string(),
            "p@ss\\/w rd+\\\"\\u00E9&=".to_string(),
            "p@ss/w rd+\\\"\\u00E9&=".to_string(),
            "p@ss/w rd+\\\"\\u00e9&=".to_string(),
            "p@ss\\/w rd+\\\"é&=".to_string(),
        ] {
            let text = format!("partnerUserSecret={echoed}&x=1");
            let scrubbed = credentials.scrub(&text);
            assert_eq!(scrubbed, "partnerUserSecret=[redacted]&x=1", "{echoed}");
        }
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
