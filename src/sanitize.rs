//! Text from outside (policy names, member emails, employee IDs, Expensify's messages,
//! manifest values) made safe for the place it is written, one function per place:
//!
//! - [`terminal`] / [`terminal_text`]: `plan` / `apply` text, stderr and human log lines.
//!   Control characters (ANSI escapes, CR, other C0/C1), line separators and bidi controls
//!   are shown as visible escapes (`\u{1b}`), and a line cannot start with `::` (a GitHub
//!   Actions workflow command such as `::add-mask::` or `::stop-commands::`, which the
//!   runner reads after any leading whitespace).
//! - [`yaml_comment`]: a `#` comment of `export`: one line for every YAML parser (YAML 1.1
//!   parsers also break lines at NEL, U+2028 and U+2029).
//! - [`markdown`]: a cell, heading or list item of `plan` / `review -o markdown`: no
//!   markup, HTML, table break, `@mention`, autolink, issue reference or bidi control.
//! - [`csv_cell`]: a cell of `review -o csv`: quoted as RFC 4180 says, a cell a
//!   spreadsheet would take for a formula prefixed with `'` (OWASP CSV injection), unsafe
//!   characters escaped as on a terminal (the CSV goes to stdout, often a CI log).
//!
//! JSON needs nothing here: serde escapes every control character.
//!
//! [`shortened`] bounds a value quoted in a message (a 20,000-character duration must not
//! make a 40,000-character plan row); the escaping above still applies where it is shown.

/// U+2060 WORD JOINER: invisible, so the text reads the same, but GitHub and GitLab no
/// longer see a mention (`@` right before a name) or a link (`://`, `www.`) across it.
const WORD_JOINER: char = '\u{2060}';

/// Characters that are not shown as themselves, or that some reader takes for a line
/// break: every control character (C0, DEL, C1 with NEL), the Unicode line and paragraph
/// separators, the bidi embeddings, overrides, isolates and marks (which reorder what a
/// reviewer sees: "Trojan Source"), the byte-order mark and the two non-characters YAML
/// refuses.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFFE}'
                | '\u{FFFF}'
        )
}

/// The visible form of an unsafe character: `\n`, `\r`, `\t`, else `\u{hex}`.
fn visible_escape(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        _ => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
    }
}

/// `text` with every unsafe character shown as its escape.
fn escape_unsafe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            visible_escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

/// A line that would start (after whitespace) with `::` gets a backslash before it, so a
/// CI runner reading the log does not take it for a workflow command.
fn neutralise_workflow_command(line: &str) -> String {
    let rest = line.trim_start();
    if rest.starts_with("::") {
        let indent = &line[..line.len() - rest.len()];
        format!("{indent}\\{rest}")
    } else {
        line.to_string()
    }
}

/// One value for a terminal or a CI log: one line, nothing a terminal or a CI runner acts
/// on. The value may be printed at the start of a line, so a leading `::` is neutralised.
pub fn terminal(text: &str) -> String {
    neutralise_workflow_command(&escape_unsafe(text))
}

