//! Client-side pacing: never send more than Expensify's published limits allow.
//!
//! A sliding-window log per credential: a request may go when every window has room.
//! Callers queue first come, first served, so a burst waits instead of racing. Time is
//! `tokio::time`, so tests run it paused.
//!
//! Two things keep the client clear of the server's count when the path between them is
//! slow or jittery (a loaded machine, a congested network):
//! - a request takes its place in the windows when its answer arrives, not when it left
//!   (the server counted it at some moment in between), and counts as "now" while it is
//!   in flight;
//! - every window is paced to 90 % of its rate ([`BASE_MARGIN_PERCENT`]), and a `429`
//!   actually served widens that margin and holds every caller of the credential for a
//!   while ([`RateLimiter::rate_limited`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::telemetry::progress;

/// The longest duration accepted anywhere (a year). Values come from manifests and flags
/// (`api` parses them against it); anything longer is a mistake, and refusing it keeps
/// every `Instant + duration` far from overflow, here in pacing as everywhere else.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// At most `max_requests` in any `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingWindow {
    pub max_requests: u32,
    pub period: Duration,
}

/// The windows a credential must respect; Expensify publishes 5 per 10 s and 20 per 60 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacing {
    pub windows: Vec<PacingWindow>,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            windows: vec![
                PacingWindow {
                    max_requests: 5,
                    period: Duration::from_secs(10),
                },
                PacingWindow {
                    max_requests: 20,
                    period: Duration::from_secs(60),
                },
            ],
        }
    }
}

impl Pacing {
    /// No pacing at all: for benchmarks against the simulator only.
    pub fn unlimited() -> Self {
        Self {
            windows: Vec::new(),
        }
    }
}

/// The margin the client keeps below every published window: it paces to 90 % of each
/// rate (a window of 10 s is treated as one of 11.1 s).
pub const BASE_MARGIN_PERCENT: u32 = 10;
/// The widest margin a run of `429`s can push the client to (it then paces to 60 %).
pub const MAX_MARGIN_PERCENT: u32 = 40;

/// The send times of one credential and the windows they must fit. Synchronous, so the
/// client's limiter and the simulator's enforcement are the same code. The simulator
/// enforces the windows as published (no margin).
#[derive(Debug)]
pub struct WindowLog {
    windows: Vec<PacingWindow>,
    /// Each period is stretched so that its rate is `100 - margin` % of the published one.
    margin_percent: u32,
    sent: VecDeque<Instant>,
}

impl WindowLog {
    /// Windows with `max_requests == 0` are dropped: they could never let anything through.
    /// Periods are capped at [`MAX_DURATION`] so `Instant + period` cannot overflow.
    pub fn new(pacing: &Pacing) -> Self {
        let windows: Vec<PacingWindow> = pacing
            .windows
            .iter()
            .filter(|w| w.max_requests > 0)
            .map(|w| PacingWindow {
                max_requests: w.max_requests,
                period: w.period.min(MAX_DURATION),
            })
            .collect();
        Self {
            windows,
            margin_percent: 0,
            sent: VecDeque::new(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.windows.is_empty()
    }

    /// Paces to `100 - margin` % of every window from now on (capped at
    /// [`MAX_MARGIN_PERCENT`]).
    pub fn set_margin(&mut self, margin_percent: u32) {
        self.margin_percent = margin_percent.min(MAX_MARGIN_PERCENT);
    }

    pub fn margin_percent(&self) -> u32 {
        self.margin_percent
    }

    /// A window's period with the margin: `period * 100 / (100 - margin)`, in whole
    /// milliseconds rounded up (the timer's resolution), capped.
    fn paced(&self, period: Duration) -> Duration {
        if self.margin_percent == 0 {
            return period;
        }
        let rate_percent = 100 - u128::from(self.margin_percent.min(MAX_MARGIN_PERCENT));
        let millis = (period.as_nanos().saturating_mul(100)).div_ceil(rate_percent * 1_000_000);
        Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX)).min(MAX_DURATION)
    }

