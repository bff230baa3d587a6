//! What the client logs about pacing: an expected wait is an info line, only a `429`
//! actually served is a warning. Alone in its test binary: tracing caches which call sites
//! are enabled process-wide, so a subscriber set for one test thread can miss events while
//! other tests run beside it.

mod support;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use expensify_operator::expensify::{ClientSettings, Pacing, PacingWindow};
use expensify_operator::simulator::{FaultConfig, ScriptedFault};
use support::*;

fn script(faults: &[ScriptedFault]) -> FaultConfig {
    FaultConfig {
        script: VecDeque::from(faults.to_vec()),
        ..FaultConfig::default()
    }
}

/// What a test's log lines say, captured.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn lines(&self, level: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(level))
            .map(str::to_string)
            .collect()
    }
}

/// A pacing wait is expected: an info line. Only a `429` actually served is a warning.
#[tokio::test(start_paused = true)]
async fn pacing_waits_are_info_and_only_a_served_429_warns() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let sim = start(&unlimited_seed()).await;
    let paced = ClientSettings {
        pacing: Pacing {
            windows: vec![PacingWindow {
                max_requests: 1,
                period: Duration::from_secs(10),
            }],
        },
        ..test_settings()
    };
    let client = client_with(&sim, paced, ADMIN_ID, ADMIN_SECRET);
    client.list_policies(false).await.unwrap();
    client.list_policies(false).await.unwrap();
    let info = log.lines("INFO");
    assert!(
        info.iter()
            .any(|l| l.contains("waiting 11 s for Expensify's rate window")),
        "{info:?}"
    );
    assert_eq!(log.lines("WARN"), Vec::<String>::new());

    sim.state().set_faults(script(&[ScriptedFault::Http429]));
    client.list_policies(false).await.unwrap();
    let warnings = log.lines("WARN");
    assert!(
        warnings.iter().any(|l| l.contains("rate limit (429)")),
        "{warnings:?}"
    );
}
