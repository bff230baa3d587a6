//! The question a command that writes asks a person at a terminal before it writes
//! (`apply`, `state forget`), as `terraform apply` asks.

use std::io::{BufRead, IsTerminal, Read, Write};

/// Whether a command asks before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Show what would be written and wait for `yes`.
    Ask,
    /// `--auto-approve`, or a plan reviewed already (`apply --plan FILE`).
    Approved,
    /// Nobody at a terminal to ask: done without asking, and the log says so.
    NotInteractive,
}

impl Confirmation {
    pub fn decide(auto_approve: bool, reviewed: bool, stdin_is_terminal: bool) -> Self {
        if auto_approve || reviewed {
            Confirmation::Approved
        } else if stdin_is_terminal {
            Confirmation::Ask
        } else {
            Confirmation::NotInteractive
        }
    }
}

/// What one command asks, says when the answer is not `yes`, and logs when nobody was asked.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    pub ask: &'static str,
    pub cancelled: &'static str,
    pub unasked: &'static str,
}

impl Question {
    /// Says in the log that nobody was asked.
    pub fn not_asked(&self) {
        tracing::info!("{}", self.unasked);
    }
}

/// The longest answer read: `yes` and a newline, with room for stray spaces.
pub const MAX_ANSWER_BYTES: u64 = 256;

/// Shows `shown` (what would be written), then asks `question`: true only when the answer
/// is `yes`. An answer is read up to [`MAX_ANSWER_BYTES`]; the end of input is a no.
pub fn ask(
    question: &Question,
    shown: &str,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> std::io::Result<bool> {
    write!(
        output,
        "{shown}\n{}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ",
        question.ask
    )?;
    output.flush()?;
    let mut answer = String::new();
    input.take(MAX_ANSWER_BYTES).read_line(&mut answer)?;
    let approved = answer.trim() == "yes";
    if !approved {
        writeln!(output, "\n{}", question.cancelled)?;
    }
    Ok(approved)
}

/// [`ask`] on this process's terminal: stdin, and stdout (stderr when stdout carries a
/// JSON document, `on_stderr`).
pub fn confirm(question: &Question, shown: &str, on_stderr: bool) -> std::io::Result<bool> {
    let mut input = std::io::stdin().lock();
    if on_stderr {
        ask(question, shown, &mut input, &mut std::io::stderr())
    } else {
        ask(question, shown, &mut input, &mut std::io::stdout())
    }
}

/// Whether this process can ask: its standard input is a terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPLY: Question = Question {
        ask: "Do you want to apply these changes?",
        cancelled: "Apply cancelled: nothing was written.",
        unasked: "",
    };

    fn answer(typed: &str) -> (bool, String) {
        let mut shown = Vec::new();
        let approved = ask(
            &APPLY,
            "+ new@acme.example\n",
            &mut typed.as_bytes(),
            &mut shown,
        )
        .expect("in-memory I/O");
        (approved, String::from_utf8(shown).expect("UTF-8"))
    }

    #[test]
    fn only_yes_approves() {
        let (approved, shown) = answer("yes\n");
        assert!(approved);
        assert!(
            shown.starts_with("+ new@acme.example\n"),
            "what would be written comes first: {shown}"
        );
        assert!(
            shown.contains("Do you want to apply these changes?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "),
            "{shown}"
        );
        assert!(
            answer("  yes  \n").0,
            "spaces around the answer are not part of it"
        );
        for no in ["y\n", "YES\n", "no\n", "\n", "", "yes please\n"] {
            let (approved, shown) = answer(no);
            assert!(!approved, "{no:?} is not yes");
            assert!(
                shown.ends_with("Apply cancelled: nothing was written.\n"),
                "{shown}"
            );
        }
    }

    #[test]
    fn an_endless_answer_is_read_only_so_far() {
        let endless = "y".repeat(100_000);
        let mut input = endless.as_bytes();
        let approved = ask(&APPLY, "", &mut input, &mut Vec::new()).expect("in-memory I/O");
        assert!(!approved);
        assert_eq!(
            input.len() as u64,
            100_000 - MAX_ANSWER_BYTES,
            "the rest is left unread"
        );
    }

    #[test]
    fn a_terminal_is_asked_unless_approved_already() {
        assert_eq!(Confirmation::decide(false, false, true), Confirmation::Ask);
        assert_eq!(
            Confirmation::decide(true, false, true),
            Confirmation::Approved
        );
        assert_eq!(
            Confirmation::decide(false, true, true),
            Confirmation::Approved
        );
        assert_eq!(
            Confirmation::decide(false, false, false),
            Confirmation::NotInteractive
        );
        assert_eq!(
            Confirmation::decide(true, false, false),
            Confirmation::Approved
        );
    }
}
