use std::net::Ipv4Addr;

use crate::registry::Protocol;

use super::*;
use crate::sources::ecs::parse::tests::{BRIDGE, RUNNING, STOP_INTENT, STOPPED, facts, port};
use crate::sources::ecs::parse::{Binding, ContainerDefinition, Host, NetworkMode, PortMapping};

fn api_definition(health_check: bool) -> TaskDefinition {
    TaskDefinition {
        family: "api".into(),
        network_mode: NetworkMode::Awsvpc,
        containers: vec![
            ContainerDefinition {
                name: "log-router".into(),
                essential: false,
                ports: vec![port(24224)],
                health_check: false,
            },
            ContainerDefinition {
                name: "api".into(),
                essential: true,
                ports: vec![port(8080)],
                health_check,
            },
        ],
        tags: [
            ("team".to_owned(), "payments".to_owned()),
            ("dns".to_owned(), "pay".to_owned()),
        ]
        .into(),
    }
}

fn config() -> EcsSourceConfig {
    EcsSourceConfig::new(vec!["prod".into()], "Internal.")
}

fn placed(placement: Placement) -> (InstanceKey, InstanceSpec) {
    match placement {
        Placement::In(key, spec) => (key, *spec),
        Placement::Out(out) => panic!("out: {out:?}"),
    }
}

#[test]
fn a_running_task_becomes_an_instance_with_cloud_map_attributes() {
    let (key, spec) = placed(place(
        &facts(RUNNING),
        &api_definition(true),
        &config(),
        Some("eu-west-1"),
        None,
    ));
    assert_eq!(
        key.to_string(),
        "internal/api/5f1c2b7e9a0d4c3b8e6f1a2b3c4d5e6f"
    );
    assert_eq!(spec.ipv4, Some(Ipv4Addr::new(10, 1, 2, 3)));
    assert_eq!(
        spec.port,
        Some(8080),
        "the first essential container's first port mapping"
    );
    assert!(spec.healthy);
    let attributes: Vec<String> = spec
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        attributes,
        [
            "AVAILABILITY_ZONE=eu-west-1a",
            "AWS_INSTANCE_IPV4=10.1.2.3",
            "AWS_INSTANCE_PORT=8080",
            "ECS_CLUSTER_NAME=prod",
            "ECS_SERVICE_NAME=api",
            "ECS_TASK_DEFINITION_FAMILY=api",
            "REGION=eu-west-1",
        ]
    );
}

#[test]
fn lifecycle_rules() {
    let definition = api_definition(true);
    let out = |facts: &TaskFacts, config: &EcsSourceConfig| match place(
        facts,
        &definition,
        config,
        None,
        None,
    ) {
        Placement::Out(out) => Some(out),
        Placement::In(..) => None,
    };
    assert_eq!(out(&facts(STOP_INTENT), &config()), Some(Out::Stopping));
    assert_eq!(out(&facts(STOPPED), &config()), Some(Out::Stopping));
    let mut task = facts(RUNNING);
    task.last_status = "DEACTIVATING".into();
    assert_eq!(out(&task, &config()), Some(Out::Stopping));
    task.last_status = "PENDING".into();
    assert_eq!(out(&task, &config()), Some(Out::NotRunning));
    task.last_status = "RUNNING".into();
    task.health = Some("UNHEALTHY".into());
    assert_eq!(out(&task, &config()), Some(Out::Unhealthy));
    task.health = Some("UNKNOWN".into());
    assert_eq!(out(&task, &config()), Some(Out::NotHealthyYet));
    task.health = None;
    assert_eq!(out(&task, &config()), Some(Out::NotHealthyYet));
    let mut relaxed = config();
    relaxed.require_healthy = false;
    assert_eq!(
        out(&task, &relaxed),
        None,
        "RUNNING is enough when HEALTHY is not required"
    );
    let mut per_service = config();
    per_service.services = vec![ServiceRule {
        ecs_service: Some("api".into()),
        require_healthy: Some(false),
        ..ServiceRule::default()
    }];
    assert_eq!(
        out(&task, &per_service),
        None,
        "a rule overrides the source's default"
    );
    // Without container health checks, RUNNING is enough (ECS reports UNKNOWN then).
    assert!(matches!(
        place(&task, &api_definition(false), &config(), None, None),
        Placement::In(..)
    ));
    assert_eq!(lifecycle(&facts(STOP_INTENT)), Some(Out::Stopping));
    assert_eq!(lifecycle(&facts(RUNNING)), None);
}

