//! Where long work is: a bar on a terminal, plain log lines everywhere else.
//!
//! Library code reports steps ([`Steps`]) and rate-limit waits ([`wait`]) without knowing
//! where they go. `main` decides once, with [`install_bars`], whether this process draws bars
//! (stderr is a terminal, human log lines, an interactive command); without that call every
//! report is an `info` log line, which is what pipelines, JSON logs and the controller get.
//!
//! With bars, log lines are written through [`StderrAroundBars`], which lifts the bars off
//! the screen for the line and draws them again below it, so neither garbles the other.
//! Bars appear only once the run has lasted [`SHOW_BARS_AFTER`]: a plan that is done in a
//! second does not flash one.

use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{debug, info};

/// How long a run goes before its steps are drawn as bars.
pub const SHOW_BARS_AFTER: Duration = Duration::from_secs(2);

/// The bars of this process, when `main` chose them.
struct Bars {
    multi: MultiProgress,
    since: Instant,
    show_after: Duration,
}

static BARS: OnceLock<Bars> = OnceLock::new();

/// Whether this process should draw bars: only on a terminal that can show them, and only
/// when log lines are for people (a JSON log is read by a machine).
pub fn bars_wanted(stderr_is_terminal: bool, human_log_lines: bool, term: Option<&str>) -> bool {
    stderr_is_terminal && human_log_lines && term != Some("dumb")
}

/// Draws progress as bars on stderr from now on. Called at most once, from `main`; later
/// calls are ignored.
pub fn install_bars() {
    let _ = BARS.set(Bars::new(ProgressDrawTarget::stderr(), SHOW_BARS_AFTER));
}

impl Bars {
    fn new(target: ProgressDrawTarget, show_after: Duration) -> Self {
        Self {
            multi: MultiProgress::with_draw_target(target),
            since: Instant::now(),
            show_after,
        }
    }
}

/// Counted work, such as "rosters read 3/12". Reported as a bar or as one log line per step
/// when there is more than one; a bar is cleared when this is dropped, finished or not, so
/// an error does not leave a half bar above its message.
pub struct Steps {
    what: &'static str,
    done: usize,
    total: usize,
    bar: Option<ProgressBar>,
}

impl Steps {
    /// `total` steps of `what` are about to start.
    pub fn start(what: &'static str, total: usize) -> Self {
        Self {
            what,
            done: 0,
            total,
            bar: None,
        }
    }

    /// One more step is done.
    pub fn advance(&mut self) {
        self.advance_on(BARS.get());
    }

    fn advance_on(&mut self, bars: Option<&Bars>) {
        self.done = (self.done + 1).min(self.total);
        if self.total <= 1 {
            return;
        }
        let (what, done, total) = (self.what, self.done, self.total);
        let Some(bars) = bars else {
            info!(done, total, "{what} {done}/{total}");
            return;
        };
        debug!(done, total, "{what} {done}/{total}");
        if self.bar.is_none() && bars.since.elapsed() >= bars.show_after {
            self.bar = Some(bars.multi.add(counted_bar(what, total)));
        }
        if let Some(bar) = &self.bar {
            bar.set_position(u64::try_from(done).unwrap_or(u64::MAX));
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        clear(self.bar.take());
    }
}

/// Takes a bar off the screen. `finish_and_clear` leaves its (empty) line with the
/// `MultiProgress`; removing it gives the line back to the bars below.
fn clear(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
        if let Some(bars) = BARS.get() {
            bars.multi.remove(&bar);
        }
    }
}

fn counted_bar(what: &str, total: usize) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}").map_or_else(
        |_| ProgressStyle::default_bar(),
        |style| style.progress_chars("=> "),
    );
    ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX))
        .with_style(style)
        .with_prefix(what.to_string())
}

/// A wait that is shown while it lasts (a spinner with `message`, or one log line); the
/// spinner is cleared when this is dropped.
pub struct Waiting {
    spinner: Option<ProgressBar>,
}

