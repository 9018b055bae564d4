//! Cloud Map operations. muster applies every change before answering, so each
//! operation is recorded already `SUCCESS`; the most recent ones are kept in memory
//! (not across restarts) so `GetOperation` and `ListOperations` work as clients expect.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::error::CloudMapError;
use super::input::{Input, paginate};
use super::shapes::{random_chars, timestamp};
use crate::api::ApiState;
use crate::api::auth::Principal;
use crate::registry::Change;

/// Operations remembered at most.
const KEPT: usize = 10_000;

/// One completed operation.
struct Operation {
    id: String,
    kind: &'static str,
    /// The namespace it acted on, so `GetOperation` can be authorized after the
    /// namespace or service is gone.
    namespace: String,
    time: SystemTime,
    /// `NAMESPACE` / `SERVICE` / `INSTANCE` → id.
    targets: BTreeMap<&'static str, String>,
}

/// The recent operations, newest last.
#[derive(Default)]
pub struct Operations(Mutex<VecDeque<Operation>>);

impl Operations {
    /// Records a completed operation on `namespace` and returns its id.
    pub fn record(
        &self,
        kind: &'static str,
        namespace: &str,
        targets: &[(&'static str, &str)],
    ) -> String {
        // Cloud Map's form: 32 and 8 characters, e.g. `4yejorelbukcjzpnr6tlmrghsjwpngf4-k95yg2u7`.
        let id = format!("{}-{}", random_chars(32), random_chars(8));
        let operation = Operation {
            id: id.clone(),
            kind,
            namespace: namespace.to_owned(),
            time: SystemTime::now(),
            targets: targets.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        };
        let mut operations = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if operations.len() == KEPT {
            operations.pop_front();
        }
        operations.push_back(operation);
        id
    }

    /// The namespace operation `id` acted on.
    pub fn namespace_of(&self, id: &str) -> Option<String> {
        let operations = self.0.lock().unwrap_or_else(|e| e.into_inner());
        operations
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.namespace.clone())
    }
}

/// Applies `change` durably, records it as a completed operation of `kind` on `targets`
/// in `namespace`, and answers `{"OperationId": ...}`: the tail of every asynchronous
/// Cloud Map call.
pub async fn apply(
    state: &ApiState,
    change: Change,
    kind: &'static str,
    namespace: &str,
    targets: &[(&'static str, &str)],
) -> Result<Value, CloudMapError> {
    state.registry.apply_durable(change).await?;
    let operation = state.cloudmap.operations.record(kind, namespace, targets);
    Ok(json!({"OperationId": operation}))
}

fn shape(operation: &Operation, account: &str) -> Value {
    json!({
        "Id": operation.id,
        "OwnerAccount": account,
        "Type": operation.kind,
        "Status": "SUCCESS",
        "CreateDate": timestamp(operation.time),
        "UpdateDate": timestamp(operation.time),
        "Targets": operation.targets,
    })
}

pub fn get(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let id = input.string("OperationId")?;
    let operations = state
        .cloudmap
        .operations
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let operation = operations
        .iter()
        .find(|o| o.id == id)
        .ok_or_else(|| CloudMapError::new("OperationNotFound", format!("no operation {id:?}")))?;
    Ok(json!({"Operation": shape(operation, &state.cloudmap.config.account)}))
}

/// The recent operations on namespaces `principal` may call ListOperations on.
pub fn list(state: &ApiState, input: Input, principal: &Principal) -> Result<Value, CloudMapError> {
    let (limit, start) = input.page(100, 100)?;
    let filters = input
        .objects("Filters")?
        .iter()
        .map(Filter::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let operations = state
        .cloudmap
        .operations
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let matching: Vec<Value> = operations
        .iter()
        .rev()
        .filter(|o| principal.may_call("ListOperations", Some(&o.namespace)))
        .filter(|o| filters.iter().all(|f| f.matches(o)))
        .map(|o| json!({"Id": o.id, "Status": "SUCCESS"}))
        .collect();
    let (page, next) = paginate(matching, limit, start);
    let mut output = json!({"Operations": page});
    if let Some(next) = next {
        output["NextToken"] = json!(next);
    }
    Ok(output)
}

/// An `OperationFilter`.
struct Filter {
    name: String,
    condition: String,
    values: Vec<String>,
}

impl Filter {
    fn parse(input: &Input) -> Result<Self, CloudMapError> {
        let name = input.string("Name")?.to_owned();
        if ![
            "NAMESPACE_ID",
            "SERVICE_ID",
            "STATUS",
            "TYPE",
            "UPDATE_DATE",
        ]
        .contains(&name.as_str())
        {
            return Err(CloudMapError::invalid(format!(
                "Filters.Name {name:?} is not an operation filter"
            )));
        }
        let condition = input
            .optional_string("Condition")?
            .unwrap_or("EQ")
            .to_owned();
        let values = input.string_list("Values")?;
        let expected = match condition.as_str() {
            "EQ" => values.len() == 1,
            "IN" => !values.is_empty(),
            "BETWEEN" => values.len() == 2 && name == "UPDATE_DATE",
            _ => false,
        };
        if !expected {
            return Err(CloudMapError::invalid(format!(
                "Filters: {name} {condition} with {} values is not valid",
                values.len()
            )));
        }
        Ok(Self {
            name,
            condition,
            values,
        })
    }

    fn matches(&self, operation: &Operation) -> bool {
        let value = match self.name.as_str() {
            "NAMESPACE_ID" => operation.targets.get("NAMESPACE").cloned(),
            "SERVICE_ID" => operation.targets.get("SERVICE").cloned(),
            "STATUS" => Some("SUCCESS".to_owned()),
            "TYPE" => Some(operation.kind.to_owned()),
            _ => {
                let bounds: Vec<f64> = self.values.iter().filter_map(|v| v.parse().ok()).collect();
                let time = timestamp(operation.time);
                return bounds.len() == 2 && bounds[0] <= time && time <= bounds[1];
            }
        };
        value.is_some_and(|v| {
            self.values.contains(&v) && (self.condition != "EQ" || self.values[0] == v)
        })
    }
}
