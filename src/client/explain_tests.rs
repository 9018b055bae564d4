//! The explanation's cases: each rule of docs/dns.md that leaves an instance out, and the
//! answer-size limits that leave out instances the rules serve.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::*;

fn service(policy: Value, instances: Vec<Value>) -> Value {
    let mut full = json!({
        "records": {"a": 5, "aaaa": 5, "srv": 5, "cname": null},
        "max_answers": 8, "when_all_unhealthy": "serve_all", "routing": "multivalue",
    });
    for (k, v) in policy.as_object().unwrap() {
        full[k] = v.clone();
    }
    json!({"name": "web", "namespace": "internal", "policy": full, "instances": instances})
}

fn instance(id: &str, ip: &str, extra: Value) -> Value {
    let mut i = json!({
        "id": id, "dns_label": id, "ipv4": ip, "ipv6": null, "port": 80, "ports": {},
        "attributes": {}, "healthy": true, "reported_healthy": true, "heartbeat_ok": true,
        "check_ok": true, "check_reason": null, "draining": false,
    });
    for (k, v) in extra.as_object().unwrap() {
        i[k] = v.clone();
    }
    i
}

fn addresses(ips: &[&str]) -> Vec<Answered> {
    ips.iter()
        .map(|ip| Answered::Address(ip.parse::<IpAddr>().unwrap()))
        .collect()
}

fn service_scope() -> Scope {
    Scope::Service {
        service: "web".into(),
        protocol: None,
    }
}

/// (id, served, a word of the reason) per instance.
fn verdicts(
    service: &Value,
    scope: &Scope,
    kind: Kind,
    answered: &[Answered],
) -> Vec<(String, bool, String)> {
    explain(service, scope, kind, answered)
        .into_iter()
        .map(|v| (v.id, v.served, v.reason))
        .collect()
}

