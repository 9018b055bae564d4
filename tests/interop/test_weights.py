"""Weights and priorities (issue 19 item 3; docs/dns.md): SRV rdata carries the
`priority` and `weight` attributes (dig and kdig read them), weight 0 keeps an instance
out while another has a weight, bad values are refused by REST and Cloud Map alike, and
A answers under `routing = "weighted"` or `max_answers` follow the weights (chi-squared
over 10,000 dnspython answers, on the fast path and, over TCP, the full path).
"""

import botocore.exceptions
import dns.message
import dns.query
import pytest

from harness import answer_rdata, namespace_toml, parse_dig

NS = "internal"
WEIGHTS = {"10.6.1.1": 1, "10.6.1.2": 2, "10.6.1.3": 3, "10.6.1.4": 4}
# Chi-squared with 3 degrees of freedom at p = 0.001.
CHI2_CRITICAL = 16.27


def srv_lines(m, name="web.internal."):
    return sorted(parse_dig(m.dig(name, "SRV")).rdata("ANSWER", "SRV"))


def test_srv_rdata_carries_the_priority_and_weight_attributes(muster):
    m = muster()
    m.put_instance(NS, "web", "w1", {"ipv4": "10.6.0.1", "port": 8080,
                                     "attributes": {"priority": "5", "weight": "10"}})
    m.put_instance(NS, "web", "w2", {"ipv4": "10.6.0.2", "port": 8080})
    assert srv_lines(m) == ["1 1 8080 w2.web.internal.", "5 10 8080 w1.web.internal."]
    kdig = m.kdig("web.internal.", "SRV", "+short")
    assert "5 10 8080 w1.web.internal." in kdig, kdig
    # A new weight alone changes the record.
    m.put_instance(NS, "web", "w1", {"ipv4": "10.6.0.1", "port": 8080,
                                     "attributes": {"priority": "5", "weight": "20"}})
    assert "5 20 8080 w1.web.internal." in srv_lines(m)


def test_weight_zero_is_out_while_another_has_weight(muster):
    m = muster()
    m.put_instance(NS, "web", "w1", {"ipv4": "10.6.0.1", "port": 80, "attributes": {"weight": "0"}})
    assert sorted(answer_rdata(m.dns_query("web.internal.", "A"), "A")) == ["10.6.0.1"], "all 0: served"
    m.put_instance(NS, "web", "w2", {"ipv4": "10.6.0.2", "port": 80, "attributes": {"weight": "3"}})
    assert sorted(answer_rdata(m.dns_query("web.internal.", "A"), "A")) == ["10.6.0.2"]
    assert srv_lines(m) == ["1 3 80 w2.web.internal."]
    assert len(m.service(NS, "web")["instances"]) == 2, "still registered"


@pytest.mark.parametrize("key,value", [("weight", "heavy"), ("weight", "70000"), ("priority", "-1")])
def test_bad_priority_or_weight_is_refused_by_both_apis(muster, key, value):
    m = muster()
    r = m.put_instance(NS, "web", "w1", {"ipv4": "10.6.0.1", "attributes": {key: value}}, check=False)
    assert r.status_code == 400 and r.json()["field"] == "attributes", r.text
    assert key in r.json()["error"], r.text
    sd = m.cloudmap()
    ns_id = next(n["Id"] for n in sd.list_namespaces()["Namespaces"] if n["Name"] == NS)
    svc = sd.create_service(Name="api", NamespaceId=ns_id, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 5}]})["Service"]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        sd.register_instance(ServiceId=svc["Id"], InstanceId="c1",
                             Attributes={"AWS_INSTANCE_IPV4": "10.6.0.9", key: value})
    assert raised.value.response["Error"]["Code"] == "InvalidInput"
    assert m.service(NS, "api")["instances"] == [], "a refused registration changed something"


def chi_squared(counts, shares):
    total = sum(counts.values())
    return sum((counts.get(k, 0) - share * total) ** 2 / (share * total) for k, share in shares.items())


def first_answers(m, name, rounds, tcp=False):
    """How often each address comes first in `rounds` answers to A `name`, and how
    often it is in the answer at all."""
    first, member = {}, {}
    query = dns.message.make_query(name, "A")
    ask = dns.query.tcp if tcp else dns.query.udp
    for _ in range(rounds):
        response = ask(query, "127.0.0.1", port=m.dns_port, timeout=2)
        addresses = [rr.address for rrset in response.answer for rr in rrset]
        first[addresses[0]] = first.get(addresses[0], 0) + 1
        for address in addresses:
            member[address] = member.get(address, 0) + 1
    return first, member


def test_answers_follow_the_weights(muster):
    m = muster(namespace_toml(services=[{"match": "one", "routing": "weighted"},
                                        {"match": "two", "max_answers": 2}]))
    for service in ("one", "two"):
        for n, (ip, weight) in enumerate(WEIGHTS.items()):
            m.put_instance(NS, service, f"w{n}", {"ipv4": ip, "attributes": {"weight": str(weight)}})
    total = sum(WEIGHTS.values())
    shares = {ip: w / total for ip, w in WEIGHTS.items()}

    first, _ = first_answers(m, "one.internal.", 10_000)
    assert chi_squared(first, shares) < CHI2_CRITICAL, first
    assert chi_squared(first, {ip: 0.25 for ip in WEIGHTS}) > 100, f"as good as uniform: {first}"

    # Two of four: the first drawn by weight, the second by the weights left.
    first, member = first_answers(m, "two.internal.", 10_000)
    assert chi_squared(first, shares) < CHI2_CRITICAL, first
    for ip, w in WEIGHTS.items():
        second = sum(v / total * w / (total - v) for other, v in WEIGHTS.items() if other != ip)
        assert abs(member[ip] / 10_000 - (w / total + second)) < 0.02, member

    # The full path (TCP) draws the same way.
    first, _ = first_answers(m, "one.internal.", 2_000, tcp=True)
    assert chi_squared(first, shares) < CHI2_CRITICAL, first


def test_equal_weights_answer_uniformly(muster):
    m = muster(namespace_toml(services=[{"match": "one", "routing": "weighted"}]))
    for n, ip in enumerate(WEIGHTS):
        m.put_instance(NS, "one", f"w{n}", {"ipv4": ip, "attributes": {"weight": "7"}})
    first, _ = first_answers(m, "one.internal.", 4_000)
    assert chi_squared(first, {ip: 0.25 for ip in WEIGHTS}) < CHI2_CRITICAL, first
