"""The REST API over plain HTTP (requests): registration, validation errors that name the
field and change nothing, listings, metrics and probes. DESIGN.md "Interfaces" / REST.
"""

import json

import dns.rcode
import pytest

from harness import answer_rdata, metric_value, parse_metrics

NS = "internal"
GOOD = {"ipv4": "10.0.0.5", "port": 8080}


@pytest.fixture
def web(muster):
    m = muster()
    m.put_instance(NS, "web", "i-1", GOOD)
    return m


def state(m):
    """Everything a bad request must leave alone."""
    return {
        "namespaces": m.get("/v1/namespaces").json(),
        "services": m.get(f"/v1/namespaces/{NS}/services").json(),
        "web": m.service(NS, "web"),
        "dns": sorted(answer_rdata(m.dns_query("web.internal", "A"), "A")),
        "srv": sorted(answer_rdata(m.dns_query("web.internal", "SRV"), "SRV")),
        "serial": m.soa_serial(),
    }


CLIENT_ERROR = (400, 499)


def assert_error(r, status, field=None):
    """A 4xx (``status`` is a code or an inclusive range) with a JSON error naming ``field``."""
    low, high = status if isinstance(status, tuple) else (status, status)
    assert low <= r.status_code <= high, f"status {r.status_code}, want {status}: {r.text}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    if field is not None:
        assert body.get("field") == field, f"field {body.get('field')!r}, want {field!r}: {body}"
    return body


# ---------------------------------------------------------------------------------------
# Happy path


def test_put_returns_identity_and_revision_and_is_visible_at_once(muster):
    m = muster()
    r = m.put_instance(NS, "web", "i-1", GOOD)
    body = r.json()
    assert {k: body[k] for k in ("namespace", "service", "id")} == {
        "namespace": NS,
        "service": "web",
        "id": "i-1",
    }
    assert isinstance(body["revision"], int)
    # Visible in DNS when the response arrives, and the SOA serial is the revision.
    assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]
    assert m.soa_serial() == body["revision"]

    r2 = m.put_instance(NS, "web", "i-2", {"ipv4": "10.0.0.6"}).json()
    assert r2["revision"] > body["revision"]
    d = m.delete_instance(NS, "web", "i-2").json()
    assert d["revision"] > r2["revision"]
    assert m.soa_serial() == d["revision"]


def test_read_your_writes(muster):
    """Every acknowledged PUT/DELETE is already in the next DNS answer, UDP and TCP alike."""
    m = muster()
    for i in range(25):
        addr = f"10.0.2.{i + 1}"
        m.put_instance(NS, "flap", "f-1", {"ipv4": addr})
        assert answer_rdata(m.dns_query("flap.internal", "A", tcp=bool(i % 2)), "A") == [addr], i
        m.delete_instance(NS, "flap", "f-1")
        assert m.dns_query("flap.internal", "A", tcp=bool(i % 2)).rcode() == dns.rcode.NXDOMAIN, i


def test_put_replaces(muster):
    m = muster()
    m.put_instance(NS, "web", "i-1", GOOD)
    m.put_instance(NS, "web", "i-1", {"ipv4": "10.0.0.99", "port": 9090, "attributes": {"v": "2"}})
    assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.99"]
    assert answer_rdata(m.dns_query("web.internal", "SRV"), "SRV") == ["1 1 9090 i-1.web.internal."]
    svc = m.service(NS, "web")
    assert len(svc["instances"]) == 1
    assert svc["instances"][0]["attributes"] == {"v": "2"}


def test_full_body_accepted(muster):
    m = muster()
    body = {"ipv4": "10.0.0.5", "ipv6": None, "port": 8080, "attributes": {}, "healthy": True}
    m.put_instance(NS, "web", "i-1", body)
    m.put_instance(NS, "web", "i-2", {"ipv4": None, "ipv6": "fd00::2"})
    assert answer_rdata(m.dns_query("web.internal", "AAAA"), "AAAA") == ["fd00::2"]


def test_curl_style_put_without_json_content_type(muster):
    """curl -X PUT -d '{...}' sends application/x-www-form-urlencoded; the API is curl-friendly."""
    m = muster()
    r = m.put(
        m.instance_path(NS, "web", "i-1"),
        data=json.dumps(GOOD),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]


