"""TSIG failures answered as RFC 8945 says and Knot and BIND do (checked with dig, kdig
and dnspython), the fudge taken from muster's configuration, truncated MACs, CD on
non-QUERY opcodes, and logs that a flood of bad packets cannot fill."""

import base64
import socket
import struct
import time

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import pytest

from harness import parse_metrics

SECRET = base64.b64encode(b"muster transfer secret, 32 bytes").decode()
KEY = ("transfer-key", SECRET)
KEYRING = dns.tsigkeyring.from_text({KEY[0]: KEY[1]})
TSIG_TOML = f"""[transfer]
allow = ["127.0.0.1"]
[[transfer.tsig_keys]]
name = "{KEY[0]}"
secret = "{KEY[1]}"
"""


@pytest.fixture
def signed(muster):
    m = muster(TSIG_TOML)
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})
    return m


def ask(m, keyring, keyname=KEY[0], fudge=300, name="web.internal"):
    q = dns.message.make_query(name, "A")
    q.use_tsig(keyring, keyname=keyname, fudge=fudge)
    return dns.query.udp(q, "127.0.0.1", port=m.dns_port, timeout=2)


def raw_tsig(m, q):
    """The reply to `q` read without checking its TSIG: (rcode, the TSIG rdata, wire)."""
    raw = m.exchange(q.to_wire())
    assert raw is not None, "no reply"
    r = dns.message.from_wire(raw, keyring=False, request_mac=q.mac)
    assert r.tsig is not None, f"no TSIG in the reply:\n{r}"
    return r.rcode(), r.tsig[0], raw


class ShiftedClock:
    """Stands in for the `time` module where dnspython signs, `offset` seconds off."""

    def __init__(self, offset):
        self.offset = offset

    def time(self):
        return time.time() + self.offset


def test_an_unknown_key_gets_badkey(signed):
    other = dns.tsigkeyring.from_text({"other-key": SECRET})
    with pytest.raises(dns.tsig.PeerBadKey):
        ask(signed, other, keyname="other-key")
    q = dns.message.make_query("web.internal", "A")
    q.use_tsig(other, keyname="other-key")
    rcode, tsig, _ = raw_tsig(signed, q)
    assert rcode == dns.rcode.NOTAUTH
    assert tsig.error == dns.rcode.BADKEY and tsig.mac == b"", "unsigned: MAC size 0"
    out = signed.dig("web.internal", "A", "-y", f"hmac-sha256:other-key:{SECRET}", check=False)
    assert "NOTAUTH" in out and "BADKEY" in out, out
    out = signed.kdig("web.internal", "A", "-y", f"hmac-sha256:other-key:{SECRET}", check=False)
    assert "BADKEY" in out, out


def test_a_wrong_secret_gets_badsig(signed):
    wrong = dns.tsigkeyring.from_text({KEY[0]: base64.b64encode(b"not the secret").decode()})
    with pytest.raises(dns.tsig.PeerBadSignature):
        ask(signed, wrong)
    wrong_secret = base64.b64encode(b"not the secret").decode()
    out = signed.dig("web.internal", "A", "-y", f"hmac-sha256:{KEY[0]}:{wrong_secret}", check=False)
    assert "NOTAUTH" in out and "BADSIG" in out, out
    out = signed.kdig("web.internal", "A", "-y", f"hmac-sha256:{KEY[0]}:{wrong_secret}", check=False)
    assert "BADSIG" in out, out
    # The right key still works, with dig and kdig verifying the signed answer.
    out = signed.dig("web.internal", "A", "-y", f"hmac-sha256:{KEY[0]}:{SECRET}")
    assert "10.0.0.5" in out and "status: NOERROR" in out, out
    out = signed.kdig("web.internal", "A", "-y", f"hmac-sha256:{KEY[0]}:{SECRET}")
    assert "10.0.0.5" in out and "NOERROR" in out, out


@pytest.mark.parametrize("offset", [-3600, 3600])
def test_a_request_outside_the_servers_fudge_gets_a_signed_badtime(signed, monkeypatch, offset):
    monkeypatch.setattr(dns.message, "time", ShiftedClock(offset))
    # The request says its own fudge is 65535 s; muster's 300 s applies.
    with pytest.raises(dns.tsig.PeerBadTime):
        ask(signed, KEYRING, fudge=65535)
    q = dns.message.make_query("web.internal", "A")
    q.use_tsig(KEYRING, keyname=KEY[0], fudge=65535)
    rcode, tsig, raw = raw_tsig(signed, q)
    monkeypatch.undo()
    assert rcode == dns.rcode.NOTAUTH and tsig.error == dns.rcode.BADTIME
    assert abs(tsig.time_signed - (time.time() + offset)) <= 5, "Time Signed is the request's"
    assert len(tsig.other) == 6, "Other Data: the server's time, 48 bits"
    server_time = int.from_bytes(tsig.other, "big")
    assert abs(server_time - time.time()) <= 5
    assert len(tsig.mac) == 32, "BADTIME is signed"
    verify_signed_error(raw, tsig, q.mac)


def verify_signed_error(raw, tsig, request_mac):
    """Checks the MAC of a signed error reply with dnspython's own digest (its
    `validate` raises the peer's error before it looks at the MAC)."""
    key = dns.tsig.Key(KEY[0], KEY[1], dns.tsig.HMAC_SHA256)
    owner = dns.name.from_text(KEY[0]).to_wire()
    tsig_start = raw.rfind(owner + struct.pack("!H", 250))
    assert tsig_start > 0
    (adcount,) = struct.unpack("!H", raw[10:12])
    unsigned = raw[0:10] + struct.pack("!H", adcount - 1) + raw[12:tsig_start]
    ctx = dns.tsig._digest(unsigned, key, tsig, None, request_mac)
    ctx.verify(tsig.mac)  # raises dns.tsig.BadSignature if it does not verify


