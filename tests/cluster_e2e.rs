//! The real controller loop (watches included) against an API server and the Expensify
//! simulator: apply objects, see Expensify converge and status reach Connected / Synced;
//! edit, rotate the Secret, delete, and see the effects.
//!
//! By default against the in-process API server double (`tests/support/apiserver.rs`). The
//! same scenario runs against a real cluster with `KUBECONFIG` set:
//! `kubectl apply --server-side -f crds/ && cargo test --test cluster_e2e -- --ignored`
//! (kind or k3d will do; it creates and deletes objects in the namespace `expensify-e2e`).
#![allow(
    clippy::needless_pass_by_value,
    reason = "test helpers take json! values"
)]

mod support;
use support::apiserver;

use std::time::Duration;

use base64::Engine;
use expensify_operator::api::{ExpensifyConnector, PolicyAccess};
use expensify_operator::cluster::{self, ControllerSettings};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::controller::{Running, eventually, spawn_controller};
use support::*;

fn secret(namespace: &str, secret: &str) -> Secret {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "expensify-credentials", "namespace": namespace},
        "data": {"partnerUserID": b64(ADMIN_ID), "partnerUserSecret": b64(secret)}
    }))
    .unwrap()
}

fn settings(
    debounce_ms: u64,
    scope: cluster::Scope,
    lease: Option<cluster::LeaseSettings>,
    probes_port: u16,
) -> ControllerSettings {
    ControllerSettings {
        probes_addr: format!("127.0.0.1:{probes_port}").parse().unwrap(),
        lease,
        debounce: Duration::from_millis(debounce_ms),
        scope,
        // The scenario rotates the Secret and expects an immediate re-sync.
        watch_secrets: true,
        admission: Default::default(),
        allowed_webhooks: None,
    }
}

async fn stop_controller((stop_tx, task): Running) {
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the controller stops")
        .unwrap()
        .unwrap();
}

/// The credentials Secret and the connector `acme` on the simulator, in `namespace`.
async fn create_connector(client: &kube::Client, namespace: &str, endpoint: &str) {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret(namespace, ADMIN_SECRET))
        .await
        .unwrap();
    let connector: ExpensifyConnector = serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
        "metadata": {"name": "acme", "namespace": namespace},
        "spec": {"credentialsSecretRef": {"name": "expensify-credentials"}, "endpoint": endpoint, "adminEmail": "it-admin@acme.example"}
    }))
    .unwrap();
    Api::<ExpensifyConnector>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &connector)
        .await
        .unwrap();
}

/// A PolicyAccess `name` in `namespace` on `policy` with these members.
fn access(namespace: &str, name: &str, policy: &str, members: serde_json::Value) -> PolicyAccess {
    serde_json::from_value(json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"connectorRef": {"name": "acme"}, "policy": {"id": policy}, "members": members}
    }))
    .unwrap()
}

