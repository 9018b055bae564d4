"""Zone transfers: AXFR over several messages, IXFR from the journal, the allow list and
TSIG, checked with kdig and dnspython; then Knot DNS and BIND as real secondaries that
follow muster through NOTIFY and IXFR."""

import base64
import re

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from harness import namespace_toml, wait_until
from peers import BindSecondary, KnotSecondary

SECRET = base64.b64encode(b"muster transfer secret, 32 bytes").decode()
KEY = ("transfer-key", SECRET)


def transfer_toml(allow=("127.0.0.1",), notify=(), key=None):
    lines = ["[transfer]", f"allow = {list(allow)!r}".replace("'", '"')]
    lines.append(f"notify = {list(notify)!r}".replace("'", '"'))
    if key:
        lines += ["[[transfer.tsig_keys]]", f'name = "{key[0]}"', f'secret = "{key[1]}"']
    return "\n".join(lines) + "\n"


def register(m, service, count, start=0, port=8080):
    for i in range(start, start + count):
        m.put_instance("internal", service, f"i-{i}", {"ipv4": f"10.1.{i // 250}.{i % 250 + 1}", "port": port})


def transfers(m, kind):
    """``muster_dns_transfers_total`` of one kind."""
    return m.metric("muster_dns_transfers_total", kind=kind)


def axfr_zone(m, keyring=None, keyname=None):
    xfr = dns.query.xfr("127.0.0.1", "internal.", port=m.dns_port, keyring=keyring, keyname=keyname, timeout=5, relativize=False)
    return dns.zone.from_xfr(xfr, relativize=False)


def ixfr_records(m, serial):
    """(name, type, rdata) of an IXFR's answer records in the order sent, every message."""
    out = []
    for message in dns.query.xfr("127.0.0.1", "internal.", rdtype="IXFR", serial=serial, port=m.dns_port, relativize=False, timeout=5):
        out += [(rr.name.to_text(), dns.rdatatype.to_text(rr.rdtype), rd.to_text()) for rr in message.answer for rd in rr]
    return out


def test_axfr_has_every_served_record_in_several_messages(muster):
    m = muster(transfer_toml())
    register(m, "big", 600)
    m.put_instance("internal", "big", "sick", {"ipv4": "10.9.9.9", "port": 8080})
    m.set_health("internal", "big", "sick", False)
    out = m.kdig("internal", "AXFR", "+tcp")
    messages = int(re.search(r"\((\d+) messages, (\d+) records\)", out).group(1))
    assert messages > 1, out[-300:]
    zone = axfr_zone(m)
    a = zone.get_rdataset("big.internal.", "A")
    assert len(a) == 600, "a secondary gets every healthy record, not max_answers of them"
    assert "10.9.9.9" not in {r.to_text() for r in a}, "unhealthy instances are not served"
    assert len(zone.get_rdataset("_big._tcp.internal.", "SRV")) == 600
    assert zone.get_rdataset("i-7.big.internal.", "A")[0].to_text() == "10.1.0.8"
    assert zone.get_rdataset("internal.", "SOA")[0].serial == m.soa_serial()
    assert transfers(m, "axfr") >= 2


def test_ixfr_sends_the_changes_or_the_soa_when_current(muster):
    m = muster(transfer_toml())
    register(m, "web", 3)
    before = m.soa_serial()
    m.delete_instance("internal", "web", "i-1")
    register(m, "web", 1, start=10)
    now = m.soa_serial()
    # dnspython names the client's serial with an SOA in the authority section (RFC 1995).
    answer = ixfr_records(m, serial=before)
    serials = [int(rd.split()[2]) for _, t, rd in answer if t == "SOA"]
    assert serials[0] == now and serials[-1] == now
    assert serials[1] == before, "the first delta starts at the client's serial"
    assert ("web.internal.", "A", "10.1.0.2") in answer  # removed i-1
    assert ("web.internal.", "A", "10.1.0.11") in answer  # added i-10
    assert len(answer) < 20, "only the changes, not the zone"
    assert transfers(m, "ixfr") == 1
    # A current client gets the single SOA, over UDP too.
    soa = m.soa()
    q = dns.message.make_query("internal", "IXFR")
    q.authority.append(soa.copy())
    q.authority[0].clear()
    q.authority[0].add(soa[0].replace(serial=now))
    for send in (dns.query.tcp, dns.query.udp):
        r = send(q, "127.0.0.1", port=m.dns_port, timeout=2)
        assert [rr.rdtype for rr in r.answer] == [dns.rdatatype.SOA] and len(r.answer[0]) == 1
        assert r.answer[0][0].serial == now
    # A serial the journal does not reach: the whole zone.
    assert ("internal.", "NS", "ns.internal.") in ixfr_records(m, serial=7)
    assert transfers(m, "ixfr_full") == 1


