"""Attribute subsets in DNS (issue 19 item 2; docs/dns.md, "Subsets"): a service rule's
`subsets = ["version"]` answers `v2._version.web.internal` (A, AAAA, SRV) with the
instances whose `version` is `v2`, under the same answer policy judged inside the subset
(max_answers, fail-open); zone transfers carry the subset names. dig, kdig and
dnspython ask.
"""

from harness import answer_rdata, namespace_toml, parse_dig

NS = "internal"
CONFIG = namespace_toml(services=[{"match": "web", "subsets": ["version", "track"], "max_answers": 2}]) + """
[transfer]
allow = ["127.0.0.1"]
"""


def a_of(m, name):
    return set(answer_rdata(m.dns_query(name, "A"), "A"))


def test_a_subset_answers_its_instances_under_the_service_policy(muster):
    m = muster(CONFIG)
    for n, version in enumerate(["v1", "v2", "v2", "v2", "V3"], start=1):
        m.put_instance(NS, "web", f"w{n}", {"ipv4": f"10.7.0.{n}", "port": 8080,
                                            "attributes": {"version": version, "track": "stable"}})
    # v2 has three instances; max_answers 2 holds inside the subset too.
    seen = set()
    for _ in range(30):
        answer = a_of(m, "v2._version.web.internal.")
        assert len(answer) == 2 and answer <= {"10.7.0.2", "10.7.0.3", "10.7.0.4"}, answer
        seen |= answer
    assert seen == {"10.7.0.2", "10.7.0.3", "10.7.0.4"}
    assert a_of(m, "v3._version.web.internal.") == {"10.7.0.5"}, "values are matched as lowercase labels"
    srv = parse_dig(m.dig("v1._version.web.internal.", "SRV"))
    assert srv.rdata("ANSWER", "SRV") == ["1 1 8080 w1.web.internal."]
    assert srv.rdata("ADDITIONAL", "A") == ["10.7.0.1"], "the glue is the service's own target"
    assert len(a_of(m, "stable._track.web.internal.")) == 2, "a second key"
    # Names that are not subsets.
    assert m.dns_query("v9._version.web.internal.", "A").rcode() == 3, "no such value: NXDOMAIN"
    assert m.dns_query("v2._color.web.internal.", "A").rcode() == 3, "no such key: NXDOMAIN"
    r = m.dns_query("_version.web.internal.", "A")
    assert r.rcode() == 0 and not r.answer, "the key's label is an empty non-terminal (NODATA)"


def test_a_subset_fails_open_among_its_own_instances(muster):
    m = muster(CONFIG)
    m.put_instance(NS, "web", "w1", {"ipv4": "10.7.1.1", "attributes": {"version": "v1"}})
    m.put_instance(NS, "web", "w2", {"ipv4": "10.7.1.2", "attributes": {"version": "v2"}})
    m.set_health(NS, "web", "w2", False)
    assert a_of(m, "web.internal.") == {"10.7.1.1"}, "the service has a healthy instance"
    assert a_of(m, "v2._version.web.internal.") == {"10.7.1.2"}, "v2 alone: fail-open inside it"
    m.set_health(NS, "web", "w2", True)
    m.put(m.instance_path(NS, "web", "w2") + "/drain").raise_for_status()
    assert m.dns_query("v2._version.web.internal.", "A").rcode() == 3, "drained: no instance served"


def test_zone_transfers_carry_the_subset_names(muster):
    m = muster(CONFIG)
    m.put_instance(NS, "web", "w1", {"ipv4": "10.7.2.1", "port": 80, "attributes": {"version": "v1"}})
    out = m.kdig("internal", "AXFR", "+tcp")
    lines = [line.split() for line in out.splitlines() if line and not line.startswith(";")]
    owners = {(fields[0], fields[3]) for fields in lines if len(fields) > 4}
    assert ("v1._version.web.internal.", "A") in owners, out
    assert ("v1._version.web.internal.", "SRV") in owners, out
    assert ("w1.web.internal.", "A") in owners, out
    # A change of value moves the instance: IXFR-visible as a new record set.
    m.put_instance(NS, "web", "w1", {"ipv4": "10.7.2.1", "port": 80, "attributes": {"version": "v2"}})
    out = m.kdig("internal", "AXFR", "+tcp")
    assert "v2._version.web.internal." in out and "v1._version.web.internal." not in out, out


def test_a_key_answers_its_first_64_values_and_no_more(muster):
    # Each value's name is a copy of its instances' records, so one key holds at most 64
    # (docs/dns.md): values in label order, the 65th and later get no name.
    m = muster(CONFIG)
    changes = [
        {"op": "register", "service": "web", "id": f"w{n}",
         "instance": {"ipv4": f"10.7.3.{n + 1}", "attributes": {"version": f"v{n:02}"}}}
        for n in range(70)
    ]
    r = m.http.post(m.url(f"/v1/namespaces/{NS}/batch"), json={"changes": changes}, timeout=10)
    assert r.status_code == 200, r.text
    assert a_of(m, "v00._version.web.internal.") == {"10.7.3.1"}
    assert a_of(m, "v63._version.web.internal.") == {"10.7.3.64"}
    for n in (64, 69):
        assert m.dns_query(f"v{n}._version.web.internal.", "A").rcode() == 3, f"v{n} has no name"
    assert len(a_of(m, "web.internal.")) == 2, "the service itself answers as before"