def test_listings(web):
    m = web
    m.put_instance(NS, "web", "i-2", {"ipv6": "fd00::2", "attributes": {"zone": "a"}, "healthy": False})
    m.put_instance(NS, "db", "d-1", {"ipv4": "10.0.0.9", "port": 5432})

    ns = m.get("/v1/namespaces")
    assert ns.status_code == 200 and ns.headers["content-type"].startswith("application/json")
    namespaces = ns.json()["namespaces"]
    assert len(namespaces) == 1
    assert_has(namespaces[0], {"name": "internal", "services": 2, "instances": 3})

    svcs = m.get(f"/v1/namespaces/{NS}/services")
    assert svcs.status_code == 200
    by_name = {s["name"]: s for s in svcs.json()["services"]}
    assert sorted(by_name) == ["db", "web"]
    assert_has(by_name["web"], {"name": "web", "instances": 2, "healthy": 1})
    assert_has(by_name["db"], {"name": "db", "instances": 1, "healthy": 1})

    svc = m.service(NS, "web")
    assert svc["namespace"] == NS and svc["name"] == "web"
    insts = {i["id"]: i for i in svc["instances"]}
    assert sorted(insts) == ["i-1", "i-2"]
    assert_has(
        insts["i-1"],
        {
            "id": "i-1",
            "ipv4": "10.0.0.5",
            "ipv6": None,
            "port": 8080,
            "attributes": {},
            "healthy": True,
            "source": "api",
        },
    )
    assert_has(
        insts["i-2"],
        {
            "id": "i-2",
            "ipv4": None,
            "ipv6": "fd00::2",
            "port": None,
            "attributes": {"zone": "a"},
            "healthy": False,
            "source": "api",
        },
    )


def assert_has(actual, expected):
    """Every key of ``expected`` is in ``actual`` with that value (extra keys are allowed)."""
    assert {k: actual.get(k, "<missing>") for k in expected} == expected, actual


def test_listing_unknowns_are_404(web):
    assert_error(web.get("/v1/namespaces/nope/services"), 404)
    assert_error(web.get(f"/v1/namespaces/{NS}/services/nope"), 404)


def test_health_endpoint(web):
    m = web
    assert m.set_health(NS, "web", "i-1", False).status_code == 200
    assert m.service(NS, "web")["instances"][0]["healthy"] is False
    assert m.set_health(NS, "web", "i-1", True).status_code == 200
    assert m.service(NS, "web")["instances"][0]["healthy"] is True
    assert_error(m.set_health(NS, "web", "i-404", False, check=False), 404)
    assert_error(m.set_health(NS, "nope", "i-1", False, check=False), 404)


def test_probes_and_metrics(web):
    m = web
    assert m.get("/healthz").status_code == 200
    assert m.get("/readyz").status_code == 200
    for _ in range(3):
        m.dns_query("web.internal", "A")
    m.dns_query("web.internal", "A", tcp=True)
    m.dns_query("nope.internal", "A")
    r = m.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain") or "openmetrics" in r.headers["content-type"]
    text = r.text
    queries = [s.value for s in parse_metrics(text) if s.name == "muster_dns_queries_total"]
    assert queries, f"no muster_dns_queries_total sample in /metrics:\n{text}"
    assert sum(queries) >= 5, f"muster_dns_queries_total sums to {sum(queries)} after 5 queries"
    rev = metric_value(text, "muster_registry_revision")
    assert rev is not None, f"no muster_registry_revision sample in /metrics:\n{text}"
    assert rev == m.soa_serial()


# ---------------------------------------------------------------------------------------
# Bad input: 4xx naming the field, nothing changed

