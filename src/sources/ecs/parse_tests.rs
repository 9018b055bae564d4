use super::*;

pub const RUNNING: &str =
    include_str!("../../../tests/fixtures/ecs/ecs-task-state-change.running.json");
pub const STOP_INTENT: &str =
    include_str!("../../../tests/fixtures/ecs/ecs-task-state-change.stop-intent.json");
pub const STOPPED: &str =
    include_str!("../../../tests/fixtures/ecs/ecs-task-state-change.stopped.json");
/// A bridge networking task of the EC2 launch type, with dynamic host ports.
pub const BRIDGE: &str =
    include_str!("../../../tests/fixtures/ecs/ecs-task-state-change.bridge.json");

/// A TCP port mapping of `container_port`, unnamed, with no fixed host port.
pub fn port(container_port: u16) -> PortMapping {
    PortMapping {
        container_port,
        host_port: None,
        protocol: Protocol::Tcp,
        name: None,
    }
}

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
            protocol: Protocol::Tcp,
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
    assert_eq!(read.containers[1].ports[0].container_port, 8080);
    assert!(read.containers[1].health_check && !read.containers[0].health_check);
}

#[test]
fn reads_a_bridge_task_its_container_instance_and_bindings() {
    let facts = facts(BRIDGE);
    assert_eq!((facts.ipv4, facts.ipv6), (None, None));
    assert_eq!(
        facts.container_instance_arn.as_deref(),
        Some(
            "arn:aws:ecs:eu-west-1:123456789012:container-instance/prod/4f1e2d3c4b5a69788796a5b4c3d2e1f0"
        )
    );
    let bound: Vec<(u16, u16, Protocol)> = facts
        .bindings
        .iter()
        .map(|b| (b.container_port, b.host_port, b.protocol))
        .collect();
    assert_eq!(
        bound,
        [
            (8080, 32768, Protocol::Tcp),
            (8080, 32768, Protocol::Tcp),
            (9090, 32769, Protocol::Tcp),
            (9090, 32769, Protocol::Tcp),
            (53, 5353, Protocol::Udp),
        ]
    );
    assert!(
        facts
            .bindings
            .iter()
            .all(|b| b.bind_ip.is_none() && b.container == "web")
    );
    // The Fargate fixture has no container instance.
    assert_eq!(super::tests::facts(RUNNING).container_instance_arn, None);
}

#[test]
fn reads_network_modes_port_mappings_and_container_instances_from_the_api() {
    use aws_sdk_ecs::types::{
        ContainerDefinition as Def, NetworkMode as Mode, PortMapping as Mapping, Task,
        TransportProtocol,
    };
    let definition = aws_sdk_ecs::types::TaskDefinition::builder()
        .family("web")
        .network_mode(Mode::Bridge)
        .container_definitions(
            Def::builder()
                .name("web")
                .port_mappings(
                    Mapping::builder()
                        .container_port(8080)
                        .host_port(0)
                        .name("http")
                        .build(),
                )
                .port_mappings(
                    Mapping::builder()
                        .container_port(53)
                        .host_port(5353)
                        .protocol(TransportProtocol::Udp)
                        .name("dns")
                        .build(),
                )
                .port_mappings(Mapping::builder().container_port_range("7000-7010").build())
                .build(),
        )
        .build();
    let read = task_definition_from_api(&definition, &[]);
    assert_eq!(read.network_mode, NetworkMode::Bridge);
    assert_eq!(
        read.containers[0].ports,
        [
            PortMapping {
                container_port: 8080,
                host_port: None,
                protocol: Protocol::Tcp,
                name: Some("http".into()),
            },
            PortMapping {
                container_port: 53,
                host_port: Some(5353),
                protocol: Protocol::Udp,
                name: Some("dns".into()),
            },
        ],
        "dynamic host ports read as none, port ranges are left out"
    );
    let mode = |m: Option<Mode>| {
        let d = aws_sdk_ecs::types::TaskDefinition::builder()
            .set_network_mode(m)
            .build();
        task_definition_from_api(&d, &[]).network_mode
    };
    assert_eq!(mode(None), NetworkMode::Bridge, "ECS's default on EC2");
    assert_eq!(mode(Some(Mode::Host)), NetworkMode::Host);
    assert_eq!(mode(Some(Mode::Awsvpc)), NetworkMode::Awsvpc);
    assert_eq!(mode(Some(Mode::None)), NetworkMode::None);

    let task = Task::builder()
        .task_arn("arn:aws:ecs:us-east-1:123456789012:task/dev/abc")
        .cluster_arn("arn:aws:ecs:us-east-1:123456789012:cluster/dev")
        .task_definition_arn("arn:aws:ecs:us-east-1:123456789012:task-definition/web:1")
        .container_instance_arn("arn:aws:ecs:us-east-1:123456789012:container-instance/dev/ci1")
        .last_status("RUNNING")
        .desired_status("RUNNING")
        .containers(
            aws_sdk_ecs::types::Container::builder()
                .name("web")
                .network_bindings(
                    aws_sdk_ecs::types::NetworkBinding::builder()
                        .container_port(53)
                        .host_port(5353)
                        .protocol(TransportProtocol::Udp)
                        .build(),
                )
                .build(),
        )
        .build();
    let facts = facts_from_api(&task).unwrap();
    assert_eq!(
        facts.container_instance_arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:123456789012:container-instance/dev/ci1")
    );
    assert_eq!(facts.bindings[0].protocol, Protocol::Udp);
}

#[test]
fn reads_an_ec2_instance_private_addresses() {
    use aws_sdk_ec2::types::{
        Instance, InstanceIpv6Address, InstanceNetworkInterface as Nic,
        InstanceNetworkInterfaceAttachment as Attached,
    };
    let nic = |index: i32, ipv6: &str| {
        Nic::builder()
            .attachment(Attached::builder().device_index(index).build())
            .ipv6_addresses(InstanceIpv6Address::builder().ipv6_address(ipv6).build())
            .build()
    };
    let instance = Instance::builder()
        .instance_id("i-0abc")
        .private_ip_address("10.0.3.7")
        .network_interfaces(nic(1, "2600:1f18::99"))
        .network_interfaces(nic(0, "2600:1f18::7"))
        .build();
    let host = host_from_api(&instance).unwrap();
    assert_eq!(host.ec2_instance_id, "i-0abc");
    assert_eq!(host.ipv4, Some(Ipv4Addr::new(10, 0, 3, 7)));
    assert_eq!(
        host.ipv6,
        Some("2600:1f18::7".parse().unwrap()),
        "the primary interface's, not another's"
    );
    let primary_v6 = Instance::builder()
        .instance_id("i-0abd")
        .ipv6_address("2600:1f18::1")
        .network_interfaces(nic(0, "2600:1f18::7"))
        .build();
    let host = host_from_api(&primary_v6).unwrap();
    assert_eq!(
        (host.ipv4, host.ipv6),
        (None, Some("2600:1f18::1".parse().unwrap()))
    );
    assert!(host_from_api(&Instance::builder().build()).is_none());
}
