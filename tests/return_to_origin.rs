//! "Return to origin": a model-based property test of the ownership ledger, in file mode
//! against the simulator.
//!
//! proptest generates a history of steps (objects created, edited and deleted in every
//! mode and with both deletion policies, hand-offs, renames, policy moves, expiries,
//! suspends, an unreadable manifest, and injected faults: 429, HTTP 500 before the write,
//! an answer lost after the write landed, a failed re-read, a stop between the write and
//! the status). A small model tracks only what the contract allows the operator to take,
//! and after every step the simulator's state must respect it:
//!
//! - nobody on a policy at the start is revoked unless an Authoritative object governed
//!   that policy while nobody asked for them (an "Authoritative extra");
//! - protected people (policy owners, the connector's `adminEmail`, `protectedEmails`)
//!   never change;
//! - the simulator never refuses a request for its rate windows.
//!
//! At the end every object is switched to `deletionPolicy: Revoke`, then deleted; faults
//! stop; after at most two syncs Expensify must be exactly as it started, except people
//! removed as Authoritative extras and what an `Orphan` deletion deliberately left behind.
//!
//! `cargo test` runs a bounded number of cases; `RETURN_TO_ORIGIN_CASES=5000` runs more
//! (and `RETURN_TO_ORIGIN_SHRINK` bounds the shrinking iterations, default 64).

mod support;

use expensify_operator::files::Run;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use expensify_operator::files::FileMode;
use expensify_operator::simulator::{FaultConfig, ScriptedFault, SimulatorHandle};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::Repo;
use support::origin::{
    Deletion, Mode, POLICIES, Role, State, connector_yaml, differences_from_origin, env_number,
    failure_text, is_protected, paced_clients, rate_problem, snapshot, start_simulator,
};

/// People objects may ask for: three nobody has yet, five already on some policies.
const PEOPLE: [&str; 8] = [
    "new1@corp.example",
    "new2@corp.example",
    "new3@corp.example",
    "pat@corp.example",
    "bob@corp.example",
    "aud@corp.example",
    "adm@corp.example",
    "carl@corp.example",
];
/// Object names (all in namespace `ops`, on connector `corp`).
const OBJECTS: usize = 3;

const GARBAGE: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {name: broken, namespace: ops\nspec: [\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    role: Role,
    /// `expiresAt` already passed (otherwise it lies far ahead or is absent).
    expired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Object {
    policy: usize,
    mode: Mode,
    deletion: Deletion,
    suspend: bool,
    /// Person index in `PEOPLE` -> entry.
    members: BTreeMap<usize, Member>,
}

impl Object {
    fn manifest(&self, name: &str) -> String {
        let mut text = format!(
            "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: {name}, namespace: ops}}\nspec:\n  connectorRef: {{name: corp}}\n  policy: {{id: \"{}\"}}\n  mode: {:?}\n  deletionPolicy: {:?}\n  suspend: {}\n",
            POLICIES[self.policy].0, self.mode, self.deletion, self.suspend
        );
        if self.members.is_empty() {
            text.push_str("  members: []\n");
            return text;
        }
        text.push_str("  members:\n");
        for (person, member) in &self.members {
            let expires = if member.expired {
                "2020-01-01T00:00:00Z"
            } else {
                "2099-01-01T00:00:00Z"
            };
            let _ = writeln!(
                text,
                "    - {{email: {}, role: {}, expiresAt: \"{expires}\"}}",
                PEOPLE[*person],
                member.role.as_str()
            );
        }
        text
    }

    fn describe(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|(p, m)| {
                format!(
                    "{}:{}{}",
                    short(*p),
                    m.role.as_str(),
                    if m.expired { "(expired)" } else { "" }
                )
            })
            .collect();
        format!(
            "{} {:?} {:?}{} [{}]",
            POLICIES[self.policy].1,
            self.mode,
            self.deletion,
            if self.suspend { " suspended" } else { "" },
            members.join(", ")
        )
    }
}

fn short(person: usize) -> &'static str {
    PEOPLE[person].split('@').next().unwrap_or(PEOPLE[person])
}

