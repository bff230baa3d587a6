use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::{AccessDecisionSpec, AccessRequestSpec, AccessRequestStatus, LocalRef};
use crate::reconcile::validate::tests::{access, connector};

fn at(minutes: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_mins(60 * 24 * 365 * 50 + minutes)
}

fn rules(approvals: i32) -> RequestRules {
    RequestRules {
        roles: Some(vec!["user".into(), "admin".into()]),
        max_duration: "8h".into(),
        require_reason: None,
        approvals: Some(approvals),
        approvers: vec!["carol@acme.com".into(), "group:leads".into()],
        pending_timeout: Some("1h".into()),
    }
}

fn policy_access(approvals: i32) -> AccessObject {
    let mut object = access("finance", vec![]);
    object.spec.requests = Some(rules(approvals));
    object
}

fn request(status: Option<AccessRequestStatus>) -> RequestObject {
    RequestObject {
        key: ObjectKey::new("finance", "r1"),
        generation: Some(1),
        created: Some(at(0)),
        spec: AccessRequestSpec {
            access_ref: LocalRef {
                name: "books".into(),
            },
            email: "ann@acme.com".into(),
            role: Some("admin".into()),
            duration: "4h".into(),
            reason: Some("month end".into()),
            requester: "bob@acme.com".into(),
        },
        deleting: false,
        status,
    }
}

fn active(expires: i64) -> AccessRequestStatus {
    AccessRequestStatus {
        phase: RequestPhase::Active,
        granted_at: Some(Time(at(expires - 240))),
        expires_at: Some(Time(at(expires))),
        ..Default::default()
    }
}

fn decision(name: &str, kind: DecisionKind, by: &str, minute: i64) -> DecisionObject {
    DecisionObject {
        key: ObjectKey::new("finance", name),
        created: Some(at(minute)),
        spec: AccessDecisionSpec {
            request_ref: LocalRef { name: "r1".into() },
            decision: kind,
            decided_by: by.into(),
            groups: vec![],
            comment: None,
        },
    }
}

struct World {
    access: AccessObject,
    connector: ConnectorObject,
    approval: Approval<'static>,
    now: Timestamp,
}

impl World {
    fn new(approvals: i32) -> Self {
        Self {
            access: policy_access(approvals),
            connector: connector("finance", &[]),
            approval: Approval::Decisions(Ok(())),
            now: at(10),
        }
    }

    fn judge(
        &self,
        request: &RequestObject,
        decisions: &[DecisionObject],
    ) -> (Verdict, BTreeMap<ObjectKey, DecisionVerdict>) {
        let context = RequestContext {
            access: Some(&self.access),
            connector: Some(&self.connector),
            policy_owner: Some("owner@acme.com"),
            approval: self.approval,
            now: self.now,
        };
        evaluate(request, &decisions_on(request, decisions), &context)
    }
}

fn counted(verdicts: &BTreeMap<ObjectKey, DecisionVerdict>, name: &str) -> bool {
    verdicts
        .get(&ObjectKey::new("finance", name))
        .is_some_and(|v| v.counted)
}

#[test]
fn synthetic_keys_never_collide_with_policy_access_keys() {
    let key = ObjectKey::for_request("finance", "r1");
    assert_eq!(key.request_name(), Some("r1"));
    assert_eq!(ObjectKey::new("finance", "r1").request_name(), None);
    assert_ne!(key, ObjectKey::new("finance", "r1"));
}

#[test]
fn approvals_from_distinct_approvers_make_it_active() {
    let world = World::new(2);
    let one = [decision("d1", DecisionKind::Approve, "carol@acme.com", 1)];
    let (verdict, _) = world.judge(&request(None), &one);
    assert_eq!(verdict.phase, RequestPhase::Pending);
    assert_eq!(verdict.next_sync, Some(at(60)));
    let mut by_group = decision("d2", DecisionKind::Approve, "dave@acme.com", 2);
    by_group.spec.groups = vec!["leads".into()];
    let two = [one[0].clone(), by_group];
    let (verdict, decisions) = world.judge(&request(None), &two);
    assert_eq!(verdict.phase, RequestPhase::Active);
    assert_eq!(verdict.approvals.len(), 2);
    assert!(counted(&decisions, "d1") && counted(&decisions, "d2"));
}

