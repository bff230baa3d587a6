//! What the end-to-end benchmarks share: a simulator in its own process, ports, memory.

use std::path::Path;
use std::process::{Child, Command, Stdio};

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
