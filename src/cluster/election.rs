//! Leader election: the Lease, the terms it gives this replica, and its hand-over at
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerError};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::context::Context;
use super::leadership::{LeadershipTerms, LeaseRenewals};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

pub(super) type LeaseTask = tokio::task::JoinHandle<kube_lease_manager::Result<LeaseManager>>;

/// Leader election as started: the lease manager's "leading" flag, its task, and the
/// renewals seen. Without election: leading from the start, no task, no renewals.
pub(super) struct Election {
    pub leader: watch::Receiver<bool>,
    pub task: Option<LeaseTask>,
    pub renewals: Option<LeaseRenewals>,
}

/// Starts leader election when asked.
pub(super) async fn elect(
    client: &Client,
    lease: Option<&LeaseSettings>,
) -> Result<Election, LeaseManagerError> {
    let Some(lease) = lease else {
        return Ok(Election {
            leader: watch::channel(true).1,
            task: None,
            renewals: None,
        });
    };
    // The lease manager counts in whole seconds.
    let seconds = lease.duration.as_secs().max(1);
    let renewals = LeaseRenewals::new(Duration::from_secs(seconds));
    let lease_client = renewals.observe(client.clone(), &lease.namespace, &lease.name);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(lease_client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(seconds)
        .with_grace(seconds.max(2) / 2)
        .build()
        .await?;
    let (leader, task) = manager.watch().await;
    info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election on; waiting for the lease");
    Ok(Election {
        leader,
        task: Some(task),
        renewals: Some(renewals),
    })
}

/// The Lease's `leaseTransitions` (the lease manager counts each new holder; the first
/// holder of a new Lease makes it 1); `None` when the Lease cannot be read.
async fn lease_transitions(client: &Client, lease: &LeaseSettings) -> Option<i32> {
    match Api::<Lease>::namespaced(client.clone(), &lease.namespace)
        .get(&lease.name)
        .await
    {
        Ok(current) => Some(
            current
                .spec
                .and_then(|spec| spec.lease_transitions)
                .unwrap_or(0),
        ),
        Err(e) => {
            warn!(error = %e, "the Lease could not be read; assuming another replica led before");
            None
        }
    }
}

/// Whether a term starting at `transitions` may follow another replica's term: the Lease
/// changed hands before (more than its first holder), and not only before this replica's
/// last term (`last`: the transitions seen then), whose own calls its pacing still counts.
/// A Lease that cannot be read may have.
fn followed_another_term(transitions: Option<i32>, last: Option<i32>) -> bool {
    transitions.is_none_or(|now| now > 1 && last != Some(now))
}

/// Follows the lease manager and the renewals: a term lasts while the manager says this
/// replica holds the Lease and its last renewal is recent enough. When either fails the
/// term ends at once (every write after it is refused, mid-sync included); a new term
/// syncs everything once. A term that follows another holder's first waits one rate
/// window before calling Expensify: the old leader's last calls still count there.
pub(super) fn follow_leadership(
    mut leader: watch::Receiver<bool>,
    renewals: Option<LeaseRenewals>,
    terms: LeadershipTerms,
    ctx: Arc<Context>,
    lease: Option<LeaseSettings>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leading = terms.leading();
        // `leaseTransitions` when this replica's last term started.
        let mut last_term = None;
        loop {
            let held = *leader.borrow_and_update();
            let deadline = renewals.as_ref().and_then(LeaseRenewals::deadline);
            let in_time = renewals.as_ref().is_none_or(|r| r.in_time(Instant::now()));
            if (held && in_time) != leading {
                leading = held && in_time;
                // Forgotten before the term starts: no sync of the new term reads what
                // the last one wrote.
                if leading {
                    ctx.forget_all();
                    let transitions = match &lease {
                        Some(lease) => Some(lease_transitions(&ctx.client, lease).await),
                        None => None,
                    };
                    if let Some(transitions) = transitions
                        && followed_another_term(transitions, last_term)
                    {
                        info!(
                            "another replica led before this term: no Expensify call for one rate window, its last calls still count there"
                        );
                        ctx.expensify.hold_after_handover();
                    }
                    last_term = transitions.flatten();
                }
                terms.set(leading);
                if leading {
                    info!("this replica holds the lease now; syncing everything once");
                } else if held {
                    warn!("the lease was not renewed in time; no writes until it is");
                } else {
                    warn!("the lease is lost; no more writes from this replica");
                }
            }
            let expiry = async {
                match deadline {
                    Some(deadline) if leading => tokio::time::sleep_until(deadline).await,
                    _ => std::future::pending().await,
                }
            };
            let renewed = async {
                match &renewals {
                    Some(renewals) => renewals.renewed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { break },
                () = renewed => {}
                () = expiry => {}
            }
        }
    })
}

/// With every receiver gone the lease task returns its manager: hand the lease over now
/// instead of letting it expire.
pub(super) async fn release_lease(task: Option<LeaseTask>) {
    let Some(task) = task else {
        return;
    };
    if let Ok(Ok(Ok(manager))) = tokio::time::timeout(Duration::from_secs(5), task).await {
        if let Err(e) = manager.release().await {
            warn!(error = %e, "releasing the lease failed; it expires by itself");
        }
    } else {
        warn!("the lease could not be released; it expires by itself");
    }
}

#[cfg(test)]
mod tests {
    use super::followed_another_term;

    #[test]
    fn only_a_term_after_another_holder_waits_for_the_rate_window() {
        // The first holder of a new Lease: nobody called Expensify before it.
        assert!(!followed_another_term(Some(1), None));
        assert!(!followed_another_term(Some(0), None));
        // Another replica held it before this process's first term.
        assert!(followed_another_term(Some(2), None));
        // This replica's term restarted and nobody held the Lease in between
        // (review 5: the hold repeated at every restart, forever after one hand-over).
        assert!(!followed_another_term(Some(2), Some(2)));
        // Someone held it in between.
        assert!(followed_another_term(Some(4), Some(2)));
        // The Lease cannot be read: it may have changed hands.
        assert!(followed_another_term(None, Some(2)));
    }
}