async fn scenario(client: kube::Client, namespace: &str) {
    let sim = start(&unlimited_seed()).await;
    let controller = spawn_controller(
        &client,
        &sim,
        settings(200, cluster::Scope::AllNamespaces, None, 0),
    );
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let connectors = Api::<ExpensifyConnector>::namespaced(client.clone(), namespace);
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), namespace);
    create_connector(&client, namespace, &sim.endpoint()).await;
    let team = access(
        namespace,
        "team",
        FINANCE,
        json!([{"email": "new@acme.example", "role": "auditor"}]),
    );
    accesses
        .create(&PostParams::default(), &team)
        .await
        .unwrap();

    let member = |email: &'static str| {
        let sim = &sim;
        move || {
            let found = roster(sim, FINANCE).iter().any(|(e, _)| e == email);
            async move { found }
        }
    };
    eventually("the grant to reach Expensify", member("new@acme.example")).await;
    eventually("the PolicyAccess to be Synced and Ready", || async {
        let Ok(object) = accesses.get("team").await else {
            return false;
        };
        let status = object.status.unwrap_or_default();
        status.phase == expensify_operator::api::AccessPhase::Synced
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            && object
                .metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"expensify.gitops.dev/finalizer".to_string())
    })
    .await;
    eventually("the connector to be Connected", || async {
        connectors
            .get("acme")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| s.phase == expensify_operator::api::ConnectorPhase::Connected)
    })
    .await;

    // Edit: a second member.
    let members = json!({"spec": {"members": [{"email": "new@acme.example", "role": "auditor"}, {"email": "second@acme.example"}]}});
    accesses
        .patch("team", &PatchParams::default(), &Patch::Merge(&members))
        .await
        .unwrap();
    eventually("the edit to reach Expensify", member("second@acme.example")).await;

    // Rotate the Secret to a wrong value, then back: no restart needed.
    let wrong = json!({"data": {"partnerUserSecret": base64::engine::general_purpose::STANDARD.encode("rotated-but-wrong")}});
    secrets
        .patch(
            "expensify-credentials",
            &PatchParams::default(),
            &Patch::Merge(&wrong),
        )
        .await
        .unwrap();
    eventually(
        "the connector to report the rejected credentials",
        || async {
            connectors
                .get("acme")
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| {
                    s.phase == expensify_operator::api::ConnectorPhase::Error
                        && s.conditions
                            .iter()
                            .any(|c| c.reason == "AuthenticationFailed")
                })
        },
    )
    .await;
    let right = json!({"data": {"partnerUserSecret": base64::engine::general_purpose::STANDARD.encode(ADMIN_SECRET)}});
    secrets
        .patch(
            "expensify-credentials",
            &PatchParams::default(),
            &Patch::Merge(&right),
        )
        .await
        .unwrap();
    eventually("the connector to reconnect", || async {
        connectors
            .get("acme")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| s.phase == expensify_operator::api::ConnectorPhase::Connected)
    })
    .await;

    // Delete: what it granted is revoked, then the finalizer lets the deletion finish.
    accesses
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the object to be gone", || async {
        accesses.get_opt("team").await.ok().flatten().is_none()
    })
    .await;
    let people = roster(&sim, FINANCE);
    assert!(
        !people
            .iter()
            .any(|(e, _)| e == "new@acme.example" || e == "second@acme.example"),
        "{people:?}"
    );

    stop_controller(controller).await;
    let _ = connectors.delete("acme", &DeleteParams::default()).await;
    let _ = secrets
        .delete("expensify-credentials", &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_converges_against_the_api_server_double() {
    let double = apiserver::ApiServerDouble::start().await;
    scenario(double.client(), "finance").await;
    let reasons: Vec<String> = double
        .events()
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    for expected in ["Granted", "Revoked"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
}

/// Needs a cluster (`KUBECONFIG`) with the CRDs installed; see the module docs.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes cluster: KUBECONFIG=... cargo test --test cluster_e2e -- --ignored"]
async fn controller_converges_against_a_real_cluster() {
    let client = kube::Client::try_default()
        .await
        .expect("a cluster from KUBECONFIG");
    let namespaces = Api::<Namespace>::all(client.clone());
    if namespaces.get_opt("expensify-e2e").await.unwrap().is_none() {
        let namespace: Namespace = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "expensify-e2e"}}),
        )
        .unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    scenario(client, "expensify-e2e").await;
}