fn assert_reasons(got: Vec<(String, bool, String)>, want: &[(&str, bool, &str)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((id, served, reason), (want_id, want_served, word)) in got.iter().zip(want) {
        assert_eq!((id.as_str(), *served), (*want_id, *want_served), "{got:?}");
        assert!(reason.contains(word), "{id}: {reason:?} lacks {word:?}");
    }
}

#[test]
fn draining_unhealthy_and_weight_zero_are_left_out() {
    let s = service(
        json!({}),
        vec![
            instance("a", "10.0.0.1", json!({})),
            instance("b", "10.0.0.2", json!({"draining": true})),
            instance(
                "c",
                "10.0.0.3",
                json!({"healthy": false, "check_reason": "HTTP 500"}),
            ),
            instance("d", "10.0.0.4", json!({"attributes": {"weight": "0"}})),
            instance(
                "e",
                "10.0.0.5",
                json!({"healthy": false, "heartbeat_ok": false}),
            ),
        ],
    );
    assert_reasons(
        verdicts(&s, &service_scope(), Kind::A, &addresses(&["10.0.0.1"])),
        &[
            ("a", true, "healthy"),
            ("b", false, "draining"),
            ("c", false, "HTTP 500"),
            ("d", false, "weight 0"),
            ("e", false, "heartbeat expired"),
        ],
    );
}

#[test]
fn every_instance_unhealthy_fails_open_or_serves_none() {
    let down = |id, ip| instance(id, ip, json!({"healthy": false, "reported_healthy": false}));
    let instances = vec![
        down("a", "10.0.0.1"),
        instance("b", "10.0.0.2", json!({"draining": true})),
    ];
    let open = service(json!({}), instances.clone());
    assert_reasons(
        verdicts(&open, &service_scope(), Kind::A, &addresses(&["10.0.0.1"])),
        &[("a", true, "fails open"), ("b", false, "draining")],
    );
    let empty = service(json!({"when_all_unhealthy": "empty"}), instances);
    assert_reasons(
        verdicts(&empty, &service_scope(), Kind::A, &[]),
        &[
            ("a", false, "when_all_unhealthy = empty"),
            ("b", false, "draining"),
        ],
    );
}

#[test]
fn servable_instances_missing_from_the_answer_were_cut_by_its_size() {
    let instances: Vec<Value> = (1..=3)
        .map(|n| instance(&format!("i{n}"), &format!("10.0.0.{n}"), json!({})))
        .collect();
    let capped = service(json!({"max_answers": 2}), instances.clone());
    assert_reasons(
        verdicts(
            &capped,
            &service_scope(),
            Kind::A,
            &addresses(&["10.0.0.1", "10.0.0.3"]),
        ),
        &[
            ("i1", true, "healthy"),
            ("i2", false, "max_answers: 2 of the 3"),
            ("i3", true, "healthy"),
        ],
    );
    let weighted = service(json!({"routing": "weighted"}), instances);
    let got = verdicts(
        &weighted,
        &service_scope(),
        Kind::A,
        &addresses(&["10.0.0.2"]),
    );
    assert!(got[0].2.contains("routing = weighted"), "{got:?}");
}

#[test]
fn a_zone_aware_answer_leaves_out_the_other_zones() {
    let in_zone = |id: &str, ip: &str, zone: &str| {
        instance(id, ip, json!({"attributes": {"AVAILABILITY_ZONE": zone}}))
    };
    let instances = vec![
        in_zone("a1", "10.0.0.1", "us-east-1a"),
        in_zone("a2", "10.0.0.2", "us-east-1a"),
        in_zone("b1", "10.0.1.1", "us-east-1b"),
        instance("n1", "10.0.2.1", json!({})),
    ];
    let local = service(
        json!({"locality": "prefer_zone", "max_answers": 1}),
        instances.clone(),
    );
    assert_reasons(
        verdicts(&local, &service_scope(), Kind::A, &addresses(&["10.0.0.2"])),
        &[
            ("a1", false, "max_answers: 1 of the 2 servable"),
            ("a2", true, "healthy"),
            (
                "b1",
                false,
                "in us-east-1b, and this client was answered from us-east-1a",
            ),
            ("n1", false, "in no zone, and this client"),
        ],
    );
    // An answer from several zones fell back to every instance; without locality, zones
    // say nothing.
    let all = ["10.0.0.1", "10.0.1.1", "10.0.2.1"];
    let got = verdicts(&local, &service_scope(), Kind::A, &addresses(&all));
    assert!(got[1].2.contains("max_answers: 1 of the 4"), "{got:?}");
    let any = service(json!({"max_answers": 1}), instances);
    let got = verdicts(&any, &service_scope(), Kind::A, &addresses(&["10.0.0.2"]));
    assert!(got[2].2.contains("max_answers: 1 of the 4"), "{got:?}");
}

#[test]
fn an_answered_instance_the_api_excludes_changed_since() {
    let s = service(
        json!({}),
        vec![instance("a", "10.0.0.1", json!({"draining": true}))],
    );
    assert_reasons(
        verdicts(&s, &service_scope(), Kind::A, &addresses(&["10.0.0.1"])),
        &[("a", true, "changed since")],
    );
}

#[test]
fn the_asked_type_and_name_narrow_the_instances() {
    let v6 = instance(
        "six",
        "10.0.0.6",
        json!({"ipv4": null, "ipv6": "fd00::6", "port": null}),
    );
    let grpc = instance(
        "g",
        "10.0.0.7",
        json!({"ports": {"grpc": {"port": 9090, "protocol": "tcp"}}}),
    );
    let s = service(json!({}), vec![v6, grpc]);
    assert_reasons(
        verdicts(&s, &service_scope(), Kind::A, &addresses(&["10.0.0.7"])),
        &[("six", false, "no IPv4"), ("g", true, "healthy")],
    );
    assert_reasons(
        verdicts(
            &s,
            &service_scope(),
            Kind::Srv,
            &[Answered::Target("g".into())],
        ),
        &[("six", false, "no port"), ("g", true, "healthy")],
    );
    let named = Scope::NamedPort {
        service: "web".into(),
        name: "grpc".into(),
        protocol: "udp".into(),
    };
    assert_reasons(
        verdicts(&s, &named, Kind::Srv, &[]),
        &[
            ("six", false, "no named port grpc over udp"),
            ("g", false, "no named port"),
        ],
    );
    let one = Scope::Instance {
        service: "web".into(),
        label: "six".into(),
    };
    assert_reasons(
        verdicts(&s, &one, Kind::Aaaa, &addresses(&["fd00::6"])),
        &[("six", true, "healthy")],
    );
}

#[test]
fn a_cname_service_answers_one_alias() {
    let alias = |id, target: &str| {
        instance(
            id,
            "10.0.0.1",
            json!({"attributes": {"AWS_INSTANCE_CNAME": target}}),
        )
    };
    let s = service(
        json!({"records": {"a": null, "aaaa": null, "srv": null, "cname": 60}}),
        vec![alias("a", "a.example.com"), alias("b", "b.example.com")],
    );
    assert_reasons(
        verdicts(
            &s,
            &service_scope(),
            Kind::A,
            &[Answered::Alias("b.example.com".into())],
        ),
        &[("a", false, "answers one instance"), ("b", true, "healthy")],
    );
}

#[test]
fn names_are_located_in_the_longest_namespace() {
    let namespaces = vec!["internal".to_owned(), "prod.internal".to_owned()];
    let (ns, labels) = locate("_GRPC._tcp.Web.prod.internal.", &namespaces).unwrap();
    assert_eq!(
        (ns, labels.clone()),
        (
            "prod.internal",
            vec!["_grpc".into(), "_tcp".into(), "web".into()]
        )
    );
    assert_eq!(
        scope(&labels).unwrap(),
        Scope::NamedPort {
            service: "web".into(),
            name: "grpc".into(),
            protocol: "tcp".into()
        }
    );
    let (_, labels) = locate("_web._udp.internal", &namespaces).unwrap();
    assert_eq!(
        scope(&labels).unwrap(),
        Scope::Service {
            service: "web".into(),
            protocol: Some("udp".into())
        }
    );
    let (_, labels) = locate("i-1.web.internal", &namespaces).unwrap();
    assert_eq!(
        scope(&labels).unwrap(),
        Scope::Instance {
            service: "web".into(),
            label: "i-1".into()
        }
    );
    assert_eq!(scope(&[]).unwrap(), Scope::Apex);
    assert!(locate("example.com", &namespaces).is_none());
    assert!(locate("xinternal", &namespaces).is_none());
    assert!(scope(&["a".into(), "b".into(), "c".into()]).is_err());
}
