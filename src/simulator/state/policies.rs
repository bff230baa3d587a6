//! The two read jobs: the policy list and the policy getter (rosters), shaped as
//! Expensify's recorded answers.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SimState;
use super::job::{JobInfo, lenient_bool};
use super::roster::roster_json;
use super::wire::{SimResponse, answer, success};
use crate::email;
use crate::expensify::Role;
use crate::simulator::seed::SeedAccount;

impl SimState {
    pub(super) fn policy_list(
        &self,
        caller: &SeedAccount,
        settings: Option<&Map<String, Value>>,
    ) -> SimResponse {
        let admin_only = lenient_bool(settings.and_then(|s| s.get("adminOnly")), false);
        if let Some(user) = settings
            .and_then(|s| s.get("userEmail"))
            .and_then(Value::as_str)
            && email::normalize(user) != caller.email
        {
            return answer(
                500,
                format!("Not authorized to authenticate as user {user}"),
            );
        }
        // Field order as in Expensify's documented sample; the shape sits where it is built.
        #[allow(clippy::items_after_statements)]
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Entry<'a> {
            output_currency: &'a str,
            owner: &'a str,
            role: &'static str,
            name: &'a str,
            id: &'a str,
            #[serde(rename = "type")]
            plan: &'a str,
        }
        let list: Vec<Entry> = self
            .policies
            .values()
            .filter_map(|p| {
                let role = p.members.get(&caller.email)?.role;
                (!admin_only || role == Role::Admin).then_some(Entry {
                    output_currency: &p.output_currency,
                    owner: &p.owner,
                    role: role.as_str(),
                    name: &p.name,
                    id: &p.id,
                    plan: &p.plan,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("policyList".to_string(), json!(list));
        success(body)
    }

    pub(super) fn policy_getter(
        &self,
        caller: &SeedAccount,
        settings: Option<&Map<String, Value>>,
        info: &mut JobInfo,
    ) -> SimResponse {
        let Some(ids) = settings
            .and_then(|s| s.get("policyIDList"))
            .and_then(Value::as_array)
            .and_then(|ids| {
                ids.iter()
                    .map(|id| id.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
        else {
            return answer(410, "Required parameter 'policyIDList' is missing");
        };
        info.items = ids.len();
        let fields: Option<Vec<&str>> = settings
            .and_then(|s| s.get("fields"))
            .and_then(Value::as_array)
            .and_then(|f| f.iter().map(Value::as_str).collect());
        let fields = match fields {
            Some(fields)
                if !fields.is_empty()
                    && fields.iter().all(|f| {
                        matches!(
                            *f,
                            "employees" | "categories" | "tags" | "reportFields" | "tax"
                        )
                    }) =>
            {
                fields
            }
            _ => return answer(410, "Argument 'fields' is missing or malformed"),
        };
        let mut info_map = Map::new();
        for id in &ids {
            let Some(policy) = self.policies.get(id) else {
                return answer(410, format!("Could not load policy '{id}'"));
            };
            if policy.members.get(&caller.email).map(|m| m.role) != Some(Role::Admin) {
                return answer(403, format!("You are not an admin of policy '{id}'"));
            }
            let mut sections = Map::new();
            for field in &fields {
                let value = match *field {
                    "employees" => roster_json(policy),
                    "categories" | "reportFields" => json!([]),
                    _ => json!({}),
                };
                sections.insert((*field).to_string(), value);
            }
            info_map.insert(id.clone(), Value::Object(sections));
        }
        let mut body = Map::new();
        body.insert("policyInfo".to_string(), Value::Object(info_map));
        success(body)
    }
}