#[test]
fn approvals_zero_grants_at_once() {
    let (verdict, _) = World::new(0).judge(&request(None), &[]);
    assert_eq!(verdict.phase, RequestPhase::Active);
}

#[test]
fn decisions_that_do_not_count() {
    let world = World::new(1);
    let cases = [
        // Self-approval: the requester.
        decision("self", DecisionKind::Approve, "bob@acme.com", 1),
        // The person who gets access.
        decision("grantee", DecisionKind::Approve, "ann@acme.com", 1),
        // Not an approver (and claims no listed group).
        decision("stranger", DecisionKind::Approve, "eve@acme.com", 1),
        // Not an email.
        decision("bad", DecisionKind::Approve, "carol", 1),
        // Revoke while not active.
        decision("early", DecisionKind::Revoke, "carol@acme.com", 1),
    ];
    for case in &cases {
        let (verdict, decisions) = world.judge(&request(None), std::slice::from_ref(case));
        assert_eq!(verdict.phase, RequestPhase::Pending, "{}", case.key);
        assert!(!counted(&decisions, &case.key.name), "{}", case.key);
    }
}

#[test]
fn the_same_decider_counts_once() {
    let world = World::new(2);
    let twice = [
        decision("d1", DecisionKind::Approve, "carol@acme.com", 1),
        decision("d2", DecisionKind::Approve, "Carol@Acme.com", 2),
    ];
    let (verdict, decisions) = world.judge(&request(None), &twice);
    assert_eq!(verdict.phase, RequestPhase::Pending);
    assert!(counted(&decisions, "d1") && !counted(&decisions, "d2"));
}

#[test]
fn the_first_valid_deny_ends_it_for_good() {
    let world = World::new(2);
    let decided = [
        decision("yes", DecisionKind::Approve, "carol@acme.com", 1),
        decision("no", DecisionKind::Deny, "dave@acme.com", 2),
    ];
    // dave is no approver: his Deny does not count.
    let (verdict, _) = world.judge(&request(None), &decided);
    assert_eq!(verdict.phase, RequestPhase::Pending);
    let mut lead = decided[1].clone();
    lead.spec.groups = vec!["leads".into()];
    let (verdict, decisions) = world.judge(&request(None), &[decided[0].clone(), lead]);
    assert_eq!(verdict.phase, RequestPhase::Denied);
    assert_eq!(verdict.denial.map(|d| d.by), Some("dave@acme.com".into()));
    assert!(counted(&decisions, "no"));
    // Denied stays denied whatever comes later.
    let denied = Some(AccessRequestStatus {
        phase: RequestPhase::Denied,
        ..Default::default()
    });
    let late = [decision("late", DecisionKind::Approve, "carol@acme.com", 3)];
    let (verdict, decisions) = world.judge(&request(denied), &late);
    assert_eq!(verdict.phase, RequestPhase::Denied);
    assert!(!counted(&decisions, "late"));
}

#[test]
fn a_deny_after_it_is_active_does_nothing_and_revoke_ends_it() {
    let world = World::new(1);
    let deny = [decision("no", DecisionKind::Deny, "carol@acme.com", 5)];
    let (verdict, decisions) = world.judge(&request(Some(active(100))), &deny);
    assert_eq!(verdict.phase, RequestPhase::Active);
    assert_eq!(verdict.next_sync, Some(at(100)));
    assert!(!counted(&decisions, "no"));
    // The requester may revoke; a stranger may not.
    let stranger = [decision("x", DecisionKind::Revoke, "eve@acme.com", 5)];
    assert_eq!(
        world.judge(&request(Some(active(100))), &stranger).0.phase,
        RequestPhase::Active
    );
    let own = [decision("stop", DecisionKind::Revoke, "bob@acme.com", 5)];
    let (verdict, decisions) = world.judge(&request(Some(active(100))), &own);
    assert_eq!(verdict.phase, RequestPhase::Revoked);
    assert_eq!(verdict.reason, "Revoked");
    assert!(counted(&decisions, "stop"));
}

