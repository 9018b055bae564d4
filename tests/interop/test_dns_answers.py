"""DNS answers as dig, kdig and dnspython see them: record shapes, negative answers,
names outside the namespace, case, ANY, opcodes, malformed packets, EDNS and TTLs.

DESIGN.md "Names and records" and "TTLs" are the contract.
"""

import random
import socket
import struct
import subprocess
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.update
import pytest

from harness import (
    answer_rdata,
    assert_negative,
    namespace_toml,
    parse_dig,
    rcode_text,
    section_rdata,
)

NOERROR, NXDOMAIN, REFUSED = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED


def web_i1(m):
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})


# ---------------------------------------------------------------------------------------
# The closing-note story, told with the real command-line clients


def test_closing_note_story_with_dig(muster):
    m = muster()
    web_i1(m)

    a = parse_dig(m.dig("web.internal", "A"))
    assert a.status == "NOERROR", a.text
    assert "aa" in a.flags, a.text
    assert a.rdata("ANSWER", "A") == ["10.0.0.5"], a.text
    assert a.records("ANSWER", "A")[0][0] == "web.internal.", a.text

    srv = parse_dig(m.dig("web.internal", "SRV"))
    assert srv.status == "NOERROR", srv.text
    assert "aa" in srv.flags, srv.text
    assert srv.rdata("ANSWER", "SRV") == ["1 1 8080 i-1.web.internal."], srv.text
    glue = [(r[0], r[4]) for r in srv.records("ADDITIONAL", "A")]
    assert glue == [("i-1.web.internal.", "10.0.0.5")], srv.text

    m.delete_instance("internal", "web", "i-1")
    gone = parse_dig(m.dig("web.internal", "A"))
    assert gone.status == "NXDOMAIN", gone.text
    assert "aa" in gone.flags, gone.text
    assert gone.records("ANSWER") == [], gone.text
    soa = gone.records("AUTHORITY", "SOA")
    assert len(soa) == 1 and soa[0][0] == "internal.", gone.text

    outside = parse_dig(m.dig("example.com", "A"))
    assert outside.status == "REFUSED", outside.text
    assert outside.records("ANSWER") == [], outside.text


def test_closing_note_story_with_kdig(muster):
    m = muster()
    web_i1(m)

    a = parse_dig(m.kdig("web.internal", "A"))
    assert a.status == "NOERROR", a.text
    assert "aa" in a.flags, a.text
    assert a.rdata("ANSWER", "A") == ["10.0.0.5"], a.text

    srv = parse_dig(m.kdig("web.internal", "SRV"))
    assert srv.rdata("ANSWER", "SRV") == ["1 1 8080 i-1.web.internal."], srv.text
    assert [(r[0], r[4]) for r in srv.records("ADDITIONAL", "A")] == [("i-1.web.internal.", "10.0.0.5")], (
        srv.text
    )

    m.delete_instance("internal", "web", "i-1")
    gone = parse_dig(m.kdig("web.internal", "A"))
    assert gone.status == "NXDOMAIN", gone.text
    assert len(gone.records("AUTHORITY", "SOA")) == 1, gone.text

    assert parse_dig(m.kdig("example.com", "A")).status == "REFUSED"


def test_closing_note_story_with_dnspython(muster):
    m = muster()
    web_i1(m)
    for tcp in (False, True):
        r = m.dns_query("web.internal", "A", tcp=tcp)
        assert r.rcode() == NOERROR and r.flags & dns.flags.AA, r
        assert answer_rdata(r, "A", "web.internal.") == ["10.0.0.5"]

        r = m.dns_query("web.internal", "SRV", tcp=tcp)
        assert answer_rdata(r, "SRV") == ["1 1 8080 i-1.web.internal."]
        assert section_rdata(r.additional, "A") == [("i-1.web.internal.", "10.0.0.5")]

    m.delete_instance("internal", "web", "i-1")
    assert_negative(m.dns_query("web.internal", "A"), NXDOMAIN)
    assert_negative(m.dns_query("web.internal", "SRV"), NXDOMAIN)
    assert m.dns_query("example.com", "A").rcode() == REFUSED


