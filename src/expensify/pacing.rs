//! Client-side pacing: never send more than Expensify's published limits allow.
//!
//! A sliding-window log per credential: a request may go when every window has room.
//! The async mutex is held while waiting, so callers are served first come, first served
//! and a burst queues instead of racing. Time is `tokio::time`, so tests run it paused.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::api::MAX_DURATION;
use crate::telemetry::progress;

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

/// The send times of one credential and the windows they must fit. Synchronous, so the
/// client's limiter and the simulator's enforcement are the same code.
#[derive(Debug)]
pub struct WindowLog {
    windows: Vec<PacingWindow>,
    longest: Duration,
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
        let longest = windows
            .iter()
            .map(|w| w.period)
            .max()
            .unwrap_or(Duration::ZERO);
        Self {
            windows,
            longest,
            sent: VecDeque::new(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.windows.is_empty()
    }

    /// When the next request may go: `None` means now.
    pub fn next_slot(&mut self, now: Instant) -> Option<Instant> {
        while self
            .sent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.longest)
        {
            self.sent.pop_front();
        }
        self.windows
            .iter()
            .filter_map(|window| {
                let max = window.max_requests as usize;
                let in_window: Vec<&Instant> = self
                    .sent
                    .iter()
                    .filter(|&&t| now.duration_since(t) < window.period)
                    .collect();
                (in_window.len() >= max).then(|| *in_window[in_window.len() - max] + window.period)
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
}

/// The limiter one credential shares among every caller.
#[derive(Debug)]
pub struct RateLimiter {
    log: Mutex<WindowLog>,
}

impl RateLimiter {
    pub fn new(pacing: &Pacing) -> Self {
        Self {
            log: Mutex::new(WindowLog::new(pacing)),
        }
    }

    /// Waits until a request may be sent, and records it as sent. Returns how long it
    /// waited.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let mut log = self.log.lock().await;
        loop {
            let now = Instant::now();
            if log.try_record(now) {
                return now.duration_since(started);
            }
            if let Some(at) = log.next_slot(now) {
                let wait = at.saturating_duration_since(now);
                // Long waits are said: a paced run is not a hung one.
                let _shown = (wait >= Duration::from_secs(1)).then(|| {
                    progress::wait(&format!(
                        "waiting {} s for Expensify's rate limit",
                        wait.as_secs()
                    ))
                });
                tokio::time::sleep_until(at).await;
            }
        }
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

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_either_window() {
        let pacing = Pacing::default();
        let limiter = RateLimiter::new(&pacing);
        let origin = Instant::now();
        let mut times = Vec::new();
        for _ in 0..45 {
            limiter.acquire().await;
            times.push(origin.elapsed());
        }
        assert_within_windows(&times, &pacing);
        // The first five go at once, the 20/60 s window then binds: sends 21..40 wait
        // for the first minute to pass, 41..45 for the second.
        assert_eq!(times[4], Duration::ZERO);
        assert_eq!(times[5], Duration::from_secs(10));
        assert_eq!(times[20], Duration::from_secs(60));
        assert_eq!(times[40], Duration::from_secs(120));
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
                limiter.acquire().await;
                origin.elapsed()
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        assert_within_windows(&times, &pacing);
        assert_eq!(times[11], Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn huge_periods_do_not_overflow() {
        let limiter = RateLimiter::new(&Pacing {
            windows: vec![PacingWindow {
                max_requests: 1,
                period: Duration::MAX,
            }],
        });
        limiter.acquire().await;
        let mut log = limiter.log.lock().await;
        let now = Instant::now();
        assert_eq!(log.next_slot(now), Some(now + MAX_DURATION));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = RateLimiter::new(&Pacing::unlimited());
        for _ in 0..1000 {
            assert_eq!(limiter.acquire().await, Duration::ZERO);
        }
    }
}
