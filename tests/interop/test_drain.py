"""Draining (issue 19; docs/rest.md): an instance taken out of answers keeps its
registration. Checked with dig and dnspython (DNS), requests (REST), boto3 (Cloud Map),
across a restart, on a file source's instance, and on etcd through two replicas.
"""

import dns.rcode

from harness import answer_rdata, parse_dig, toml_value, wait_until

NS = "internal"
DRAIN = "/v1/namespaces/internal/services/web/instances/{}/drain"


def body(last_octet, **extra):
    return {"ipv4": f"10.9.0.{last_octet}", "port": 8080, **extra}


def a_set(m, name="web.internal."):
    r = m.dns_query(name, "A")
    if r.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(r.rcode())
    return sorted(answer_rdata(r, "A"))


def instance(m, iid):
    return next(i for i in m.service(NS, "web")["instances"] if i["id"] == iid)


def test_a_drained_instance_leaves_every_answer_at_once_and_comes_back(muster):
    m = muster()
    for i in (1, 2, 3):
        m.put_instance(NS, "web", f"w{i}", body(i))
    r = m.put(DRAIN.format("w2"))
    assert r.status_code == 200, r.text
    assert r.json()["draining"] is True
    # Answered once DNS no longer serves it: no wait.
    assert a_set(m) == ["10.9.0.1", "10.9.0.3"]
    srv = parse_dig(m.dig("web.internal.", "SRV"))
    assert sorted(r.split()[-1] for r in srv.rdata("ANSWER", "SRV")) == [
        "w1.web.internal.", "w3.web.internal."
    ]
    assert a_set(m, "w2.web.internal.") == "NXDOMAIN", "a drained instance keeps no name"
    # Registration, health and GET view kept.
    view = instance(m, "w2")
    assert view["draining"] is True and view["healthy"] is True
    assert len(m.service(NS, "web")["instances"]) == 3
    # Idempotent; a new registration of the same instance keeps the hold.
    assert m.put(DRAIN.format("w2")).status_code == 200
    m.put_instance(NS, "web", "w2", body(22))
    assert a_set(m) == ["10.9.0.1", "10.9.0.3"]
    assert instance(m, "w2")["draining"] is True
    # Back.
    r = m.delete(DRAIN.format("w2"))
    assert r.status_code == 200 and r.json()["draining"] is False, r.text
    assert a_set(m) == ["10.9.0.1", "10.9.0.22", "10.9.0.3"]
    assert instance(m, "w2")["draining"] is False


def test_draining_every_instance_empties_the_service_even_failing_open(muster):
    m = muster()
    m.put_instance(NS, "web", "w1", body(1))
    m.put_instance(NS, "web", "w2", body(2))
    m.set_health(NS, "web", "w1", False)
    # w1 unhealthy, w2 drained: fail-open serves w1 (unhealthy), never the drained w2.
    assert m.put(DRAIN.format("w2")).status_code == 200
    assert a_set(m) == ["10.9.0.1"]
    assert m.put(DRAIN.format("w1")).status_code == 200
    assert a_set(m) == "NXDOMAIN"


def test_bad_drain_requests_change_nothing(muster):
    m = muster()
    m.put_instance(NS, "web", "w1", body(1))
    serial = m.soa_serial()
    r = m.put(DRAIN.format("nope"))
    assert r.status_code == 404 and "error" in r.json(), r.text
    r = m.put("/v1/namespaces/nope/services/web/instances/w1/drain")
    assert r.status_code == 404, r.text
    r = m.http.post(m.url(DRAIN.format("w1")), timeout=5)
    assert r.status_code == 405 and "error" in r.json(), r.text
    assert m.soa_serial() == serial
    assert a_set(m) == ["10.9.0.1"]


def test_a_drain_survives_a_restart(muster):
    m = muster()
    m.put_instance(NS, "web", "w1", body(1))
    m.put_instance(NS, "web", "w2", body(2))
    assert m.put(DRAIN.format("w1")).status_code == 200
    m.restart()
    assert a_set(m) == ["10.9.0.2"]
    assert instance(m, "w1")["draining"] is True


def test_a_file_sources_instance_can_be_drained(muster, tmp_path):
    path = tmp_path / "static.toml"
    path.write_text(
        '[[instances]]\nnamespace = "internal"\nservice = "web"\nid = "f1"\nipv4 = "10.9.1.1"\n'
        '[[instances]]\nnamespace = "internal"\nservice = "web"\nid = "f2"\nipv4 = "10.9.1.2"\n'
    )
    m = muster(f"[[sources.file]]\npath = {toml_value(str(path))}\n")
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=5, message="/readyz 200")
    assert m.put(DRAIN.format("f1")).status_code == 200
    assert a_set(m) == ["10.9.1.2"]
    # The API still cannot deregister what the file owns.
    assert m.delete_instance(NS, "web", "f1", check=False).status_code == 409


def test_the_cloud_map_drain_attribute(muster):
    m = muster()
    sd = m.cloudmap()
    ns_id = next(n["Id"] for n in sd.list_namespaces()["Namespaces"] if n["Name"] == NS)
    svc = sd.create_service(
        Name="api", NamespaceId=ns_id, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 5}]}
    )["Service"]
    for i in (1, 2):
        sd.register_instance(
            ServiceId=svc["Id"], InstanceId=f"c{i}", Attributes={"AWS_INSTANCE_IPV4": f"10.9.2.{i}"}
        )
    sd.register_instance(
        ServiceId=svc["Id"], InstanceId="c1",
        Attributes={"AWS_INSTANCE_IPV4": "10.9.2.1", "drain": "true"},
    )
    assert a_set(m, "api.internal.") == ["10.9.2.2"]
    found = sd.discover_instances(NamespaceName=NS, ServiceName="api", HealthStatus="ALL")
    assert [i["InstanceId"] for i in found["Instances"]] == ["c2"]
    assert sd.get_instance(ServiceId=svc["Id"], InstanceId="c1")["Instance"]["Attributes"]["drain"] == "true"
    sd.register_instance(
        ServiceId=svc["Id"], InstanceId="c1", Attributes={"AWS_INSTANCE_IPV4": "10.9.2.1"}
    )
    assert a_set(m, "api.internal.") == ["10.9.2.1", "10.9.2.2"]
