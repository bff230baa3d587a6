//! The client against the simulator on loopback: every call, every error class, retries,
//! pacing, batching and fault injection.

mod support;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use expensify_operator::expensify::{
    Call, ClientConfigError, ClientSettings, Credentials, EmployeeRecord, ErrorKind,
    ExpensifyClients, Pacing, PacingWindow, RetryPolicy, Role, WriteGate,
};
use expensify_operator::simulator::{FaultConfig, ScriptedFault, SeedEmployee, SeedPolicy};
use support::*;

const FINANCE: &str = "F1E2D3C4B5A69788";
const ENGINEERING: &str = "0A1B2C3D4E5F6071";

fn script(faults: &[ScriptedFault]) -> FaultConfig {
    FaultConfig {
        script: VecDeque::from(faults.to_vec()),
        ..FaultConfig::default()
    }
}

#[tokio::test]
async fn policy_list_has_the_documented_shape() {
    let sim = start(&unlimited_seed()).await;
    // Raw HTTP, as the README's curl does: keys in the order of Expensify's sample.
    let job = format!(
        r#"{{"type":"get","credentials":{{"partnerUserID":"{ADMIN_ID}","partnerUserSecret":"{ADMIN_SECRET}"}},"inputSettings":{{"type":"policyList","adminOnly":true}}}}"#
    );
    let text = reqwest::Client::new()
        .post(sim.endpoint())
        .form(&[("requestJobDescription", job)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with(r#"{"policyList":[{"outputCurrency":"USD","owner":"cto@acme.example","role":"admin","name":"Engineering","id":"0A1B2C3D4E5F6071","type":"corporate"},"#), "{text}");
    assert!(text.ends_with(r#"],"responseCode":200}"#), "{text}");
}

#[tokio::test]
async fn lists_policies_with_the_callers_role() {
    let sim = start(&unlimited_seed()).await;
    let all = admin_client(&sim).list_policies(false).await.unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Engineering",
            "Marketing",
            "Contractors",
            "Sales EMEA",
            "Finance"
        ]
    );
    assert!(!names.contains(&"Board"), "not visible to this account");
    let readonly = client_with(&sim, test_settings(), READONLY_ID, READONLY_SECRET);
    let theirs = readonly.list_policies(false).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].caller_role, "auditor");
    assert!(readonly.list_policies(true).await.unwrap().is_empty());
}

#[tokio::test]
async fn reads_rosters_of_many_policies_in_chunks() {
    let mut seed = unlimited_seed();
    for i in 0..250 {
        seed.policies.push(SeedPolicy {
            id: format!("AAAA{i:012X}"),
            name: format!("Team {i}"),
            plan: "corporate".into(),
            owner: "it-admin@acme.example".into(),
            output_currency: "USD".into(),
            employees: vec![SeedEmployee {
                email: format!("member{i}@acme.example"),
                role: Role::User,
                submits_to: None,
                employee_id: None,
            }],
        });
    }
    let sim = start(&seed).await;
    let client = admin_client(&sim);
    let ids: Vec<String> = client
        .list_policies(true)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids.len(), 255);
    let rosters = client.read_rosters(&ids).await.unwrap();
    assert_eq!(rosters.len(), 255);
    assert_eq!(rosters["AAAA000000000007"].len(), 2, "owner and member");
    // 1 list + ceil(255 / 100) roster reads.
    assert_eq!(client.counts().policy_list, 1);
    assert_eq!(client.counts().roster_reads, 3);
    let sizes: Vec<usize> = sim
        .state()
        .requests()
        .iter()
        .filter(|r| r.job == "get/policy")
        .map(|r| r.items)
        .collect();
    assert_eq!(sizes, [100, 100, 55]);
}