#[test]
fn it_expires_at_its_end_and_when_never_answered() {
    let mut world = World::new(1);
    world.now = at(100);
    let (verdict, _) = world.judge(&request(Some(active(100))), &[]);
    assert_eq!(
        (verdict.phase, verdict.reason.as_str()),
        (RequestPhase::Expired, "Ended")
    );
    let (verdict, _) = world.judge(&request(None), &[]);
    assert_eq!(
        (verdict.phase, verdict.reason.as_str()),
        (RequestPhase::Expired, "NotApproved")
    );
}

#[test]
fn protected_people_are_never_granted() {
    let mut world = World::new(0);
    for person in ["owner@acme.com", "it@acme.example", "ceo@acme.com"] {
        world.connector.spec.protected_emails = vec!["ceo@acme.com".into()];
        let mut asked = request(None);
        asked.spec.email = person.into();
        let (verdict, _) = world.judge(&asked, &[]);
        assert_eq!(
            (verdict.phase, verdict.reason.as_str()),
            (RequestPhase::Error, "Protected"),
            "{person}"
        );
    }
}

#[test]
fn file_mode_approves_by_the_merge_and_counts_no_decision() {
    let mut world = World::new(2);
    world.approval = Approval::Merge;
    let decided = [decision("no", DecisionKind::Deny, "carol@acme.com", 1)];
    let (verdict, decisions) = world.judge(&request(None), &decided);
    assert_eq!(verdict.phase, RequestPhase::Active);
    assert!(!counted(&decisions, "no"));
}

#[test]
fn an_unverified_admission_policy_fails_closed() {
    let mut world = World::new(0);
    world.approval = Approval::Decisions(Err("the admission policy is missing"));
    let (verdict, _) = world.judge(&request(None), &[]);
    assert_eq!(verdict.phase, RequestPhase::Error);
    assert_eq!(verdict.message, "the admission policy is missing");
}

#[test]
fn requests_against_a_policy_access_that_takes_none_are_never_granted() {
    let breakers: [fn(&mut World); 5] = [
        |w| w.access.spec.requests = None,
        |w| w.access.spec.mode = AccessMode::ObserveOnly,
        |w| w.access.spec.suspend = true,
        |w| w.access.deleting = true,
        |w| w.access.key.namespace = "sales".into(),
    ];
    for (i, breaker) in breakers.iter().enumerate() {
        let mut world = World::new(0);
        breaker(&mut world);
        let (verdict, _) = world.judge(&request(None), &[]);
        assert_eq!(
            (verdict.phase, verdict.reason.as_str()),
            (RequestPhase::Error, "NotRequestable"),
            "case {i}"
        );
        let (verdict, _) = world.judge(&request(Some(active(100))), &[]);
        assert_eq!(
            (verdict.phase, verdict.reason.as_str()),
            (RequestPhase::Revoked, "RulesWithdrawn"),
            "case {i}"
        );
    }
}

#[test]
fn an_invalid_request_is_never_granted() {
    let mut asked = request(None);
    asked.spec.duration = "9h".into();
    let (verdict, _) = World::new(0).judge(&asked, &[]);
    assert_eq!(verdict.phase, RequestPhase::Error);
    assert!(
        verdict.message.contains("spec.duration"),
        "{}",
        verdict.message
    );
}

#[test]
fn decisions_on_a_missing_request_or_in_another_namespace_do_not_count() {
    let mut elsewhere = decision("d1", DecisionKind::Approve, "carol@acme.com", 1);
    elsewhere.key.namespace = "sales".into();
    let requests = [request(None)];
    assert!(decisions_on(&requests[0], std::slice::from_ref(&elsewhere)).is_empty());
    let orphans = orphan_decisions(&requests, &[elsewhere]);
    assert_eq!(orphans.len(), 1);
    assert!(orphans.values().all(|v| !v.counted));
}

#[test]
fn a_deleted_request_ends() {
    let mut asked = request(Some(active(100)));
    asked.deleting = true;
    let (verdict, _) = World::new(0).judge(&asked, &[]);
    assert_eq!(
        (verdict.phase, verdict.reason.as_str()),
        (RequestPhase::Revoked, "Deleted")
    );
}

// ---- review3: independent review findings (these tests are expected to FAIL) ----

