"""EDNS options as resolvers send them (issue 17), asked with dig, kdig and dnspython.

muster answers NSID when `[dns] nsid` is set, copies DO (RFC 3225), and ignores Client
Subnet, COOKIE, padding, keepalive and unknown options as a server without them does
(docs/dns.md, "EDNS options"); a COOKIE or Client Subnet option that is malformed is
FORMERR. Over UDP and TCP alike.
"""

import dns.edns
import dns.flags
import dns.rcode
import pytest

from harness import answer_rdata, parse_dig, rcode_text

NSID = "replica-a"
OPTION_NSID, OPTION_CLIENT_SUBNET, OPTION_COOKIE, OPTION_KEEPALIVE = 3, 8, 10, 11


@pytest.fixture
def server(muster):
    m = muster(start=False)
    m.dns_settings = f'nsid = "{NSID}"\n'
    m.write_config()
    m.start()
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})
    return m


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_sees_nsid_do_and_no_echoed_cookie_or_subnet(server, transport):
    # dig sends a client cookie by default; +subnet adds Client Subnet.
    text = server.dig(transport, "+nsid", "+dnssec", "+subnet=192.0.2.0/24", "web.internal", "A")
    out = parse_dig(text)
    assert out.status == "NOERROR" and out.rdata("ANSWER", "A") == ["10.0.0.5"], text
    assert f'("{NSID}")' in text, text
    assert "flags: do;" in text, text
    assert "COOKIE" not in text and "CLIENT-SUBNET" not in text, text


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_kdig_padding_keepalive_and_unknown_options_are_ignored(server, transport):
    text = server.kdig(
        transport, "+nsid", "+padding=200", "+ednsopt=11", "+ednsopt=65001:0102", "+expire",
        "web.internal", "A",
    )
    out = parse_dig(text)
    assert out.status == "NOERROR" and out.rdata("ANSWER", "A") == ["10.0.0.5"], text
    assert f'"{NSID}"' in text, text
    for echoed in ("PADDING", "KEEPALIVE", "65001", "EXPIRE"):
        assert echoed not in text.upper(), text


def test_nsid_only_when_asked_and_configured(server, muster):
    assert all(o.otype != OPTION_NSID for o in server.dns_query("web.internal").options)
    plain = muster()
    plain.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
    text = plain.dig("+nsid", "web.internal", "A")
    assert "NSID" not in text and parse_dig(text).status == "NOERROR", text


@pytest.mark.parametrize("tcp", [False, True])
def test_every_answer_kind_carries_do_and_nsid(server, tcp):
    nsid = dns.edns.GenericOption(OPTION_NSID, b"")
    for name, rdtype, rcode in [
        ("web.internal", "A", dns.rcode.NOERROR),
        ("_web._tcp.internal", "SRV", dns.rcode.NOERROR),
        ("web.internal", "TXT", dns.rcode.NOERROR),
        ("nope.internal", "A", dns.rcode.NXDOMAIN),
        ("example.com", "A", dns.rcode.REFUSED),
    ]:
        r = server.dns_query(name, rdtype, tcp=tcp, options=[nsid], ednsflags=dns.flags.DO)
        assert r.rcode() == rcode, (name, rdtype, rcode_text(r))
        assert r.ednsflags & dns.flags.DO, (name, rdtype)
        ids = [o.to_wire() for o in r.options if o.otype == OPTION_NSID]
        assert ids == [NSID.encode()], (name, rdtype, r.options)
    r = server.dns_query("web.internal", tcp=tcp)
    assert not r.ednsflags & dns.flags.DO and answer_rdata(r, "A") == ["10.0.0.5"]


@pytest.mark.parametrize("tcp", [False, True])
def test_well_formed_cookies_and_subnets_are_answered(server, tcp):
    for option in [
        dns.edns.GenericOption(OPTION_COOKIE, bytes(range(8))),
        dns.edns.GenericOption(OPTION_COOKIE, bytes(range(24))),
        dns.edns.GenericOption(OPTION_CLIENT_SUBNET, b"\x00\x01\x18\x00\xc0\x00\x02"),
        dns.edns.GenericOption(OPTION_CLIENT_SUBNET, b"\x00\x02\x30\x00\x20\x01\x0d\xb8\x00\x01"),
        dns.edns.GenericOption(OPTION_KEEPALIVE, b""),
    ]:
        r = server.dns_query("web.internal", tcp=tcp, options=[option])
        assert r.rcode() == dns.rcode.NOERROR and answer_rdata(r, "A") == ["10.0.0.5"], option
        assert not r.options, (option, r.options)


@pytest.mark.parametrize("tcp", [False, True])
def test_malformed_cookie_or_subnet_is_formerr(server, tcp):
    for data in [b"\x01" * 5, b"\x01" * 12, b"\x01" * 41]:
        option = dns.edns.GenericOption(OPTION_COOKIE, data)
        r = server.dns_query("web.internal", tcp=tcp, options=[option])
        assert r.rcode() == dns.rcode.FORMERR, (data, rcode_text(r))
    family3 = dns.edns.GenericOption(OPTION_CLIENT_SUBNET, b"\x00\x03\x00\x00")
    r = server.dns_query("web.internal", tcp=tcp, options=[family3])
    assert r.rcode() == dns.rcode.FORMERR, rcode_text(r)
    # dig sends what it is told: a 5-byte client cookie.
    if not tcp:
        out = parse_dig(server.dig("+cookie=0102030405", "web.internal", "A"))
        assert out.status == "FORMERR", out.text
