"""Active health checks (issue 5) against real servers, one per instance, that the tests
start and then break the ways production breaks them: the endpoint answers 500, the
process is killed (connection refused), the process hangs (SIGSTOP: the kernel accepts,
nothing answers, the check times out), the listener is closed (TCP check). Each failure
must take the instance out of DNS answers (dnspython) with a ``check_reason`` naming what
failed, and recovery must bring it back only after ``healthy_threshold`` passes.

Every check here runs every 100 ms with thresholds of 2 (timeout: the default 80 ms).
Each target listens on its own loopback address (127.0.0.x), so an A record names one
instance; loopback is denied to checks by default, so every server here allows it
(``[health] allow``, see test_health_bounds.py for the denial); every service also holds a check-less ``anchor`` so that fail-open does not put
a failed instance back in the answer (except where fail-open is the point). Timings are
not asserted beyond "within a few seconds": bench/health_detection.py measures them.
"""

import itertools
import re
import time

import dns.rcode
import pytest

from check_servers import HttpTarget, Loop, ServerProcess, TcpTarget
from harness import answer_rdata, assert_negative, namespace_toml, wait_until

ANCHOR = "10.250.0.1"
CHECK = {"interval": "100ms", "healthy_threshold": 2, "unhealthy_threshold": 2}
HTTP_CHECK = {"http": "/healthz", **CHECK}
TCP_CHECK = {"tcp": True, **CHECK}
DETECT = 3.0  # seconds: generous, for a loaded 2-core machine; the bench has the figures
LOOPBACK = '\n[health]\nallow = ["127.0.0.0/8"]\n'  # the targets' addresses may be checked

_addresses = itertools.count(10)


def next_ip():
    """A loopback address of its own for the next target (127.0.0.10, .11, ...)."""
    return f"127.0.0.{next(_addresses) % 240 + 10}"


@pytest.fixture
def servers():
    """Starts targets and closes every one of them afterwards."""

    class Servers:
        def __init__(self):
            self.loop = Loop()
            self.started = []

        def http(self, ip=None, **kw):
            return self._keep(HttpTarget(self.loop, ip or next_ip(), **kw))

        def tcp(self):
            return self._keep(TcpTarget(self.loop, next_ip()))

        def process(self, kind="http"):
            return self._keep(ServerProcess(next_ip(), kind=kind))

        def _keep(self, target):
            self.started.append(target)
            return target

    s = Servers()
    yield s
    for target in s.started:
        target.close()
    s.loop.close()


def a_records(m, svc):
    return sorted(answer_rdata(m.dns_query(f"{svc}.internal", "A"), "A"))


def instance(m, svc, iid):
    return next(i for i in m.service("internal", svc)["instances"] if i["id"] == iid)


def register(m, svc, iid, target, check=None, **extra):
    body = {"ipv4": target.ip, "port": target.port, **extra}
    if check is not None:
        body["check"] = check
    m.put_instance("internal", svc, iid, body)


def with_anchor(m, svc):
    m.put_instance("internal", svc, "anchor", {"ipv4": ANCHOR, "port": 1})


def wait_dns(m, svc, want, message, timeout=DETECT):
    want = sorted(want)
    wait_until(lambda: a_records(m, svc) == want, timeout=timeout, interval=0.01, message=message)


# --------------------------------------------------------------------------------------
# Each production failure, detected and recovered


def _http_500(servers):
    target = servers.http()

    def fail():
        target.mode = 500

    def recover():
        target.mode = "ok"

    return target, HTTP_CHECK, fail, recover


def _killed(servers):
    target = servers.process()
    return target, HTTP_CHECK, target.kill, target.start


def _hang(servers):
    target = servers.process()
    return target, HTTP_CHECK, target.stop, target.resume


def _tcp_listener_closed(servers):
    target = servers.tcp()
    return target, TCP_CHECK, target.close_listener, target.reopen


def _tcp_killed(servers):
    target = servers.process(kind="tcp")
    return target, TCP_CHECK, target.kill, target.start


FAILURES = {
    # name: (make target, what check_reason starts with: which check, what failed)
    "http-500": (_http_500, r"2 consecutive checks failed: HTTP 500 from http://{addr}/healthz"),
    "http-killed": (_killed, r"2 consecutive checks failed: http://{addr}/healthz: cannot connect \(Connection refused"),
    "http-hang": (_hang, r"2 consecutive checks failed: http://{addr}/healthz: no answer within 80ms"),
    "tcp-listener-closed": (_tcp_listener_closed, r"2 consecutive checks failed: TCP {addr}: Connection refused"),
    "tcp-killed": (_tcp_killed, r"2 consecutive checks failed: TCP {addr}: Connection refused"),
}


