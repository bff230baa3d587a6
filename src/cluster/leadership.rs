//! Leadership as the writes see it: one cancellation token per term of holding the Lease,
//! cancelled the moment the lease manager reports the Lease lost, and checked right before
//! every write (status patches and finalizer changes through [`guarded_client`]; the
//! Expensify writes through a [`LeadershipGuard`] the executor holds). Checking only when a
//! reconcile starts let an old leader keep writing for the rest of a sync after another
//! replica had taken over.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request};
use kube::client::Body;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A write refused because this replica no longer holds (or never held) the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this replica does not hold the leader lease (lost mid-sync?): the write is left to the leader"
)]
pub struct LeadershipLost;

/// Starts and ends terms; held by whoever follows the lease manager.
#[derive(Debug)]
pub struct LeadershipTerms {
    term: watch::Sender<Option<CancellationToken>>,
}

impl LeadershipTerms {
    /// Whether a term is on.
    pub fn leading(&self) -> bool {
        self.term.borrow().is_some()
    }

    /// Records whether this replica leads: a new term (and token) when it starts to, the
    /// current term's token cancelled when it stops.
    pub fn set(&self, leading: bool) {
        self.term
            .send_if_modified(|term| match (leading, term.as_ref()) {
                (true, None) => {
                    *term = Some(CancellationToken::new());
                    true
                }
                (false, Some(current)) => {
                    current.cancel();
                    *term = None;
                    true
                }
                _ => false,
            });
    }
}

/// This replica's leadership, cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct Leadership {
    term: watch::Receiver<Option<CancellationToken>>,
}

/// The leadership and its terms, leading or not to begin with.
pub fn leadership(leading: bool) -> (LeadershipTerms, Leadership) {
    let (term, receiver) = watch::channel(None);
    let terms = LeadershipTerms { term };
    terms.set(leading);
    (terms, Leadership { term: receiver })
}

impl Leadership {
    /// Always leading: without leader election this replica is the only writer. (The terms
    /// are dropped; the one term never ends.)
    pub fn always() -> Leadership {
        leadership(true).1
    }

    pub fn is_leading(&self) -> bool {
        self.term
            .borrow()
            .as_ref()
            .is_some_and(|token| !token.is_cancelled())
    }

    /// Ok while this replica leads right now.
    pub fn ensure_leading(&self) -> Result<(), LeadershipLost> {
        if self.is_leading() {
            Ok(())
        } else {
            Err(LeadershipLost)
        }
    }

    /// A guard of the current term, to take when a sync starts and check before each of its
    /// writes: it fails from the moment this term ends, even if a later term has begun
    /// (the new term's first sync starts over from what the cluster says then).
    pub fn guard(&self) -> Result<LeadershipGuard, LeadershipLost> {
        match self.term.borrow().as_ref() {
            Some(token) if !token.is_cancelled() => Ok(LeadershipGuard {
                token: token.clone(),
            }),
            _ => Err(LeadershipLost),
        }
    }
}

/// One leadership term: clone it into a closure or async hook and check it right before a
/// write; or await [`LeadershipGuard::lost`] to abandon work the moment the term ends.
#[derive(Debug, Clone)]
pub struct LeadershipGuard {
    token: CancellationToken,
}

impl LeadershipGuard {
    /// Ok while the term this guard was taken in lasts.
    pub fn ensure_leading(&self) -> Result<(), LeadershipLost> {
        if self.token.is_cancelled() {
            Err(LeadershipLost)
        } else {
            Ok(())
        }
    }