#[derive(Debug, Clone)]
enum Action {
    /// Create the object, or replace its whole spec.
    Put {
        obj: usize,
        object: Object,
    },
    /// Add a person, or change their role.
    Ask {
        obj: usize,
        person: usize,
        role: Role,
    },
    Drop {
        obj: usize,
        pick: usize,
    },
    /// The entry's `expiresAt` is now in the past.
    Expire {
        obj: usize,
        pick: usize,
    },
    Move {
        obj: usize,
        policy: usize,
    },
    SetMode {
        obj: usize,
        mode: Mode,
    },
    SetDeletion {
        obj: usize,
        deletion: Deletion,
    },
    Suspend {
        obj: usize,
        on: bool,
    },
    /// `from` drops a person; `to` (moved to `from`'s policy) asks for them.
    HandOff {
        from: usize,
        to: usize,
        pick: usize,
    },
    /// Delete + create under another name, same spec.
    Rename {
        from: usize,
        to: usize,
    },
    Delete {
        obj: usize,
    },
    /// An unreadable manifest appears or goes away.
    Garbage {
        present: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// 429 on the policy list and on the roster read.
    RateLimited,
    /// HTTP 500 on the employee-updater call (nothing applied).
    ServerErrorBeforeWrite,
    /// The write lands, the connection drops before the answer.
    LostAnswerAfterWrite,
    /// The write lands, the re-read after it fails on every attempt.
    FailedReread,
    /// The write lands, then the pass is cancelled before it learns the result.
    StopAfterWrite,
}

impl Fault {
    /// The script, given the pass's request order: policy list, roster read, update,
    /// re-read (positions past the end of a pass are cleared after it).
    fn script(self) -> Vec<ScriptedFault> {
        use ScriptedFault::*;
        match self {
            Fault::None => Vec::new(),
            Fault::RateLimited => vec![Http429, Pass, Http429],
            Fault::ServerErrorBeforeWrite => vec![Pass, Pass, Http500],
            Fault::LostAnswerAfterWrite => vec![Pass, Pass, DropAfterApply],
            Fault::FailedReread => {
                let mut script = vec![Pass, Pass, Pass];
                script.extend(std::iter::repeat_n(Http500, 8));
                script
            }
            Fault::StopAfterWrite => vec![Pass, Pass, ApplyThenStall { ms: 5_000 }],
        }
    }
}

#[derive(Debug, Clone)]
struct Step {
    action: Action,
    fault: Fault,
}

/// What the contract lets the operator take, learned from the history so far.
#[derive(Debug, Default)]
struct Model {
    objects: [Option<Object>; OBJECTS],
    /// Every (policy, person) each object ever listed: all it can ever hold entries for.
    listed: [BTreeSet<(usize, usize)>; OBJECTS],
    garbage: bool,
    /// (policy index, email) that an Authoritative object could remove as an extra.
    removable: BTreeSet<(usize, String)>,
    /// (policy index, email) an `Orphan` deletion may have left as it is.
    orphaned: BTreeSet<(usize, String)>,
}

fn nth(members: &BTreeMap<usize, Member>, pick: usize) -> Option<usize> {
    if members.is_empty() {
        return None;
    }
    members.keys().nth(pick % members.len()).copied()
}

impl Model {
    /// Applies an action to the manifests; returns what it did, for the history.
    fn apply(&mut self, action: &Action) -> String {
        let done = match action.clone() {
            Action::Put { obj, object } => {
                let text = format!("put o{obj}: {}", object.describe());
                self.objects[obj] = Some(object);
                text
            }
            Action::Ask { obj, person, role } => self.edit(obj, |o| {
                o.members.insert(
                    person,
                    Member {
                        role,
                        expired: false,
                    },
                );
                format!("asks for {} as {}", short(person), role.as_str())
            }),
            Action::Drop { obj, pick } => self.edit(obj, |o| match nth(&o.members, pick) {
                Some(person) => {
                    o.members.remove(&person);
                    format!("drops {}", short(person))
                }
                None => "drops nobody (no members)".to_string(),
            }),
            Action::Expire { obj, pick } => self.edit(obj, |o| match nth(&o.members, pick) {
                Some(person) => {
                    if let Some(m) = o.members.get_mut(&person) {
                        m.expired = true;
                    }
                    format!("{}'s entry expires", short(person))
                }
                None => "nothing to expire".to_string(),
            }),
            Action::Move { obj, policy } => self.edit(obj, |o| {
                o.policy = policy;
                format!("moves to {}", POLICIES[policy].1)
            }),
            Action::SetMode { obj, mode } => self.edit(obj, |o| {
                o.mode = mode;
                format!("mode {mode:?}")
            }),
            Action::SetDeletion { obj, deletion } => self.edit(obj, |o| {
                o.deletion = deletion;
                format!("deletionPolicy {deletion:?}")
            }),
            Action::Suspend { obj, on } => self.edit(obj, |o| {
                o.suspend = on;
                format!("suspend: {on}")
            }),
            Action::HandOff { from, to, pick } => self.hand_off(from, to, pick),
            Action::Rename { from, to } => {
                if from == to || self.objects[to].is_some() || self.objects[from].is_none() {
                    "rename skipped".to_string()
                } else {
                    let object = self.delete(from);
                    self.objects[to] = object;
                    format!("o{from} renamed to o{to}")
                }
            }
            Action::Delete { obj } => match self.delete(obj) {
                Some(o) => format!("delete o{obj} ({:?})", o.deletion),
                None => format!("delete o{obj}: absent"),
            },
            Action::Garbage { present } => {
                self.garbage = present;
                format!("unreadable manifest present: {present}")
            }
        };
        self.remember_listed();
        done
    }

    fn edit(&mut self, obj: usize, change: impl FnOnce(&mut Object) -> String) -> String {
        match self.objects[obj].as_mut() {
            Some(object) => format!("o{obj} {}", change(object)),
            None => format!("o{obj} absent: no edit"),
        }
    }

    fn hand_off(&mut self, from: usize, to: usize, pick: usize) -> String {
        if from == to {
            return "hand-off skipped".to_string();
        }
        let (Some(giver), Some(_)) = (&self.objects[from], &self.objects[to]) else {
            return "hand-off skipped (object absent)".to_string();
        };
        let policy = giver.policy;
        let Some(person) = nth(&giver.members, pick) else {
            return "hand-off skipped (no members)".to_string();
        };
        let mut member = None;
        if let Some(giver) = self.objects[from].as_mut() {
            member = giver.members.remove(&person);
        }
        if let (Some(taker), Some(mut member)) = (self.objects[to].as_mut(), member) {
            member.expired = false;
            taker.policy = policy;
            taker.members.insert(person, member);
        }
        format!(
            "o{from} hands {} on {} to o{to}",
            short(person),
            POLICIES[policy].1
        )
    }

    /// Removes an object; an `Orphan` deletion may leave all it ever listed behind.
    fn delete(&mut self, obj: usize) -> Option<Object> {
        let object = self.objects[obj].take()?;
        if object.deletion == Deletion::Orphan {
            for (policy, person) in std::mem::take(&mut self.listed[obj]) {
                self.orphaned.insert((policy, PEOPLE[person].to_string()));
            }
        }
        self.listed[obj].clear();
        Some(object)
    }

    fn remember_listed(&mut self) {
        for (obj, object) in self.objects.iter().enumerate() {
            if let Some(object) = object {
                for person in object.members.keys() {
                    self.listed[obj].insert((object.policy, *person));
                }
            }
        }
    }

