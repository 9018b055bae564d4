"""Response rate limiting of UDP answers ([dns.rrl]): a flood from one source gets its
rate, then every `slip`th response empty with TC and nothing else; other prefixes and
exempt sources are not limited; a real resolver in front (unbound) still gets every
answer, over TCP after TC; with RRL off nothing changes.

Every test here runs on loopback, which RRL exempts by default, so the tests that want
limits clear `exempt` (or list other addresses in it). Sources in other prefixes are
other loopback addresses (127.0.1.1 is outside 127.0.0.0/24)."""

import socket
import time

import dns.flags
import dns.message
import dns.rcode
import pytest

from harness import answer_rdata, namespace_toml
from peers import Unbound


def rrl_toml(rate, slip=2, window="15s", exempt=()):
    exempt = ", ".join(f'"{net}"' for net in exempt)
    return f"[dns.rrl]\nresponses_per_second = {rate}\nslip = {slip}\nwindow = \"{window}\"\nexempt = [{exempt}]\n"


def register(m, count=4):
    for i in range(count):
        m.put_instance("internal", "web", f"i-{i}", {"ipv4": f"10.0.0.{i + 1}", "port": 8080})


def flood(port, queries, source="127.0.0.1", settle=1.0):
    """Sends every query in `queries` (wire bytes) from one socket bound to `source` as
    fast as it can, reading replies as they come; returns the replies by kind:
    (whole answers, TC replies, replies) after `settle` seconds of quiet."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((source, 0))
        s.setblocking(False)
        for n, query in enumerate(queries):
            s.sendto(query, ("127.0.0.1", port))
            if n % 50 == 49:
                replies += drain(s)
        s.settimeout(settle)
        try:
            while True:
                replies.append(s.recv(65535))
        except (TimeoutError, socket.timeout):
            pass
    parsed = [dns.message.from_wire(r) for r in replies]
    truncated = [r for r in parsed if r.flags & dns.flags.TC]
    whole = [r for r in parsed if not r.flags & dns.flags.TC]
    return whole, truncated, parsed


def drain(s):
    out = []
    while True:
        try:
            out.append(s.recv(65535))
        except BlockingIOError:
            return out


def query(name, rdtype="SRV", edns=True):
    return dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=1232).to_wire()


def rrl_total(m, name, cls):
    """``muster_dns_rrl_<name>_total`` of one class (a label whose name is a keyword)."""
    return m.metric(f"muster_dns_rrl_{name}_total", **{"class": cls})


def test_a_flood_from_one_source_gets_its_rate_then_slips_every_other_response(muster):
    m = muster(rrl_toml(rate=20))
    register(m)
    sent = 400
    whole, truncated, _ = flood(m.dns_port, [query("web.internal")] * sent)
    # A second's worth at once, then nothing whole: the flood pays for what it asks.
    assert 20 <= len(whole) <= 22, len(whole)
    assert all(len(answer_rdata(r, "SRV")) == 4 for r in whole)
    limited = sent - len(whole)
    assert abs(len(truncated) - limited / 2) <= 1, (len(truncated), limited)
    for r in truncated:
        assert not r.answer and not r.additional and r.question[0].name.to_text() == "web.internal."
        assert r.edns == 0, "an EDNS query's TC answer keeps its OPT (RFC 6891)"
    dropped = sent - len(whole) - len(truncated)
    assert rrl_total(m, "slipped", "positive") == len(truncated)
    assert rrl_total(m, "dropped", "positive") == dropped
    # The flood's victim is limited for this name and type; another name is not.
    whole, _, _ = flood(m.dns_port, [query("web.internal", "A")] * 5)
    assert len(whole) == 5


def test_nxdomains_share_one_limit_per_zone_and_errors_one_per_prefix(muster):
    m = muster(rrl_toml(rate=10, slip=1))
    names = [query(f"random{n}.internal", "A") for n in range(100)]
    whole, truncated, _ = flood(m.dns_port, names)
    assert 10 <= len(whole) <= 11 and all(r.rcode() == dns.rcode.NXDOMAIN for r in whole)
    assert len(truncated) == 100 - len(whole), "slip 1: every limited response slips"
    assert rrl_total(m, "slipped", "nxdomain") == len(truncated)
    # Names outside the namespaces are REFUSED: all of a prefix's errors share a limit.
    outside = [query(f"host{n}.example.com", "A") for n in range(50)]
    whole, truncated, _ = flood(m.dns_port, outside)
    assert 10 <= len(whole) <= 11 and all(r.rcode() == dns.rcode.REFUSED for r in whole)
    assert rrl_total(m, "slipped", "error") == len(truncated) == 50 - len(whole)


def test_other_prefixes_and_exempt_sources_are_not_limited(muster):
    m = muster(rrl_toml(rate=10, exempt=["127.0.0.3"]))
    register(m)
    flood(m.dns_port, [query("web.internal")] * 200)
    same_prefix, _, _ = flood(m.dns_port, [query("web.internal")] * 20, source="127.0.0.2")
    assert same_prefix == [], "127.0.0.2 shares 127.0.0.0/24 with the flood"
    other_prefix, _, _ = flood(m.dns_port, [query("web.internal")] * 10, source="127.0.1.1")
    assert len(other_prefix) == 10
    exempt, _, _ = flood(m.dns_port, [query("web.internal")] * 200, source="127.0.0.3")
    assert len(exempt) == 200


def test_loopback_is_exempt_by_default(muster):
    m = muster("[dns.rrl]\nresponses_per_second = 5\n")
    register(m)
    whole, truncated, _ = flood(m.dns_port, [query("web.internal")] * 300)
    assert (len(whole), len(truncated)) == (300, 0)


def test_rrl_off_changes_nothing(muster):
    m = muster()
    register(m)
    whole, truncated, _ = flood(m.dns_port, [query("web.internal")] * 2000, settle=2.0)
    assert (len(whole), len(truncated)) == (2000, 0)
    assert rrl_total(m, "dropped", "positive") == 0


def test_a_resolver_in_front_gets_every_answer_over_tcp_after_tc(muster, tmp_path):
    m = muster(namespace_toml(negative_ttl=0) + rrl_toml(rate=5, slip=1))
    register(m)
    unbound = Unbound(tmp_path / "unbound", m.dns_port).start()
    try:
        # Names that do not exist share one NXDOMAIN limit per zone: 40 of them through
        # unbound go over it, and unbound must still answer each correctly.
        for n in range(40):
            r = unbound.query(f"missing{n}.internal.", "A", rd=True, timeout=5)
            assert r.rcode() == dns.rcode.NXDOMAIN, (n, r)
        r = unbound.query("web.internal.", "SRV", rd=True, timeout=5)
        assert len(answer_rdata(r, "SRV")) == 4
    finally:
        unbound.stop()
    slipped = rrl_total(m, "slipped", "nxdomain")
    assert slipped >= 30, f"unbound was limited {slipped} times, so it came back over TCP"