    /// Resolves when the term ends.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// The term's token itself, e.g. for `CancellationToken::run_until_cancelled`.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// The Expensify client asks the sync's term before every write it sends: each updater
/// batch, each retry, and after each pacing wait.
impl crate::expensify::WriteGate for LeadershipGuard {
    fn may_write(&self) -> Result<(), String> {
        self.ensure_leading().map_err(|lost| lost.to_string())
    }
}

/// The API group whose objects a replica writes only while it leads.
const GUARDED_PREFIX: &str = "/apis/expensify.gitops.dev/";

/// Whether `request` writes one of our objects (status patch, finalizer change, ...).
fn is_guarded_write<B>(request: &Request<B>) -> bool {
    !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && request.uri().path().starts_with(GUARDED_PREFIX)
}

/// `client`, refusing every write to an expensify.gitops.dev object while this replica
/// does not lead (the check is made as the request leaves, after any wait for a rate limit
/// or a slow sync). Reads, watches, Secrets, Events and the Lease itself pass untouched.
/// A refused write fails as `kube::Error::Service(LeadershipLost)`.
pub fn guarded_client(client: kube::Client, leadership: Leadership) -> kube::Client {
    let default_namespace = client.default_namespace().to_string();
    let service = tower::service_fn(move |request: Request<Body>| {
        let (client, leadership) = (client.clone(), leadership.clone());
        async move {
            if is_guarded_write(&request) {
                leadership.ensure_leading()?;
            }
            client
                .send(request)
                .await
                .map_err(|e| -> tower::BoxError { Box::new(e) })
        }
    });
    kube::Client::new(service, default_namespace)
}

/// When this replica last renewed the Lease for sure: the start of its last successful
/// write to it. The lease manager reports a lost Lease only once it reads another holder;
/// when it cannot reach the API server at all it reports nothing, while another replica
/// takes over as soon as the Lease expires. So a term also ends at the renewal deadline,
/// before the Lease can expire, and a renewal after it starts a new term.
#[derive(Debug, Clone)]
pub struct LeaseRenewals {
    last: Arc<Mutex<Option<Instant>>>,
    renewed: Arc<Notify>,
    /// How long after a renewal began this replica may still write.
    deadline_after: Duration,
}

impl LeaseRenewals {
    /// For a Lease of `duration`: the deadline is four fifths of it after a renewal began,
    /// leaving a fifth for clock skew between replicas.
    pub fn new(duration: Duration) -> Self {
        Self {
            last: Arc::new(Mutex::new(None)),
            renewed: Arc::new(Notify::new()),
            deadline_after: duration.mul_f64(0.8),
        }
    }