    /// Before a pass: the people an Authoritative object may now remove (on its policy,
    /// not protected, and asked for by no object with an entry still in the future).
    fn note_extras(&mut self, state: &BTreeMap<usize, BTreeMap<String, String>>) {
        for (policy, roster) in state {
            let governed = self
                .objects
                .iter()
                .flatten()
                .any(|o| o.policy == *policy && o.mode == Mode::Authoritative && !o.suspend);
            if !governed {
                continue;
            }
            let asked: BTreeSet<&str> = self
                .objects
                .iter()
                .flatten()
                .filter(|o| o.policy == *policy)
                .flat_map(|o| o.members.iter())
                .filter(|(_, m)| !m.expired)
                .map(|(p, _)| PEOPLE[*p])
                .collect();
            for email in roster.keys() {
                if !asked.contains(email.as_str()) && !is_protected(*policy, email) {
                    self.removable.insert((*policy, email.clone()));
                }
            }
        }
    }

    fn write(&self, repo: &Repo) {
        for (obj, object) in self.objects.iter().enumerate() {
            let file = format!("o{obj}.yaml");
            match object {
                Some(object) => repo.write(&file, &object.manifest(&format!("o{obj}"))),
                None if repo.path().join(&file).exists() => repo.remove(&file),
                None => {}
            }
        }
        match (self.garbage, repo.path().join("garbage.yaml").exists()) {
            (true, _) => repo.write("garbage.yaml", GARBAGE),
            (false, true) => repo.remove("garbage.yaml"),
            (false, false) => {}
        }
    }
}

/// The invariants that hold after every step.
fn check_step(model: &Model, origin: &State, now: &State, sim: &SimulatorHandle) -> Vec<String> {
    let mut problems = Vec::new();
    for (policy, start) in origin {
        let current = &now[policy];
        for (email, role) in start {
            if is_protected(*policy, email) {
                if current.get(email) != Some(role) {
                    problems.push(format!(
                        "protected {email} on {} changed: {role} -> {:?}",
                        POLICIES[*policy].1,
                        current.get(email)
                    ));
                }
            } else if !current.contains_key(email)
                && !model.removable.contains(&(*policy, email.clone()))
            {
                problems.push(format!(
                    "{email} was on {} before the operator and was revoked, but was never an Authoritative extra",
                    POLICIES[*policy].1
                ));
            }
        }
        for email in current.keys() {
            if is_protected(*policy, email) && !start.contains_key(email) {
                problems.push(format!(
                    "protected {email} appeared on {}",
                    POLICIES[*policy].1
                ));
            }
        }
    }
    problems.extend(rate_problem(sim));
    problems
}

/// Expensify as at the start, except Authoritative extras and what `Orphan` left.
fn check_origin(model: &Model, origin: &State, now: &State) -> Vec<String> {
    differences_from_origin(origin, now, (&model.removable, &model.orphaned))
}

/// One pass with a fault injected; returns a line for the history.
async fn sync(sim: &SimulatorHandle, mode: &FileMode, fault: Fault) -> Result<String, String> {
    sim.state().set_faults(FaultConfig {
        script: fault.script().into_iter().collect(),
        ..FaultConfig::default()
    });
    let before = sim.state().counters().requests;
    let outcome = if fault == Fault::StopAfterWrite {
        let pass = mode.pass(Run::Apply);
        tokio::pin!(pass);
        let applied = async {
            while !sim.state().counters().faults.contains_key("applyThenStall") {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            report = &mut pass => Some(report),
            () = applied => None,
        }
    } else {
        Some(mode.pass(Run::Apply).await)
    };
    sim.state().set_faults(FaultConfig::default());
    let requests = sim.state().counters().requests - before;
    match outcome {
        None => Ok(format!(
            "stopped right after the write ({requests} requests)"
        )),
        // A fault-free pass must reach Expensify, or the whole test proves nothing.
        Some(Ok(report))
            if fault == Fault::None
                && report.syncs.iter().any(|s| {
                    s.connector_status.phase != expensify_operator::api::ConnectorPhase::Connected
                }) =>
        {
            Err(format!(
                "the connector did not connect: {:?}",
                report
                    .syncs
                    .iter()
                    .map(|s| s.connector_status.message.clone())
                    .collect::<Vec<_>>()
            ))
        }
        Some(Ok(report)) => Ok(format!(
            "{} change(s) planned, errors: {}, blocked: {} ({requests} requests)",
            report.pending_changes(),
            report.has_errors(),
            report.has_blocked()
        )),
        Some(Err(e)) => Err(format!("the pass failed: {e}")),
    }
}

struct Case {
    sim: SimulatorHandle,
    repo: Repo,
    mode: FileMode,
    model: Model,
    origin: State,
    history: String,
}

impl Case {
    async fn start() -> Case {
        let sim = start_simulator().await;
        let repo = Repo::new(&sim);
        repo.write("connector.yaml", &connector_yaml(&sim.endpoint()));
        // One client set for the whole history, so its pacing sees every request.
        let mode = FileMode {
            clients: paced_clients(&sim),
            ..repo.mode()
        };
        let origin = snapshot(&sim);
        Case {
            sim,
            repo,
            mode,
            model: Model::default(),
            origin,
            history: String::new(),
        }
    }

    async fn step(&mut self, label: &str, fault: Fault) -> Result<(), String> {
        self.model.write(&self.repo);
        self.model.note_extras(&snapshot(&self.sim));
        let result = sync(&self.sim, &self.mode, fault).await;
        let _ = writeln!(
            self.history,
            "  {label} [fault: {fault:?}] -> {}",
            result.as_deref().unwrap_or_else(|e| e)
        );
        result?;
        let now = snapshot(&self.sim);
        let problems = check_step(&self.model, &self.origin, &now, &self.sim);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.failure("an invariant broke", &problems, &now))
        }
    }