    /// The longest paced window: older entries no longer count anywhere.
    fn longest(&self) -> Duration {
        self.shortest_and_longest().1
    }

    /// The shortest and longest paced windows.
    fn shortest_and_longest(&self) -> (Duration, Duration) {
        let paced = self.windows.iter().map(|w| self.paced(w.period));
        (
            paced.clone().min().unwrap_or(Duration::ZERO),
            paced.max().unwrap_or(Duration::ZERO),
        )
    }

    /// When the next request may go: `None` means now.
    pub fn next_slot(&mut self, now: Instant) -> Option<Instant> {
        self.next_slot_with(now, 0)
    }

    /// When the next request may go while `in_flight` requests have left without an
    /// answer yet (each counts as sent `now`): `None` means now.
    pub fn next_slot_with(&mut self, now: Instant, in_flight: usize) -> Option<Instant> {
        let longest = self.longest();
        while self
            .sent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= longest)
        {
            self.sent.pop_front();
        }
        self.windows
            .iter()
            .filter_map(|window| {
                let max = window.max_requests as usize;
                let period = self.paced(window.period);
                let mut in_window: Vec<Instant> = self
                    .sent
                    .iter()
                    .copied()
                    .filter(|&t| now.saturating_duration_since(t) < period)
                    .collect();
                in_window.extend(std::iter::repeat_n(now, in_flight));
                (in_window.len() >= max).then(|| in_window[in_window.len() - max] + period)
            })
            .max()
    }

    /// Records a request sent at `now`, if it fits; `false` (and nothing recorded) if not.
    pub fn try_record(&mut self, now: Instant) -> bool {
        if self.is_unlimited() {
            return true;
        }
        if self.next_slot(now).is_some() {
            return false;
        }
        self.sent.push_back(now);
        true
    }

    /// Records a request whose answer arrived at `at` (no later than any recorded before,
    /// as answers are recorded when they arrive).
    fn record_answer(&mut self, at: Instant) {
        if !self.is_unlimited() {
            self.sent.push_back(at);
        }
    }
}

/// What the limiter knows of one credential.
#[derive(Debug)]
struct LimiterState {
    log: WindowLog,
    /// Requests that left and whose answer has not arrived yet.
    in_flight: usize,
    /// After a `429`: no request of this credential starts before then.
    held_until: Option<Instant>,
    /// When the last `429` was served: the margin goes back to the base one a longest
    /// window later.
    last_refusal: Option<Instant>,
}

impl LimiterState {
    /// When a request may start: `None` means now.
    fn next_start(&mut self, now: Instant) -> Option<Instant> {
        if self
            .last_refusal
            .is_some_and(|at| now.saturating_duration_since(at) >= self.log.longest())
        {
            self.last_refusal = None;
            self.log.set_margin(BASE_MARGIN_PERCENT);
            info!(
                margin_percent = BASE_MARGIN_PERCENT,
                "no 429 for a whole rate window: pacing back to 90 % of Expensify's limits"
            );
        }
        let held = self.held_until.filter(|&until| until > now);
        let slot = self.log.next_slot_with(now, self.in_flight);
        held.max(slot)
    }
}

/// The limiter one credential shares among every caller.
#[derive(Debug)]
pub struct RateLimiter {
    /// Held while waiting for a slot: callers are served first come, first served.
    queue: tokio::sync::Mutex<()>,
    state: Mutex<LimiterState>,
}

/// A request's place in the windows, from the moment it may leave until its answer
/// arrives: dropping it (when the answer is in, or the request was abandoned) records it
/// at that moment.
#[derive(Debug)]
pub struct Slot<'a> {
    limiter: &'a RateLimiter,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.log.record_answer(Instant::now());
    }
}

