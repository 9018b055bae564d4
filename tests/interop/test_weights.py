"""SRV priority and weight from the `priority` and `weight` attributes (issue 19 item 3,
first part; docs/dns.md): dig and kdig read them, weight 0 keeps an instance out while
another has a weight, bad values are refused by REST and Cloud Map alike.
"""

import botocore.exceptions
import pytest

from harness import answer_rdata, parse_dig

NS = "internal"


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