/// An Approve decision that was written before the request existed (for an earlier
/// request of the same name, since deleted, or "pre-approving" a name) must not count:
/// decisions are bound to a request only by name, so re-creating `r1` for a new person or
/// role inherits every approval the old `r1` had.
#[test]
fn review3_a_decision_older_than_the_request_does_not_count() {
    let world = World::new(1);
    // The request is created at minute 0; carol's approval is from an hour before it.
    let stale = [decision(
        "d-old",
        DecisionKind::Approve,
        "carol@acme.com",
        -60,
    )];
    let (verdict, decisions) = world.judge(&request(None), &stale);
    assert!(
        !counted(&decisions, "d-old"),
        "an approval older than the request counted: {decisions:?}"
    );
    assert_eq!(
        verdict.phase,
        RequestPhase::Pending,
        "a re-created request was granted on an old approval: {verdict:?}"
    );
}

#[test]
fn an_object_nothing_routes_is_answered_by_a_connector_that_serves_its_namespace() {
    let access = |namespace: &str, name: &str, connector: &str| {
        let access: crate::api::PolicyAccess = serde_json::from_value(serde_json::json!({
            "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "PolicyAccess",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"connectorRef": {"name": connector, "namespace": "shared"}, "policy": {"id": "P1"}, "members": []}
        }))
        .unwrap();
        AccessObject::from_resource(&access)
    };
    let connector = |namespace: &str, name: &str, allowed: &[&str]| {
        let connector: crate::api::ExpensifyConnector = serde_json::from_value(serde_json::json!({
            "apiVersion": "expensify.gitops.dev/v1alpha1", "kind": "ExpensifyConnector",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"credentialsSecretRef": {"name": "creds"}, "adminEmail": "it@acme.example",
                     "allowedNamespaces": allowed}
        }))
        .unwrap();
        ConnectorObject::from_resource(&connector)
    };
    let accesses = [
        access("sales", "a", "other"),
        // In sales, on a connector that serves finance: says nothing about finance.
        access("sales", "b", "late"),
        access("finance", "team", "late"),
        access("finance", "books", "acme"),
        // Named by anyone in finance, on a connector that does not serve finance.
        access("finance", "aaa", "other"),
    ];
    let connectors = [
        connector("shared", "acme", &["finance"]),
        connector("shared", "late", &["finance"]),
        connector("shared", "other", &["sales"]),
        connector("shared", "zeta", &["hr"]),
        connector("shared", "beta", &["hr", "ops"]),
        connector("hr", "own", &[]),
    ];
    let answer =
        |namespace: &str| connector_answering(namespace, accesses.clone(), connectors.clone());
    assert_eq!(answer("finance"), Some(ObjectKey::new("shared", "acme")));
    assert_eq!(answer("sales"), Some(ObjectKey::new("shared", "other")));
    assert_eq!(answer("hr"), Some(ObjectKey::new("hr", "own")));
    assert_eq!(answer("ops"), Some(ObjectKey::new("shared", "beta")));
    assert_eq!(answer("legal"), None);
}

/// Each reason a connector gives for not taking a request is the one named.
#[test]
fn a_request_names_why_the_connector_does_not_take_it() {
    let mut world = World::new(0);
    world.access.key.namespace = "sales".into();
    let (verdict, _) = world.judge(&request(None), &[]);
    assert_eq!(
        verdict.message,
        "connector finance/acme does not allow namespace sales"
    );

    let mut world = World::new(0);
    world.connector.spec.suspend = true;
    let (verdict, _) = world.judge(&request(None), &[]);
    assert_eq!(
        (verdict.reason.as_str(), verdict.message.as_str()),
        ("NotRequestable", "connector finance/acme is suspended")
    );

    let mut world = World::new(0);
    world.access.spec.members = vec![crate::api::MemberSpec {
        email: "not an email".into(),
        role: None,
        submits_to: None,
        employee_id: None,
        expires_at: None,
    }];
    let (verdict, _) = world.judge(&request(None), &[]);
    assert_eq!(verdict.reason, "NotRequestable");
    assert_eq!(
        verdict.message,
        "PolicyAccess finance/team is invalid (1 problem(s), the first: spec.members[0].email: \"not an email\" is not an email address); nothing is granted under its rules"
    );
}

