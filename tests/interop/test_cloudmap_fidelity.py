"""Cloud Map fidelity (issue 18): what a Cloud Map user sees from AWS, seen from muster,
with the AWS CLI, boto3 and dig.

- CNAME services: every query type at the service name gets one CNAME (Route 53's
  answer), over UDP and TCP; WEIGHTED picks one instance at random per answer.
- HTTP namespaces and services carry the keys AWS returns: ``DnsProperties`` (``{}`` in
  GetNamespace, ``{"SOA": {}}`` in ListNamespaces) and ``"DnsConfig": {}``.
- A service with no served instance has no records: NXDOMAIN with the SOA, as Route 53.
- A config file without namespaces serves none (REFUSED until the API creates one,
  ``ListNamespaces`` is ``[]``), and config namespaces show their creation time.
"""

import time

import dns.rcode
import pytest

from harness import assert_negative, parse_dig, rcode_text
from test_cloudmap import cli, client


def dns_namespace(sd, name, soa_ttl=None):
    args = {"Name": name, "Vpc": "vpc-1"}
    if soa_ttl is not None:
        args["Properties"] = {"DnsProperties": {"SOA": {"TTL": soa_ttl}}}
    sd.create_private_dns_namespace(**args)
    return next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == name)["Id"]


def cname_service(m, sd):
    ns_id = dns_namespace(sd, "cn.example")
    return cli(m, "create-service", "--name", "www", "--namespace-id", ns_id,
               "--dns-config", "RoutingPolicy=WEIGHTED,DnsRecords=[{Type=CNAME,TTL=30}]")["Service"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_cname_service_answers_every_type_with_its_cname(muster, tcp):
    m = muster()
    sd = client(m)
    svc = cname_service(m, sd)
    cli(m, "register-instance", "--service-id", svc["Id"], "--instance-id", "i-1",
        "--attributes", "AWS_INSTANCE_CNAME=example.org")
    for rdtype in ("CNAME", "A", "AAAA", "ANY", "SRV"):
        out = parse_dig(m.dig("www.cn.example", rdtype, *(["+tcp"] if tcp else [])))
        assert out.status == "NOERROR" and "aa" in out.flags, out.text
        assert out.rdata("ANSWER", "CNAME") == ["example.org."], out.text
        # One record: the target (outside every namespace) is not chased.
        assert out.counts.get("ANSWER") == 1, out.text
        r = m.dns_query("www.cn.example", rdtype, tcp=tcp)
        assert len(r.answer) == 1 and r.answer[0].ttl == 30, r


def test_weighted_cname_answers_one_instance_at_random(muster):
    m = muster()
    sd = client(m)
    svc = cname_service(m, sd)
    targets = {f"t{i}.example.org." for i in range(3)}
    for i in range(3):
        sd.register_instance(ServiceId=svc["Id"], InstanceId=f"i-{i}",
                             Attributes={"AWS_INSTANCE_CNAME": f"t{i}.example.org"})
    seen = set()
    for n in range(60):
        r = m.dns_query("www.cn.example", "A", tcp=bool(n % 2))
        assert r.rcode() == dns.rcode.NOERROR
        [rrset] = r.answer
        assert len(rrset) == 1, "one CNAME per answer"
        seen.add(rrset[0].to_text())
    assert seen == targets, "every instance comes up"
    # Deregistered: no instance, no record (below).
    for i in range(3):
        sd.deregister_instance(ServiceId=svc["Id"], InstanceId=f"i-{i}")
    assert rcode_text(m.dns_query("www.cn.example", "CNAME")) == "NXDOMAIN"


def test_http_namespaces_and_services_carry_the_keys_aws_returns(muster):
    m = muster()
    cli(m, "create-http-namespace", "--name", "api-only")
    [summary] = [n for n in cli(m, "list-namespaces")["Namespaces"] if n["Name"] == "api-only"]
    assert summary["Properties"] == {"DnsProperties": {"SOA": {}}, "HttpProperties": {"HttpName": "api-only"}}
    namespace = cli(m, "get-namespace", "--id", summary["Id"])["Namespace"]
    assert namespace["Properties"] == {"DnsProperties": {}, "HttpProperties": {"HttpName": "api-only"}}

    created = cli(m, "create-service", "--name", "orders", "--namespace-id", summary["Id"])["Service"]
    assert created["DnsConfig"] == {} and created["Type"] == "HTTP"
    assert cli(m, "get-service", "--id", created["Id"])["Service"]["DnsConfig"] == {}
    [listed] = [s for s in cli(m, "list-services")["Services"] if s["Id"] == created["Id"]]
    assert listed["DnsConfig"] == {}

    # boto3 code that indexes the keys works on every namespace and service.
    sd = client(m)
    dns_namespace(sd, "mixed.example", soa_ttl=4)
    soas = {n["Name"]: n["Properties"]["DnsProperties"]["SOA"] for n in sd.list_namespaces()["Namespaces"]}
    assert soas["api-only"] == {} and soas["mixed.example"] == {"TTL": 4}
    for n in sd.list_namespaces()["Namespaces"]:
        assert "DnsProperties" in sd.get_namespace(Id=n["Id"])["Namespace"]["Properties"]
    for s in sd.list_services()["Services"]:
        assert "DnsConfig" in s


def test_a_service_without_instances_is_nxdomain(muster):
    m = muster()
    sd = client(m)
    ns_id = dns_namespace(sd, "empty.example", soa_ttl=3)
    svc = sd.create_service(Name="web", NamespaceId=ns_id,
                            DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 7}, {"Type": "SRV", "TTL": 7}]})["Service"]
    names = ("web.empty.example", "_web._tcp.empty.example", "i-1.web.empty.example")
    for tcp in (False, True):
        for name in names:
            for rdtype in ("A", "SRV", "AAAA"):
                assert_negative(m.dns_query(name, rdtype, tcp=tcp), dns.rcode.NXDOMAIN,
                                zone="empty.example", negative_ttl=3)
    # `_tcp` is no empty non-terminal for a service without names.
    assert_negative(m.dns_query("_tcp.empty.example", "SRV"), dns.rcode.NXDOMAIN, zone="empty.example", negative_ttl=3)
    out = parse_dig(m.dig("web.empty.example", "A"))
    assert out.status == "NXDOMAIN" and "aa" in out.flags and out.records("AUTHORITY"), out.text

    sd.register_instance(ServiceId=svc["Id"], InstanceId="i-1",
                         Attributes={"AWS_INSTANCE_IPV4": "10.8.0.1", "AWS_INSTANCE_PORT": "80"})
    assert parse_dig(m.dig("web.empty.example", "A")).rdata("ANSWER", "A") == ["10.8.0.1"]
    # It exists now: a type it lacks is NODATA, and `_tcp` is an empty non-terminal.
    assert_negative(m.dns_query("web.empty.example", "AAAA"), dns.rcode.NOERROR, zone="empty.example", negative_ttl=3)
    assert_negative(m.dns_query("_tcp.empty.example", "SRV"), dns.rcode.NOERROR, zone="empty.example", negative_ttl=3)

    sd.deregister_instance(ServiceId=svc["Id"], InstanceId="i-1")
    for name in names:
        assert_negative(m.dns_query(name, "A"), dns.rcode.NXDOMAIN, zone="empty.example", negative_ttl=3)
    assert sd.get_service(Id=svc["Id"])["Service"]["Name"] == "web", "the service stays in the API"