#[test]
fn rules_rename_restrict_and_map_by_family_or_tag() {
    let task = facts(RUNNING);
    let definition = api_definition(false);
    let name = |rules: Vec<ServiceRule>, only_listed: bool| {
        let mut config = config();
        config.services = rules;
        config.only_listed = only_listed;
        match place(&task, &definition, &config, None, None) {
            Placement::In(key, spec) => Ok((key.service, spec.port)),
            Placement::Out(out) => Err(out),
        }
    };
    let rule = |f: fn(&mut ServiceRule)| {
        let mut rule = ServiceRule::default();
        f(&mut rule);
        rule
    };
    assert_eq!(name(vec![], false), Ok(("api".into(), Some(8080))));
    assert_eq!(name(vec![], true), Err(Out::Unmapped));
    let other = rule(|r| r.ecs_service = Some("web".into()));
    assert_eq!(name(vec![other.clone()], true), Err(Out::Unmapped));
    assert_eq!(name(vec![other], false), Ok(("api".into(), Some(8080))));
    let renamed = rule(|r| {
        r.ecs_service = Some("api".into());
        r.name = Some("API-v2".into());
        r.port = Some(9000);
    });
    assert_eq!(name(vec![renamed], true), Ok(("api-v2".into(), Some(9000))));
    let by_family = rule(|r| {
        r.family = Some("api".into());
        r.container = Some("log-router".into());
    });
    assert_eq!(name(vec![by_family], true), Ok(("api".into(), Some(24224))));
    let by_tag_value = rule(|r| r.tag = Some("dns".into()));
    assert_eq!(
        name(vec![by_tag_value], true),
        Ok(("pay".into(), Some(8080)))
    );
    let by_tag_pair = rule(|r| r.tag = Some("team=payments".into()));
    assert_eq!(
        name(vec![by_tag_pair], true),
        Ok(("api".into(), Some(8080)))
    );
    let wrong_pair = rule(|r| r.tag = Some("team=search".into()));
    assert_eq!(name(vec![wrong_pair], true), Err(Out::Unmapped));
    let hidden = rule(|r| {
        r.ecs_service = Some("api".into());
        r.register = false;
    });
    assert_eq!(name(vec![hidden], false), Err(Out::Hidden));
}

#[test]
fn names_that_are_not_dns_labels_are_skipped() {
    let mut task = facts(RUNNING);
    task.group = Some(format!("service:{}", "a".repeat(64)));
    let out = place(&task, &api_definition(false), &config(), None, None);
    assert_eq!(out, Placement::Out(Out::BadName));
    assert_eq!(Out::BadName.problem(), Some("bad_name"));
    task.group = Some("service:-edge".into());
    assert_eq!(
        place(&task, &api_definition(false), &config(), None, None),
        Placement::Out(Out::BadName)
    );
    task.group = Some("service:Web_Front-1".into());
    let (key, _) = placed(place(&task, &api_definition(false), &config(), None, None));
    assert_eq!(
        key.service, "web_front-1",
        "upper case is folded like every service name"
    );
}