    fn failure(&self, what: &str, problems: &[String], now: &State) -> String {
        failure_text(what, problems, &self.history, &self.origin, now)
    }

    async fn run(mut self, steps: &[Step]) -> Result<(), String> {
        for (i, step) in steps.iter().enumerate() {
            let done = self.model.apply(&step.action);
            self.step(&format!("{}. {done}", i + 1), step.fault).await?;
        }
        // Wind down: everything to Revoke (and unsuspended), the broken file gone.
        for object in self.model.objects.iter_mut().flatten() {
            object.deletion = Deletion::Revoke;
            object.suspend = false;
        }
        self.model.garbage = false;
        self.model.remember_listed();
        self.step("end: every object set to Revoke, unsuspended", Fault::None)
            .await?;
        for obj in 0..OBJECTS {
            self.model.delete(obj);
        }
        self.step("end: every object deleted, sync 1", Fault::None)
            .await?;
        if check_origin(&self.model, &self.origin, &snapshot(&self.sim)).is_empty() {
            return Ok(());
        }
        self.step("end: sync 2", Fault::None).await?;
        let now = snapshot(&self.sim);
        let problems = check_origin(&self.model, &self.origin, &now);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.failure("not back at the origin after two syncs", &problems, &now))
        }
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::User), Just(Role::Auditor), Just(Role::Admin)]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        3 => Just(Mode::Additive),
        2 => Just(Mode::Authoritative),
        1 => Just(Mode::ObserveOnly),
    ]
}

fn deletion() -> impl Strategy<Value = Deletion> {
    prop_oneof![3 => Just(Deletion::Revoke), 1 => Just(Deletion::Orphan)]
}

fn object() -> impl Strategy<Value = Object> {
    let member =
        (role(), prop::bool::weighted(0.15)).prop_map(|(role, expired)| Member { role, expired });
    (
        0..POLICIES.len(),
        mode(),
        deletion(),
        prop::bool::weighted(0.1),
        prop::collection::btree_map(0..PEOPLE.len(), member, 0..4),
    )
        .prop_map(|(policy, mode, deletion, suspend, members)| Object {
            policy,
            mode,
            deletion,
            suspend,
            members,
        })
}

fn action() -> impl Strategy<Value = Action> {
    let obj = || 0..OBJECTS;
    let pick = || 0..8usize;
    prop_oneof![
        6 => (obj(), object()).prop_map(|(obj, object)| Action::Put { obj, object }),
        4 => (obj(), 0..PEOPLE.len(), role())
            .prop_map(|(obj, person, role)| Action::Ask { obj, person, role }),
        3 => (obj(), pick()).prop_map(|(obj, pick)| Action::Drop { obj, pick }),
        2 => (obj(), pick()).prop_map(|(obj, pick)| Action::Expire { obj, pick }),
        2 => (obj(), 0..POLICIES.len()).prop_map(|(obj, policy)| Action::Move { obj, policy }),
        1 => (obj(), mode()).prop_map(|(obj, mode)| Action::SetMode { obj, mode }),
        1 => (obj(), deletion()).prop_map(|(obj, deletion)| Action::SetDeletion { obj, deletion }),
        1 => (obj(), any::<bool>()).prop_map(|(obj, on)| Action::Suspend { obj, on }),
        3 => (obj(), obj(), pick()).prop_map(|(from, to, pick)| Action::HandOff { from, to, pick }),
        1 => (obj(), obj()).prop_map(|(from, to)| Action::Rename { from, to }),
        2 => obj().prop_map(|obj| Action::Delete { obj }),
        1 => any::<bool>().prop_map(|present| Action::Garbage { present }),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        10 => Just(Fault::None),
        1 => Just(Fault::RateLimited),
        1 => Just(Fault::ServerErrorBeforeWrite),
        1 => Just(Fault::LostAnswerAfterWrite),
        1 => Just(Fault::FailedReread),
        1 => Just(Fault::StopAfterWrite),
    ]
}

fn history() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (action(), fault()).prop_map(|(action, fault)| Step { action, fault }),
        1..=8,
    )
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: env_number("RETURN_TO_ORIGIN_CASES", 16),
        max_shrink_iters: env_number("RETURN_TO_ORIGIN_SHRINK", 64),
        // The history printed on failure is the reproduction; no regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn run_history(steps: &[Step]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(format!("tokio runtime: {e}")))?;
    runtime
        .block_on(async { Case::start().await.run(steps).await })
        .map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn return_to_origin(steps in history()) {
        run_history(&steps)?;
    }
}