@pytest.mark.parametrize(
    "toml",
    ["", transfer_toml(allow=("192.0.2.0/24",))],
    ids=["no-transfer-section", "not-in-allow"],
)
def test_transfers_are_refused_unless_allowed(muster, toml):
    m = muster(toml)
    register(m, "web", 1)
    for rdtype in ("AXFR", "IXFR"):
        r = m.dns_query("internal", rdtype, tcp=True)
        assert r.rcode() == dns.rcode.REFUSED and not r.answer
    assert m.dns_query("web.internal", "A").answer, "ordinary queries still work"


def test_axfr_over_udp_is_refused(muster):
    m = muster(transfer_toml())
    assert m.dns_query("internal", "AXFR").rcode() == dns.rcode.REFUSED


def test_tsig_is_required_and_checked_when_keys_are_configured(muster):
    m = muster(transfer_toml(key=KEY))
    register(m, "web", 2)
    assert m.dns_query("internal", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED
    good = dns.tsigkeyring.from_text({KEY[0]: KEY[1]})
    zone = axfr_zone(m, keyring=good, keyname=KEY[0])  # dnspython verifies each signed message
    assert len(zone.get_rdataset("web.internal.", "A")) == 2
    bad = dns.tsigkeyring.from_text({KEY[0]: base64.b64encode(b"not the secret").decode()})
    q = dns.message.make_query("internal", "AXFR")
    q.use_tsig(bad, keyname=KEY[0])
    wire = q.to_wire()
    raw = m.exchange(wire, tcp=True)
    assert raw is not None
    assert raw[3] & 0x0F == dns.rcode.NOTAUTH
    assert m.metric("muster_dns_queries_total", qtype="AXFR", rcode="NOTAUTH") == 1
    assert transfers(m, "refused") == 1
    # An ordinary signed query gets a signed answer (BIND's refresh checks its SOA so).
    q = dns.message.make_query("web.internal", "A")
    q.use_tsig(good, keyname=KEY[0])
    r = dns.query.udp(q, "127.0.0.1", port=m.dns_port, timeout=2)  # verifies the answer's TSIG
    assert r.had_tsig and len(r.answer[0]) == 2


SECONDARIES = {"knot": KnotSecondary, "bind": BindSecondary}


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "tsig"])
@pytest.mark.parametrize("kind", sorted(SECONDARIES))
def test_secondary_follows_changes_through_notify_and_ixfr(muster, tmp_path, kind, key):
    m = muster(start=False)
    secondary = SECONDARIES[kind](tmp_path / kind, m.dns_port, key=key)
    # Every record in each answer, so muster's answers and the secondary's compare whole.
    m.extra_toml = namespace_toml(services=[{"match": "*", "max_answers": 0}]) + transfer_toml(
        notify=(f"127.0.0.1:{secondary.port}",), key=key
    )
    m.write_config()
    m.start()
    register(m, "web", 20)
    register(m, "api", 5, port=9090)
    try:
        secondary.start()
        synced = lambda: secondary.serial() == m.soa_serial()  # noqa: E731
        wait_until(synced, timeout=15, message=f"{kind} loads the zone\n{secondary.log_tail()}")
        axfr_before = transfers(m, "axfr") + transfers(m, "ixfr_full")
        # A burst of small changes: registrations, deregistrations, a health flip.
        register(m, "web", 10, start=100)
        for i in range(5):
            m.delete_instance("internal", "web", f"i-{i}")
        m.set_health("internal", "api", "i-0", False)
        m.delete_instance("internal", "api", "i-1")
        wait_until(synced, timeout=10, message=f"{kind} follows the burst\n{secondary.log_tail()}")
        answer_set = lambda server, name, rdtype: {  # noqa: E731
            rd.to_text() for rr in server.query(name, rdtype, tcp=True).answer for rd in rr
        }
        for name, rdtype in [("web.internal.", "A"), ("_web._tcp.internal.", "SRV"), ("api.internal.", "SRV")]:
            theirs = answer_set(secondary, name, rdtype)
            want = {rd.to_text() for rr in m.dns_query(name, rdtype, tcp=True).answer for rd in rr}
            assert theirs == want, f"{kind} {name} {rdtype}"
        assert len(answer_set(secondary, "web.internal.", "A")) == 25, "every instance, whatever max_answers"
        r = secondary.query("i-0.api.internal.", "A")
        assert r.rcode() == dns.rcode.NXDOMAIN, "the unhealthy instance left the secondary"
        assert transfers(m, "ixfr") >= 1, "small changes travel as IXFR"
        assert transfers(m, "axfr") + transfers(m, "ixfr_full") == axfr_before, "and never as a full zone"
    finally:
        secondary.stop()