/// Says that the process is about to wait, and why: a paced run is not a hung one.
pub fn wait(message: &str) -> Waiting {
    wait_on(BARS.get(), message)
}

/// A wait the caller has already logged (a retry's warning): a spinner with `message` on a
/// terminal, nothing more in a log.
pub fn wait_quietly(message: &str) -> Waiting {
    match BARS.get() {
        Some(bars) => spin(bars, message),
        None => Waiting { spinner: None },
    }
}

fn wait_on(bars: Option<&Bars>, message: &str) -> Waiting {
    let Some(bars) = bars else {
        info!("{message}");
        return Waiting { spinner: None };
    };
    debug!("{message}");
    spin(bars, message)
}

fn spin(bars: &Bars, message: &str) -> Waiting {
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let spinner = bars.multi.add(
        ProgressBar::new_spinner()
            .with_style(style)
            .with_message(message.to_string()),
    );
    spinner.tick();
    spinner.enable_steady_tick(Duration::from_millis(120));
    Waiting {
        spinner: Some(spinner),
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        clear(self.spinner.take());
    }
}

/// stderr for log lines: with bars on screen, each line is written while the bars are lifted.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrAroundBars;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrAroundBars {
    type Writer = StderrAroundBars;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for StderrAroundBars {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.multi.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // One suspension for the whole line, not one per partial write.
        match BARS.get() {
            Some(bars) => bars.multi.suspend(|| io::stderr().write_all(buf)),
            None => io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;

    #[test]
    fn bars_only_on_a_terminal_for_people() {
        assert!(bars_wanted(true, true, Some("xterm-256color")));
        assert!(bars_wanted(true, true, None));
        assert!(!bars_wanted(false, true, Some("xterm")));
        assert!(!bars_wanted(true, false, Some("xterm")));
        assert!(!bars_wanted(true, true, Some("dumb")));
    }

    /// Bars of its own, not the process-wide ones: other tests in this binary report too.
    #[test]
    fn steps_and_waits_draw_on_the_terminal_and_are_cleared() {
        let term = InMemoryTerm::new(10, 80);
        let bars = Bars::new(
            ProgressDrawTarget::term_like(Box::new(term.clone())),
            Duration::ZERO,
        );
        let mut steps = Steps::start("rosters read", 12);
        for _ in 0..3 {
            steps.advance_on(Some(&bars));
        }
        let drawn = term.contents();
        assert!(drawn.contains("rosters read ["), "{drawn}");
        assert!(drawn.contains("] 3/12"), "{drawn}");
        if let Some(bar) = steps.bar.take() {
            bar.finish_and_clear();
        }
        assert!(
            !term.contents().contains("rosters read"),
            "{}",
            term.contents()
        );

        let mut waiting = wait_on(Some(&bars), "waiting 8 s for Expensify's rate limit");
        let drawn = term.contents();
        assert!(
            drawn.contains("waiting 8 s for Expensify's rate limit"),
            "{drawn}"
        );
        if let Some(spinner) = waiting.spinner.take() {
            spinner.finish_and_clear();
        }
        assert!(term.contents().trim().is_empty(), "{}", term.contents());
    }

    #[test]
    fn bars_wait_until_the_run_has_lasted_a_while() {
        let term = InMemoryTerm::new(10, 80);
        let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
        let bars = Bars::new(target, Duration::from_secs(3600));
        let mut steps = Steps::start("rosters read", 12);
        steps.advance_on(Some(&bars));
        assert!(steps.bar.is_none());
        assert!(term.contents().trim().is_empty(), "{}", term.contents());
    }

    #[test]
    fn one_step_of_work_is_not_reported() {
        let term = InMemoryTerm::new(10, 80);
        let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
        let bars = Bars::new(target, Duration::ZERO);
        let mut steps = Steps::start("rosters read", 1);
        steps.advance_on(Some(&bars));
        assert!(steps.bar.is_none());
        assert_eq!(steps.done, 1);
    }
}
