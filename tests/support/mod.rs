//! Helpers shared by the integration tests and the benchmarks (the one place for them):
//! a simulator on loopback and clients for it; `apiserver`, a Kubernetes API server
//! double; `controller`, the controller loop started and stopped, and `eventually`; `bench`, what the end-to-end benchmarks add; `origin`, the world the ownership
//! property tests start from and judge against; `histories`, the histories with access
//! requests `return_to_origin` runs.
#![allow(dead_code)]

pub mod apiserver;
pub mod bench;
pub mod controller;
pub mod histories;
pub mod origin;
pub mod requests;
pub mod webhook;

use std::time::Duration;

use expensify_operator::expensify::{
    AllowedEndpoints, ClientSettings, Credentials, ExpensifyClient, ExpensifyClients, Pacing,
};
use expensify_operator::simulator::{self, Seed, SimulatorHandle};

pub const ADMIN_ID: &str = "aa_it_admin_acme_example";
pub const ADMIN_SECRET: &str = "simulator-only-not-a-real-secret";
pub const READONLY_ID: &str = "aa_readonly_acme_example";
pub const READONLY_SECRET: &str = "simulator-only-readonly";

/// The seed shipped in `extras/`, so the tests exercise what users run.
pub fn example_seed() -> Seed {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/extras/simulator-seed.yaml");
    Seed::load(std::path::Path::new(path)).expect("the example seed is valid")
}

/// The example seed without the simulator's rate limits.
pub fn unlimited_seed() -> Seed {
    let mut seed = example_seed();
    seed.rate_limits.enabled = false;
    seed
}

pub async fn start(seed: &Seed) -> SimulatorHandle {
    simulator::start(seed, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Settings for tests: no client pacing unless asked, and a request timeout long enough
/// that tokio's paused clock (which jumps to the next timer whenever the runtime parks)
/// does not fire it while a loopback answer is in flight.
pub fn test_settings() -> ClientSettings {
    ClientSettings {
        pacing: Pacing::unlimited(),
        request_timeout: Duration::from_secs(24 * 3600),
        ..ClientSettings::default()
    }
}

/// [`test_settings`] with this simulator as the one allowed endpoint.
pub fn sim_settings(sim: &SimulatorHandle) -> ClientSettings {
    allowing(sim, test_settings())
}

/// `settings`, with this simulator as the one allowed endpoint.
pub fn allowing(sim: &SimulatorHandle, settings: ClientSettings) -> ClientSettings {
    ClientSettings {
        allowed_endpoints: AllowedEndpoints::only(&sim.endpoint()).unwrap(),
        ..settings
    }
}

/// A client of this simulator; `settings` get the simulator as their allowed endpoint.
pub fn client_with(
    sim: &SimulatorHandle,
    settings: ClientSettings,
    id: &str,
    secret: &str,
) -> ExpensifyClient {
    ExpensifyClients::new(allowing(sim, settings))
        .unwrap()
        .client(&sim.endpoint(), Credentials::new(id, secret).unwrap())
        .unwrap()
}

pub fn admin_client(sim: &SimulatorHandle) -> ExpensifyClient {
    client_with(sim, test_settings(), ADMIN_ID, ADMIN_SECRET)
}

/// A manifest directory in a temporary folder, pointed at a simulator.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
}

impl Repo {
    pub fn new(sim: &SimulatorHandle) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            endpoint: sim.endpoint(),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }

    /// The example connector, with its endpoint on the simulator and extra spec lines.
    pub fn connector(&self, extra: &str) {
        self.write(
            "connector.yaml",
            &format!(
                "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {{name: acme, namespace: finance}}\nspec:\n  credentialsSecretRef: {{name: expensify-credentials}}\n  endpoint: {}\n  adminEmail: it-admin@acme.example\n  protectedEmails: [ceo@acme.example, cfo@acme.example]\n  allowedNamespaces: [engineering]\n{extra}",
                self.endpoint
            ),
        );
    }

    /// A PolicyAccess in `finance` on policy `policy_id`.
    pub fn access(&self, name: &str, policy_id: &str, mode: &str, members: &str) {
        self.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: {name}, namespace: finance}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"{policy_id}\"}}\n  mode: {mode}\n  members:\n{members}"
            ),
        );
    }

    /// File mode over this directory with the admin credentials and fast retries.
    pub fn mode(&self) -> expensify_operator::files::FileMode {
        self.mode_with(ADMIN_SECRET)
    }

    pub fn mode_with(&self, secret: &str) -> expensify_operator::files::FileMode {
        use expensify_operator::expensify::RetryPolicy;
        let settings = ClientSettings {
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                rate_limited_backoff: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            request_timeout: Duration::from_secs(10),
            allowed_endpoints: AllowedEndpoints::only(&self.endpoint).unwrap(),
            ..test_settings()
        };
        expensify_operator::files::FileMode {
            dir: self.path().to_path_buf(),
            status_dir: expensify_operator::files::StatusDir::new(
                self.path().join(".expensify-status"),
            ),
            credentials: expensify_operator::files::CredentialSource::Fixed(
                Credentials::new(ADMIN_ID, secret).unwrap(),
            ),
            clients: std::sync::Arc::new(ExpensifyClients::new(settings).unwrap()),
            endpoint_override: None,
            strict: false,
            notifications: None,
        }
    }
}