#[test]
fn bridge_tasks_use_the_host_port_and_need_an_address() {
    let mut task = facts(RUNNING);
    task.ipv4 = None;
    task.bindings = vec![Binding {
        container: "api".into(),
        container_port: 8080,
        host_port: 32768,
        protocol: Protocol::Tcp,
        bind_ip: None,
    }];
    let mut definition = api_definition(false);
    definition.network_mode = NetworkMode::Bridge;
    assert_eq!(
        place(&task, &definition, &config(), None, None),
        Placement::Out(Out::NoAddress)
    );
    task.bindings[0].bind_ip = Some("10.9.9.9".parse().unwrap());
    let (_, spec) = placed(place(&task, &definition, &config(), None, None));
    assert_eq!(
        (spec.ipv4, spec.port),
        (Some(Ipv4Addr::new(10, 9, 9, 9)), Some(32768))
    );
}

/// The task definition of the bridge fixture: `web` maps 8080 (`http`) and 9090 (`grpc`)
/// to dynamic host ports and 53/udp (`dns`) to the fixed 5353; a sidecar has a named
/// port too, and a name that is not a DNS label.
pub fn web_definition(mode: NetworkMode) -> TaskDefinition {
    let named = |container_port, host_port, protocol, name: &str| PortMapping {
        container_port,
        host_port,
        protocol,
        name: Some(name.to_owned()),
    };
    TaskDefinition {
        family: "web".into(),
        network_mode: mode,
        containers: vec![
            ContainerDefinition {
                name: "web".into(),
                essential: true,
                ports: vec![
                    named(8080, None, Protocol::Tcp, "http"),
                    named(9090, None, Protocol::Tcp, "grpc"),
                    named(53, Some(5353), Protocol::Udp, "dns"),
                    named(9100, None, Protocol::Tcp, "Not_A-Label."),
                ],
                health_check: false,
            },
            ContainerDefinition {
                name: "envoy".into(),
                essential: false,
                ports: vec![named(15000, Some(15000), Protocol::Tcp, "admin")],
                health_check: false,
            },
        ],
        tags: Default::default(),
    }
}

pub fn host() -> Host {
    Host {
        ec2_instance_id: "i-0123456789abcdef0".into(),
        ipv4: Some(Ipv4Addr::new(10, 0, 3, 7)),
        ipv6: Some("2600:1f18::7".parse().unwrap()),
    }
}

fn named_ports(spec: &InstanceSpec) -> Vec<String> {
    spec.ports()
        .iter()
        .map(|(name, p)| format!("{name}={}/{:?}", p.port, p.protocol))
        .collect()
}

#[test]
fn a_bridge_task_is_reached_at_its_container_instance_on_its_host_ports() {
    let task = facts(BRIDGE);
    let definition = web_definition(NetworkMode::Bridge);
    // Without the container instance's address it is out, and that instance is wanted.
    let without = place(&task, &definition, &config(), None, None);
    assert_eq!(without, Placement::Out(Out::NoAddress));
    assert_eq!(
        host_needed(&task, &definition, &without),
        task.container_instance_arn.as_deref()
    );
    let (key, spec) = placed(place(&task, &definition, &config(), None, Some(&host())));
    assert_eq!(
        key.to_string(),
        "internal/web/9d8c7b6a5f4e4d3c2b1a0f9e8d7c6b5a"
    );
    assert_eq!(spec.ipv4, Some(Ipv4Addr::new(10, 0, 3, 7)));
    assert_eq!(spec.ipv6, host().ipv6);
    assert_eq!(
        spec.port,
        Some(32768),
        "the dynamic host port bound for 8080"
    );
    assert_eq!(
        named_ports(&spec),
        [
            "admin=15000/Tcp",
            "dns=5353/Udp",
            "grpc=32769/Tcp",
            "http=32768/Tcp"
        ]
    );
    assert_eq!(spec.attributes["EC2_INSTANCE_ID"], "i-0123456789abcdef0");
    assert_eq!(spec.attributes["AWS_INSTANCE_IPV4"], "10.0.3.7");
    assert_eq!(spec.attributes["AWS_INSTANCE_PORT"], "32768");
    assert_eq!(spec.attributes["AVAILABILITY_ZONE"], "eu-west-1b");
}

