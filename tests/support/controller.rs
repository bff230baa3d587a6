//! The controller loop in a test: started on a Kubernetes client (the API double's or a
//! real cluster's), stopped on a channel; and `eventually`, the wait every cluster test uses.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use expensify_operator::cluster::{self, ControllerSettings, RunControllerError};
use expensify_operator::expensify::ExpensifyClients;
use expensify_operator::simulator::SimulatorHandle;

/// A running controller: send on the channel to stop it.
pub type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), RunControllerError>>,
);

/// Starts the controller loop with these Expensify clients.
pub fn run_controller(
    client: &kube::Client,
    settings: ControllerSettings,
    expensify: Arc<ExpensifyClients>,
) -> Running {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(cluster::run(
        client.clone(),
        settings,
        expensify,
        async move {
            let _ = stop_rx.await;
        },
    ));
    (stop_tx, task)
}

/// Starts the controller loop, its Expensify on the simulator.
pub fn spawn_controller(
    client: &kube::Client,
    sim: &SimulatorHandle,
    settings: ControllerSettings,
) -> Running {
    let expensify = Arc::new(ExpensifyClients::new(super::sim_settings(sim)).unwrap());
    run_controller(client, settings, expensify)
}

/// Waits (30 s at most) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
