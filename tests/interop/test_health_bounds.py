"""Health checks under attack (issue 14, items A2, A6 and A8), with requests, dnspython and
real target servers:

- A2: one PUT with ``"interval": "100y"`` used to be accepted and panic the health task
  for good (heartbeats answered 503, checks stopped, the panic came back after every
  restart). Every duration, threshold and string of a check is bounded with a 400 naming
  the field, and heartbeats and checks keep working.
- A8: checks as a port scanner. ``[health] deny`` (default: loopback, link-local with the
  metadata services, unspecified, multicast) refuses a REST registration whose check would
  target such an address; an instance from a file under a checking rule is not probed and
  its ``check_reason`` says why. ``min_interval`` bounds how often.
- A6: a check that could not run (muster out of file descriptors) is not a failed check:
  a healthy instance stays in DNS.
"""

import os
import resource
import socket
import time

import pytest

from check_servers import HttpTarget, Loop, TcpTarget
from harness import answer_rdata, namespace_toml, wait_until

LOOPBACK = '\n[health]\nallow = ["127.0.0.0/8"]\n'
CHECK = {"interval": "100ms", "healthy_threshold": 2, "unhealthy_threshold": 2}
ANCHOR = "10.250.0.1"


@pytest.fixture
def loop():
    loop = Loop()
    yield loop
    loop.close()


def a_records(m, svc):
    return sorted(answer_rdata(m.dns_query(f"{svc}.internal", "A"), "A"))


def instance(m, svc, iid):
    return next(i for i in m.service("internal", svc)["instances"] if i["id"] == iid)


def refused(m, body, field, svc="bad"):
    r = m.put_instance("internal", svc, "b-1", body, check=False)
    assert r.status_code == 400, f"{body}: {r.status_code} {r.text}"
    assert r.json()["field"] == field, f"{body}: {r.text}"
    return r.json()["error"]


# --------------------------------------------------------------------------------------
# A2: every number and string of a check is bounded


HUGE = [
    ({"tcp": True, "interval": "100y"}, "check.interval"),
    ({"tcp": True, "interval": "150000000000y"}, "check.interval"),
    ({"tcp": True, "interval": "61m"}, "check.interval"),
    ({"tcp": True, "timeout": "150000000000y"}, "check.timeout"),
    ({"tcp": True, "interval": "1h", "timeout": "2h"}, "check.timeout"),
    ({"tcp": True, "healthy_threshold": 101}, "check.healthy_threshold"),
    ({"tcp": True, "unhealthy_threshold": 4294967295}, "check.unhealthy_threshold"),
    ({"http": "/" + "a" * 2000}, "check.http"),
    ({"http": "/a b"}, "check.http"),
    ({"http": "/", "host": "h" * 300}, "check.host"),
    ({"http": "/", "host": "a\r\nX-Injected: 1"}, "check.host"),
    ({"http": "/", "status": "200" + " " * 100}, "check.status"),
]


def test_the_century_interval_is_refused_and_health_keeps_working(muster, loop):
    target = HttpTarget(loop, "127.0.0.1")
    try:
        m = muster(LOOPBACK)
        m.put_instance("internal", "hb", "anchor", {"ipv4": ANCHOR})
        m.put_instance("internal", "hb", "beat", {"ipv4": "10.0.0.1", "heartbeat_ttl": "500ms"})
        for check, field in HUGE:
            body = {"ipv4": "127.0.0.1", "port": target.port, "check": check}
            error = refused(m, body, field)
            assert field in error, error
        for ttl in ("100y", "150000000000y", "25h"):
            refused(m, {"ipv4": "10.0.0.2", "heartbeat_ttl": ttl}, "heartbeat_ttl")
        assert m.get("/v1/namespaces/internal/services/bad").status_code == 404, "nothing half-applied"
        assert m.get("/healthz").status_code == 200

        # Heartbeats still answer, and a missed one still takes the instance out.
        for _ in range(3):
            assert m.put(m.instance_path("internal", "hb", "beat") + "/heartbeat").status_code == 200
            time.sleep(0.1)
        wait_until(lambda: a_records(m, "hb") == [ANCHOR], timeout=3, message="the heartbeat instance expired")
        assert m.put(m.instance_path("internal", "hb", "beat") + "/heartbeat").status_code == 200
        assert a_records(m, "hb") == sorted([ANCHOR, "10.0.0.1"])

        # A new check runs and detects a failure.
        m.put_instance("internal", "web", "anchor", {"ipv4": ANCHOR})
        m.put_instance("internal", "web", "i-1", {"ipv4": "127.0.0.1", "port": target.port, "check": {"http": "/", **CHECK}})
        wait_until(lambda: len(target.requests) >= 2, timeout=3, message="the check runs")
        target.mode = 500
        wait_until(lambda: a_records(m, "web") == [ANCHOR], timeout=3, message="the failing instance left DNS")
        assert "HTTP 500" in instance(m, "web", "i-1")["check_reason"]

        # After a restart (the log replayed), the same holds.
        m.restart()
        assert m.get("/healthz").status_code == 200
        assert m.put(m.instance_path("internal", "hb", "beat") + "/heartbeat").status_code == 200
        assert m.metric("muster_task_restarts_total", task="health") == 0
    finally:
        target.close()


