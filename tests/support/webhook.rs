//! A webhook receiver on loopback for the notification tests: it records each POST's
//! JSON body and answers as scripted (a status, or hanging until released), then 200.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// No answer until [`Webhook::release`].
    Hang,
}

#[derive(Default)]
struct Seen {
    connections: usize,
    bodies: Vec<serde_json::Value>,
    answered: usize,
}

pub struct Webhook {
    /// `http://127.0.0.1:PORT/`: the prefix to allow.
    pub prefix: String,
    /// The URL to put in the Secret; its last segment, [`Webhook::TOKEN`], is what must
    /// never be shown.
    pub url: String,
    seen: Arc<Mutex<Seen>>,
    release: Arc<tokio::sync::Notify>,
    received: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub const TOKEN: &'static str = "xoxb-webhook-token-do-not-show";

    pub async fn start(script: Vec<Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let release = Arc::new(tokio::sync::Notify::new());
        let received = Arc::new(tokio::sync::Notify::new());
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (seen_in, release_in, received_in) = (seen.clone(), release.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                seen_in.lock().unwrap().connections += 1;
                let (seen, release, received, script) = (
                    seen_in.clone(),
                    release_in.clone(),
                    received_in.clone(),
                    script.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (seen, release, received, script) = (
                            seen.clone(),
                            release.clone(),
                            received.clone(),
                            script.clone(),
                        );
                        async move {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let json = serde_json::from_slice(&body).unwrap_or_default();
                            seen.lock().unwrap().bodies.push(json);
                            received.notify_waiters();
                            let answer = script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or(Answer::Status(200));
                            let status = match answer {
                                Answer::Status(status) => status,
                                Answer::Hang => {
                                    release.notified().await;
                                    200
                                }
                            };
                            seen.lock().unwrap().answered += 1;
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            prefix: format!("http://{addr}/"),
            url: format!("http://{addr}/services/T0/B0/{}", Self::TOKEN),
            seen,
            release,
            received,
            task,
        }
    }

    /// The JSON bodies received, in order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap().bodies.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.seen.lock().unwrap().answered
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.received.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.seen.lock().unwrap().bodies.len() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Lets the hanging requests answer.
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    /// A secrets directory holding the URL as Secret `notify`, key `url`.
    pub fn secrets_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("notify")).unwrap();
        std::fs::write(dir.path().join("notify/url"), &self.url).unwrap();
        dir
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