/// `(email, role)` of a policy's roster in the simulator, sorted.
pub fn roster(sim: &SimulatorHandle, policy_id: &str) -> Vec<(String, String)> {
    let policies = sim.state().policies();
    let policy = policies
        .iter()
        .find(|p| p.id == policy_id)
        .expect("policy exists");
    let mut people: Vec<(String, String)> = policy
        .employees
        .iter()
        .map(|e| (e.email.clone(), e.role.to_string()))
        .collect();
    people.sort();
    people
}

pub fn updates(sim: &SimulatorHandle) -> u64 {
    sim.state()
        .counters()
        .by_job
        .get("update/employees")
        .copied()
        .unwrap_or(0)
}

pub const FINANCE: &str = "F1E2D3C4B5A69788";
pub const ENGINEERING: &str = "0A1B2C3D4E5F6071";
pub const CONTRACTORS: &str = "C0FFEE0000000001";

/// A loopback listener standing in for an attacker's server: it counts the connections
/// it gets and never answers. The allowlist tests assert it got none.
pub struct Attacker {
    pub endpoint: String,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Attacker {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Self {
            endpoint: format!("http://{addr}/Integration-Server/ExpensifyIntegrations"),
            connections,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The binary under test, with the admin credentials in its environment (`secret` as the
/// partnerUserSecret), `allowed` (a simulator's endpoint) as its one allowed endpoint, no
/// colours and no inherited log filter; killed when dropped. Status files are written
/// unsigned (`EXPENSIFY_UNSIGNED_STATUS`) unless a test gives a signing key.
pub fn binary(allowed: &str, args: &[&str], secret: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_expensify-operator"));
    command
        .args(args)
        .env("EXPENSIFY_UNSIGNED_STATUS", "true")
        .env("EXPENSIFY_ALLOWED_ENDPOINTS", allowed)
        .env("EXPENSIFY_PARTNER_USER_ID", ADMIN_ID)
        .env("EXPENSIFY_PARTNER_USER_SECRET", secret)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        // Never a terminal: `apply` would ask before writing.
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// Everything a finished command printed, stdout then stderr.
pub fn printed(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A repository whose connector points at `endpoint`, with one PolicyAccess asking for one
/// grant the simulator's seed does not have yet: two manifest files.
pub fn repo_with_a_pending_grant(sim: &SimulatorHandle, endpoint: &str) -> Repo {
    let mut repo = Repo::new(sim);
    repo.endpoint = endpoint.to_string();
    repo.connector("");
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example, role: auditor}\n",
    );
    repo
}

/// A secrets directory holding a status signing key at its documented place
/// (`expensify-status-key/key`).
pub fn secrets_with_status_key() -> tempfile::TempDir {
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().join("expensify-status-key");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("key"),
        "a-test-key-of-more-than-thirty-two-bytes-0123456789\n",
    )
    .unwrap();
    secrets
}

/// The binary with the status signing key of `secrets` (status files signed and
/// verified), output captured.
pub async fn signed_binary(
    sim: &SimulatorHandle,
    secrets: &tempfile::TempDir,
    args: &[&str],
) -> std::process::Output {
    let mut args = args.to_vec();
    args.extend(["--secrets-dir", secrets.path().to_str().unwrap()]);
    binary(&sim.endpoint(), &args, ADMIN_SECRET)
        .env_remove("EXPENSIFY_UNSIGNED_STATUS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap()
}