/// Ten objects created in a burst make one sync; a reconcile-requested-at annotation makes
/// one more and is echoed in status; our own status writes make none.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_changes_is_one_sync() {
    let double = apiserver::ApiServerDouble::start().await;
    let client = double.client();
    let sim = start(&unlimited_seed()).await;
    // A namespace list: Roles instead of a ClusterRole, namespaced watches.
    let scope = cluster::Scope::Namespaces(vec!["finance".into(), "sales".into()]);
    let controller = spawn_controller(&client, &sim, settings(500, scope, None, 0));
    let namespace = "finance";
    let connectors = Api::<ExpensifyConnector>::namespaced(client.clone(), namespace);
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), namespace);
    create_connector(&client, namespace, &sim.endpoint()).await;
    eventually("the connector to be Connected", || async {
        connectors
            .get("acme")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| s.phase == expensify_operator::api::ConnectorPhase::Connected)
    })
    .await;
    let lists = || {
        sim.state()
            .counters()
            .by_job
            .get("get/policyList")
            .copied()
            .unwrap_or(0)
    };
    let before = lists();
    for i in 0..10 {
        let object = access(
            namespace,
            &format!("team-{i}"),
            CONTRACTORS,
            json!([{"email": format!("burst{i}@acme.example")}]),
        );
        accesses
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }
    eventually("all ten grants", || async {
        roster(&sim, CONTRACTORS)
            .iter()
            .filter(|(e, _)| e.starts_with("burst"))
            .count()
            == 10
    })
    .await;
    eventually("all ten statuses", || async {
        let list = accesses.list(&Default::default()).await.unwrap();
        list.items
            .iter()
            .filter(|a| {
                a.status
                    .as_ref()
                    .is_some_and(|s| s.phase == expensify_operator::api::AccessPhase::Synced)
            })
            .count()
            == 10
    })
    .await;
    // Let the watch events of our own writes (finalizers, statuses) come and go.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lists() - before, 1, "ten objects in a burst, one sync");

    let from = double.requests_seen().len();
    let annotate = json!({"metadata": {"annotations": {"expensify.gitops.dev/reconcile-requested-at": "2026-11-28T12:00:00Z"}}});
    connectors
        .patch("acme", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    eventually("the requested sync to be echoed", || async {
        connectors
            .get("acme")
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.last_handled_reconcile_at)
            .as_deref()
            == Some("2026-11-28T12:00:00Z")
    })
    .await;
    assert_eq!(
        lists() - before,
        2,
        "the annotation forced exactly one more sync"
    );
    // A sync with nothing to change reads the watch cache (no LIST) and writes no
    // PolicyAccess status: only the connector's, which echoes the annotation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = double.requests_seen();
    let made: Vec<&(String, String)> = seen[from..]
        .iter()
        .filter(|(method, uri)| {
            let listed =
                method == "GET" && uri.contains("/policyaccesses") && !uri.contains("watch=");
            let patched = method == "PATCH" && uri.contains("/policyaccesses/");
            listed || patched
        })
        .collect();
    assert!(made.is_empty(), "a steady-state sync made {made:?}");

    stop_controller(controller).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn syncs_reported(port: u16) -> u64 {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("expensify_operator_syncs_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// With leader election, a standby replica watches but never syncs; when the leader stops
/// it hands the lease over and the standby carries on.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_syncs_and_a_standby_takes_over() {
    let double = apiserver::ApiServerDouble::start().await;
    let client = double.client();
    let sim = start(&unlimited_seed()).await;
    let replica = |identity: &str, port: u16| {
        let lease = cluster::LeaseSettings {
            name: "expensify-operator".into(),
            namespace: "default".into(),
            identity: identity.into(),
            duration: Duration::from_secs(2),
        };
        spawn_controller(
            &client,
            &sim,
            settings(200, cluster::Scope::AllNamespaces, Some(lease), port),
        )
    };
    let holder = || {
        double
            .get(apiserver::Kind::Lease, "default", "expensify-operator")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    let (port_a, port_b) = (free_port(), free_port());
    let replica_a = replica("replica-a", port_a);
    eventually("replica-a to hold the lease", || async {
        holder().as_deref() == Some("replica-a")
    })
    .await;
    let replica_b = replica("replica-b", port_b);

    let namespace = "finance";
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), namespace);
    create_connector(&client, namespace, &sim.endpoint()).await;
    accesses
        .create(
            &PostParams::default(),
            &access(
                namespace,
                "team",
                FINANCE,
                json!([{"email": "leader@acme.example"}]),
            ),
        )
        .await
        .unwrap();
    eventually("the leader's grant", || async {
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "leader@acme.example")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(syncs_reported(port_a).await > 0, "the leader synced");
    assert_eq!(syncs_reported(port_b).await, 0, "the standby never synced");

    stop_controller(replica_a).await;
    eventually("replica-b to take the lease", || async {
        holder().as_deref() == Some("replica-b")
    })
    .await;
    let members = json!({"spec": {"members": [{"email": "leader@acme.example"}, {"email": "standby@acme.example"}]}});
    accesses
        .patch("team", &PatchParams::default(), &Patch::Merge(&members))
        .await
        .unwrap();
    eventually("the new leader's grant", || async {
        roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "standby@acme.example")
    })
    .await;
    assert!(
        syncs_reported(port_b).await > 0,
        "replica-b synced once it led"
    );

    stop_controller(replica_b).await;
}

