//! What the end-to-end benchmarks share: a simulator in its own process, ports, memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use expensify_operator::api::{
    AccessMode, ConnectorRef, DeletionPolicy, ExpensifyConnectorSpec, MemberSpec, PolicyAccessSpec,
    PolicyAccessStatus, PolicySelector, SecretRef,
};
use expensify_operator::expensify::{PolicySummary, RosterEntry};
use expensify_operator::reconcile::{AccessObject, ConnectorObject, ObjectKey, Observed};

pub const BIN: &str = env!("CARGO_BIN_EXE_expensify-operator");

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Peak resident memory (VmHWM) of a process, in KiB; `self` for this one.
pub fn peak_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Writes a simulator seed: one account (`id`, `secret`, admin@bench.example) and
/// `policies` policies with ids `<prefix><hex>`, each owned by owner@bench.example with
/// only the admin on it; no rate limits (the benchmarks measure calls, not pacing).
pub fn write_seed(path: &Path, id: &str, secret: &str, prefix: &str, policies: usize) {
    use std::fmt::Write as _;
    let mut seed = format!(
        "accounts:\n  - {{partnerUserID: {id}, partnerUserSecret: {secret}, email: admin@bench.example}}\nrateLimits: {{enabled: false}}\npolicies:\n"
    );
    for p in 0..policies {
        let _ = writeln!(
            seed,
            "  - {{id: \"{prefix}{p:014X}\", name: \"Policy {p}\", owner: owner@bench.example, employees: [{{email: admin@bench.example, role: admin}}]}}"
        );
    }
    std::fs::write(path, seed).expect("the seed is written");
}

/// Starts the simulator binary on `port` from `seed`.
pub fn spawn_simulator(seed: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args([
            "simulator",
            "--seed",
            seed.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts")
}

/// Waits until something listens on `port`.
pub async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// The planner's input for `policies` x `members` people: Expensify has half the desired
/// people, a few with another role, and three extras per policy; half the objects are
/// Authoritative.
pub fn planner_world(
    policies: usize,
    members: usize,
) -> (ConnectorObject, Vec<AccessObject>, Observed) {
    let connector = ConnectorObject {
        key: ObjectKey::new("bench", "acme"),
        generation: Some(1),
        annotations: BTreeMap::new(),
        spec: ExpensifyConnectorSpec {
            credentials_secret_ref: SecretRef {
                name: "creds".into(),
                user_id_key: "partnerUserID".into(),
                user_secret_key: "partnerUserSecret".into(),
            },
            endpoint: expensify_operator::expensify::DEFAULT_ENDPOINT.into(),
            admin_email: "admin@bench.example".into(),
            owners: Vec::new(),
            sync_interval: "10m".into(),
            max_revocations_per_sync: 100_000,
            protected_emails: vec![],
            allowed_namespaces: vec![],
            tenants: vec![],
            suspend: false,
            notifications: None,
        },
        status: None,
    };
    let mut observed = Observed::default();
    let mut accesses = Vec::new();
    for p in 0..policies {
        let id = format!("BE{p:014X}");
        observed.policies.push(PolicySummary {
            id: id.clone(),
            name: format!("Policy {p}"),
            plan: "corporate".into(),
            owner: "owner@bench.example".into(),
            output_currency: "USD".into(),
            caller_role: "admin".into(),
        });
        // Expensify has half the desired people, a few with another role, and some extras.
        let mut roster = vec![
            entry("owner@bench.example", "admin"),
            entry("admin@bench.example", "admin"),
        ];
        for m in 0..members {
            if m % 2 == 0 {
                roster.push(entry(
                    &format!("person{m}.{p}@bench.example"),
                    if m % 6 == 0 { "auditor" } else { "user" },
                ));
            }
        }
        for x in 0..3 {
            roster.push(entry(&format!("extra{x}.{p}@bench.example"), "user"));
        }
        observed.rosters.insert(id.clone(), roster);
        let wanted = (0..members)
            .map(|m| MemberSpec {
                email: format!("person{m}.{p}@bench.example"),
                role: Some("user".into()),
                submits_to: None,
                employee_id: None,
                expires_at: None,
            })
            .collect();
        accesses.push(AccessObject {
            key: ObjectKey::new("bench", format!("policy-{p}")),
            generation: Some(1),
            created: None,
            annotations: BTreeMap::new(),
            spec: PolicyAccessSpec {
                requests: None,
                connector_ref: ConnectorRef {
                    name: "acme".into(),
                    namespace: None,
                },
                policy: PolicySelector {
                    id: Some(id),
                    name: None,
                },
                mode: if p % 2 == 0 {
                    AccessMode::Authoritative
                } else {
                    AccessMode::Additive
                },
                deletion_policy: DeletionPolicy::Revoke,
                allow_from: Vec::new(),
                suspend: false,
                members: wanted,
            },
            deleting: false,
            status: Some(PolicyAccessStatus::default()),
        });
    }
    (connector, accesses, observed)
}

pub fn entry(email: &str, role: &str) -> RosterEntry {
    RosterEntry {
        email: email.into(),
        role: role.into(),
        submits_to: Some("owner@bench.example".into()),
        forwards_to: None,
        employee_id: None,
    }
}
