//! The identity admission policy's CEL, evaluated: the exact expressions the chart ships
//! (read from manifests/install.yaml, which CI keeps identical to the chart's render)
//! against sample admission requests, with a CEL interpreter (the `cel` crate, with the
//! strings extension Kubernetes also enables). Evaluated as the API server does: match
//! conditions first (all true, or the policy does not apply), then the variables in
//! order, then each validation; an expression that fails to evaluate rejects
//! (`failurePolicy: Fail`). Also the CRDs' own CEL rules (`x-kubernetes-validations`).

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Program, Value as CelValue};
use serde_json::{Value, json};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One validation: its expression, static message and optional message expression.
pub struct Validation {
    source: String,
    expression: Program,
    message: String,
    message_expression: Option<Program>,
}

/// The policy's expressions, compiled.
pub struct Policy {
    env: Arc<Env>,
    match_conditions: Vec<Program>,
    variables: Vec<(String, Program)>,
    validations: Vec<Validation>,
}

/// What the API server would do with a request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// A match condition is false: the policy does not apply.
    NotMatched,
    Allowed,
    /// The messages of the validations that failed (or could not be evaluated).
    Denied(Vec<String>),
}

impl Verdict {
    pub fn denied_with(&self, text: &str) -> bool {
        matches!(self, Verdict::Denied(messages) if messages.iter().any(|m| m.contains(text)))
    }
}

pub fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{ROOT}/manifests/install.yaml")).unwrap();
    serde_saphyr::from_str_multiple(&text).unwrap()
}

pub fn shipped_policy() -> Value {
    documents()
        .into_iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .expect("manifests/install.yaml has the identity policy")
}

pub fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_string()
}

pub fn env() -> Arc<Env> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings).unwrap();
    Arc::new(env)
}

impl Policy {
    /// The shipped policy; `prefix` replaces the username prefix the chart templates in
    /// (the default render has none).
    pub fn shipped(prefix: Option<&str>) -> Self {
        let spec = shipped_policy()["spec"].clone();
        let env = env();
        let compile = |source: &str| {
            env.compile(source)
                .unwrap_or_else(|e| panic!("{source}: {e}"))
        };
        let match_conditions = spec["matchConditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| compile(&text(&c["expression"])))
            .collect();
        let variables = spec["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let name = text(&v["name"]);
                let source = match (name.as_str(), prefix) {
                    ("prefix", Some(prefix)) => format!("'{prefix}'"),
                    _ => text(&v["expression"]),
                };
                (name, compile(&source))
            })
            .collect();
        let validations = spec["validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Validation {
                source: text(&v["expression"]),
                expression: compile(&text(&v["expression"])),
                message: text(&v["message"]),
                message_expression: v.get("messageExpression").map(|m| compile(&text(m))),
            })
            .collect();
        Self {
            env: env.clone(),
            match_conditions,
            variables,
            validations,
        }
    }

    pub fn admit(&self, request: &Value, object: &Value, old_object: &Value) -> Verdict {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable("request", request).unwrap();
        context.add_variable("object", object).unwrap();
        context.add_variable("oldObject", old_object).unwrap();
        for condition in &self.match_conditions {
            match condition.execute(&context) {
                Ok(CelValue::Bool(true)) => {}
                Ok(CelValue::Bool(false)) => return Verdict::NotMatched,
                other => return Verdict::Denied(vec![format!("match condition: {other:?}")]),
            }
        }
        let mut variables: HashMap<String, CelValue> = HashMap::new();
        for (name, program) in &self.variables {
            context.add_variable_from_value("variables", variables.clone());
            match program.execute(&context) {
                Ok(value) => {
                    variables.insert(name.clone(), value);
                }
                // Kubernetes evaluates variables lazily: an error counts only where used.
                Err(error) => eprintln!("variable {name}: {error:?}"),
            }
        }
        context.add_variable_from_value("variables", variables);
        let mut denied = Vec::new();
        for validation in &self.validations {
            match validation.expression.execute(&context) {
                Ok(CelValue::Bool(true)) => {}
                Ok(CelValue::Bool(false)) => {
                    let message = validation
                        .message_expression
                        .as_ref()
                        .and_then(|m| match m.execute(&context) {
                            Ok(CelValue::String(s)) => Some(s.to_string()),
                            _ => None,
                        })
                        .unwrap_or_else(|| validation.message.clone());
                    denied.push(message);
                }
                other => denied.push(format!(
                    "evaluation failed ({other:?}) of {}",
                    validation.source
                )),
            }
        }
        if denied.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Denied(denied)
        }
    }

    pub fn create(&self, user: &Value, resource: &str, spec: Value) -> Verdict {
        let object = object(resource, spec);
        self.admit(
            &admission_request("CREATE", user, resource),
            &object,
            &Value::Null,
        )
    }
}

pub fn user(username: &str, groups: &[&str]) -> Value {
    json!({"username": username, "uid": "u-1", "groups": groups})
}

pub fn admission_request(operation: &str, user: &Value, resource: &str) -> Value {
    json!({
        "operation": operation,
        "resource": {"group": "expensify.gitops.dev", "version": "v1alpha1", "resource": resource},
        "userInfo": user,
    })
}

pub fn object(resource: &str, spec: Value) -> Value {
    let kind = if resource == "accessrequests" {
        "AccessRequest"
    } else {
        "AccessDecision"
    };
    let mut object = json!({
        "apiVersion": "expensify.gitops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "finance"},
    });
    if !spec.is_null() {
        object["spec"] = spec;
    }
    object
}

pub const REQUESTS: &str = "accessrequests";
pub const DECISIONS: &str = "accessdecisions";

/// The `x-kubernetes-validations` rules of the CRD for `resource` (`crds/RESOURCE.yaml`)
/// on its `spec`, evaluated as the API server does on an update: `self` the new spec,
/// `oldSelf` the old one. The messages of the rules that fail; empty: allowed.
pub fn spec_rules_refuse(resource: &str, old_spec: &Value, new_spec: &Value) -> Vec<String> {
    let crd: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(format!("{ROOT}/crds/{resource}.yaml")).unwrap(),
    )
    .unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = spec["x-kubernetes-validations"]
        .as_array()
        .expect("the CRD has rules on spec");
    let env = env();
    let mut context = Context::with_env(env.clone());
    context.add_variable("self", new_spec).unwrap();
    context.add_variable("oldSelf", old_spec).unwrap();
    rules
        .iter()
        .filter(|rule| {
            let program = env.compile(&text(&rule["rule"])).unwrap();
            !matches!(program.execute(&context), Ok(CelValue::Bool(true)))
        })
        .map(|rule| text(&rule["message"]))
        .collect()
}
