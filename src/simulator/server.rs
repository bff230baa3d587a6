//! The simulator's HTTP side: the Integration Server path and the admin paths, on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::faults::FaultConfig;
use super::seed::Seed;
use super::state::{HostileAnswer, Outcome, SimState};

/// The path Expensify serves every job on.
pub const ENDPOINT_PATH: &str = "/Integration-Server/ExpensifyIntegrations";

/// Largest request body accepted (a 10,000-record feed is about 1.5 MiB).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartSimulatorError {
    #[error("the simulator listens on loopback only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the seed has {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
    InvalidSeed(Vec<String>),
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct SimulatorHandle {
    addr: SocketAddr,
    state: Arc<Mutex<SimState>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Integration Server URL to give a client or a connector's `spec.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{ENDPOINT_PATH}", self.addr)
    }

    /// The admin base URL (`/admin/requests`, `/admin/counters`, …).
    pub fn admin_url(&self) -> String {
        format!("http://{}/admin", self.addr)
    }

    /// Direct access to the simulated service, for tests in the same process.
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.state)
    }

    /// Stops accepting connections and closes open ones.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(state: &Mutex<SimState>) -> MutexGuard<'_, SimState> {
    // A panic while holding the lock leaves consistent data (each handler finishes its
    // mutation before returning), so carry on rather than poison every later request.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts a simulator seeded with `seed` on `listen` (port 0 picks a free port).
pub async fn start(
    seed: &Seed,
    listen: SocketAddr,
) -> Result<SimulatorHandle, StartSimulatorError> {
    if !listen.ip().is_loopback() {
        return Err(StartSimulatorError::NotLoopback(listen));
    }
    let problems = seed.problems();
    if !problems.is_empty() {
        return Err(StartSimulatorError::InvalidSeed(problems));
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartSimulatorError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartSimulatorError::Bind {
            addr: listen,
            source,
        })?;
    let state = Arc::new(Mutex::new(SimState::from_seed(seed)));
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let task = tokio::spawn(serve(listener, state.clone(), shutdown_rx));
    Ok(SimulatorHandle {
        addr,
        state,
        shutdown: Some(shutdown_tx),
        task: Some(task),
    })
}

async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<SimState>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| route(request, state.clone()));
                        // An error here is a connection the simulator dropped on purpose,
                        // or a client that went away: nothing to report.
                        if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                            debug!(error = %e, "simulator connection closed");
                        }
                    });
                }
                Err(e) => warn!(error = %e, "simulator accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

/// Returned to hyper to make it close the connection without an answer.
#[derive(Debug)]
struct DroppedOnPurpose;

impl std::fmt::Display for DroppedOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedOnPurpose {}

type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

async fn route(
    request: Request<Incoming>,
    state: Arc<Mutex<SimState>>,
) -> Result<HttpResponse, DroppedOnPurpose> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = match Limited::new(request.into_body(), BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body: {e}"),
            ));
        }
    };
    match (method, path.as_str()) {
        (Method::POST, ENDPOINT_PATH) => {
            // A slow path: the request reaches the service (and its rate windows) late.
            let accept_delay = lock(&state).accept_delay();
            if !accept_delay.is_zero() {
                tokio::time::sleep(accept_delay).await;
            }
            let (outcome, latency) = {
                let mut state = lock(&state);
                (state.receive(&body, Instant::now()), state.latency())
            };
            let stall = match &outcome {
                Outcome::Stall(_, stall) => *stall,
                _ => std::time::Duration::ZERO,
            };
            let delay = latency.saturating_add(stall);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match outcome {
                Outcome::Respond(answer) | Outcome::Stall(answer, _) => Ok(Response::builder()
                    .status(answer.status)
                    // Expensify labels JSON as text/plain for most jobs; clients must not care.
                    .header("content-type", "text/plain;charset=utf-8")
                    .body(full(answer.body))
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "bad status"))),
                Outcome::Drop => Err(DroppedOnPurpose),
                Outcome::Hostile(answer) => Ok(hostile(answer)),
            }
        }
        (_, ENDPOINT_PATH) => Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "HTTP Status 405 - Method Not Allowed",
        )),
        (method, path) if path.starts_with("/admin/") => Ok(admin(&method, path, &body, &state)),
        _ => Ok(text(StatusCode::NOT_FOUND, "HTTP Status 404 - Not Found")),
    }
}

fn admin(method: &Method, path: &str, body: &[u8], state: &Mutex<SimState>) -> HttpResponse {
    let mut state = lock(state);
    match (method, path) {
        (&Method::GET, "/admin/requests") => json(StatusCode::OK, state.requests()),
        (&Method::GET, "/admin/counters") => json(StatusCode::OK, state.counters()),
        (&Method::GET, "/admin/state") => json(StatusCode::OK, &state.policies()),
        (&Method::GET, "/admin/faults") => json(StatusCode::OK, state.faults()),
        (&Method::PUT, "/admin/faults") => match serde_json::from_slice::<FaultConfig>(body) {
            Ok(config) if config.problems().is_empty() => {
                state.set_faults(config);
                json(StatusCode::OK, state.faults())
            }
            Ok(config) => text(StatusCode::BAD_REQUEST, &config.problems().join("\n")),
            Err(e) => text(
                StatusCode::BAD_REQUEST,
                &format!("fault configuration: {e}"),
            ),
        },
        (&Method::POST, "/admin/reset") => {
            state.reset_log();
            json(StatusCode::OK, state.counters())
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "unknown admin path; see the README for the admin endpoints",
        ),
    }
}

fn full(body: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    Full::new(body.into()).boxed()
}

/// Answers no real server gives: they test that the client stays bounded.
fn hostile(answer: HostileAnswer) -> HttpResponse {
    let builder = Response::builder()
        .status(answer.status())
        .header("content-type", "text/plain;charset=utf-8");
    let response = match answer {
        HostileAnswer::RetryAfter(value) => builder.header("retry-after", value).body(full(
            r#"{"responseCode":429,"responseMessage":"Too many requests"}"#,
        )),
        // The stream ends when the client goes away and hyper drops it.
        HostileAnswer::EndlessBody => builder.body({
            static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];
            StreamBody::new(futures::stream::repeat_with(|| {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&SPACES)))
            }))
            .boxed()
        }),
        HostileAnswer::SlowDrip(interval) => {
            builder.body(StreamBody::new(futures::stream::unfold(interval, drip)).boxed())
        }
    };
    response.unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "bad fault header"))
}

async fn drip(interval: Duration) -> Option<(Result<Frame<Bytes>, Infallible>, Duration)> {
    tokio::time::sleep(interval).await;
    Some((Ok(Frame::data(Bytes::from_static(b" "))), interval))
}

fn json(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(full(body))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn text(status: StatusCode, message: &str) -> HttpResponse {
    let mut response = Response::new(full(message.to_string()));
    *response.status_mut() = status;
    response
}