/// Several lines for a terminal or a CI log (an error with its causes): line breaks are
/// kept, every other unsafe character escaped, and no line starts with `::`.
pub fn terminal_text(text: &str) -> String {
    text.split('\n')
        .map(terminal)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text for a YAML `#` comment: one line for any YAML parser, however old (YAML 1.1 breaks
/// lines at NEL, U+2028 and U+2029 too, so a name holding one could end the comment and add
/// YAML of its own).
pub fn yaml_comment(text: &str) -> String {
    escape_unsafe(text)
}

/// Text for a Markdown table cell, heading or list item (GitHub and GitLab flavours):
///
/// - line breaks and tabs become spaces (a cell is one line), other unsafe characters
///   visible escapes;
/// - Markdown's inline punctuation is backslash-escaped (`|` too, which would end a cell);
///   `<` and `&` become entities, so no HTML tag or entity gets through;
/// - a word joiner goes after an `@` that is not inside an email address (no mention, no
///   notification), after a `#` (no issue reference), inside `://` and after `www` (no
///   autolink). Entities and backslashes would not do: both platforms find mentions and
///   links in the rendered text, where they are already undone.
pub fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if is_unsafe(c) => {
                // The escape's backslash is itself escaped, so it shows.
                out.push('\\');
                visible_escape(c, &mut out);
            }
            '<' => out.push_str("&lt;"),
            '&' => out.push_str("&amp;"),
            '@' => {
                out.push('@');
                // After a word character it is an email address, on GitHub and GitLab.
                if !previous.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_') {
                    out.push(WORD_JOINER);
                }
            }
            '#' => {
                out.push_str("\\#");
                out.push(WORD_JOINER);
            }
            ':' if chars.peek() == Some(&'/') => {
                out.push(':');
                out.push(WORD_JOINER);
            }
            '.' if ends_with_www(&out) => {
                out.push(WORD_JOINER);
                out.push('.');
            }
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        previous = Some(c);
    }
    out
}

/// Whether `text` ends with `www`, in any case (the start of an autolinked `www.`).
fn ends_with_www(text: &str) -> bool {
    text.len()
        .checked_sub(3)
        .is_some_and(|start| text.as_bytes()[start..].eq_ignore_ascii_case(b"www"))
}

/// Characters a spreadsheet reads as the start of a formula (OWASP's list, and the
/// full-width forms some spreadsheets normalise). OWASP also lists tab and CR, which a
/// spreadsheet skips before a formula: [`csv_cell`] has escaped them already.
fn starts_a_formula(c: char) -> bool {
    matches!(
        c,
        '=' | '+' | '-' | '@' | '\u{FF1D}' | '\u{FF0B}' | '\u{FF0D}' | '\u{FF20}'
    )
}