def test_healthz_verbose_lists_the_tasks(muster):
    m = muster()
    r = m.get("/healthz?verbose")
    assert r.status_code == 200, r.text
    assert "task health: running (restarts: 0)" in r.text, r.text
    assert m.get("/healthz").text == "ok\n"


# --------------------------------------------------------------------------------------
# A8: where checks may go, and how often


DENIED = [
    ({"ipv4": "127.0.0.1", "port": 22}, "ipv4", "127.0.0.0/8"),
    ({"ipv4": "127.9.9.9", "port": 22}, "ipv4", "127.0.0.0/8"),
    ({"ipv4": "169.254.169.254", "port": 80}, "ipv4", "169.254.0.0/16"),
    ({"ipv4": "169.254.170.2", "port": 80}, "ipv4", "169.254.0.0/16"),
    ({"ipv4": "0.0.0.0", "port": 22}, "ipv4", "0.0.0.0/8"),
    ({"ipv4": "224.0.0.1", "port": 22}, "ipv4", "224.0.0.0/4"),
    ({"ipv6": "::1", "port": 22}, "ipv6", "::1/128"),
    ({"ipv6": "::ffff:127.0.0.1", "port": 22}, "ipv6", "127.0.0.0/8"),
    ({"ipv6": "fd00:ec2::254", "port": 80}, "ipv6", "fd00:ec2::254/128"),
    ({"ipv6": "fe80::1", "port": 22}, "ipv6", "fe80::/10"),
]


@pytest.fixture(scope="module")
def ruled(module_muster):
    """One server with the default [health] and a checking rule for `ruled*`."""
    return module_muster(namespace_toml(services=[{"match": "ruled*", "check": {"tcp": True, **CHECK}}]))


@pytest.mark.parametrize("address,field,network", DENIED, ids=lambda x: str(x))
def test_a_check_on_a_denied_address_is_refused(ruled, address, field, network):
    m = ruled
    error = refused(m, {**address, "check": {"tcp": True, **CHECK}}, field)
    assert network in error, error
    # The service's rule check applies to the address just the same.
    error = refused(m, address, field, svc="ruled")
    assert network in error, error
    # Without a check, the address is fine.
    r = m.put_instance("internal", "plain", "p-1", address, check=False)
    assert r.status_code == 200, r.text


def test_a_check_port_of_its_own_is_judged_on_the_instance_address(muster):
    m = muster()
    # A check port on a permitted address is fine; a permitted one never reaches loopback.
    m.put_instance("internal", "ok", "o-1", {"ipv4": "10.0.0.9", "port": 80, "check": {"tcp": True, "port": 22, **CHECK}})
    refused(m, {"ipv4": "127.0.0.1", "port": 80, "check": {"tcp": True, "port": 22, **CHECK}}, "ipv4")


def test_allow_and_min_interval(muster):
    m = muster('\n[health]\nallow = ["127.0.0.1/32"]\ndeny = ["127.0.0.0/8", "10.1.0.0/16"]\nmin_interval = "1s"\n')
    body = {"ipv4": "127.0.0.1", "port": 80, "check": {"tcp": True, "interval": "1s"}}
    m.put_instance("internal", "ok", "o-1", body)
    refused(m, {**body, "ipv4": "127.0.0.2"}, "ipv4")
    refused(m, {**body, "ipv4": "10.1.2.3"}, "ipv4")
    m.put_instance("internal", "ok", "o-2", {**body, "ipv4": "169.254.1.1"})  # the defaults are replaced
    error = refused(m, {**body, "check": {"tcp": True, "interval": "500ms"}}, "check.interval")
    assert "min_interval" in error, error