/// A fixed history covering each kind of step and fault once, so a plain `cargo test`
/// exercises all of them whatever proptest draws.
#[test]
fn return_to_origin_fixed_history() {
    let member = |role| Member {
        role,
        expired: false,
    };
    let object = |policy, mode, members: &[(usize, Role)]| Object {
        policy,
        mode,
        deletion: Deletion::Revoke,
        suspend: false,
        members: members.iter().map(|(p, r)| (*p, member(*r))).collect(),
    };
    let steps = vec![
        Step {
            action: Action::Put {
                obj: 0,
                object: object(0, Mode::Additive, &[(0, Role::User), (3, Role::Admin)]),
            },
            fault: Fault::None,
        },
        Step {
            action: Action::Put {
                obj: 1,
                object: object(
                    1,
                    Mode::Authoritative,
                    &[(4, Role::User), (3, Role::Auditor)],
                ),
            },
            fault: Fault::RateLimited,
        },
        Step {
            action: Action::Put {
                obj: 2,
                object: Object {
                    deletion: Deletion::Orphan,
                    ..object(0, Mode::ObserveOnly, &[])
                },
            },
            fault: Fault::None,
        },
        Step {
            action: Action::SetMode {
                obj: 2,
                mode: Mode::Additive,
            },
            fault: Fault::None,
        },
        Step {
            action: Action::SetDeletion {
                obj: 2,
                deletion: Deletion::Revoke,
            },
            fault: Fault::None,
        },
        Step {
            action: Action::HandOff {
                from: 0,
                to: 2,
                pick: 0,
            },
            fault: Fault::ServerErrorBeforeWrite,
        },
        Step {
            action: Action::Ask {
                obj: 2,
                person: 1,
                role: Role::Admin,
            },
            fault: Fault::FailedReread,
        },
        Step {
            action: Action::Ask {
                obj: 1,
                person: 2,
                role: Role::User,
            },
            fault: Fault::StopAfterWrite,
        },
        Step {
            action: Action::Ask {
                obj: 0,
                person: 6,
                role: Role::User,
            },
            fault: Fault::LostAnswerAfterWrite,
        },
        Step {
            action: Action::Garbage { present: true },
            fault: Fault::None,
        },
        Step {
            action: Action::Move { obj: 0, policy: 2 },
            fault: Fault::None,
        },
        Step {
            action: Action::Expire { obj: 2, pick: 1 },
            fault: Fault::None,
        },
        Step {
            action: Action::Suspend { obj: 1, on: true },
            fault: Fault::None,
        },
        Step {
            action: Action::Delete { obj: 0 },
            fault: Fault::None,
        },
        Step {
            action: Action::Rename { from: 2, to: 0 },
            fault: Fault::None,
        },
    ];
    if let Err(e) = run_history(&steps) {
        panic!("{e}");
    }
}

// Histories with access requests (issue 19): whole states run through `sync::sync` with
// the clock advancing; see `tests/support/histories.rs` for what is checked.

mod with_requests {
    use expensify_operator::api::DecisionKind;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::support::histories::{
        ACCESS_SLOTS, Access, Approving, Ask, Change, Decider, Decision, History, Life, MAX_STEPS,
        Member, ORDINARY, PEOPLE, REQUEST_SLOTS, Requester, Rules, Step, run_history,
    };
    use super::support::origin::{Mode, Role, env_number};
    use super::{mode, role};

    fn person() -> impl Strategy<Value = usize> {
        // Mostly few people, so members and requests meet on the same person often.
        prop_oneof![
            4 => 0..3usize,
            3 => 3..ORDINARY,
            1 => ORDINARY..PEOPLE.len(),
        ]
    }

    fn member() -> impl Strategy<Value = Member> {
        (role(), prop::option::weighted(0.35, 1..600i64))
            .prop_map(|(role, until)| Member { role, until })
    }

    fn rules() -> impl Strategy<Value = Rules> {
        let all = vec![Role::User, Role::Auditor, Role::Admin];
        (
            // Mostly generous rules, so that requests are granted often.
            prop_oneof![
                2 => Just(all.clone()),
                1 => prop::sample::subsequence(all, 1..=3),
            ],
            prop::sample::select(vec![60i64, 240, 480, 600]),
            prop::bool::weighted(0.5),
            0..=2u8,
            prop::option::weighted(0.5, prop::sample::select(vec![60i64, 240])),
        )
            .prop_map(
                |(roles, max_minutes, require_reason, approvals, pending_minutes)| Rules {
                    roles,
                    max_minutes,
                    require_reason,
                    approvals,
                    pending_minutes,
                },
            )
    }

