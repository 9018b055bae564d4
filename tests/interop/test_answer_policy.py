"""The per-service answer policy (DESIGN.md "Answer policy"): max_answers, when_all_unhealthy,
routing; health set through the REST API.
"""

import dns.rcode

from harness import answer_rdata, assert_negative, namespace_toml, parse_dig

POLICIES = namespace_toml(
    ttl=5,
    negative_ttl=1,
    services=[
        {"match": "strict*", "when_all_unhealthy": "empty"},
        {"match": "wt*", "routing": "weighted"},
        {"match": "few*", "max_answers": 3},
    ],
)


def register(m, svc, n, port=80, v6=False, **extra):
    addrs = []
    for i in range(n):
        body = {"ipv4": f"10.3.0.{i + 1}", "port": port, **extra}
        if v6:
            body["ipv6"] = f"fd00::3:{i + 1:x}"
        m.put_instance("internal", svc, f"i-{i}", body)
        addrs.append(body["ipv4"])
    return addrs


def a_records(m, name, **kw):
    r = m.dns_query(name, "A", **kw)
    assert r.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(r.rcode())
    return answer_rdata(r, "A")


def test_max_answers_default_8_random_subset(muster):
    m = muster(POLICIES)
    addrs = set(register(m, "web", 20, v6=True))
    seen = set()
    for i in range(30):
        got = a_records(m, "web.internal", tcp=bool(i % 2))
        assert len(got) == 8, f"query {i}: {len(got)} A records, want 8"
        assert len(set(got)) == 8 and set(got) <= addrs
        seen |= set(got)
    assert len(seen) > 8, f"30 answers drew from only {len(seen)} addresses: not a fresh subset"

    r = m.dns_query("web.internal", "AAAA")
    assert len(answer_rdata(r, "AAAA")) == 8

    out = parse_dig(m.dig("web.internal", "A"))
    assert len(out.rdata("ANSWER", "A")) == 8, out.text
    out = parse_dig(m.kdig("web.internal", "A"))
    assert len(out.rdata("ANSWER", "A")) == 8, out.text


def test_max_answers_limits_srv_and_glue_follows(muster):
    m = muster(POLICIES)
    register(m, "web", 20)
    for _ in range(5):
        r = m.dns_query("web.internal", "SRV")
        srv = [rd for rrset in r.answer for rd in rrset]
        assert len(srv) == 8
        targets = {rd.target.to_text() for rd in srv}
        glue = {rrset.name.to_text() for rrset in r.additional}
        assert glue == targets, "additional must hold the glue of exactly the SRV targets in the answer"


def test_max_answers_from_glob(muster):
    m = muster(POLICIES)
    register(m, "fewer", 10)
    for _ in range(5):
        assert len(a_records(m, "fewer.internal")) == 3
    # A service with fewer instances than max_answers gets them all.
    register(m, "web", 5)
    assert len(a_records(m, "web.internal")) == 5


def test_all_unhealthy_default_serves_all(muster):
    m = muster(POLICIES)
    addrs = register(m, "web", 3)
    for i in range(3):
        m.set_health("internal", "web", f"i-{i}", False)
    assert sorted(a_records(m, "web.internal")) == sorted(addrs)
    r = m.dns_query("web.internal", "SRV")
    assert len(answer_rdata(r, "SRV")) == 3
    out = parse_dig(m.dig("web.internal", "A"))
    assert out.status == "NOERROR" and sorted(out.rdata("ANSWER", "A")) == sorted(addrs), out.text


def test_all_unhealthy_empty_policy_is_nxdomain(muster):
    # With no instance served the service has no records at all, as a Route 53 name with
    # none: NXDOMAIN (docs/dns.md, "Empty services").
    m = muster(POLICIES)
    addrs = register(m, "strict-db", 3)
    for i in range(3):
        m.set_health("internal", "strict-db", f"i-{i}", False)
    for rdtype in ("A", "SRV"):
        assert_negative(m.dns_query("strict-db.internal", rdtype), dns.rcode.NXDOMAIN)
    out = parse_dig(m.kdig("strict-db.internal", "A"))
    assert out.status == "NXDOMAIN" and out.counts.get("ANSWER") == 0, out.text
    # One comes back: answered again.
    m.set_health("internal", "strict-db", "i-1", True)
    assert a_records(m, "strict-db.internal") == [addrs[1]]


def test_unhealthy_instance_is_left_out(muster):
    m = muster(POLICIES)
    addrs = register(m, "web", 4)
    m.set_health("internal", "web", "i-2", False)
    for _ in range(5):
        got = a_records(m, "web.internal")
        assert sorted(got) == sorted(addrs[:2] + addrs[3:]), got
    srv = answer_rdata(m.dns_query("web.internal", "SRV"), "SRV")
    assert len(srv) == 3 and not any("i-2.web" in s for s in srv), srv
    # Healthy again: back in the answer.
    m.set_health("internal", "web", "i-2", True)
    assert sorted(a_records(m, "web.internal")) == sorted(addrs)


def test_registered_unhealthy_is_left_out(muster):
    m = muster(POLICIES)
    m.put_instance("internal", "web", "up", {"ipv4": "10.3.1.1"})
    m.put_instance("internal", "web", "down", {"ipv4": "10.3.1.2", "healthy": False})
    assert a_records(m, "web.internal") == ["10.3.1.1"]


def test_unhealthy_not_counted_against_max_answers(muster):
    """20 instances, 12 unhealthy: every answer has exactly the 8 healthy ones."""
    m = muster(POLICIES)
    addrs = register(m, "web", 20)
    for i in range(12):
        m.set_health("internal", "web", f"i-{i}", False)
    for _ in range(5):
        assert sorted(a_records(m, "web.internal")) == sorted(addrs[12:])


def test_weighted_routing_one_record(muster):
    m = muster(POLICIES)
    addrs = set(register(m, "wt-api", 5))
    seen = set()
    for i in range(30):
        got = a_records(m, "wt-api.internal", tcp=bool(i % 2))
        assert len(got) == 1, f"weighted routing answered {got}"
        seen |= set(got)
    assert seen <= addrs
    assert len(seen) > 1, "weighted routing always picked the same instance"
    out = parse_dig(m.dig("wt-api.internal", "A"))
    assert len(out.rdata("ANSWER", "A")) == 1, out.text


def test_weighted_routing_srv_one_record_with_its_glue(muster):
    m = muster(POLICIES)
    register(m, "wt-api", 5)
    for _ in range(5):
        r = m.dns_query("wt-api.internal", "SRV")
        srv = [rd for rrset in r.answer for rd in rrset]
        assert len(srv) == 1, srv
        assert {rrset.name.to_text() for rrset in r.additional} == {srv[0].target.to_text()}
