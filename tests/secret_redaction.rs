//! The partner secret never reaches logs, errors or Debug output, even when a failing
//! server echoes it back. Its own test binary, so the global subscriber sees everything.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use expensify_operator::simulator::{FaultConfig, ScriptedFault};
use support::*;

/// A writer the tracing subscriber logs into, for reading back what was logged.
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

#[tokio::test(start_paused = true)]
async fn the_secret_never_reaches_logs_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut seed = unlimited_seed();
    // The server echoes the secret back in its answers, the worst case for a client.
    let echoed = format!(r#"{{"responseCode":500,"responseMessage":"bad job: {ADMIN_SECRET}"}}"#);
    seed.faults = FaultConfig {
        script: VecDeque::from([
            ScriptedFault::Respond {
                status: 503,
                body: format!("overloaded {ADMIN_SECRET}"),
            },
            ScriptedFault::Respond {
                status: 200,
                body: echoed,
            },
        ]),
        ..FaultConfig::default()
    };
    let sim = start(&seed).await;
    let client = admin_client(&sim);
    let err = client.list_policies(false).await.unwrap_err();
    let shown = format!("{err} {err:?} {client:?}");
    assert!(shown.contains("[redacted]"));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the retry was logged: {logs}");
    for text in [&shown, &logs] {
        assert!(!text.contains(ADMIN_SECRET), "secret leaked into: {text}");
    }
}

/// An echo that a 300-character cut would split, in the forms a server may echo it:
/// nothing of the secret survives, not even a prefix.
#[tokio::test]
async fn an_echo_cut_mid_secret_leaves_no_prefix() {
    let secret = "Pr3fix/of+a secret&é=\"tail\"";
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    let json_escaped = json[1..json.len() - 1].replace('/', "\\/");
    let sim = start(&unlimited_seed()).await;
    let no_retry = expensify_operator::expensify::ClientSettings {
        retry: expensify_operator::expensify::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
        ..test_settings()
    };
    let client = client_with(&sim, no_retry, ADMIN_ID, secret);
    let php = json_escaped.replace('é', "\\u00e9");
    for echoed in [secret.to_string(), form, json_escaped, php] {
        let message = format!("{}{echoed} was refused", "x".repeat(295));
        let body = serde_json::json!({"responseCode": 500, "responseMessage": message}).to_string();
        sim.state().set_faults(FaultConfig {
            script: VecDeque::from([ScriptedFault::Respond { status: 200, body }]),
            ..FaultConfig::default()
        });
        let err = client.list_policies(false).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("Pr3"), "{echoed}: {shown}");
    }
}
