//! Messages built from other objects (conflicts, held people, notes) stay small whatever
//! the number of objects: the first few items, then "and N more". Without it a message
//! naming every other object, copied into every object, grows with the square of the
//! object count.

use std::fmt::{Display, Write};

use crate::api::STATUS_MESSAGE_CAP;

/// How many items a message names before it counts the rest.
pub const SHOWN: usize = 10;

/// `a, b, c and 4 more`: the first [`SHOWN`] items joined by `separator`, the rest counted.
/// Items past the first few are counted, never formatted.
pub fn first_few<T: Display>(items: impl IntoIterator<Item = T>, separator: &str) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        if i >= SHOWN {
            more += 1;
            continue;
        }
        if i > 0 {
            out.push_str(separator);
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{item}");
    }
    if more > 0 {
        let _ = write!(out, " and {more} more");
    }
    out
}

/// `message` cut to at most [`STATUS_MESSAGE_CAP`] bytes (at a character boundary), ending
/// in `… (cut)` when it was cut: the bound on every status message.
pub fn capped_message(message: String) -> String {
    const MARK: &str = "… (cut)";
    if message.len() <= STATUS_MESSAGE_CAP {
        return message;
    }
    let mut end = STATUS_MESSAGE_CAP - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = message;
    cut.truncate(end);
    cut.push_str(MARK);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_items_are_all_named() {
        assert_eq!(first_few(["a", "b", "c"], ", "), "a, b, c");
        assert_eq!(first_few(Vec::<String>::new(), ", "), "");
    }

    #[test]
    fn past_the_first_few_items_are_counted() {
        let items: Vec<String> = (0..5000).map(|i| format!("ns/object-{i}")).collect();
        let message = first_few(&items, ", ");
        assert!(
            message.starts_with("ns/object-0, ns/object-1,"),
            "{message}"
        );
        assert!(message.ends_with("ns/object-9 and 4990 more"), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let short = "fine".to_string();
        assert_eq!(capped_message(short.clone()), short);
        let long = "é".repeat(STATUS_MESSAGE_CAP);
        let cut = capped_message(long);
        assert!(cut.len() <= STATUS_MESSAGE_CAP, "{}", cut.len());
        // Cut as late as the cap allows: only the mark and a split character give way.
        assert!(
            cut.len() > STATUS_MESSAGE_CAP - "é".len(),
            "{} of {STATUS_MESSAGE_CAP}",
            cut.len()
        );
        assert!(cut.ends_with("… (cut)"));
    }
}
