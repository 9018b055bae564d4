"""Zone-aware answers (issue 19 item 1; docs/dns.md, "Zone-aware answers"): a service
under `locality = "prefer_zone"` answers a client with the instances of its own zone
(`[[zones]]` by the querier's address, or the query's Client Subnet, which is then echoed
with its scope), while at least `min_local` are healthy there; dig and dnspython ask, over
UDP (fast path) and TCP (full path).
"""

import subprocess

import dns.edns
import pytest

from harness import answer_rdata, muster_bin, namespace_toml, parse_dig

NS = "internal"
ZONE_A = {"10.1.0.1", "10.1.0.2"}
ZONE_B = {"10.2.0.1", "10.2.0.2"}
NOWHERE = {"10.3.0.1"}
CONFIG = namespace_toml(services=[
    {"match": "web", "locality": "prefer_zone", "min_local": 2, "max_answers": 0},
    {"match": "plain", "max_answers": 0},
]) + """
[[zones]]
name = "zone-a"
cidrs = ["127.0.0.0/8"]

[[zones]]
name = "zone-b"
cidrs = ["10.20.0.0/16", "fd20::/48"]
"""


@pytest.fixture(scope="module")
def server(module_muster):
    m = module_muster(CONFIG)
    for service in ("web", "plain"):
        for ip, zone in [*((ip, "zone-a") for ip in ZONE_A), *((ip, "zone-b") for ip in ZONE_B),
                         *((ip, None) for ip in NOWHERE)]:
            attributes = {"AVAILABILITY_ZONE": zone} if zone else {}
            m.put_instance(NS, service, "i" + ip.replace(".", "-"),
                           {"ipv4": ip, "port": 80, "attributes": attributes})
    return m


def subnet(address, prefix):
    return dns.edns.ECSOption(address, prefix)


def ask(m, name="web.internal.", rdtype="A", tcp=False, ecs=None):
    r = m.dns_query(name, rdtype, tcp=tcp, options=[ecs] if ecs else None)
    echoed = [o for o in r.options if isinstance(o, dns.edns.ECSOption)]
    return r, echoed


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_client_is_answered_from_its_own_zone(server, tcp):
    r, echoed = ask(server, tcp=tcp)
    assert set(answer_rdata(r, "A")) == ZONE_A, "127.0.0.1 is in zone-a"
    assert echoed == [], "no Client Subnet asked, none echoed"
    r, _ = ask(server, rdtype="SRV", tcp=tcp)
    targets = {rr.split()[-1] for rr in answer_rdata(r, "SRV")}
    assert targets == {"i10-1-0-1.web.internal.", "i10-1-0-2.web.internal."}, targets


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_client_subnet_chooses_the_zone_and_is_echoed_with_its_scope(server, tcp):
    r, echoed = ask(server, tcp=tcp, ecs=subnet("10.20.3.0", 24))
    assert set(answer_rdata(r, "A")) == ZONE_B
    assert [(e.address, e.srclen, e.scopelen) for e in echoed] == [("10.20.3.0", 24, 16)]
    r, echoed = ask(server, tcp=tcp, ecs=subnet("fd20::", 56))
    assert set(answer_rdata(r, "A")) == ZONE_B
    assert [(e.srclen, e.scopelen) for e in echoed] == [(56, 48)]
    # In no zone: every instance, and the answer holds for the prefix as sent.
    r, echoed = ask(server, tcp=tcp, ecs=subnet("192.0.2.0", 24))
    assert set(answer_rdata(r, "A")) == ZONE_A | ZONE_B | NOWHERE
    assert [(e.srclen, e.scopelen) for e in echoed] == [(24, 24)]


def test_dig_sees_the_zone_and_the_scope(server):
    out = server.dig("web.internal.", "A", "+subnet=10.20.9.0/24")
    assert set(parse_dig(out).rdata("ANSWER", "A")) == ZONE_B, out
    assert "CLIENT-SUBNET: 10.20.9.0/24/16" in out, out


def test_a_service_without_locality_ignores_the_client(server):
    r, echoed = ask(server, name="plain.internal.", ecs=subnet("10.20.3.0", 24))
    assert set(answer_rdata(r, "A")) == ZONE_A | ZONE_B | NOWHERE
    assert echoed == [], "an answer the subnet did not choose does not echo it"


def test_too_few_healthy_in_the_zone_answers_from_every_zone(server):
    server.set_health(NS, "web", "i10-1-0-1", False)
    try:
        for tcp in (False, True):
            r, _ = ask(server, tcp=tcp)
            # min_local = 2: one healthy in zone-a is not enough; every healthy one.
            assert set(answer_rdata(r, "A")) == (ZONE_A - {"10.1.0.1"}) | ZONE_B | NOWHERE
        r, _ = ask(server, ecs=subnet("10.20.3.0", 24))
        assert set(answer_rdata(r, "A")) == ZONE_B, "zone-b still has two"
    finally:
        server.set_health(NS, "web", "i10-1-0-1", True)
    r, _ = ask(server)
    assert set(answer_rdata(r, "A")) == ZONE_A


def test_a_bad_zone_table_stops_muster_naming_it(muster):
    m = muster(CONFIG.replace('"10.20.0.0/16"', '"10.20.0.0/99"'), start=False)
    p = subprocess.run([str(muster_bin()), "serve", "--config", str(m.config_path)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "zones[1].cidrs[0]" in p.stdout + p.stderr, p.stderr