    fn access() -> impl Strategy<Value = Access> {
        (
            prop_oneof![3 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)],
            mode(),
            prop::bool::weighted(0.08),
            prop::collection::btree_map(person(), member(), 0..=3),
            prop::option::weighted(0.85, rules()),
        )
            .prop_map(|(policy, mode, suspend, members, rules)| Access {
                policy,
                mode,
                suspend,
                members,
                rules,
            })
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            5 => Just(Change::Keep),
            1 => Just(Change::Delete),
            3 => access().prop_map(Change::Put),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            prop_oneof![
                3 => Just(0i64),
                3 => 1..60i64,
                2 => 60..300i64,
                1 => 600..1500i64,
            ],
            prop::collection::vec(change(), ACCESS_SLOTS),
        )
            .prop_map(|(advance, accesses)| Step { advance, accesses })
    }

    /// The first step mostly creates both objects (requests need one to ask through).
    fn first_step() -> impl Strategy<Value = Step> {
        let put = prop_oneof![1 => Just(Change::Keep), 5 => access().prop_map(Change::Put)];
        prop::collection::vec(put, ACCESS_SLOTS).prop_map(|accesses| Step {
            advance: 0,
            accesses,
        })
    }

    fn decision() -> impl Strategy<Value = Decision> {
        (
            0..3usize,
            prop_oneof![
                4 => Just(Decider::Lead1),
                4 => Just(Decider::Lead2),
                1 => Just(Decider::Requester),
                1 => Just(Decider::Person),
                1 => Just(Decider::Stranger),
            ],
            prop_oneof![
                6 => Just(DecisionKind::Approve),
                1 => Just(DecisionKind::Deny),
                1 => Just(DecisionKind::Revoke),
            ],
        )
            .prop_map(|(after, by, kind)| Decision { after, by, kind })
    }

    fn life() -> impl Strategy<Value = Life> {
        let ask = (
            0..ACCESS_SLOTS,
            person(),
            role(),
            prop::sample::select(vec![30i64, 90, 240, 600]),
            prop::bool::weighted(0.9),
            prop_oneof![3 => Just(Requester::Person), 1 => Just(Requester::Lead1)],
        )
            .prop_map(|(access, person, role, minutes, reason, requester)| Ask {
                access,
                person,
                role,
                minutes,
                reason,
                requester,
            });
        (
            ask,
            0..MAX_STEPS,
            prop::option::weighted(0.3, 1..4usize),
            prop::collection::vec(decision(), 0..=3),
        )
            .prop_map(|(ask, born, deleted_after, decisions)| Life {
                ask,
                born,
                deleted_after,
                decisions,
            })
    }

    fn history() -> impl Strategy<Value = History> {
        (
            prop_oneof![Just(Approving::Merge), Just(Approving::Decisions)],
            first_step(),
            prop::collection::vec(step(), 0..MAX_STEPS),
            prop::collection::vec(prop::option::weighted(0.85, life()), REQUEST_SLOTS),
        )
            .prop_map(|(approving, first, rest, lives)| History {
                approving,
                steps: std::iter::once(first).chain(rest).collect(),
                lives,
            })
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: env_number("PROPTEST_CASES", 24),
            max_shrink_iters: env_number("RETURN_TO_ORIGIN_SHRINK", 256),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn return_to_origin_with_requests(history in history()) {
            run_history(&history).map_err(TestCaseError::fail)?;
        }
    }

    // Named histories: what every case should see at least once, whatever proptest draws.

    const NEW1: usize = 0;
    const PAT: usize = 2;

    fn rules_all(approvals: u8) -> Rules {
        Rules {
            roles: vec![Role::User, Role::Auditor, Role::Admin],
            max_minutes: 480,
            require_reason: true,
            approvals,
            pending_minutes: None,
        }
    }

    fn access_with(policy: usize, mode: Mode, members: &[(usize, Role)], approvals: u8) -> Access {
        Access {
            policy,
            mode,
            suspend: false,
            members: members
                .iter()
                .map(|(p, role)| {
                    (
                        *p,
                        Member {
                            role: *role,
                            until: None,
                        },
                    )
                })
                .collect(),
            rules: Some(rules_all(approvals)),
        }
    }

    fn ask(person: usize, role: Role, minutes: i64) -> Ask {
        Ask {
            access: 0,
            person,
            role,
            minutes,
            reason: true,
            requester: Requester::Person,
        }
    }

    fn run(history: &History) {
        if let Err(e) = run_history(history) {
            panic!("{e}");
        }
    }

    /// An object on Alpha that takes requests (no reason, no approvals needed).
    fn taking_requests(members: &[(usize, Role)]) -> Access {
        Access {
            rules: Some(Rules {
                require_reason: false,
                ..rules_all(0)
            }),
            ..access_with(0, Mode::Additive, members, 0)
        }
    }

    /// An object on Alpha that takes no requests.
    fn listing(mode: Mode, members: &[(usize, Role)]) -> Access {
        Access {
            rules: None,
            ..access_with(0, mode, members, 0)
        }
    }

    fn at(advance: i64, accesses: [Change; ACCESS_SLOTS]) -> Step {
        Step {
            advance,
            accesses: accesses.into(),
        }
    }

    /// A request of `person` for themselves through `access`, without a reason, created at
    /// step `born`, in the last request slot.
    fn asked_at(
        access: usize,
        (person, role, minutes): (usize, Role, i64),
        born: usize,
    ) -> Vec<Option<Life>> {
        vec![
            None,
            None,
            Some(Life {
                ask: Ask {
                    access,
                    reason: false,
                    ..ask(person, role, minutes)
                },
                born,
                deleted_after: None,
                decisions: Vec::new(),
            }),
        ]
    }

    /// Two overlapping requests for new1 and a member that lists pat while a request
    /// raises pat to admin; the first request to end takes nothing the other still asks.
    #[test]
    fn overlapping_requests_and_a_raised_member_return_to_origin() {
        let mut put = vec![Change::Keep; ACCESS_SLOTS];
        put[0] = Change::Put(access_with(0, Mode::Additive, &[(PAT, Role::Auditor)], 0));
        let keep = || vec![Change::Keep; ACCESS_SLOTS];
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                Step {
                    advance: 0,
                    accesses: put,
                },
                Step {
                    advance: 30,
                    accesses: keep(),
                },
                Step {
                    advance: 40,
                    accesses: keep(),
                },
                Step {
                    advance: 200,
                    accesses: keep(),
                },
            ],
            lives: vec![
                Some(Life {
                    ask: ask(NEW1, Role::User, 60),
                    born: 0,
                    deleted_after: None,
                    decisions: Vec::new(),
                }),
                Some(Life {
                    ask: ask(NEW1, Role::Admin, 240),
                    born: 1,
                    deleted_after: None,
                    decisions: Vec::new(),
                }),
                Some(Life {
                    ask: ask(PAT, Role::Admin, 90),
                    born: 0,
                    deleted_after: None,
                    decisions: Vec::new(),
                }),
            ],
        });
    }

    /// Requests that must change nobody (the protected person, Alpha's owner) beside an
    /// ObserveOnly object, and an active raise over a member whose end passes, until the
    /// rules stop offering its role.
    #[test]
    fn protected_observe_only_and_withdrawn_requests_return_to_origin() {
        const PROTECTED_PERSON: usize = 6;
        const ALPHA_OWNER: usize = 8;
        let member_until = |role, until| Member {
            role,
            until: Some(until),
        };
        let mut first = access_with(0, Mode::Additive, &[], 0);
        first.members.insert(NEW1, member_until(Role::User, 50));
        let observe = access_with(0, Mode::ObserveOnly, &[(PAT, Role::User)], 0);
        let mut put = vec![Change::Put(first.clone()), Change::Put(observe)];
        put.truncate(ACCESS_SLOTS);
        let withdrawn = Access {
            rules: Some(Rules {
                roles: vec![Role::User],
                ..rules_all(0)
            }),
            ..first
        };
        let mut edit = vec![Change::Keep; ACCESS_SLOTS];
        edit[0] = Change::Put(withdrawn);
        let keep = || vec![Change::Keep; ACCESS_SLOTS];
        let through = |access, person, role| Ask {
            access,
            ..ask(person, role, 240)
        };
        let life = |ask| Life {
            ask,
            born: 0,
            deleted_after: None,
            decisions: Vec::new(),
        };
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                Step {
                    advance: 0,
                    accesses: put,
                },
                Step {
                    advance: 60,
                    accesses: keep(),
                },
                Step {
                    advance: 10,
                    accesses: edit,
                },
            ],
            lives: vec![
                Some(life(through(0, NEW1, Role::Admin))),
                Some(life(through(0, PROTECTED_PERSON, Role::User))),
                Some(life(through(0, ALPHA_OWNER, Role::User))),
            ],
        });
    }

    /// Found by `return_to_origin_with_requests`: two requests for carl (not on Alpha),
    /// user and auditor; carl is added as auditor; the auditor request is deleted while
    /// the user one is still active. carl must go back to user, not stay auditor under
    /// the remaining request (the planner took the operator's own raise for a role carl
    /// had, which a request never lowers).
    #[test]
    fn the_end_of_the_higher_of_two_requests_leaves_the_lower_role() {
        let mut put = vec![Change::Keep; ACCESS_SLOTS];
        put[0] = Change::Put(access_with(0, Mode::Additive, &[], 0));
        let life = |role, deleted_after| Life {
            ask: ask(5, role, 30),
            born: 0,
            deleted_after,
            decisions: Vec::new(),
        };
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                Step {
                    advance: 0,
                    accesses: put,
                },
                Step {
                    advance: 0,
                    accesses: vec![Change::Keep; ACCESS_SLOTS],
                },
            ],
            lives: vec![
                Some(life(Role::User, None)),
                Some(life(Role::Auditor, Some(1))),
                None,
            ],
        });
    }

    /// Found by `return_to_origin_with_requests` (4,000 cases): aud (auditor) is set to user
    /// by `pa1`, which then turns ObserveOnly; a request on `pa0` raises aud to admin. At
    /// the request's end the ObserveOnly object, which lists aud as user, keeps no admin.
    #[test]
    fn a_request_s_raise_over_an_observe_only_demotion_ends() {
        let demotes_aud = |mode| Change::Put(listing(mode, &[(4, Role::User)]));
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                at(0, [Change::Keep, demotes_aud(Mode::Additive)]),
                at(0, [Change::Keep, demotes_aud(Mode::ObserveOnly)]),
                at(0, [Change::Put(taking_requests(&[])), Change::Keep]),
            ],
            lives: asked_at(0, (4, Role::Admin, 240), 2),
        });
    }

    /// Found by `return_to_origin_with_requests` (3,000 cases): `pa0` raises pat (user) to
    /// admin while `pa1`, suspended, lists pat as auditor. When `pa0` is deleted, the raise
    /// goes back to user: a suspended object keeps the person but writes nothing, so it
    /// keeps no raise it does not list (the model had counted its auditor as a floor).
    #[test]
    fn a_suspended_object_keeps_the_person_but_not_a_raise_it_does_not_list() {
        let raises_pat = listing(Mode::Additive, &[(PAT, Role::Admin)]);
        let suspended = Access {
            suspend: true,
            ..listing(Mode::Additive, &[(PAT, Role::Auditor)])
        };
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                at(0, [Change::Put(raises_pat), Change::Put(suspended)]),
                at(0, [Change::Delete, Change::Keep]),
            ],
            lives: vec![None, None, None],
        });
    }

    /// Found by `return_to_origin_with_requests` (3,000 cases): a request raises new1,
    /// whom `pa1` lists as auditor, to admin; after it ends, `pa0` lists new1 as user, so
    /// the two objects disagree (`Conflict`). The admin role nobody asks for any more must
    /// not outlive the request: it comes down to the highest role still asked (auditor).
    #[test]
    fn a_request_s_raise_does_not_outlive_it_into_a_conflict() {
        let takes_requests = taking_requests(&[(NEW1, Role::Auditor)]);
        let lists_new1_as_user = listing(Mode::Additive, &[(NEW1, Role::User)]);
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                at(0, [Change::Keep, Change::Put(takes_requests)]),
                at(0, [Change::Keep, Change::Keep]),
                at(120, [Change::Put(lists_new1_as_user), Change::Keep]),
            ],
            lives: asked_at(1, (NEW1, Role::Admin, 90), 1),
        });
    }

    /// Found by `return_to_origin_with_requests` in CI: a request adds bob to Alpha as
    /// user through `pa1`; `pa0`, ObserveOnly on Alpha, then lists bob as auditor. When the
    /// request ends, its entry moves to `pa0`, which keeps bob (it counts as asking) and
    /// writes nothing; once `pa0` is deleted, bob is revoked.
    #[test]
    fn a_person_a_request_added_stays_with_an_observe_only_object_that_lists_them() {
        let observes_bob = listing(Mode::ObserveOnly, &[(3, Role::Auditor)]);
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                at(0, [Change::Keep, Change::Put(taking_requests(&[]))]),
                at(0, [Change::Put(observes_bob), Change::Keep]),
            ],
            lives: asked_at(1, (3, Role::User, 30), 0),
        });
    }

    /// Review F4: a request adds bob to Alpha as admin through `pa1`; `pa0`, ObserveOnly,
    /// lists bob as user. When the request ends, bob goes back to what the remaining claim
    /// asks (user), not left at the request's admin; once `pa0` goes, bob is revoked.
    #[test]
    fn a_person_a_request_added_comes_down_to_what_an_observe_only_object_lists() {
        let observes_bob = listing(Mode::ObserveOnly, &[(3, Role::User)]);
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                at(0, [Change::Keep, Change::Put(taking_requests(&[]))]),
                at(0, [Change::Put(observes_bob), Change::Keep]),
                at(60, [Change::Keep, Change::Keep]),
            ],
            lives: asked_at(1, (3, Role::Admin, 30), 0),
        });
    }

    /// Review F3: pat (user on Alpha) is raised to auditor by `pa0`, which then turns
    /// ObserveOnly, still listing auditor; a request through `pa1` raises pat to admin,
    /// updating `pa0`'s entry. When the request ends pat comes down to auditor, what
    /// `pa0` keeps, not past it to user.
    #[test]
    fn a_request_s_raise_over_an_observe_only_raise_comes_down_to_it() {
        let raises_pat = listing(Mode::Additive, &[(PAT, Role::Auditor)]);
        let observes_pat = listing(Mode::ObserveOnly, &[(PAT, Role::Auditor)]);
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                at(
                    0,
                    [Change::Put(raises_pat), Change::Put(taking_requests(&[]))],
                ),
                at(0, [Change::Put(observes_pat), Change::Keep]),
                at(0, [Change::Keep, Change::Keep]),
                at(90, [Change::Keep, Change::Keep]),
            ],
            lives: asked_at(1, (PAT, Role::Admin, 60), 2),
        });
    }

    /// Found by `return_to_origin_with_requests` (4,000 cases) once the model's freeze
    /// leniency became per policy: `pa1` on Beta grants aud as user while a request raises
    /// her to auditor (one grant, recorded in `pa1`'s entry); then `pa1` moves to Alpha,
    /// suspended, and the request is deleted. A suspended object freezes its entries on
    /// every policy, not only the one it names now: aud stays auditor on Beta.
    #[test]
    fn a_suspended_object_freezes_its_entries_on_a_policy_it_left() {
        let beta_with_requests = Access {
            rules: Some(Rules {
                require_reason: false,
                ..rules_all(0)
            }),
            ..access_with(1, Mode::Additive, &[(4, Role::User)], 0)
        };
        let suspended_on_alpha = Access {
            suspend: true,
            ..listing(Mode::Additive, &[])
        };
        let mut lives = asked_at(1, (4, Role::Auditor, 240), 0);
        if let Some(Some(life)) = lives.last_mut() {
            life.deleted_after = Some(2);
        }
        run(&History {
            approving: Approving::Merge,
            steps: vec![
                at(0, [Change::Keep, Change::Keep]),
                at(0, [Change::Keep, Change::Put(beta_with_requests)]),
                at(0, [Change::Keep, Change::Put(suspended_on_alpha)]),
            ],
            lives,
        });
    }

    /// Found by `return_to_origin_with_requests` on the first fix: carl (user on Gamma) is
    /// raised to auditor by `pa1`, Authoritative; `pa0`, Authoritative on Gamma too, is
    /// suspended and takes a request for carl as user; when `pa0` wakes up, `pa1` is
    /// Blocked and frozen, and the request must not lower the role `pa1`'s entry holds.
    #[test]
    fn a_request_does_not_lower_a_role_a_blocked_object_holds() {
        let gamma = |suspend, members: &[(usize, Role)], approvals| Access {
            suspend,
            ..access_with(2, Mode::Authoritative, members, approvals)
        };
        let put = vec![
            Change::Put(Access {
                rules: Some(Rules {
                    require_reason: false,
                    ..rules_all(0)
                }),
                ..gamma(true, &[], 0)
            }),
            Change::Put(Access {
                rules: None,
                ..gamma(false, &[(5, Role::Auditor)], 0)
            }),
        ];
        run(&History {
            approving: Approving::Decisions,
            steps: vec![
                Step {
                    advance: 0,
                    accesses: vec![Change::Keep; ACCESS_SLOTS],
                },
                Step {
                    advance: 0,
                    accesses: put,
                },
            ],
            lives: vec![
                None,
                None,
                Some(Life {
                    ask: Ask {
                        reason: false,
                        ..ask(5, Role::User, 30)
                    },
                    born: 0,
                    deleted_after: None,
                    decisions: Vec::new(),
                }),
            ],
        });
    }

    /// With decisions: one request approved by two approvers, one denied, one left
    /// pending until it expires, and an active one deleted early, on an Authoritative
    /// object.
    #[test]
    fn approved_denied_expired_and_deleted_requests_return_to_origin() {
        let mut put = vec![Change::Keep; ACCESS_SLOTS];
        put[0] = Change::Put(access_with(1, Mode::Authoritative, &[(3, Role::User)], 2));
        let keep = || vec![Change::Keep; ACCESS_SLOTS];
        let approve = |after, by| Decision {
            after,
            by,
            kind: DecisionKind::Approve,
        };
        run(&History {
            approving: Approving::Decisions,
            steps: vec![
                Step {
                    advance: 0,
                    accesses: put,
                },
                Step {
                    advance: 10,
                    accesses: keep(),
                },
                Step {
                    advance: 10,
                    accesses: keep(),
                },
                Step {
                    advance: 1500,
                    accesses: keep(),
                },
            ],
            lives: vec![
                Some(Life {
                    ask: ask(NEW1, Role::Admin, 240),
                    born: 0,
                    deleted_after: Some(2),
                    decisions: vec![approve(0, Decider::Lead1), approve(1, Decider::Lead2)],
                }),
                Some(Life {
                    ask: ask(PAT, Role::User, 90),
                    born: 0,
                    deleted_after: None,
                    decisions: vec![
                        Decision {
                            after: 0,
                            by: Decider::Lead1,
                            kind: DecisionKind::Deny,
                        },
                        approve(1, Decider::Lead2),
                    ],
                }),
                Some(Life {
                    ask: ask(1, Role::User, 30),
                    born: 1,
                    deleted_after: None,
                    decisions: vec![approve(0, Decider::Requester)],
                }),
            ],
        });
    }
}