def test_a_request_within_the_fudge_but_past_a_narrower_one_of_its_own_is_badtime(signed, monkeypatch):
    monkeypatch.setattr(dns.message, "time", ShiftedClock(-100))
    with pytest.raises(dns.tsig.PeerBadTime):
        ask(signed, KEYRING, fudge=60)
    r = ask(signed, KEYRING, fudge=300)
    assert r.rcode() == dns.rcode.NOERROR and r.had_tsig


def truncated(q, mac_len):
    """`q`'s wire form with its TSIG's MAC cut to `mac_len` bytes (what a signer that
    truncates sends: the same MAC, its first bytes)."""
    wire = q.to_wire()
    r = dns.message.from_wire(wire, keyring=False)
    rd = r.tsig[0]
    owner = dns.name.from_text(KEY[0]).to_wire()
    start = wire.rfind(owner + struct.pack("!H", 250))
    cut = rd.replace(mac=rd.mac[:mac_len])
    rdata = cut.to_digestable()
    rr = owner + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata
    return wire[:start] + rr, rd.mac[:mac_len]


def test_truncated_macs_down_to_half_the_hash_are_accepted(signed):
    q = dns.message.make_query("web.internal", "A")
    q.use_tsig(KEYRING, keyname=KEY[0])
    wire, mac = truncated(q, 16)
    raw = signed.exchange(wire)
    r = dns.message.from_wire(raw, keyring=KEYRING, request_mac=mac)  # verifies the answer
    assert r.rcode() == dns.rcode.NOERROR and r.had_tsig
    assert [rd.to_text() for rd in r.answer[0]] == ["10.0.0.5"]
    wire, mac = truncated(q, 15)
    raw = signed.exchange(wire)
    with pytest.raises(dns.tsig.PeerBadTruncation):
        dns.message.from_wire(raw, keyring=KEYRING, request_mac=mac)
    # Truncated to 20 bytes, one of them wrong: the truncated MAC is checked.
    wire, mac = truncated(q, 20)
    at = wire.rfind(mac)
    broken = wire[:at] + mac[:19] + bytes([mac[19] ^ 0xFF]) + wire[at + 20 :]
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.message.from_wire(signed.exchange(broken), keyring=KEYRING, request_mac=mac)


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS])
def test_cd_is_cleared_for_opcodes_other_than_query(muster, opcode):
    m = muster()
    q = dns.message.make_query("internal", "SOA")
    q.set_opcode(opcode)
    q.flags |= dns.flags.CD
    r = dns.message.from_wire(m.exchange(q.to_wire()))
    # An unsigned UPDATE is REFUSED (test_dns_update.py); the others are not implemented.
    assert r.rcode() == (dns.rcode.REFUSED if opcode == dns.opcode.UPDATE else dns.rcode.NOTIMP)
    assert not r.flags & dns.flags.CD, dns.flags.to_text(r.flags)
    q = dns.message.make_query("internal", "SOA")
    q.flags |= dns.flags.CD
    assert m.dns_query("internal", "SOA").rcode() == dns.rcode.NOERROR
    r = dns.message.from_wire(m.exchange(q.to_wire()))
    assert r.flags & dns.flags.CD, "a QUERY keeps CD"


def malformed_edns_query(n):
    """A query whose OPT record has an option longer than its data (hickory-proto warns
    of each such packet it reads)."""
    q = dns.message.make_query(f"web{n}.internal", "A", use_edns=0)
    wire = bytearray(q.to_wire())
    wire[-2:] = struct.pack("!H", 8)  # RDLENGTH of the OPT record
    return bytes(wire) + struct.pack("!HH", 10, 8) + b"abcd"


def test_a_flood_of_bad_packets_writes_a_few_log_lines(muster, monkeypatch):
    monkeypatch.delenv("MUSTER_LOG", raising=False)  # muster's default filter
    m = muster(TSIG_TOML)
    wrong = dns.tsigkeyring.from_text({KEY[0]: base64.b64encode(b"not the secret").decode()})
    bad_tsig = []
    for n in range(50):
        q = dns.message.make_query(f"web{n}.internal", "A")
        q.use_tsig(wrong, keyname=KEY[0])
        bad_tsig.append(q.to_wire())
    packets = bad_tsig + [malformed_edns_query(n) for n in range(50)]
    before = m.log_path.read_text(errors="replace").count("\n")
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for _ in range(30):
            for packet in packets:
                s.sendto(packet, ("127.0.0.1", m.dns_port))
                sent += 1
            try:
                while True:
                    s.settimeout(0.01)
                    s.recv(4096)
            except (TimeoutError, socket.timeout):
                pass
    time.sleep(0.5)
    added = m.log_path.read_text(errors="replace").splitlines()[before:]
    assert len(added) <= 3, f"{len(added)} lines for {sent} bad packets:\n" + "\n".join(added[:20])
    assert any("TSIG" in line for line in added), added
    metrics = m.get("/metrics").text
    rejected = sum(s.value for s in parse_metrics(metrics) if s.name == "muster_dns_tsig_rejected_total")
    assert rejected >= 0.9 * sent / 2, metrics
    assert m.dns_query("web0.internal", "A", edns=False).rcode() == dns.rcode.NXDOMAIN, "still answering"