#[test]
fn a_dynamic_port_not_bound_yet_has_no_port_and_a_fixed_one_is_used() {
    let mut task = facts(BRIDGE);
    task.bindings.retain(|b| b.container_port == 53);
    let definition = web_definition(NetworkMode::Bridge);
    let (_, spec) = placed(place(&task, &definition, &config(), None, Some(&host())));
    assert_eq!(spec.port, None, "never the container port of a bridge task");
    assert_eq!(named_ports(&spec), ["admin=15000/Tcp", "dns=5353/Udp"]);
    let mut rule = ServiceRule {
        ecs_service: Some("web".into()),
        container: Some("envoy".into()),
        ..ServiceRule::default()
    };
    let mut config = config();
    config.services = vec![rule.clone()];
    let (_, spec) = placed(place(&task, &definition, &config, None, Some(&host())));
    assert_eq!(spec.port, Some(15000), "a fixed host port");
    rule.port = Some(8443);
    config.services = vec![rule];
    let (_, spec) = placed(place(&task, &definition, &config, None, Some(&host())));
    assert_eq!(spec.port, Some(8443), "the rule's port wins");
}

#[test]
fn a_host_networking_task_uses_its_container_ports() {
    let mut task = facts(BRIDGE);
    task.bindings.clear(); // ECS reports no bindings in host mode
    let definition = web_definition(NetworkMode::Host);
    let (_, spec) = placed(place(&task, &definition, &config(), None, Some(&host())));
    assert_eq!(spec.ipv4, Some(Ipv4Addr::new(10, 0, 3, 7)));
    assert_eq!(spec.port, Some(8080));
    assert_eq!(
        named_ports(&spec),
        [
            "admin=15000/Tcp",
            "dns=53/Udp",
            "grpc=9090/Tcp",
            "http=8080/Tcp"
        ]
    );
}

#[test]
fn only_tasks_that_would_enter_dns_want_their_container_instance() {
    let task = facts(BRIDGE);
    let bridge = web_definition(NetworkMode::Bridge);
    // Hidden by a rule, or not listed: no lookup.
    let mut listed = config();
    listed.only_listed = true;
    let unmapped = place(&task, &bridge, &listed, None, None);
    assert_eq!(unmapped, Placement::Out(Out::Unmapped));
    assert_eq!(host_needed(&task, &bridge, &unmapped), None);
    // Not running yet.
    let mut pending = task.clone();
    pending.last_status = "PENDING".into();
    let out = place(&pending, &bridge, &config(), None, None);
    assert_eq!(host_needed(&pending, &bridge, &out), None);
    // No network, or the task's own ENI: never the host's address.
    let none = web_definition(NetworkMode::None);
    let out = place(&task, &none, &config(), None, Some(&host()));
    assert_eq!(out, Placement::Out(Out::NoAddress));
    assert_eq!(host_needed(&task, &none, &out), None);
    let awsvpc = facts(RUNNING);
    let definition = api_definition(false);
    let placement = place(&awsvpc, &definition, &config(), None, None);
    assert_eq!(host_needed(&awsvpc, &definition, &placement), None);
    // A specific bind address wins over the host's.
    let mut bound = task.clone();
    bound.bindings[0].bind_ip = Some("10.9.9.9".parse().unwrap());
    let (_, spec) = placed(place(&bound, &bridge, &config(), None, Some(&host())));
    assert_eq!(
        (spec.ipv4, spec.ipv6),
        (Some(Ipv4Addr::new(10, 9, 9, 9)), None)
    );
}

#[test]
fn named_ports_are_capped() {
    let task = facts(RUNNING);
    let mut definition = api_definition(false);
    definition.containers[1].ports = (0..40)
        .map(|i| PortMapping {
            name: Some(format!("p{i:02}")),
            ..port(9000 + i)
        })
        .collect();
    let (_, spec) = placed(place(&task, &definition, &config(), None, None));
    assert_eq!(
        spec.ports().len(),
        crate::registry::validate::MAX_NAMED_PORTS
    );
    assert_eq!(spec.ports()["p00"].port, 9000, "awsvpc: the container port");
}