    fn record(&self, started: Instant) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|previous| previous < started) {
            *last = Some(started);
        }
        drop(last);
        self.renewed.notify_waiters();
    }

    /// Until when the last renewal lets this replica write; `None` before any.
    pub fn deadline(&self) -> Option<Instant> {
        let last = *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.map(|at| at + self.deadline_after)
    }

    /// Whether the last renewal still lets this replica write at `now`.
    pub fn in_time(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| deadline > now)
    }

    /// Resolves at the next successful renewal.
    pub async fn renewed(&self) {
        self.renewed.notified().await;
    }

    /// `client` for the lease manager: every successful write to the Lease `name` in
    /// `namespace` is recorded as a renewal, from the moment it was sent.
    pub fn observe(&self, client: kube::Client, namespace: &str, name: &str) -> kube::Client {
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}");
        let default_namespace = client.default_namespace().to_string();
        let renewals = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let (client, renewals) = (client.clone(), renewals.clone());
            let renewal = request.method() == Method::PATCH && request.uri().path() == path;
            async move {
                let started = Instant::now();
                let response = client
                    .send(request)
                    .await
                    .map_err(|e| -> tower::BoxError { Box::new(e) })?;
                if renewal && response.status().is_success() {
                    renewals.record(started);
                }
                Ok::<_, tower::BoxError>(response)
            }
        });
        kube::Client::new(service, default_namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_fails_from_the_end_of_its_term_even_when_a_new_one_begins() {
        let (terms, leadership) = leadership(false);
        assert_eq!(leadership.ensure_leading(), Err(LeadershipLost));
        assert!(leadership.guard().is_err(), "no term, no guard");

        terms.set(true);
        let first = leadership.guard().unwrap();
        let in_closure = first.clone();
        let check = move || in_closure.ensure_leading();
        assert_eq!(check(), Ok(()));
        terms.set(true);
        assert_eq!(first.ensure_leading(), Ok(()), "the same term goes on");

        terms.set(false);
        assert_eq!(first.ensure_leading(), Err(LeadershipLost));
        assert_eq!(check(), Err(LeadershipLost));
        assert_eq!(leadership.ensure_leading(), Err(LeadershipLost));

        terms.set(true);
        assert_eq!(leadership.ensure_leading(), Ok(()));
        assert_eq!(
            first.ensure_leading(),
            Err(LeadershipLost),
            "an old term stays over"
        );
        assert_eq!(leadership.guard().unwrap().ensure_leading(), Ok(()));
    }

    #[test]
    fn a_term_is_the_expensify_client_s_write_gate() {
        use crate::expensify::WriteGate;
        let (terms, leadership) = leadership(true);
        let gate = leadership.guard().unwrap();
        assert_eq!(gate.may_write(), Ok(()));
        terms.set(false);
        terms.set(true);
        let refused = gate.may_write().unwrap_err();
        assert!(refused.contains("leader lease"), "{refused}");
    }

    #[tokio::test]
    async fn lost_resolves_when_the_term_ends() {
        let (terms, leadership) = leadership(true);
        let guard = leadership.guard().unwrap();
        let lost = tokio::spawn(guard.lost());
        tokio::task::yield_now().await;
        assert!(!lost.is_finished());
        terms.set(false);
        tokio::time::timeout(std::time::Duration::from_secs(1), lost)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn without_election_the_replica_always_leads() {
        let leadership = Leadership::always();
        assert!(leadership.is_leading());
        assert!(leadership.guard().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_renewal_deadline_follows_the_latest_renewal() {
        let renewals = LeaseRenewals::new(Duration::from_secs(10));
        assert_eq!(renewals.deadline(), None);
        let first = Instant::now();
        renewals.record(first);
        assert_eq!(renewals.deadline(), Some(first + Duration::from_secs(8)));
        tokio::time::advance(Duration::from_secs(5)).await;
        let waiting = {
            let renewals = renewals.clone();
            tokio::spawn(async move { renewals.renewed().await })
        };
        tokio::task::yield_now().await;
        renewals.record(Instant::now());
        waiting.await.unwrap();
        renewals.record(first);
        assert_eq!(
            renewals.deadline(),
            Some(first + Duration::from_secs(13)),
            "an older answer arriving late does not move it back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_keep_a_replica_in_time_and_a_late_one_brings_it_back() {
        let renewals = LeaseRenewals::new(Duration::from_secs(2));
        assert!(!renewals.in_time(Instant::now()), "no renewal yet");
        renewals.record(Instant::now());
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(renewals.in_time(Instant::now()));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!renewals.in_time(Instant::now()), "past 4/5 of the lease");
        tokio::time::advance(Duration::from_secs(5)).await;
        renewals.record(Instant::now());
        assert!(renewals.in_time(Instant::now()), "renewed again");
    }

    #[test]
    fn only_writes_to_our_objects_are_guarded() {
        let request = |method: Method, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap()
        };
        let status = "/apis/expensify.gitops.dev/v1alpha1/namespaces/f/policyaccesses/t/status";
        assert!(is_guarded_write(&request(Method::PATCH, status)));
        assert!(is_guarded_write(&request(Method::PUT, status)));
        assert!(!is_guarded_write(&request(Method::GET, status)));
        assert!(!is_guarded_write(&request(
            Method::PATCH,
            "/apis/coordination.k8s.io/v1/namespaces/d/leases/l"
        )));
        assert!(!is_guarded_write(&request(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/d/events"
        )));
    }
}
