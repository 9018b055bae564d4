"""Resolvers around muster: unbound with a stub-zone in front of it, glibc's stub
resolver (getent) pointed at it, and muster itself as a host sidecar that forwards the
names outside its namespaces to an upstream (Knot DNS serving a test zone)."""

import os
import socket
import subprocess
import time
from pathlib import Path

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from harness import answer_rdata, muster_bin, namespace_toml, wait_until
from peers import KnotAuthoritative, Unbound

UPSTREAM_ZONE = """$ORIGIN upstream.test.
$TTL 300
@     SOA ns hostmaster 7 3600 600 86400 60
@     NS  ns
ns    A   192.0.2.1
www   A   192.0.2.10
www   A   192.0.2.11
"""


def flags_of(r):
    return dns.flags.to_text(r.flags).split()


def test_unbound_stub_zone_passes_on_muster_answers_and_ttls(muster, tmp_path):
    m = muster(namespace_toml(ttl=7, negative_ttl=1))
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})
    m.put_instance("internal", "web", "i-2", {"ipv4": "10.0.0.6", "port": 8080})
    unbound = Unbound(tmp_path / "unbound", m.dns_port).start()
    try:
        r = unbound.query("web.internal.", "A", rd=True)
        assert r.rcode() == dns.rcode.NOERROR and "RA" in flags_of(r)
        assert sorted(answer_rdata(r, "A")) == ["10.0.0.5", "10.0.0.6"]
        assert r.answer[0].ttl == 7, "the TTL muster chose, first time from the cache"
        r = unbound.query("_web._tcp.internal.", "SRV", rd=True)
        assert sorted(answer_rdata(r, "SRV")) == ["1 1 8080 i-1.web.internal.", "1 1 8080 i-2.web.internal."]
        r = unbound.query("nope.internal.", "A", rd=True)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert [rr.rdtype for rr in r.authority] == [dns.rdatatype.SOA] and r.authority[0].ttl <= 1
        r = unbound.query("web.internal.", "AAAA", rd=True)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer, "NODATA"
        # A service that appears after its NXDOMAIN was cached is seen once the negative
        # TTL (1 s) has passed: the short negative caching muster exists for.
        m.put_instance("internal", "nope", "i-1", {"ipv4": "10.0.0.7"})
        found = wait_until(
            lambda: answer_rdata(unbound.query("nope.internal.", "A", rd=True), "A"),
            timeout=3,
            message="unbound sees the new service",
        )
        assert found == ["10.0.0.7"]
    finally:
        unbound.stop()


@pytest.fixture
def upstream(tmp_path):
    knot = KnotAuthoritative(tmp_path / "upstream", "upstream.test", UPSTREAM_ZONE).start("upstream.test.")
    yield knot
    knot.stop()


def forward_toml(port, timeout="1s"):
    return f'[forward]\nupstreams = ["127.0.0.1:{port}"]\ntimeout = "{timeout}"\n'


def test_sidecar_answers_its_namespace_and_forwards_the_rest(muster, upstream):
    m = muster(forward_toml(upstream.port))
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
    r = m.dns_query("www.upstream.test", "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert sorted(answer_rdata(r, "A")) == ["192.0.2.10", "192.0.2.11"]
    assert "RA" in flags_of(r) and "AA" not in flags_of(r), "a resolver's answer"
    r = m.dns_query("missing.upstream.test", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert [rr.name.to_text() for rr in r.authority] == ["upstream.test."], "the upstream's SOA"
    r = m.dns_query("www.upstream.test", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    r = m.dns_query("web.internal", "A")
    assert answer_rdata(r, "A") == ["10.0.0.5"] and {"AA", "RA"} <= set(flags_of(r))
    # Without RD a resolver answers only from its cache; muster does not forward.
    assert m.dns_query("www.upstream.test", "A", rd=False).rcode() == dns.rcode.REFUSED
    # dig and kdig agree.
    assert sorted(m.dig("+short", "www.upstream.test", "A").split()) == ["192.0.2.10", "192.0.2.11"]
    assert "status: NXDOMAIN" in m.kdig("missing.upstream.test", "A")
    assert m.metric("muster_dns_forwarded_total") == 5


def test_an_upstream_that_does_not_answer_gives_servfail_within_the_timeout(muster):
    # A UDP socket nobody reads from: queries to it vanish.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        m = muster(forward_toml(silent.getsockname()[1], timeout="1s"))
        m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
        started = time.monotonic()
        r = m.dns_query("www.example.test", "A", timeout=5)
        took = time.monotonic() - started
        assert r.rcode() == dns.rcode.SERVFAIL
        assert took < 1.5, f"SERVFAIL after {took:.2f} s, timeout 1 s"
        # The namespace is answered as ever meanwhile.
        assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]


def test_glibc_getent_resolves_through_muster_on_port_53(tmp_path):
    """getent (glibc's stub resolver, /etc/resolv.conf) in a network namespace of its
    own, whose resolv.conf (`ip netns exec` mounts /etc/netns/NAME/resolv.conf) names a
    muster listening on 127.0.0.1:53 in that namespace."""
    name = f"muster-test-{os.getpid()}"
    etc = Path("/etc/netns") / name
    static = tmp_path / "static.toml"
    static.write_text(instances_toml(["10.0.0.5", "10.0.0.6"]))
    config = tmp_path / "muster.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[dns]\nlisten = ["127.0.0.1:53"]\n[http]\nlisten = "127.0.0.1:8054"\n'
        f'[[sources.file]]\npath = "{static}"\n'
        # A file without [[namespaces]] serves none (as a fresh Cloud Map account has none).
        '[[namespaces]]\nname = "internal"\n'
    )
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        log = open(tmp_path / "muster.log", "wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", name, str(muster_bin()), "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def getent(host):
            p = subprocess.run(
                ["ip", "netns", "exec", name, "getent", "ahosts", host], capture_output=True, text=True
            )
            return p.returncode, {line.split()[0] for line in p.stdout.splitlines()}

        wait_until(lambda: getent("web.internal")[0] == 0, timeout=10, message="getent answers")
        assert getent("web.internal") == (0, {"10.0.0.5", "10.0.0.6"})
        assert getent("nope.internal")[0] == 2, "a name muster does not have is not found"
        static.write_text(instances_toml(["10.0.0.7"]))
        wait_until(lambda: getent("web.internal") == (0, {"10.0.0.7"}), timeout=8, message="the edit is seen")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", name], check=False)
        for path in (etc / "resolv.conf", etc):
            if path.is_dir():
                path.rmdir()
            elif path.exists():
                path.unlink()


def instances_toml(addresses):
    return "".join(
        f'[[instances]]\nnamespace = "internal"\nservice = "web"\nid = "i-{i}"\nipv4 = "{a}"\n\n'
        for i, a in enumerate(addresses)
    )