# ---------------------------------------------------------------------------------------
# Record types and names


def test_aaaa_and_dual_stack(muster):
    m = muster()
    m.put_instance("internal", "v6", "a", {"ipv6": "fd00::5", "port": 80})
    m.put_instance("internal", "dual", "b", {"ipv4": "10.0.0.7", "ipv6": "fd00::7", "port": 81})

    r = m.dns_query("v6.internal", "AAAA")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert answer_rdata(r, "AAAA") == ["fd00::5"]
    # An IPv6-only service has no A record: NODATA.
    assert_negative(m.dns_query("v6.internal", "A"), NOERROR)
    # SRV glue for an IPv6-only target is its AAAA.
    r = m.dns_query("v6.internal", "SRV")
    assert answer_rdata(r, "SRV") == ["1 1 80 a.v6.internal."]
    assert section_rdata(r.additional, "AAAA") == [("a.v6.internal.", "fd00::5")]

    assert answer_rdata(m.dns_query("dual.internal", "A"), "A") == ["10.0.0.7"]
    assert answer_rdata(m.dns_query("dual.internal", "AAAA"), "AAAA") == ["fd00::7"]
    assert answer_rdata(m.dns_query("b.dual.internal", "AAAA"), "AAAA") == ["fd00::7"]
    r = m.dns_query("dual.internal", "SRV")
    assert sorted(section_rdata(r.additional, "A") + section_rdata(r.additional, "AAAA")) == [
        ("b.dual.internal.", "10.0.0.7"),
        ("b.dual.internal.", "fd00::7"),
    ]

    aaaa = parse_dig(m.dig("v6.internal", "AAAA"))
    assert aaaa.rdata("ANSWER", "AAAA") == ["fd00::5"], aaaa.text
    kaaaa = parse_dig(m.kdig("v6.internal", "AAAA"))
    assert kaaaa.rdata("ANSWER", "AAAA") == ["fd00::5"], kaaaa.text


@pytest.mark.parametrize("rdtype", ["AAAA", "TXT", "MX", "CNAME", "PTR"])
def test_nodata_for_existing_name(muster, rdtype):
    m = muster(namespace_toml(ttl=5, negative_ttl=3))
    web_i1(m)
    assert_negative(m.dns_query("web.internal", rdtype), NOERROR, negative_ttl=3)
    assert_negative(m.dns_query("i-1.web.internal", rdtype), NOERROR, negative_ttl=3)


def test_nodata_with_dig_shows_soa(muster):
    m = muster(namespace_toml(ttl=5, negative_ttl=3))
    web_i1(m)
    out = parse_dig(m.dig("web.internal", "AAAA"))
    assert out.status == "NOERROR" and "aa" in out.flags, out.text
    assert out.counts.get("ANSWER") == 0, out.text
    soa = out.records("AUTHORITY", "SOA")
    assert len(soa) == 1 and soa[0][0] == "internal." and soa[0][1] == "3", out.text
    # SOA rdata: mname rname serial refresh retry expire minimum
    assert soa[0][-1] == "3", out.text


@pytest.mark.parametrize(
    "name",
    [
        "nope.internal",  # no such service
        "i-9.web.internal",  # no such instance of an existing service
        "x.i-1.web.internal",  # below an instance name
        "_nope._tcp.internal",  # alias of a service that does not exist
        "_web._udp.internal",  # web's protocol is tcp: no udp alias
    ],
)
def test_nxdomain_for_unknown_names(muster, name):
    m = muster(namespace_toml(ttl=5, negative_ttl=2))
    web_i1(m)
    for rdtype in ("A", "SRV"):
        assert_negative(m.dns_query(name, rdtype), NXDOMAIN, negative_ttl=2)