// The ledger in cluster mode (issue 8): hand-offs, just-in-time raises that end, and a
// connector that waits for the deletions of the objects that use it.

fn role_of(sim: &expensify_operator::simulator::SimulatorHandle, email: &str) -> Option<String> {
    roster(sim, FINANCE)
        .into_iter()
        .find(|(e, _)| e == email)
        .map(|(_, role)| role)
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_hand_off_raise_expiry_and_connector_deletion_against_the_double() {
    let double = apiserver::ApiServerDouble::start().await;
    let client = double.client();
    let namespace = "finance";
    let sim = start(&unlimited_seed()).await;
    let controller = spawn_controller(
        &client,
        &sim,
        settings(100, cluster::Scope::AllNamespaces, None, 0),
    );
    let connectors = Api::<ExpensifyConnector>::namespaced(client.clone(), namespace);
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), namespace);
    create_connector(&client, namespace, &sim.endpoint()).await;

    // A grants carol; bob (a user) is raised to admin until a few seconds from now.
    let expires = k8s_openapi::jiff::Timestamp::now() + std::time::Duration::from_secs(4);
    let a = access(
        namespace,
        "team-a",
        FINANCE,
        json!([{"email": "carol@acme.example"}, {"email": "bob@acme.example", "role": "admin", "expiresAt": expires.to_string()}]),
    );
    accesses.create(&PostParams::default(), &a).await.unwrap();
    eventually("carol granted and bob raised", || async {
        role_of(&sim, "carol@acme.example").is_some()
            && role_of(&sim, "bob@acme.example").as_deref() == Some("admin")
    })
    .await;
    eventually("the connector to hold the in-use finalizer", || async {
        connectors.get("acme").await.ok().is_some_and(|c| {
            c.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"expensify.gitops.dev/in-use".to_string())
        })
    })
    .await;

    // The raise ends by itself: bob is a user again.
    eventually("bob back to user after expiresAt", || async {
        role_of(&sim, "bob@acme.example").as_deref() == Some("user")
    })
    .await;

    // Hand-off: B asks for carol, A drops her; she stays. Then B is deleted: revoked.
    let b = access(
        namespace,
        "team-b",
        FINANCE,
        json!([{"email": "carol@acme.example"}]),
    );
    accesses.create(&PostParams::default(), &b).await.unwrap();
    let none = json!({"spec": {"members": []}});
    accesses
        .patch("team-a", &PatchParams::default(), &Patch::Merge(&none))
        .await
        .unwrap();
    eventually("carol's entry to move to team-b", || async {
        accesses
            .get("team-b")
            .await
            .ok()
            .and_then(|o| o.status)
            .is_some_and(|s| {
                s.managed_members
                    .iter()
                    .any(|e| e.email == "carol@acme.example" && e.added)
            })
    })
    .await;
    assert!(
        role_of(&sim, "carol@acme.example").is_some(),
        "a hand-off revokes nobody"
    );

    // Deleting the connector waits for its objects; deleting them revokes carol.
    connectors
        .delete("acme", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        connectors.get_opt("acme").await.unwrap().is_some(),
        "the connector stays while objects refer to it"
    );
    for name in ["team-a", "team-b"] {
        accesses
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("carol revoked and every object gone", || async {
        role_of(&sim, "carol@acme.example").is_none()
            && accesses.get_opt("team-b").await.ok().flatten().is_none()
    })
    .await;
    eventually("the connector to go last", || async {
        connectors.get_opt("acme").await.ok().flatten().is_none()
    })
    .await;
    stop_controller(controller).await;
}

