use super::*;

pub const RUNNING: &str =
    include_str!("../../../tests/fixtures/ecs/ecs-task-state-change.running.json");
pub const STOP_INTENT: &str =
    include_str!("../../../tests/fixtures/ecs/ecs-task-state-change.stop-intent.json");
pub const STOPPED: &str =
    include_str!("../../../tests/fixtures/ecs/ecs-task-state-change.stopped.json");

/// The task of a fixture event.
pub fn facts(body: &str) -> TaskFacts {
    match parse_message(body).unwrap() {
        Message::Task { facts, .. } => *facts,
        other => panic!("not a task event: {other:?}"),
    }
}

#[test]
fn reads_the_running_event() {
    let Message::Task { facts, time } = parse_message(RUNNING).unwrap() else {
        panic!("not a task event");
    };
    assert_eq!(facts.task_id(), "5f1c2b7e9a0d4c3b8e6f1a2b3c4d5e6f");
    assert_eq!(facts.cluster, "prod");
    assert_eq!(facts.ecs_service(), Some("api"));
    assert_eq!(facts.family(), "api");
    assert_eq!(facts.last_status, "RUNNING");
    assert_eq!(facts.health.as_deref(), Some("HEALTHY"));
    assert_eq!(facts.version, Some(5));
    assert_eq!(facts.ipv4, Some(Ipv4Addr::new(10, 1, 2, 3)));
    assert_eq!(facts.ipv6, None);
    assert_eq!(facts.availability_zone.as_deref(), Some("eu-west-1a"));
    assert!(facts.bindings.is_empty());
    assert!(!facts.is_terminal());
    assert_eq!(time, Some(timestamp("2026-11-26T12:00:00Z").unwrap()));
    assert_eq!(facts.updated_at, timestamp("2026-11-26T12:00:00.000Z"));
}

#[test]
fn stop_intent_and_stopped_are_terminal() {
    let intent = facts(STOP_INTENT);
    assert_eq!(
        (intent.desired_status.as_str(), intent.last_status.as_str()),
        ("STOPPED", "RUNNING")
    );
    assert!(intent.is_terminal());
    assert_eq!(intent.version, Some(6));
    let stopped = facts(STOPPED);
    assert!(stopped.is_terminal());
    assert_eq!(stopped.version, Some(8));
}

#[test]
fn other_events_and_garbage() {
    let other = r#"{"detail-type": "ECS Container Instance State Change", "detail": {}}"#;
    assert!(
        matches!(parse_message(other), Ok(Message::Other { detail_type }) if detail_type.contains("Instance"))
    );
    assert!(parse_message("not json").is_err());
    assert!(parse_message("{}").is_err());
    let no_arn = RUNNING.replace("\"taskArn\"", "\"taskArnX\"");
    let error = parse_message(&no_arn).unwrap_err().to_string();
    assert!(error.contains("taskArn"), "{error}");
}

#[test]
fn optional_fields_may_be_missing_or_odd() {
    let mut event: serde_json::Value = serde_json::from_str(RUNNING).unwrap();
    let detail = event["detail"].as_object_mut().unwrap();
    for key in [
        "version",
        "healthStatus",
        "attachments",
        "updatedAt",
        "availabilityZone",
        "group",
    ] {
        detail.remove(key);
    }
    detail.insert("someNewField".into(), serde_json::json!({"x": 1}));
    detail["containers"][0]["networkInterfaces"][0]["ipv6Address"] = "2600:1f18::5".into();
    detail["containers"][0]["networkBindings"] = serde_json::json!([{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 32768, "protocol": "tcp"}]);
    let facts = facts(&event.to_string());
    assert_eq!(facts.version, None);
    assert_eq!(facts.health, None);
    assert_eq!(facts.ecs_service(), None);
    assert_eq!(
        facts.ipv4,
        Some(Ipv4Addr::new(10, 1, 2, 3)),
        "from the container's interface"
    );
    assert_eq!(facts.ipv6, Some("2600:1f18::5".parse().unwrap()));
    assert_eq!(
        facts.bindings,
        [Binding {
            container: "api".into(),
            container_port: 80,
            host_port: 32768,
            bind_ip: None
        }]
    );
}

#[test]
fn reads_tasks_and_task_definitions_from_the_api() {
    use aws_sdk_ecs::types::{
        Attachment, Container, ContainerDefinition as Def, HealthCheck, KeyValuePair,
        NetworkBinding, PortMapping, Tag, Task,
    };
    let task = Task::builder()
        .task_arn("arn:aws:ecs:us-east-1:123456789012:task/dev/abc123")
        .cluster_arn("arn:aws:ecs:us-east-1:123456789012:cluster/dev")
        .task_definition_arn("arn:aws:ecs:us-east-1:123456789012:task-definition/web-td:3")
        .group("service:web")
        .last_status("RUNNING")
        .desired_status("RUNNING")
        .attachments(
            Attachment::builder()
                .r#type("ElasticNetworkInterface")
                .details(
                    KeyValuePair::builder()
                        .name("privateIPv4Address")
                        .value("10.0.0.7")
                        .build(),
                )
                .build(),
        )
        .containers(
            Container::builder()
                .name("web")
                .network_bindings(
                    NetworkBinding::builder()
                        .container_port(80)
                        .host_port(31000)
                        .build(),
                )
                .build(),
        )
        .build();
    let facts = facts_from_api(&task).unwrap();
    assert_eq!(
        (facts.cluster.as_str(), facts.task_id(), facts.family()),
        ("dev", "abc123", "web-td")
    );
    assert_eq!(
        facts.version, None,
        "moto and unset versions read as unknown"
    );
    assert_eq!(facts.ipv4, Some(Ipv4Addr::new(10, 0, 0, 7)));
    assert_eq!(facts.bindings[0].host_port, 31000);
    assert!(facts_from_api(&Task::builder().build()).is_none());

    let definition = aws_sdk_ecs::types::TaskDefinition::builder()
        .family("web-td")
        .container_definitions(Def::builder().name("sidecar").essential(false).build())
        .container_definitions(
            Def::builder()
                .name("web")
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .health_check(HealthCheck::builder().command("true").build().unwrap())
                .build(),
        )
        .build();
    let tags = [Tag::builder().key("dns").value("www").build()];
    let read = task_definition_from_api(&definition, &tags);
    assert_eq!(read.family, "web-td");
    assert_eq!(read.tags["dns"], "www");
    assert!(!read.containers[0].essential && read.containers[1].essential);
    assert_eq!(read.containers[1].first_port, Some(8080));
    assert!(read.containers[1].health_check && !read.containers[0].health_check);
}