def test_instance_name_answers_only_that_instance(muster):
    m = muster()
    web_i1(m)
    m.put_instance("internal", "web", "i-2", {"ipv4": "10.0.0.6", "port": 8080})
    r = m.dns_query("i-1.web.internal", "A")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert answer_rdata(r, "A", "i-1.web.internal.") == ["10.0.0.5"]
    assert answer_rdata(m.dns_query("i-2.web.internal", "A"), "A") == ["10.0.0.6"]
    assert sorted(answer_rdata(m.dns_query("web.internal", "A"), "A")) == ["10.0.0.5", "10.0.0.6"]
    out = parse_dig(m.dig("i-1.web.internal", "A"))
    assert out.rdata("ANSWER", "A") == ["10.0.0.5"] and "aa" in out.flags, out.text


def test_srv_only_for_instances_with_a_port(muster):
    m = muster()
    m.put_instance("internal", "mixed", "p", {"ipv4": "10.0.0.1", "port": 9000})
    m.put_instance("internal", "mixed", "n", {"ipv4": "10.0.0.2"})
    m.put_instance("internal", "noport", "n", {"ipv4": "10.0.0.3"})
    r = m.dns_query("mixed.internal", "SRV")
    assert answer_rdata(r, "SRV") == ["1 1 9000 p.mixed.internal."]
    assert section_rdata(r.additional, "A") == [("p.mixed.internal.", "10.0.0.1")]
    assert sorted(answer_rdata(m.dns_query("mixed.internal", "A"), "A")) == ["10.0.0.1", "10.0.0.2"]
    # A service none of whose instances has a port exists, but has no SRV: NODATA.
    assert_negative(m.dns_query("noport.internal", "SRV"), NOERROR)
    assert answer_rdata(m.dns_query("noport.internal", "A"), "A") == ["10.0.0.3"]


def test_rfc2782_alias_matches_service_srv(muster):
    m = muster()
    web_i1(m)
    m.put_instance("internal", "web", "i-2", {"ipv4": "10.0.0.6", "port": 8081})
    plain = m.dns_query("web.internal", "SRV")
    alias = m.dns_query("_web._tcp.internal", "SRV")
    assert alias.rcode() == NOERROR and alias.flags & dns.flags.AA, alias
    assert (
        sorted(answer_rdata(alias, "SRV"))
        == sorted(answer_rdata(plain, "SRV"))
        == [
            "1 1 8080 i-1.web.internal.",
            "1 1 8081 i-2.web.internal.",
        ]
    )
    assert alias.answer[0].name == dns.name.from_text("_web._tcp.internal")
    assert sorted(section_rdata(alias.additional, "A")) == sorted(section_rdata(plain.additional, "A"))
    assert alias.answer[0].ttl == plain.answer[0].ttl

    out = parse_dig(m.dig("_web._tcp.internal", "SRV"))
    assert sorted(out.rdata("ANSWER", "SRV")) == ["1 1 8080 i-1.web.internal.", "1 1 8081 i-2.web.internal."]
    kout = parse_dig(m.kdig("_web._tcp.internal", "SRV"))
    assert len(kout.rdata("ANSWER", "SRV")) == 2, kout.text
    # The alias name holds SRV only.
    assert_negative(m.dns_query("_web._tcp.internal", "A"), NOERROR)


def test_udp_protocol_alias(muster):
    m = muster(namespace_toml(services=[{"match": "dns*", "protocol": "udp"}]))
    m.put_instance("internal", "dnsd", "d1", {"ipv4": "10.0.0.53", "port": 53})
    r = m.dns_query("_dnsd._udp.internal", "SRV")
    assert r.rcode() == NOERROR
    assert answer_rdata(r, "SRV") == ["1 1 53 d1.dnsd.internal."]
    assert_negative(m.dns_query("_dnsd._tcp.internal", "SRV"), NXDOMAIN)


def test_empty_non_terminal_is_nodata(muster):
    m = muster()
    web_i1(m)
    for rdtype in ("SRV", "A", "TXT"):
        assert_negative(m.dns_query("_tcp.internal", rdtype), NOERROR)
    out = parse_dig(m.dig("_tcp.internal", "SRV"))
    assert out.status == "NOERROR", out.text