@pytest.mark.parametrize("kind", FAILURES)
def test_failure_is_detected_and_recovered(muster, servers, kind):
    make, reason = FAILURES[kind]
    target, check, fail, recover = make(servers)
    m = muster(LOOPBACK)
    with_anchor(m, "web")
    register(m, "web", "i-1", target, check)
    time.sleep(0.5)  # several passing checks: nothing changes
    assert a_records(m, "web") == sorted([ANCHOR, target.ip])
    assert instance(m, "web", "i-1")["check_reason"] is None

    fail()
    wait_dns(m, "web", [ANCHOR], f"{kind}: i-1 left DNS")
    body = instance(m, "web", "i-1")
    assert body["healthy"] is False and body["check_ok"] is False, body
    assert body["reported_healthy"] is True, "a check changes health, not what the client said"
    assert re.match(reason.format(addr=re.escape(target.address)), body["check_reason"]), body
    time.sleep(0.3)
    assert a_records(m, "web") == [ANCHOR], "stays out while failing"

    recover()
    wait_dns(m, "web", [ANCHOR, target.ip], f"{kind}: i-1 back in DNS")
    body = instance(m, "web", "i-1")
    assert body["healthy"] is True and body["check_reason"] == "2 consecutive checks passed", body
    assert m.metric("muster_health_transitions_total", result="unhealthy") == 1
    assert m.metric("muster_health_transitions_total", result="healthy") == 1


def test_http_check_notices_a_closed_listener(muster, servers):
    target = servers.http()
    m = muster(LOOPBACK)
    with_anchor(m, "web")
    register(m, "web", "i-1", target, HTTP_CHECK)
    wait_until(lambda: len(target.requests) >= 2, timeout=2)
    closed = time.monotonic()
    target.close_listener()  # stops accepting; the connections it has stay open
    try:
        wait_dns(m, "web", [ANCHOR], "i-1 left DNS after its listener closed", timeout=2)
    finally:
        print(f"checks answered over the old connection since the close: {len(target.requests_since(closed))}")


@pytest.mark.parametrize("healthy_threshold", [2, 3])
def test_recovery_waits_for_the_healthy_threshold(muster, servers, healthy_threshold):
    target = servers.http()
    m = muster(LOOPBACK)
    with_anchor(m, "web")
    register(m, "web", "i-1", target, {**HTTP_CHECK, "healthy_threshold": healthy_threshold})
    target.mode = 500
    wait_dns(m, "web", [ANCHOR], "i-1 left DNS")

    recovered = time.monotonic()
    target.mode = "ok"
    for passes in range(1, healthy_threshold):
        # Right after the server answered pass number `passes` (the next check is 100 ms
        # away), the instance is still out.
        wait_until(lambda: len(target.requests_since(recovered)) >= passes, timeout=2, interval=0.002)
        time.sleep(0.02)
        assert len(target.requests_since(recovered)) == passes
        assert a_records(m, "web") == [ANCHOR], f"back after {passes} pass(es), threshold {healthy_threshold}"
    wait_dns(m, "web", [ANCHOR, target.ip], "i-1 back in DNS")
    assert len(target.requests_since(recovered)) >= healthy_threshold
    assert instance(m, "web", "i-1")["check_reason"] == f"{healthy_threshold} consecutive checks passed"


def test_one_slow_answer_does_not_flap(muster, servers):
    target = servers.http()
    m = muster(LOOPBACK)
    with_anchor(m, "web")
    register(m, "web", "i-1", target, HTTP_CHECK)
    time.sleep(0.3)
    target.slow(1, 0.2)  # one answer after 200 ms: that check times out (80 ms)
    seen = set()
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        seen.add(tuple(a_records(m, "web")))
        time.sleep(0.005)
    assert seen == {tuple(sorted([ANCHOR, target.ip]))}, "never left DNS"
    assert m.metric("muster_health_checks_total", result="fail") == 1, "the slow answer was a failed check"
    assert m.metric("muster_health_transitions_total", result="unhealthy") == 0
    assert instance(m, "web", "i-1")["check_reason"] is None