/// One CSV cell: a value a spreadsheet would run as a formula gets a leading `'` (shown as
/// text, the value itself unchanged after it), and a cell with a comma or a quote is quoted
/// with its quotes doubled (RFC 4180). Unsafe characters are shown as escapes, as on a
/// terminal: the CSV is printed to stdout, often into a CI log, where a line break inside a
/// quoted cell would still start a line (`::add-mask::`), and one row stays one line.
pub fn csv_cell(text: &str) -> String {
    let text = escape_unsafe(text);
    let text = if text.chars().next().is_some_and(starts_a_formula) {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Most characters of an outside value a message quotes.
pub const QUOTED_CHARS: usize = 64;

/// The first [`QUOTED_CHARS`] characters of `text`, and `...` when there were more.
pub fn shortened(text: &str) -> String {
    cut(text, QUOTED_CHARS)
}

/// The first `max` characters of `text`, and `...` when there were more.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        format!("{}...", text.chars().take(max).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What attackers put in a policy name, one per reader they aim at.
    const ANSI_CLEAR: &str = "Finance\x1b[2J\x1b[1;1HAll in sync";
    const CR_OVERWRITE: &str = "Evil\rFinance";
    const WORKFLOW: &str = "::add-mask::ghp_secret";
    const C1_CSI: &str = "a\u{9b}31mred";
    const BIDI: &str = "Finance\u{202E}nimda\u{202C}";

    #[test]
    fn terminal_values_have_no_control_and_no_workflow_command() {
        assert_eq!(
            terminal(ANSI_CLEAR),
            "Finance\\u{1b}[2J\\u{1b}[1;1HAll in sync"
        );
        assert_eq!(terminal(CR_OVERWRITE), "Evil\\rFinance");
        assert_eq!(terminal(C1_CSI), "a\\u{9b}31mred");
        assert_eq!(terminal(BIDI), "Finance\\u{202e}nimda\\u{202c}");
        assert_eq!(terminal(WORKFLOW), "\\::add-mask::ghp_secret");
        assert_eq!(terminal("  ::warning::x"), "  \\::warning::x");
        assert_eq!(terminal("a\n::error::x"), "a\\n::error::x");
        assert_eq!(terminal("a\u{2028}b\u{85}c"), "a\\u{2028}b\\u{85}c");
        // Ordinary text is untouched, colons and all.
        assert_eq!(terminal("Sales: EMEA (P1)"), "Sales: EMEA (P1)");
        assert_eq!(terminal("Café 東京"), "Café 東京");
    }

    #[test]
    fn terminal_text_keeps_lines_and_neutralises_each() {
        assert_eq!(
            terminal_text("error: x\n  ::set-env name=A::b\r\n- y"),
            "error: x\n  \\::set-env name=A::b\\r\n- y"
        );
    }

    #[test]
    fn yaml_comments_are_one_line_for_every_parser() {
        for breaker in ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'] {
            let comment = yaml_comment(&format!("Sales{breaker}kind: Secret"));
            assert!(
                !comment.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']),
                "{comment:?}"
            );
            assert!(comment.starts_with("Sales\\"), "{comment:?}");
        }
    }

    #[test]
    fn markdown_has_no_markup_html_or_table_break() {
        assert_eq!(markdown("a|b"), "a\\|b");
        assert_eq!(markdown("`x`"), "\\`x\\`");
        assert_eq!(markdown("<img src=x>"), "&lt;img src=x>");
        assert_eq!(markdown("a_b*c*[d](e)"), "a\\_b\\*c\\*\\[d\\](e)");
        assert_eq!(markdown("one\ntwo\r\n"), "one two  ");
        assert_eq!(markdown("&lt;"), "&amp;lt;");
        assert_eq!(markdown("alice@acme.example"), "alice@acme.example");
    }

    #[test]
    fn markdown_mentions_links_and_references_do_not_fire() {
        let wj = WORD_JOINER;
        assert_eq!(markdown("@everyone"), format!("@{wj}everyone"));
        assert_eq!(markdown("cc @acme/admins"), format!("cc @{wj}acme/admins"));
        assert_eq!(
            markdown("https://evil.example/x"),
            format!("https:{wj}//evil.example/x")
        );
        assert_eq!(
            markdown("WWW.evil.example"),
            format!("WWW{wj}.evil.example")
        );
        assert_eq!(markdown("fix #12"), format!("fix \\#{wj}12"));
        // An email stays as it is: GitHub does not read it as a mention.
        assert_eq!(markdown("bob@acme.example"), "bob@acme.example");
        assert_eq!(markdown("bob_@acme.example"), "bob\\_@acme.example");
        assert_eq!(markdown("a.@admins"), format!("a.@{wj}admins"));
    }

    #[test]
    fn markdown_shows_bidi_and_controls_as_escapes() {
        assert_eq!(markdown(BIDI), "Finance\\\\u{202e}nimda\\\\u{202c}");
        assert_eq!(markdown("a\u{2066}b\u{1b}c"), "a\\\\u{2066}b\\\\u{1b}c");
        assert!(!markdown(ANSI_CLEAR).contains('\x1b'));
    }

    #[test]
    fn csv_cells_that_start_a_formula_are_text() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        // A leading tab or CR is shown as an escape: the cell starts with `\`, not a formula.
        assert_eq!(csv_cell("\t=1+1"), "\\t=1+1");
        assert_eq!(csv_cell("\r=1+1"), "\\r=1+1");
        assert_eq!(csv_cell("＝1+1"), "'＝1+1");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("line\n::add-mask::x"), "line\\n::add-mask::x");
        assert_eq!(csv_cell("a\x1b[2J\u{202e}"), "a\\u{1b}[2J\\u{202e}");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a=b"), "a=b");
    }

    #[test]
    fn a_quoted_value_is_cut_at_64_characters() {
        assert_eq!(shortened("8h"), "8h");
        let long = "é".repeat(20_000);
        let cut = shortened(&long);
        assert_eq!(cut.chars().count(), QUOTED_CHARS + 3);
        assert!(cut.ends_with("..."));
    }
}