def test_an_instance_from_a_file_on_a_denied_address_is_not_probed(muster, loop, tmp_path):
    target = TcpTarget(loop, "127.0.0.1")
    try:
        path = tmp_path / "static.toml"
        path.write_text(
            "\n".join(
                ["[[instances]]", 'namespace = "internal"', 'service = "ruled"', 'id = "local"']
                + ['ipv4 = "127.0.0.1"', f"port = {target.port}", ""]
            )
        )
        rules = namespace_toml(services=[{"match": "ruled*", "check": {"tcp": True, **CHECK}}])
        m = muster(rules + f'\n[[sources.file]]\npath = "{path}"\n')
        wait_until(lambda: m.get("/readyz").status_code == 200, timeout=3, message="the file is read")
        wait_until(
            lambda: (instance(m, "ruled", "local")["check_reason"] or "").startswith("not checked: 127.0.0.1 is in [health] deny 127.0.0.0/8"),
            timeout=3,
            message="check_reason says why",
        )
        time.sleep(0.5)
        assert target.connections == [], "never probed"
        body = instance(m, "ruled", "local")
        assert body["healthy"] and body["check_ok"], body
        assert a_records(m, "ruled") == ["127.0.0.1"]
    finally:
        target.close()


# --------------------------------------------------------------------------------------
# A6: a check that could not run is not a failed check

OPEN_FILES = 96  # muster's descriptor limit (soft and hard) in this test


def _limit_open_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def _open_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def _exhaust(m, held):
    """Opens idle connections to muster's HTTP and DNS TCP ports (from many loopback
    source addresses, so no per-source cap stops them) until muster has no descriptor
    left. Returns whether it got there."""
    for n in range(4 * OPEN_FILES):
        if _open_descriptors(m.proc.pid) >= OPEN_FILES:
            return True
        port = m.http_port if n % 2 else m.dns_port
        s = socket.socket()
        s.bind((f"127.0.{n // 200 + 1}.{n % 200 + 2}", 0))
        s.connect(("127.0.0.1", port))
        held.append(s)
        time.sleep(0.005)
    return _open_descriptors(m.proc.pid) >= OPEN_FILES


def test_a_check_that_cannot_run_for_want_of_descriptors_changes_nothing(muster, loop):
    target = TcpTarget(loop, "127.0.0.1")
    held = []
    try:
        m = muster(LOOPBACK, start=False)
        m.preexec_fn = _limit_open_files
        m.start()
        m.put_instance("internal", "web", "anchor", {"ipv4": ANCHOR})
        m.put_instance("internal", "web", "i-1", {"ipv4": "127.0.0.1", "port": target.port, "check": {"tcp": True, **CHECK}})
        wait_until(lambda: len(target.connections) >= 3, timeout=3, message="checks pass")
        both = sorted([ANCHOR, "127.0.0.1"])
        assert a_records(m, "web") == both

        assert _exhaust(m, held), f"muster has {_open_descriptors(m.proc.pid)} descriptors of {OPEN_FILES}"
        exhausted = time.monotonic()
        while time.monotonic() - exhausted < 1.5:  # 15 check intervals, threshold 2
            assert a_records(m, "web") == both, "a check that could not run took a healthy instance out"
            time.sleep(0.05)
        assert _open_descriptors(m.proc.pid) >= OPEN_FILES - 2, "still exhausted throughout"
    finally:
        for s in held:
            s.close()
        target.close()

    def answers():
        try:
            return m.get("/healthz", timeout=1).status_code == 200
        except OSError:
            return False

    wait_until(answers, timeout=10, message="HTTP back")
    inconclusive = m.metric("muster_health_checks_total", result="inconclusive")
    assert inconclusive >= 3, f"{inconclusive} inconclusive checks: the test did not exhaust muster"
    body = instance(m, "web", "i-1")
    assert body["check_ok"] and body["check_reason"] is None, body
    assert m.metric("muster_health_transitions_total", result="unhealthy") == 0