/// A tenant namespace may request up to its `maxRole` and no higher.
#[test]
fn a_tenant_requests_up_to_its_max_role() {
    let in_eng = |role: &str, max_role: Option<&str>| {
        let mut world = World::new(0);
        world.access.key.namespace = "eng".into();
        world.connector.spec.tenants = vec![crate::api::TenantSpec {
            namespace: "eng".into(),
            policies: vec![crate::api::PolicySelector {
                id: Some("P1".into()),
                name: None,
            }],
            max_role: max_role.map(str::to_string),
        }];
        let mut asked = request(None);
        asked.key.namespace = "eng".into();
        asked.spec.role = Some(role.into());
        world.judge(&asked, &[]).0
    };
    let refused = in_eng("admin", Some("auditor"));
    assert_eq!(refused.reason, "NotRequestable");
    assert_eq!(
        refused.message,
        "namespace eng may grant at most auditor through connector finance/acme (spec.tenants maxRole): admin cannot be requested"
    );
    let within = in_eng("user", Some("auditor"));
    assert_ne!(within.reason, "NotRequestable", "{}", within.message);
}

#[test]
fn a_request_names_its_policy_access_in_its_own_namespace_only() {
    let books = |namespace: &str, name: &str| {
        let mut object = access(namespace, vec![]);
        object.key = ObjectKey::new(namespace, name);
        object
    };
    let accesses = [
        books("sales", "books"),
        books("finance", "ledger"),
        books("finance", "books"),
    ];
    let asked = request(None);
    assert_eq!(
        access_of(&asked, &accesses).map(|a| &a.key),
        Some(&ObjectKey::new("finance", "books"))
    );
    assert_eq!(access_of(&asked, &accesses[..2]), None);
}

#[test]
fn a_request_holds_entries_only_when_its_status_lists_some() {
    assert!(!holds_entries(None));
    assert!(!holds_entries(Some(&AccessRequestStatus::default())));
    let holding = AccessRequestStatus {
        managed_members: vec![crate::api::ManagedMember {
            policy_id: "P1".into(),
            email: "ann@acme.com".into(),
            added: true,
            previous_role: None,
            role: Some("admin".into()),
            pending: false,
            prior_role: None,
            connector: None,
        }],
        ..AccessRequestStatus::default()
    };
    assert!(holds_entries(Some(&holding)));
}

/// A decider that is not an email address never counts, even in an approving group.
#[test]
fn a_decision_by_something_that_is_not_an_email_never_counts() {
    let mut by_group = decision("d1", DecisionKind::Approve, "not an email", 5);
    by_group.spec.groups = vec!["leads".into()];
    let (verdict, verdicts) = World::new(1).judge(&request(None), &[by_group]);
    assert_ne!(verdict.phase, RequestPhase::Active);
    let d1 = &verdicts[&ObjectKey::new("finance", "d1")];
    assert!(!d1.counted);
    assert_eq!(d1.message, "\"not an email\" is not an email address");
}

/// Neither the requester nor the person who gets access decides, approvers or not.
#[test]
fn the_requester_and_the_person_never_decide_even_as_approvers() {
    for (by, why) in [
        (
            "bob@acme.com",
            "bob@acme.com made the request and cannot decide it",
        ),
        (
            "ann@acme.com",
            "ann@acme.com is the person who gets access and cannot decide it",
        ),
    ] {
        let mut own = decision("d1", DecisionKind::Approve, by, 5);
        own.spec.groups = vec!["leads".into()];
        let (verdict, verdicts) = World::new(1).judge(&request(None), &[own]);
        assert_ne!(verdict.phase, RequestPhase::Active, "{by}");
        let d1 = &verdicts[&ObjectKey::new("finance", "d1")];
        assert!(!d1.counted, "{by}");
        assert_eq!(d1.message, why);
    }
}

/// An approval of a request already Active counts for nothing, and says so.
#[test]
fn an_approval_of_an_active_request_counts_for_nothing() {
    let late = decision("d1", DecisionKind::Approve, "carol@acme.com", 5);
    let (verdict, verdicts) = World::new(1).judge(&request(Some(active(100))), &[late]);
    assert_eq!(verdict.phase, RequestPhase::Active);
    let d1 = &verdicts[&ObjectKey::new("finance", "d1")];
    assert!(!d1.counted);
    assert_eq!(d1.message, "the request is already Active");
}