def test_soa_and_ns_at_apex(muster):
    m = muster()
    soa = m.dns_query("internal", "SOA")
    assert soa.rcode() == NOERROR and soa.flags & dns.flags.AA
    assert len(soa.answer) == 1 and soa.answer[0].rdtype == dns.rdatatype.SOA
    assert soa.answer[0][0].minimum == 1

    ns = m.dns_query("internal", "NS")
    assert ns.rcode() == NOERROR and ns.flags & dns.flags.AA
    assert answer_rdata(ns, "NS"), ns

    # The apex exists but has no A: NODATA.
    assert_negative(m.dns_query("internal", "A"), NOERROR)

    for client in (m.dig, m.kdig):
        out = parse_dig(client("internal", "SOA"))
        assert out.status == "NOERROR" and "aa" in out.flags, out.text
        assert len(out.records("ANSWER", "SOA")) == 1, out.text


def test_soa_serial_increases_with_every_write(muster):
    m = muster()
    serials = [m.soa_serial()]

    def wrote():
        serials.append(m.soa_serial())
        assert serials[-1] > serials[-2], f"SOA serial did not increase: {serials}"

    web_i1(m)
    wrote()
    m.put_instance("internal", "web", "i-2", {"ipv4": "10.0.0.6"})
    wrote()
    m.set_health("internal", "web", "i-2", False)
    wrote()
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.8", "port": 8080})
    wrote()
    m.delete_instance("internal", "web", "i-2")
    wrote()
    # The serial in a negative answer's SOA is the same serial.
    r = m.dns_query("nope.internal", "A")
    assert r.authority[0][0].serial == serials[-1]


def test_case_insensitive_and_question_echoed(muster):
    m = muster()
    web_i1(m)
    for name in ("WeB.InTeRnAl.", "WEB.INTERNAL.", "I-1.wEb.internal."):
        for tcp in (False, True):
            r = m.dns_query(name, "A", tcp=tcp)
            assert r.rcode() == NOERROR, f"{name}: {rcode_text(r)}"
            assert r.flags & dns.flags.AA
            assert answer_rdata(r, "A") == ["10.0.0.5"], name
            # dnspython compares names case-insensitively: compare the text.
            assert r.question[0].name.to_text() == name, r.question[0].name.to_text()
            # And on the wire: the question bytes come back exactly as sent.
            qlen = len(dns.name.from_text(name).to_wire()) + 4
            assert r.wire[12 : 12 + qlen] == r.query_wire[12 : 12 + qlen]
    r = m.dns_query("_WEB._TCP.Internal.", "SRV")
    assert answer_rdata(r, "SRV") == ["1 1 8080 i-1.web.internal."]
    assert_negative(m.dns_query("NOPE.Internal.", "A"), NXDOMAIN)

    out = m.dig("WeB.InTeRnAl", "A")
    assert ";WeB.InTeRnAl.\t" in out or ";WeB.InTeRnAl. " in out, out
    assert parse_dig(out).rdata("ANSWER", "A") == ["10.0.0.5"], out
    # dig's +0x20-like check in kdig: the question section must match the query's case.
    kout = parse_dig(m.kdig("wEB.iNTERNAL", "A"))
    assert kout.rdata("ANSWER", "A") == ["10.0.0.5"], kout.text