def test_start_unhealthy_keeps_a_new_instance_out_until_it_passes(muster, servers):
    starting, default = servers.http(mode=503), servers.http(mode=503)
    m = muster(LOOPBACK)
    with_anchor(m, "web")
    register(m, "web", "new", starting, {**HTTP_CHECK, "start_unhealthy": True})
    register(m, "web", "old-style", default, HTTP_CHECK)
    # Cloud Map's default: announced at once, until its checks fail.
    assert a_records(m, "web") == sorted([ANCHOR, default.ip]), "start_unhealthy: out from the first answer"
    assert instance(m, "web", "new")["check_reason"] == "waiting for the first passing checks"
    wait_dns(m, "web", [ANCHOR], "old-style left after failing")
    time.sleep(0.3)
    assert a_records(m, "web") == [ANCHOR]
    starting.mode = "ok"
    wait_dns(m, "web", [ANCHOR, starting.ip], "new in DNS once it passes")
    assert instance(m, "web", "new")["check_reason"] == "2 consecutive checks passed"


def test_address_change_restarts_the_check(muster, servers):
    good, bad = servers.http(), servers.http(mode=500)
    m = muster(LOOPBACK)
    with_anchor(m, "web")
    register(m, "web", "i-1", good, HTTP_CHECK)
    wait_until(lambda: len(good.requests) >= 2, timeout=2, message="checks of the first address")

    register(m, "web", "i-1", bad, HTTP_CHECK)  # moved to a failing address
    moved = time.monotonic()
    wait_dns(m, "web", [ANCHOR], "i-1 at its new, failing address left DNS")
    assert bad.address in instance(m, "web", "i-1")["check_reason"]
    time.sleep(0.3)
    assert len(good.requests_since(moved + 0.1)) == 0, "the old address is no longer checked"

    register(m, "web", "i-1", good, HTTP_CHECK)  # moved back: the check starts over, healthy
    assert a_records(m, "web") == sorted([ANCHOR, good.ip]), "a new address starts healthy"
    assert instance(m, "web", "i-1")["check_reason"] is None
    back = time.monotonic()
    time.sleep(0.5)
    assert len(good.requests_since(back)) >= 3
    assert len(bad.requests_since(back + 0.1)) == 0
    assert a_records(m, "web") == sorted([ANCHOR, good.ip])

    # The same address with another port is a new target too.
    other_port = servers.http(ip=good.ip, mode=500)
    register(m, "web", "i-1", other_port, HTTP_CHECK)
    wait_dns(m, "web", [ANCHOR], "i-1 on a failing port left DNS")
    assert other_port.address in instance(m, "web", "i-1")["check_reason"]


# --------------------------------------------------------------------------------------
# Config rules, every instance failing, bad bodies, deregistration


RULE_CHECK = {**HTTP_CHECK, "http": "/rule-health", "host": "web.example"}
RULES = namespace_toml(
    services=[
        {"match": "open*", "check": RULE_CHECK},
        {"match": "closed*", "check": RULE_CHECK, "when_all_unhealthy": "empty"},
    ]
)


def test_config_rule_checks_and_when_all_unhealthy(muster, servers):
    m = muster(RULES + LOOPBACK)
    targets = {svc: [servers.http(), servers.http()] for svc in ("open", "closed")}
    for svc, pair in targets.items():
        for n, target in enumerate(pair):
            register(m, svc, f"i-{n}", target)  # no check in the body: the rule's applies
    wait_until(lambda: all(len(t.requests) >= 2 for pair in targets.values() for t in pair), timeout=2)
    head = targets["open"][0].heads[-1]
    assert head.startswith("GET /rule-health HTTP/1.1") and "host: web.example" in head.lower(), head

    for pair in targets.values():
        for target in pair:
            target.mode = 500
    for svc, pair in targets.items():
        for n, target in enumerate(pair):
            wait_until(lambda: instance(m, svc, f"i-{n}")["check_ok"] is False, timeout=DETECT, interval=0.02)
            assert "HTTP 500 from http://" + target.address + "/rule-health" in instance(m, svc, f"i-{n}")["check_reason"]
    # Fail-open (the default): every instance unhealthy, so every instance is answered.
    assert a_records(m, "open") == sorted(t.ip for t in targets["open"])
    # `empty`: nothing served, so the name is gone (NXDOMAIN, as Route 53 has no record).
    assert_negative(m.dns_query("closed.internal", "A"), dns.rcode.NXDOMAIN)

    for pair in targets.values():
        pair[1].mode = "ok"
    for svc, pair in targets.items():
        wait_dns(m, svc, [pair[1].ip], f"{svc}: the recovered instance alone")