/// The synthetic object that holds a request's access: asking for the person while the
/// request is Active (and not being deleted), for nobody once it ended, on the policy its
/// entries name when its PolicyAccess is gone, and always Additive with Revoke.
#[test]
fn a_request_holder_asks_while_active_and_keeps_what_it_holds() {
    let connector_key = ObjectKey::new("finance", "acme");
    let entry = crate::api::ManagedMember {
        policy_id: "P7".into(),
        email: "ann@acme.com".into(),
        added: true,
        previous_role: None,
        role: Some("admin".into()),
        pending: false,
        prior_role: None,
        connector: None,
    };
    let verdict = |phase: RequestPhase| Verdict {
        phase,
        reason: String::new(),
        message: String::new(),
        approvers: Vec::new(),
        approvals_required: 0,
        approvals: Vec::new(),
        denial: None,
        by: None,
        next_sync: None,
    };
    let mut books = policy_access(1);
    books.spec.mode = AccessMode::ObserveOnly;
    books.spec.suspend = true;
    books.spec.allow_from = vec!["sales".into()];
    let members = |held: &Option<AccessObject>| -> Vec<(String, Option<String>, Option<String>)> {
        held.as_ref()
            .expect("a holder")
            .spec
            .members
            .iter()
            .map(|m| (m.email.clone(), m.role.clone(), m.expires_at.clone()))
            .collect()
    };

    let asking = request(Some(active(100)));
    let held = holder(
        &asking,
        &verdict(RequestPhase::Active),
        Some(&books),
        &connector_key,
        at(10),
    );
    let object = held.as_ref().expect("a holder");
    assert_eq!(object.key, ObjectKey::for_request("finance", "r1"));
    assert_eq!(
        (
            object.spec.mode,
            object.spec.deletion_policy,
            object.spec.suspend
        ),
        (
            AccessMode::Additive,
            crate::api::DeletionPolicy::Revoke,
            false
        )
    );
    assert!(object.spec.allow_from.is_empty() && object.spec.requests.is_none());
    assert_eq!(
        members(&held),
        [(
            "ann@acme.com".to_string(),
            Some("admin".to_string()),
            Some(at(100).to_string())
        )]
    );

    // Not active and holding nothing: no holder.
    let pending = request(None);
    assert!(
        holder(
            &pending,
            &verdict(RequestPhase::Pending),
            Some(&books),
            &connector_key,
            at(10)
        )
        .is_none()
    );

    // Active but being deleted, or ended: asks for nobody, keeps its entries.
    let mut holding = active(100);
    holding.managed_members = vec![entry.clone()];
    let mut deleting = request(Some(holding.clone()));
    deleting.deleting = true;
    let ended = request(Some(holding.clone()));
    for (asked, phase) in [
        (&deleting, RequestPhase::Active),
        (&ended, RequestPhase::Expired),
    ] {
        let held = holder(asked, &verdict(phase), Some(&books), &connector_key, at(10));
        assert!(members(&held).is_empty(), "{phase:?}");
        let status = held.expect("a holder").status.expect("status");
        assert_eq!(status.managed_members, std::slice::from_ref(&entry));
    }

    // Its PolicyAccess gone: on the policy its entries name, through the connector that
    // wrote them, asking for nobody even while Active; with nothing held, no holder.
    let held = holder(
        &ended,
        &verdict(RequestPhase::Active),
        None,
        &connector_key,
        at(10),
    );
    let orphan = held.as_ref().expect("a holder");
    assert_eq!(orphan.spec.policy.id.as_deref(), Some("P7"));
    assert_eq!(orphan.connector_key(), connector_key);
    assert!(members(&held).is_empty());
    assert!(
        holder(
            &asking,
            &verdict(RequestPhase::Active),
            None,
            &connector_key,
            at(10)
        )
        .is_none()
    );
}

#[test]
fn the_default_pending_timeout_is_the_documented_one() {
    assert_eq!(
        crate::api::parse_duration(crate::api::DEFAULT_PENDING_TIMEOUT).ok(),
        Some(DEFAULT_PENDING)
    );
}
