//! Kubernetes name rules, checked before a name is used anywhere, above all before it
//! becomes part of a path (`--secrets-dir`, `--status-dir`). The rules are the API server's,
//! so a repository that file mode accepts is one `kubectl apply` accepts too.

use std::fmt;

/// Longest DNS-1123 subdomain (object names, Secret names).
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 label (namespaces).
pub const MAX_LABEL: usize = 63;
/// Longest Secret key.
pub const MAX_SECRET_KEY: usize = 253;

/// Which rule a name must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Lower-case alphanumerics, `-` and `.`, <= 253 (object and Secret names).
    Subdomain,
    /// Lower-case alphanumerics and `-`, <= 63 (namespaces).
    Label,
    /// Alphanumerics, `-`, `_` and `.`, <= 253, not `.`, `..` or starting with `..`.
    SecretKey,
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameRule::Subdomain => "DNS-1123 subdomain",
            NameRule::Label => "DNS-1123 label",
            NameRule::SecretKey => "Secret key",
        })
    }
}

/// A name that breaks its rule. Shows at most the first 64 characters of the name so a
/// 300-character name does not drown the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?} is not a valid {rule}: {reason}")]
pub struct InvalidName {
    pub rule: NameRule,
    shown: String,
    reason: String,
}

impl InvalidName {
    fn new(rule: NameRule, value: &str, reason: impl Into<String>) -> Self {
        Self {
            rule,
            shown: crate::sanitize::shortened(value),
            reason: reason.into(),
        }
    }
}

/// Checks `value` against `rule`.
pub fn check(rule: NameRule, value: &str) -> Result<(), InvalidName> {
    match rule {
        NameRule::Subdomain => check_subdomain(value),
        NameRule::Label => check_label(value),
        NameRule::SecretKey => check_secret_key(value),
    }
}

/// A DNS-1123 subdomain: dot-separated labels, <= 253 characters in all.
pub fn check_subdomain(value: &str) -> Result<(), InvalidName> {
    let rule = NameRule::Subdomain;
    if value.len() > MAX_SUBDOMAIN {
        return Err(InvalidName::new(
            rule,
            value,
            format!(
                "{} characters, at most {MAX_SUBDOMAIN} are allowed",
                value.len()
            ),
        ));
    }
    // Characters first, so `../x` is refused for its `/`, the more telling reason.
    allowed_characters(value, rule)?;
    value
        .split('.')
        .try_for_each(|part| label_shape(part, rule, value))
}

/// A DNS-1123 label, <= 63 characters.
pub fn check_label(value: &str) -> Result<(), InvalidName> {
    let rule = NameRule::Label;
    if value.len() > MAX_LABEL {
        return Err(InvalidName::new(
            rule,
            value,
            format!(
                "{} characters, at most {MAX_LABEL} are allowed",
                value.len()
            ),
        ));
    }
    allowed_characters(value, rule)?;
    label_shape(value, rule, value)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` for one label of `whole`.
/// The characters have been checked already.
fn label_shape(part: &str, rule: NameRule, whole: &str) -> Result<(), InvalidName> {
    let bytes = part.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(InvalidName::new(
            rule,
            whole,
            "must not be empty or have an empty part between dots",
        ));
    };
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(InvalidName::new(
            rule,
            whole,
            "must start and end with a letter or digit",
        ));
    }
    Ok(())
}

/// Lower-case letters, digits, `-`, and for subdomains `.`.
fn allowed_characters(value: &str, rule: NameRule) -> Result<(), InvalidName> {
    let dot_allowed = rule == NameRule::Subdomain;
    if let Some(bad) = value.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || (dot_allowed && *c == '.'))
    }) {
        return Err(InvalidName::new(
            rule,
            value,
            format!(
                "{bad:?} is not allowed: use lower-case letters, digits, '-'{}",
                if dot_allowed { " and '.'" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// A Secret (or ConfigMap) key: it names a file in a mounted Secret volume.
pub fn check_secret_key(value: &str) -> Result<(), InvalidName> {
    let rule = NameRule::SecretKey;
    if value.is_empty() {
        return Err(InvalidName::new(rule, value, "must not be empty"));
    }
    if value.len() > MAX_SECRET_KEY {
        return Err(InvalidName::new(
            rule,
            value,
            format!(
                "{} characters, at most {MAX_SECRET_KEY} are allowed",
                value.len()
            ),
        ));
    }
    if value == "." || value.starts_with("..") {
        return Err(InvalidName::new(
            rule,
            value,
            "must not be '.' or start with '..'",
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(InvalidName::new(
            rule,
            value,
            format!("{bad:?} is not allowed: use letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for good in [
            "a",
            "team",
            "finance-team",
            "a.b-c.d1",
            "0",
            &"a".repeat(253),
        ] {
            assert!(check_subdomain(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Team",
            "a/b",
            "../x",
            "..",
            ".a",
            "a.",
            "a..b",
            "-a",
            "a-",
            "a_b",
            "é",
            &"a".repeat(254),
        ] {
            assert!(check_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(check_label("finance").is_ok());
        assert!(check_label(&"a".repeat(63)).is_ok());
        for bad in ["", "a.b", "Finance", "a/b", &"a".repeat(64)] {
            assert!(check_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_keys() {
        for good in ["partnerUserID", "user_secret", "a.b", ".hidden", "A-1"] {
            assert!(check_secret_key(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "..x", "a/b", "/etc", "a b", &"k".repeat(254)] {
            assert!(check_secret_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_names_are_shortened_in_messages() {
        let long = "X".repeat(300);
        let message = check_subdomain(&long).unwrap_err().to_string();
        assert!(message.contains("300 characters"), "{message}");
        assert!(message.len() < 200, "{message}");
    }
}
