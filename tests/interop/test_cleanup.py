"""Clean-up of the dead (issue 19; docs/health.md): an API-owned instance unhealthy for
its `deregister_after` is deregistered, durably; a file's instance never is. Checked
with requests (REST), dnspython (DNS) and /metrics.
"""

import time

import dns.rcode
import pytest

from harness import answer_rdata, namespace_toml, toml_value, wait_until

NS = "internal"


def a_set(m, name="web.internal."):
    r = m.dns_query(name, "A")
    if r.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(r.rcode())
    return sorted(answer_rdata(r, "A"))


def ids(m, svc="web"):
    r = m.get(f"/v1/namespaces/{NS}/services/{svc}")
    return sorted(i["id"] for i in r.json()["instances"]) if r.status_code == 200 else []


def test_a_dead_api_instance_is_deregistered_after_its_time_and_a_live_one_stays(muster):
    m = muster()
    dead = {"ipv4": "10.7.0.1", "port": 80, "heartbeat_ttl": "1s", "deregister_after": "2s"}
    m.put_instance(NS, "web", "dead", dead)
    m.put_instance(NS, "web", "alive", {**dead, "ipv4": "10.7.0.2"})
    view = next(i for i in m.service(NS, "web")["instances"] if i["id"] == "dead")
    assert view["deregister_after"] == "2s"
    started = time.monotonic()
    # "alive" keeps sending heartbeats; "dead" stopped: unhealthy at 1 s, gone at 3 s.
    gone = None
    while time.monotonic() - started < 6:
        m.put(f"/v1/namespaces/{NS}/services/web/instances/alive/heartbeat")
        if gone is None and "dead" not in ids(m):
            gone = time.monotonic() - started
        time.sleep(0.1)
    assert gone is not None, "never deregistered"
    assert 2.9 <= gone <= 4.0, f"deregistered {gone:.2f} s after its last heartbeat"
    assert ids(m) == ["alive"]
    assert a_set(m) == ["10.7.0.2"]
    assert a_set(m, "dead.web.internal.") == "NXDOMAIN"
    assert m.metric("muster_health_deregistered_total") == 1
    # Durable: a restart does not bring it back.
    m.restart()
    assert ids(m) == ["alive"]


@pytest.mark.parametrize("value", ["0s", "500ms", "31days", "soon"])
def test_a_bad_deregister_after_is_a_400_naming_it(muster, value):
    m = muster()
    body = {"ipv4": "10.7.0.1", "heartbeat_ttl": "1s", "deregister_after": value}
    r = m.put_instance(NS, "web", "x", body, check=False)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "deregister_after", r.json()
    assert ids(m) == []


def test_a_service_rule_cleans_up_api_instances_never_a_files(muster, tmp_path):
    path = tmp_path / "static.toml"
    path.write_text(
        '[[instances]]\nnamespace = "internal"\nservice = "web"\nid = "f1"\nipv4 = "127.0.0.2"\nport = 9\n'
    )
    rule = {"match": "web", "deregister_after": "1s",
            "check": {"tcp": True, "interval": "200ms", "unhealthy_threshold": 1}}
    config = namespace_toml(services=[rule]) + "\n[health]\nallow = [\"127.0.0.0/8\"]\n"
    config += f"\n[[sources.file]]\npath = {toml_value(str(path))}\n"
    m = muster(config)
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=5, message="/readyz 200")
    assert m.service(NS, "web")["policy"]["deregister_after"] == "1s"
    # Nothing listens on port 9: both checks fail within 200 ms; the API's instance has
    # 1 s to go, the file's stays however long it fails.
    m.put_instance(NS, "web", "api1", {"ipv4": "127.0.0.1", "port": 9})
    wait_until(lambda: "api1" not in ids(m), timeout=4, message="api1 deregistered")
    time.sleep(1.5)
    assert ids(m) == ["f1"], "the file's instance went too"
    assert m.service(NS, "web")["instances"][0]["check_ok"] is False, "f1's check passes"
