//! The `allow-mass-revocation` values a status has handled: each value lifts the guard
//! once, by the first sync that sees it, and never again.

/// How many handled values a status remembers (besides the last one).
pub const HANDLED_VALUES_KEPT: usize = 20;

/// Whether `value` was handled already: the last value or one of the remembered ones.
pub fn was_handled(last: Option<&str>, remembered: &[String], value: &str) -> bool {
    last == Some(value) || remembered.iter().any(|v| v == value)
}

/// Remembers `value` as handled (newest last, the oldest forgotten past the cap).
pub fn remember_handled(remembered: &mut Vec<String>, value: &str) {
    remembered.retain(|v| v != value);
    remembered.push(value.to_string());
    let excess = remembered.len().saturating_sub(HANDLED_VALUES_KEPT);
    remembered.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_handled_once_even_after_others() {
        let mut remembered = Vec::new();
        remember_handled(&mut remembered, "t1");
        remember_handled(&mut remembered, "t2");
        assert!(
            was_handled(Some("t2"), &remembered, "t1"),
            "t1 -> t2 -> t1 is refused"
        );
        assert!(!was_handled(Some("t2"), &remembered, "t3"));
    }

    #[test]
    fn only_the_newest_values_are_kept() {
        let mut remembered = Vec::new();
        for i in 0..30 {
            remember_handled(&mut remembered, &format!("v{i}"));
        }
        assert_eq!(remembered.len(), HANDLED_VALUES_KEPT);
        assert_eq!(remembered.last().map(String::as_str), Some("v29"));
    }
}
