//! Fuzz target of the ECS event parser: SQS message bodies, from the fixture events by
//! mutation, read as the source reads them and placed as it places them.

use super::EcsSourceConfig;
use super::mapping::tests::{host, web_definition};
use super::mapping::{Placement, place};
use super::parse::tests::{BRIDGE, RUNNING, STOP_INTENT, STOPPED, port};
use super::parse::{ContainerDefinition, Message, NetworkMode, TaskDefinition, parse_message};
use crate::fuzz::{JSON_TOKENS, fuzz, outcome, shape};
use crate::registry::{health_bounds, validate};

#[test]
fn fuzz_ecs_events() {
    let definition = TaskDefinition {
        family: "api".into(),
        network_mode: NetworkMode::Awsvpc,
        containers: vec![ContainerDefinition {
            name: "api".into(),
            essential: true,
            ports: vec![port(8080)],
            health_check: true,
        }],
        tags: [("dns".to_owned(), "pay".to_owned())].into(),
    };
    let config = EcsSourceConfig::new(vec!["prod".into()], "internal");
    let bridge = web_definition(NetworkMode::Bridge);
    let host = host();
    let seeds = [RUNNING, STOP_INTENT, STOPPED, BRIDGE]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let mut tokens = JSON_TOKENS.to_vec();
    tokens.extend([
        &b"\"ECS Task State Change\""[..],
        b"\"RUNNING\"",
        b"\"STOPPED\"",
        b"\"HEALTHY\"",
        b"\"eni\"",
        b"\"arn:aws:ecs:us-east-1:1:task/prod/\"",
        b"\"2024-01-01T00:00:00Z\"",
    ]);
    fuzz("ecs_events", seeds, &tokens, |body| {
        let body = String::from_utf8_lossy(body);
        let facts = match parse_message(&body) {
            Err(error) => return Ok(outcome(shape(&error.to_string()))),
            Ok(Message::Other { .. }) => return Ok(outcome("other")),
            Ok(Message::Task { facts, .. }) => facts,
        };
        let summary = (
            facts.task_id().len(),
            facts.is_terminal(),
            facts.family().len(),
        );
        // As an awsvpc task, and as a bridge task on a container instance.
        let awsvpc = place(&facts, &definition, &config, Some("us-east-1"), None);
        let on_host = place(&facts, &bridge, &config, Some("us-east-1"), Some(&host));
        let mut seen = Vec::new();
        for placement in [awsvpc, on_host] {
            seen.push(match placement {
                Placement::Out(out) => format!("{out:?}"),
                Placement::In(key, spec) => {
                    // What the source registers must pass the registry's own input rules.
                    validate::service_name(&key.service).map_err(|e| e.to_string())?;
                    validate::instance_id(&key.id).map_err(|e| e.to_string())?;
                    validate::attributes(&spec.attributes).map_err(|e| e.to_string())?;
                    validate::ports(spec.ports()).map_err(|e| e.to_string())?;
                    health_bounds(&spec).map_err(|e| e.to_string())?;
                    let ports = spec.ports().len();
                    format!("in {} {:?} {ports}", spec.ipv4.is_some(), spec.port)
                }
            });
        }
        Ok(outcome((summary, seen)))
    });
}
