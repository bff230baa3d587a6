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

/// Binds now; serves until `stop` turns true.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    Ok(tokio::spawn(async move {
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
                            _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
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
    }))
}
