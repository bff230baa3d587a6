//! Go-style durations as Kubernetes users write them: `10m`, `1h30m`, `45s`, and days
//! (`30d`) for the lengths of access requests.

use std::time::Duration;

/// Why a duration string was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration like 45s, 10m, 1h30m or 7d (at most 8760h)")]
pub struct ParseDurationError {
    pub text: String,
}

// Defined in `expensify`, the room below this one, whose pacing needs it too: the arrow
// between the two rooms then runs one way (`api` stands on `expensify`).
pub use crate::expensify::MAX_DURATION;

/// Parses `[0-9]+(ms|s|m|h|d)` repeated, e.g. `1h30m`. Zero is refused: a sync interval of
/// nothing would spin. So is anything over [`MAX_DURATION`]; no input overflows or panics.
pub fn parse_duration(text: &str) -> Result<Duration, ParseDurationError> {
    // Quoted in status messages and plans: shortened, as every outside value there.
    let error = || ParseDurationError {
        text: crate::sanitize::shortened(text),
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(error());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        if digits == 0 {
            return Err(error());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| error())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(error)?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(error)?),
            "d" => Duration::from_secs(value.checked_mul(86_400).ok_or_else(error)?),
            _ => return Err(error()),
        };
        total = total
            .checked_add(unit)
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(error)?;
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(error());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("1d12h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn refuses_the_rest() {
        for bad in ["", "10", "m", "10x", "-5m", "0s", "1.5h", "10 m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_values_are_refused_not_overflowed() {
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
        for huge in [
            "8760h1ms",
            "9999999999999999999s",
            "18446744073709551615h",
            "99999999999999999999999s",
            "18446744073709551615s18446744073709551615s",
            "5124095576030431h",
            "366d",
            "213503982334601d",
        ] {
            assert!(parse_duration(huge).is_err(), "{huge:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_stays_bounded(text in "\\PC{0,40}") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(!d.is_zero() && d <= MAX_DURATION);
            }
        }

        #[test]
        fn well_formed_text_parses_or_is_too_long(parts in proptest::collection::vec((0u64..u64::MAX, 0usize..5), 1..4)) {
            let text: String = parts
                .iter()
                .map(|(n, u)| format!("{n}{}", ["ms", "s", "m", "h", "d"][*u]))
                .collect();
            match parse_duration(&text) {
                Ok(d) => proptest::prop_assert!(d <= MAX_DURATION),
                Err(e) => proptest::prop_assert_eq!(e.text, crate::sanitize::shortened(&text)),
            }
        }
    }
}