def test_a_config_without_namespaces_serves_none_until_the_api_creates_one(muster):
    m = muster(default_namespace=False)
    assert cli(m, "list-namespaces")["Namespaces"] == []
    assert client(m).list_namespaces()["Namespaces"] == []
    for name in ("internal", "web.internal", "example"):
        assert rcode_text(m.dns_query(name, "SOA")) == "REFUSED"
    assert parse_dig(m.dig("internal", "SOA")).status == "REFUSED"

    cli(m, "create-private-dns-namespace", "--name", "internal", "--vpc", "vpc-1")
    soa = parse_dig(m.dig("internal", "SOA"))
    assert soa.status == "NOERROR" and soa.rdata("ANSWER", "SOA"), soa.text
    [namespace] = cli(m, "list-namespaces")["Namespaces"]
    assert namespace["Name"] == "internal" and namespace["Type"] == "DNS_PRIVATE"

    # Still none after a restart but the one the API created, which is durable.
    m.restart()
    assert [n["Name"] for n in cli(m, "list-namespaces")["Namespaces"]] == ["internal"]
    assert parse_dig(m.dig("internal", "SOA")).status == "NOERROR"


def test_config_namespaces_show_when_this_process_started(muster):
    before = time.time()
    m = muster()
    after = time.time()
    [namespace] = cli(m, "list-namespaces")["Namespaces"]
    assert namespace["Name"] == "internal"
    created = namespace["CreateDate"]
    assert before - 1 <= created <= after + 1, (before, created, after)
    got = client(m).get_namespace(Id=namespace["Id"])["Namespace"]["CreateDate"]
    assert abs(got.timestamp() - created) < 0.01
    # A later start is a later creation: the file is read afresh.
    time.sleep(1.1)
    m.restart()
    [again] = cli(m, "list-namespaces")["Namespaces"]
    assert again["CreateDate"] > created