impl RateLimiter {
    pub fn new(pacing: &Pacing) -> Self {
        let mut log = WindowLog::new(pacing);
        log.set_margin(BASE_MARGIN_PERCENT);
        Self {
            queue: tokio::sync::Mutex::new(()),
            state: Mutex::new(LimiterState {
                log,
                in_flight: 0,
                held_until: None,
                last_refusal: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a request may be sent and takes its slot; keep the slot until the
    /// answer arrives. Also returns how long it waited.
    pub async fn acquire(&self) -> (Slot<'_>, Duration) {
        let started = Instant::now();
        let _turn = self.queue.lock().await;
        loop {
            let now = Instant::now();
            let next = {
                let mut state = self.lock();
                let next = state.next_start(now);
                if next.is_none() {
                    state.in_flight += 1;
                }
                next
            };
            let Some(at) = next else {
                return (Slot { limiter: self }, now.duration_since(started));
            };
            let wait = at.saturating_duration_since(now);
            // A paced wait is expected, not a problem: said at INFO (a 429 is the warning).
            let _shown = (wait >= Duration::from_secs(1)).then(|| {
                progress::wait(&format!(
                    "waiting {} s for Expensify's rate window",
                    wait.as_secs_f64().round()
                ))
            });
            tokio::time::sleep_until(at).await;
        }
    }

    /// Expensify answered `429` (or its body equivalent) although the client paced: the
    /// server counts more than the client does (another process with the credential, a
    /// path slower than the margin). Every caller of the credential is held for the
    /// server's `Retry-After`, at least one shortest window and at most one longest, and
    /// the margin doubles (up to [`MAX_MARGIN_PERCENT`]) until a longest window passes
    /// without another `429`. Returns the margin now kept.
    pub fn rate_limited(&self, retry_after: Option<Duration>) -> u32 {
        let now = Instant::now();
        let mut state = self.lock();
        if state.log.is_unlimited() {
            return 0;
        }
        let margin = state.log.margin_percent().saturating_mul(2);
        state.log.set_margin(margin.max(BASE_MARGIN_PERCENT));
        let (shortest, longest) = state.log.shortest_and_longest();
        let hold = retry_after.unwrap_or_default().clamp(shortest, longest);
        state.held_until = state.held_until.max(Some(now + hold));
        state.last_refusal = Some(now);
        state.log.margin_percent()
    }

    /// Holds every caller of the credential until one longest window after `from`: another
    /// process may have used the credential until then (a leader that just handed over),
    /// and Expensify counts its calls in the same windows.
    pub fn hold_from(&self, from: Instant) {
        let mut state = self.lock();
        if state.log.is_unlimited() {
            return;
        }
        let until = from + state.log.longest();
        state.held_until = state.held_until.max(Some(until));
    }

    /// The margin kept below the published windows now, in percent.
    pub fn margin_percent(&self) -> u32 {
        self.lock().log.margin_percent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn assert_within_windows(times: &[Duration], pacing: &Pacing) {
        for window in &pacing.windows {
            for (i, start) in times.iter().enumerate() {
                let count = times[i..]
                    .iter()
                    .take_while(|t| (**t).checked_sub(*start).unwrap() < window.period)
                    .count();
                assert!(
                    count <= window.max_requests as usize,
                    "{count} sends within {:?} starting at {start:?}",
                    window.period
                );
            }
        }
    }

    /// A window of `seconds` paced to 90 %, in whole milliseconds rounded up.
    fn paced(seconds: u64) -> Duration {
        Duration::from_millis((seconds * 10_000).div_ceil(9))
    }

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_either_window_and_keeps_a_tenth_in_hand() {
        let pacing = Pacing::default();
        let limiter = RateLimiter::new(&pacing);
        let origin = Instant::now();
        let mut times = Vec::new();
        for _ in 0..45 {
            let (_answered_at_once, _) = limiter.acquire().await;
            times.push(origin.elapsed());
        }
        assert_within_windows(&times, &pacing);
        // The first five go at once; then 5 per 11.1 s and 20 per 66.7 s.
        assert_eq!(times[4], Duration::ZERO);
        assert_eq!(times[5], paced(10));
        assert_eq!(times[20], paced(60));
        assert_eq!(times[40], paced(60) * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_takes_its_place_when_its_answer_arrives() {
        let pacing = Pacing {
            windows: vec![PacingWindow {
                max_requests: 1,
                period: Duration::from_secs(9),
            }],
        };
        let limiter = RateLimiter::new(&pacing);
        let origin = Instant::now();
        let (slot, _) = limiter.acquire().await;
        // The answer takes 4 s: the server may have counted the request at any moment
        // until then, so the window starts when the answer arrives.
        tokio::time::sleep(Duration::from_secs(4)).await;
        drop(slot);
        let (_next, waited) = limiter.acquire().await;
        assert_eq!(origin.elapsed(), Duration::from_secs(4) + paced(9));
        assert_eq!(waited, paced(9));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_its_place() {
        let pacing = Pacing {
            windows: vec![PacingWindow {
                max_requests: 1,
                period: Duration::from_secs(9),
            }],
        };
        let limiter = Arc::new(RateLimiter::new(&pacing));
        let (slot, _) = limiter.acquire().await;
        let second = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let _slot = limiter.acquire().await;
                Instant::now()
            })
        };
        // Unanswered for a minute: nothing else may go meanwhile.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!second.is_finished());
        let answered = Instant::now();
        drop(slot);
        assert_eq!(second.await.unwrap(), answered + paced(9));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_every_caller_and_widens_the_margin_for_a_while() {
        let limiter = RateLimiter::new(&Pacing::default());
        assert_eq!(limiter.margin_percent(), BASE_MARGIN_PERCENT);
        let origin = Instant::now();
        drop(limiter.acquire().await);
        assert_eq!(limiter.rate_limited(None), 20);
        // Held for the shortest window at the new margin: 10 s paced to 80 %.
        let (slot, _) = limiter.acquire().await;
        drop(slot);
        assert_eq!(origin.elapsed(), Duration::from_millis(12_500));
        assert_eq!(limiter.rate_limited(Some(Duration::from_secs(30))), 40);
        let again = Instant::now();
        drop(limiter.acquire().await);
        assert_eq!(
            again.elapsed(),
            Duration::from_secs(30),
            "Retry-After honoured"
        );
        assert_eq!(limiter.margin_percent(), 40, "still widened 30 s later");
        assert_eq!(limiter.rate_limited(None), MAX_MARGIN_PERCENT, "capped");
        // A hostile Retry-After holds no longer than the longest window (60 s at 60 %).
        let hostile = Instant::now();
        limiter.rate_limited(Some(Duration::from_secs(3600)));
        drop(limiter.acquire().await);
        assert_eq!(hostile.elapsed(), Duration::from_secs(100));
        // That was a longest window without another 429: back to the base margin.
        assert_eq!(limiter.margin_percent(), BASE_MARGIN_PERCENT);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_budget() {
        let pacing = Pacing::default();
        let limiter = Arc::new(RateLimiter::new(&pacing));
        let origin = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                drop(limiter.acquire().await);
                origin.elapsed()
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        assert_within_windows(&times, &pacing);
        assert_eq!(times[11], paced(10) * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn huge_periods_do_not_overflow() {
        let limiter = RateLimiter::new(&Pacing {
            windows: vec![PacingWindow {
                max_requests: 1,
                period: Duration::MAX,
            }],
        });
        drop(limiter.acquire().await);
        let now = Instant::now();
        assert_eq!(limiter.lock().log.next_slot(now), Some(now + MAX_DURATION));
        limiter.rate_limited(Some(Duration::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = RateLimiter::new(&Pacing::unlimited());
        limiter.rate_limited(None);
        for _ in 0..1000 {
            assert_eq!(limiter.acquire().await.1, Duration::ZERO);
        }
    }

    #[test]
    fn the_simulator_enforces_the_published_windows_without_a_margin() {
        let mut log = WindowLog::new(&Pacing::default());
        let start = Instant::now();
        for i in 0..5 {
            assert!(log.try_record(start + Duration::from_millis(i)));
        }
        assert!(!log.try_record(start + Duration::from_millis(9_999)));
        assert!(log.try_record(start + Duration::from_secs(10)));
    }
}
