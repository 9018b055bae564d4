//! `muster ls` and `muster show`: the REST API's read side as tables or JSON.

use serde_json::Value;

use super::http::{Api, segment, service_path};
use super::settings::Output;
use super::table::Table;
use super::{Failure, Target, print_json};

/// `ls`: namespaces, a namespace's services, or a service's instances.
pub async fn ls(api: &Api, target: Option<&str>) -> Result<(), Failure> {
    let target = target.map(|t| Target::parse(t, 1, 2)).transpose()?;
    let Some(target) = target else {
        let answer = api.get("/v1/namespaces").await?;
        let columns = [
            ("NAMESPACE", "name"),
            ("SERVICES", "services"),
            ("INSTANCES", "instances"),
        ];
        return emit(api, &answer, || list(&answer, "namespaces", &columns));
    };
    let Some(service) = &target.service else {
        let path = format!("/v1/namespaces/{}/services", segment(&target.namespace));
        let answer = api.get(&path).await?;
        let columns = [
            ("SERVICE", "name"),
            ("INSTANCES", "instances"),
            ("HEALTHY", "healthy"),
        ];
        return emit(api, &answer, || list(&answer, "services", &columns));
    };
    let answer = api.get(&service_path(&target.namespace, service)).await?;
    emit(api, &answer, || instance_table(&answer, false))
}

/// `show`: a service with its policy and instances, or one instance field by field.
pub async fn show(api: &Api, target: &str) -> Result<(), Failure> {
    let target = Target::parse(target, 2, 3)?;
    let service = target.service.as_deref().unwrap_or_default();
    let answer = api.get(&service_path(&target.namespace, service)).await?;
    let Some(id) = &target.id else {
        if api.output == Output::Json {
            print_json(&answer);
            return Ok(());
        }
        println!(
            "service   {}.{}",
            text(&answer, "name"),
            text(&answer, "namespace")
        );
        println!("revision  {}", text(&answer, "revision"));
        println!("policy    {}", policy_line(&answer["policy"]));
        println!();
        instance_table(&answer, true).print();
        return Ok(());
    };
    let instance = items(&answer, "instances")
        .iter()
        .find(|i| i["id"].as_str() == Some(id.as_str()))
        .ok_or_else(|| {
            Failure::Rejected(
                404,
                format!(
                    "instance {id:?} does not exist in {}/{service}",
                    target.namespace
                ),
            )
        })?;
    if api.output == Output::Json {
        print_json(instance);
        return Ok(());
    }
    let mut table = Table::new(&["FIELD", "VALUE"]);
    if let Some(fields) = instance.as_object() {
        for (key, value) in fields {
            table.row(vec![key.clone(), cell(value)]);
        }
    }
    table.print();
    Ok(())
}

/// The JSON as it came, or the table `build` makes of it.
fn emit(api: &Api, answer: &Value, build: impl FnOnce() -> Table) -> Result<(), Failure> {
    match api.output {
        Output::Json => print_json(answer),
        Output::Table => build().print(),
    }
    Ok(())
}

/// The list at `key` of an answer, a column per (header, field).
fn list(answer: &Value, key: &str, columns: &[(&str, &str)]) -> Table {
    let header: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    let mut table = Table::new(&header);
    for item in items(answer, key) {
        table.row(columns.iter().map(|(_, field)| text(item, field)).collect());
    }
    table
}

/// A service's instances; `wide` adds the DNS label and attributes.
fn instance_table(service: &Value, wide: bool) -> Table {
    let mut header = vec!["ID", "ADDRESS", "PORT", "HEALTH", "DRAINING", "SOURCE"];
    if wide {
        header.extend(["DNS LABEL", "ATTRIBUTES"]);
    }
    let mut table = Table::new(&header);
    for instance in items(service, "instances") {
        let mut row = vec![
            text(instance, "id"),
            address(instance),
            text(instance, "port"),
            health(instance),
            if instance["draining"] == true {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            text(instance, "source"),
        ];
        if wide {
            row.extend([text(instance, "dns_label"), cell(&instance["attributes"])]);
        }
        table.row(row);
    }
    table
}

/// `healthy`, or `unhealthy` and why when the API says.
pub fn health(instance: &Value) -> String {
    if instance["healthy"] == true {
        return "healthy".to_owned();
    }
    let why = if let Some(reason) = instance["check_reason"].as_str() {
        reason.to_owned()
    } else if instance["heartbeat_ok"] == false {
        "heartbeat expired".to_owned()
    } else if instance["reported_healthy"] == false {
        "reported unhealthy".to_owned()
    } else {
        String::new()
    };
    if why.is_empty() {
        "unhealthy".to_owned()
    } else {
        format!("unhealthy ({why})")
    }
}

/// The IPv4 and IPv6 addresses, comma-separated.
pub fn address(instance: &Value) -> String {
    let addresses: Vec<&str> = ["ipv4", "ipv6"]
        .iter()
        .filter_map(|k| instance[*k].as_str())
        .collect();
    if addresses.is_empty() {
        "-".to_owned()
    } else {
        addresses.join(",")
    }
}

/// The answer policy on one line: `max_answers=8 when_all_unhealthy=serve_all ...`.
pub fn policy_line(policy: &Value) -> String {
    let mut parts = Vec::new();
    for key in [
        "max_answers",
        "when_all_unhealthy",
        "routing",
        "protocol",
        "deregister_after",
    ] {
        if !policy[key].is_null() {
            parts.push(format!("{key}={}", cell(&policy[key])));
        }
    }
    if let Some(records) = policy["records"].as_object() {
        let ttls: Vec<String> = records
            .iter()
            .filter(|(_, ttl)| !ttl.is_null())
            .map(|(kind, ttl)| format!("{kind}:{ttl}"))
            .collect();
        parts.push(format!("ttl={}", ttls.join(",")));
    }
    parts.join(" ")
}

/// The array at `key`, or none.
pub fn items<'v>(answer: &'v Value, key: &str) -> &'v [Value] {
    answer[key]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A field as a cell: strings bare, null as `-`.
pub fn text(value: &Value, key: &str) -> String {
    cell(&value[key])
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Object(map) if map.is_empty() => "-".to_owned(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}