#[tokio::test]
async fn grants_changes_roles_and_revokes() {
    let sim = start(&unlimited_seed()).await;
    let client = admin_client(&sim);
    let records = vec![
        EmployeeRecord::grant(
            "zoe@acme.example",
            FINANCE,
            Role::Auditor,
            "cfo@acme.example",
            None,
        ),
        EmployeeRecord::grant(
            "dave@acme.example",
            ENGINEERING,
            Role::User,
            "cto@acme.example",
            Some("E-2001".into()),
        ),
        EmployeeRecord::revoke("mallory@acme.example", FINANCE, "cfo@acme.example", None),
    ];
    let report = client.update_employees(&records, false).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.outcome.updated_employees_count, 3);
    assert_eq!(report.outcome.added[FINANCE], vec!["zoe@acme.example"]);
    assert_eq!(
        report.outcome.removed[FINANCE],
        vec!["mallory@acme.example"]
    );
    let rosters = client
        .read_rosters(&[FINANCE.to_string(), ENGINEERING.to_string()])
        .await
        .unwrap();
    let role_of = |policy: &str, email: &str| {
        rosters[policy]
            .iter()
            .find(|e| e.email == email)
            .map(|e| e.role.clone())
    };
    assert_eq!(
        role_of(FINANCE, "zoe@acme.example").as_deref(),
        Some("auditor")
    );
    assert_eq!(
        role_of(ENGINEERING, "dave@acme.example").as_deref(),
        Some("user")
    );
    assert_eq!(role_of(FINANCE, "mallory@acme.example"), None);
    assert_eq!(
        sim.state()
            .requests()
            .iter()
            .filter(|r| r.job == "update/employees")
            .count(),
        1,
        "one call"
    );
}

#[tokio::test]
async fn dry_run_reports_without_applying() {
    let sim = start(&unlimited_seed()).await;
    let client = admin_client(&sim);
    let records = [EmployeeRecord::grant(
        "zoe@acme.example",
        FINANCE,
        Role::User,
        "cfo@acme.example",
        None,
    )];
    let report = client.update_employees(&records, true).await;
    assert!(report.outcome.dry_run);
    assert_eq!(report.outcome.added[FINANCE], vec!["zoe@acme.example"]);
    let roster = &client.read_rosters(&[FINANCE.to_string()]).await.unwrap()[FINANCE];
    assert!(roster.iter().all(|e| e.email != "zoe@acme.example"));
}

#[tokio::test]
async fn batches_many_records_per_call() {
    let sim = start(&unlimited_seed()).await;
    let client = admin_client(&sim);
    let records: Vec<EmployeeRecord> = (0..1200)
        .map(|i| {
            EmployeeRecord::grant(
                format!("person{i}@acme.example"),
                FINANCE,
                Role::User,
                "cfo@acme.example",
                None,
            )
        })
        .collect();
    let report = client.update_employees(&records, false).await;
    assert!(report.failed.is_empty());
    assert_eq!(report.outcome.updated_employees_count, 1200);
    let sizes: Vec<usize> = sim.state().requests().iter().map(|r| r.items).collect();
    assert_eq!(sizes, [500, 500, 200]);
    assert_eq!(sim.state().counters().records_applied, 1200);
}

#[tokio::test]
async fn skipped_records_are_reported_per_member() {
    let sim = start(&unlimited_seed()).await;
    let client = admin_client(&sim);
    let records = [
        EmployeeRecord::grant(
            "cfo@acme.example",
            FINANCE,
            Role::User,
            "cfo@acme.example",
            None,
        ),
        EmployeeRecord::grant(
            "ok@acme.example",
            FINANCE,
            Role::User,
            "cfo@acme.example",
            None,
        ),
        EmployeeRecord::grant(
            "x@acme.example",
            "NO-SUCH-POLICY",
            Role::User,
            "cfo@acme.example",
            None,
        ),
    ];
    let report = client.update_employees(&records, false).await;
    assert_eq!(report.outcome.updated_employees_count, 1);
    let skipped: Vec<(&str, &str)> = report
        .outcome
        .skipped
        .iter()
        .map(|s| (s.email.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0].0, "cfo@acme.example");
    assert!(skipped[0].1.contains("demoted"));
    assert_eq!(
        skipped[1],
        ("x@acme.example", "No policy found for 'NO-SUCH-POLICY'")
    );
}