/// By default (no `--watch-secrets`) the controller only ever reads a Secret by name: no
/// `list` or `watch` on Secrets, which the chart then does not grant.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_secret_watch_secrets_are_only_read_by_name() {
    let double = apiserver::ApiServerDouble::start().await;
    let client = double.client();
    let sim = start(&unlimited_seed()).await;
    let controller = spawn_controller(
        &client,
        &sim,
        ControllerSettings {
            watch_secrets: false,
            ..settings(200, cluster::Scope::AllNamespaces, None, 0)
        },
    );
    let connectors = Api::<ExpensifyConnector>::namespaced(client.clone(), "finance");
    create_connector(&client, "finance", &sim.endpoint()).await;
    eventually("the connector to be Connected", || async {
        connectors
            .get("acme")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| s.phase == expensify_operator::api::ConnectorPhase::Connected)
    })
    .await;
    stop_controller(controller).await;
    let on_secrets: Vec<(String, String)> = double
        .requests_seen()
        .into_iter()
        .filter(|(method, uri)| {
            cluster::rbac::needed(method, uri).is_some_and(|(_, resource, _)| resource == "secrets")
        })
        .collect();
    let verbs: std::collections::BTreeSet<String> = on_secrets
        .iter()
        .filter_map(|(method, uri)| cluster::rbac::needed(method, uri).map(|(_, _, verb)| verb))
        .collect();
    // `create` is this test making the Secret; the controller only `get`s it.
    assert_eq!(
        verbs,
        ["create", "get"].map(String::from).into(),
        "{on_secrets:?}"
    );
}

/// Issue 8, case 7 in cluster mode: the controller is killed between the employee-updater
/// call and the status patch. The entry was saved (pending) before the write, so the next
/// controller confirms it and, when the person is dropped, takes the grant back.
#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_after_the_write_loses_no_ownership() {
    use expensify_operator::simulator::{FaultConfig, ScriptedFault};
    let double = apiserver::ApiServerDouble::start().await;
    let client = double.client();
    let sim = start(&unlimited_seed()).await;
    let settings = || settings(100, cluster::Scope::AllNamespaces, None, 0);
    let (_stop, first) = spawn_controller(&client, &sim, settings());
    let connectors = Api::<ExpensifyConnector>::namespaced(client.clone(), "finance");
    let accesses = Api::<PolicyAccess>::namespaced(client.clone(), "finance");
    create_connector(&client, "finance", &sim.endpoint()).await;
    eventually("the connector to be Connected", || async {
        connectors
            .get("acme")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| s.phase == expensify_operator::api::ConnectorPhase::Connected)
    })
    .await;

    // The next sync reads (policy list, roster), then its write is applied and its answer
    // held back: the controller dies in that window.
    sim.state().set_faults(FaultConfig {
        script: vec![
            ScriptedFault::Pass,
            ScriptedFault::Pass,
            ScriptedFault::ApplyThenStall { ms: 30_000 },
        ]
        .into(),
        ..FaultConfig::default()
    });
    let team = access(
        "finance",
        "team",
        FINANCE,
        json!([{"email": "carol@acme.example"}]),
    );
    accesses
        .create(&PostParams::default(), &team)
        .await
        .unwrap();
    eventually("the write to be applied", || async {
        sim.state().counters().faults.contains_key("applyThenStall")
    })
    .await;
    first.abort();
    let _ = first.await;
    let saved = accesses
        .get("team")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert_eq!(
        saved
            .managed_members
            .iter()
            .map(|e| (e.email.as_str(), e.added, e.pending))
            .collect::<Vec<_>>(),
        [("carol@acme.example", true, true)],
        "the entry was saved, pending, before the write"
    );

    // A new controller confirms the entry; dropping carol then revokes her.
    sim.state().set_faults(FaultConfig::default());
    let (_stop, second) = spawn_controller(&client, &sim, settings());
    eventually("the pending entry to be confirmed", || async {
        accesses
            .get("team")
            .await
            .ok()
            .and_then(|o| o.status)
            .is_some_and(|s| {
                s.managed_members
                    .iter()
                    .any(|e| e.email == "carol@acme.example" && !e.pending)
            })
    })
    .await;
    let none = json!({"spec": {"members": []}});
    accesses
        .patch("team", &PatchParams::default(), &Patch::Merge(&none))
        .await
        .unwrap();
    eventually("carol to be revoked", || async {
        !roster(&sim, FINANCE)
            .iter()
            .any(|(e, _)| e == "carol@acme.example")
    })
    .await;
    second.abort();
}