def test_body_check_wins_over_the_rule(muster, servers):
    m = muster(RULES + LOOPBACK)
    target = servers.http()
    register(m, "open", "own", target, {**HTTP_CHECK, "http": "/own"})
    wait_until(lambda: len(target.requests) >= 2, timeout=2)
    assert all(h.startswith("GET /own ") for h in target.heads), target.heads


def test_file_source_instances_are_checked_by_the_rule(muster, servers, tmp_path):
    target, anchor = servers.http(), servers.http()
    path = tmp_path / "static.toml"
    lines = []
    for iid, t in (("i-1", target), ("anchor", anchor)):
        lines += ["[[instances]]", 'namespace = "internal"', 'service = "open"', f'id = "{iid}"']
        lines += [f'ipv4 = "{t.ip}"', f"port = {t.port}", ""]
    path.write_text("\n".join(lines))
    m = muster(RULES + LOOPBACK + f'\n[[sources.file]]\npath = "{path}"\n')
    wait_until(lambda: len(target.requests) >= 2, timeout=3, message="the file's instance is checked")
    target.mode = 500
    wait_dns(m, "open", [anchor.ip], "the file's instance left DNS")
    assert instance(m, "open", "i-1")["source"] != "api"


BAD_CHECKS = [
    {"http": "healthz"},  # not a path
    {"http": "/x", "tcp": True},  # both kinds
    {},  # neither
    {"tcp": False},
    {"http": "/x", "interval": "50ms"},  # below 100 ms
    {"http": "/x", "interval": "100ms", "timeout": "100ms"},  # timeout not below interval
    {"http": "/x", "timeout": "0s"},
    {"http": "/x", "interval": "soon"},
    {"http": "/x", "healthy_threshold": 0},
    {"http": "/x", "unhealthy_threshold": -1},
    {"http": "/x", "status": "600"},
    {"http": "/x", "status": "ok"},
    {"http": "/x", "port": 0},
    {"http": "/x", "bogus": 1},  # unknown key
    {"http": 5},
    "yes",
    [],
]


@pytest.fixture(scope="module")
def shared_muster(module_muster):
    return module_muster(LOOPBACK)


@pytest.mark.parametrize("check", BAD_CHECKS, ids=lambda c: str(c))
def test_bad_check_bodies_get_400_naming_check(shared_muster, check):
    m = shared_muster
    r = m.put_instance("internal", "bad", "b-1", {"ipv4": "127.0.0.1", "port": 8080, "check": check}, check=False)
    assert r.status_code == 400, r.text
    field = r.json()["field"]
    assert field == "check" or field.startswith("check."), r.text
    assert m.get("/v1/namespaces/internal/services/bad").status_code == 404, "nothing half-applied"


def test_a_check_needs_a_port_and_its_own_wins(muster, servers):
    m = muster(LOOPBACK)
    r = m.put_instance("internal", "bad", "b-1", {"ipv4": "127.0.0.1", "check": {"tcp": True}}, check=False)
    assert r.status_code == 400 and r.json()["field"] == "check.port", r.text
    # The check's own port will do, and goes before the instance's.
    target = servers.http()
    m.put_instance("internal", "ok", "o-1", {"ipv4": target.ip, "check": {**HTTP_CHECK, "port": target.port}})
    m.put_instance("internal", "ok", "o-2", {"ipv4": target.ip, "port": 1, "check": {**HTTP_CHECK, "port": target.port}})
    wait_until(lambda: len(target.requests) >= 6, timeout=2, message="both checks reach the check's port")
    time.sleep(0.3)
    assert all(i["check_ok"] for i in m.service("internal", "ok")["instances"])


def test_checks_stop_when_the_instance_is_deregistered(muster, servers):
    rest, ruled = servers.http(), servers.http()
    m = muster(RULES + LOOPBACK)
    register(m, "web", "i-1", rest, HTTP_CHECK)
    register(m, "open", "i-1", ruled)
    wait_until(lambda: len(rest.requests) >= 3 and len(ruled.requests) >= 3, timeout=2)
    m.delete_instance("internal", "web", "i-1")
    m.delete_instance("internal", "open", "i-1")
    time.sleep(0.15)  # a check already under way may still arrive
    counts = len(rest.requests), len(ruled.requests)
    time.sleep(0.6)
    assert (len(rest.requests), len(ruled.requests)) == counts, "no checks after deregistration"