#[tokio::test]
async fn every_error_class() {
    let sim = start(&unlimited_seed()).await;
    let no_retry = ClientSettings {
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..test_settings()
    };
    let client = client_with(&sim, no_retry.clone(), ADMIN_ID, ADMIN_SECRET);

    let wrong = client_with(&sim, no_retry.clone(), ADMIN_ID, "wrong-secret");
    let err = wrong.list_policies(false).await.unwrap_err();
    assert_eq!(err.call, Call::ListPolicies);
    assert!(
        matches!(err.kind, ErrorKind::CredentialsRejected { code: 407, .. }),
        "{err}"
    );

    #[allow(clippy::items_after_statements)]
    type Expectation = fn(&ErrorKind) -> bool;
    let cases: Vec<(ScriptedFault, Expectation)> = vec![
        (ScriptedFault::Respond { status: 200, body: r#"{"responseCode":401,"responseMessage":"Authentication error"}"#.into() },
            |k| matches!(k, ErrorKind::CredentialsRejected { code: 401, .. })),
        (ScriptedFault::Respond { status: 401, body: "Unauthorized".into() },
            |k| matches!(k, ErrorKind::CredentialsRejected { code: 401, .. })),
        (ScriptedFault::Respond { status: 200, body: r#"{"responseCode":403,"responseMessage":"Insufficient permission"}"#.into() },
            |k| matches!(k, ErrorKind::PermissionDenied { .. })),
        (ScriptedFault::Respond { status: 200, body: r#"{"responseCode":404,"responseMessage":"Policy not found"}"#.into() },
            |k| matches!(k, ErrorKind::InvalidRequest { code: 404, .. })),
        (ScriptedFault::Http429, |k| matches!(k, ErrorKind::RateLimited { .. })),
        (ScriptedFault::Body503, |k| matches!(k, ErrorKind::RateLimited { .. })),
        (ScriptedFault::Http500, |k| matches!(k, ErrorKind::Server { status: 500, .. })),
        (ScriptedFault::Respond { status: 502, body: "<html>Bad Gateway</html>".into() },
            |k| matches!(k, ErrorKind::Server { status: 502, .. })),
        (ScriptedFault::Respond { status: 200, body: r#"{"responseCode":500,"responseMessage":"Not authorized to authenticate as user x@y.z"}"#.into() },
            |k| matches!(k, ErrorKind::Refused { code: 500, .. })),
        (ScriptedFault::Drop, |k| matches!(k, ErrorKind::Transport { .. })),
        (ScriptedFault::Respond { status: 200, body: "export-2026.csv".into() },
            |k| matches!(k, ErrorKind::Undecodable { .. })),
    ];
    for (fault, expected) in cases {
        sim.state().set_faults(script(std::slice::from_ref(&fault)));
        let err = client.list_policies(false).await.unwrap_err();
        assert!(expected(&err.kind), "{fault:?} gave {err}");
        assert_eq!(err.attempts, 1);
    }

    // Expensify's own validation: an unknown policy in a roster read.
    sim.state().set_faults(FaultConfig::default());
    let err = client
        .read_rosters(&["0000000000000000".to_string()])
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::InvalidRequest { code: 410, ref message } if message.contains("0000000000000000")),
        "{err}"
    );

    // Permission: the read-only account may not use the employee updater.
    let readonly = client_with(&sim, no_retry, READONLY_ID, READONLY_SECRET);
    let report = readonly
        .update_employees(
            &[EmployeeRecord::grant(
                "a@acme.example",
                FINANCE,
                Role::User,
                "cfo@acme.example",
                None,
            )],
            false,
        )
        .await;
    assert!(matches!(
        report.failed[0].error.kind,
        ErrorKind::PermissionDenied { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn times_out_a_slow_answer() {
    let sim = start(&unlimited_seed()).await;
    sim.state().set_faults(FaultConfig {
        latency_ms: 120_000,
        ..FaultConfig::default()
    });
    let settings = ClientSettings {
        request_timeout: Duration::from_secs(30),
        retry: RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        },
        ..test_settings()
    };
    let err = client_with(&sim, settings, ADMIN_ID, ADMIN_SECRET)
        .list_policies(false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout(Duration::from_secs(30)));
    assert_eq!(err.attempts, 2, "timeouts are retried");
}

#[tokio::test(start_paused = true)]
async fn retries_transient_errors_until_success() {
    let sim = start(&unlimited_seed()).await;
    sim.state().set_faults(script(&[
        ScriptedFault::Http429,
        ScriptedFault::Body503,
        ScriptedFault::Http500,
        ScriptedFault::Drop,
    ]));
    let client = admin_client(&sim);
    let started = tokio::time::Instant::now();
    let policies = client.list_policies(false).await.unwrap();
    assert_eq!(policies.len(), 5);
    let counts = client.counts();
    assert_eq!(
        (counts.policy_list, counts.retries, counts.failures),
        (5, 4, 0)
    );
    // Two rate-limit answers wait at least 10 s each.
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let injected: u64 = sim.state().counters().faults.values().sum();
    assert_eq!(injected, 4);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_the_attempt_budget() {
    let sim = start(&unlimited_seed()).await;
    sim.state().set_faults(FaultConfig {
        http500_probability: 1.0,
        ..FaultConfig::default()
    });
    let client = admin_client(&sim);
    let err = client.list_policies(false).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Server { .. }));
    assert_eq!(err.attempts, RetryPolicy::default().max_attempts);
    assert_eq!(sim.state().counters().requests, 5);
    assert!(err.to_string().contains("after 5 attempt(s)"), "{err}");
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let sim = start(&unlimited_seed()).await;
    let client = client_with(&sim, test_settings(), ADMIN_ID, "wrong");
    let err = client.list_policies(false).await.unwrap_err();
    assert_eq!(err.attempts, 1);
    assert_eq!(sim.state().counters().requests, 1);
}

#[tokio::test(start_paused = true)]
async fn a_write_applied_but_unanswered_is_retried_safely() {
    let sim = start(&unlimited_seed()).await;
    sim.state()
        .set_faults(script(&[ScriptedFault::DropAfterApply]));
    let client = admin_client(&sim);
    let records = [EmployeeRecord::grant(
        "zoe@acme.example",
        FINANCE,
        Role::Auditor,
        "cfo@acme.example",
        None,
    )];
    let report = client.update_employees(&records, false).await;
    assert!(report.failed.is_empty());
    assert_eq!(
        report.outcome.updated_employees_count, 0,
        "the retry found it already done"
    );
    let roster = &client.read_rosters(&[FINANCE.to_string()]).await.unwrap()[FINANCE];
    assert_eq!(
        roster
            .iter()
            .filter(|e| e.email == "zoe@acme.example")
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_credential_rejection_stops_the_remaining_batches() {
    let sim = start(&unlimited_seed()).await;
    let settings = ClientSettings {
        update_batch_size: 2,
        ..test_settings()
    };
    let client = client_with(&sim, settings, ADMIN_ID, "wrong");
    let records: Vec<EmployeeRecord> = (0..6)
        .map(|i| {
            EmployeeRecord::grant(
                format!("p{i}@acme.example"),
                FINANCE,
                Role::User,
                "cfo@acme.example",
                None,
            )
        })
        .collect();
    let report = client.update_employees(&records, false).await;
    assert_eq!(report.failed.len(), 3);
    assert_eq!(
        report.failed.iter().map(|b| b.records.len()).sum::<usize>(),
        6
    );
    assert_eq!(
        sim.state().counters().requests,
        1,
        "later batches are not sent"
    );
}

#[tokio::test(start_paused = true)]
async fn transient_batch_failure_does_not_stop_later_batches() {
    let sim = start(&unlimited_seed()).await;
    sim.state().set_faults(script(&[ScriptedFault::Respond {
        status: 200,
        body: r#"{"responseCode":410,"responseMessage":"Invalid input data"}"#.into(),
    }]));
    let settings = ClientSettings {
        update_batch_size: 2,
        ..test_settings()
    };
    let client = client_with(&sim, settings, ADMIN_ID, ADMIN_SECRET);
    let records: Vec<EmployeeRecord> = (0..4)
        .map(|i| {
            EmployeeRecord::grant(
                format!("p{i}@acme.example"),
                FINANCE,
                Role::User,
                "cfo@acme.example",
                None,
            )
        })
        .collect();
    let report = client.update_employees(&records, false).await;
    assert_eq!(report.failed.len(), 1);
    assert_eq!(
        report.failed[0].records[0].employee_email,
        "p0@acme.example"
    );
    assert_eq!(report.outcome.updated_employees_count, 2);
}

/// Client and simulator enforce the same published windows on tokio's paused clock: the
/// client must pace itself so the simulator never has to refuse it.
#[tokio::test(start_paused = true)]
async fn pacing_keeps_a_burst_within_the_published_limits() {
    let sim = start(&example_seed()).await;
    let clients = Arc::new(
        ExpensifyClients::new(ClientSettings {
            pacing: Pacing::default(),
            ..sim_settings(&sim)
        })
        .unwrap(),
    );
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    // Two "connectors" sharing one credential: one limiter between them.
    for _ in 0..2 {
        let client = clients
            .client(
                &sim.endpoint(),
                Credentials::new(ADMIN_ID, ADMIN_SECRET).unwrap(),
            )
            .unwrap();
        tasks.push(tokio::spawn(async move {
            for _ in 0..12 {
                client.list_policies(false).await.unwrap();
            }
            client.counts().retries
        }));
    }
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }
    let counters = sim.state().counters().clone();
    assert_eq!(counters.requests, 24);
    assert_eq!(
        counters.rate_limited, 0,
        "the simulator never had to refuse"
    );
    assert_eq!(retries, 0);
    // 24 requests at 20 per 60 s cannot finish in under a minute.
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// A slow, jittery path (each request reaches the simulator 0 to 700 ms late, at random):
/// pacing from the moment each answer arrives, with a tenth in hand, still draws no `429`
/// from a simulator that enforces the published windows exactly. Paced by send time at the
/// exact limits, a request delayed less than the one five before it arrived inside the
/// 10 s window.
#[tokio::test(start_paused = true)]
async fn a_slow_network_path_draws_no_429() {
    let mut seed = example_seed();
    seed.faults = FaultConfig {
        accept_delay_ms: 700,
        seed: 11,
        ..FaultConfig::default()
    };
    let sim = start(&seed).await;
    let clients = Arc::new(
        ExpensifyClients::new(ClientSettings {
            pacing: Pacing::default(),
            // A 429 fails the call at once: the test sees every one.
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..sim_settings(&sim)
        })
        .unwrap(),
    );
    let mut tasks = Vec::new();
    // Two connectors sharing one credential, and so one limiter.
    for _ in 0..2 {
        let client = clients
            .client(
                &sim.endpoint(),
                Credentials::new(ADMIN_ID, ADMIN_SECRET).unwrap(),
            )
            .unwrap();
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                client.list_policies(false).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counters = sim.state().counters().clone();
    assert_eq!(counters.requests, 30);
    assert_eq!(
        counters.rate_limited, 0,
        "the simulator never had to refuse"
    );
}

/// After a `429` the limiter holds the credential and widens its margin: the retry and
/// the next caller wait at least a (wider) shortest window.
#[tokio::test(start_paused = true)]
async fn a_429_served_slows_the_credential_down() {
    let sim = start(&unlimited_seed()).await;
    sim.state().set_faults(script(&[ScriptedFault::Http429]));
    let client = client_with(
        &sim,
        ClientSettings {
            pacing: Pacing::default(),
            ..test_settings()
        },
        ADMIN_ID,
        ADMIN_SECRET,
    );
    let started = tokio::time::Instant::now();
    client.list_policies(false).await.unwrap();
    let after_retry = started.elapsed();
    // The retry waited 10-15 s; the limiter holds 12.5 s (10 s paced to 80 %).
    assert!(
        after_retry >= Duration::from_millis(12_500),
        "{after_retry:?}"
    );
    client.list_policies(false).await.unwrap();
    assert_eq!(sim.state().counters().requests, 3);
}

#[tokio::test(start_paused = true)]
async fn without_pacing_the_simulator_enforces_the_limits() {
    let sim = start(&example_seed()).await;
    let settings = ClientSettings {
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..test_settings()
    };
    let client = client_with(&sim, settings, ADMIN_ID, ADMIN_SECRET);
    let mut refused = 0;
    for _ in 0..6 {
        if let Err(e) = client.list_policies(false).await {
            assert!(matches!(e.kind, ErrorKind::RateLimited { .. }));
            refused += 1;
        }
    }
    assert_eq!(refused, 1, "the sixth request within 10 s is refused");
}

#[tokio::test(start_paused = true)]
async fn probabilistic_faults_are_survived_by_retries() {
    let mut seed = unlimited_seed();
    seed.faults = FaultConfig {
        rate_limit_probability: 0.1,
        body503_probability: 0.1,
        http500_probability: 0.1,
        drop_probability: 0.1,
        seed: 7,
        ..FaultConfig::default()
    };
    let sim = start(&seed).await;
    let settings = ClientSettings {
        retry: RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(600),
            ..RetryPolicy::default()
        },
        ..test_settings()
    };
    let client = client_with(&sim, settings, ADMIN_ID, ADMIN_SECRET);
    for _ in 0..30 {
        client.list_policies(false).await.unwrap();
    }
    let counters = sim.state().counters().clone();
    let injected: u64 = counters.faults.values().sum();
    assert!(injected > 0, "faults were injected");
    assert_eq!(counters.requests, 30 + injected);
    assert_eq!(client.counts().retries, injected);
}

#[tokio::test]
async fn plain_http_beyond_loopback_is_refused_before_sending() {
    let clients = ExpensifyClients::new(test_settings()).unwrap();
    let err = clients
        .client(
            "http://integrations.expensify.com/Integration-Server/ExpensifyIntegrations",
            Credentials::new("id", "secret").unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, ClientConfigError::InsecureEndpoint { .. }));
    assert!(err.to_string().contains("only https"), "{err}");
    assert!(!err.to_string().contains("secret"));
}

/// A write gate the test closes: a leadership term that ends.
#[derive(Debug, Default)]
struct Term(std::sync::atomic::AtomicBool);

impl Term {
    fn end(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl WriteGate for Term {
    fn may_write(&self) -> Result<(), String> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            Err("the leadership term ended".into())
        } else {
            Ok(())
        }
    }
}

fn grants(count: usize) -> Vec<EmployeeRecord> {
    (0..count)
        .map(|i| {
            EmployeeRecord::grant(
                format!("p{i}@acme.example"),
                FINANCE,
                Role::User,
                "cfo@acme.example",
                None,
            )
        })
        .collect()
}

/// Waits (on the real clock) until the simulator has seen `count` updater calls.
async fn until_updates(sim: &expensify_operator::simulator::SimulatorHandle, count: u64) {
    for _ in 0..500 {
        if updates(sim) >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the simulator never saw {count} updater call(s)");
}

/// The term ends while the second batch waits for its pacing slot: it is never sent, and
/// neither is the third; reads still go.
#[tokio::test]
async fn a_write_gate_closed_during_a_pacing_wait_stops_every_later_batch() {
    let sim = start(&unlimited_seed()).await;
    let term = Arc::new(Term::default());
    let settings = ClientSettings {
        update_batch_size: 1,
        pacing: Pacing {
            windows: vec![PacingWindow {
                max_requests: 1,
                period: Duration::from_millis(800),
            }],
        },
        ..sim_settings(&sim)
    };
    let client = ExpensifyClients::new(settings)
        .unwrap()
        .with_write_gate(term.clone())
        .client(
            &sim.endpoint(),
            Credentials::new(ADMIN_ID, ADMIN_SECRET).unwrap(),
        )
        .unwrap();
    let records = grants(3);
    let writing = {
        let client = client.clone();
        tokio::spawn(async move { client.update_employees(&records, false).await })
    };
    until_updates(&sim, 1).await;
    // The second batch is now waiting for the window the first one used.
    term.end();
    let report = writing.await.unwrap();
    assert_eq!(updates(&sim), 1, "nothing left after the term ended");
    assert_eq!(report.failed.len(), 2);
    for failed in &report.failed {
        assert!(
            matches!(&failed.error.kind, ErrorKind::WriteStopped { reason } if reason.contains("leadership")),
            "{:?}",
            failed.error
        );
    }
    assert!(
        client.list_policies(false).await.is_ok(),
        "reads are not gated"
    );
}

/// The term ends while a failed write waits to be retried: the retry is never sent.
#[tokio::test]
async fn a_write_gate_closed_before_a_retry_stops_the_retry() {
    let sim = start(&unlimited_seed()).await;
    sim.state().set_faults(script(&[ScriptedFault::Http500]));
    let term = Arc::new(Term::default());
    let settings = ClientSettings {
        retry: RetryPolicy {
            initial_backoff: Duration::from_secs(2),
            ..RetryPolicy::default()
        },
        ..sim_settings(&sim)
    };
    let client = ExpensifyClients::new(settings)
        .unwrap()
        .with_write_gate(term.clone())
        .client(
            &sim.endpoint(),
            Credentials::new(ADMIN_ID, ADMIN_SECRET).unwrap(),
        )
        .unwrap();
    let records = grants(1);
    let writing = tokio::spawn(async move { client.update_employees(&records, false).await });
    until_updates(&sim, 1).await;
    term.end();
    let report = writing.await.unwrap();
    assert_eq!(sim.state().counters().requests, 1, "the retry was not sent");
    assert!(matches!(
        report.failed[0].error.kind,
        ErrorKind::WriteStopped { .. }
    ));
    assert_eq!(report.failed[0].error.attempts, 1);
}