def test_any_gets_minimal_answer(muster):
    """RFC 8482: ANY is answered with one RRset, or a synthesized HINFO "RFC8482"."""
    m = muster()
    web_i1(m)
    m.put_instance("internal", "web", "i-2", {"ipv6": "fd00::6", "port": 8080})
    for name in ("web.internal", "internal"):
        r = m.dns_query(name, "ANY")
        assert r.rcode() == NOERROR, f"{name} ANY: {rcode_text(r)}"
        assert r.flags & dns.flags.AA
        assert len(r.answer) == 1, f"{name} ANY: want exactly one RRset, got\n{r}"
        rrset = r.answer[0]
        assert rrset.name == dns.name.from_text(name)
        if rrset.rdtype == dns.rdatatype.HINFO:
            assert rrset[0].cpu == b"RFC8482", rrset
    assert parse_dig(m.dig("web.internal", "ANY")).status == "NOERROR"
    assert m.dns_query("nope.internal", "ANY").rcode() == NXDOMAIN


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS])
def test_non_query_opcode_is_notimp(muster, opcode):
    m = muster()
    web_i1(m)
    r = m.dns_query("web.internal", "A", opcode=opcode)
    assert r.rcode() == dns.rcode.NOTIMP, rcode_text(r)
    assert r.opcode() == opcode
    assert not r.answer
    # Still answering queries.
    assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]


def test_unsigned_update_is_refused(muster):
    """Dynamic UPDATE (RFC 2136) must be signed by an [[update.keys]] key (test_dns_update.py):
    unsigned, it is REFUSED and nothing changes."""
    m = muster()
    web_i1(m)
    serial = m.soa_serial()
    u = dns.update.UpdateMessage("internal")
    u.replace("web", 5, "A", "10.0.0.66")
    raw = m.exchange(u.to_wire())
    assert raw is not None, "no reply to UPDATE"
    r = dns.message.from_wire(raw)
    assert r.opcode() == dns.opcode.UPDATE and r.rcode() == dns.rcode.REFUSED, r
    # BIND's nsupdate, the client people actually use.
    p = subprocess.run(
        ["nsupdate"],
        input=f"server 127.0.0.1 {m.dns_port}\nzone internal\nupdate add web.internal 5 A 10.0.0.66\nsend\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode != 0 and "REFUSED" in p.stdout + p.stderr, (p.returncode, p.stdout, p.stderr)
    assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]
    assert m.soa_serial() == serial


# ---------------------------------------------------------------------------------------
# Malformed packets: FORMERR or no answer, and the server keeps answering


def assert_formerr_or_dropped(raw, sent_id=None):
    if raw is None:
        return
    assert len(raw) >= 12, f"reply shorter than a DNS header: {raw!r}"
    assert raw[2] & 0x80, "reply without QR"
    assert raw[3] & 0x0F == dns.rcode.FORMERR, f"rcode {raw[3] & 0x0F}, want FORMERR (1): {raw!r}"
    if sent_id is not None:
        assert raw[:2] == sent_id


def query_wire(name="web.internal", rdtype="A", edns=False):
    return dns.message.make_query(name, rdtype, use_edns=0 if edns else False).to_wire()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_malformed_packets(muster, tcp):
    m = muster()
    web_i1(m)
    good = query_wire()
    cases = {
        "empty": b"",
        "3-byte header": good[:3],
        "11-byte header": good[:11],
        "header only, QDCOUNT=1": good[:12],
        "question cut in the name": good[:16],
        "question without type/class": good[: len(good) - 4],
        "QDCOUNT=0": good[:4] + b"\x00\x00" + good[6:12],
        "QDCOUNT=2, one question": good[:4] + b"\x00\x02" + good[6:],
        "label longer than 63": good[:12] + b"\x50" + b"a" * 80 + b"\x00\x00\x01\x00\x01",
        "compression pointer loop": good[:12] + b"\xc0\x0c\x00\x01\x00\x01",
        "ARCOUNT=1, no record": good[:10] + b"\x00\x01" + good[12:],
    }
    for what, wire in cases.items():
        if tcp and not wire:
            continue
        raw = m.exchange(wire, tcp=tcp, timeout=0.5)
        try:
            assert_formerr_or_dropped(raw, wire[:2] if len(wire) >= 12 else None)
        except AssertionError as e:
            raise AssertionError(f"{what}: {e}") from None
        # The server keeps answering after each one.
        r = m.dns_query("web.internal", "A", tcp=tcp)
        assert answer_rdata(r, "A") == ["10.0.0.5"], f"after {what}"