BAD_BODIES = [
    ("ipv4 octet > 255", {"ipv4": "10.0.0.300", "port": 80}, "ipv4"),
    ("ipv4 holds an IPv6", {"ipv4": "fd00::1", "port": 80}, "ipv4"),
    ("ipv4 not a string", {"ipv4": 167772165, "port": 80}, "ipv4"),
    ("ipv6 invalid", {"ipv6": "fd00::zz", "port": 80}, "ipv6"),
    ("ipv6 holds an IPv4", {"ipv6": "10.0.0.1", "port": 80}, "ipv6"),
    ("port 0", {"ipv4": "10.0.0.1", "port": 0}, "port"),
    ("port 70000", {"ipv4": "10.0.0.1", "port": 70000}, "port"),
    ("port -1", {"ipv4": "10.0.0.1", "port": -1}, "port"),
    ("port a string", {"ipv4": "10.0.0.1", "port": "80"}, "port"),
    ("healthy a string", {"ipv4": "10.0.0.1", "healthy": "no"}, "healthy"),
    ("31 attributes", {"ipv4": "10.0.0.1", "attributes": {f"k{i}": "v" for i in range(31)}}, "attributes"),
    (
        "attributes over 5000 chars",
        {"ipv4": "10.0.0.1", "attributes": {f"k{i}": "x" * 1000 for i in range(6)}},
        "attributes",
    ),
    ("attribute value not a string", {"ipv4": "10.0.0.1", "attributes": {"k": 1}}, "attributes"),
    ("unknown field", {"ipv4": "10.0.0.1", "colour": "red"}, "colour"),
    ("named port 0", {"ipv4": "10.0.0.1", "ports": {"grpc": 0}}, "ports"),
    ("named port 70000", {"ipv4": "10.0.0.1", "ports": {"grpc": 70000}}, "ports"),
    ("named port a string", {"ipv4": "10.0.0.1", "ports": {"grpc": "9090"}}, "ports"),
    ("named port sctp", {"ipv4": "10.0.0.1", "ports": {"grpc": {"port": 1, "protocol": "sctp"}}}, "ports"),
    ("port name upper case", {"ipv4": "10.0.0.1", "ports": {"GRPC": 9090}}, "ports"),
    ("port name with a dot", {"ipv4": "10.0.0.1", "ports": {"a.b": 9090}}, "ports"),
    ("port name of 63", {"ipv4": "10.0.0.1", "ports": {"p" * 63: 9090}}, "ports"),
    ("17 named ports", {"ipv4": "10.0.0.1", "ports": {f"p{i}": 9000 + i for i in range(17)}}, "ports"),
]


