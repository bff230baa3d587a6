//! Logging setup: human lines on a terminal, JSON lines for machines; and whether anything
//! the process prints (log lines on stderr, results on stdout) is coloured.

use std::ffi::OsStr;
use std::sync::OnceLock;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::{MakeWriter, format};

use crate::sanitize;
use tracing_subscriber::util::SubscriberInitExt as _;

pub mod progress;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, coloured only on a terminal.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `--color`: when output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColourChoice {
    /// Only where the stream is a terminal.
    #[default]
    Auto,
    /// Also into pipes and files (unless `--no-color` or `NO_COLOR` say otherwise).
    Always,
    /// Never.
    Never,
}

/// The colour flags of a run: `--color` and `--no-color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Colour {
    pub choice: ColourChoice,
    pub no_color_flag: bool,
}

/// Whether a stream is coloured. `--no-color` and a non-empty `NO_COLOR` win over
/// everything, `--color always` included: whoever set `NO_COLOR` asked for no colour from
/// every program, and a script's `--color always` should not override that. An empty
/// `NO_COLOR` counts as unset (<https://no-color.org>). Then `--color always` / `never`,
/// and with `auto` only a terminal is coloured.
pub fn colour_enabled(colour: Colour, no_color_env: Option<&OsStr>, terminal: bool) -> bool {
    if colour.no_color_flag || no_color_env.is_some_and(|value| !value.is_empty()) {
        return false;
    }
    match colour.choice {
        ColourChoice::Always => true,
        ColourChoice::Never => false,
        ColourChoice::Auto => terminal,
    }
}

static COLOUR: OnceLock<Colour> = OnceLock::new();

/// Records the run's colour flags (once, from `main`); later calls are ignored.
pub fn set_colour(colour: Colour) {
    let _ = COLOUR.set(colour);
}

/// Whether a stream that is (or is not) a terminal is coloured in this process, given the
/// flags recorded by [`set_colour`] (`auto` when none were) and `NO_COLOR` now.
pub fn colour_for(terminal: bool) -> bool {
    let colour = COLOUR.get().copied().unwrap_or_default();
    colour_enabled(colour, std::env::var_os("NO_COLOR").as_deref(), terminal)
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitLoggingError {
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("logging was already initialised")]
    AlreadySet,
}

/// Installs the global subscriber. `level` (from `--log-level`) wins over `RUST_LOG`;
/// with neither, `info`. `ansi` colours human lines (see [`colour_for`]); JSON lines never
/// are.
pub fn init_logging(
    format: LogFormat,
    level: Option<&str>,
    ansi: bool,
) -> Result<(), InitLoggingError> {
    let filter_text = match level {
        Some(level) => level.to_string(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
    };
    let filter = EnvFilter::try_new(&filter_text).map_err(|e| InitLoggingError::Filter {
        filter: filter_text.clone(),
        reason: e.to_string(),
    })?;
    let installed = match format {
        LogFormat::Human => human_subscriber(filter, progress::StderrAroundBars, ansi)
            .try_init()
            .is_ok(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(progress::StderrAroundBars)
            .json()
            .with_ansi(false)
            .flatten_event(true)
            .try_init()
            .is_ok(),
    };
    if installed {
        Ok(())
    } else {
        Err(InitLoggingError::AlreadySet)
    }
}

/// Human log lines to `writer`. Values in them (policy names, Expensify's messages) go
/// through [`sanitize::terminal`]: tracing escapes ESC and C1 in the message only, so a
/// CR or a line break (a forged line, a `::` workflow command) and anything in a `%` field
/// went through as they were.
fn human_subscriber<W>(filter: EnvFilter, writer: W, ansi: bool) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fields = format::debug_fn(|writer, field, value| {
        let value = sanitize::terminal(&format!("{value:?}"));
        match field.name() {
            "message" => write!(writer, "{value}"),
            name => write!(writer, "{}={value}", name.trim_start_matches("r#")),
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .fmt_fields(fields)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// tracing escapes ESC and C1 in the message only; a policy name in a `%` field, or a
    /// CR / LF / VT anywhere, went through as is, and a forged line could start with `::`.
    #[test]
    fn human_log_lines_escape_what_a_policy_name_could_hold() {
        let captured = Captured::default();
        let subscriber = human_subscriber(EnvFilter::new("info"), captured.clone(), false);
        let name = "Evil\r::add-mask::x\n::error::forged\x1b[2J\u{9b}1m\u{202e}\x0b\u{2028}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(policy = %name, quoted = name, "synced {name}");
            let span = tracing::info_span!("sync", policy = %name);
            let _entered = span.enter();
            tracing::info!("in a span");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.contains(['\r', '\x1b', '\u{9b}', '\u{202e}', '\x0b', '\u{2028}']),
            "{text:?}"
        );
        for line in text.lines() {
            assert!(!line.trim_start().starts_with("::"), "{line}");
        }
        assert!(
            text.contains("policy=Evil\\r::add-mask::x\\n::error::forged\\u{1b}[2J"),
            "{text}"
        );
    }

    fn colour(choice: ColourChoice, no_color_flag: bool) -> Colour {
        Colour {
            choice,
            no_color_flag,
        }
    }

    #[test]
    fn auto_colours_a_terminal_only() {
        let auto = colour(ColourChoice::Auto, false);
        assert!(colour_enabled(auto, None, true));
        assert!(!colour_enabled(auto, None, false));
    }

    #[test]
    fn always_and_never_ignore_the_terminal() {
        for terminal in [true, false] {
            assert!(colour_enabled(
                colour(ColourChoice::Always, false),
                None,
                terminal
            ));
            assert!(!colour_enabled(
                colour(ColourChoice::Never, false),
                None,
                terminal
            ));
        }
    }

    #[test]
    fn no_color_env_and_flag_win_over_always() {
        let set = Some(OsStr::new("1"));
        for choice in [
            ColourChoice::Auto,
            ColourChoice::Always,
            ColourChoice::Never,
        ] {
            for terminal in [true, false] {
                assert!(!colour_enabled(colour(choice, false), set, terminal));
                assert!(!colour_enabled(colour(choice, true), None, terminal));
            }
        }
        // Any non-empty value counts, even "0" or "false".
        for value in ["0", "false", "yes"] {
            let always = colour(ColourChoice::Always, false);
            assert!(!colour_enabled(always, Some(OsStr::new(value)), true));
        }
    }

    #[test]
    fn an_empty_no_color_is_unset() {
        let empty = Some(OsStr::new(""));
        assert!(colour_enabled(
            colour(ColourChoice::Auto, false),
            empty,
            true
        ));
        assert!(colour_enabled(
            colour(ColourChoice::Always, false),
            empty,
            false
        ));
    }
}
