use std::net::Ipv4Addr;

use super::*;
use crate::sources::ecs::parse::tests::{RUNNING, STOP_INTENT, STOPPED, facts};
use crate::sources::ecs::parse::{Binding, ContainerDefinition};

fn api_definition(health_check: bool) -> TaskDefinition {
    TaskDefinition {
        family: "api".into(),
        containers: vec![
            ContainerDefinition {
                name: "log-router".into(),
                essential: false,
                first_port: Some(24224),
                health_check: false,
            },
            ContainerDefinition {
                name: "api".into(),
                essential: true,
                first_port: Some(8080),
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
        Placement::In(key, spec) => (key, spec),
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
    let out =
        |facts: &TaskFacts, config: &EcsSourceConfig| match place(facts, &definition, config, None)
        {
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
        place(&task, &api_definition(false), &config(), None),
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
        match place(&task, &definition, &config, None) {
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
    let out = place(&task, &api_definition(false), &config(), None);
    assert_eq!(out, Placement::Out(Out::BadName));
    assert_eq!(Out::BadName.problem(), Some("bad_name"));
    task.group = Some("service:-edge".into());
    assert_eq!(
        place(&task, &api_definition(false), &config(), None),
        Placement::Out(Out::BadName)
    );
    task.group = Some("service:Web_Front-1".into());
    let (key, _) = placed(place(&task, &api_definition(false), &config(), None));
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
        bind_ip: None,
    }];
    let definition = api_definition(false);
    assert_eq!(
        place(&task, &definition, &config(), None),
        Placement::Out(Out::NoAddress)
    );
    task.bindings[0].bind_ip = Some("10.9.9.9".parse().unwrap());
    let (_, spec) = placed(place(&task, &definition, &config(), None));
    assert_eq!(
        (spec.ipv4, spec.port),
        (Some(Ipv4Addr::new(10, 9, 9, 9)), Some(32768))
    );
}