def test_random_garbage_does_not_stop_the_server(muster):
    m = muster()
    web_i1(m)
    rng = random.Random(8482)
    sent_ids = set()
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", m.dns_port))
        s.settimeout(0.3)
        for i in range(300):
            n = rng.choice([1, 2, 5, 12, 13, 17, 30, 64, 200, 511, 512, 1400])
            wire = bytes(rng.getrandbits(8) for _ in range(n))
            if i % 2 and n >= 4:
                # Half of them look like a query header (QR=0, opcode QUERY) with a garbage body.
                wire = wire[:2] + b"\x01\x00" + wire[4:]
            sent_ids.add(wire[:2])
            s.send(wire)
            if i % 50 == 49:
                time.sleep(0.02)  # do not overrun the socket buffer
        try:
            while True:
                replies.append(s.recv(65535))
        except (socket.timeout, ConnectionRefusedError):
            pass
    for raw in replies:
        assert len(raw) >= 12 and raw[2] & 0x80, f"bad reply to garbage: {raw!r}"
        assert raw[:2] in sent_ids, f"reply with an id we never sent: {raw!r}"
    assert m.proc.poll() is None, "muster died"
    assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]
    assert answer_rdata(m.dns_query("web.internal", "A", tcp=True), "A") == ["10.0.0.5"]


# ---------------------------------------------------------------------------------------
# EDNS


def test_edns_opt_echoed_and_absent_without_edns(muster):
    m = muster()
    web_i1(m)
    for tcp in (False, True):
        r = m.dns_query("web.internal", "A", tcp=tcp, edns=True, payload=1232)
        assert r.edns == 0, f"no OPT (edns={r.edns}) in reply to an EDNS query"
        assert 512 <= r.payload <= 1232, f"advertised payload {r.payload}"
        r = m.dns_query("web.internal", "A", tcp=tcp, edns=False)
        assert r.edns == -1, "OPT in reply to a query without EDNS"
    # Negative answers and REFUSED keep the OPT too.
    assert m.dns_query("nope.internal", "A").edns == 0
    assert m.dns_query("example.com", "A").edns == 0


def test_edns_unknown_option_ignored(muster):
    m = muster()
    web_i1(m)
    opt = dns.edns.GenericOption(65001, b"\x01\x02\x03")
    r = m.dns_query("web.internal", "A", options=[opt])
    assert r.rcode() == NOERROR and answer_rdata(r, "A") == ["10.0.0.5"]
    assert all(o.otype != 65001 for o in r.options), "unknown option echoed"
    # A cookie (RFC 7873) from dig must not break anything either.
    out = parse_dig(m.dig("+cookie", "web.internal", "A"))
    assert out.status == "NOERROR" and out.rdata("ANSWER", "A") == ["10.0.0.5"], out.text


def test_edns_version_1_is_badvers(muster):
    m = muster()
    web_i1(m)
    for tcp in (False, True):
        r = m.dns_query("web.internal", "A", tcp=tcp, edns_version=1)
        assert r.rcode() == dns.rcode.BADVERS, rcode_text(r)
        assert r.edns == 0, f"BADVERS reply must carry OPT version 0, got edns={r.edns}"
        assert not r.answer
    out = parse_dig(m.dig("+edns=1", "+noednsnegotiation", "web.internal", "A"))
    assert out.status == "BADVERS", out.text
    kout = parse_dig(m.kdig("+edns=1", "web.internal", "A"))
    assert kout.status == "BADVERS", kout.text


# ---------------------------------------------------------------------------------------
# TTLs


