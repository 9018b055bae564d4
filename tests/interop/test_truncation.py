"""Answers that do not fit: TC over UDP (and counted), a valid message within the size
limit, the OPT kept when the query had one; TCP carries everything a message can hold.
DESIGN.md "EDNS0" and the answer policy's ``max_answers = 0`` ("all that fit").

One server for the module, all with max_answers = 0: "big" has 200 instances (never fits in
UDP), "bigmid" 60 (fits in 1232 bytes, not in 512), "bigsmall" 20 (fits in 512).
"""

import subprocess

import dns.flags
import dns.rcode
import pytest

from harness import answer_rdata, namespace_toml, parse_dig

BIG = 200
MID = 60
SMALL = 20
BIG_ADDRS = {f"10.1.0.{i + 1}" for i in range(BIG)}


@pytest.fixture(scope="module")
def big(module_muster):
    m = module_muster(namespace_toml(ttl=5, negative_ttl=1, services=[{"match": "big*", "max_answers": 0}]))
    for i in range(BIG):
        body = {"ipv4": f"10.1.0.{i + 1}", "ipv6": f"fd00::1:{i:x}", "port": 8000 + i}
        m.put_instance("internal", "big", f"i-{i}", body)
    for i in range(MID):
        m.put_instance("internal", "bigmid", f"m-{i}", {"ipv4": f"10.4.0.{i + 1}", "port": 80})
    for i in range(SMALL):
        m.put_instance("internal", "bigsmall", f"s-{i}", {"ipv4": f"10.2.0.{i + 1}", "port": 80})
    return m


def assert_truncated(r, limit, opt):
    assert r.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(r.rcode())
    assert r.flags & dns.flags.TC, f"TC not set on a {r.wire_len}-byte answer"
    assert r.wire_len <= limit, f"truncated reply is {r.wire_len} bytes, limit {limit}"
    assert not r.answer and not r.additional, f"truncated reply carries records:\n{r}"
    assert len(r.question) == 1
    if opt:
        assert r.edns == 0, "OPT dropped from a truncated reply to an EDNS query"
    else:
        assert r.edns == -1, "OPT in a reply to a query without EDNS"


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "SRV"])
def test_udp_without_edns_truncates_within_512(big, rdtype):
    assert_truncated(big.dns_query("big.internal", rdtype, edns=False), 512, opt=False)


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "SRV"])
def test_udp_with_edns_1232_truncates_and_keeps_opt(big, rdtype):
    assert_truncated(big.dns_query("big.internal", rdtype, edns=True, payload=1232), 1232, opt=True)


def test_udp_payload_above_cap_is_capped(big):
    """A client offering 4096 still gets at most max_udp_payload (1232) bytes."""
    assert_truncated(big.dns_query("big.internal", "A", edns=True, payload=4096), 1232, opt=True)


def test_udp_payload_below_512_is_treated_as_512(big):
    r = big.dns_query("bigsmall.internal", "A", edns=True, payload=256)
    assert r.wire_len <= 512
    assert not r.flags & dns.flags.TC  # 20 A records fit in 512 bytes
    assert len(answer_rdata(r, "A")) == SMALL


@pytest.mark.parametrize("edns", [False, True], ids=["no-edns", "edns"])
def test_tcp_carries_all_records(big, edns):
    r = big.dns_query("big.internal", "A", tcp=True, edns=edns)
    assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.TC
    addrs = answer_rdata(r, "A")
    assert len(addrs) == BIG and set(addrs) == BIG_ADDRS
    assert len(answer_rdata(big.dns_query("big.internal", "AAAA", tcp=True, edns=edns), "AAAA")) == BIG


def test_tcp_srv_with_all_glue(big):
    r = big.dns_query("big.internal", "SRV", tcp=True)
    assert not r.flags & dns.flags.TC
    srv = [rd for rrset in r.answer for rd in rrset]
    assert len(srv) == BIG
    targets = {rd.target.to_text() for rd in srv}
    assert len(targets) == BIG
    glue_names = {rrset.name.to_text() for rrset in r.additional if rrset.rdtype in (1, 28)}
    assert glue_names == targets, "additional section does not cover exactly the SRV targets"
    assert {rd.port for rd in srv} == {8000 + i for i in range(BIG)}


def test_answer_that_fits_is_whole_over_udp(big):
    """max_answers = 0 with 20 instances: all 20 fit in 512 bytes, no TC."""
    for edns in (False, True):
        r = big.dns_query("bigsmall.internal", "A", edns=edns)
        assert not r.flags & dns.flags.TC
        assert sorted(answer_rdata(r, "A")) == sorted(f"10.2.0.{i + 1}" for i in range(SMALL))


def test_client_payload_size_is_honoured(big):
    """60 A records (~1 KB): whole with a 1232-byte EDNS payload, TC with 512 or without EDNS."""
    want = sorted(f"10.4.0.{i + 1}" for i in range(MID))
    r = big.dns_query("bigmid.internal", "A", edns=True, payload=1232)
    assert not r.flags & dns.flags.TC and 512 < r.wire_len <= 1232
    assert sorted(answer_rdata(r, "A")) == want
    assert_truncated(big.dns_query("bigmid.internal", "A", edns=True, payload=512), 512, opt=True)
    assert_truncated(big.dns_query("bigmid.internal", "A", edns=False), 512, opt=False)
    out = parse_dig(big.dig("+ignore", "+bufsize=1232", "bigmid.internal", "A"))
    assert "tc" not in out.flags and len(out.rdata("ANSWER", "A")) == MID, out.text
    out = parse_dig(big.kdig("+ignore", "+bufsize=512", "bigmid.internal", "A"))
    assert "tc" in out.flags, out.text


