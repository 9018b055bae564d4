"""Heartbeat TTLs through the REST API, checked with dnspython: an instance whose
heartbeats stop leaves DNS answers soon after its deadline, comes back with the next
heartbeat, and gets one TTL of grace after a restart."""

import time

from harness import answer_rdata, wait_until


def a_records(m, name="hb.internal"):
    return sorted(answer_rdata(m.dns_query(name, "A"), "A"))


def heartbeat(m, iid, status=200):
    r = m.put(f"/v1/namespaces/internal/services/hb/instances/{iid}/heartbeat")
    assert r.status_code == status, r.text
    return r


def test_missed_heartbeat_removes_and_next_heartbeat_restores(muster):
    m = muster()
    m.put_instance("internal", "hb", "h-1", {"ipv4": "10.0.0.1", "heartbeat_ttl": "400ms"})
    m.put_instance("internal", "hb", "h-2", {"ipv4": "10.0.0.2"})
    assert a_records(m) == ["10.0.0.1", "10.0.0.2"]
    for _ in range(5):  # 1 s of heartbeats every 200 ms keeps it in
        time.sleep(0.2)
        heartbeat(m, "h-1")
        assert a_records(m) == ["10.0.0.1", "10.0.0.2"]
    serial = m.soa_serial()
    assert serial == m.soa_serial(), "renewals do not move the SOA serial"
    started = time.monotonic()
    wait_until(lambda: a_records(m) == ["10.0.0.2"], timeout=2, message="h-1 expired")
    assert time.monotonic() - started < 0.4 + 0.3
    body = next(i for i in m.service("internal", "hb")["instances"] if i["id"] == "h-1")
    assert body["healthy"] is False and body["heartbeat_ok"] is False and body["reported_healthy"] is True
    heartbeat(m, "h-1")
    assert a_records(m) == ["10.0.0.1", "10.0.0.2"], "healthy again by the time the heartbeat is answered"


def test_heartbeat_errors(muster):
    m = muster()
    m.put_instance("internal", "hb", "plain", {"ipv4": "10.0.0.2"})
    r = heartbeat(m, "plain", status=400)
    assert r.json()["field"] == "heartbeat_ttl"
    assert heartbeat(m, "missing", status=404).json()["field"] == "id"
    for bad in ("soon", "10ms", "2d", ""):
        r = m.put_instance("internal", "hb", "x", {"ipv4": "10.0.0.3", "heartbeat_ttl": bad}, check=False)
        assert r.status_code == 400 and r.json()["field"] == "heartbeat_ttl", (bad, r.text)


def test_reregistering_restarts_the_deadline(muster):
    m = muster()
    m.put_instance("internal", "hb", "anchor", {"ipv4": "10.0.0.2"})
    m.put_instance("internal", "hb", "h-1", {"ipv4": "10.0.0.1", "heartbeat_ttl": "300ms"})
    wait_until(lambda: a_records(m) == ["10.0.0.2"], timeout=2, message="h-1 expired")
    m.put_instance("internal", "hb", "h-1", {"ipv4": "10.0.0.1", "heartbeat_ttl": "300ms"})
    assert a_records(m) == ["10.0.0.1", "10.0.0.2"], "a new registration is healthy at once"
    wait_until(lambda: a_records(m) == ["10.0.0.2"], timeout=2, message="the new registration's deadline passed")


def test_restart_gives_one_ttl_of_grace(muster):
    m = muster()
    m.put_instance("internal", "hb", "h-1", {"ipv4": "10.0.0.1", "heartbeat_ttl": "1s"})
    m.put_instance("internal", "hb", "h-2", {"ipv4": "10.0.0.2"})
    wait_until(lambda: a_records(m) == ["10.0.0.2"], timeout=3, message="h-1 expired before the restart")
    m.restart()
    assert a_records(m) == ["10.0.0.1", "10.0.0.2"], "after a restart, heartbeat instances get one TTL of grace"
    wait_until(lambda: a_records(m) == ["10.0.0.2"], timeout=3, message="h-1 expired after its grace")