def test_namespace_ttl_and_glob_override(muster):
    m = muster(namespace_toml(ttl=5, negative_ttl=1, services=[{"match": "zero*", "ttl": 0}]))
    web_i1(m)
    m.put_instance("internal", "zero-svc", "z1", {"ipv4": "10.0.0.10", "port": 80})

    for rdtype in ("A", "SRV"):
        r = m.dns_query("web.internal", rdtype)
        assert r.answer[0].ttl == 5, f"web {rdtype} TTL {r.answer[0].ttl}"
        r = m.dns_query("zero-svc.internal", rdtype)
        assert r.answer[0].ttl == 0, f"zero-svc {rdtype} TTL {r.answer[0].ttl}"
    assert m.dns_query("z1.zero-svc.internal", "A").answer[0].ttl == 0
    assert m.dns_query("_zero-svc._tcp.internal", "SRV").answer[0].ttl == 0

    out = parse_dig(m.dig("zero-svc.internal", "A"))
    assert out.records("ANSWER", "A")[0][1] == "0", out.text
    out = parse_dig(m.kdig("web.internal", "A"))
    assert out.records("ANSWER", "A")[0][1] == "5", out.text


def test_configured_namespace_ttls(muster):
    m = muster(namespace_toml(ttl=30, negative_ttl=7))
    web_i1(m)
    assert m.dns_query("web.internal", "A").answer[0].ttl == 30
    assert_negative(m.dns_query("nope.internal", "A"), NXDOMAIN, negative_ttl=7)
    assert_negative(m.dns_query("web.internal", "TXT"), NOERROR, negative_ttl=7)


def test_default_ttls(muster):
    """A namespace without ttl/negative_ttl: answers 5 s, negative answers 1 s."""
    m = muster(namespace_toml(ttl=None, negative_ttl=None))
    web_i1(m)
    assert m.dns_query("web.internal", "A").answer[0].ttl == 5
    assert_negative(m.dns_query("nope.internal", "A"), NXDOMAIN, negative_ttl=1)


# ---------------------------------------------------------------------------------------
# Names outside the namespaces, and more than one namespace


@pytest.mark.parametrize("name", ["example.com", ".", "xinternal", "internal.example", "com"])
def test_outside_namespace_refused(muster, name):
    m = muster()
    r = m.dns_query(name, "A")
    assert r.rcode() == REFUSED, f"{name}: {rcode_text(r)}"
    assert not r.answer
    assert not r.flags & dns.flags.AA


def test_two_namespaces(muster):
    m = muster(namespace_toml("internal") + "\n" + namespace_toml("corp.example", ttl=9, negative_ttl=2))
    web_i1(m)
    m.put_instance("corp.example", "api", "a1", {"ipv4": "10.9.0.1", "port": 443})
    r = m.dns_query("api.corp.example", "A")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert answer_rdata(r, "A") == ["10.9.0.1"] and r.answer[0].ttl == 9
    assert answer_rdata(m.dns_query("api.corp.example", "SRV"), "SRV") == ["1 1 443 a1.api.corp.example."]
    assert_negative(m.dns_query("web.corp.example", "A"), NXDOMAIN, zone="corp.example", negative_ttl=2)
    assert_negative(m.dns_query("api.internal", "A"), NXDOMAIN, zone="internal", negative_ttl=1)
    assert m.dns_query("corp.example", "SOA").rcode() == NOERROR
    assert m.dns_query("example", "A").rcode() == REFUSED


# ---------------------------------------------------------------------------------------
# Misc wire-level behaviour


def test_rd_flag_copied_and_ra_not_set(muster):
    m = muster()
    web_i1(m)
    r = m.dns_query("web.internal", "A", rd=True)
    assert r.flags & dns.flags.RD
    r = m.dns_query("web.internal", "A", rd=False)
    assert not r.flags & dns.flags.RD


def test_many_queries_on_one_tcp_connection(muster):
    """Resolvers reuse TCP connections and pipeline: several queries, one connection."""
    m = muster()
    web_i1(m)
    with socket.create_connection(("127.0.0.1", m.dns_port), timeout=2) as s:
        queries = [dns.message.make_query("web.internal", "A") for _ in range(5)]
        for q in queries:
            w = q.to_wire()
            s.sendall(struct.pack("!H", len(w)) + w)
        for q in queries:
            n = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))[0]
            r = dns.message.from_wire(s.recv(n, socket.MSG_WAITALL))
            assert r.id in {x.id for x in queries}
            assert answer_rdata(r, "A") == ["10.0.0.5"]