@pytest.mark.parametrize("what,body,field", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
@pytest.mark.parametrize("iid", ["i-1", "i-new"], ids=["replace", "create"])
def test_bad_body_names_field_and_changes_nothing(web, what, body, field, iid):
    before = state(web)
    assert_error(web.put_instance(NS, "web", iid, body, check=False), CLIENT_ERROR, field)
    assert state(web) == before


@pytest.mark.parametrize(
    "body",
    [{"port": 80}, {"ipv4": None, "ipv6": None, "port": 80}, {}],
    ids=["no address", "null addresses", "empty"],
)
def test_no_address_rejected(web, body):
    before = state(web)
    err = assert_error(web.put_instance(NS, "web", "i-new", body, check=False), CLIENT_ERROR)
    assert err.get("field") in ("ipv4", "ipv6", "address", "ipv4/ipv6", "ipv4,ipv6"), err
    assert state(web) == before


@pytest.mark.parametrize(
    "raw",
    ['{"ipv4": "10.0.0.1",', "not json", '["10.0.0.1"]', ""],
    ids=["cut", "text", "array", "empty"],
)
def test_malformed_json_rejected(web, raw):
    before = state(web)
    r = web.put(web.instance_path(NS, "web", "i-1"), data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, CLIENT_ERROR)
    assert state(web) == before


@pytest.mark.parametrize(
    "svc",
    ["bad_name!", "a" * 64, "-web", "web-", "we.b"],
    ids=["punct", "64 chars", "leading hyphen", "trailing hyphen", "dot"],
)
def test_service_name_must_be_a_dns_label(web, svc):
    before = state(web)
    assert_error(web.put_instance(NS, svc, "i-1", GOOD, check=False), CLIENT_ERROR, "service")
    assert state(web) == before


def test_service_name_63_chars_is_fine(muster):
    m = muster()
    svc = "a" * 63
    m.put_instance(NS, svc, "i-1", GOOD)
    assert answer_rdata(m.dns_query(f"{svc}.internal", "A"), "A") == ["10.0.0.5"]


def test_boundaries_accepted(muster):
    m = muster()
    m.put_instance(NS, "web", "p1", {"ipv4": "10.0.0.1", "port": 1})
    m.put_instance(NS, "web", "p65535", {"ipv4": "10.0.0.2", "port": 65535})
    m.put_instance(
        NS, "web", "attrs30", {"ipv4": "10.0.0.3", "attributes": {f"k{i}": "v" for i in range(30)}}
    )
    assert sorted(answer_rdata(m.dns_query("web.internal", "SRV"), "SRV")) == [
        "1 1 1 p1.web.internal.",
        "1 1 65535 p65535.web.internal.",
    ]


def test_named_ports_answer_their_own_srv_names(muster):
    """Issue 18: each named port answers `_<name>._tcp.<svc>.<ns>` (or `_udp`), while
    `<svc>.<ns>` SRV stays on `port`; GET shows them, Cloud Map shows them as attributes."""
    m = muster()
    ports = {"grpc": 9090, "metrics": {"port": 9100}, "dns": {"port": 53, "protocol": "udp"}}
    m.put_instance(NS, "api", "a-1", {"ipv4": "10.0.0.1", "port": 8080, "ports": ports})
    m.put_instance(NS, "api", "a-2", {"ipv4": "10.0.0.2", "port": 8080, "ports": {"grpc": 9091}})
    srv = lambda name, tcp=False: sorted(answer_rdata(m.dns_query(name, "SRV", tcp=tcp), "SRV"))
    assert srv("_grpc._tcp.api.internal") == ["1 1 9090 a-1.api.internal.", "1 1 9091 a-2.api.internal."]
    assert srv("_grpc._tcp.api.internal", tcp=True) == srv("_grpc._tcp.api.internal")
    assert srv("_metrics._tcp.api.internal") == ["1 1 9100 a-1.api.internal."]
    assert srv("_dns._udp.api.internal") == ["1 1 53 a-1.api.internal."]
    assert srv("api.internal") == ["1 1 8080 a-1.api.internal.", "1 1 8080 a-2.api.internal."]
    # dig: the glue is the targets' addresses.
    glue = m.dig("+noall", "+additional", "_grpc._tcp.api.internal", "SRV")
    assert sorted(line.split() for line in glue.splitlines() if line.strip()) == [
        ["a-1.api.internal.", "5", "IN", "A", "10.0.0.1"],
        ["a-2.api.internal.", "5", "IN", "A", "10.0.0.2"],
    ], glue
    assert m.dns_query("_dns._tcp.api.internal", "SRV").rcode() == dns.rcode.NXDOMAIN
    assert m.dns_query("_grpc._tcp.api.internal", "A").rcode() == dns.rcode.NOERROR
    instances = {i["id"]: i for i in m.service(NS, "api")["instances"]}
    assert instances["a-1"]["ports"] == {
        "dns": {"port": 53, "protocol": "udp"},
        "grpc": {"port": 9090, "protocol": "tcp"},
        "metrics": {"port": 9100, "protocol": "tcp"},
    }
    # Cloud Map has no named ports: DiscoverInstances shows them as attributes.
    cloudmap = m.cloudmap()
    found = cloudmap.discover_instances(NamespaceName=NS, ServiceName="api")["Instances"]
    attributes = {i["InstanceId"]: i["Attributes"] for i in found}["a-1"]
    assert {k: v for k, v in attributes.items() if k.startswith("MUSTER_PORT_")} == {
        "MUSTER_PORT_dns": "53/udp",
        "MUSTER_PORT_grpc": "9090",
        "MUSTER_PORT_metrics": "9100",
    }
    # A re-registration without them removes them.
    m.put_instance(NS, "api", "a-1", {"ipv4": "10.0.0.1", "port": 8080})
    assert srv("_grpc._tcp.api.internal") == ["1 1 9091 a-2.api.internal."]
    assert m.dns_query("_dns._udp.api.internal", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_unknown_namespace_is_404(web):
    before = state(web)
    assert_error(web.put_instance("nope", "web", "i-1", GOOD, check=False), 404)
    assert_error(web.delete_instance("nope", "web", "i-1", check=False), 404)
    assert state(web) == before


def test_delete_missing_is_404(web):
    before = state(web)
    assert_error(web.delete_instance(NS, "web", "i-404", check=False), 404)
    assert_error(web.delete_instance(NS, "nope", "i-1", check=False), 404)
    assert state(web) == before


def test_delete_then_dns_and_listing_forget(web):
    m = web
    m.delete_instance(NS, "web", "i-1")
    assert m.dns_query("web.internal", "A").rcode() == dns.rcode.NXDOMAIN
    assert m.get(f"/v1/namespaces/{NS}/services").json()["services"] == []
    namespaces = m.get("/v1/namespaces").json()["namespaces"]
    assert len(namespaces) == 1
    assert_has(namespaces[0], {"name": "internal", "services": 0, "instances": 0})
    assert_error(m.delete_instance(NS, "web", "i-1", check=False), 404)
