//! Email address checks shared by the simulator and manifest validation.
//!
//! Deliberately practical rather than RFC 5322 complete: Expensify logins are ordinary
//! addresses, and anything exotic is far more likely a typo than a real login.

/// Whether `address` looks like a login Expensify would accept.
pub fn is_valid(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// The canonical form used to compare logins: Expensify treats them case-insensitively.
pub fn normalize(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "alice@acme.com",
            "khaliq+test@nango.dev",
            "first.last@sub.example.co.uk",
            "o'brien@acme.com",
        ] {
            assert!(is_valid(ok), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@acme.com",
            "alice@acme",
            "alice@@acme.com",
            "al ice@acme.com",
            "alice@acme..com",
            ".alice@acme.com",
            "alice.@acme.com",
            "alice@-acme.com",
            "manager@domain ",
        ] {
            assert!(!is_valid(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn normalizes_case_and_whitespace() {
        assert_eq!(normalize(" Alice@ACME.com "), "alice@acme.com");
    }
}
