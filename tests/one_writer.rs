//! One writer per status directory, and a `watch` that only wakes for real changes: the
//! real binary, two processes at a time, against the simulator.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;
use tokio::process::{Child, Command};

fn command(endpoint: &str, args: &[&str]) -> Command {
    binary(endpoint, args, ADMIN_SECRET)
}

/// `watch` on `repo`, with pacing fast enough for a test (the simulator enforces none).
fn spawn_watch(repo: &Repo) -> Child {
    command(
        &repo.endpoint,
        &["watch", repo.path().to_str().unwrap(), "--pacing", "100/1s"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

fn requests(sim: &expensify_operator::simulator::SimulatorHandle) -> u64 {
    sim.state().counters().requests
}

/// The request count once the watch's sync is over (the grant shows before its re-read
/// is made): the same count twice, 300 ms apart. An idle watch calls nothing.
async fn settled_requests(sim: &expensify_operator::simulator::SimulatorHandle) -> u64 {
    let mut last = requests(sim);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = requests(sim);
        if now == last {
            return now;
        }
        last = now;
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_writer_waits_then_fails_naming_the_first() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let mut watch = spawn_watch(&repo);
    until("the watch's first sync", || {
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "new@acme.example")
    })
    .await;
    let watch_pid = watch.id().unwrap();
    let before = settled_requests(&sim).await;

    let started = std::time::Instant::now();
    let apply = command(
        &repo.endpoint,
        &[
            "apply",
            repo.path().to_str().unwrap(),
            "--lock-timeout",
            "700ms",
        ],
    )
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&apply.stderr);
    assert_eq!(apply.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() >= Duration::from_millis(700), "it waited");
    assert!(
        stderr.contains("`watch` (pid ") && stderr.contains(&format!("pid {watch_pid} ")),
        "names the holder: {stderr}"
    );
    assert!(stderr.contains("--lock-timeout"), "{stderr}");
    assert_eq!(requests(&sim), before, "the refused apply called nothing");

    let plan = command(
        &repo.endpoint,
        &[
            "plan",
            repo.path().to_str().unwrap(),
            "--lock-timeout",
            "0s",
        ],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(1),
        "plan waits for the lock too: {}",
        String::from_utf8_lossy(&plan.stderr)
    );

    watch.kill().await.unwrap();
    // The lock dies with its holder: no stale lock file blocks the next run.
    let apply = command(
        &repo.endpoint,
        &[
            "apply",
            repo.path().to_str().unwrap(),
            "--lock-timeout",
            "5s",
        ],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_lock_timeout_is_a_usage_error() {
    let output = command(
        "https://unused.example/",
        &["apply", ".", "--lock-timeout", "soon"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--lock-timeout"));
}

/// Its own reads of the manifests (and its status writes) must not wake `watch`: with
/// nothing changing, the first sync's calls are all it makes.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_watch_makes_no_calls_after_the_first_sync() {
    let sim = start(&unlimited_seed()).await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let mut watch = spawn_watch(&repo);
    until("the first sync's status", || {
        repo.path()
            .join(".expensify-status/policyaccess/finance/finance.yaml")
            .exists()
    })
    .await;
    // Past the debounce of any event the first pass caused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_first = requests(&sim);
    assert!(after_first > 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        requests(&sim),
        after_first,
        "watch woke itself with nothing changing"
    );

    // A real edit still wakes it.
    repo.access(
        "finance",
        FINANCE,
        "Additive",
        "    - {email: new@acme.example, role: auditor}\n    - {email: second@acme.example}\n",
    );
    until("the sync after the edit", || {
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "second@acme.example")
    })
    .await;
    watch.kill().await.unwrap();
}
