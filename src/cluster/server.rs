//! `/metrics`, `/healthz` and `/readyz` on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::metrics::Metrics;

/// Readiness: the watches have listed everything once.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for metrics and probes: {source}")]
pub struct ServeError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds now (returning the address bound, for port 0); serves until `stop` turns true.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    mut stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError { addr, source })?;
    Ok((
        bound,
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.changed() => break,
                };
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!(error = %e, "accepting a probe connection failed");
                        continue;
                    }
                };
                let metrics = metrics.clone();
                let readiness = readiness.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        let readiness = readiness.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(match request.uri().path() {
                                "/metrics" => respond(
                                    StatusCode::OK,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                    metrics.encode(),
                                ),
                                "/healthz" | "/livez" => {
                                    respond(StatusCode::OK, "text/plain", "ok\n".into())
                                }
                                "/readyz" if readiness.is_ready() => {
                                    respond(StatusCode::OK, "text/plain", "ready\n".into())
                                }
                                "/readyz" => respond(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "text/plain",
                                    "watches not synced yet\n".into(),
                                ),
                                _ => respond(
                                    StatusCode::NOT_FOUND,
                                    "text/plain",
                                    "not found\n".into(),
                                ),
                            })
                        }
                    });
                    if let Err(e) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        debug!(error = %e, "probe connection closed");
                    }
                });
            }
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    #[tokio::test]
    async fn serves_metrics_and_probes() {
        let metrics = Arc::new(Metrics::default());
        let readiness = Arc::new(Readiness::default());
        let (_stop_tx, stop) = watch::channel(false);
        let (addr, _task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            readiness.clone(),
            stop,
        )
        .await
        .unwrap();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(
            get(addr, "/readyz").await.0,
            503,
            "not ready before the watches synced"
        );
        readiness.set_ready();
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let report = crate::sync::SyncReport {
            connector: crate::reconcile::ObjectKey::new("finance", "acme"),
            connector_status: Default::default(),
            plan: Default::default(),
            results: Vec::new(),
            statuses: Default::default(),
            finished_deletions: Vec::new(),
            observed: Default::default(),
            refused: None,
            save_order: Vec::new(),
            notifications: Vec::new(),
            calls: Default::default(),
            request_statuses: Default::default(),
            decision_statuses: Default::default(),
            finished_request_deletions: Vec::new(),
            pending_deadline: None,
        };
        metrics.record("finance/acme", &report, 0.2);
        let (code, text) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        for name in [
            "expensify_operator_syncs_total",
            "expensify_operator_sync_duration_seconds",
            "expensify_operator_expensify_calls_total",
            "expensify_operator_notifications_dropped_total",
            "expensify_operator_blocked_objects",
            "expensify_operator_drift",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert_eq!(get(addr, "/nope").await.0, 404);
    }
}
