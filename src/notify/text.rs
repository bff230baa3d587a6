//! User text made safe for a Slack-compatible receiver: `&`, `<` and `>` escaped, so no
//! `<!channel>`, `<@U123>` mention or `<https://evil|click>` link can be forged; `@here`,
//! `@channel` and `@everyone` defused; control characters dropped; the length bounded.

/// The most characters of one piece of user text (a request's `reason` is validated to
/// this length; anything longer is cut here too).
pub const MAX_USER_TEXT: usize = 1000;
/// The most characters of a name (an email, a policy, an object).
pub const MAX_NAME: usize = 200;

/// Broadcast words a receiver may read as a mention even without angle brackets.
const BROADCASTS: [&str; 3] = ["here", "channel", "everyone"];

/// `text` cut to `max` characters (the last one an ellipsis when cut), then escaped.
pub fn escape(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let bounded = if cleaned.chars().count() > max {
        let mut cut: String = cleaned.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        cleaned
    };
    let mut escaped = String::with_capacity(bounded.len());
    let mut rest = bounded.as_str();
    while let Some(c) = rest.chars().next() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '@' => {
                escaped.push('@');
                let after = &rest[1..];
                if BROADCASTS
                    .iter()
                    .any(|word| starts_with_ignore_case(after, word))
                {
                    // A zero-width space: read by people as the word, by no parser as one.
                    escaped.push('\u{200B}');
                }
            }
            other => escaped.push(other),
        }
        rest = &rest[c.len_utf8()..];
    }
    escaped
}

/// `text` cut to at most `max_bytes` bytes of UTF-8 (the last character an ellipsis when
/// cut), for places that count bytes: a Kubernetes Event's note holds at most 1 KiB.
pub fn cut_bytes(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let room = max_bytes.saturating_sub('…'.len_utf8());
    let mut end = room.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_links_cannot_be_forged() {
        assert_eq!(escape("<!channel>", 100), "&lt;!channel&gt;");
        assert_eq!(escape("hi <@U1>", 100), "hi &lt;@U1&gt;");
        assert_eq!(
            escape("<https://evil|click>", 100),
            "&lt;https://evil|click&gt;"
        );
        assert_eq!(escape("a & b", 100), "a &amp; b");
        assert_eq!(escape("&lt;", 100), "&amp;lt;");
    }

    #[test]
    fn broadcast_words_are_defused() {
        assert_eq!(escape("@here now", 100), "@\u{200B}here now");
        assert_eq!(escape("ping @Channel", 100), "ping @\u{200B}Channel");
        assert_eq!(escape("@everyone", 100), "@\u{200B}everyone");
        assert_eq!(escape("it@acme.example", 100), "it@acme.example");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let reason = "x".repeat(5000);
        let escaped = escape(&reason, MAX_USER_TEXT);
        assert_eq!(escaped.chars().count(), MAX_USER_TEXT);
        assert!(escaped.ends_with('…'));
        assert_eq!(escape("short", MAX_USER_TEXT), "short");
        // Cutting never splits a character, and escaping after the cut leaves whole
        // entities.
        let escaped = escape(&"é<".repeat(3000), 10);
        assert!(escaped.ends_with('…') && !escaped.contains('<'));
    }

    #[test]
    fn byte_cuts_keep_whole_characters() {
        assert_eq!(cut_bytes("short", 1024), "short");
        let cut = cut_bytes(&"é".repeat(2000), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with('…'), "{}", cut.len());
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(escape("a\nb\u{1b}[31m", 100), "a b [31m");
    }
}