def test_truncated_udp_answers_are_counted(big):
    """muster_dns_truncated_total counts each UDP answer sent with TC, whichever path sent
    it: the fast path truncates an answer that cannot fit even at its smallest encoding
    (200 or 60 A records), the full path one it encodes to find too large (20 SRV records
    with their glue in 512 bytes)."""
    queries = [  # name, type, EDNS payload (None: no EDNS), truncated
        ("big.internal", "A", None, True),
        ("big.internal", "A", 1232, True),
        ("bigmid.internal", "A", None, True),
        ("bigmid.internal", "A", 1232, False),
        ("bigsmall.internal", "SRV", None, True),
        ("bigsmall.internal", "SRV", 512, True),
        ("bigsmall.internal", "SRV", 1232, False),
        ("bigsmall.internal", "A", None, False),
    ]
    before = big.metric("muster_dns_truncated_total")
    for name, rdtype, payload, truncated in queries:
        r = big.dns_query(name, rdtype, edns=payload is not None, payload=payload)
        assert bool(r.flags & dns.flags.TC) == truncated, (name, rdtype, payload, r.wire_len)
    counted = big.metric("muster_dns_truncated_total") - before
    assert counted == sum(t for *_, t in queries), f"{counted} truncated answers counted"


def test_dig_sees_tc_and_retries_over_tcp(big):
    # +ignore: do not retry over TCP, show the truncated reply as it came.
    out = parse_dig(big.dig("+ignore", "+noedns", "big.internal", "A"))
    assert out.status == "NOERROR" and "tc" in out.flags, out.text
    assert out.counts.get("ANSWER") == 0, out.text
    out = parse_dig(big.dig("+notcp", "+ignore", "+bufsize=1232", "big.internal", "A"))
    assert "tc" in out.flags, out.text
    assert "; EDNS: version: 0" in out.text, out.text
    # Default dig: gets TC over UDP, retries over TCP, shows every record.
    out = parse_dig(big.dig("big.internal", "A"))
    assert "tc" not in out.flags, out.text
    assert set(out.rdata("ANSWER", "A")) == BIG_ADDRS, out.text
    out = parse_dig(big.dig("+tcp", "big.internal", "SRV"))
    assert out.counts.get("ANSWER") == BIG and out.counts.get("ADDITIONAL", 0) >= BIG, out.text


def test_kdig_sees_tc_and_retries_over_tcp(big):
    out = parse_dig(big.kdig("+ignore", "+noedns", "big.internal", "A"))
    assert out.status == "NOERROR" and "tc" in out.flags, out.text
    out = parse_dig(big.kdig("+ignore", "+bufsize=1232", "big.internal", "A"))
    assert "tc" in out.flags, out.text
    assert "EDNS PSEUDOSECTION" in out.text, out.text
    out = parse_dig(big.kdig("big.internal", "A"))
    assert "tc" not in out.flags, out.text
    assert set(out.rdata("ANSWER", "A")) == BIG_ADDRS, out.text
    out = parse_dig(big.kdig("+tcp", "big.internal", "AAAA"))
    assert len(out.rdata("ANSWER", "AAAA")) == BIG, out.text


def test_server_still_answers_small_queries(big):
    r = big.dns_query("i-7.big.internal", "A")
    assert not r.flags & dns.flags.TC
    assert answer_rdata(r, "A") == ["10.1.0.8"]


HUGE = 1500


def test_tcp_answer_larger_than_a_message_carries_all_that_fit(muster):
    """1,500 SRV records and their glue take ~100 KB, more than a DNS message (65,535
    bytes) holds. Over TCP the answer is the records that fit, each with its glue, in a
    valid message without TC (max_answers = 0: all that fit), as dnspython and kdig read
    it; the A records alone fit whole."""
    huge = namespace_toml(ttl=5, negative_ttl=1, services=[{"match": "huge", "max_answers": 0}])
    m = muster(huge + "[auth]\nwrite_rate = 0\n")
    changes = [
        {
            "op": "register",
            "service": "huge",
            "id": f"instance-with-a-longer-id-{i:05}",
            "instance": {"ipv4": f"10.9.{i // 250}.{i % 250 + 1}", "ipv6": f"fd00::2:{i:x}", "port": 8000 + i % 1000},
        }
        for i in range(HUGE)
    ]
    for at in range(0, HUGE, 500):
        r = m.http.post(m.url("/v1/namespaces/internal/batch"), json={"changes": changes[at : at + 500]}, timeout=10)
        assert r.status_code == 200, r.text
    # dnspython refuses a message with trailing or missing bytes.
    r = m.dns_query("huge.internal", "SRV", tcp=True)
    assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.TC, r.flags
    srv = [rd for rrset in r.answer for rd in rrset]
    assert 250 < len(srv) < HUGE, len(srv)
    targets = {rd.target.to_text() for rd in srv}
    glue = {rrset.name.to_text(): rrset.rdtype for rrset in r.additional if rrset.rdtype in (1, 28)}
    assert set(glue) == targets, "the glue is that of the SRV records sent"
    kdig = subprocess.run(
        ["kdig", "+tcp", "-p", str(m.dns_port), "@127.0.0.1", "huge.internal", "SRV"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    out = kdig.stdout + kdig.stderr
    assert kdig.returncode == 0 and "status: NOERROR" in out and "malformed" not in out, out
    a = m.dns_query("huge.internal", "A", tcp=True)
    assert len(answer_rdata(a, "A")) == HUGE
